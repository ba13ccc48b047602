"""The weekly slice check as a job of its own: every distinct version of every stored snapshot whose slice
is the job's weekday (`checks.weekly_slice`), checked once, in as many invocations as it takes.

A scheduled backup starts the job when it has finished (chalicelib/backup/verification.py); the job never
runs inside the backup's invocation, and the backup's status and record never wait for it.

Memory stays flat however many versions are stored: the versions of a plan come from a sorted merge of its
manifests (each sorted by (source, key)), so all versions of one key arrive together and deduplication
holds only that key's versions. Versions are checked a batch at a time, and a batch always ends with a key.

Time is bounded by the invocation: after each batch the record (`record.py`, which is also the
checkpoint) is saved with the plan and the last (source, key) done, so it always describes a consistent
point; when the invocation's time runs short the job has itself invoked again with the same job id and the
next invocation carries on after that key. Each invocation downloads the plan's manifests again and skips
what was done. A finished job is never redone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.kept_index import kept_index
from chalicelib.catalog.manifests import MANIFEST_SUFFIX, Entry, list_snapshot_keys
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore, backup_time, is_backup_id
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.errors import AlreadyExists, NotFound, Pruned, describe_error
from chalicelib.inventory.reports import Report, ReportError
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.runner import BATCH_SIZE, Checkpoint, Job
from chalicelib.layout import SNAPSHOTS_PREFIX
from chalicelib.localtime import UTC
from chalicelib.notify import alerts
from chalicelib.plans import Plan, PlanSet
from chalicelib.times import isoformat, utcnow
from chalicelib.verify.checks import Finding, verify_entries, verify_versions, weekly_slice
from chalicelib.verify.cadence import LOOKBACK, plan_report, unusable
from chalicelib.verify.pack_check import PackLooks
from chalicelib.verify.report_check import ReportRows, RowCounter, last_before_scan, written_since
from chalicelib.verify.record import VerificationRecord, VerificationStore, check_id, verification_id

logger = logging.getLogger(__name__)
# The share of a slice re-read and re-hashed (percent) when its metadata comes from an inventory report.
REPORT_SAMPLE_PERCENT = 0.1


T = TypeVar("T")


def _itself(entry: Any) -> Entry:
    return cast(Entry, entry)


class DistinctVersions(Generic[T]):
    """The distinct versions of one weekday's slice of a plan's snapshots, in (source, key) order, after
    `after` (a (source, key) already done). The streams give entries, or items carrying one (`entry_of`
    finds it: the kept index's versions come with whether they are newer than the report).

    `largest` is the most versions the deduplication ever held at once: at most the number of distinct
    versions of one key, whatever the number of versions in all."""

    def __init__(
        self,
        manifests: Sequence[Iterable[T]],
        weekday: int | None,
        after: tuple[str, str] | None = None,
        entry_of: Callable[[T], Entry] = _itself,
    ) -> None:
        self.manifests = manifests
        self.weekday = weekday
        self.after = after
        self.entry_of = entry_of
        self.largest = 0

    def _remaining(self, items: Iterable[T]) -> Iterator[T]:
        if self.after is None:
            return iter(items)
        after, entry_of = self.after, self.entry_of
        return itertools.dropwhile(lambda item: entry_of(item).sort_key <= after, items)

    def __iter__(self) -> Iterator[T]:
        current: tuple[str, str] | None = None
        seen: set[str] = set()
        entry_of = self.entry_of
        for item in heapq.merge(*(self._remaining(m) for m in self.manifests), key=lambda item: entry_of(item).sort_key):
            entry = entry_of(item)
            if entry.sort_key != current:
                # A new key: no later entry can repeat a version of the previous one.
                current = entry.sort_key
                seen.clear()
            if entry.version_id in seen or (self.weekday is not None and weekly_slice(entry) != self.weekday):
                continue
            seen.add(entry.version_id)
            self.largest = max(self.largest, len(seen))
            yield item


def _oldest(snapshots: Iterable[str]) -> datetime | None:
    """When the oldest of these snapshots was taken (None without one)."""
    return min((backup_time(t) for t in snapshots if is_backup_id(t)), default=None)


# Batches checked between two saves of a job's record (a crash redoes at most these): by HEAD a batch takes
# seconds; against a report milliseconds, and a save is a request, so saving each one made the record's PUTs
# most of the job's requests. A hundred batches against a report are about a second of work.
SAVE_EVERY = 10
SAVE_EVERY_AGAINST_REPORT = 100


def batches(items: Iterable[T], size: int, entry_of: Callable[[T], Entry] = _itself) -> Iterator[list[T]]:
    """Batches of about `size` entries (or items carrying one), cut only between two keys, so that a
    checkpoint after a batch (its last key) never leaves versions of that key unchecked."""
    batch: list[T] = []
    for item in items:
        if len(batch) >= size and entry_of(item).sort_key != entry_of(batch[-1]).sort_key:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


class Counter(RowCounter, Protocol):
    """What counts the cost report's figures along the pass (cost/row_counts.py `RowCounts`)."""

    def entries(self, count: int) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def finished(self, backup_id: str, snapshots: int) -> dict[str, Any]: ...


# Makes a plan's counter against a report (its manifest key, when its scan began), from what a checkpoint
# carries of it (None: from nothing).
CounterFactory = Callable[[Plan, str, datetime, dict[str, Any] | None], Counter]


# A version to check: its entry, whether it was copied after the inventory report's scan began, and the mask
# of the kept snapshots naming it (positions in the kept index's snapshot list; 0 where not from the index).
Item = tuple[Entry, bool, int]


def _entry(item: Item) -> Entry:
    return item[0]


class VerificationJob(Job[VerificationRecord]):
    """Start and run weekly verification jobs and on-demand checks (chalicelib/jobs/runner.py's `Job`).
    `clients` is an `aws.Clients`; `time_zone`: the alert's times."""

    def __init__(
        self,
        plans: PlanSet,
        clients: Any,
        topic_arn: str | None = None,
        max_workers: int = 16,
        budget: Budget | None = None,
        invoker: Invoker | None = None,
        batch_size: int = BATCH_SIZE,
        time_zone: ZoneInfo = UTC,
        report: Callable[[str], Any] | None = None,
        sample_percent: float = REPORT_SAMPLE_PERCENT,
        row_counter: CounterFactory | None = None,
    ) -> None:
        store = VerificationStore(clients.s3, plans.catalog_bucket)
        super().__init__(plans, clients, store, budget, invoker, report, batch_size)
        self.store: VerificationStore = store
        self.time_zone = time_zone
        self.topic_arn = topic_arn
        self.max_workers = max_workers
        # The share re-hashed of a slice checked against an inventory report (without one, none).
        self.sample_percent = sample_percent
        # Counts the cost report's figures along a plan's pass against a report as a whole (None: not counted).
        self.row_counter = row_counter
        self.records = RecordStore(clients.s3, plans.catalog_bucket)
        # The most versions of one key the deduplication held at once, over every plan this object checked.
        self.largest_working_set = 0

    def start(self, backup_id: str, weekday: int | None = None, trigger: str = "schedule") -> VerificationRecord:
        """Record the job of `backup_id` (RUNNING), or find it already recorded: a backup has one job.
        `weekday` defaults to the backup's (0 = Monday)."""
        now = isoformat(utcnow())
        record = VerificationRecord(
            job_id=verification_id(backup_id),
            backup_id=backup_id,
            weekday=backup_time(backup_id).weekday() if weekday is None else weekday,
            trigger=trigger,
            started_at=now,
            updated_at=now,
        )
        if not 0 <= record.weekday <= 6:
            raise ValueError(f"weekday must be from 0 (Monday) to 6 (Sunday), got {record.weekday}")
        try:
            self.store.create(record)
        except AlreadyExists:
            logger.info("verification %s is already recorded", record.job_id)
            return self.store.get(record.job_id)
        logger.info("verification %s started: slice %d of the snapshots up to %s", record.job_id, record.weekday, backup_id)
        return record

    def step(self, checkpoint: Checkpoint[VerificationRecord]) -> bool:
        """One invocation's share of the work; True when the job ended (its result is then sealed)."""
        record = checkpoint.record
        record.invocations += 1
        try:
            if not self._work(checkpoint):
                return False
        except AlreadyExists:
            raise
        except Exception as exc:  # the job ends FAILED with the reason, and says so, whatever went wrong
            logger.exception("verification %s stopped", record.job_id)
            record.add_error(f"the verification stopped: {describe_error(exc)}")
        record.conclude(isoformat(utcnow()))
        # Sealed before the working copy says the job ended, so that an end without a sealed result is never
        # the job's own (record.py); a result an earlier invocation sealed before it stopped is the one kept.
        record = checkpoint.record = self.store.seal(record)
        checkpoint.save()
        logger.info(
            "verification %s %s: %d versions checked, %d missing, %d damaged, %d error(s)",
            record.job_id, record.status, record.checked, record.missing_count, record.damaged_count, record.error_count,
        )
        if len(record.waiting) < len(self.plans.plans):  # nothing to tell when every plan waits for a report
            alerts.publish_verification(self.clients.sns, self.topic_arn, record.to_dict(), self.time_zone)
        return True

    def start_check(
        self, backup_id: str, request_id: str, plan_names: list[str] | None, sample_percent: float
    ) -> VerificationRecord:
        """Record an on-demand check of one backup (RUNNING): every version of its snapshots (of
        `plan_names`, or all), and a re-read of `sample_percent` of them. The caller has checked the request
        (chalicelib/verify/verifier.py `Verifier.plans_of`)."""
        now = isoformat(utcnow())
        record = VerificationRecord(
            job_id=check_id(request_id),
            backup_id=backup_id,
            weekday=backup_time(backup_id).weekday(),
            kind="backup",
            trigger="api",
            plan_names=plan_names,
            sample_percent=sample_percent,
            started_at=now,
            updated_at=now,
        )
        self.store.create(record)
        return record

    def _work(self, checkpoint: Checkpoint[VerificationRecord]) -> bool:
        """Plan after plan from the checkpoint; False when time ran short."""
        record = checkpoint.record
        plans = self.plans.plans
        progressed = False
        # The newest jobs, read once for every plan of this invocation that decides whether it is due.
        earlier: list[list[VerificationRecord]] = []

        def earlier_jobs() -> list[VerificationRecord]:
            if not earlier:
                earlier.append(self.store.latest(LOOKBACK))
            return earlier[0]

        while record.plan_index < len(plans):
            if progressed and checkpoint.out_of_time():
                return False
            plan = plans[record.plan_index]
            try:
                if not self._check_plan(checkpoint, plan, earlier_jobs):
                    return False
            except (ClientError, BotoCoreError, NotFound, Pruned, ValueError) as exc:
                # This plan's slice could not be (fully) read; the other plans are still checked.
                record.add_error(f"plan {plan.name}: {describe_error(exc)}")
            progressed = True
            record.plan_index += 1
            record.after = None
            record.counting.pop(plan.name, None)
            checkpoint.save()
        return True

    def _check_plan(
        self, checkpoint: Checkpoint[VerificationRecord], plan: Plan, earlier: Callable[[], list[VerificationRecord]]
    ) -> bool:
        """The plan's part after the checkpoint; False when time ran short (the checkpoint is saved)."""
        record = checkpoint.record
        if (record.kind == "backup" and not self._in_check(record, plan)) or plan.name in record.waiting:
            return True
        after = (record.after[0], record.after[1]) if record.after else None
        with ExitStack() as stack:
            listed: list[tuple[list[str], set[str]]] = []

            def kept_snapshots() -> tuple[list[str], set[str]]:
                if not listed:
                    listed.append(self._kept_snapshots(plan, record.backup_id) if record.kind == "slice" else ([], set()))
                return listed[0]

            report = self._report(record, plan, lambda: _oldest(kept_snapshots()[0]), earlier)
            if plan.name in record.waiting:
                logger.info("verification %s: plan %s %s", record.job_id, plan.name, record.waiting[plan.name]["message"])
                return True
            kept, pruned = kept_snapshots()
            # The kept index first, before the report is read: once written, up to date, it is what a later
            # invocation (or Lambda's retry of one that ran out of time) finds and reads, not merges again.
            index = kept_index(self.clients.s3, plan.bucket, plan.name, kept, stack) if kept else None
            # A scheduled job due with a report checks every kept version (all seven slices) against it.
            whole = report is not None and plan.name in record.checking
            weekday = None if whole else record.weekday
            counter = None
            if whole and report is not None and self.row_counter is not None and record.kind == "slice":
                counter = self.row_counter(plan, report.manifest_key, report.created, record.counting.get(plan.name))
            rows = self._report_rows(stack, record, plan, report, weekday, after, counter)
            if rows is None:
                counter = None
            if record.kind == "backup":
                # One snapshot, read as its record names it (exact version, hash checked).
                manifest = stack.enter_context(
                    open_snapshot(self.clients.s3, self.records, plan, record.backup_id, self.report, "verified")
                )
                if manifest.tampering:
                    record.add_error(f"TAMPERING: {manifest.tampering}")
                manifests: list[Iterable[Item]] = [((entry, False, 0) for entry in manifest.entries())]
                weekday, sample = None, record.sample_percent
                record.set_snapshots(plan.name, 1)
            else:
                record.set_snapshots(plan.name, len(kept))
                # The distinct versions of the kept snapshots, from the kept index: the index and the
                # manifests written since it, not every kept manifest; its lines up to the checkpoint are
                # skipped without making entries of them. A version copied after the report's scan began
                # that the report does not list waits for the next report rather than a HEAD (`written_since`).
                last_before = last_before_scan(index.snapshots, pruned, rows.report.created) if index and rows else 0
                manifests = (
                    [((entry, written_since(entry, mask, last_before), mask) for entry, mask in index.versions(after))] if index else []
                )
                weekday = None if rows is not None and whole else record.weekday
                sample = 0.0
            distinct = DistinctVersions(manifests, weekday, after, entry_of=_entry)
            # Each pack looked at once for all its objects, whichever batches they come in.
            packs = PackLooks()
            unsaved = 0
            try:
                for batch in batches(distinct, self.batch_size, entry_of=_entry):
                    if rows is None:
                        part = verify_entries(
                            self.clients.s3, plan, [entry for entry, _, _ in batch], sample, self.max_workers, packs=packs
                        )
                    else:
                        versions = [(entry, rows.row(entry), new) for entry, new, _ in batch]
                        if counter is not None:
                            counter.entries(sum(mask.bit_count() for _, _, mask in batch))
                        part = verify_versions(
                            self.clients.s3, plan, [(entry, row) for entry, row, new in versions if row is not None or not new],
                            self.sample_percent, self.max_workers, packs=packs,
                        )
                        part.deferred = sum(1 for _, row, new in versions if row is None and new)
                    if part.missing and index is not None:
                        part.missing = self._still_missing(plan, part.missing, batch, index.snapshots, pruned)
                    record.add(plan.name, part)
                    record.after = [batch[-1][0].source, batch[-1][0].key]
                    # The record is the checkpoint: saved every SAVE_EVERY batches (a crash redoes at most
                    # those, idempotently), when time runs short, and after the plan (the caller).
                    unsaved += 1
                    short = checkpoint.out_of_time()
                    if short or unsaved >= (SAVE_EVERY if rows is None else SAVE_EVERY_AGAINST_REPORT):
                        if counter is not None and rows is not None:
                            # Counted up to the checkpoint's key and saved with it: each row once.
                            rows.advance(after=(batch[-1][0].source, batch[-1][0].key))
                            record.counting[plan.name] = counter.state()
                        checkpoint.save()
                        unsaved = 0
                    if short:
                        return False
            finally:
                self.largest_working_set = max(self.largest_working_set, distinct.largest)
            if counter is not None and rows is not None:
                rows.advance(None)
                if not record.inventory[plan.name].get("problem"):
                    record.row_counts[plan.name] = counter.finished(record.backup_id, len(kept))
        if whole and rows is not None and not record.inventory[plan.name].get("problem"):
            record.checked_against[plan.name] = record.checking[plan.name]
        return True

    def _report(
        self, record: VerificationRecord, plan: Plan, first_snapshot: Callable[[], datetime | None],
        earlier: Callable[[], list[VerificationRecord]],
    ) -> Report | None:
        """The inventory report a weekly job checks the plan against when the plans set `inventory`
        (chalicelib/verify/cadence.py: chosen once a job, and a scheduled job works once per report); None
        (check by HEAD) otherwise, or when the report is missing, stale or unreadable, which the record keeps
        as a problem, or when the plan waits for the next report (`record.waiting`)."""
        if record.kind != "slice" or self.plans.inventory is None:
            return None
        report = plan_report(
            self.clients.s3, self.plans.inventory, plan, record, utcnow(), first_snapshot, earlier,
        )
        summary = record.inventory[plan.name]
        if summary.get("problem"):
            logger.warning("verification %s: %s", record.job_id, summary["problem"])
        return report

    def _report_rows(
        self, stack: ExitStack, record: VerificationRecord, plan: Plan, report: Report | None, weekday: int | None,
        after: tuple[str, str] | None, counter: RowCounter | None = None,
    ) -> ReportRows | None:
        """The report's rows of the plan's sources after the checkpoint (of the day's slice, or all of them);
        None without a report, or when it cannot be read (a problem the record keeps: HEAD then)."""
        if report is None:
            return None
        try:
            return stack.enter_context(ReportRows(self.clients.s3, report, [s.name for s in plan.sources], weekday, after=after, counter=counter))
        except (ReportError, ClientError, BotoCoreError) as exc:
            record.use_inventory(plan.name, {**record.inventory[plan.name], "problem": unusable(plan, exc)})
            logger.warning("verification %s: %s", record.job_id, record.inventory[plan.name]["problem"])
            return None

    def _in_check(self, record: VerificationRecord, plan: Plan) -> bool:
        """Whether an on-demand check covers this plan: named (or all named), and backed up by the backup."""
        if record.plan_names is not None and plan.name not in record.plan_names:
            return False
        backup = self.records.get(record.backup_id)
        result = backup.plans.get(plan.name)
        return result is not None and bool(result.snapshot)

    def _still_missing(
        self, plan: Plan, missing: list[Finding], batch: Sequence[Item], snapshots: Sequence[str], pruned: set[str]
    ) -> list[Finding]:
        """The missing versions some snapshot still kept names. A prune may mark snapshots while the job runs
        (after it listed them): their versions are then being deleted, as retention says, and are not missing.
        One listing of the pruned markers, only for a batch with versions missing."""
        now_pruned = self._pruned(plan)
        if now_pruned <= pruned:
            return missing
        masks = {(entry.source, entry.key, entry.version_id): mask for entry, _, mask in batch}

        def still_named(finding: Finding) -> bool:
            mask = masks.get((finding.source, finding.key, finding.version_id), 0)
            if not mask:
                return True
            return any(mask >> position & 1 and taken not in now_pruned for position, taken in enumerate(snapshots))

        kept = [finding for finding in missing if still_named(finding)]
        if len(kept) < len(missing):
            logger.info(
                "plan %s: %d version(s) gone with snapshots a prune marked while the job ran: not missing",
                plan.name, len(missing) - len(kept),
            )
        return kept

    def _pruned(self, plan: Plan) -> set[str]:
        """The plan's snapshots (backup ids) a prune marked."""
        markers = PrunedMarkers(self.clients.s3, self.plans.catalog_bucket).all()
        return {taken for (name, taken) in markers if name == plan.name}

    def _kept_snapshots(self, plan: Plan, backup_id: str) -> tuple[list[str], set[str]]:
        """The plan's snapshots (backup ids) taken up to the job's backup, and those a prune marked: a job that
        spans invocations always checks the same snapshots, and a snapshot taken later is checked by a later job."""
        until = backup_time(backup_id)
        prefix = f"{SNAPSHOTS_PREFIX}{plan.name}/"
        # Snapshots a prune marked are being deleted: their versions are no longer expected to be there.
        pruned = self._pruned(plan)
        kept = []
        for key in list_snapshot_keys(self.clients.s3, plan.bucket, plan.name):
            taken = key[len(prefix):-len(MANIFEST_SUFFIX)]
            if taken in pruned:
                continue
            if not is_backup_id(taken) or backup_time(taken) <= until:
                kept.append(taken)
        return kept, pruned

"""One plan's part of a verification job (`job.py`): the distinct versions of its kept snapshots (of the
job's weekday, or all of them when a scheduled job is due with an inventory report), from the kept index, or of
one backup's snapshot for an on-demand check, checked a batch at a time by HEAD or against the report's rows
(`report_check.py`), with the cost report's rows counted along a pass against a report as a whole (the
job's `row_counter`, cost/row_counts.py). The job's record is the checkpoint, saved after the batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.kept_index import kept_index
from chalicelib.catalog.manifests import MANIFEST_SUFFIX, Entry, list_snapshot_keys
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore, backup_time, is_backup_id
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.inventory.reports import Report, ReportError
from chalicelib.jobs.runner import Checkpoint
from chalicelib.layout import SNAPSHOTS_PREFIX
from chalicelib.plans import Plan, PlanSet
from chalicelib.times import utcnow
from chalicelib.verify.cadence import plan_report, unusable
from chalicelib.verify.checks import Finding, verify_entries, verify_versions
from chalicelib.verify.distinct import DistinctVersions, batches
from chalicelib.verify.pack_check import PackLooks
from chalicelib.verify.record import VerificationRecord
from chalicelib.verify.report_check import CounterFactory, ReportRows, RowCounter, last_before_scan, written_since

logger = logging.getLogger(__name__)


def _oldest(snapshots: Iterable[str]) -> datetime | None:
    """When the oldest of these snapshots was taken (None without one)."""
    return min((backup_time(t) for t in snapshots if is_backup_id(t)), default=None)


# Batches checked between two saves of a job's record (a crash redoes at most these): by HEAD a batch takes
# seconds; against a report milliseconds, and a save is a request, so saving each one made the record's PUTs
# most of the job's requests. A hundred batches against a report are about a second of work.
SAVE_EVERY = 10
SAVE_EVERY_AGAINST_REPORT = 100


# A version to check: its entry, whether it was copied after the inventory report's scan began, and the mask
# of the kept snapshots naming it (positions in the kept index's snapshot list; 0 where not from the index).
Item = tuple[Entry, bool, int]


def _entry(item: Item) -> Entry:
    return item[0]


class PlanCheck:
    """Checks one plan's part of a job from its checkpoint (`run`). Made for each plan from the job's settings:
    `report` is told of tampering met while reading a snapshot; `sample_percent` is the share re-hashed of a
    slice checked against a report; `row_counter` counts the cost report's figures along a pass against a
    report as a whole (None: not counted)."""

    def __init__(
        self,
        s3: Any,
        plans: PlanSet,
        records: RecordStore,
        report: Callable[[str], Any],
        batch_size: int,
        max_workers: int,
        sample_percent: float,
        row_counter: CounterFactory | None,
    ) -> None:
        self.s3 = s3
        self.plans = plans
        self.records = records
        self.report = report
        self.batch_size = batch_size
        self.max_workers = max_workers
        self.sample_percent = sample_percent
        self.row_counter = row_counter
        # The most versions of one key the deduplication held at once.
        self.largest = 0

    def run(
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
            index = kept_index(self.s3, plan.bucket, plan.name, kept, stack) if kept else None
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
                    open_snapshot(self.s3, self.records, plan, record.backup_id, self.report, "verified")
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
                            self.s3, plan, [entry for entry, _, _ in batch], sample, self.max_workers, packs=packs
                        )
                    else:
                        versions = [(entry, rows.row(entry), new) for entry, new, _ in batch]
                        if counter is not None:
                            counter.entries(sum(mask.bit_count() for _, _, mask in batch))
                        part = verify_versions(
                            self.s3, plan, [(entry, row) for entry, row, new in versions if row is not None or not new],
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
                self.largest = max(self.largest, distinct.largest)
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
            self.s3, self.plans.inventory, plan, record, utcnow(), first_snapshot, earlier,
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
            return stack.enter_context(ReportRows(self.s3, report, [s.name for s in plan.sources], weekday, after=after, counter=counter))
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
        markers = PrunedMarkers(self.s3, self.plans.catalog_bucket).all()
        return {taken for (name, taken) in markers if name == plan.name}

    def _kept_snapshots(self, plan: Plan, backup_id: str) -> tuple[list[str], set[str]]:
        """The plan's snapshots (backup ids) taken up to the job's backup, and those a prune marked: a job that
        spans invocations always checks the same snapshots, and a snapshot taken later is checked by a later job."""
        until = backup_time(backup_id)
        prefix = f"{SNAPSHOTS_PREFIX}{plan.name}/"
        # Snapshots a prune marked are being deleted: their versions are no longer expected to be there.
        pruned = self._pruned(plan)
        kept = []
        for key in list_snapshot_keys(self.s3, plan.bucket, plan.name):
            taken = key[len(prefix):-len(MANIFEST_SUFFIX)]
            if taken in pruned:
                continue
            if not is_backup_id(taken) or backup_time(taken) <= until:
                kept.append(taken)
        return kept, pruned

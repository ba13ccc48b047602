"""One pass of a restore. The first pass walks the selected manifest entries: a version in a warm storage
class goes to the target, an archived one gets a thaw request and is listed as pending. Later passes, started
by the hourly check, take the pending versions once S3 has thawed them. Every pass is idempotent.

For a folder target every pass lays out its entries first (`folder_layout`): a key with no valid path, or
one that collides with another, fails at once with its reason and is never fetched, thawed or written, so
no two workers ever write one path. The restore's checks did the same before it was recorded; the pass does
it again because a recorded restore may run later (in another process, after an upgrade) and must not trust
what was checked then. For the same reason every pass checks the target again (`RestoreChecks.target_allowed`:
one of this stage's restore buckets, a table named with its prefix) before it writes anything: a record
someone else wrote, naming another bucket, fails with the reason and writes nothing."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.manifests import Entry
from chalicelib.errors import AlreadyExists, BadRequest, Conflict, NotFound, Pruned, Tampered, describe_error, error_code
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.runner import BATCH_SIZE, Checkpoint, run_until_done
from chalicelib.plans import Plan
from chalicelib.prices import Prices
from chalicelib.restore.bucket import copy_to_bucket
from chalicelib.restore.folder import download, make_folder
from chalicelib.restore.folder_layout import FolderLayout, lay_out
from chalicelib.restore.outcome import Outcome, ProgressCallback
from chalicelib.restore.prepare import Prepared, RestoreChecks
from chalicelib.restore import parts
from chalicelib.restore.record import MAX_FAILURES_LISTED, RestoreRecord, RestoreStatus, RestoreStore, settle
from chalicelib.restore.quote import quote
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.selection import sources_by_name, target_table
from chalicelib.restore.table import restore_table, table_schema
from chalicelib.restore.thaw import PackThaws, is_archived, request_thaw
from chalicelib.restore.versions import VersionId, listing_prefixes, version_heads
from chalicelib.s3docs import is_missing
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

# How S3 refuses to read or copy a version that is archived and not thawed.
ARCHIVED_ERRORS = ("InvalidObjectState", "ObjectNotInActiveTierError")


@dataclass
class Carried:
    """A restore's record as its checks created it (and its ETag), and what they read."""

    record: RestoreRecord
    etag: str
    prepared: Prepared


class RestorePass:
    """Runs passes of recorded restores. `clients` is an `aws.Clients`."""

    def __init__(
        self,
        checks: RestoreChecks,
        clients: Any,
        store: RestoreStore,
        max_workers: int,
        prices: Prices,
        split: tuple[int, int] = (0, 1),
    ) -> None:
        """`split`: (split_objects, max_parallel), when a first pass is cut into parts (parts.py)."""
        self.checks = checks
        self.split = split
        self.prices = prices
        self.clients = clients
        self.store = store
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._carried: dict[str, Carried] = {}

    def carry(self, record: RestoreRecord, etag: str, prepared: Prepared) -> None:
        """What the restore's checks just read (`RestoreChecks.prepare`) and the record they created, for
        its first pass in this process: that pass reads none of it again."""
        self._carried[record.restore_id] = Carried(record, etag, prepared)

    def drop(self, restore_id: str) -> None:
        """The restore's first pass runs elsewhere (a worker function): it reads what it needs itself."""
        self._carried.pop(restore_id, None)

    def run(
        self,
        restore_id: str,
        progress: ProgressCallback | None = None,
        budget: Budget | None = None,
        invoker: Invoker | None = None,
    ) -> RestoreRecord:
        """One pass (chalicelib/jobs/runner.py's `run_until_done`; the hourly check starts the next pass). The first pass covers the whole selection;
        later ones the versions waiting for a thaw. With a `budget`, a first pass stops between two batches
        of 1,000 entries when time runs short, saves where it got to, and `invoker` has a new invocation carry
        it on (chalicelib/jobs/runner.py's `run_until_done`). Of two invocations of one pass (the hourly check and a
        retried worker), the one whose first write of the record comes second stops there, before it writes
        anywhere else. A restore whose checks ran in this process (`carry`) starts from the record they
        created: nobody else has read it, so the pass neither reads nor writes it before it starts."""
        carried = self._carried.pop(restore_id, None)
        if carried is None:
            return run_until_done(
                self.store, restore_id, lambda checkpoint: self._pass(checkpoint, progress, invoker=invoker), budget, invoker
            )
        checkpoint = Checkpoint(self.store, carried.record, carried.etag, None)
        try:
            self._pass(checkpoint, progress, carried.prepared, invoker)
        except AlreadyExists:
            logger.warning("restore %s: another invocation is working on it; this one stops", restore_id)
            return self.store.get(restore_id)
        return checkpoint.record

    def _pass(
        self,
        checkpoint: Checkpoint[RestoreRecord],
        progress: ProgressCallback | None,
        prepared: Prepared | None = None,
        invoker: Invoker | None = None,
    ) -> bool:
        record = checkpoint.record
        if prepared is None:
            # The record is written before anything else: it says since when this pass runs (the hourly check
            # leaves it alone meanwhile), and another invocation that read the same version stops at its own.
            checkpoint.save()
            plan = self.checks.plan(record.plan)
            try:
                # The record was queued by another function: its target is checked again here, by the worker's
                # own rules, before anything is written (a forged queue entry cannot aim a restore elsewhere).
                self.checks.target(plan, record.target_spec)
            except BadRequest as exc:
                return self.refuse(checkpoint, exc)
            if record.status == RestoreStatus.PREPARING:
                try:
                    prepared = self._prepare(checkpoint, plan)
                except (BadRequest, NotFound, Conflict, Tampered, Pruned) as exc:
                    return self.refuse(checkpoint, exc)
                if prepared is None:
                    return True
        else:
            plan = prepared.plan
        if record.parts:
            # Cut into parts: they do the work, each a restore of its own; this pass only adds them up.
            parts.add_up(record, parts.read_parts(self.store, record))
            checkpoint.save()
            return True
        try:
            # A snapshot found unmarked once this record existed is kept whole by every prune until the
            # restore ends (`snapshot_held`, catalog/restoring.py); until one such look has been had, a marker
            # refuses the restore with the reason, before it writes anything. Reading the snapshot looks
            # (`RestoreChecks.manifest`); a later pass reads only the marker.
            if not record.scanned:
                if prepared is None:
                    prepared = self.checks.recorded_selection(
                        plan, record.backup_id, record.prefix, record.keys, *self._window(record),
                        held=record.snapshot_held,
                    )
                    try:
                        self.checks.keys_allowed(plan, record.target_spec, prepared.selected)
                    except BadRequest as exc:
                        return self.refuse(checkpoint, exc)
                record.snapshot_held = True
                if self._cut(checkpoint, prepared, invoker):
                    return True
                if not self._first_pass(checkpoint, plan, prepared, progress):
                    return False
            else:
                if not record.snapshot_held:
                    self.checks.not_pruned(plan, record.backup_id)
                    record.snapshot_held = True
                if not self._pending_pass(checkpoint, plan, progress):
                    return False
        except Pruned as exc:
            return self.refuse(checkpoint, exc)
        except (ClientError, BotoCoreError) as exc:
            # The pass stopped (e.g. access denied on the target); what it did is kept, the rest is retried
            # by the hourly check while the record says RUNNING.
            record.warnings = (record.warnings + [f"pass {record.passes + 1} stopped: {describe_error(exc)}"])[-20:]
            checkpoint.save()
            raise
        record.passes += 1
        settle(record, len(record.pending), max((item["ready_by"] for item in record.pending), default=None))
        checkpoint.save()
        logger.info("restore %s pass %d: %s", record.restore_id, record.passes, record.status)
        if record.part_of:
            parts.bring_up_to_date(self.store, record.part_of)
        return True

    @staticmethod
    def _window(record: RestoreRecord) -> tuple[parts.Bound, parts.Bound]:
        """A part's range of the selection (parts.py); the whole selection for any other restore."""
        if not record.part_range:
            return None, None
        after, through = record.part_range
        return (tuple(after) if after else None, tuple(through) if through else None)  # type: ignore[return-value]

    def _cut(self, checkpoint: Checkpoint[RestoreRecord], prepared: Prepared, invoker: Invoker | None) -> bool:
        """Cut a first pass too large for one worker into parts (parts.py), when new invocations can be had:
        True when it was cut (the parts are recorded and invoked; this pass is over)."""
        record = checkpoint.record
        if invoker is None or record.part_of or record.done_through is not None or not record.target_spec.bucket:
            return False
        ranges = parts.cut(prepared.selected, *self.split)
        if not ranges:
            return False
        # The parts first, then the whole restore naming them: a crash between the two leaves parts in the
        # queue that this pass, run again, finds there (the same cut of the same selection) and names.
        records = parts.part_records(record, ranges, prepared.selected)
        parts.create_parts(self.store, records)
        record.parts = [part.restore_id for part in records]
        checkpoint.save()
        for part in records:
            # A part already running gets a second invocation: the first to save its record carries it on.
            invoker({"restore_id": part.restore_id})
        logger.info("restore %s: cut into %d parts, each invoked", record.restore_id, len(records))
        return True

    def _prepare(self, checkpoint: Checkpoint[RestoreRecord], plan: Plan) -> Prepared | None:
        """A restore the API recorded: select, check the target for conflicts, and either quote it (a dry
        run: the record ends QUOTED, None) or start it (what was read, for the first pass that follows)."""
        record = checkpoint.record
        request = RestoreRequest(
            backup_id=record.backup_id, plan=record.plan, target=record.target_spec, prefix=record.prefix,
            keys=tuple(record.keys) if record.keys is not None else None, overwrite=record.overwrite,
            tier=record.tier, dry_run=record.dry_run,
        )
        prepared = self.checks.prepare(request, list_archived=not record.dry_run)
        plan, selected = prepared.plan, prepared.selected
        if record.dry_run:
            prefixes = listing_prefixes(plan, record.prefix, record.keys)
            heads = version_heads(self.clients.s3, plan, selected, prefixes, self.max_workers)
            record.quote = quote(request, plan, selected, heads, self.prices, prepared.layout, prepared.manifest)
            record.status, record.finished_at = RestoreStatus.QUOTED, isoformat(utcnow())
            checkpoint.save()
            return None
        record.total, record.bytes_total = len(selected), sum(e.size for e in selected)
        # The checks read the snapshot's marker after this record was created: from here on it is held.
        record.status, record.snapshot_held = RestoreStatus.RUNNING, True
        checkpoint.save()
        return prepared

    def refuse(self, checkpoint: Checkpoint[RestoreRecord], exc: Exception) -> bool:
        """The request cannot be carried out as it stands: the record says why, and nothing was written."""
        record = checkpoint.record
        record.status, record.finished_at, record.refused = RestoreStatus.FAILED, isoformat(utcnow()), str(exc)
        record.warnings = (record.warnings + [f"refused: {exc}"])[-20:]
        record.pending, record.pending_thaw, record.expected_thaw_completion = [], 0, None
        checkpoint.save()
        logger.error("restore %s refused: %s", record.restore_id, exc)
        return True

    def _first_pass(
        self, checkpoint: Checkpoint[RestoreRecord], plan: Plan, prepared: Prepared, progress: ProgressCallback | None
    ) -> bool:
        """True when the whole selection is done; False when time ran short (where it got to is saved)."""
        record = checkpoint.record
        entries = parts.in_part(prepared.selected, *self._window(record)) if record.part_range else prepared.selected
        # Laid out whole: a collision is between any two keys of the selection, whichever batch they are in.
        layout = lay_out(plan, record.target_spec, entries) if record.target_spec.path else None
        if record.done_through is None:
            record.restored = record.bytes_restored = record.failed = 0
            record.pending, record.failures = [], []
        else:
            mark = tuple(record.done_through)
            entries = [entry for entry in entries if entry.sort_key > mark]
        for start in range(0, len(entries), BATCH_SIZE):
            batch = entries[start:start + BATCH_SIZE]
            self._apply(record, self._process(checkpoint, plan, batch, progress, prepared.archived, layout))
            if start + BATCH_SIZE < len(entries) and checkpoint.out_of_time():
                record.done_through = list(batch[-1].sort_key)
                checkpoint.save()
                return False
        record.scanned, record.done_through = True, None
        return True

    def _pending_pass(self, checkpoint: Checkpoint[RestoreRecord], plan: Plan, progress: ProgressCallback | None) -> bool:
        """The versions waiting for a thaw, 1,000 at a time: True when each was looked at; False when time ran
        short (saved: the ones looked at and still waiting first, `pending_checked` of them, then the rest)."""
        record = checkpoint.record
        # Laid out whole: a collision is between any two pending keys, whichever batch they are in.
        every = [Entry.from_json(json.dumps(item["entry"])) for item in record.pending]
        layout = lay_out(plan, record.target_spec, every) if record.target_spec.path else None
        checked = record.pending_checked
        waiting, todo, entries = record.pending[:checked], record.pending[checked:], every[checked:]
        for start in range(0, len(todo), BATCH_SIZE):
            outcomes = self._process(checkpoint, plan, entries[start:start + BATCH_SIZE], progress, None, layout)
            # A version still waiting keeps its first request time (thaw.py): it goes back among the waiting.
            record.pending = waiting
            self._apply(record, outcomes)
            waiting = record.pending
            record.pending, record.pending_checked = waiting + todo[start + BATCH_SIZE:], len(waiting)
            if start + BATCH_SIZE < len(todo) and checkpoint.out_of_time():
                checkpoint.save()
                return False
        record.pending, record.pending_checked = waiting, 0
        return True

    def _apply(self, record: RestoreRecord, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.state == "restored":
                record.restored += 1
                record.bytes_restored += outcome.bytes
            elif outcome.state == "pending":
                assert outcome.pending is not None
                record.pending.append(outcome.pending)
            else:
                record.failed += 1
                if len(record.failures) < MAX_FAILURES_LISTED:
                    record.failures.append(
                        {"source": outcome.entry.source, "key": outcome.entry.key, "reason": outcome.reason}
                    )

    def _process(
        self,
        checkpoint: Checkpoint[RestoreRecord],
        plan: Plan,
        entries: list[Entry],
        progress: ProgressCallback | None,
        archived: dict[VersionId, dict[str, Any]] | None,
        layout: FolderLayout | None,
    ) -> list[Outcome]:
        """Every entry restored, thawed or failed, `max_workers` at a time. `archived`: the versions a listing
        found archived (thawed without a copy tried first); any other is copied (or fetched) at once. None: the
        entries are the archived versions a thaw was asked for (a later pass), each looked at before its copy."""
        record = checkpoint.record
        target = record.target_spec
        refused: list[Outcome] = []
        if layout is not None and layout.problems:
            refused = [Outcome("failed", e, reason=p.reason) for e in entries if (p := layout.problem(e)) is not None]
            entries = [e for e in entries if layout.problem(e) is None]
            if progress is not None:
                progress(len(refused))

        packs = PackThaws()

        def one(entry: Entry) -> Outcome:
            try:
                if archived is None:
                    listed = packs.head(entry, lambda: self._waiting(plan, entry))
                    if listed is None:
                        return Outcome("failed", entry, reason=f"version {entry.version_id} of {entry.stored_key} is missing from {plan.bucket}")
                else:
                    listed = archived.get((entry.stored_key, entry.version_id))
                return self._restore_entry(checkpoint, plan, target, layout, entry, listed, packs)
            except (ClientError, BotoCoreError, OSError, ValueError) as exc:
                return Outcome("failed", entry, reason=describe_error(exc))
            finally:
                if progress is not None:
                    progress(1)

        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return refused + list(pool.map(one, entries))

    def _waiting(self, plan: Plan, entry: Entry) -> dict[str, Any] | None:
        """A version waiting for its thaw, as S3 describes it now (None: it is gone)."""
        try:
            return dict(self.clients.s3.head_object(Bucket=plan.bucket, Key=entry.stored_key, VersionId=entry.version_id))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise

    def _restore_entry(
        self,
        checkpoint: Checkpoint[RestoreRecord],
        plan: Plan,
        target: Target,
        layout: FolderLayout | None,
        entry: Entry,
        listed: dict[str, Any] | None,
        packs: PackThaws,
    ) -> Outcome:
        """One entry: its copy (or GET) straight away, unless the listing found its version archived and not
        thawed (`listed`). The copy itself tells a version that is gone, or archived after all."""
        record = checkpoint.record
        if layout is not None and layout.is_folder(entry):
            # A folder marker's only content is the folder: no byte to read, so nothing to fetch or thaw.
            return make_folder(layout.root, layout.path(entry), entry)
        s3 = self.clients.s3
        if listed is not None and is_archived(listed):
            return request_thaw(s3, plan.bucket, entry, packs.asked(entry, listed), record.tier, record.pending, self.prices)
        try:
            return self._to_target(checkpoint, plan, target, layout, entry)
        except ClientError as exc:
            if is_missing(exc):
                return Outcome("failed", entry, reason=f"version {entry.version_id} of {entry.stored_key} is missing from {plan.bucket}")
            # Archived and not thawed: outside the listing (named keys, long keys), moved to an archive class
            # since (a lifecycle transition), its thaw still under way or expired (a later pass). Only such a
            # version is headed, for its class and thaw state: thaw it rather than fail the object.
            if error_code(exc) not in ARCHIVED_ERRORS:
                raise
        head = packs.head(entry, lambda: dict(s3.head_object(Bucket=plan.bucket, Key=entry.stored_key, VersionId=entry.version_id)))
        if head is not None and is_archived(head):
            return request_thaw(s3, plan.bucket, entry, packs.asked(entry, head), record.tier, record.pending, self.prices)
        # Thawed between the copy and the look: copy again.
        return self._to_target(checkpoint, plan, target, layout, entry)

    def _to_target(
        self, checkpoint: Checkpoint[RestoreRecord], plan: Plan, target: Target, layout: FolderLayout | None, entry: Entry
    ) -> Outcome:
        record = checkpoint.record
        table = target_table(plan, target, entry)
        if table:
            return restore_table(
                self.clients.dynamodb, self.clients.s3, plan.bucket, entry, table, record.overwrite,
                record.tables_created, lambda: self._table_schema(plan, record, entry),
                lambda name: self._remember_table(checkpoint, name),
            )
        if layout is not None:
            return download(self.clients.s3, plan, layout.root, layout.path(entry), entry, record.overwrite)
        return copy_to_bucket(self.clients.s3, plan, target, entry, record.overwrite)

    def _remember_table(self, checkpoint: Checkpoint[RestoreRecord], table: str) -> None:
        # Saved at once: a pass that resumes after a crash knows this table is ours to fill.
        with self._lock:
            checkpoint.record.tables_created.append(table)
            checkpoint.save()

    def _table_schema(self, plan: Plan, record: RestoreRecord, entry: Entry) -> dict[str, Any]:
        """The key schema recorded with the snapshot; for older snapshots, the source table's current one."""
        with self.checks.manifest(plan, record.backup_id, record.snapshot_held) as manifest:
            stats = manifest.header.get("sources", {}).get(entry.source, {})
        schema = stats.get("table_schema")
        if schema:
            return {"KeySchema": schema["KeySchema"], "AttributeDefinitions": schema["AttributeDefinitions"]}
        source = sources_by_name(plan)[entry.source]
        description = self.clients.dynamodb.describe_table(TableName=source.table)["Table"]
        return table_schema(description)

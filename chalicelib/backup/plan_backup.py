"""Taking a backup of one plan: compare the source with the previous snapshot, copy what changed, write the
new snapshot's manifest last.

The comparison is a merge of two sorted streams (the previous manifest and the source listing), so memory
does not grow with the number of objects. Copies run on a bounded thread pool, a batch at a time, and the
manifest is written in key order as each batch completes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.backup import checkpoints, deletions
from chalicelib.backup.base import Base, open_base
from chalicelib.backup.compare import Action, PreviousSnapshot, SourceEntries, last_key, merge
from chalicelib.backup.listing import PageMarks
from chalicelib.backup.sources import NotCopied, ReaderSuspended, SourceObject, SourceReader, Stored, make_reader
from chalicelib.backup.tables import TableRun
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, load_snapshot, manifest_key, put_manifest
from chalicelib.catalog.records import PlanResult, backup_time
from chalicelib.deploy import drift
from chalicelib.errors import AlreadyExists, BackupError, HistoryNotKept, SourceError, describe_error
from chalicelib.layout import DATA_PREFIX, data_key
from chalicelib.plans import Plan, Source
from chalicelib.retention import MAX_BACKUP_DAYS
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)


class Abandoned(BackupError):
    """A plan run still going MAX_BACKUP_DAYS after its backup started: it writes no snapshot."""


BATCH_SIZE = 1000
# Objects a run leaves out on purpose, by the kind `NotCopied` names, as the warnings word them.
NOT_COPIED = {
    "archived_at_source": "archived at the source, not copied (the source's `archived` is skip)",
    "thawing_at_source": "archived at the source: a thaw was requested, a later backup copies them",
    "sse_c": "encrypted with a customer-provided key (SSE-C), which S3 cannot copy: not backed up",
}
ReaderFactory = Callable[[Source], SourceReader]


class PlanBackup:
    """One plan, one backup run."""

    def __init__(
        self,
        plan: Plan,
        s3: Any,
        backup_id: str,
        reader_factory: ReaderFactory,
        max_workers: int = 32,
        dry_run: bool = False,
        batch_size: int = BATCH_SIZE,
        budget: checkpoints.TimeBudget | None = None,
        allow_deletions: bool = False,
        base: Base | None = None,
        pruned: Collection[str] = (),
    ) -> None:
        self.plan = plan
        # Snapshots of the plan a prune has marked: never a base, even where the bucket's manifests decide.
        self.pruned = pruned
        # The snapshot to compare with, as the catalog's sealed records name it (None: the bucket's manifests
        # decide, see base.py).
        self.base = base
        self.s3 = s3
        self.backup_id = backup_id
        self.reader_factory = reader_factory
        self.max_workers = max_workers
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.result = PlanResult(plan=plan.name)
        # Deletions beyond the guard's limits go ahead in this run: someone asked for exactly that.
        self.allow_deletions = allow_deletions
        # Objects left out on purpose (archived at the source, SSE-C), a few keys of each kind for the record.
        self._not_copied: dict[str, list[str]] = {}
        # Data keys whose delete marker S3 refused: kept as held entries so the next backup retries them.
        self._undeleted: set[str] = set()
        # The invocation's remaining time (None: no limit). Short of time, the run stops at a checkpoint.
        self.budget = budget
        self._checkpoints = checkpoints.CheckpointStore(s3, plan.bucket, plan.name, backup_id)
        self._checkpoint: checkpoints.Checkpoint | None = None
        self._marked_uploading = False
        self._invocation_started = utcnow()
        # LIST requests this invocation made of its plan's snapshots and its sources, and how many of them
        # had to run one after another (a source listed in ranges counts its longest range).
        self.list_requests = 0
        self.list_depth = 0
        self.list_ranges = 0

    def run(self) -> PlanResult:
        result = self.result
        result.started_at = isoformat(utcnow())
        try:
            self._run()
        except checkpoints.Suspended:
            # Stopped at a checkpoint: the plan stays RUNNING and a continuation carries it on.
            result.status = "RUNNING"
            result.finished_at = None
            return result
        except (SourceError, HistoryNotKept, Abandoned) as exc:
            result.status = "FAILED"
            result.errors.append(str(exc))
        except (ClientError, BotoCoreError) as exc:
            result.status = "FAILED"
            result.errors.append(f"backup bucket {self.plan.bucket}: {describe_error(exc)}")
        except Exception as exc:  # a bug must fail this plan, not the other plans of the backup
            logger.exception("plan %s failed", self.plan.name)
            result.status = "FAILED"
            result.errors.append(f"internal error: {type(exc).__name__}: {exc}")
        result.finished_at = isoformat(utcnow())
        return result

    def _run(self) -> None:
        result = self.result
        key = manifest_key(self.plan.name, self.backup_id)
        meta = self._read_plan_meta()
        if key in meta.manifests:
            # This backup already finished this plan (a retried or duplicated invocation, perhaps delivered
            # after a newer backup): report it again rather than redo it.
            with load_snapshot(self.s3, self.plan.bucket, self.plan.name, self.backup_id) as done:
                self._report_existing(done, key)
            if self.backup_id in meta.checkpoints:
                self._checkpoints.clear()
            return
        previous, warnings = open_base(
            self.s3, self.plan.bucket, self.plan.name, self.backup_id, self.base, meta.etags, self.pruned
        )
        result.warnings.extend(warnings)
        start_index, start_after = 0, None
        if self.backup_id in meta.checkpoints:
            writer, start_index, start_after = self._resume()
        else:
            writer = ManifestWriter()
        try:
            with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
                prev_entries = PreviousSnapshot(previous)
                for index, source in enumerate(self.plan.sources):
                    if index < start_index:
                        continue
                    after = start_after if index == start_index else None
                    self._back_up_source(source, prev_entries.for_source(source.name), writer, pool, index, after)
                    self._maybe_suspend(writer, index + 1, None)
                hold = self._decide_deletions(writer, meta)
                if not hold and not self.dry_run:
                    self._apply_deletions(writer, pool)
            result.objects = writer.objects
            result.bytes = writer.bytes
            if self.dry_run:
                # Nothing was copied, deleted or recorded: the counts say what a backup would do.
                if not hold:
                    result.deleted = writer.pending_deletions
                result.status = "PARTIAL" if (result.deletions_held_back or result.errors) else "SUCCEEDED"
                self._finish_run(meta)
                return
            self._put_snapshot(writer, hold)
            self._finish_run(meta)
        finally:
            writer.close()
            if previous is not None:
                previous.close()
        result.status = "PARTIAL" if (result.failed or result.deletions_held_back or result.errors) else "SUCCEEDED"

    def _read_plan_meta(self) -> checkpoints.PlanMeta:
        """The plan's snapshots and checkpoints, read while the bucket's settings are checked: two round
        trips in the time of one (a first backup's only fixed cost besides the manifest). Nothing is written
        before the check has answered: a bucket that does not keep every version gets nothing
        (`HistoryNotKept`). With one worker, one request at a time, in a fixed order."""
        if self.max_workers <= 1:
            drift.check_history_kept(self.s3, self.plan)
            return checkpoints.scan_plan_meta(self.s3, self.plan.bucket, self.plan.name)
        with ThreadPoolExecutor(max_workers=1) as pool:
            kept = pool.submit(drift.check_history_kept, self.s3, self.plan)
            try:
                meta = checkpoints.scan_plan_meta(self.s3, self.plan.bucket, self.plan.name)
            except Exception:
                # The check's verdict comes first, whatever the listing's error. (Anything else, the process
                # going down, propagates as it is, once the check has ended.)
                kept.result()
                raise
            kept.result()
        return meta

    def _resume(self) -> tuple[ManifestWriter, int, str | None]:
        """Carry on from the saved checkpoint: its partial manifest, counts and position."""
        checkpoint = self._checkpoints.load()
        if checkpoint is None:
            return ManifestWriter(), 0, None
        writer = self._checkpoints.restore(checkpoint)
        checkpoint.apply_to(self.result)
        self._checkpoint = checkpoint
        logger.info(
            "plan %s of backup %s resumes (invocation %d) at source #%d after %r",
            self.plan.name, self.backup_id, checkpoint.invocations + 1, checkpoint.source_index, checkpoint.last_key,
        )
        return writer, checkpoint.source_index, checkpoint.last_key

    def _running_out(self) -> bool:
        return self.budget is not None and self.budget.running_out()

    def _maybe_suspend(self, writer: ManifestWriter, source_index: int, last_key: str | None) -> None:
        """Between batches: when the invocation is running out of time, save a checkpoint and stop."""
        if not self._running_out():
            return
        checkpoint = self._save_checkpoint(writer, source_index, last_key)
        self._checkpoint = checkpoint
        raise checkpoints.Suspended(f"plan {self.plan.name}: checkpoint {checkpoint.seq}")

    def _save_checkpoint(
        self, writer: ManifestWriter, source_index: int, last_key: str | None, done: bool = False
    ) -> checkpoints.Checkpoint:
        """Save where this run is (the partial manifest and counts), for the next invocation to resume."""
        before = self._checkpoint
        checkpoint = checkpoints.Checkpoint(
            plan=self.plan.name,
            backup_id=self.backup_id,
            seq=before.seq + 1 if before else 1,
            source_index=source_index,
            last_key=last_key,
            partial_key="",
            counters=checkpoints.Checkpoint.counters_of(self.result),
            sources=self.result.sources,
            errors=self.result.errors[:20],
            started_at=self.result.started_at,
            invocations=before.invocations + 1 if before else 1,
            done=done,
        )
        self._checkpoints.save(checkpoint, writer)
        return checkpoint

    def _put_snapshot(self, writer: ManifestWriter, hold: bool, **extra_header: Any) -> None:
        """Write the plan's manifest: the run's last write, made only if no manifest for it exists yet."""
        result = self.result
        key = manifest_key(self.plan.name, self.backup_id)
        started = backup_time(self.backup_id)
        if utcnow() > started + timedelta(days=MAX_BACKUP_DAYS):
            # The prune protects what a running backup wrote only this long: past it, some versions this run
            # copied (or carries forward) may be gone, and a snapshot naming them would be a lie.
            raise Abandoned(
                f"the backup started at {isoformat(started)}, more than {MAX_BACKUP_DAYS} days ago: it is abandoned "
                "and writes no snapshot; the next backup copies what it copied"
            )
        header = {
            "plan": self.plan.name,
            "backup_id": self.backup_id,
            "bucket": self.plan.bucket,
            "created_at": isoformat(utcnow()),
            "copied": result.copied,
            "unchanged": result.unchanged,
            "failed": result.failed,
            "deleted": result.deleted,
            "sources": result.sources,
            **extra_header,
        }
        body = writer.finish(header, keep_held=hold, undeleted=self._undeleted)
        try:
            written = put_manifest(self.s3, self.plan.bucket, key, body)
        except AlreadyExists:
            # Another invocation of this backup wrote the snapshot first: that manifest is the snapshot, and
            # the record must describe it, not this run's counts (its copies are versions no snapshot names).
            logger.info("snapshot %s was already written by another invocation; reporting that one", key)
            with load_snapshot(self.s3, self.plan.bucket, self.plan.name, self.backup_id) as existing:
                self._report_existing(existing, key)
            return
        finally:
            body.close()
        result.snapshot = f"s3://{self.plan.bucket}/{key}"
        result.manifest_version, result.manifest_sha256 = written.version_id, written.sha256

    def _note_multipart(self, reader: SourceReader, obj: SourceObject) -> None:
        """Mark the plan before this invocation's first multipart copy: if it dies midway, the upload is
        left incomplete, and the next run of the plan aborts it."""
        if obj.size > getattr(reader, "multipart_threshold", float("inf")):
            self._mark_uploading()

    def _mark_uploading(self) -> None:
        if not self._marked_uploading:
            checkpoints.mark_uploading(self.s3, self.plan.bucket, self.plan.name, self.backup_id)
            self._marked_uploading = True

    def _finish_run(self, meta: checkpoints.PlanMeta) -> None:
        """After the manifest: drop this run's checkpoints, abort uploads that died with an earlier run."""
        # The listing of the plan's snapshots ran before anything else: one more LIST in a row, per page.
        self.list_requests += meta.pages
        self.list_depth += meta.pages
        if self._checkpoints.saved:
            self._checkpoints.clear()
        markers = list(meta.uploading)
        if self._marked_uploading:
            markers.append(checkpoints.uploading_key(self.plan.name, self.backup_id))
        if not markers:
            return
        try:
            checkpoints.abort_stale_uploads(
                self.s3, self.plan.bucket, DATA_PREFIX, before=self._invocation_started, markers=sorted(set(markers))
            )
        except (ClientError, BotoCoreError) as exc:
            # The snapshot is written and complete; the markers stay, so the next run tries again.
            logger.warning("plan %s: could not abort stale multipart uploads: %s", self.plan.name, describe_error(exc))

    def _report_existing(self, manifest: Manifest, key: str) -> None:
        header = manifest.header
        result = self.result
        result.copied = header.get("copied", 0)
        result.unchanged = header.get("unchanged", 0)
        result.failed = header.get("failed", 0)
        result.objects = header.get("objects", 0)
        result.bytes = header.get("bytes", 0)
        result.deleted = header.get("deleted", 0)
        result.deletions_held_back = header.get("held_deletions", 0)
        result.sources = header.get("sources", {})
        result.snapshot = f"s3://{self.plan.bucket}/{key}"
        result.manifest_version, result.manifest_sha256 = manifest.version_id, manifest.sha256
        result.status = "PARTIAL" if (result.failed or result.deletions_held_back) else "SUCCEEDED"

    def _back_up_source(
        self,
        source: Source,
        previous: Iterator[Entry],
        writer: ManifestWriter,
        pool: ThreadPoolExecutor,
        index: int = 0,
        start_after: str | None = None,
    ) -> None:
        reader = self.reader_factory(source)
        if hasattr(reader, "attach"):
            reader.attach(self._table_run(source))
        # A resumed source keeps counting where the checkpoint left off.
        stats = self.result.sources.get(source.name) or {
            "type": source.type, "objects": 0, "copied": 0, "previous": 0, "vanished": 0
        }
        before = dict(stats)
        self.result.sources[source.name] = stats
        try:
            batch: list[Action] = []
            # A full batch's copies start at once, and the batch before it is written while they run: the
            # pool never drains between batches, and the next listing page is read while copies are in flight.
            waiting: tuple[list[Action], dict[int, Future[Stored]]] | None = None
            listing = checkpoints.list_after(reader, start_after, previous_pages=self._previous_pages(reader, previous))
            for action in merge(checkpoints.skip_through(previous, start_after), listing):
                batch.append(action)
                if len(batch) >= self.batch_size:
                    submitted = (batch, self._submit(batch, reader, pool))
                    batch = []
                    if waiting is not None:
                        self._flush(waiting[0], reader, writer, pool, stats, waiting[1])
                        if self._running_out():
                            # Finish what is in flight, so nothing is copied again by the next invocation.
                            self._flush(submitted[0], reader, writer, pool, stats, submitted[1])
                            self._maybe_suspend(writer, index, last_key(submitted[0]))
                    waiting = submitted
            if waiting is not None:
                self._flush(waiting[0], reader, writer, pool, stats, waiting[1])
                self._maybe_suspend(writer, index, last_key(waiting[0]))
            self._flush(batch, reader, writer, pool, stats)
            if hasattr(reader, "item_count"):
                stats["items"] = reader.item_count
            if getattr(reader, "table_schema", None):
                stats["table_schema"] = reader.table_schema
        except ReaderSuspended as stopped:
            # The reader keeps its own progress: the plan stops before this source, whose counts start again
            # where this invocation found them.
            self.result.sources[source.name] = before
            self._checkpoint = self._save_checkpoint(writer, index, start_after)
            raise checkpoints.Suspended(f"plan {self.plan.name}: {stopped}") from stopped
        finally:
            self.list_requests += getattr(reader, "listing_pages", 0)
            self.list_depth += getattr(reader, "listing_depth", 0)
            self.list_ranges = max(self.list_ranges, getattr(reader, "listing_ranges", 0))
            reader.close()
        self.result.sources[source.name] = stats
        self._warn_not_copied(source.name, stats)

    def _table_run(self, source: Source) -> TableRun:
        """What a table reader keeps across invocations, and where: under this run's checkpoints."""
        return TableRun(
            bucket=self.plan.bucket,
            prefix=f"{self._checkpoints.prefix}table-{source.name}/",
            backup_id=self.backup_id,
            running_out=self._running_out if self.budget is not None else None,
            before_multipart=self._mark_uploading,
        )

    @staticmethod
    def _previous_pages(reader: SourceReader, previous: Iterator[Entry]) -> PageMarks | None:
        """Where the source's keys were in the previous snapshot, for readers that list in ranges."""
        page_size = getattr(reader, "page_size", None)
        if page_size is None or not isinstance(previous, SourceEntries):
            return None
        return previous.page_marks(page_size)

    def _warn_not_copied(self, source: str, stats: dict[str, Any]) -> None:
        """One warning per kind of object left out on purpose: how many, and the first few keys."""
        for kind, what in NOT_COPIED.items():
            count = int(stats.get(kind, 0))
            if not count:
                continue
            keys = self._not_copied.get(f"{source}:{kind}", [])
            shown = ", ".join(keys[:10]) + (" ..." if count > len(keys[:10]) else "")
            self.result.warnings.append(f"source '{source}': {count} object(s) {what}: {shown}")

    def _submit(self, batch: list[Action], reader: SourceReader, pool: ThreadPoolExecutor) -> dict[int, Future[Stored]]:
        """Start the copies of a batch's new and changed objects."""
        futures: dict[int, Future[Stored]] = {}
        for index, action in enumerate(batch):
            cur, prev = action.current, action.previous
            if cur is not None and (prev is None or prev.identity != cur.identity) and not self.dry_run:
                self._note_multipart(reader, cur)
                futures[index] = pool.submit(reader.store, cur, self.plan.bucket, data_key(reader.source.name, cur.key))
        return futures

    def _flush(
        self,
        batch: list[Action],
        reader: SourceReader,
        writer: ManifestWriter,
        pool: ThreadPoolExecutor,
        stats: dict[str, Any],
        futures: dict[int, Future[Stored]] | None = None,
    ) -> None:
        """Write a batch's entries in key order, once its copies (started by `_submit`) are done."""
        result = self.result
        source = reader.source
        if futures is None:
            futures = self._submit(batch, reader, pool)
        for index, action in enumerate(batch):
            cur, prev = action.current, action.previous
            if prev is not None:
                stats["previous"] = stats.get("previous", 0) + 1
            if cur is None:
                assert prev is not None
                # Gone from the source: a deletion candidate, decided once the whole plan is compared.
                stats["vanished"] = stats.get("vanished", 0) + 1
                writer.add(Entry(**{**prev.__dict__, "held": True}))
                continue
            stats["objects"] += 1
            if prev is not None and prev.identity == cur.identity:
                result.unchanged += 1
                writer.add(Entry(**{**prev.__dict__, "held": False}))
                continue
            if self.dry_run:
                result.copied += 1
                result.bytes_copied += cur.size
                writer.add(Entry(source.name, cur.key, "", cur.size, "", cur.identity))
                continue
            try:
                stored = futures[index].result()
            except NotCopied as skipped:
                # Left out on purpose (a warning, not a failure); an older version stays in the snapshot.
                stats[skipped.kind] = stats.get(skipped.kind, 0) + 1
                self._not_copied.setdefault(f"{source.name}:{skipped.kind}", []).append(cur.key)
                if prev is not None:
                    writer.add(Entry(**{**prev.__dict__, "held": False}))
                continue
            except (HistoryNotKept, ReaderSuspended):
                raise
            except Exception as exc:
                result.failed += 1
                if len(result.errors) < 20:
                    result.errors.append(f"{source.name}/{cur.key}: {describe_error(exc)}")
                if prev is not None:
                    # The older version is still in the bucket: the snapshot keeps pointing at it.
                    writer.add(Entry(**{**prev.__dict__, "held": False}))
                continue
            result.copied += 1
            stats["copied"] += 1
            result.bytes_copied += stored.size
            writer.add(
                Entry(
                    source=source.name,
                    key=cur.key,
                    version_id=stored.version_id,
                    size=stored.size,
                    etag=stored.etag,
                    identity=stored.identity,
                    checksum=stored.checksum,
                    sha256=stored.sha256,
                    item_count=stored.item_count,
                )
            )

    def _decide_deletions(self, writer: ManifestWriter, meta: checkpoints.PlanMeta) -> bool:
        """True when the deletions must be held back (see deletions.py). An allowed run lets them go, and
        says what it let through."""
        pending = writer.pending_deletions
        if not pending:
            return False
        window = deletions.deleted_in_window(self.s3, self.plan, meta.manifests, self.backup_id)
        reasons = deletions.review(self.plan, self.result.sources, window)
        if not reasons:
            return False
        if self.allow_deletions:
            self.result.warnings.append(
                f"{pending} deletion(s) beyond the guard's limits ALLOWED for this backup: " + "; ".join(reasons)
            )
            self.result.deletions_allowed = pending
            return False
        self.result.deletions_held_back = pending
        self.result.warnings.append(deletions.held_back_warning(reasons, pending))
        return True

    def _apply_deletions(self, writer: ManifestWriter, pool: ThreadPoolExecutor) -> None:
        """Put a delete marker on each vanished object. Its versions stay; older snapshots still restore it."""
        outcome = deletions.place_delete_markers(self.s3, self.plan.bucket, (entry.data_key for entry in writer.pending()))
        self.result.deleted += outcome.deleted
        for key, reason in outcome.refused.items():
            self._undeleted.add(key)
            self.result.failed += 1
            if len(self.result.errors) < 20:
                self.result.errors.append(f"delete marker for {key}: {reason}")


def back_up_plan(
    plan: Plan,
    clients: Any,
    backup_id: str,
    max_workers: int = 32,
    dry_run: bool = False,
    budget: checkpoints.TimeBudget | None = None,
    allow_deletions: bool = False,
    base: Base | None = None,
    pruned: Collection[str] = (),
) -> PlanResult:
    """Back up one plan with readers built on `clients` (an `aws.Clients`)."""

    def factory(source: Source) -> SourceReader:
        return make_reader(source, clients.s3, clients.dynamodb)

    return PlanBackup(
        plan, clients.s3, backup_id, factory, max_workers=max_workers, dry_run=dry_run, budget=budget,
        allow_deletions=allow_deletions, base=base, pruned=pruned,
    ).run()

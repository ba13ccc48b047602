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
from functools import partial
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.backup import authorship, checkpoints, deletions
from chalicelib.backup.base import Base, open_base
from chalicelib.backup.compare import Action, PreviousSnapshot, SourceEntries, last_key, merge
from chalicelib.backup.copying import BatchCopier
from chalicelib.backup.packing import PackFailed, Packer
from chalicelib.backup.listing import PageMarks
from chalicelib.backup.source_reader import Fetched, ReaderRun, ReaderSuspended, SourceReader, Stored
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, load_snapshot, manifest_key, put_manifest
from chalicelib.catalog import run_keys
from chalicelib.catalog.records import BackupStatus, PlanResult, backup_time
from chalicelib.jobs.budget import Budget
from chalicelib.errors import AlreadyExists, BackupError, HistoryNotKept, SourceError, Tampered, describe_error
from chalicelib.layout import DATA_PREFIX
from chalicelib.plans import Plan, Source
from chalicelib.retention import MAX_BACKUP_DAYS
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)


class Abandoned(BackupError):
    """A plan run still going MAX_BACKUP_DAYS after its backup started: it writes no snapshot."""


BATCH_SIZE = 1000
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
        budget: Budget | None = None,
        allow_deletions: bool = False,
        base: Base | None = None,
        pruned: Collection[str] = (),
        run_key: str | None = None,
    ) -> None:
        self.plan = plan
        # The run's key: its manifest carries the run's proof, and a manifest found at its key is adopted only
        # with that proof (backup/authorship.py).
        self.run_key = run_key
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
        # The batches' copies and their manifest entries (copying.py).
        lifecycle = plan.lifecycle
        packer = (
            Packer(s3, plan.bucket, backup_id, lifecycle.pack_threshold_bytes, lifecycle.pack_target_bytes)
            if lifecycle.small_objects == "pack"
            else None
        )
        self.copier = BatchCopier(
            plan.bucket, self.result, dry_run, self._mark_uploading, bucket_kms=plan.kms_key_id is not None, packer=packer
        )
        # Data keys whose delete marker S3 refused: kept as held entries so the next backup retries them.
        self._undeleted: set[str] = set()
        # The invocation's remaining time (None: no limit). Short of time, the run stops at a checkpoint.
        self.budget = budget
        self._checkpoints = checkpoints.CheckpointStore(s3, plan.bucket, plan.name, backup_id, run_key)
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
            result.status = BackupStatus.RUNNING
            result.finished_at = None
            return result
        except (SourceError, HistoryNotKept, Abandoned, PackFailed) as exc:
            result.status = BackupStatus.FAILED
            result.errors.append(str(exc))
        except Tampered as exc:
            # Told by the tampering alert when the backup ends (service.py); the manifest is not this run's.
            result.status = BackupStatus.FAILED
            result.errors.append(f"TAMPERING: {exc}")
        except (ClientError, BotoCoreError) as exc:
            result.status = BackupStatus.FAILED
            result.errors.append(f"backup bucket {self.plan.bucket}: {describe_error(exc)}")
        except Exception as exc:  # a bug must fail this plan, not the other plans of the backup
            logger.exception("plan %s failed", self.plan.name)
            result.status = BackupStatus.FAILED
            result.errors.append(f"internal error: {type(exc).__name__}: {exc}")
        result.finished_at = isoformat(utcnow())
        return result

    def _run(self) -> None:
        result = self.result
        key = manifest_key(self.plan.name, self.backup_id)
        meta = checkpoints.read_plan_meta(self.s3, self.plan, self.max_workers)
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
        if previous is not None:
            self.copier.base_name = f"the snapshot of backup {previous.header.get('backup_id')}"
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
                self.copier.seal(writer)
                hold = self._decide_deletions(writer.pending_deletions, meta)
                if not hold and not self.dry_run:
                    self._apply_deletions(writer, pool)
            result.objects = writer.objects
            result.bytes = writer.bytes
            if self.dry_run:
                # Nothing was copied, deleted or recorded: the counts say what a backup would do.
                if not hold:
                    result.deleted = writer.pending_deletions
                result.status = BackupStatus.PARTIAL if (result.deletions_held_back or result.errors) else BackupStatus.SUCCEEDED
                self._finish_run(meta)
                return
            self._put_snapshot(writer, hold)
            self._finish_run(meta)
        finally:
            self.copier.close()
            writer.close()
            if previous is not None:
                previous.close()
        result.status = BackupStatus.PARTIAL if (result.failed or result.deletions_held_back or result.errors) else BackupStatus.SUCCEEDED

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
        """Save where this run is (the partial manifest and counts), for the next invocation to resume. The
        open pack is stored first: a checkpoint names only stored versions."""
        self.copier.seal(writer)
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
        run_key = self.run_key
        prove = None if run_key is None else partial(run_keys.manifest_proof, run_key, self.plan.name, self.backup_id)
        body = writer.finish(header, keep_held=hold, undeleted=self._undeleted, prove=prove)
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
        """The snapshot of this plan already written for this backup, as the plan's result: only if this run
        wrote it (`Tampered` otherwise: the plan fails, and the tampering is told)."""
        header = manifest.header
        if self.run_key is not None:
            problem = authorship.manifest_problem(header, manifest.lines_sha256(), self.plan.name, self.backup_id, self.run_key)
            if problem is not None:
                raise Tampered(problem)
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
        result.status = BackupStatus.PARTIAL if (result.failed or result.deletions_held_back) else BackupStatus.SUCCEEDED

    def _back_up_source(
        self,
        source: Source,
        previous: Iterator[Entry],
        writer: ManifestWriter,
        pool: ThreadPoolExecutor,
        index: int = 0,
        start_after: str | None = None,
        stop_key: str | None = None,
    ) -> None:
        """Compare one source with its previous entries and copy what changed, from just after `start_after`
        (a resumed run) up to `stop_key` (a range of a split plan)."""
        reader = self.reader_factory(source)
        reader.attach(self._reader_run(source))
        # A resumed source keeps counting where the checkpoint left off.
        stats = self.result.sources.get(source.name) or {
            "type": source.type, "objects": 0, "copied": 0, "previous": 0, "vanished": 0
        }
        before = dict(stats)
        self.result.sources[source.name] = stats
        copier = self.copier
        try:
            batch: list[Action] = []
            # A full batch's copies start at once, and the batch before it is written while they run: the
            # pool never drains between batches, and the next listing page is read while copies are in flight.
            waiting: tuple[list[Action], dict[int, Future[Stored | Fetched]]] | None = None
            listing = checkpoints.list_after(reader, start_after, stop_key, self._previous_pages(reader, previous))
            for action in merge(checkpoints.skip_through(previous, start_after), listing):
                batch.append(action)
                if len(batch) >= self.batch_size:
                    submitted = (batch, copier.submit(batch, reader, pool))
                    batch = []
                    if waiting is not None:
                        copier.flush(waiting[0], reader, writer, pool, stats, waiting[1])
                        if self._running_out():
                            # Finish what is in flight, so nothing is copied again by the next invocation.
                            copier.flush(submitted[0], reader, writer, pool, stats, submitted[1])
                            self._maybe_suspend(writer, index, last_key(submitted[0]))
                    waiting = submitted
            if waiting is not None:
                copier.flush(waiting[0], reader, writer, pool, stats, waiting[1])
                self._maybe_suspend(writer, index, last_key(waiting[0]))
            copier.flush(batch, reader, writer, pool, stats)
            counted = reader.stats()
            if counted.item_count is not None:
                stats["items"] = counted.item_count
            if counted.table_schema:
                stats["table_schema"] = counted.table_schema
        except ReaderSuspended as stopped:
            # The reader keeps its own progress: the plan stops before this source, whose counts start again
            # where this invocation found them.
            self.result.sources[source.name] = before
            self._checkpoint = self._save_checkpoint(writer, index, start_after)
            raise checkpoints.Suspended(f"plan {self.plan.name}: {stopped}") from stopped
        finally:
            listed = reader.stats()
            self.list_requests += listed.listing_pages
            self.list_depth += listed.listing_depth
            self.list_ranges = max(self.list_ranges, listed.listing_ranges)
            reader.close()
        self.result.sources[source.name] = stats
        copier.warn_not_copied(source.name, stats)

    def _reader_run(self, source: Source) -> ReaderRun:
        """What a reader keeps across invocations, and where: under this run's checkpoints."""
        return ReaderRun(
            bucket=self.plan.bucket,
            prefix=f"{self._checkpoints.prefix}table-{source.name}/",
            backup_id=self.backup_id,
            running_out=self._running_out if self.budget is not None else None,
            before_multipart=self._mark_uploading,
            run_key=self.run_key,
        )

    @staticmethod
    def _previous_pages(reader: SourceReader, previous: Iterator[Entry]) -> PageMarks | None:
        """Where the source's keys were in the previous snapshot, for readers that list in ranges."""
        if reader.page_size is None or not isinstance(previous, SourceEntries):
            return None
        return previous.page_marks(reader.page_size)

    def _decide_deletions(self, pending: int, meta: checkpoints.PlanMeta) -> bool:
        """True when the deletions must be held back (deletions.py)."""
        return deletions.decide(self.s3, self.plan, self.result, pending, meta.manifests, self.backup_id, self.allow_deletions)

    def _apply_deletions(self, writer: ManifestWriter, pool: ThreadPoolExecutor) -> None:
        """Put a delete marker on each vanished object. Its versions stay; older snapshots still restore it."""
        # A packed object has no key of its own to hide: the snapshot leaving it out is its deletion.
        packed = 0

        def keys() -> Iterator[str]:
            nonlocal packed
            for entry in writer.pending():
                if entry.packed:
                    packed += 1
                else:
                    yield entry.data_key

        outcome = deletions.place_delete_markers(self.s3, self.plan.bucket, keys())
        self.result.deleted += outcome.deleted + packed
        for key, reason in outcome.refused.items():
            self._undeleted.add(key)
            self.result.failed += 1
            if len(self.result.errors) < 20:
                self.result.errors.append(f"delete marker for {key}: {reason}")


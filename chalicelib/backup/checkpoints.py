"""Backups longer than one Lambda invocation: the time budget, checkpoints in S3, and continuations.

A plan run watches the invocation's remaining time. When less than the reserve is left (60 s by default) it
stops between two batches, saves a checkpoint and has the worker invoked again, asynchronously, with the
same backup id. The next invocation reads the checkpoint and carries on where the listing stopped.

Checkpoint layout, in the plan's backup bucket (the `meta/` prefix, outside the lifecycle rules):

    meta/snapshots/<plan>/<backup_id>.checkpoint.json                   the latest checkpoint
    meta/checkpoints/<plan>/<backup_id>/partial-<seq>-<token>.jsonl.gz  the manifest so far
    meta/snapshots/<plan>/<backup_id>.uploading                         a run of this backup began multipart copies

The checkpoint state and the upload marker sit next to the manifests because every plan run lists that
prefix anyway (to find the previous snapshot): a run learns whether to resume, and whether a crashed run
left multipart uploads behind, without a single extra request.

A checkpoint is the partial manifest (every entry handled so far, deletion candidates included), the index
of the source being worked on, the last key handled in it, and the counts. The partial manifest is written
first under a name unique to the invocation, then the state pointing at it, so a state always describes
one consistent point even when two invocations of the same backup race: every entry in it names a version
that was written before the state was. Everything after the last checkpoint is redone by the next run; the
checkpoint prefix is deleted once the plan's manifest is written.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import s3docs
from chalicelib.backup.listing import PageMarks
from chalicelib.backup.source_reader import SourceObject, SourceReader
from chalicelib.catalog import run_keys
from chalicelib.catalog.manifests import MANIFEST_SUFFIX, Manifest, ManifestWriter, file_sha256
from chalicelib.catalog.records import PlanResult
from chalicelib.deploy import drift
from chalicelib.errors import Tampered
from chalicelib.layout import CHECKPOINTS_PREFIX, PARTIAL_MANIFEST_START, SNAPSHOTS_PREFIX
from chalicelib.plans import Plan

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".checkpoint.json"
UPLOADING_SUFFIX = ".uploading"


class Suspended(Exception):
    """A plan run stopped at a checkpoint; a continuation carries it on."""


@dataclass
class Checkpoint:
    """Where a plan run stopped. Entries up to (`source_index`, `last_key`) are in the partial manifest."""

    plan: str
    backup_id: str
    seq: int
    # Index in the plan's sources of the source being worked on; `last_key` None: none of it done yet.
    source_index: int
    last_key: str | None
    partial_key: str
    counters: dict[str, int] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # When the plan run first started (ISO): uploads begun before it are stale.
    started_at: str | None = None
    invocations: int = 1
    # A range of a split plan that reached its end (chalicelib/backup/ranges.py).
    done: bool = False
    # The partial manifest's SHA-256, and the run's proof over the whole state (catalog/run_keys.py): a run
    # with a key resumes only from a state it wrote, and only the partial manifest that state names.
    partial_sha256: str | None = None
    run_proof: str | None = None

    def apply_to(self, result: PlanResult) -> None:
        counters = self.counters
        result.copied = counters.get("copied", 0)
        result.unchanged = counters.get("unchanged", 0)
        result.deleted = counters.get("deleted", 0)
        result.failed = counters.get("failed", 0)
        result.bytes_copied = counters.get("bytes_copied", 0)
        result.sources = {name: dict(stats) for name, stats in self.sources.items()}
        result.errors = list(self.errors)
        if self.started_at:
            result.started_at = self.started_at

    @staticmethod
    def counters_of(result: PlanResult) -> dict[str, int]:
        """The counters of a PlanResult carried from one invocation to the next."""
        return {
            "copied": result.copied,
            "unchanged": result.unchanged,
            "deleted": result.deleted,
            "failed": result.failed,
            "bytes_copied": result.bytes_copied,
        }


class CheckpointStore:
    """Checkpoints of one plan of one backup."""

    def __init__(self, s3: Any, bucket: str, plan: str, backup_id: str, run_key: str | None = None) -> None:
        self.s3 = s3
        # The run's key: what is saved carries its proof, and what is loaded must (None: a backup recorded
        # before runs had keys).
        self.run_key = run_key
        self.bucket = bucket
        self.plan = plan
        self.backup_id = backup_id
        self.prefix = f"{CHECKPOINTS_PREFIX}{plan}/{backup_id}/"
        # Distinguishes this invocation's partial manifests from a concurrent duplicate's.
        self.token = secrets.token_hex(4)
        self.saved = False

    @property
    def state_key(self) -> str:
        return checkpoint_key(self.plan, self.backup_id)

    def load(self) -> Checkpoint | None:
        response = s3docs.get(self.s3, self.bucket, self.state_key)
        if response is None:
            return None
        try:
            data = json.loads(response["Body"].read())
            checkpoint = Checkpoint(**s3docs.known_fields(Checkpoint, data))
        except (ValueError, TypeError) as exc:
            logger.warning("checkpoint %s is unreadable (%s): the run starts over", self.state_key, exc)
            return None
        proven = run_keys.state_proven(self.run_key, self.state_key, data)
        if proven is None:
            # Saved by a version before checkpoints carried the run's proof (a run under way at an upgrade):
            # not resumed from, and not adopted either; the run starts over.
            logger.warning("checkpoint %s carries no proof (an earlier version's): the run starts over", self.state_key)
            return None
        if not proven:
            raise Tampered(
                f"the checkpoint s3://{self.bucket}/{self.state_key} was not written by the backup's run: it is not "
                "resumed from, and the plan fails"
            )
        problem = self._implausible(checkpoint)
        if problem:
            # Resuming would build the snapshot on entries from elsewhere; starting over costs only time.
            logger.warning("checkpoint %s is not this run's (%s): the run starts over", self.state_key, problem)
            return None
        return checkpoint

    def _implausible(self, checkpoint: Checkpoint) -> str | None:
        if (checkpoint.plan, checkpoint.backup_id) != (self.plan, self.backup_id):
            return f"it names plan {checkpoint.plan!r} of backup {checkpoint.backup_id!r}"
        if not isinstance(checkpoint.partial_key, str) or not checkpoint.partial_key.startswith(self.prefix):
            return f"its partial manifest {checkpoint.partial_key!r} is outside {self.prefix}"
        if not isinstance(checkpoint.seq, int) or checkpoint.seq < 1 or not isinstance(checkpoint.source_index, int):
            return "its position is not a position"
        return None

    def save(self, checkpoint: Checkpoint, writer: ManifestWriter) -> None:
        """The partial manifest first, then the state that points at it."""
        checkpoint.partial_key = f"{self.prefix}{PARTIAL_MANIFEST_START}{checkpoint.seq:06d}-{self.token}{MANIFEST_SUFFIX}"
        body = writer.finish({"plan": self.plan, "backup_id": self.backup_id, "checkpoint": checkpoint.seq}, keep_held=True)
        try:
            checkpoint.partial_sha256 = file_sha256(body)
            self.s3.put_object(Bucket=self.bucket, Key=checkpoint.partial_key, Body=body, ContentType="application/gzip")
        finally:
            body.close()
        checkpoint.run_proof = None
        state = run_keys.prove_state(self.run_key, self.state_key, asdict(checkpoint))
        checkpoint.run_proof = state["run_proof"]
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.state_key,
            Body=json.dumps(state, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
        )
        self.saved = True
        logger.info(
            "plan %s of backup %s: checkpoint %d at source #%d after %r",
            self.plan, self.backup_id, checkpoint.seq, checkpoint.source_index, checkpoint.last_key,
        )

    def restore(self, checkpoint: Checkpoint) -> ManifestWriter:
        """A manifest writer holding the checkpoint's entries, ready to take the next ones."""
        writer = ManifestWriter()
        try:
            with self.partial(checkpoint) as partial:
                for entry in partial.entries(include_held=True):
                    writer.add(entry)
        except BaseException:
            writer.close()
            raise
        self.saved = True
        return writer

    def partial(self, checkpoint: Checkpoint) -> Manifest:
        """The partial manifest a checkpoint names; with the run's key, only the bytes it saved (`Tampered`
        for any others)."""
        try:
            return Manifest.download(
                self.s3, self.bucket, checkpoint.partial_key, sha256=checkpoint.partial_sha256 if self.run_key else None
            )
        except Tampered as exc:
            raise Tampered(f"the partial manifest of a checkpoint of plan {self.plan} was changed: {exc}") from exc

    def clear(self) -> None:
        """Delete this plan run's checkpoints (after its manifest is written). A failure only leaves litter."""
        try:
            keys: list[str] = [self.state_key]
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            for start in range(0, len(keys), 1000):
                self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True},
                )
        except ClientError as exc:
            logger.warning("could not delete the checkpoints under s3://%s/%s: %s", self.bucket, self.prefix, exc)


def checkpoint_key(plan: str, backup_id: str) -> str:
    return f"{SNAPSHOTS_PREFIX}{plan}/{backup_id}{CHECKPOINT_SUFFIX}"


def uploading_key(plan: str, backup_id: str) -> str:
    return f"{SNAPSHOTS_PREFIX}{plan}/{backup_id}{UPLOADING_SUFFIX}"


@dataclass
class PlanMeta:
    """What one listing of `meta/snapshots/<plan>/` tells a plan run."""

    manifests: list[str]
    # Each manifest key's current ETag (what the listing says it holds now).
    etags: dict[str, str]
    # Backup ids with a saved checkpoint.
    checkpoints: set[str]
    # Upload markers: key -> last modified.
    uploading: dict[str, datetime]
    # LIST requests this listing of the prefix took.
    pages: int = 0


def scan_plan_meta(s3: Any, bucket: str, plan: str) -> PlanMeta:
    """Manifest keys oldest first (backup ids start with their UTC time), checkpoints and upload markers."""
    prefix = f"{SNAPSHOTS_PREFIX}{plan}/"
    meta = PlanMeta([], {}, set(), {})
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        meta.pages += 1
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith(MANIFEST_SUFFIX):
                meta.manifests.append(key)
                meta.etags[key] = item["ETag"]
            elif key.endswith(CHECKPOINT_SUFFIX):
                meta.checkpoints.add(key[len(prefix):-len(CHECKPOINT_SUFFIX)])
            elif key.endswith(UPLOADING_SUFFIX):
                meta.uploading[key] = item["LastModified"]
    meta.manifests.sort()
    return meta


def read_plan_meta(s3: Any, plan: Plan, max_workers: int) -> PlanMeta:
    """The plan's snapshots and checkpoints, read while the bucket's settings are checked: two round trips
    in the time of one (a first backup's only fixed cost besides the manifest). Nothing is written before
    the check has answered: a bucket that does not keep every version gets nothing (`HistoryNotKept`). With
    one worker, one request at a time, in a fixed order."""
    if max_workers <= 1:
        drift.check_history_kept(s3, plan)
        return scan_plan_meta(s3, plan.bucket, plan.name)
    with ThreadPoolExecutor(max_workers=1) as pool:
        kept = pool.submit(drift.check_history_kept, s3, plan)
        try:
            meta = scan_plan_meta(s3, plan.bucket, plan.name)
        except Exception:
            # The check's verdict comes first, whatever the listing's error. (Anything else, the process
            # going down, propagates as it is, once the check has ended.)
            kept.result()
            raise
        kept.result()
    return meta


def mark_uploading(s3: Any, bucket: str, plan: str, backup_id: str) -> None:
    """Before the first multipart copy of an invocation: if the invocation dies, the next run cleans up."""
    s3.put_object(Bucket=bucket, Key=uploading_key(plan, backup_id), Body=b"")


def abort_stale_uploads(s3: Any, bucket: str, prefix: str, before: datetime, markers: list[str]) -> int:
    """Abort multipart uploads under `prefix` begun before `before` (by runs that are over), then drop the
    markers that asked for it. Returns how many uploads were aborted.

    A run of another backup of the same plan that is still going and began an upload before `before`
    loses that copy: it fails, the object is reported failed and taken by the next backup. Nothing that is
    in a snapshot is touched: an incomplete upload is not an object version.
    """
    aborted = 0
    paginator = s3.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            if upload["Initiated"] >= before:
                continue
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise
    for start in range(0, len(markers), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in markers[start:start + 1000]], "Quiet": True}
        )
    if aborted:
        logger.info("aborted %d stale multipart upload(s) under s3://%s/%s", aborted, bucket, prefix)
    return aborted


def drive(invoker_queue: list[dict[str, Any]], handle: Callable[[dict[str, Any]], Any], limit: int = 10_000) -> int:
    """Run queued continuations until none is left (for tests and local runs); returns how many ran."""
    count = 0
    while invoker_queue:
        if count >= limit:
            raise RuntimeError(f"more than {limit} continuations: the backup is not making progress")
        handle(invoker_queue.pop(0))
        count += 1
    return count


def list_after(
    reader: SourceReader, start_after: str | None, stop_key: str | None = None, previous_pages: PageMarks | None = None
) -> Iterator[SourceObject]:
    """A reader's listing of the keys after `start_after` (a resumed run) and up to `stop_key` (a range of a
    split plan). S3 readers start and stop the listing there; what a reader lists outside the bounds (a
    folder or a table is read whole) is dropped here."""
    for obj in reader.list_objects(start_after=start_after, stop_key=stop_key, previous_pages=previous_pages):
        if start_after is not None and obj.key <= start_after:
            continue
        if stop_key is not None and obj.key > stop_key:
            return
        yield obj


def skip_through(entries: Iterator[Any], start_after: str | None) -> Iterator[Any]:
    """Previous-snapshot entries after `start_after` (those up to it are already in the partial manifest)."""
    for entry in entries:
        if start_after is None or entry.key > start_after:
            yield entry

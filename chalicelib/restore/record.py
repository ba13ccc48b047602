"""The record of a restore, which is also its checkpoint: one JSON document per restore in the catalog bucket
(`meta/restores/<inverted time>_<restore_id>.json`), kept by the job framework's store
(chalicelib/jobs/store.py: created only if absent, then replaced only as the version last read), and the
queue of restores not known to be finished (`meta/restore-queue/<restore_id>`, one empty object each: the
hourly check lists only these). An entry leaves the queue when the hourly check finds its restore finished,
never by the restore's own last write: of two invocations of one pass, the one whose write loses must not
take a restore that still runs out of the queue, which the prune reads to keep what restores read
(catalog/restoring.py, which passes finished restores over)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.catalog.restoring import FINISHED, RestoreStatus, restore_record_key
from chalicelib.errors import AlreadyExists
from chalicelib.jobs.store import JobKind, JobStore
from chalicelib.jobs.ids import job_time
from chalicelib.layout import RESTORE_QUEUE_PREFIX, RESTORES_PREFIX, VAULT_RESTORE_QUEUE_PREFIX, VAULT_RESTORES_PREFIX
from chalicelib.restore.requests import DEFAULT_TIER, Target
from chalicelib.s3docs import inverted_key, known_fields
from chalicelib.times import isoformat, utcnow

__all__ = [
    "FINISHED", "MAX_FAILURES_LISTED", "RestoreRecord", "RestoreStatus", "RestoreStore", "VaultRestoreStore", "restore_record_key", "settle", "summary",
]

STATUSES = tuple(RestoreStatus)
MAX_FAILURES_LISTED = 100


@dataclass
class RestoreRecord:
    restore_id: str
    backup_id: str
    plan: str
    target: dict[str, Any]
    prefix: str | None = None
    keys: list[str] | None = None
    overwrite: bool = False
    tier: str = DEFAULT_TIER
    status: RestoreStatus = RestoreStatus.RUNNING
    total: int = 0
    bytes_total: int = 0
    restored: int = 0
    bytes_restored: int = 0
    pending_thaw: int = 0
    failed: int = 0
    expected_thaw_completion: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    # The first pass over the selection is done; later passes only look at `pending`.
    scanned: bool = False
    # Where a first pass too long for one invocation stopped: the (source, key) of the last entry it finished
    # (the selection is in the snapshot's order); the next invocation carries on after it.
    done_through: list[str] | None = None
    passes: int = 0
    tables_created: list[str] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    # A later pass too long for one invocation: the first `pending_checked` of `pending` were looked at in
    # this pass (and still wait); the next invocation carries on with the rest.
    pending_checked: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A dry run answers with a quote instead of restoring.
    dry_run: bool = False
    quote: dict[str, Any] | None = None
    # Why the worker refused the request (a conflict at the target, keys not in the snapshot, ...).
    refused: str | None = None
    # A restore cut into parts worked at once (restore/parts.py): the whole one names its parts; a part names
    # the whole and its range of the selection, [after, through] as (source, key) (None: the start, the end).
    parts: list[str] = field(default_factory=list)
    part_of: str | None = None
    part_range: list[list[str] | None] | None = None
    # The snapshot had no pruned marker when looked at once this record existed: every prune keeps what it
    # names until the restore ends (catalog/restoring.py), so a marker written since does not stop it.
    snapshot_held: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestoreRecord:
        record = cls(**known_fields(cls, data))
        record.status = RestoreStatus(record.status)
        return record

    @property
    def target_spec(self) -> Target:
        return Target(**known_fields(Target, self.target))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def settle(record: RestoreRecord, pending: int, ready_by: str | None) -> None:
    """A pass has ended: the record's status from its counts, waiting while `pending` versions thaw (the
    last ready by `ready_by`), else finished."""
    record.pending_thaw = pending
    if pending:
        record.status = RestoreStatus.WAITING_FOR_THAW
        record.expected_thaw_completion = ready_by
        return
    record.expected_thaw_completion = None
    if record.failed == 0:
        record.status = RestoreStatus.SUCCEEDED
    elif record.restored:
        record.status = RestoreStatus.PARTIAL
    else:
        record.status = RestoreStatus.FAILED
    record.finished_at = isoformat(utcnow())


class RestoreStore(JobStore[RestoreRecord]):
    """Restore records and the queue of unfinished restores, in the catalog bucket."""

    kind = JobKind("restore", "restore_id", RESTORES_PREFIX, restore_record_key, RestoreRecord.from_dict)
    queue_prefix = RESTORE_QUEUE_PREFIX

    def create(self, record: RestoreRecord) -> str:
        """Record a new restore and queue it for the hourly check. `AlreadyExists` when it is recorded.
        The two writes go at once; a record that could not be written takes its queue entry away again."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            queued = pool.submit(self.enqueue, record.restore_id)
            try:
                etag = super().create(record)
            except AlreadyExists as exc:
                queued.result()
                raise AlreadyExists(f"restore {record.restore_id} already exists") from exc
            except Exception:
                queued.result()
                self.dequeue(record.restore_id)
                raise
            queued.result()
        return etag

    def enqueue(self, restore_id: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.queue_prefix + restore_id, Body=b"")

    def dequeue(self, restore_id: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.queue_prefix + restore_id)

    def unfinished(self) -> list[str]:
        """The ids in the queue (oldest first)."""
        ids: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.queue_prefix):
            ids.extend(item["Key"][len(self.queue_prefix):] for item in page.get("Contents", []))
        return ids


def vault_restore_record_key(restore_id: str) -> str:
    """`org-backup/vault-restores/<inverted time>_<restore_id>.json`. NotFound when `restore_id` is not a restore id."""
    return inverted_key(VAULT_RESTORES_PREFIX, job_time(restore_id, "restore"), restore_id)


class VaultRestoreStore(RestoreStore):
    """Restores from the vault run by the deployed functions, and their queue, in the stage's first restore
    bucket: the functions may write it, it is not the vault (whose policy lets them read only), and it does not
    go with the backup buckets, whose loss is why one restores from the vault. No prune reads this queue."""

    kind = JobKind("restore", "restore_id", VAULT_RESTORES_PREFIX, vault_restore_record_key, RestoreRecord.from_dict)
    queue_prefix = VAULT_RESTORE_QUEUE_PREFIX


def summary(record: RestoreRecord) -> dict[str, Any]:
    """A record as the API shows it (pending entries summarised, not listed version by version)."""
    data = record.to_dict()
    data.pop("pending")
    data["pending"] = [
        {"source": p["entry"]["source"], "key": p["entry"]["key"], "storage_class": p["storage_class"],
         "tier": p["tier"], "ready_by": p["ready_by"]}
        for p in record.pending[:100]
    ]
    return data

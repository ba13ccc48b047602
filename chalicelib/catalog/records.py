"""Backup records: one JSON document per backup run, kept in the catalog bucket's metadata prefix.

Keys are `meta/backups/<inverted time>_<backup_id>.json`. The inverted time makes S3's ascending listing
newest first, so a page of `GET /backups` reads one listing page and only the records it returns.

That record is the backup's working copy, rewritten while the backup runs. When the backup finishes, its
record is sealed: written once more under `meta/sealed/backups/<same name>`, created only if absent (and the
bucket policy refuses any other write there). Reads prefer the sealed record, so a finished backup's record
can no longer be changed by whoever can write the working copy. A record that is not JSON, or contradicts
itself (another backup's id, no plans, a sealed record still RUNNING, a snapshot of another backup), is
`Tampered`: reported, never trusted, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


from chalicelib import s3docs
from chalicelib.catalog import run_keys
from chalicelib.jobs.ids import is_job_id, job_time, new_job_id
from chalicelib.errors import AlreadyExists, NotFound, Tampered
from chalicelib.jobs.store import JobKind, JobStore
from chalicelib.layout import RECORDS_PREFIX, SEALED_RECORDS_PREFIX
from chalicelib.s3docs import get_bytes, inverted_key, inverted_ms, known_fields
from chalicelib.times import isoformat, utcnow

class BackupStatus(StrEnum):
    """A backup's status, and each plan's in it (a range of a split plan may also say `WAITING`, never
    recorded: ranges.py)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


# The statuses as a tuple, for modules that name them in messages and checks of a query.
STATUSES = tuple(BackupStatus)


def new_backup_id(moment: datetime | None = None, suffix: str | None = None) -> str:
    """`20261126T134735123Z-9f2c4a1b`: a job id (jobs/ids.py), sortable by time, unique by its random suffix.
    A scheduled run passes a fixed suffix so that the same schedule time always gives the same id."""
    return new_job_id(moment, suffix)


def scheduled_suffix(event_id: str | None) -> str:
    """The id part a scheduled run derives from its event's id (which EventBridge keeps across the deliveries
    of one event): a repeated delivery finds the same run, and nobody can know tomorrow's id today."""
    if not event_id:
        return "scheduled"
    return "scheduled-" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:16]


def is_scheduled_id(backup_id: str) -> bool:
    """Whether the id is a scheduled run's (its suffix is one `scheduled_suffix` gives)."""
    return is_job_id(backup_id) and backup_id.split("Z-", 1)[1].startswith("scheduled")


def backup_time(backup_id: str) -> datetime:
    return job_time(backup_id, "backup")


def is_backup_id(value: str) -> bool:
    return is_job_id(value)


def record_key(backup_id: str) -> str:
    return inverted_key(RECORDS_PREFIX, backup_time(backup_id), backup_id)


def records_listed_from(milliseconds: int) -> str:
    """The listing position (StartAfter) after which the records of backups started at `milliseconds` since
    the epoch or earlier come: record keys sort newest first."""
    return f"{RECORDS_PREFIX}{inverted_ms(milliseconds)}"


def sealed_key(backup_id: str) -> str:
    return SEALED_RECORDS_PREFIX + record_key(backup_id)[len(RECORDS_PREFIX):]


def backup_id_of_key(key: str) -> str:
    """The backup id in a record key (working or sealed)."""
    return key.rsplit("/", 1)[1].split("_", 1)[1].removesuffix(".json")


@dataclass
class PlanResult:
    plan: str
    status: str = BackupStatus.RUNNING
    copied: int = 0
    unchanged: int = 0
    deleted: int = 0
    deletions_held_back: int = 0
    # Deletions beyond the guard's limits that this run was allowed to make (allow_deletions).
    deletions_allowed: int = 0
    failed: int = 0
    bytes_copied: int = 0
    objects: int = 0
    bytes: int = 0
    snapshot: str | None = None
    # The manifest's version (as S3 answered its write) and the SHA-256 of its bytes: readers read exactly
    # that version and check the hash.
    manifest_version: str | None = None
    manifest_sha256: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Ways the plan's backup bucket no longer matches the plan (see drift.py).
    drift: list[str] = field(default_factory=list)
    # For a plan with a vault: the newest snapshot complete there, its lag, failed replications (vault_watch.py).
    vault: dict[str, Any] | None = None
    # The run's proof that it finished the plan as shown (catalog/run_keys.py); None before runs had keys.
    run_proof: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanResult:
        return cls(**known_fields(cls, data))


@dataclass
class BackupRecord:
    backup_id: str
    trigger: str
    plans: dict[str, PlanResult]
    status: str = BackupStatus.RUNNING
    started_at: str | None = None
    finished_at: str | None = None
    dry_run: bool = False
    # Plans whose deletions may pass the mass-deletion guard in this backup, as the request asked.
    allow_deletions: list[str] = field(default_factory=list)
    # When the record was sealed (set only in the sealed copy).
    sealed_at: str | None = None
    # When a worker last wrote the working copy (jobs.dispatch.worker_lost tells a lost worker by it).
    updated_at: str | None = None
    # What the weekly slice check found, in backups that ran it inline; it is now a job of its own with its
    # own record (chalicelib/verify/record.py), and this stays None.
    verification: dict[str, Any] | None = None
    # The SHA-256 of the run's key (catalog/run_keys.py), by which an invocation knows it is the run's; and,
    # in the sealed copy, the run's proof that it wrote it. None in backups recorded before runs had keys.
    run_key_sha256: str | None = None
    run_proof: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != BackupStatus.RUNNING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the plans' results too (asdict goes into dicts)

    def public_dict(self) -> dict[str, Any]:
        """The record as the API, the command line and the alerts show it: without what only its run reads."""
        shown = {name: value for name, value in self.to_dict().items() if name not in ("run_key_sha256", "run_proof")}
        for result in shown["plans"].values():
            result.pop("run_proof", None)
            if result.get("vault") is None:
                result.pop("vault", None)  # a plan without a vault has nothing to say about one
        return shown

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupRecord:
        plans = {name: PlanResult.from_dict(result) for name, result in data.get("plans", {}).items()}
        return cls(plans=plans, **known_fields(cls, data, without=("plans",)))

    def totals(self) -> dict[str, int]:
        keys = ("copied", "unchanged", "deleted", "deletions_held_back", "failed", "bytes_copied", "objects", "bytes")
        return {k: sum(getattr(result, k) for result in self.plans.values()) for k in keys}


def overall_status(results: list[PlanResult]) -> BackupStatus:
    statuses = {result.status for result in results}
    if not statuses or statuses == {BackupStatus.SUCCEEDED}:
        return BackupStatus.SUCCEEDED
    if statuses == {BackupStatus.FAILED}:
        return BackupStatus.FAILED
    return BackupStatus.PARTIAL


def parse_record(body: bytes, backup_id: str, sealed: bool) -> BackupRecord:
    """A stored record, checked against what its key says: `Tampered` naming every problem otherwise."""
    what = f"backup {backup_id}'s {'sealed ' if sealed else ''}record"
    try:
        data = json.loads(body)
    except ValueError:
        raise Tampered(f"{what} is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("plans"), dict):
        raise Tampered(f"{what} is not a backup record (it has no 'plans' object)")
    try:
        record = BackupRecord.from_dict(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise Tampered(f"{what} is not a backup record: {exc}") from None
    problems = []
    if record.backup_id != backup_id:
        problems.append(f"it names backup {record.backup_id!r}")
    if not record.plans:
        problems.append("it names no plan")
    if record.status not in STATUSES:
        problems.append(f"its status {record.status!r} is not one of {', '.join(STATUSES)}")
    if sealed and record.status == BackupStatus.RUNNING:
        problems.append("it is sealed but still RUNNING")
    for name, result in record.plans.items():
        if result.plan != name:
            problems.append(f"plan {name!r} holds the result of plan {result.plan!r}")
        if result.snapshot and not str(result.snapshot).endswith(f"/meta/snapshots/{name}/{backup_id}.jsonl.gz"):
            problems.append(f"plan {name!r} names another backup's snapshot {result.snapshot}")
    if problems:
        raise Tampered(f"{what} is inconsistent: " + "; ".join(problems))
    return record


class RecordStore(JobStore[BackupRecord]):
    """Backup records in one bucket: the working copy, created only if absent and then replaced only as the
    version last read (the job framework's store, jobs/store.py), and the sealed copy of a finished backup,
    which reads prefer."""

    kind = JobKind(
        noun="backup", id_field="backup_id", prefix=RECORDS_PREFIX, key=record_key, decode=BackupRecord.from_dict
    )

    def create(self, record: BackupRecord) -> str:
        """Store a new record; returns its ETag. `AlreadyExists` if a record with this id is already there."""
        try:
            # The plans keep their order: the order of the plans file, which a backup works them in.
            return s3docs.create(self.s3, self.bucket, self.key(record.backup_id), record.to_dict(), sort_keys=False)
        except AlreadyExists as exc:
            raise AlreadyExists(f"backup {record.backup_id} already exists") from exc

    def replace(self, record: BackupRecord, etag: str) -> str:
        """Write over the working copy whose ETag is `etag`; returns the new ETag. `AlreadyExists` when
        another invocation of the backup wrote it meanwhile (see backup/progress.py)."""
        key = self.key(record.backup_id)
        return s3docs.replace(self.s3, self.bucket, key, record.to_dict(), etag, sort_keys=False)

    def read(self, backup_id: str) -> tuple[BackupRecord, str] | None:
        """The working copy and its ETag (None: never recorded); `Tampered` when it cannot be trusted."""
        response = s3docs.get(self.s3, self.bucket, record_key(backup_id))
        if response is None:
            return None
        return parse_record(response["Body"].read(), backup_id, sealed=False), str(response["ETag"])

    def seal(self, record: BackupRecord, run_key: str | None = None) -> BackupRecord:
        """Write the finished record once more under its create-only key, with the run's proof when its key
        is given (catalog/run_keys.py). Idempotent: a record sealed before (by an earlier delivery of this
        backup, or by someone else: the caller checks the proof) stays as it was, and that is what is
        returned."""
        assert record.status != BackupStatus.RUNNING, "only a finished backup is sealed"
        sealed = BackupRecord.from_dict({**record.to_dict(), "sealed_at": isoformat(utcnow()), "run_proof": None})
        if run_key is not None:
            sealed.run_proof = run_keys.record_proof(run_key, sealed.to_dict())
        try:
            s3docs.put_new(
                self.s3,
                Bucket=self.bucket,
                Key=sealed_key(record.backup_id),
                Body=json.dumps(sealed.to_dict(), ensure_ascii=False).encode("utf-8"),
                ContentType="application/json",
            )
        except AlreadyExists:
            return self.get(record.backup_id)
        return sealed

    def get(self, backup_id: str) -> BackupRecord:
        """The sealed record when the backup finished, else the working one. NotFound when neither exists;
        `Tampered` when the one found cannot be trusted."""
        return self.current(backup_id)[0]

    def current(self, backup_id: str) -> tuple[BackupRecord, str | None]:
        """`get`'s record, and the working copy's ETag to replace it by (None for a sealed record: it is
        never written again)."""
        sealed = self.get_sealed(backup_id)
        if sealed is not None:
            return sealed, None
        found = self.read(backup_id)
        if found is None:
            raise NotFound(f"no backup with id {backup_id!r}")
        return found

    def get_sealed(self, backup_id: str) -> BackupRecord | None:
        """The sealed record only (None: the backup has not finished, or finished before records were
        sealed). `Tampered` when it cannot be trusted."""
        body = self._body(sealed_key(backup_id))
        return None if body is None else parse_record(body, backup_id, sealed=True)

    def _body(self, key: str) -> bytes | None:
        return get_bytes(self.s3, self.bucket, key)

    def list_keys(self, limit: int, start_after: str | None = None) -> tuple[list[str], bool]:
        """Up to `limit` record keys, newest first, after `start_after`; and whether more follow."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": RECORDS_PREFIX, "MaxKeys": limit}
        if start_after:
            params["StartAfter"] = start_after
        response = self.s3.list_objects_v2(**params)
        keys = [item["Key"] for item in response.get("Contents", [])]
        return keys, bool(response.get("IsTruncated"))

    def read_key(self, key: str) -> BackupRecord:
        """The record a listed (working) key stands for: its sealed copy when there is one."""
        return self.get(backup_id_of_key(key))

    def latest(self, limit: int = 20) -> list[BackupRecord]:
        """The newest `limit` backups, newest first. Unlike other jobs' records, a backup record that cannot
        be trusted is never left out: `Tampered` is raised for it."""
        keys, _ = self.list_keys(limit)
        return [self.read_key(key) for key in keys]

"""The record of a weekly verification job, which is also its checkpoint: one JSON document per job in the
catalog bucket, `meta/verifications/<inverted time>_<job_id>.json`, beside the backup records.

A job's id derives from the backup that started it (`verify-<backup_id>`), so the record's key is known
from the backup id alone: `GET /backups/{id}` finds it with one GET, no listing, and a repeated delivery of
the same backup finds the same job instead of starting another.

The job framework's store keeps it (chalicelib/jobs/store.py: create-only, then ETag-guarded). The counts
are complete; the findings and errors listed are capped.

That record is the job's working copy, rewritten at every checkpoint. When the job ends, the verify worker
seals its result: written once more under `meta/sealed/verifications/<same name>`, create-only (the bucket
policy refuses any other write there, and no other role may write there at all), before the working copy
says it ended. Only the sealed result is a finished job's: whoever reads a job (`VerificationStore.read`,
so the API, the dashboard and the cadence alike) gets the sealed result, or the working copy as unfinished,
whatever that says of itself.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib import s3docs
from chalicelib.catalog.records import backup_time, is_backup_id
from chalicelib.errors import AlreadyExists, NotFound
from chalicelib.jobs.store import JobKind, JobStore
from chalicelib.layout import SEALED_VERIFICATIONS_PREFIX, VERIFICATIONS_PREFIX
from chalicelib.s3docs import inverted_key, known_fields
from chalicelib.verify.checks import MAX_LISTED, VerifyReport

logger = logging.getLogger(__name__)

JOB_PREFIX = "verify-"
# An on-demand check of one backup (POST /backups/{id}/verify): `check-<a fresh id of the request's time>`.
CHECK_PREFIX = "check-"
KINDS = ("slice", "backup")
MAX_ERRORS = 20


class VerificationStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


STATUSES = tuple(VerificationStatus)


def verification_id(backup_id: str) -> str:
    """The id of the verification job a backup starts: the same backup always gives the same job."""
    return f"{JOB_PREFIX}{backup_id}"


def check_id(request_id: str) -> str:
    """The id of an on-demand check: `request_id` is a fresh, time-sortable id of the request."""
    return f"{CHECK_PREFIX}{request_id}"


def backup_of(job_id: str) -> str:
    """The time-sortable id inside a job id (the backup's for a weekly job, the request's for a check).
    NotFound when `job_id` is not a verification job's id."""
    inner = next((job_id[len(p):] for p in (JOB_PREFIX, CHECK_PREFIX) if job_id.startswith(p)), "")
    if not is_backup_id(inner):
        raise NotFound(
            f"{job_id!r} is not a verification job id (expected e.g. verify-20261126T020000000Z-scheduled or "
            "check-20261126T134735123Z-9f2c4a1b)"
        )
    return inner


def verification_key(job_id: str) -> str:
    return inverted_key(VERIFICATIONS_PREFIX, backup_time(backup_of(job_id)), job_id)


def sealed_verification_key(job_id: str) -> str:
    """Where a finished job's result is sealed: the working record's name under meta/sealed/verifications/."""
    return SEALED_VERIFICATIONS_PREFIX + verification_key(job_id)[len(VERIFICATIONS_PREFIX):]


@dataclass
class VerificationRecord:
    """A weekly slice check: what it found so far, and where it stands (its checkpoint)."""

    job_id: str
    # "slice": the weekly job (snapshots taken up to this backup's time are checked; later ones belong to
    # later jobs). "backup": an on-demand check of this one backup's snapshots.
    backup_id: str
    weekday: int
    kind: str = "slice"
    # A check's plans (None: every plan the backup has), and the share of versions re-read and re-hashed.
    plan_names: list[str] | None = None
    sample_percent: float = 0
    sampled: int = 0
    sample_skipped_archived: int = 0
    trigger: str = "schedule"
    status: VerificationStatus = VerificationStatus.RUNNING
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    snapshots: int = 0
    checked: int = 0
    missing_count: int = 0
    damaged_count: int = 0
    error_count: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Per plan: snapshots read, versions checked, missing, damaged.
    plans: dict[str, dict[str, int]] = field(default_factory=dict)
    # Versions asked about with HeadObject; the others were checked against an inventory report.
    headed: int = 0
    # Versions newer than the inventory report that it does not list yet: left for the next report's check.
    deferred: int = 0
    # Per plan, when the plans set `inventory`: the report checked against (its manifest key, creation time,
    # age in days), or the problem that sent the check back to HEAD (no report, a stale or unreadable one).
    inventory: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per plan of a scheduled job with an inventory (verify/cadence.py): the report every kept version is
    # checked against (all seven slices; decided when the job first comes to the plan), the report every kept
    # version was checked against once the plan is done with no problem, or why the plan waits for the next
    # report (nothing of it read).
    checking: dict[str, str] = field(default_factory=dict)
    checked_against: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The checkpoint: the plan being worked on (index in the plans file) and the last (source, key) of it
    # whose versions are all checked and counted above; None: nothing of that plan done yet.
    plan_index: int = 0
    after: list[str] | None = None
    # Per plan checked against a report as a whole, when the job counts for the cost report
    # (cost/row_counts.py): what is counted up to the checkpoint (`counting`, the plan being worked on),
    # and the counts of every row once the plan is done (`row_counts`), which the cost report reads.
    counting: dict[str, dict[str, Any]] = field(default_factory=dict)
    row_counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    invocations: int = 0

    @property
    def finished(self) -> bool:
        return self.status != VerificationStatus.RUNNING

    @property
    def inventory_problems(self) -> list[str]:
        return [used["problem"] for used in self.inventory.values() if used.get("problem")]

    @property
    def ok(self) -> bool:
        return not (self.missing_count or self.damaged_count or self.error_count or self.inventory_problems)

    def use_inventory(self, plan: str, summary: dict[str, Any]) -> None:
        """Which report the plan is checked against. A problem found by an earlier invocation of the job
        stays: part of the plan was checked without a report."""
        earlier = self.inventory.get(plan, {}).get("problem")
        self.inventory[plan] = summary if summary.get("problem") or not earlier else {**summary, "problem": earlier}

    def plan_stats(self, plan: str) -> dict[str, int]:
        return self.plans.setdefault(plan, {"snapshots": 0, "checked": 0, "missing": 0, "damaged": 0})

    def set_snapshots(self, plan: str, count: int) -> None:
        # Set, not added: a resumed invocation lists the same snapshots again.
        self.plan_stats(plan)["snapshots"] = count
        self.snapshots = sum(stats["snapshots"] for stats in self.plans.values())

    def add(self, plan: str, report: VerifyReport) -> None:
        """Count a checked batch; list its findings while there is room."""
        stats = self.plan_stats(plan)
        stats["checked"] += report.checked
        stats["missing"] += len(report.missing)
        stats["damaged"] += len(report.damaged)
        self.checked += report.checked
        self.sampled += report.sampled
        self.sample_skipped_archived += report.sample_skipped_archived
        self.headed += report.headed
        self.deferred += report.deferred
        self.missing_count += len(report.missing)
        self.damaged_count += len(report.damaged)
        self.missing.extend(asdict(f) for f in report.missing[: max(0, MAX_LISTED - len(self.missing))])
        self.damaged.extend(asdict(f) for f in report.damaged[: max(0, MAX_LISTED - len(self.damaged))])
        for message in report.errors:
            self.add_error(message)

    def add_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def conclude(self, now: str) -> None:
        """FAILED when anything is missing or damaged, part of the slice could not be checked, or the
        inventory report it should have been checked against was missing or stale."""
        self.status = VerificationStatus.SUCCEEDED if self.ok else VerificationStatus.FAILED
        self.finished_at = now

    def restarted(self, why: str) -> VerificationRecord:
        """The job from its start, with `why` among its errors: what it was asked, nothing of what its record
        said it had found or where it stood (a checkpoint that cannot be trusted is not carried on)."""
        fresh = VerificationRecord(
            job_id=self.job_id, backup_id=self.backup_id, weekday=self.weekday, kind=self.kind, plan_names=self.plan_names,
            sample_percent=self.sample_percent, trigger=self.trigger, started_at=self.started_at, updated_at=self.updated_at,
            invocations=self.invocations,
        )
        fresh.add_error(why)
        return fresh

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok if self.finished else None
        data["inventory_problems"] = self.inventory_problems
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerificationRecord:
        record = cls(**known_fields(cls, data))
        record.status = VerificationStatus(record.status)
        return record

    def summary(self) -> dict[str, Any]:
        """What `GET /backups/{id}` shows of it: status and counts, no findings."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "backup_id": self.backup_id,
            "status": self.status,
            "ok": self.ok if self.finished else None,
            "weekday": self.weekday,
            "snapshots": self.snapshots,
            "checked": self.checked,
            "missing_count": self.missing_count,
            "damaged_count": self.damaged_count,
            "error_count": self.error_count,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "waiting": sorted(self.waiting),
        }


class VerificationStore(JobStore[VerificationRecord]):
    """Verification records in the catalog bucket: working copies, and the sealed results of finished jobs."""

    kind = JobKind("verification job", "job_id", VERIFICATIONS_PREFIX, verification_key, VerificationRecord.from_dict)

    def read(self, job_id: str) -> tuple[VerificationRecord, str] | None:
        """The job as it may be trusted, with the working copy's ETag: its sealed result once it ended (never
        replaced: no ETag), else its working copy, unfinished. A working copy that says the job ended with no
        sealed result behind it was not written by the job's end (the worker seals first): none of it is
        believed, the job reads as running from its start, and, when worked, it checks everything again and
        ends FAILED saying why."""
        sealed = self.sealed(job_id)
        if sealed is not None:
            return sealed, ""
        found = super().read(job_id)
        if found is None:
            return None
        record, etag = found
        if (record.kind == "slice") != job_id.startswith(JOB_PREFIX):
            # The API's role creates checks' records: one posing as a weekly job is not this job's record.
            raise ValueError(f"the record of {job_id} says it is a {record.kind!r} job")
        if record.finished:
            why = f"its record said it had ended {record.status} with no sealed result: not trusted, checked again from the start"
            logger.warning("verification %s: %s", job_id, why)
            record = record.restarted(why)
        return record, etag

    def sealed(self, job_id: str) -> VerificationRecord | None:
        """The job's sealed result (None: it has not ended). ValueError when the document there is not this
        job's finished result."""
        key = sealed_verification_key(job_id)
        document = s3docs.read(self.s3, self.bucket, key)
        if document is None:
            return None
        data = document.data
        if data.get("job_id") != job_id or data.get("status") not in (VerificationStatus.SUCCEEDED, VerificationStatus.FAILED):
            raise ValueError(f"the sealed result at s3://{self.bucket}/{key} is not verification {job_id}'s finished result")
        return VerificationRecord.from_dict(data)

    def seal(self, record: VerificationRecord) -> VerificationRecord:
        """Write a finished job's result once, create-only, and return what is sealed: this result, or the
        one an earlier invocation of the job sealed before it stopped (idempotent)."""
        if not record.finished:
            raise ValueError(f"verification {record.job_id} is still running: only a finished job is sealed")
        try:
            s3docs.create(self.s3, self.bucket, sealed_verification_key(record.job_id), record.to_dict())
        except AlreadyExists:
            sealed = self.sealed(record.job_id)
            if sealed is None:  # a sealed result is never removed (the bucket policy denies it)
                raise
            logger.info("verification %s was sealed by an earlier invocation", record.job_id)
            return sealed
        return record


def backup_verification(s3: Any, bucket: str, backup_id: str) -> dict[str, Any] | None:
    """The summary of the verification job a backup started, or None when none ran (one GET)."""
    found = VerificationStore(s3, bucket).read(verification_id(backup_id))
    return found[0].summary() if found is not None else None


def describe(store: VerificationStore, job_id: str) -> dict[str, Any]:
    """`GET /verifications/{id}`: the job's record as the API shows it (checkpoint fields left out)."""
    backup_of(job_id)  # NotFound names a malformed id
    record = store.get(job_id)
    data = record.to_dict()
    for internal in ("plan_index", "after", "invocations", "checking", "counting", "row_counts"):
        data.pop(internal, None)
    return data

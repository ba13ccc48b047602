"""One job of a kind per plan at a time (one backup, one prune): a lock object per plan, in the catalog bucket:
`meta/locks/<plan>.json` for backups, `meta/locks/<kind>/<plan>.json` for the other kinds.

Acquiring is a conditional create (`If-None-Match: *`). The lock is never deleted when a job finishes:
it simply stops counting once the job it names is no longer RUNNING, and the next job replaces it by
its ETag (`If-Match`); the job that holds it may take it again (a repeated delivery of the same job). So
nothing in the worker has to remember to unlock, and a worker that crashes cannot leave a plan locked for
ever:

- the lock's job is finished (its record says so): the lock is free;
- the job's worker has not written its record (nor taken the lock) for the lock lifetime (default six
  hours): it is stale and free, even if the record still says RUNNING (the worker died without saving its
  result). A worker invocation lasts at most 15 minutes and Lambda retries a failed asynchronous invocation
  twice, while a large job carries on in further invocations, writing its record at every checkpoint: a job
  that still works keeps its lock however long it runs;
- the lock's job has no record yet: a request is between taking the lock and recording the job; the
  lock holds for a minute (API Gateway gives up on a request after 29 s), then it is free.

Two requests racing for a free lock both try the conditional write; S3 lets exactly one of them win.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from chalicelib import s3docs
from chalicelib.jobs.dispatch import worker_lost
from chalicelib.jobs.store import JobStore
from chalicelib.errors import AlreadyExists, Conflict, NotFound
from chalicelib.layout import LOCKS_PREFIX, PRUNE_LOCKS_PREFIX
from chalicelib.times import isoformat

logger = logging.getLogger(__name__)

DEFAULT_LOCK_LIFETIME = timedelta(hours=6)
UNRECORDED_GRACE = timedelta(seconds=60)
# Clocks differ a little between machines; more than this ahead is not a clock, it is a forged date.
FUTURE_SLACK = timedelta(minutes=5)
# Compare-and-swap rounds before giving up on a lock other requests keep changing.
_ROUNDS = 3


# What a lock's holder is called in a Conflict's message, by kind of job.
_DOING = {"backup": "backed up", "prune": "pruned"}


def lock_key(plan: str, noun: str = "backup") -> str:
    """A plan's lock for one kind of job (backups keep the place their locks always had)."""
    if noun == "backup":
        return f"{LOCKS_PREFIX}{plan}.json"
    if noun == "prune":
        return f"{PRUNE_LOCKS_PREFIX}{plan}.json"
    raise ValueError(f"no plan locks for {noun} jobs")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class PlanLocks:
    """The plan locks of one kind of job: the kind whose records `records` keeps (backups, prunes); a lock
    holds while its job's record says it has not finished."""

    def __init__(self, s3: Any, bucket: str, records: JobStore[Any], lifetime: timedelta = DEFAULT_LOCK_LIFETIME) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.records = records
        self.lifetime = lifetime
        self.noun = records.kind.noun
        self.id_field = records.kind.id_field

    def key(self, plan: str) -> str:
        return lock_key(plan, self.noun)

    def holder(self, document: s3docs.Document, now: datetime) -> str | None:
        """The job id the lock still belongs to, or None when the lock is free."""
        job_id = document.data.get(self.id_field)
        acquired_at = _parse_time(document.data.get("acquired_at"))
        if not isinstance(job_id, str) or acquired_at is None:
            return None
        if acquired_at > now + FUTURE_SLACK:
            # A lock dated in the future would never go stale: it was not written by a request of ours.
            logger.warning("lock of %s %s is dated %s, in the future: ignored, taken over", self.noun, job_id, acquired_at)
            return None
        age = now - acquired_at
        try:
            record = self.records.get(job_id)
        except NotFound:
            return job_id if age < UNRECORDED_GRACE else None
        if record.finished:
            return None
        # A job's worker writes its record at every checkpoint: a long job that still works keeps its lock,
        # and one whose worker is lost (jobs/dispatch.py) frees it `lifetime` after its last word.
        last = max(acquired_at, _parse_time(getattr(record, "updated_at", None)) or acquired_at)
        if worker_lost(isoformat(last), now, self.lifetime):
            logger.warning("lock of %s %s: no word from its worker since %s: stale, taken over", self.noun, job_id, isoformat(last))
            return None
        return job_id

    def check(self, plans: list[str], now: datetime) -> None:
        """`Conflict` naming the running job if any of the plans is held. Reads only, so a request that
        is refused leaves nothing behind; `acquire` still settles races with conditional writes."""
        for plan in plans:
            current = s3docs.read(self.s3, self.bucket, self.key(plan))
            holder = self.holder(current, now) if current is not None else None
            if holder is not None:
                raise self._held(plan, holder)

    def _held(self, plan: str, holder: str) -> Conflict:
        return Conflict(
            f"plan {plan!r} is already being {_DOING.get(self.noun, 'worked on')} by {self.noun} {holder}; wait for "
            f"it to finish (GET /{self.noun}s/{holder}) and try again",
            **{self.id_field: holder},
        )

    def acquire(self, plans: list[str], job_id: str, now: datetime) -> None:
        """Lock every plan for `job_id`, or none: `Conflict` naming the running job otherwise."""
        taken: list[str] = []
        try:
            for plan in plans:
                self.acquire_one(plan, job_id, now)
                taken.append(plan)
        except BaseException:
            self.release(taken, job_id)
            raise

    def acquire_one(self, plan: str, job_id: str, now: datetime) -> None:
        """Lock one plan for `job_id` (which may hold it already): `Conflict` naming the job holding it."""
        key = self.key(plan)
        body = {"plan": plan, self.id_field: job_id, "acquired_at": isoformat(now)}
        try:
            s3docs.create(self.s3, self.bucket, key, body)
            return
        except AlreadyExists:
            pass
        for _ in range(_ROUNDS):
            current = s3docs.read(self.s3, self.bucket, key)
            try:
                if current is None:
                    s3docs.create(self.s3, self.bucket, key, body)
                    return
                holder = self.holder(current, now)
                if holder == job_id:
                    return  # a repeated delivery of the job that holds it
                if holder is not None:
                    raise self._held(plan, holder)
                s3docs.replace(self.s3, self.bucket, key, body, current.etag)
                return
            except AlreadyExists:
                continue
        raise Conflict(f"plan {plan!r}: other requests are starting {self.noun}s of it right now; try again in a moment")

    def release(self, plans: list[str], job_id: str) -> None:
        """Give back locks this job took but will not use (its request was refused after all)."""
        for plan in plans:
            current = s3docs.read(self.s3, self.bucket, self.key(plan))
            if current is not None and current.data.get(self.id_field) == job_id:
                s3docs.remove(self.s3, self.bucket, self.key(plan))

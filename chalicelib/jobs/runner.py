"""Where a job continues past the Lambda time limit: `run_until_done`.

A job works from the checkpoint its record holds. When less than the reserve of the invocation's time is
left, it saves the checkpoint and stops; the runner has its worker invoked again, asynchronously, with the
same id, and the next invocation carries on from there. Without a time budget (in-process, a test) it works
to the end. A finished job is returned as it is, and a repeated or resumed invocation redoes at most one
batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic

from chalicelib.errors import AlreadyExists, NotFound
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.store import JobStore, R
from chalicelib.plans import PlanSet
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

# Items worked between two saves of the checkpoint (and two looks at the clock).
BATCH_SIZE = 1000


class Checkpoint(Generic[R]):
    """The job's record as this invocation last read or wrote it, and that version's ETag: a save replaces
    that version only, so an invocation working from an older checkpoint stops at its first save
    (`AlreadyExists`)."""

    def __init__(self, store: JobStore[R], record: R, etag: str, budget: Budget | None) -> None:
        self.store = store
        self.record = record
        self.etag = etag
        self.budget = budget

    def save(self) -> None:
        self.record.updated_at = isoformat(utcnow())
        self.etag = self.store.replace(self.record, self.etag)

    def out_of_time(self) -> bool:
        return self.budget is not None and self.budget.running_out()


# One invocation's share of a job from its checkpoint: True when the job ended (its record then final),
# False when time ran short (the checkpoint saved).
Step = Callable[[Checkpoint[R]], bool]


class Job(Generic[R]):
    """A kind of job's own steps on the framework: `step` is one invocation's share from the checkpoint.

    `plans` is a `PlanSet`, `clients` an `aws.Clients`, `store` the kind's records (in the plans' catalog
    bucket); `budget` is the invocation's remaining time (None: no limit); `invoker` has the job carried on by a new
    invocation when time runs short (None: it carries on here); `report` is told tampering found on the way
    (notify/tampering.py; a test may leave it silent); `batch_size` items are worked between two saves."""

    def __init__(
        self,
        plans: PlanSet,
        clients: Any,
        store: JobStore[R],
        budget: Budget | None,
        invoker: Invoker | None,
        report: Callable[[str], Any] | None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.plans = plans
        self.clients = clients
        self.store = store
        self.budget = budget
        self.invoker = invoker
        self.report = report or (lambda finding: None)
        self.batch_size = max(1, batch_size)

    def run(self, job_id: str) -> R:
        """Work the job until it ends, or until time runs short and a new invocation has been asked to carry
        it on. Safe to call again: a finished job is returned as it is, doing nothing."""
        return run_until_done(self.store, job_id, self.step, self.budget, self.invoker)

    def step(self, checkpoint: Checkpoint[R]) -> bool:
        raise NotImplementedError


def hand_on(invoker: Invoker | None, payload: dict[str, Any], noun: str) -> bool:
    """Have a new invocation of the job's worker carry the job on from its saved checkpoint: True when one
    was asked to; False without an invoker (in-process: the caller carries on itself, with no time limit).
    A failure propagates: Lambda retries this invocation, which resumes from the same checkpoint."""
    if invoker is None:
        return False
    invoker(payload)
    # Never a secret in the logs: a backup run's key goes in its payload only (catalog/run_keys.py).
    logger.info("%s %s: continues in a new invocation", noun, {k: v for k, v in payload.items() if k != "run_key"})
    return True


def run_until_done(store: JobStore[R], job_id: str, step: Step[R], budget: Budget | None, invoker: Invoker | None) -> R:
    """Work the job until it ends, or until time runs short and a new invocation has been asked to carry it
    on (`invoker`; None: it carries on here). Safe to call again: a finished job is returned as it is."""
    while True:
        found = store.read(job_id)
        if found is None:
            raise NotFound(f"no {store.kind.noun} with id {job_id!r}")
        checkpoint = Checkpoint(store, found[0], found[1], budget)
        if checkpoint.record.finished:
            return checkpoint.record
        try:
            done = step(checkpoint)
        except AlreadyExists:
            # Another invocation of the same job wrote the record meanwhile: it carries the job on.
            logger.warning("%s %s: another invocation is working on it; this one stops", store.kind.noun, job_id)
            return store.get(job_id)
        if done:
            return checkpoint.record
        if hand_on(invoker, {store.kind.id_field: job_id}, store.kind.noun):
            return checkpoint.record

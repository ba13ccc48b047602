"""Prunes as the API, the command line and the schedule see them: start one, have it run, look it up.

Like backups, a prune runs by the worker mode: `lambda`, an asynchronous invocation of the `prune_worker`
function (which carries itself on past its time limit); `thread`, a background thread; `inline`, at once.
The daily prune runs on a schedule of its own, set with the backup's (chalicelib/schedule.py): beside the
daily backup under `rate(1 day)`, three hours after it at a fixed time. Either way it may meet a running
backup, and keeps what that backup may still name. Its id comes from the schedule's event, so a repeated
delivery finds the same prune and finishes it instead of starting another.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from chalicelib.catalog.records import scheduled_suffix
from chalicelib.errors import BadRequest, Conflict
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import worker_beside
from chalicelib.jobs.locks import PlanLocks
from chalicelib.jobs.service import JobService
from chalicelib.prune.job import DEFAULT_GRACE, PruneJob
from chalicelib.prune.record import PruneRecord, PruneStore, new_prune_id
from chalicelib.times import utcnow

logger = logging.getLogger(__name__)

PRUNE_WORKER = "prune_worker"
# A prune recorded RUNNING and not written for this long has lost its worker: another may start.
WORKER_LOST_AFTER = timedelta(hours=6)


def prune_worker_name(backup_worker: str | None) -> str:
    """The deployed prune worker sits beside the backup worker: `<app>-<stage>-prune_worker`."""
    return worker_beside(backup_worker, PRUNE_WORKER)


class PruneJobs(JobService[PruneRecord]):
    """`settings` is a `config.Settings`, `clients` an `aws.Clients`; `invoker` replaces the Lambda
    invocation (tests); `report` is told tampering."""

    worker = PRUNE_WORKER

    def store(self) -> PruneStore:
        return PruneStore(self.clients.s3, self.settings.plans.catalog_bucket)

    def start(
        self,
        plan_names: list[str] | None,
        trigger: str,
        dry_run: bool = False,
        allow_large: list[str] | None = None,
        now: datetime | None = None,
    ) -> PruneRecord:
        """Check the request (BadRequest naming an unknown plan), refuse while another prune runs (Conflict
        naming it), record the prune. The caller dispatches it."""
        plans = self.settings.plans
        names = plans.check_names(plan_names)
        allowed = plans.check_names(allow_large) if allow_large else []
        outside = [name for name in allowed if name not in names]
        if outside:
            raise BadRequest(f"allow_large_prune names plan(s) this prune does not prune: {', '.join(outside)}")
        moment = now or utcnow()
        prune_id = new_prune_id(moment)
        if dry_run:
            # A dry run deletes nothing: it needs no lock, and runs beside a prune.
            return self.job().start(names, trigger, dry_run=True, allow_large=allowed, prune_id=prune_id, grace=DEFAULT_GRACE)
        locks = self.locks()
        locks.acquire(names, prune_id, moment)
        try:
            return self.job().start(names, trigger, allow_large=allowed, prune_id=prune_id, grace=DEFAULT_GRACE)
        except BaseException:
            locks.release(names, prune_id)
            raise

    def locks(self) -> PlanLocks:
        """One prune per plan at a time (jobs/locks.py): a prune whose worker is lost frees its plans after
        WORKER_LOST_AFTER."""
        return PlanLocks(self.clients.s3, self.settings.plans.catalog_bucket, self.store(), lifetime=WORKER_LOST_AFTER)

    def scheduled(self, scheduled_at: datetime, event_id: str | None, context: object = None) -> PruneRecord:
        """The daily prune of every plan it can lock: recorded once per schedule event, then worked. A plan
        another prune is still pruning is left to that one (and to the next day's)."""
        prune_id = new_prune_id(scheduled_at, suffix=scheduled_suffix(event_id))
        locks, moment = self.locks(), utcnow()
        found = self.store().read(prune_id)
        # A repeated delivery keeps the plans its prune was recorded with (their locks are its own already).
        wanted = found[0].plan_names if found is not None else self.settings.plans.names
        names = []
        for name in wanted:
            try:
                locks.acquire_one(name, prune_id, moment)
            except Conflict as exc:
                logger.warning("scheduled prune %s leaves plan %s alone: %s", prune_id, name, exc)
                continue
            names.append(name)
        record = self.job().start(names, "schedule", prune_id=prune_id, grace=DEFAULT_GRACE)
        return self.run(record.prune_id, context)

    def job(self, budget: Budget | None = None) -> PruneJob:
        settings = self.settings
        options = self.job_options(budget)
        return PruneJob(settings.plans, self.clients, settings.prices, settings.time_zone, grace=DEFAULT_GRACE, **options)

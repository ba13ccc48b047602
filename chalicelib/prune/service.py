"""Prunes as the API, the command line and the schedule see them: start one, have it run, look it up.

Like backups, a prune runs by the worker mode: `lambda`, an asynchronous invocation of the `prune_worker`
function (which carries itself on past its time limit); `thread`, a background thread; `inline`, at once.
The daily prune runs on a schedule of its own, set with the backup's (chalicelib/schedule.py): beside the
daily backup under `rate(1 day)`, three hours after it at a fixed time. Either way it may meet a running
backup, and keeps what that backup may still name. Its id comes from the schedule's event, so a repeated
delivery finds the same prune and finishes it instead of starting another.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.catalog.records import scheduled_suffix
from chalicelib.errors import BadRequest, Conflict
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import worker_beside, worker_lost
from chalicelib.jobs.service import JobService
from chalicelib.prune.job import DEFAULT_GRACE, PruneJob
from chalicelib.prune.record import PruneRecord, PruneStore, new_prune_id
from chalicelib.times import utcnow

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
        running = self.running(now)
        if running is not None:
            raise Conflict(f"prune {running.prune_id} is still running (since {running.started_at})")
        return self.job().start(names, trigger, dry_run=dry_run, allow_large=allowed, grace=DEFAULT_GRACE)

    def running(self, now: datetime | None = None) -> PruneRecord | None:
        """A recent prune that has not finished, if any (the newest few records are read)."""
        moment = now or utcnow()
        for record in self.store().latest(5):
            if record.finished or record.dry_run:
                continue
            if not worker_lost(record.updated_at or record.started_at, moment, WORKER_LOST_AFTER):
                return record
        return None

    def scheduled(self, scheduled_at: datetime, event_id: str | None, context: object = None) -> PruneRecord:
        """The daily prune of every plan: recorded once per schedule event, then worked."""
        prune_id = new_prune_id(scheduled_at, suffix=scheduled_suffix(event_id))
        record = self.job().start(self.settings.plans.names, "schedule", prune_id=prune_id, grace=DEFAULT_GRACE)
        return self.run(record.prune_id, context)

    def job(self, budget: Budget | None = None) -> PruneJob:
        settings = self.settings
        options = self.job_options(budget)
        return PruneJob(settings.plans, self.clients, settings.prices, settings.time_zone, grace=DEFAULT_GRACE, **options)

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
import threading
from datetime import datetime, timedelta
from typing import Any

from chalicelib.catalog.records import scheduled_suffix
from chalicelib.errors import BadRequest, Conflict
from chalicelib.prune.job import DEFAULT_GRACE, Invoker, PruneJob
from chalicelib.prune.record import PruneRecord, PruneStore, new_prune_id
from chalicelib.times import parse_iso, utcnow
from chalicelib.workers import WORKER_THREAD, DEFAULT_RESERVE_MS, LambdaInvoker, budget_for, worker_beside

logger = logging.getLogger(__name__)

PRUNE_WORKER = "prune_worker"
# A prune recorded RUNNING for longer than this has lost its worker: another may start.
STALE_AFTER = timedelta(hours=6)


def prune_worker_name(backup_worker: str | None) -> str:
    """The deployed prune worker sits beside the backup worker: `<app>-<stage>-prune_worker`."""
    return worker_beside(backup_worker, PRUNE_WORKER)


class PruneJobs:
    """`settings` is a `config.Settings`, `clients` an `aws.Clients`; `invoker` replaces the Lambda
    invocation (tests); `report` is told tampering."""

    def __init__(self, settings: Any, clients: Any, invoker: Invoker | None = None, report: Any = None) -> None:
        self.settings = settings
        self.clients = clients
        self.invoker = invoker
        self.report = report

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
        return self.job().start(names, trigger, dry_run=dry_run, allow_large=allowed, grace=self._grace())

    def running(self, now: datetime | None = None) -> PruneRecord | None:
        """A recent prune that has not finished, if any (the newest few records are read)."""
        moment = now or utcnow()
        for record in self.store().latest(5):
            if record.finished or record.dry_run:
                continue
            started = parse_iso(record.updated_at or record.started_at or "")
            if moment - started < STALE_AFTER:
                return record
        return None

    def scheduled(self, scheduled_at: datetime, event_id: str | None, context: Any = None) -> PruneRecord:
        """The daily prune of every plan: recorded once per schedule event, then worked."""
        prune_id = new_prune_id(scheduled_at, suffix=scheduled_suffix(event_id))
        record = self.job().start(self.settings.plans.names, "schedule", prune_id=prune_id, grace=self._grace())
        return self.run(record.prune_id, context)

    def dispatch(self, prune_id: str) -> None:
        invoker = self._invoker()
        if invoker is not None:
            invoker({"prune_id": prune_id})
        elif self.settings.worker_mode == "thread":
            threading.Thread(target=self._run_logged, args=(prune_id,), name=f"{WORKER_THREAD}prune {prune_id}", daemon=True).start()
        else:
            self._run_logged(prune_id)

    def run(self, prune_id: str, context: Any = None) -> PruneRecord:
        """Work the prune in this invocation; with a Lambda `context`, stop short of its time limit and have
        the prune worker invoked again (without one, e.g. in-process, the prune runs to its end)."""
        budget = budget_for(context, getattr(self.settings, "checkpoint_reserve_ms", DEFAULT_RESERVE_MS))
        return self.job(budget).run(prune_id)

    def job(self, budget: Any = None) -> PruneJob:
        return PruneJob(
            self.settings.plans,
            self.clients,
            prices=getattr(self.settings, "prices", None),
            time_zone=getattr(self.settings, "time_zone", "UTC"),
            topic_arn=self.settings.topic_arn,
            budget=budget,
            invoker=self._invoker(),
            report=self.report,
            grace=self._grace(),
        )

    def _grace(self) -> timedelta:
        return timedelta(hours=getattr(self.settings, "prune_grace_hours", DEFAULT_GRACE.total_seconds() / 3600))

    def _invoker(self) -> Invoker | None:
        if self.invoker is not None:
            return self.invoker
        if self.settings.worker_mode == "lambda":
            return LambdaInvoker(self.clients.lambda_, prune_worker_name(self.settings.worker_function))
        return None

    def _run_logged(self, prune_id: str) -> None:
        try:
            self.run(prune_id)
        except Exception:  # the prune records its own failures; this is only what it could not record
            logger.exception("prune %s failed in-process", prune_id)

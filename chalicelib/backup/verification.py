"""The weekly verification of a scheduled backup: a job of its own (chalicelib/verify/job.py), started
once the backup is final (after its record and its alert), never run inside the backup's invocation.

Like backups, the job runs by the worker mode: `lambda`, an asynchronous invocation of the `verify_worker`
function (which carries itself on past its time limit); `thread`, a background thread; `inline`, at once.
Starting is idempotent: the job's id derives from the backup's, so a repeated delivery of the schedule, or a
retried worker, finds the same job; an unfinished one is dispatched again (its record's conditional writes
let only one invocation move it on), a finished one is left alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from chalicelib.backup import checkpoints
from chalicelib.catalog.records import BackupRecord, new_backup_id
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.verifier import Verifier
from chalicelib.verify.job_record import VerificationRecord, VerificationStore
from chalicelib.workers import WORKER_THREAD, worker_beside

logger = logging.getLogger(__name__)

VERIFY_WORKER = "verify_worker"


def verify_worker_name(backup_worker: str | None) -> str:
    """The deployed verify worker sits beside the backup worker: `<app>-<stage>-verify_worker`."""
    return worker_beside(backup_worker, VERIFY_WORKER)


class VerificationJobs:
    """Starts, dispatches and runs the verification jobs of scheduled backups. `settings` is a
    `config.Settings`, `clients` an `aws.Clients`; `invoker` replaces the Lambda invocation (tests)."""

    def __init__(
        self,
        settings: Any,
        clients: Any,
        invoker: checkpoints.Invoker | None = None,
        report: Callable[[str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.invoker = invoker
        self.report = report

    def start_after(self, record: BackupRecord) -> VerificationRecord | None:
        """Start the job of a finished scheduled backup (None for any other backup). A failure to record or
        invoke it propagates, so that Lambda retries the backup's invocation, which finds the backup done
        and starts the job again."""
        if record.trigger != "schedule" or record.dry_run or record.status == "RUNNING":
            return None
        job = self.job().start(record.backup_id)
        if not job.finished:
            self.dispatch(job.job_id)
        return job

    def start_check(self, backup_id: str, plan_names: list[str] | None, sample_percent: float) -> VerificationRecord:
        """POST /backups/{id}/verify: check the request (NotFound for an unknown backup or plan snapshot,
        BadRequest for a bad plan name), record the check and dispatch it; the caller answers 202 at once.
        A whole backup may hold millions of versions: the work is the verify worker's, never the request's."""
        Verifier(self.settings.plans, self.clients).plans_of(backup_id, plan_names)
        job = self.job().start_check(backup_id, new_backup_id(), plan_names, sample_percent)
        self.dispatch(job.job_id)
        return job

    def dispatch(self, job_id: str) -> None:
        """Have the job run by the worker mode. Inline and thread runs never raise into the backup."""
        invoker = self._invoker()
        if invoker is not None:
            invoker({"job_id": job_id})
        elif self.settings.worker_mode == "thread":
            threading.Thread(target=self._run_logged, args=(job_id,), name=f"{WORKER_THREAD}verification {job_id}", daemon=True).start()
        else:
            self._run_logged(job_id)

    def run(self, job_id: str, context: Any = None) -> VerificationRecord:
        """Work the job in this invocation; with a Lambda `context`, stop short of its time limit and have
        the worker invoked again (without one, e.g. in-process, the job runs to its end)."""
        budget = checkpoints.budget_for(context, getattr(self.settings, "checkpoint_reserve_ms", checkpoints.DEFAULT_RESERVE_MS))
        return self.job(budget).run(job_id)

    def store(self) -> VerificationStore:
        return VerificationStore(self.clients.s3, self.settings.plans.catalog_bucket)

    def job(self, budget: checkpoints.TimeBudget | None = None) -> VerificationJob:
        return VerificationJob(
            self.settings.plans,
            self.clients,
            topic_arn=self.settings.topic_arn,
            max_workers=self.settings.max_workers,
            budget=budget,
            invoker=self._invoker(),
            time_zone=self.settings.time_zone,
            report=self.report,
        )

    def _invoker(self) -> checkpoints.Invoker | None:
        if self.invoker is not None:
            return self.invoker
        if self.settings.worker_mode == "lambda":
            return checkpoints.LambdaInvoker(self.clients.lambda_, verify_worker_name(self.settings.worker_function))
        return None

    def _run_logged(self, job_id: str) -> None:
        try:
            self.run(job_id)
        except Exception:  # the job records its own failures; this is only what it could not record
            logger.exception("verification %s failed in-process", job_id)

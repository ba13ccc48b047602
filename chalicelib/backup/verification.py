"""The weekly verification of a scheduled backup: a job of its own (chalicelib/verify/job.py), started
once the backup is final (after its record and its alert), never run inside the backup's invocation.

The backup only hands its id to the verify worker; the worker records the job (the backup's role may not
write verification records: whoever holds its keys could otherwise forge a job's findings) and works it.
Like backups, the job runs by the worker mode: `lambda`, an asynchronous invocation of the `verify_worker`
function (which carries itself on past its time limit); `thread`, a background thread; `inline`, at once.
Starting is idempotent: the job's id derives from the backup's, so a repeated delivery of the schedule, or a
retried worker, finds the same job; an unfinished one is worked again (its record's conditional writes let
only one invocation move it on), a finished one is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib.catalog.records import BackupStatus, BackupRecord, RecordStore
from chalicelib.cost.reports import SAMPLE_SIZE
from chalicelib.cost.row_counts import row_counter
from chalicelib.jobs.budget import Budget, budget_for
from chalicelib.jobs.dispatch import Dispatcher, worker_beside
from chalicelib.jobs.ids import new_job_id
from chalicelib.jobs.service import JobService
from chalicelib.prices import load_prices
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.record import VerificationRecord, VerificationStore
from chalicelib.verify.verifier import Verifier

logger = logging.getLogger(__name__)
VERIFY_WORKER = "verify_worker"


def verify_worker_name(backup_worker: str | None) -> str:
    """The deployed verify worker sits beside the backup worker: `<app>-<stage>-verify_worker`."""
    return worker_beside(backup_worker, VERIFY_WORKER)


class VerificationJobs(JobService[VerificationRecord]):
    """Starts, dispatches and runs the verification jobs of scheduled backups. `settings` is a
    `config.Settings`, `clients` an `aws.Clients`; `invoker` replaces the Lambda invocation (tests)."""

    worker = VERIFY_WORKER

    def start_after(self, record: BackupRecord) -> bool:
        """Have the verify worker start the job of a finished scheduled backup, giving it the backup's id only
        (False, nothing done, for any other backup). A failure to invoke it propagates, so that Lambda
        retries the backup's invocation, which finds the backup done and hands the job on again."""
        if not starts_verification(record):
            return False
        kind = self.store().kind
        Dispatcher(kind.noun, "backup_id", self.begin, self.worker_invoker(), self.settings.worker_mode)(record.backup_id)
        return True

    def work(self, event: dict[str, Any], context: Any = None) -> VerificationRecord | None:
        """The verify worker's event: `{"backup_id": ...}`, a finished scheduled backup whose job it records
        and works (`begin`), or `{"job_id": ...}`, a recorded job (a check, or one carried on)."""
        if "job_id" in event:
            return self.run(event["job_id"], context=context)
        return self.begin(event["backup_id"], context=context)

    def begin(self, backup_id: str, context: Any = None) -> VerificationRecord | None:
        """Record the weekly job of `backup_id` (found when already recorded) and work it. Only a backup whose
        sealed record says it is a finished scheduled backup starts one (None otherwise, nothing written): a
        job started early for a later backup's id would leave that backup's slice unchecked."""
        backup = RecordStore(self.clients.s3, self.settings.plans.catalog_bucket).get_sealed(backup_id)
        if backup is None or not starts_verification(backup):
            logger.warning("no verification started for %s: it is not a finished scheduled backup", backup_id)
            return None
        job = self.job(budget_for(context, self.settings.checkpoint_reserve_ms))
        started = job.start(backup_id)
        return started if started.finished else job.run(started.job_id)

    def start_check(self, backup_id: str, plan_names: list[str] | None, sample_percent: float) -> VerificationRecord:
        """POST /backups/{id}/verify: check the request (NotFound for an unknown backup or plan snapshot,
        BadRequest for a bad plan name), record the check and dispatch it; the caller answers 202 at once.
        A whole backup may hold millions of versions: the work is the verify worker's, never the request's."""
        Verifier(self.settings.plans, self.clients).plans_of(backup_id, plan_names)
        job = self.job().start_check(backup_id, new_job_id(), plan_names, sample_percent)
        self.dispatch(job.job_id)
        return job

    def store(self) -> VerificationStore:
        return VerificationStore(self.clients.s3, self.settings.plans.catalog_bucket)

    def job(self, budget: Budget | None = None) -> VerificationJob:
        settings = self.settings
        return VerificationJob(
            settings.plans, self.clients, max_workers=settings.max_workers, time_zone=settings.time_zone,
            row_counter=row_counter(settings.prices or load_prices(), SAMPLE_SIZE), **self.job_options(budget),
        )


def starts_verification(record: BackupRecord) -> bool:
    """Whether a backup starts a weekly verification job: a scheduled one, finished, not a dry run."""
    return record.trigger == "schedule" and not record.dry_run and record.status != BackupStatus.RUNNING

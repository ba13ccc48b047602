"""The weekly verification of a scheduled backup: a job of its own (chalicelib/verify/job.py), started
once the backup is final (after its record and its alert), never run inside the backup's invocation.

Like backups, the job runs by the worker mode: `lambda`, an asynchronous invocation of the `verify_worker`
function (which carries itself on past its time limit); `thread`, a background thread; `inline`, at once.
Starting is idempotent: the job's id derives from the backup's, so a repeated delivery of the schedule, or a
retried worker, finds the same job; an unfinished one is dispatched again (its record's conditional writes
let only one invocation move it on), a finished one is left alone.
"""

from __future__ import annotations

from chalicelib.catalog.records import BackupStatus, BackupRecord
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import worker_beside
from chalicelib.jobs.ids import new_job_id
from chalicelib.jobs.service import JobService
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.record import VerificationRecord, VerificationStore
from chalicelib.verify.verifier import Verifier

VERIFY_WORKER = "verify_worker"


def verify_worker_name(backup_worker: str | None) -> str:
    """The deployed verify worker sits beside the backup worker: `<app>-<stage>-verify_worker`."""
    return worker_beside(backup_worker, VERIFY_WORKER)


class VerificationJobs(JobService[VerificationRecord]):
    """Starts, dispatches and runs the verification jobs of scheduled backups. `settings` is a
    `config.Settings`, `clients` an `aws.Clients`; `invoker` replaces the Lambda invocation (tests)."""

    worker = VERIFY_WORKER

    def start_after(self, record: BackupRecord) -> VerificationRecord | None:
        """Start the job of a finished scheduled backup (None for any other backup). A failure to record or
        invoke it propagates, so that Lambda retries the backup's invocation, which finds the backup done
        and starts the job again."""
        if record.trigger != "schedule" or record.dry_run or record.status == BackupStatus.RUNNING:
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
        job = self.job().start_check(backup_id, new_job_id(), plan_names, sample_percent)
        self.dispatch(job.job_id)
        return job

    def store(self) -> VerificationStore:
        return VerificationStore(self.clients.s3, self.settings.plans.catalog_bucket)

    def job(self, budget: Budget | None = None) -> VerificationJob:
        settings = self.settings
        return VerificationJob(
            settings.plans, self.clients, max_workers=settings.max_workers, time_zone=settings.time_zone, **self.job_options(budget)
        )

"""The weekly slice check as a job of its own: every distinct version of every stored snapshot whose slice
is the job's weekday (`checks.weekly_slice`), checked once, in as many invocations as it takes.

A scheduled backup starts the job when it has finished (chalicelib/backup/verification.py); the job never
runs inside the backup's invocation, and the backup's status and record never wait for it.

Memory stays flat however many versions are stored: the versions of a plan come from a sorted merge of its
manifests (each sorted by (source, key)), so all versions of one key arrive together and deduplication
holds only that key's versions. Versions are checked a batch at a time, and a batch always ends with a key.

Time is bounded by the invocation: after each batch the record (`record.py`, which is also the
checkpoint) is saved with the plan and the last (source, key) done, so it always describes a consistent
point; when the invocation's time runs short the job has itself invoked again with the same job id and the
next invocation carries on after that key. Each invocation downloads the plan's manifests again and skips
what was done. A finished job is never redone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import RecordStore, backup_time
from chalicelib.errors import AlreadyExists, NotFound, Pruned, describe_error
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.runner import BATCH_SIZE, Checkpoint, Job
from chalicelib.localtime import UTC
from chalicelib.notify import alerts
from chalicelib.plans import Plan, PlanSet
from chalicelib.times import isoformat, utcnow
from chalicelib.verify.cadence import LOOKBACK
from chalicelib.verify.plan_check import PlanCheck
from chalicelib.verify.record import VerificationRecord, VerificationStore, check_id, verification_id
from chalicelib.verify.report_check import CounterFactory

logger = logging.getLogger(__name__)
# The share of a slice re-read and re-hashed (percent) when its metadata comes from an inventory report.
REPORT_SAMPLE_PERCENT = 0.1


class VerificationJob(Job[VerificationRecord]):
    """Start and run weekly verification jobs and on-demand checks (chalicelib/jobs/runner.py's `Job`).
    `clients` is an `aws.Clients`; `time_zone`: the alert's times."""

    def __init__(
        self,
        plans: PlanSet,
        clients: Any,
        topic_arn: str | None = None,
        max_workers: int = 16,
        budget: Budget | None = None,
        invoker: Invoker | None = None,
        batch_size: int = BATCH_SIZE,
        time_zone: ZoneInfo = UTC,
        report: Callable[[str], Any] | None = None,
        sample_percent: float = REPORT_SAMPLE_PERCENT,
        row_counter: CounterFactory | None = None,
    ) -> None:
        store = VerificationStore(clients.s3, plans.catalog_bucket)
        super().__init__(plans, clients, store, budget, invoker, report, batch_size)
        self.store: VerificationStore = store
        self.time_zone = time_zone
        self.topic_arn = topic_arn
        self.max_workers = max_workers
        # The share re-hashed of a slice checked against an inventory report (without one, none).
        self.sample_percent = sample_percent
        # Counts the cost report's figures along a plan's pass against a report as a whole (None: not counted).
        self.row_counter = row_counter
        self.records = RecordStore(clients.s3, plans.catalog_bucket)
        # The most versions of one key the deduplication held at once, over every plan this object checked.
        self.largest_working_set = 0

    def start(self, backup_id: str, weekday: int | None = None, trigger: str = "schedule") -> VerificationRecord:
        """Record the job of `backup_id` (RUNNING), or find it already recorded: a backup has one job.
        `weekday` defaults to the backup's (0 = Monday)."""
        now = isoformat(utcnow())
        record = VerificationRecord(
            job_id=verification_id(backup_id),
            backup_id=backup_id,
            weekday=backup_time(backup_id).weekday() if weekday is None else weekday,
            trigger=trigger,
            started_at=now,
            updated_at=now,
        )
        if not 0 <= record.weekday <= 6:
            raise ValueError(f"weekday must be from 0 (Monday) to 6 (Sunday), got {record.weekday}")
        try:
            self.store.create(record)
        except AlreadyExists:
            logger.info("verification %s is already recorded", record.job_id)
            return self.store.get(record.job_id)
        logger.info("verification %s started: slice %d of the snapshots up to %s", record.job_id, record.weekday, backup_id)
        return record

    def step(self, checkpoint: Checkpoint[VerificationRecord]) -> bool:
        """One invocation's share of the work; True when the job ended (its result is then sealed)."""
        record = checkpoint.record
        record.invocations += 1
        try:
            if not self._work(checkpoint):
                return False
        except AlreadyExists:
            raise
        except Exception as exc:  # the job ends FAILED with the reason, and says so, whatever went wrong
            logger.exception("verification %s stopped", record.job_id)
            record.add_error(f"the verification stopped: {describe_error(exc)}")
        record.conclude(isoformat(utcnow()))
        # Sealed before the working copy says the job ended, so that an end without a sealed result is never
        # the job's own (record.py); a result an earlier invocation sealed before it stopped is the one kept.
        record = checkpoint.record = self.store.seal(record)
        checkpoint.save()
        logger.info(
            "verification %s %s: %d versions checked, %d missing, %d damaged, %d error(s)",
            record.job_id, record.status, record.checked, record.missing_count, record.damaged_count, record.error_count,
        )
        if len(record.waiting) < len(self.plans.plans):  # nothing to tell when every plan waits for a report
            alerts.publish_verification(self.clients.sns, self.topic_arn, record.to_dict(), self.time_zone)
        return True

    def start_check(
        self, backup_id: str, request_id: str, plan_names: list[str] | None, sample_percent: float
    ) -> VerificationRecord:
        """Record an on-demand check of one backup (RUNNING): every version of its snapshots (of
        `plan_names`, or all), and a re-read of `sample_percent` of them. The caller has checked the request
        (chalicelib/verify/verifier.py `Verifier.plans_of`)."""
        now = isoformat(utcnow())
        record = VerificationRecord(
            job_id=check_id(request_id),
            backup_id=backup_id,
            weekday=backup_time(backup_id).weekday(),
            kind="backup",
            trigger="api",
            plan_names=plan_names,
            sample_percent=sample_percent,
            started_at=now,
            updated_at=now,
        )
        self.store.create(record)
        return record

    def _work(self, checkpoint: Checkpoint[VerificationRecord]) -> bool:
        """Plan after plan from the checkpoint; False when time ran short."""
        record = checkpoint.record
        plans = self.plans.plans
        progressed = False
        # The newest jobs, read once for every plan of this invocation that decides whether it is due.
        earlier: list[list[VerificationRecord]] = []

        def earlier_jobs() -> list[VerificationRecord]:
            if not earlier:
                earlier.append(self.store.latest(LOOKBACK))
            return earlier[0]

        while record.plan_index < len(plans):
            if progressed and checkpoint.out_of_time():
                return False
            plan = plans[record.plan_index]
            try:
                if not self._check_plan(checkpoint, plan, earlier_jobs):
                    return False
            except (ClientError, BotoCoreError, NotFound, Pruned, ValueError) as exc:
                # This plan's slice could not be (fully) read; the other plans are still checked.
                record.add_error(f"plan {plan.name}: {describe_error(exc)}")
            progressed = True
            record.plan_index += 1
            record.after = None
            record.counting.pop(plan.name, None)
            checkpoint.save()
        return True

    def _check_plan(
        self, checkpoint: Checkpoint[VerificationRecord], plan: Plan, earlier: Callable[[], list[VerificationRecord]]
    ) -> bool:
        """The plan's part after the checkpoint (`plan_check.py`); False when time ran short (the checkpoint is
        saved)."""
        check = PlanCheck(
            self.clients.s3, self.plans, self.records, self.report, self.batch_size, self.max_workers,
            self.sample_percent, self.row_counter,
        )
        try:
            return check.run(checkpoint, plan, earlier)
        finally:
            self.largest_working_set = max(self.largest_working_set, check.largest)

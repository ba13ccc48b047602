"""Backups as the API and the schedule see them: start one, run it, look them up."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any

from chalicelib.aws import Clients
from chalicelib.backup import checkpoints, ranges
from chalicelib.backup.base import sealed_bases
from chalicelib.backup.locks import PlanLocks
from chalicelib.backup.plan_backup import back_up_plan
from chalicelib.backup.verification import VerificationJobs
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import (
    BackupRecord,
    PlanResult,
    RecordStore,
    new_backup_id,
    overall_status,
    scheduled_suffix,
)
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
from chalicelib.deploy import drift
from chalicelib.errors import AlreadyExists, BadRequest, Conflict, describe_error
from chalicelib.notify import alerts, metrics
from chalicelib.notify.tampering import TamperingAlerts
from chalicelib.times import isoformat, utcnow
from chalicelib.workers import WORKER_THREAD

logger = logging.getLogger(__name__)


# Time the daily backup must have left to compute the cost report before its alert: a listing of about a
# million versions and a year's projection per plan, with room to spare.
COST_REPORT_RESERVE_MS = 180_000


class BackupService:
    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        invoker: checkpoints.Invoker | None = None,
        verify_invoker: checkpoints.Invoker | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        # How a backup that ran short of time is carried on (default: by the worker mode).
        self.invoker = invoker
        self.records = RecordStore(clients.s3, settings.plans.catalog_bucket)
        # Tampering is told once per finding, by SNS (notify/tampering.py).
        self.tampering = TamperingAlerts(clients.s3, settings.plans.catalog_bucket, clients.sns, settings.topic_arn)
        # The weekly check of stored versions a scheduled backup starts when it ends (`verify_invoker`:
        # how its job is invoked; default: by the worker mode).
        self.verification = VerificationJobs(settings, clients, verify_invoker, self.tampering.report)

    def check_plan_names(self, names: list[str] | None) -> list[str]:
        return self.settings.plans.check_names(names)

    def start(
        self,
        plan_names: list[str] | None,
        trigger: str,
        dry_run: bool = False,
        backup_id: str | None = None,
        allow_deletions: list[str] | None = None,
    ) -> BackupRecord:
        """Record a new RUNNING backup. `AlreadyExists` when `backup_id` is given and already recorded.
        `allow_deletions` names plans whose deletions may pass the mass-deletion guard in this backup."""
        names = self.check_plan_names(plan_names)
        allowed = self.check_plan_names(allow_deletions) if allow_deletions else []
        outside = [name for name in allowed if name not in names]
        if outside:
            raise BadRequest(f"allow_deletions names plan(s) this backup does not back up: {', '.join(outside)}")
        record = BackupRecord(
            backup_id=backup_id or new_backup_id(),
            trigger=trigger,
            plans={name: PlanResult(plan=name) for name in names},
            started_at=isoformat(utcnow()),
            dry_run=dry_run,
            allow_deletions=allowed,
        )
        try:
            self.records.create(record)
        except AlreadyExists:
            if backup_id is not None:
                raise
            # A generated id is never reused: the create went through and only its answer was lost
            # (a 5xx after the write, then the retry found the record).
            logger.info("backup %s: the record was already written by a retried request", record.backup_id)
        return record

    def run(
        self, backup_id: str, context: Any = None, plan_name: str | None = None, segment: int | None = None
    ) -> BackupRecord:
        """Do the work of a recorded backup. Safe to call again: finished plans are not redone.

        `context` is the Lambda context: short of time, a plan stops at a checkpoint and the backup carries
        on in a new asynchronous invocation of the worker (the record stays RUNNING until then).
        `plan_name` and `segment` name one key range of a large plan split across invocations."""
        budget = checkpoints.budget_for(context, getattr(self.settings, "checkpoint_reserve_ms", checkpoints.DEFAULT_RESERVE_MS))
        record = self.records.get(backup_id)
        if record.status != "RUNNING":
            if record.sealed_at is None:
                # A run that died between its final save and the seal: seal it now.
                record = self.records.seal(record)
            # A redelivery may follow a run that ended before its verification job was started.
            self.verification.start_after(record)
            return record
        running = [name for name, result in record.plans.items() if result.status == "RUNNING"]
        # Each plan compares with the newest snapshot a sealed record of an older backup names (base.py).
        markers = PrunedMarkers(self.clients.s3, self.settings.plans.catalog_bucket)
        bases = sealed_bases(self.records, running, backup_id, markers) if segment is None else {}
        # Where no sealed record names a base, the bucket's manifests decide, never a pruned one.
        pruned = self._pruned(markers, [name for name in running if name not in bases]) if segment is None else {}
        for name in running:
            try:
                plan = self.settings.plans.get(name)
            except KeyError:
                # The plans file changed between start and run: fail this plan, never leave it RUNNING.
                record.plans[name].status = "FAILED"
                record.plans[name].errors.append(f"plan '{name}' is no longer in the plans file")
                self.records.save(record)
                continue
            # A large plan may be split into key ranges worked by parallel invocations (chalicelib/backup/ranges.py).
            this_segment = segment if name == plan_name else None
            if this_segment is not None:
                split = ranges.load_split(self.clients.s3, plan.bucket, plan.name, backup_id)
            else:
                split = ranges.start_split(
                    self.clients.s3, plan, backup_id, self._split_policy(), record.dry_run, bases.get(name),
                    pruned.get(name, frozenset()),
                )
            if split is None:
                result = back_up_plan(
                    plan, self.clients, backup_id, max_workers=self.settings.max_workers, dry_run=record.dry_run,
                    allow_deletions=name in record.allow_deletions,
                    budget=budget, base=bases.get(name), pruned=pruned.get(name, frozenset()),
                )
            else:
                result = ranges.run_range(
                    plan, self.clients, backup_id, split, this_segment or 0,
                    max_workers=self.settings.max_workers, dry_run=record.dry_run, budget=budget,
                    allow_deletions=name in record.allow_deletions,
                )
            record.plans[name] = result
            if result.status == ranges.WAITING:
                # This key range is done; the last range to finish writes the snapshot and carries on.
                return record
            if result.status == "RUNNING":
                # Stopped at a checkpoint: show the progress, and carry on in a fresh invocation.
                range_run = getattr(result, "segment", None)
                if range_run is None:
                    self.records.save(record)
                self.continue_later(backup_id, plan_name=name if range_run is not None else None, segment=range_run)
                return record
            drift.check_plan(self.clients.s3, plan, record.plans[name])
            if name != running[-1]:
                # Saved after each plan so GET /backups/{id} shows progress (the last one's result is in the
                # final save, just below).
                self.records.save(record)
        record.status = overall_status(list(record.plans.values()))
        record.finished_at = isoformat(utcnow())
        self.records.save(record)
        # From now on the record is read from its create-only copy: nothing can rewrite a finished backup.
        record = self.records.seal(record)
        logger.info("backup %s finished: %s", backup_id, record.status)
        alerts.publish(self.clients.sns, self.settings.topic_arn, record, self.settings.time_zone, cost=self._cost_line(record, budget))
        metrics.report(self.clients.cloudwatch, self.settings.plans.catalog_bucket, record)
        # Only now, with the backup final: its weekly verification is a job of its own, never waited for.
        self.verification.start_after(record)
        return record

    def _cost_line(self, record: BackupRecord, budget: checkpoints.TimeBudget | None) -> str | None:
        """The daily backup's cost report, computed and kept now (GET /costs then reads it), as the alert's
        last line. Other backups leave their report to be computed when first asked for."""
        if record.trigger != "schedule" or record.dry_run:
            return None
        if budget is not None and budget.remaining_ms() < COST_REPORT_RESERVE_MS:
            # The report lists every version of every bucket: started short of time, the invocation could end
            # before the alert is sent. The backup's alert matters more; the first GET /costs computes it.
            return "Cost: not computed in this run (too little time left); GET /costs computes it"
        try:
            report = CostReports.from_settings(self.settings, self.clients, self.tampering.report).for_backup(record.backup_id)
        except Exception as exc:
            # Whatever goes wrong with the figures, the backup's result and its alert stand.
            logger.exception("backup %s: the cost report could not be computed", record.backup_id)
            return f"Cost: not computed ({describe_error(exc)})"
        return alerts.cost_line(report["total"], report["prices"]["currency"])

    def run_scheduled(self, scheduled_at: datetime, context: Any = None, event_id: str | None = None) -> BackupRecord:
        """The daily backup. The id comes from the schedule's event: its time, and a part derived from the
        event's own id (a UUID EventBridge keeps across the deliveries and retries of one event). So a repeated
        delivery finds the same backup and finishes it instead of starting another, and nobody can know
        tomorrow's id today: a record or manifest planted in advance under it is never met. (Without an
        event id, e.g. from a test, the id is the predictable `<time>Z-scheduled`.)"""
        backup_id = new_backup_id(scheduled_at, suffix=scheduled_suffix(event_id))
        try:
            record = self.start(None, trigger="schedule", backup_id=backup_id)
        except AlreadyExists:
            logger.info("scheduled backup %s already recorded; resuming it if unfinished", backup_id)
        else:
            self._lock_plans(record)
        return self.run(backup_id, context=context)

    @staticmethod
    def _pruned(markers: PrunedMarkers, plans: list[str]) -> dict[str, frozenset[str]]:
        """The pruned snapshots of `plans` (one listing of the markers, only when some plan needs it)."""
        if not plans:
            return {}
        marked = markers.all()
        return {name: frozenset(b for (p, b) in marked if p == name) for name in plans}

    def _lock_plans(self, record: BackupRecord) -> None:
        """Take the plan locks, so that POST /backup meanwhile answers 409 naming this backup. The daily
        backup is never skipped: if an API backup holds a plan, both run (each writes its own snapshot)."""
        try:
            PlanLocks(self.clients.s3, self.settings.plans.catalog_bucket, self.records).acquire(
                list(record.plans), record.backup_id, utcnow()
            )
        except Conflict as exc:
            logger.warning("scheduled backup %s runs beside another backup: %s", record.backup_id, exc)

    def continue_later(self, backup_id: str, plan_name: str | None = None, segment: int | None = None) -> None:
        """Have a new invocation carry on a backup that stopped at a checkpoint. A failure propagates, so
        Lambda retries this invocation, which resumes from the same checkpoint."""
        payload: dict[str, Any] = {"backup_id": backup_id}
        if segment is not None:
            payload.update(plan=plan_name, segment=segment)
        invoker = self._invoker()
        if invoker is not None:
            invoker(payload)
        else:
            # In-process workers have no time limit: the rest runs now, without a budget.
            self.run(backup_id, plan_name=plan_name, segment=segment)

    def _invoker(self) -> checkpoints.Invoker | None:
        if self.invoker is not None:
            return self.invoker
        if self.settings.worker_mode == "lambda":
            return checkpoints.LambdaInvoker(self.clients.lambda_, self.settings.worker_function or "")
        return None

    def _split_policy(self) -> ranges.SplitPolicy | None:
        """Large plans are split into key ranges only where parallel invocations exist."""
        invoker = self._invoker()
        split_objects = getattr(self.settings, "split_objects", 0)
        if invoker is None or not split_objects:
            return None
        return ranges.SplitPolicy(split_objects, getattr(self.settings, "max_parallel_ranges", 8), invoker)

    def dispatch(self, record: BackupRecord) -> None:
        """Have the recorded backup run, by the configured worker mode."""
        mode = self.settings.worker_mode
        if mode == "inline":
            self.run(record.backup_id)
        elif mode == "thread":
            threading.Thread(target=self._run_logged, args=(record.backup_id,), name=f"{WORKER_THREAD}backup {record.backup_id}", daemon=True).start()
        else:
            self.clients.lambda_.invoke(
                FunctionName=self.settings.worker_function,
                InvocationType="Event",
                Payload=json.dumps({"backup_id": record.backup_id}).encode("utf-8"),
            )

    def _run_logged(self, backup_id: str) -> None:
        try:
            self.run(backup_id)
        except Exception:
            logger.exception("backup %s failed in its worker thread", backup_id)

    def get(self, backup_id: str) -> BackupRecord:
        return self.records.get(backup_id)

    def list(self, limit: int = 20) -> list[BackupRecord]:
        return self.records.list(limit)


def summary(record: BackupRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["totals"] = record.totals()
    return data

"""Backups as the API and the schedule see them: start one, run it, look them up."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

from chalicelib.aws import Clients
from chalicelib.backup import authorship, ranges, vault_watch
from chalicelib.backup.base import Base, sealed_bases
from chalicelib.jobs.locks import PlanLocks
from chalicelib.backup.plan_backup import BATCH_SIZE
from chalicelib.backup.plan_run import PlanOptions, run_plan
from chalicelib.backup.progress import BackupProgress, Superseded
from chalicelib.backup.verification import VerificationJobs
from chalicelib.catalog import run_keys
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import (
    BackupRecord,
    BackupStatus,
    PlanResult,
    RecordStore,
    new_backup_id,
    overall_status,
    scheduled_suffix,
)
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports, OutOfTime
from chalicelib.deploy import drift
from chalicelib.errors import AlreadyExists, BadRequest, Conflict, describe_error
from chalicelib.jobs.budget import Budget, TimeBudget, budget_for
from chalicelib.jobs.dispatch import Dispatcher, Invoker, worker_invoker
from chalicelib.jobs.runner import hand_on
from chalicelib.notify import alerts
from chalicelib.notify.tampering import TamperingAlerts
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)


# Time the daily backup must have left to compute the cost report before its alert: a listing of about a
# million versions and a year's projection per plan, with room to spare.
COST_REPORT_RESERVE_MS = 180_000
# Time kept for the alert when the cost report's reading is cut short.
ALERT_RESERVE_MS = 60_000


class BackupService:
    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        invoker: Invoker | None = None,
        verify_invoker: Invoker | None = None,
        tampering: TamperingAlerts | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.settings = settings
        # Objects a plan run compares and copies between two looks at the clock (and checkpoints).
        self.batch_size = batch_size
        self.clients = clients
        # How a backup that ran short of time is carried on (default: by the worker mode).
        self.invoker = invoker
        self.records = RecordStore(clients.s3, settings.plans.catalog_bucket)
        # Tampering is told once per finding, by the notifier (notify/tampering.py); the composition root passes its own.
        self.tampering = tampering or TamperingAlerts.from_settings(settings, clients)
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
        run_key: str | None = None,
    ) -> BackupRecord:
        """Record a new RUNNING backup. `AlreadyExists` when `backup_id` is given and already recorded.
        `allow_deletions` names plans whose deletions may pass the mass-deletion guard in this backup;
        `run_key` is the key its invocations will carry (catalog/run_keys.py), kept as its digest."""
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
            run_key_sha256=run_keys.key_digest(run_key) if run_key else None,
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
        self,
        backup_id: str,
        context: Any = None,
        plan_name: str | None = None,
        segment: int | None = None,
        run_key: str | None = None,
    ) -> BackupRecord:
        """Do the work of a recorded backup. Safe to call again: finished plans are not redone.

        `context` is the Lambda context: short of time, a plan stops at a checkpoint and the backup carries
        on in a new asynchronous invocation of the worker (the record stays RUNNING until then).
        `plan_name` and `segment` name one key range of a large plan split across invocations. `run_key`:
        the run's key, which every invocation of it carries (catalog/run_keys.py)."""
        budget = budget_for(context, self.settings.checkpoint_reserve_ms)
        record, etag = self.records.current(backup_id)
        problem = authorship.invocation_problem(record, run_key, sealed=etag is None)
        if problem is not None:
            return self._refuse(record, etag, problem, run_key)
        if etag is None or record.finished:
            return self._conclude(record, run_key)
        progress = BackupProgress(self.records, record, etag)
        try:
            if not self._run_plans(progress, budget, plan_name, segment, run_key):
                return progress.record
            return self._finish(progress, budget, run_key)
        except Superseded:
            # Another invocation finished the backup, and alerted: what is left is what a redelivery does.
            logger.info("backup %s was finished by another invocation", backup_id)
            return self._conclude(self.records.get(backup_id), run_key)

    def _conclude(self, record: BackupRecord, run_key: str | None) -> BackupRecord:
        """A backup found finished: sealed (a run that died between its final save and the seal is sealed
        now), and its verification started (a redelivery may follow a run that ended before it did)."""
        if record.sealed_at is None:
            problem = authorship.results_problem(record, run_key)
            if problem is not None:
                return self._refuse(record, None, problem, run_key)
            record = self.records.seal(record, run_key)
            problem = authorship.sealed_problem(record, run_key)
            if problem is not None:
                return self._refuse(record, None, problem, run_key)
        self.verification.start_after(record)
        return record

    def _refuse(self, found: BackupRecord, etag: str | None, problem: str, run_key: str | None) -> BackupRecord:
        """What the run found was not its own: told as tampering, and, when this invocation is the run's (it
        holds the key), the backup fails loudly: its working record ends FAILED, saying why, and the alert
        says so. An invocation without the key changes nothing."""
        self.tampering.report(problem)
        if run_key is None:
            logger.error("%s", problem)
            return found
        working = self.records.read(found.backup_id)
        record, etag = working if working is not None else (found, None)
        for result in record.plans.values():
            result.errors.append(f"TAMPERING: {problem}")
            if result.status == BackupStatus.RUNNING:
                result.status = BackupStatus.FAILED
        record.status = BackupStatus.FAILED
        record.finished_at = record.finished_at or isoformat(utcnow())
        if etag is not None:
            try:
                self.records.replace(record, etag)
            except AlreadyExists:
                logger.warning("backup %s: the working record changed meanwhile; the alert says what was found", record.backup_id)
        alerts.publish(self.clients.sns, self.settings.topic_arn, record, self.settings.time_zone)
        return record

    def _run_plans(
        self, progress: BackupProgress, budget: Budget | None, plan_name: str | None, segment: int | None,
        run_key: str | None,
    ) -> bool:
        """Work the plans still running, in order, saving the record after each; False when this invocation
        stops before the backup ends (a range done before the others, or a checkpoint)."""
        record = progress.record
        running = [name for name, result in record.plans.items() if result.status == BackupStatus.RUNNING]
        bases, pruned = self._comparison_bases(running, record.backup_id) if segment is None else ({}, {})
        options = PlanOptions(
            max_workers=self.settings.max_workers, dry_run=record.dry_run, budget=budget, batch_size=self.batch_size,
            run_key=run_key,
        )
        for name in running:
            if not progress.running(name):
                continue  # finished by another invocation of this backup meanwhile (see progress.py)
            try:
                plan = self.settings.plans.get(name)
            except KeyError:
                # The plans file changed between start and run: fail this plan, never leave it RUNNING.
                progress.record.plans[name].status = BackupStatus.FAILED
                progress.record.plans[name].errors.append(f"plan '{name}' is no longer in the plans file")
                authorship.prove_plan(progress.record, name, run_key)
                progress.save()
                continue
            outcome = run_plan(
                plan, self.clients, record.backup_id,
                dataclasses.replace(options, allow_deletions=name in record.allow_deletions),
                segment=segment if name == plan_name else None, policy=self._split_policy(),
                base=bases.get(name), pruned=pruned.get(name, frozenset()),
            )
            progress.record.plans[name] = outcome.result
            if outcome.waiting:
                # This key range is done; the last range to finish writes the snapshot and carries on.
                return False
            if outcome.result.status == BackupStatus.RUNNING:
                # Stopped at a checkpoint: show the progress (a range's shows once the plan is whole), and
                # carry on in a fresh invocation.
                if outcome.segment is None:
                    progress.save()
                self.continue_later(record.backup_id, plan_name=name if outcome.segment is not None else None,
                                    segment=outcome.segment, run_key=run_key)
                return False
            drift.check_plan(self.clients.s3, plan, progress.record.plans[name], self.settings.plans, self.settings.account)
            vault_watch.check_plan(self.clients.s3, self.records, plan, self.settings.plans.catalog_bucket, progress.record.plans[name])
            # The plan is finished as it will be sealed: the run signs it (a drift may have made it PARTIAL).
            authorship.prove_plan(progress.record, name, run_key)
            if name != running[-1]:
                # Saved after each plan so GET /backups/{id} shows progress (the last one's result is in the
                # final save).
                progress.save()
        return True

    def _comparison_bases(
        self, running: list[str], backup_id: str
    ) -> tuple[dict[str, Base], dict[str, frozenset[str]]]:
        """What each plan compares with: the newest snapshot a sealed record of an older backup names
        (base.py); where none does, the bucket's manifests decide, never a pruned one."""
        markers = PrunedMarkers(self.clients.s3, self.settings.plans.catalog_bucket)
        bases = sealed_bases(self.records, running, backup_id, markers)
        return bases, self._pruned(markers, [name for name in running if name not in bases])

    def _finish(self, progress: BackupProgress, budget: Budget | None, run_key: str | None) -> BackupRecord:
        """Every plan has run: the record's final save, its seal, the alert, the metrics and the weekly
        verification."""
        record = progress.record
        problem = authorship.results_problem(record, run_key)
        if problem is not None:
            return self._refuse(record, None, problem, run_key)
        record.status = overall_status(list(record.plans.values()))
        record.finished_at = isoformat(utcnow())
        progress.save()
        # From now on the record is read from its create-only copy: nothing can rewrite a finished backup.
        record = self.records.seal(progress.record, run_key)
        problem = authorship.sealed_problem(record, run_key)
        if problem is not None:
            # Someone sealed this backup before its run could: that record is not the run's.
            return self._refuse(record, None, problem, run_key)
        logger.info("backup %s finished: %s", record.backup_id, record.status)
        # What the plans found of tampering (a base that cannot be trusted, entries that disagree with their
        # sources, a manifest for this backup that its run did not write) is told by the tampering alert
        # too, once per finding.
        for result in record.plans.values():
            for warning in result.warnings + result.errors:
                if warning.startswith("TAMPERING: "):
                    self.tampering.report(f"backup {record.backup_id}, plan {result.plan}: {warning.removeprefix('TAMPERING: ')}")
        alerts.publish(
            self.clients.sns, self.settings.topic_arn, record, self.settings.time_zone, cost=self._cost_line(record, budget)
        )
        # Only now, with the backup final: its weekly verification is a job of its own, never waited for.
        self.verification.start_after(record)
        return record

    def _cost_line(self, record: BackupRecord, budget: Budget | None) -> str | None:
        """The daily backup's cost report, computed and kept now (GET /costs then reads it), as the alert's
        last line. Other backups leave their report to be computed when first asked for."""
        if record.trigger != "schedule" or record.dry_run:
            return None
        if isinstance(budget, TimeBudget) and budget.remaining_ms() < COST_REPORT_RESERVE_MS:
            # The report lists every version of every bucket: started short of time, the invocation could end
            # before the alert is sent. The backup's alert matters more; the first GET /costs computes it.
            return "Cost: not computed in this run (too little time left); GET /costs computes it"
        # The rows of a bucket whose report no verification has counted yet are read here: at millions of
        # versions longer than an invocation, so the reading stops while the alert can still be sent.
        deadline = budget.short_of(ALERT_RESERVE_MS) if isinstance(budget, TimeBudget) else None
        try:
            report = CostReports.from_settings(self.settings, self.clients, self.tampering.report).for_backup(
                record.backup_id, deadline=deadline
            )
        except OutOfTime as exc:
            logger.warning("backup %s: the cost report was not finished: %s", record.backup_id, exc)
            return f"Cost: not computed in this run ({exc}); GET /costs computes it"
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
        # Every delivery of the event derives the same key: a redelivery carries on the same run.
        run_key: str | None = run_keys.scheduled_run_key(event_id, backup_id)
        try:
            record = self.start(None, trigger="schedule", backup_id=backup_id, run_key=run_key)
        except AlreadyExists:
            logger.info("scheduled backup %s already recorded; resuming it if unfinished", backup_id)
            existing = self.records.read(backup_id)
            if existing is not None and existing[0].run_key_sha256 is None:
                # Recorded before runs had keys (a delivery of the event before this version was deployed).
                run_key = None
        else:
            self._lock_plans(record)
        return self.run(backup_id, context=context, run_key=run_key)

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

    def continue_later(
        self, backup_id: str, plan_name: str | None = None, segment: int | None = None, run_key: str | None = None
    ) -> None:
        """Have a new invocation carry on a backup that stopped at a checkpoint, with the run's key. A failure
        propagates, so Lambda retries this invocation, which resumes from the same checkpoint."""
        payload: dict[str, Any] = {"backup_id": backup_id} | ({"run_key": run_key} if run_key else {})
        if segment is not None:
            payload.update(plan=plan_name, segment=segment)
        if not hand_on(self._invoker(), payload, "backup"):
            # In-process workers have no time limit: the rest runs now, without a budget.
            self.run(backup_id, plan_name=plan_name, segment=segment, run_key=run_key)

    def _invoker(self) -> Invoker | None:
        settings = self.settings
        return worker_invoker(settings.worker_mode, self.clients.lambda_, settings.worker_function or "", self.invoker)

    def _split_policy(self) -> ranges.SplitPolicy | None:
        """Large plans are split into key ranges only where parallel invocations exist."""
        invoker = self._invoker()
        split_objects = self.settings.split_objects
        if invoker is None or not split_objects:
            return None
        return ranges.SplitPolicy(split_objects, self.settings.max_parallel_ranges, invoker)

    def dispatch(self, record: BackupRecord, run_key: str | None = None) -> None:
        """Have the recorded backup run, by the configured worker mode, with its run's key."""
        mode = self.settings.worker_mode
        invoker = worker_invoker(mode, self.clients.lambda_, self.settings.worker_function or "")
        extra = {"run_key": run_key} if run_key else {}
        Dispatcher("backup", "backup_id", self.run, invoker, mode, inline_raises=True)(record.backup_id, **extra)

    def get(self, backup_id: str) -> BackupRecord:
        return self.records.get(backup_id)

    def latest(self, limit: int = 20) -> list[BackupRecord]:
        return self.records.latest(limit)


def summary(record: BackupRecord) -> dict[str, Any]:
    data = record.public_dict()
    data["totals"] = record.totals()
    return data

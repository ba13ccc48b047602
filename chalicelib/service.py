"""Backups as the API and the schedule see them: start one, run it, look them up."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any

from chalicelib import alerts
from chalicelib.aws import Clients
from chalicelib.backup import back_up_plan
from chalicelib.config import Settings
from chalicelib.errors import AlreadyExists, BadRequest
from chalicelib.records import BackupRecord, PlanResult, RecordStore, isoformat, new_backup_id, overall_status, utcnow

logger = logging.getLogger(__name__)


class BackupService:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.settings = settings
        self.clients = clients
        self.records = RecordStore(clients.s3, settings.plans.catalog_bucket)

    def check_plan_names(self, names: list[str] | None) -> list[str]:
        known = self.settings.plans.names
        if names is None:
            return known
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BadRequest(
                f"unknown plan(s) {', '.join(map(repr, unknown))}; the known plans are {', '.join(known)}"
            )
        # Keep the plans file's order, drop repeats.
        return [name for name in known if name in set(names)]

    def start(
        self,
        plan_names: list[str] | None,
        trigger: str,
        dry_run: bool = False,
        backup_id: str | None = None,
    ) -> BackupRecord:
        """Record a new RUNNING backup. `AlreadyExists` when `backup_id` is given and already recorded."""
        names = self.check_plan_names(plan_names)
        record = BackupRecord(
            backup_id=backup_id or new_backup_id(),
            trigger=trigger,
            plans={name: PlanResult(plan=name) for name in names},
            started_at=isoformat(utcnow()),
            dry_run=dry_run,
        )
        self.records.create(record)
        return record

    def run(self, backup_id: str) -> BackupRecord:
        """Do the work of a recorded backup. Safe to call again: finished plans are not redone."""
        record = self.records.get(backup_id)
        if record.status != "RUNNING":
            return record
        for name in list(record.plans):
            if record.plans[name].status != "RUNNING":
                continue
            plan = self.settings.plans.get(name)
            record.plans[name] = back_up_plan(
                plan, self.clients, backup_id, max_workers=self.settings.max_workers, dry_run=record.dry_run
            )
            # Saved after each plan so GET /backups/{id} shows progress.
            self.records.save(record)
        record.status = overall_status(list(record.plans.values()))
        record.finished_at = isoformat(utcnow())
        self.records.save(record)
        logger.info("backup %s finished: %s", backup_id, record.status)
        alerts.publish(self.clients.sns, self.settings.topic_arn, record)
        return record

    def run_scheduled(self, scheduled_at: datetime) -> BackupRecord:
        """The daily backup. The id comes from the schedule time, so a repeated delivery finds the same
        backup and finishes it (if an earlier invocation stopped midway) instead of starting another."""
        backup_id = new_backup_id(scheduled_at, suffix="scheduled")
        try:
            self.start(None, trigger="schedule", backup_id=backup_id)
        except AlreadyExists:
            logger.info("scheduled backup %s already recorded; resuming it if unfinished", backup_id)
        return self.run(backup_id)

    def dispatch(self, record: BackupRecord) -> None:
        """Have the recorded backup run, by the configured worker mode."""
        mode = self.settings.worker_mode
        if mode == "inline":
            self.run(record.backup_id)
        elif mode == "thread":
            threading.Thread(target=self._run_logged, args=(record.backup_id,), daemon=True).start()
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

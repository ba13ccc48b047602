"""Verifying whole backups (the weekly slice of every stored version is a job of its own: job.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chalicelib.catalog.pruned import refusal
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.catalog.records import RecordStore
from chalicelib.errors import BadRequest, NotFound
from chalicelib.plans import Plan, PlanSet
from chalicelib.verify.checks import ProgressCallback, VerifyReport, verify_entries

logger = logging.getLogger(__name__)


class Verifier:
    """Verification of whole backups. `clients` is an `aws.Clients`."""

    def __init__(
        self, plans: PlanSet, clients: Any, max_workers: int = 16, report: Callable[[str], Any] = lambda finding: None
    ) -> None:
        self.plans = plans
        self.clients = clients
        self.max_workers = max_workers
        # Where tampering found on the way is told (notify/tampering.py).
        self.report = report
        self.records = RecordStore(clients.s3, plans.catalog_bucket)

    def snapshot_sizes(self, backup_id: str, plan_names: list[str] | None = None) -> dict[str, int]:
        """Objects per plan in a backup's snapshots (for a progress bar)."""
        sizes: dict[str, int] = {}
        for plan in self.plans_of(backup_id, plan_names):
            with open_snapshot(self.clients.s3, self.records, plan, backup_id, self.report, "verified") as manifest:
                sizes[plan.name] = int(manifest.header.get("objects", 0))
        return sizes

    def plans_of(self, backup_id: str, plan_names: list[str] | None) -> list[Plan]:
        record = self.records.get(backup_id)
        if plan_names is not None:
            unknown = [name for name in plan_names if name not in self.plans.names]
            if unknown:
                raise BadRequest(f"unknown plan(s) {', '.join(map(repr, unknown))}; the known plans are {', '.join(self.plans.names)}")
            absent = [name for name in plan_names if name not in record.plans]
            if absent:
                raise NotFound(f"backup {backup_id} did not back up plan(s) {', '.join(map(repr, absent))}")
        names = plan_names if plan_names is not None else list(record.plans)
        plans = [self.plans.get(name) for name in names if name in self.plans.names]
        with_snapshot = [p for p in plans if record.plans.get(p.name) and record.plans[p.name].snapshot]
        if not with_snapshot:
            raise NotFound(f"backup {backup_id} has no stored snapshot to verify{' (it was a dry run)' if record.dry_run else ''}")
        # Snapshots retention removed cannot be verified: named ones are refused, unnamed ones left out.
        pruned = {p.name: refusal(self.clients.s3, self.plans.catalog_bucket, p, backup_id) for p in with_snapshot}
        refused = [marker for marker in pruned.values() if marker is not None]
        if refused and (plan_names is not None or len(refused) == len(with_snapshot)):
            raise refused[0].refusal("verified")
        return [p for p in with_snapshot if pruned[p.name] is None]

    def verify_backup(
        self,
        backup_id: str,
        plan_names: list[str] | None = None,
        sample_percent: float = 0,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Every entry of the backup's snapshots. Raises NotFound for an unknown backup or plan snapshot."""
        if not 0 <= sample_percent <= 100:
            raise BadRequest(f"'sample_percent' must be between 0 and 100, got {sample_percent}")
        total = VerifyReport()
        per_plan: dict[str, Any] = {}
        for plan in self.plans_of(backup_id, plan_names):
            with open_snapshot(self.clients.s3, self.records, plan, backup_id, self.report, "verified") as manifest:
                if manifest.tampering:
                    total.errors.append(f"TAMPERING: {manifest.tampering}")
                report = verify_entries(
                    self.clients.s3, plan, manifest.entries(), sample_percent, self.max_workers, progress
                )
            per_plan[plan.name] = {"checked": report.checked, "missing": len(report.missing), "damaged": len(report.damaged)}
            total.add(report)
        return {"backup_id": backup_id, "sample_percent": sample_percent, "plans": per_plan, **total.to_dict()}

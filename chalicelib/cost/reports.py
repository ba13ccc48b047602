"""Cost reports as the API, the command line and the daily alert get them: computed once per backup and
kept, `meta/costs/<backup_id>.json` in the catalog bucket.

`GET /costs` answers the report of the newest finished backup (dry runs aside). It is computed the first
time it is asked for, or at the end of the daily backup (whose alert carries its one-line summary), and
read back from then on, until a newer backup finishes, or the plans or the prices change (a stored report
names what it was computed from, `inputs`, and one computed from other inputs is computed again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import BackupStatus, RecordStore
from chalicelib.config import Settings
from chalicelib.cost import report_runs
from chalicelib.cost.inventory import PlanInventory
from chalicelib.cost.report_runs import OutOfTime
from chalicelib.cost.bucket_versions import Work
from chalicelib.cost.projection import describe_lifecycle
from chalicelib.cost.prunes import RecentPrunes, recent_prunes
from chalicelib.cost.plan_costs import combine, plan_report
from chalicelib.cost.row_counts import counted_figures
from chalicelib.cost.tally import PlanTally
from chalicelib.cost.upkeep_model import UpkeepSettings
from chalicelib.cost.usage import History, measure, recent_history
from chalicelib.errors import NotFound, Tampered, describe_error
from chalicelib.inventory.freshness import stale_after
from chalicelib.layout import COSTS_PREFIX, PLAN_FIGURES_PREFIX
from chalicelib.plans import Plan, PlanSet
from chalicelib.prices import Prices, load_prices
from chalicelib.times import isoformat, utcnow
from chalicelib.s3docs import get_bytes

logger = logging.getLogger(__name__)

# /2: the upkeep of each plan (parts.upkeep, upkeep) and the baselines renamed; a /1 report is computed again.
FORMAT = "cost-report/2"
# Records read at most to find the newest finished backup (running backups and dry runs are passed over).
SCAN_RECORDS = 100
# Versions per plan asked about again with HeadObject.
SAMPLE_SIZE = 20


def cost_key(backup_id: str) -> str:
    return f"{COSTS_PREFIX}{backup_id}.json"


def plan_figures_key(plan: str) -> str:
    return f"{PLAN_FIGURES_PREFIX}{plan}.json"


class CostReports:
    """Compute, keep and find cost reports. `report` is told of tampering met on the way (backup records,
    manifests); `clock` gives the time a report is computed at."""

    def __init__(
        self,
        plans: PlanSet,
        s3: Any,
        prices: Prices,
        report: Callable[[str], Any] | None = None,
        sample_size: int = SAMPLE_SIZE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.plans = plans
        self.s3 = s3
        self.prices = prices
        self.report = report or (lambda finding: None)
        self.sample_size = sample_size
        self.clock = clock
        self.records = RecordStore(s3, plans.catalog_bucket)

    @classmethod
    def from_settings(cls, settings: Settings, clients: Any, report: Callable[[str], Any] | None = None) -> CostReports:
        return cls(settings.plans, clients.s3, settings.prices or load_prices(), report)

    def inputs(self) -> dict[str, Any]:
        """What a report depends on besides the buckets: a stored report computed from other inputs is stale."""
        return {
            "plans": {
                plan.name: {"bucket": plan.bucket, "lifecycle": describe_lifecycle(plan.lifecycle), "retention": plan.retention.describe()}
                for plan in self.plans.plans
            },
            "prices": {"file": self.prices.origin, "region": self.prices.region, "read_on": self.prices.read_on.isoformat()},
        }

    # Finding and keeping ---------------------------------------------------------------------------------

    def latest(self) -> dict[str, Any]:
        """The report of the newest finished backup, computed now if it was never computed."""
        backup_id = self.newest_finished()
        if backup_id is None:
            raise NotFound(
                "no finished backup yet: the cost report is computed from what the backups stored; start one "
                "with POST /backup (or wait for the daily backup) and ask again"
            )
        return self.for_backup(backup_id)

    def for_backup(
        self, backup_id: str, now: datetime | None = None, deadline: Callable[[], bool] | None = None
    ) -> dict[str, Any]:
        """The stored report of `backup_id`, or a new one, stored for the next caller. `deadline` (true once
        the caller must stop) raises `OutOfTime` while a bucket's rows are still being read."""
        stored = self.stored(backup_id)
        if stored is not None:
            return stored
        report = self.compute(backup_id, now, deadline=deadline)
        self.store(report)
        return report

    def store(self, report: dict[str, Any]) -> None:
        """Keep a report under its backup's id (replacing one computed before)."""
        self.s3.put_object(
            Bucket=self.plans.catalog_bucket,
            Key=cost_key(report["backup_id"]),
            Body=json.dumps(report, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
        )

    def stored(self, backup_id: str) -> dict[str, Any] | None:
        """The stored report, if there is one computed from today's inputs."""
        body = get_bytes(self.s3, self.plans.catalog_bucket, cost_key(backup_id))
        if body is None:
            return None
        try:
            report = json.loads(body)
        except ValueError:
            logger.warning("cost report of backup %s is not JSON; computing it again", backup_id)
            return None
        if not isinstance(report, dict) or report.get("format") != FORMAT or report.get("backup_id") != backup_id:
            logger.warning("cost report of backup %s is not one; computing it again", backup_id)
            return None
        if report.get("inputs") != self.inputs():
            logger.info("cost report of backup %s was computed from other plans or prices; computing it again", backup_id)
            return None
        return report

    def newest_finished(self) -> str | None:
        """The newest backup that has finished and was not a dry run."""
        start_after = None
        read = 0
        while read < SCAN_RECORDS:
            keys, more = self.records.list_keys(min(50, SCAN_RECORDS - read), start_after)
            for key in keys:
                start_after = key
                read += 1
                try:
                    record = self.records.read_key(key)
                except Tampered as exc:
                    self.report(str(exc))
                    continue
                except NotFound:
                    continue
                if record.status != BackupStatus.RUNNING and not record.dry_run:
                    return record.backup_id
            if not more or not keys:
                return None
        return None

    # Computing ---------------------------------------------------------------------------------------------

    def compute(
        self,
        backup_id: str | None = None,
        now: datetime | None = None,
        fresh: bool = False,
        deadline: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """A new report of every plan, as things stand at `now` (default: the clock's time). A plan whose
        versions come from the same inventory report as its last figures keeps those figures (`_carried`)
        unless `fresh`. `deadline`: see `for_backup`."""
        now = now or self.clock()
        started = time.monotonic()
        warnings: list[str] = []
        history: History | None = None
        prunes: RecentPrunes | None = None
        plans: dict[str, dict[str, Any]] = {}
        pruned: dict[tuple[str, str], str] | None = None
        for plan in self.plans.plans:
            first_warning = len(warnings)
            try:
                inventory = PlanInventory(self.s3, plan, self.records, self.report, warnings, self.plans.inventory, now)
                if inventory.report_key is not None and pruned is None:
                    # Which snapshots are pruned decides which versions are named: figures carried past a
                    # prune that removed one would be stale.
                    pruned = PrunedMarkers(self.s3, self.plans.catalog_bucket).all()
                inputs = self._plan_inputs(plan, pruned or {})
                carried = None if fresh else self._carried(plan, inventory, inputs, warnings)
                if carried is not None:
                    plans[plan.name] = carried
                    continue
                if history is None or prunes is None:
                    # Read once, and only when some plan is computed.
                    history = recent_history(self.records, now, report=self.report)
                    prunes = recent_prunes(self.s3, self.plans.catalog_bucket, now)
                    warnings += history.warnings + prunes.warnings
                counted = self._counted(plan, inventory)
                if counted is not None:
                    tally, work, counted_by = counted
                else:
                    tally = PlanTally(plan, self.prices, now, self.sample_size, listed_by=inventory.work.versions_from)
                    inventory.deadline = deadline
                    try:
                        for tallied, version in enumerate(inventory.versions(), 1):
                            tally.add(version)
                            if deadline is not None and tallied % report_runs.DEADLINE_EVERY == 0 and deadline():
                                raise OutOfTime(f"{tallied:,} versions tallied")
                    except OutOfTime as exc:
                        raise OutOfTime(
                            f"plan '{plan.name}': {exc} when the time ran out; the weekly verification counts "
                            "them along its own pass"
                        ) from None
                    work, counted_by = inventory.work, inventory.work.counted_by
                tally.head_check(self.s3)
            except (ClientError, BotoCoreError) as exc:
                # One unreadable bucket must not hide what the others cost.
                message = f"plan '{plan.name}': bucket {plan.bucket} could not be read: {describe_error(exc)}"
                warnings.append(message)
                plans[plan.name] = {"error": message, "monthly_usd": None, "storage": {}, "projection": []}
                continue
            usage = measure(history.runs.get(plan.name, []), now, self.prices)
            plans[plan.name] = {
                **plan_report(
                    plan, tally, inventory.snapshots, work, usage, prunes.for_plan(plan.name), self.prices, tally.now,
                    self.plans.schedule, UpkeepSettings.of_plans(self.plans),
                ),
                "figures": {
                    "computed_at": isoformat(tally.now), "carried": False, "named_from": work.named_from,
                    **({"counted_by": counted_by} if counted_by else {}),
                },
            }
            self._keep(plan, inventory, inputs, plans[plan.name], warnings[first_warning:], now, warnings)
        return {
            "format": FORMAT,
            "backup_id": backup_id,
            "computed_at": isoformat(now),
            "prices": {
                "file": self.prices.origin,
                "region": self.prices.region,
                "read_on": self.prices.read_on.isoformat(),
                "currency": self.prices.currency,
                "source": list(self.prices.source),
            },
            "inputs": self.inputs(),
            "total": combine(plans),
            "plans": plans,
            "warnings": warnings,
            "seconds": round(time.monotonic() - started, 3),
        }


    # A plan's figures, once per inventory report ------------------------------------------------------------

    def _plan_inputs(self, plan: Plan, pruned: Mapping[tuple[str, str], str]) -> dict[str, Any]:
        """What a plan's figures depend on besides its bucket's report: the plan, the prices, the schedule and
        inventory settings the upkeep is figured from, and the snapshots pruned (a digest)."""
        inputs = self.inputs()
        removed = "\n".join(sorted(backup_id for (name, backup_id) in pruned if name == plan.name))
        return {
            "plan": inputs["plans"][plan.name],
            "prices": inputs["prices"],
            "schedule": str(self.plans.schedule),
            "inventory": str(self.plans.inventory),
            "pruned": hashlib.sha256(removed.encode("utf-8")).hexdigest(),
        }

    def _counted(
        self, plan: Plan, inventory: PlanInventory
    ) -> tuple[PlanTally, Work, dict[str, Any]] | None:
        """The plan's counts from the weekly verification's pass over the report its versions would come
        from now (cost/row_counts.py), with the work of this report's own (the snapshots listed, the report
        chosen) and what says where they come from and how old they are; None (the bucket's rows are read
        here, `PlanInventory.versions`) without a report, or when no verification has counted this one yet,
        which the report says."""
        report = inventory.report_key
        if report is None:
            return None
        assert self.plans.inventory is not None
        fresh_after = self.clock() - stale_after(self.plans.inventory.frequency)
        found = counted_figures(self.s3, self.plans.catalog_bucket, plan, self.prices, report, fresh_after, self.sample_size)
        if found is None:
            inventory.work.counted_by = {
                "verification": None,
                "note": f"no weekly verification has counted the rows of the inventory report {report} yet (one "
                "does once the report is due): they were read and counted here",
            }
            return None
        tally, work, used = found
        own = inventory.work
        work.list_requests, work.report, work.report_files = own.list_requests, own.report, own.report_files
        age = (self.clock() - tally.now).total_seconds() / 86400
        used["age_days"] = round(max(0.0, age), 2)
        newest = "the newest report" if used["newest_report"] else f"a report still fresh (the newest, {report}, is not counted yet)"
        used["note"] = (
            f"counted by the weekly verification {used['verification']} as it checked the kept snapshots (up to "
            f"backup {used['snapshots_up_to']}) against {newest}, {used['age_days']} days ago"
        )
        work.named_from = {"counted_by_verification": used["verification"]}
        return tally, work, used

    def _carried(
        self, plan: Plan, inventory: PlanInventory, inputs: dict[str, Any], warnings: list[str]
    ) -> dict[str, Any] | None:
        """The plan's last figures, when they came from the report its versions would come from now, with
        the same inputs (`_plan_inputs`: no snapshot pruned since): computing them again would read the same
        report and every kept manifest for the same answer (at ten million objects, hours of Lambda time a
        day). The warnings computing them gave are given again. None: compute."""
        report = inventory.report_key
        if report is None:
            return None
        body = get_bytes(self.s3, self.plans.catalog_bucket, plan_figures_key(plan.name))
        try:
            kept = json.loads(body) if body is not None else None
        except ValueError:
            kept = None
        if not isinstance(kept, dict) or kept.get("format") != FORMAT or not isinstance(kept.get("figures"), dict):
            return None
        if kept.get("report") != report or kept.get("inputs") != inputs:
            return None
        warnings += [str(message) for message in kept.get("warnings") or []]
        computed_at = kept.get("computed_at")
        return {
            **kept["figures"],
            "figures": {
                "computed_at": computed_at,
                "carried": True,
                "named_from": kept.get("named_from"),
                "note": f"computed at {computed_at} from the inventory report {report}, the newest still: computed "
                "again when the next report arrives, a prune removes a snapshot, or asked for (org-backup cost "
                "--refresh)",
            },
        }

    def _keep(
        self,
        plan: Plan,
        inventory: PlanInventory,
        inputs: dict[str, Any],
        figures: dict[str, Any],
        found: list[str],
        now: datetime,
        warnings: list[str],
    ) -> None:
        """Keep the plan's figures, and the warnings `found` computing them, for the next reports to carry,
        when they came from an inventory report. Not kept: the next report computes them again."""
        report = inventory.report_key
        if report is None:
            return
        body = {
            "format": FORMAT,
            "report": report,
            "inputs": inputs,
            "computed_at": isoformat(now),
            "warnings": found,
            "named_from": figures.get("figures", {}).get("named_from"),
            "figures": {name: value for name, value in figures.items() if name != "figures"},
        }
        try:
            self.s3.put_object(
                Bucket=self.plans.catalog_bucket,
                Key=plan_figures_key(plan.name),
                Body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as exc:
            warnings.append(f"plan '{plan.name}': its figures were not kept, the next report computes them again: {describe_error(exc)}")


def plan_view(report: dict[str, Any], name: str) -> dict[str, Any]:
    """One plan's part of a report, with what says where it comes from (GET /costs/{plan})."""
    if name not in report.get("plans", {}):
        raise NotFound(f"the cost report of backup {report.get('backup_id')} has no plan {name!r}")
    keep = ("format", "backup_id", "computed_at", "prices", "warnings")
    return {**{key: report[key] for key in keep if key in report}, "plan": name, **report["plans"][name]}


def cost_report(settings: Settings, clients: Any, now: datetime | None = None) -> dict[str, Any] | None:
    """The cost report the operator's dashboard shows: the newest finished backup's, as the daily backup or
    `GET /costs` stored it, or None while there is none (a page view never computes one: that reads every
    version of every bucket). Plans whose bucket could not be read are left out of it."""
    reports = CostReports.from_settings(settings, clients)
    backup_id = reports.newest_finished()
    report = reports.stored(backup_id) if backup_id is not None else None
    if report is None:
        return None
    plans = {name: plan for name, plan in report.get("plans", {}).items() if plan.get("monthly_usd") is not None}
    return {**report, "plans": plans}

"""A prune: per plan, decide which snapshots stay, then delete every version under `data/` that no kept
snapshot names, then the manifests of the snapshots not kept.

The order is what makes a crash at any point harmless:

1. decide: the retention policy over the plan's sealed snapshots (`decision.py`), with the bases of
   running backups kept too. Nothing is written but the prune's own record.
2. survey: the sweep (`sweep_pass.py`) counts what would go and what is stored, deleting nothing. The guard
   (`guard.py`) looks at the shares removed; a held prune stops here, as does a dry run.
3. mark: a create-only marker for every snapshot being removed (`catalog/pruned.py`). From the first marker
   on, restores, verifications and backups treat that snapshot as gone, before any of it is.
4. delete: the sweep again. Referenced now means named by any manifest not marked (every version of it,
   whatever plan folder it is in), by a partial manifest of an unfinished backup, by the base of a running
   backup or by the snapshot an unfinished restore reads (either even when marked: restores are listed
   after the marks, catalog/restoring.py); and a version younger than the grace period, written since a
   running backup started, or under Object Lock retention is kept whatever names it. Everything else goes,
   a thousand versions per DeleteObjects request (`deleter.py`), and the position after each batch is the
   checkpoint, saved with the batch before it is sent: a resumed prune sends a batch it finds recorded
   again and counts it once.
5. manifests (`manifest_removal.py`): every version of each removed snapshot's manifest, and the kept
   indexes a newer one superseded (catalog/kept_index.py), but not one a running backup compares with or an
   unfinished restore reads. A manifest goes last, so a crash before it leaves a marked snapshot whose
   manifest still names versions (some already gone): the next prune, which skips marked snapshots, deletes
   the rest and then the manifest.

A kept snapshot is never marked, so its manifest is a reference in every pass: none of its versions can go.
A removed snapshot is marked before its first version goes: no restore can start from it half deleted.
Every step is idempotent, so a repeated or resumed invocation redoes at most one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta, tzinfo
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.kept_index import PRUNE_INDEX, drop_superseded
from chalicelib.catalog.pruned import PrunedMarkers, marker_prefix
from chalicelib.catalog.records import RecordStore
from chalicelib.errors import AlreadyExists, NotFound, Tampered, describe_error
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.runner import BATCH_SIZE, Checkpoint, Job
from chalicelib.notify import alerts
from chalicelib.plans import InventoryPlan, Plan, PlanSet
from chalicelib.prices import Prices
from chalicelib.inventory.freshness import newest_fresh_report
from chalicelib.prune import backdating, cadence, decision, guard
from chalicelib.prune.deleter import DELETE_BATCH
from chalicelib.prune.in_use import InUse
from chalicelib.prune.manifest_removal import remove_manifests
from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStatus, PruneStore, new_prune_id
from chalicelib.prune.sweep_pass import SweepPass
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=48)


# How many of the newest prune records are looked through for the policy in force before (guard.py) and the
# report an earlier prune already swept (cadence.py).
SWEPT_LOOKBACK = 10


class PruneJob(Job[PruneRecord]):
    """Start and run prunes (chalicelib/jobs/runner.py's `Job`). `clients` is an `aws.Clients`."""

    def __init__(
        self,
        plans: PlanSet,
        clients: Any,
        prices: Prices | None = None,
        time_zone: str | tzinfo = "UTC",
        topic_arn: str | None = None,
        budget: Budget | None = None,
        invoker: Invoker | None = None,
        report: Callable[[str], Any] | None = None,
        batch_size: int = BATCH_SIZE,
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        # Versions judged between two saves of the checkpoint: never more than one DeleteObjects request takes.
        store = PruneStore(clients.s3, plans.catalog_bucket)
        super().__init__(plans, clients, store, budget, invoker, report, min(batch_size, DELETE_BATCH))
        # The shortest grace period this job applies, whatever a prune's record says: a record is written by
        # the API too, and must not be able to shorten it.
        self.grace = grace
        self.prices = prices
        self.time_zone = time_zone
        self.topic_arn = topic_arn
        self.records = RecordStore(clients.s3, plans.catalog_bucket)
        # In a vault, the vault prune's own markers alone: those replicated there were written in the backup
        # account, which decides nothing of what the vault forgets.
        self.markers = PrunedMarkers(clients.s3, plans.catalog_bucket, marker_prefix(plans))
        # What S3 says of a late snapshot's start, by (plan, backup id): it never changes (a record's first
        # version and a sealed record stay as written), and the decision is taken again before marking.
        self._starts: dict[tuple[str, str], backdating.Start] = {}
        # What runs and reads in the catalog, read again by each step that needs it.
        self.in_use = InUse(clients.s3, plans.catalog_bucket, self.records, self.markers)

    # -- starting ---------------------------------------------------------------------------------------

    def start(
        self,
        plan_names: list[str],
        trigger: str,
        dry_run: bool = False,
        allow_large: list[str] | None = None,
        prune_id: str | None = None,
        grace: timedelta | None = None,
    ) -> PruneRecord:
        """Record a prune (RUNNING) of the named plans; with a `prune_id` already recorded (a repeated
        delivery of the schedule), that prune is returned as it is."""
        now = utcnow()
        record = PruneRecord(
            prune_id=prune_id or new_prune_id(now),
            trigger=trigger,
            plan_names=list(plan_names),
            dry_run=dry_run,
            allow_large=sorted(set(allow_large or [])),
            grace_hours=max(grace or self.grace, self.grace).total_seconds() / 3600,
            started_at=isoformat(now),
            updated_at=isoformat(now),
        )
        try:
            self.store.create(record)
        except AlreadyExists:
            logger.info("prune %s is already recorded", record.prune_id)
            return self.store.get(record.prune_id)
        logger.info("prune %s started: %s%s", record.prune_id, ", ".join(plan_names), " (dry run)" if dry_run else "")
        return record

    # -- running ----------------------------------------------------------------------------------------

    def step(self, checkpoint: Checkpoint[PruneRecord]) -> bool:
        record = checkpoint.record
        record.invocations += 1
        by_name = {plan.name: plan for plan in self.plans.plans}
        progressed = False
        while record.plan_index < len(record.plan_names):
            if progressed and checkpoint.out_of_time():
                checkpoint.save()
                return False
            name = record.plan_names[record.plan_index]
            work = record.plan(name)
            plan = by_name.get(name)
            try:
                if plan is None:
                    raise NotFound(f"plan {name!r} is no longer in the plans file")
                if not self._plan(checkpoint, plan, work):
                    return False
            except AlreadyExists:
                raise
            except Tampered as exc:
                # A manifest the prune cannot read may name anything: nothing more of this plan is deleted.
                self.report(str(exc))
                work.add_error(f"TAMPERING: the prune of plan {name} stopped in its {work.phase} step: {exc}")
                work.status = PruneStatus.FAILED
            except (ClientError, BotoCoreError, NotFound, ValueError, OSError, EOFError) as exc:
                # This plan stops where it is (everything done so far was safe to do); the others go on.
                logger.exception("prune %s: plan %s stopped", record.prune_id, name)
                work.add_error(f"the prune of plan {name} stopped in its {work.phase} step: {describe_error(exc)}")
                work.status = PruneStatus.FAILED
            progressed = True
            record.plan_index += 1
            checkpoint.save()
        record.conclude(isoformat(utcnow()))
        checkpoint.save()
        logger.info("prune %s %s: %s", record.prune_id, record.status, record.totals())
        if not all(record.plan(name).waiting for name in record.plan_names):
            alerts.publish_prune(self.clients.sns, self.topic_arn, record.to_dict())
        return True

    def _plan(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune) -> bool:
        """One plan through its phases; False when time ran short (the checkpoint is saved)."""
        record = checkpoint.record
        if work.phase == "decide":
            earlier = self.store.latest(SWEPT_LOOKBACK)
            # The policy in force before, which the guard compares this prune's with (guard.py).
            work.baseline = guard.baseline(earlier, plan.name, record.prune_id)
        if work.phase == "decide" and self.plans.inventory is not None:
            last = cadence.last_sweep(earlier, plan.name, record.prune_id)
            work.swept_report = last.report if last else None
            if record.trigger == "schedule" and not record.dry_run:
                work.waiting = self._waiting(plan, self.plans.inventory, last)
                if work.waiting is not None:
                    work.phase, work.status = "done", PruneStatus.SUCCEEDED
                    return True
        if work.phase == "decide":
            self._decide(plan, work)
            work.phase = "survey"
            work.position = None
            work.reset_counts()
            checkpoint.save()
        if work.phase == "survey":
            if not self._sweep(checkpoint, plan, work, delete=False):
                return False
            verdict = guard.judge(
                work, plan.max_prune_fraction, plan.name in record.allow_large, self.time_zone, work.baseline
            )
            guard.apply(verdict, work, record.dry_run)
            if record.dry_run or work.status == PruneStatus.HELD:
                work.phase = "done"
                work.status = work.status or (PruneStatus.FAILED if work.error_count else PruneStatus.SUCCEEDED)
                return True
            work.phase = "mark"
            work.position = None
            checkpoint.save()
        if work.phase == "mark":
            self._confirm_removing(plan, work)
            now = utcnow()
            for backup_id in work.removing:
                self.markers.mark(plan.name, backup_id, record.prune_id, now)
            work.marked = True
            work.phase = "delete"
            checkpoint.save()
        if work.phase == "delete":
            if work.position is None:
                # The delete pass's own findings replace the survey's (what stays, and why).
                work.kept_young = work.kept_running = work.object_locked = work.missing = 0
                work.markers_deleted = 0
            if not self._sweep(checkpoint, plan, work, delete=True):
                return False
            work.phase = "manifests"
            work.position = None
            checkpoint.save()
        if work.phase == "manifests":
            self._remove_manifests(checkpoint, plan, work)
            try:
                drop_superseded(self.clients.s3, plan.bucket, plan.name)
                if self.plans.inventory is not None:
                    drop_superseded(self.clients.s3, plan.bucket, plan.name, PRUNE_INDEX)
            except (ClientError, BotoCoreError) as exc:
                work.warn(f"superseded kept indexes stay until the next prune: {describe_error(exc)}")
            work.phase = "done"
        work.status = work.status or (PruneStatus.FAILED if work.error_count else PruneStatus.SUCCEEDED)
        return True

    # -- 1. decide --------------------------------------------------------------------------------------

    def decide(self, plan: Plan) -> PlanPrune:
        """What a prune would decide for the plan now (every snapshot, kept or not, and why), writing
        nothing: the command line's snapshot listing."""
        work = PlanPrune(plan=plan.name)
        self._decide(plan, work, report=False)
        return work

    def _decide(self, plan: Plan, work: PlanPrune, report: bool = True) -> None:
        s3 = self.clients.s3
        now = utcnow()
        sealed = decision.sealed_backups(s3, self.plans.catalog_bucket)
        running = self.in_use.running(sealed, now, plan.name)
        pruned = self.in_use.marked(plan)
        meta = decision.scan_bucket(s3, plan.bucket)
        restoring = self.in_use.restoring(plan)
        # What S3 says of each snapshot that ended after its own day: rare, two requests each.
        starts = {
            backup_id: self._start(backup_id, plan.name)
            for backup_id in decision.late_snapshots(meta, plan.name, sealed, self.time_zone)
        }
        decided = decision.decide_plan(plan, meta, sealed, pruned, running, self.time_zone, restoring, starts)
        work.policy = plan.retention.describe()
        work.rules = guard.policy_rules(plan.retention)
        work.snapshots = decided.snapshots
        work.removing = decided.removing
        work.running = {backup_id: isoformat(started) for backup_id, started in sorted(running.items())}
        for warning in decided.warnings:
            work.warn(warning)
            if report:
                self.report(warning.removeprefix("TAMPERING: "))

    def _start(self, backup_id: str, plan: str) -> backdating.Start:
        """When the backup was first recorded, and the manifest version its sealed record names for `plan`."""
        if (plan, backup_id) not in self._starts:
            recorded = backdating.first_recorded(self.clients.s3, self.plans.catalog_bucket, backup_id)
            try:
                record = self.records.get_sealed(backup_id)
            except Tampered:
                record = None
            result = record.plans.get(plan) if record is not None else None
            self._starts[plan, backup_id] = backdating.Start(recorded, result.manifest_version if result is not None else None)
        return self._starts[plan, backup_id]

    def _confirm_removing(self, plan: Plan, work: PlanPrune) -> None:
        """Just before marking: only what the policy drops now, as well as when the prune decided, is marked.
        The decision may be hours old (a long survey), the plans file may have changed since, a backup may
        have started that compares with one of them, and the record that carries the decision is not the
        prune's alone to write. Snapshots marked already (a resumed mark step) stay in the list."""
        fresh = PlanPrune(plan=plan.name)
        self._decide(plan, fresh, report=False)
        marked = self.in_use.marked(plan)
        confirmed = [b for b in work.removing if b in fresh.removing or b in marked]
        now_kept = {row["backup_id"]: row for row in fresh.snapshots}
        for backup_id in sorted(set(work.removing) - set(confirmed)):
            work.warn(f"snapshot {backup_id} is kept after all: the policy, decided again before marking, keeps it")
            # The report shows it kept, by the rules that keep it now.
            kept_row = now_kept.get(backup_id)
            if kept_row is None:
                continue
            rows = [row for row in work.snapshots if row["backup_id"] == backup_id]
            for row in rows:
                row.update(kept_row)
            if not rows:
                work.snapshots.append(kept_row)
        work.removing = confirmed


    # -- 2. and 4. the sweeps ---------------------------------------------------------------------------

    def _sweep(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune, delete: bool) -> bool:
        """Walk the plan bucket's data from the checkpoint (`sweep_pass.py`); with `delete`, delete what is
        unreferenced. False when time ran short (the checkpoint is saved)."""
        sweep = SweepPass(self.clients.s3, self.plans, self.in_use, self.prices, self.grace, self.batch_size)
        return sweep.run(checkpoint, plan, work, delete)

    def _waiting(self, plan: Plan, inventory: InventoryPlan, last: cadence.Sweep | None) -> dict[str, Any] | None:
        """Why the plan's scheduled prune waits for the next report (None: it is due)."""
        now = utcnow()
        fresh = newest_fresh_report(
            self.clients.s3, inventory.bucket, inventory.prefix, inventory.configuration_id, inventory.frequency,
            plan.bucket, now, None,
        )
        newest = fresh.report.manifest_key if fresh.report is not None else None
        return cadence.waiting(last, newest, inventory.frequency, now)

    # -- 5. manifests -----------------------------------------------------------------------------------

    def _remove_manifests(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune) -> None:
        """Every version of the manifest of each snapshot this prune removes (`manifest_removal.py`)."""
        remove_manifests(self.clients.s3, self.plans.catalog_bucket, self.in_use, self.prices, checkpoint, plan, work)

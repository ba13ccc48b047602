"""A prune: per plan, decide which snapshots stay, then delete every version under `data/` that no kept
snapshot names, then the manifests of the snapshots not kept.

The order is what makes a crash at any point harmless:

1. decide: the retention policy over the plan's sealed snapshots (`decision.py`), with the bases of
   running backups kept too. Nothing is written but the prune's own record.
2. survey: the sweep (`sweep.py`) counts what would go and what is stored, deleting nothing. The guard
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
5. manifests: every version of each removed snapshot's manifest, and the kept indexes a newer one
   superseded (catalog/kept_index.py), but not one a running backup compares with or an unfinished restore
   reads. A manifest goes last, so a crash before it
   leaves a marked snapshot whose manifest still names versions (some already gone): the next prune, which
   skips marked snapshots, deletes the rest and then the manifest.

A kept snapshot is never marked, so its manifest is a reference in every pass: none of its versions can go.
A removed snapshot is marked before its first version goes: no restore can start from it half deleted.
Every step is idempotent, so a repeated or resumed invocation redoes at most one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from contextlib import ExitStack
from datetime import datetime, timedelta, tzinfo
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.kept_index import PRUNE_INDEX, drop_superseded
from chalicelib.catalog.manifests import manifest_key
from chalicelib.catalog.pruned import PrunedMarkers, marker_prefix
from chalicelib.catalog.records import RecordStore
from chalicelib.catalog.relocations import Relocations
from chalicelib.catalog.restoring import snapshots_being_restored
from chalicelib.errors import AlreadyExists, NotFound, Tampered, describe_error
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.runner import BATCH_SIZE, Checkpoint, Job
from chalicelib.notify import alerts
from chalicelib.plans import InventoryPlan, Plan, PlanSet
from chalicelib.prices import Prices
from chalicelib.inventory.freshness import newest_fresh_report
from chalicelib.prune import backdating, cadence, decision, guard, repack, report_sweep
from chalicelib.prune.deleter import DELETE_BATCH, Deleter, judge_versions
from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStatus, PruneStore, new_prune_id
from chalicelib.prune.references import Sweeping, indexed_references, keep_recently_relocated, manifest_references
from chalicelib.prune.sweep import References, Rules, walk
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
        running = self._running(sealed, now, plan.name)
        pruned = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        meta = decision.scan_bucket(s3, plan.bucket)
        restoring = self._restoring(plan)
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
        marked = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
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

    def _restoring(self, plan: Plan) -> dict[str, str]:
        """backup id -> restore id of the plan's snapshots that unfinished restores read. Read after this
        prune's markers are written (the delete and manifest steps), it names every restore that could have
        found its snapshot unmarked (catalog/restoring.py): their versions stay, marked or not."""
        return {
            backup_id: restore_id
            for (name, backup_id), restore_id in snapshots_being_restored(self.clients.s3, self.plans.catalog_bucket).items()
            if name == plan.name
        }

    def _running(self, sealed: Collection[str], now: datetime, plan: str) -> dict[str, datetime]:
        found = decision.running_backups(self.records, sealed, now)
        return {**found.get("*", {}), **found.get(plan, {})}

    # -- 2. and 4. the sweeps ---------------------------------------------------------------------------

    def _sweep(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune, delete: bool) -> bool:
        """Walk the plan bucket's data from the checkpoint; with `delete`, delete what is unreferenced.
        False when time ran short (the checkpoint is saved)."""
        s3 = self.clients.s3
        now = utcnow()
        # What runs is read before the bucket: a backup that finishes while the bucket is listed (its
        # manifest written after the listing, its partial manifest gone before it) still counts as running.
        sealed = decision.sealed_backups(s3, self.plans.catalog_bucket)
        running = self._running(sealed, now, plan.name)
        marked = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        meta = decision.scan_bucket(s3, plan.bucket)
        # The survey judges as if the snapshots being removed were already marked.
        excluded = marked | (set() if delete else set(work.removing))
        candidates = [m.backup_id for m in meta.manifests.values() if m.plan == plan.name and m.backup_id in sealed]
        for running_id, started in sorted(running.items()):
            for base in sorted(decision.possible_bases(running_id, started, sealed, candidates, excluded) & excluded):
                # A running backup may carry versions forward from it: they stay while it runs.
                excluded.discard(base)
                work.warn(f"snapshot {base} stays readable while backup {running_id}, which may compare with it, runs")
        for backup_id, restore_id in sorted(self._restoring(plan).items()):
            if backup_id in excluded:
                excluded.discard(backup_id)
                work.warn(f"snapshot {backup_id} stays readable while restore {restore_id} reads it")
        rules = Rules(
            now=now,
            grace=max(timedelta(hours=checkpoint.record.grace_hours), self.grace),
            running_since=min(running.values()) if running else None,
            lock_days=plan.object_lock.days if plan.object_lock else None,
        )
        inventory = self.plans.inventory
        # Read after the manifests were found: a record written since is not seen, so its old pack version stays
        # named (and its new pack, younger than the grace period, stays too).
        relocations = Relocations.load(s3, plan.bucket, strict=True)
        # A plan that packs, with the prices the repack rule weighs: its packs' live objects are counted. Never
        # in a vault: its versions are kept as replicated, read by what the backup bucket's manifests name.
        repacking = self.prices is not None and not plan.in_vault
        live = repack.live_objects(s3, plan, now, rules.grace, relocations) if repacking else None
        at = Sweeping(s3, plan.bucket, plan.name, meta, sealed, excluded, now, relocations, live.add if live else None)
        with ExitStack() as stack:
            # A batch is sent at a key's end (`full` below), so a saved position never leaves a version of its
            # key unsent.
            deleter = Deleter(s3, plan, work, self.prices, now) if delete else None
            if deleter is not None and work.sending:
                deleter.resend()  # recorded, then the invocation ended before S3's answer was counted

            def missing(count: int) -> None:
                work.missing += count

            if inventory is None:
                sources = manifest_references(at, stack, check=delete)
                references = References(sources, relocations=relocations, collect=live.add if live else None)
                stack.callback(references.close)
                keep_recently_relocated(references, relocations, now - rules.grace)
                keys = walk(s3, plan.bucket, references, work.position, missing)
            else:
                # Candidates from the prune's kept index (and the manifests it does not cover) and the inventory
                # report: no listing of data/, and the kept manifests are not read again.
                references, named, index = indexed_references(at, stack, check=delete)
                keep_recently_relocated(references, relocations, now - rules.grace)
                first = min((m.written for m in meta.manifests.values() if m.plan == plan.name), default=None)
                rows, work.inventory = report_sweep.report_rows(s3, inventory, plan.bucket, now, stack, first)
                work.inventory["kept_index"] = index
                if work.inventory["problem"]:
                    work.warn(work.inventory["problem"])
                report = work.inventory.get("report")
                unnamed = report is None or report != work.swept_report
                if not unnamed:
                    work.inventory["unnamed"] = "looked for in this report by an earlier prune: not again until the next report"
                keys = report_sweep.walk_report(rows, named, references, work.position, now, unnamed)
            judged = 0
            last = work.position
            for stored in keys:
                judged += judge_versions(
                    stored, rules, work, deleter, plan, self.prices, now, markers=inventory is not None
                )
                # The listing sweep saves its position every batch of versions listed. Judging the report's
                # rows costs no request, so that sweep saves it after each full DeleteObjects request and when
                # time runs short: its record writes grow with what is deleted, not with what is stored.
                full = deleter is not None and len(deleter.pending) >= DELETE_BATCH
                if full or judged >= self.batch_size:
                    judged = 0
                    if inventory is not None and not full and not checkpoint.out_of_time():
                        continue
                    work.position = stored.position
                    if deleter is not None and deleter.pending:
                        # Saved with the batch, then sent: the next save carries what it counted.
                        deleter.send(checkpoint.save)
                        if checkpoint.out_of_time():
                            checkpoint.save()
                    else:
                        checkpoint.save()
                    if checkpoint.out_of_time():
                        return False
                last = stored.position
            if deleter is not None and deleter.pending:
                # The last batch is recorded at the last key: a prune resumed after it sends it and walks no further.
                work.position = last
                deleter.send(checkpoint.save)
        work.position = None
        if live is not None and self.prices is not None:
            # Every kept reference was read by this pass: what is live in each pack is known.
            done = repack.run(s3, plan, live, self.prices, rules.grace, now, checkpoint.record.prune_id, delete, checkpoint.out_of_time)
            setattr(work, "repacked" if delete else "would_repack", done.report())
            for problem in done.problems:
                work.warn(problem)
        return True

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
        """Every version of the manifest of each snapshot this prune removes, and of any
        snapshot an earlier prune marked whose manifest is still there (it crashed first, or Object Lock held
        the manifest), unless a backup that runs now compares with it."""
        s3 = self.clients.s3
        deleter = Deleter(s3, plan, work, self.prices, utcnow())
        if work.sending:
            deleter.resend()  # recorded, then the invocation ended before S3's answer was counted
        sealed = decision.sealed_backups(s3, self.plans.catalog_bucket)
        running = self._running(sealed, utcnow(), plan.name)
        marked = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        meta = decision.scan_bucket(s3, plan.bucket)
        candidates = [m.backup_id for m in meta.manifests.values() if m.plan == plan.name and m.backup_id in sealed]
        protected: set[str] = set()
        for running_id, started in running.items():
            protected |= decision.possible_bases(running_id, started, sealed, candidates, marked)
        restoring = self._restoring(plan)
        present = {m.backup_id for m in meta.manifests.values() if m.plan == plan.name}
        for backup_id in sorted((set(work.removing) | marked) & present):
            if backup_id not in marked:
                continue  # never delete what is not marked first
            if backup_id in protected:
                work.warn(f"the manifest of snapshot {backup_id} stays until the backup comparing with it ends")
                continue
            if backup_id in restoring:
                work.warn(f"the manifest of snapshot {backup_id} stays until restore {restoring[backup_id]} ends")
                continue
            # Every version the scan found (a delete marker there is refused by the bucket policy; one left
            # alone is removed by the lifecycle's ExpiredObjectDeleteMarker once nothing is under it).
            key = manifest_key(plan.name, backup_id)
            for version_id, _ in meta.manifests[key].versions:
                deleter.add_manifest(key, version_id)
        # One held by Object Lock is counted in `object_locked`: a later prune deletes it once its retention passed.
        deleter.send(checkpoint.save)

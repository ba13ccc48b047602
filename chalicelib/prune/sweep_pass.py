"""The prune's sweep of a plan's stored versions (`job.py`: the survey, step 2, and the delete, step 4), and
the repack that follows it in a plan that packs.

The sweep walks the plan bucket's data from the checkpoint: by listing `data/` against every manifest not
marked (`sweep.py`, `references.py`), or, with an inventory, the report's rows against the prune's kept index
(`report_sweep.py`). Each version is judged (`deleter.py` `judge_versions`: referenced, younger than the grace
period, written since a running backup started, or under Object Lock retention, it stays); with `delete`, what
is unreferenced goes, a DeleteObjects request at a time, each batch saved with the checkpoint before it is
sent. A pass reads every kept reference, so it also knows what is live in each pack: the repack
(`repack.py`) weighs and does the repacks that pay after it.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

from chalicelib.catalog.relocations import Relocations
from chalicelib.jobs.runner import Checkpoint
from chalicelib.plans import Plan, PlanSet
from chalicelib.prices import Prices
from chalicelib.prune import decision, repack, report_sweep
from chalicelib.prune.deleter import DELETE_BATCH, Deleter, judge_versions
from chalicelib.prune.in_use import InUse
from chalicelib.prune.record import PlanPrune, PruneRecord
from chalicelib.prune.references import Sweeping, indexed_references, keep_recently_relocated, manifest_references
from chalicelib.prune.sweep import References, Rules, walk
from chalicelib.times import utcnow


class SweepPass:
    """One pass of the sweep over a plan (`run`), made for each pass from the prune job's settings: `grace` is
    the shortest grace period the job applies, whatever a prune's record says; `prices` (None: no early
    deletion charges counted and no repack) what the deleter counts and the repack rule weighs; `batch_size`
    the versions judged between two saves of the checkpoint."""

    def __init__(
        self, s3: Any, plans: PlanSet, in_use: InUse, prices: Prices | None, grace: timedelta, batch_size: int
    ) -> None:
        self.s3 = s3
        self.plans = plans
        self.in_use = in_use
        self.prices = prices
        self.grace = grace
        self.batch_size = batch_size

    def run(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune, delete: bool) -> bool:
        """Walk the plan bucket's data from the checkpoint; with `delete`, delete what is unreferenced.
        False when time ran short (the checkpoint is saved)."""
        s3 = self.s3
        now = utcnow()
        # What runs is read before the bucket: a backup that finishes while the bucket is listed (its
        # manifest written after the listing, its partial manifest gone before it) still counts as running.
        sealed = decision.sealed_backups(s3, self.plans.catalog_bucket)
        running = self.in_use.running(sealed, now, plan.name)
        marked = self.in_use.marked(plan)
        meta = decision.scan_bucket(s3, plan.bucket)
        # The survey judges as if the snapshots being removed were already marked.
        excluded = marked | (set() if delete else set(work.removing))
        candidates = [m.backup_id for m in meta.manifests.values() if m.plan == plan.name and m.backup_id in sealed]
        for running_id, started in sorted(running.items()):
            for base in sorted(decision.possible_bases(running_id, started, sealed, candidates, excluded) & excluded):
                # A running backup may carry versions forward from it: they stay while it runs.
                excluded.discard(base)
                work.warn(f"snapshot {base} stays readable while backup {running_id}, which may compare with it, runs")
        for backup_id, restore_id in sorted(self.in_use.restoring(plan).items()):
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
        live = self._live_objects(plan, now, rules.grace, relocations)
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
        if live is not None:
            # Every kept reference was read by this pass: what is live in each pack is known.
            self._repack(checkpoint, plan, work, live, rules.grace, now, delete)
        return True

    def _live_objects(self, plan: Plan, now: datetime, grace: timedelta, relocations: Relocations) -> repack.LiveObjects | None:
        """A plan that packs, with the prices the repack rule weighs: its packs' live objects are counted. Never
        in a vault: its versions are kept as replicated, read by what the backup bucket's manifests name."""
        repacking = self.prices is not None and not plan.in_vault
        return repack.live_objects(self.s3, plan, now, grace, relocations) if repacking else None

    def _repack(
        self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune, live: repack.LiveObjects, grace: timedelta,
        now: datetime, delete: bool,
    ) -> None:
        """The repacks that pay, once the pass knows what is live in each pack: done by the delete pass, only
        counted by the survey."""
        if self.prices is None:
            return
        done = repack.run(self.s3, plan, live, self.prices, grace, now, checkpoint.record.prune_id, delete, checkpoint.out_of_time)
        setattr(work, "repacked" if delete else "would_repack", done.report())
        for problem in done.problems:
            work.warn(problem)

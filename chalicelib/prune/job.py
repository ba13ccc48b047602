"""A prune: per plan, decide which snapshots stay, then delete every version under `data/` that no kept
snapshot names, then the manifests of the snapshots not kept.

The order is what makes a crash at any point harmless:

1. decide: the retention policy over the plan's sealed snapshots (`snapshots.py`), with the bases of
   running backups kept too. Nothing is written but the prune's own record.
2. survey: the sweep (`sweep.py`) counts what would go and what is stored, deleting nothing. The guard
   looks at the shares removed; a held prune stops here, as does a dry run.
3. mark: a create-only marker for every snapshot being removed (`catalog/pruned.py`). From the first marker
   on, restores, verifications and backups treat that snapshot as gone, before any of it is.
4. delete: the sweep again. Referenced now means named by any manifest not marked (every version of it,
   whatever plan folder it is in), by a partial manifest of an unfinished backup, or by the base of a
   running backup (even a marked one); and a version younger than the grace period, written since a
   running backup started, or under Object Lock retention is kept whatever names it. Everything else goes,
   a thousand versions per DeleteObjects request, and the position after each batch is the checkpoint.
5. manifests: every version of each removed snapshot's manifest. A manifest goes last, so a crash before it
   leaves a marked snapshot whose manifest still names versions (some already gone): the next prune, which
   skips marked snapshots, deletes the rest and then the manifest.

A kept snapshot is never marked, so its manifest is a reference in every pass: none of its versions can go.
A removed snapshot is marked before its first version goes: no restore can start from it half deleted.
Every step is idempotent, so a repeated or resumed invocation redoes at most one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import ExitStack
from datetime import datetime, timedelta, tzinfo
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.manifests import Entry, Manifest, manifest_key
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore, backup_time, is_backup_id
from chalicelib.catalog.restoring import snapshots_being_restored
from chalicelib.cost.model import StoredVersion, early_deletion_as_stored
from chalicelib.errors import AlreadyExists, NotFound, Tampered, describe_error
from chalicelib.jobs.budget import Budget
from chalicelib.jobs.dispatch import Invoker
from chalicelib.jobs.runner import BATCH_SIZE, Checkpoint, Job
from chalicelib.notify import alerts
from chalicelib.plans import Plan, PlanSet
from chalicelib.prices import Prices
from chalicelib.prune import snapshots
from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStatus, PruneStore, add_to, new_prune_id
from chalicelib.prune.sweep import References, Rules, StoredKey, check_order, walk
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=48)
# The most versions one DeleteObjects request takes.
DELETE_BATCH = 1000


def held_by_object_lock(error: dict[str, Any]) -> bool:
    """Whether a DeleteObjects error is S3 refusing to delete a version under Object Lock retention (a later
    prune takes it) rather than a missing permission or key (an error to report): S3 answers both with
    AccessDenied, the first with "Access Denied because object protected by object lock"."""
    return error.get("Code") == "AccessDenied" and "object lock" in str(error.get("Message", "")).lower()


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
        self.markers = PrunedMarkers(clients.s3, plans.catalog_bucket)

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
        alerts.publish_prune(self.clients.sns, self.topic_arn, record.to_dict())
        return True

    def _plan(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune) -> bool:
        """One plan through its phases; False when time ran short (the checkpoint is saved)."""
        record = checkpoint.record
        if work.phase == "decide":
            self._decide(plan, work)
            work.phase = "survey"
            work.position = None
            work.reset_counts()
            checkpoint.save()
        if work.phase == "survey":
            if not self._sweep(checkpoint, plan, work, delete=False):
                return False
            self._judge(record, plan, work)
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
            work.phase = "delete"
            checkpoint.save()
        if work.phase == "delete":
            if work.position is None:
                # The delete pass's own findings replace the survey's (what stays, and why).
                work.kept_young = work.kept_running = work.object_locked = work.missing = 0
            if not self._sweep(checkpoint, plan, work, delete=True):
                return False
            work.phase = "manifests"
            work.position = None
            checkpoint.save()
        if work.phase == "manifests":
            self._remove_manifests(plan, work)
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
        sealed = snapshots.sealed_backups(s3, self.plans.catalog_bucket)
        running = self._running(sealed, now, plan.name)
        pruned = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        meta = snapshots.scan_bucket(s3, plan.bucket)
        restoring = {
            backup_id: restore_id
            for (name, backup_id), restore_id in snapshots_being_restored(s3, self.plans.catalog_bucket).items()
            if name == plan.name
        }
        decision = snapshots.decide_plan(plan, meta, sealed, pruned, running, self.time_zone, restoring)
        work.policy = plan.retention.describe()
        work.snapshots = decision.snapshots
        work.removing = decision.removing
        work.running = {backup_id: isoformat(started) for backup_id, started in sorted(running.items())}
        for warning in decision.warnings:
            work.warn(warning)
            if report:
                self.report(warning.removeprefix("TAMPERING: "))

    def _confirm_removing(self, plan: Plan, work: PlanPrune) -> None:
        """Just before marking: only what the policy drops now, as well as when the prune decided, is marked.
        The decision may be hours old (a long survey), the plans file may have changed since, a backup may
        have started that compares with one of them, and the record that carries the decision is not the
        prune's alone to write. Snapshots marked already (a resumed mark step) stay in the list."""
        fresh = PlanPrune(plan=plan.name)
        self._decide(plan, fresh, report=False)
        marked = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        confirmed = [b for b in work.removing if b in fresh.removing or b in marked]
        for backup_id in sorted(set(work.removing) - set(confirmed)):
            work.warn(f"snapshot {backup_id} is kept after all: the policy, decided again before marking, keeps it")
        work.removing = confirmed

    def _running(self, sealed: Collection[str], now: datetime, plan: str) -> dict[str, datetime]:
        found = snapshots.running_backups(self.records, sealed, now)
        return {**found.get("*", {}), **found.get(plan, {})}

    # -- 2. and 4. the sweeps ---------------------------------------------------------------------------

    def _sweep(self, checkpoint: Checkpoint[PruneRecord], plan: Plan, work: PlanPrune, delete: bool) -> bool:
        """Walk the plan bucket's data from the checkpoint; with `delete`, delete what is unreferenced.
        False when time ran short (the checkpoint is saved)."""
        s3 = self.clients.s3
        now = utcnow()
        # What runs is read before the bucket: a backup that finishes while the bucket is listed (its
        # manifest written after the listing, its partial manifest gone before it) still counts as running.
        sealed = snapshots.sealed_backups(s3, self.plans.catalog_bucket)
        running = self._running(sealed, now, plan.name)
        marked = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        meta = snapshots.scan_bucket(s3, plan.bucket)
        # The survey judges as if the snapshots being removed were already marked.
        excluded = marked | (set() if delete else set(work.removing))
        candidates = [m.backup_id for m in meta.manifests.values() if m.plan == plan.name and m.backup_id in sealed]
        for running_id, started in sorted(running.items()):
            for base in sorted(snapshots.possible_bases(running_id, started, sealed, candidates, excluded) & excluded):
                # A running backup may carry versions forward from it: they stay while it runs.
                excluded.discard(base)
                work.warn(f"snapshot {base} stays readable while backup {running_id}, which may compare with it, runs")
        rules = Rules(
            now=now,
            grace=max(timedelta(hours=checkpoint.record.grace_hours), self.grace),
            running_since=min(running.values()) if running else None,
            lock_days=plan.object_lock.days if plan.object_lock else None,
        )
        with ExitStack() as stack:
            sources = self._references(plan, meta, sealed, excluded, now, stack, check=delete)
            references = References(sources)
            stack.callback(references.close)
            deleter = _Deleter(s3, plan, work, self.prices, now) if delete else None

            def missing(count: int) -> None:
                work.missing += count

            judged = 0
            for stored in walk(s3, plan.bucket, references, work.position, missing):
                judged += self._judge_key(stored, rules, work, deleter, plan, now)
                if judged >= self.batch_size:
                    if deleter is not None:
                        deleter.flush()
                    work.position = stored.position
                    checkpoint.save()
                    judged = 0
                    if checkpoint.out_of_time():
                        return False
            if deleter is not None:
                deleter.flush()
        work.position = None
        return True

    def _references(
        self,
        plan: Plan,
        meta: snapshots.BucketMeta,
        sealed: Mapping[str, datetime],
        excluded: set[str],
        now: datetime,
        stack: ExitStack,
        check: bool = False,
    ) -> list[Iterator[Entry]]:
        """Every manifest that names versions this sweep must keep, downloaded: all versions of every manifest
        in the bucket but the plan's excluded snapshots, and the partial manifests of unfinished backups.
        With `check`, each is read through once first and refused (Tampered) if not sorted by key."""
        s3 = self.clients.s3
        opened: list[Iterator[Entry]] = []

        def add(manifest: Manifest, where: str) -> None:
            if check:
                check_order(manifest.entries(include_held=True), where)
            opened.append(manifest.entries(include_held=True))

        for stored in meta.manifests.values():
            if stored.plan == plan.name and stored.backup_id in excluded:
                continue
            for version_id, _ in stored.versions:
                manifest = stack.enter_context(Manifest.download(s3, plan.bucket, stored.key, version_id))
                add(manifest, f"manifest {stored.key} (version {version_id})")
        since = now - snapshots.RUNNING_LOOKBACK
        for key, (_, backup_id) in sorted(meta.partials.items()):
            if backup_id in sealed or (is_backup_id(backup_id) and backup_time(backup_id) < since):
                continue  # left behind by a run that finished, or was abandoned long ago
            manifest = stack.enter_context(Manifest.download(s3, plan.bucket, key))
            add(manifest, f"partial manifest {key}")
        return opened

    def _judge_key(
        self, stored: StoredKey, rules: Rules, work: PlanPrune, deleter: _Deleter | None, plan: Plan, now: datetime
    ) -> int:
        """Judge every version of one key; returns how many versions it has."""
        listed: set[str] = set()
        count = 0
        for version, noncurrent_since in stored.versions():
            count += 1
            listed.add(version["VersionId"])
            storage_class = version.get("StorageClass") or "STANDARD"
            size = int(version.get("Size", 0))
            if deleter is None:
                add_to(work.stored, storage_class, size)
            verdict = rules.judge(version, stored.referenced)
            if verdict == "young":
                work.kept_young += 1
            elif verdict == "running":
                work.kept_running += 1
            elif verdict == "locked":
                work.object_locked += 1
            elif verdict == "delete":
                if deleter is not None:
                    deleter.add(stored.data_key, version, noncurrent_since)
                else:
                    add_to(work.would_delete, storage_class, size)
                    charge = _early_charge(plan, version, noncurrent_since, storage_class, self.prices, now)
                    if charge:
                        _add_charge(work.would_early_deletion, charge, size)
                    work.monthly_saving_usd += _monthly(self.prices, storage_class, size)
        work.missing += len(stored.referenced - listed)
        return count

    def _judge(self, record: PruneRecord, plan: Plan, work: PlanPrune) -> None:
        """The prune guard, once the survey counted what would go."""
        governed = [s for s in work.snapshots if s.get("governed")]
        removing = len(work.removing)
        snapshot_share = removing / len(governed) if governed else 0.0
        bytes_share = work.would_delete["bytes"] / work.stored["bytes"] if work.stored["bytes"] else 0.0
        limit = plan.max_prune_fraction
        reasons = []
        if removing > 1 and snapshot_share > limit:
            reasons.append(f"it would remove {removing} of {len(governed)} snapshots ({snapshot_share:.0%})")
        if work.would_delete["versions"] > 1 and bytes_share > limit:
            reasons.append(
                f"it would delete {work.would_delete['bytes']} of {work.stored['bytes']} stored bytes ({bytes_share:.0%})"
            )
        allowed = plan.name in record.allow_large
        held = bool(reasons) and not allowed
        work.guard = {
            "limit": limit,
            "snapshots_share": round(snapshot_share, 4),
            "bytes_share": round(bytes_share, 4),
            "held": held,
            "allowed": bool(reasons) and allowed,
            "reasons": reasons,
        }
        if held and not record.dry_run:
            work.status = PruneStatus.HELD
            work.warn(
                f"prune of plan {plan.name} held: {'; and '.join(reasons)}, more than max_prune_fraction {limit}. Nothing "
                f"was deleted. If the retention policy ({work.policy}) is right, allow it for one run: "
                f"POST /prune {{\"plans\": [\"{plan.name}\"], \"allow_large_prune\": [\"{plan.name}\"]}}"
            )
        elif held:
            work.warn(f"a real prune of plan {plan.name} would be held: {'; and '.join(reasons)}")

    # -- 5. manifests -----------------------------------------------------------------------------------

    def _remove_manifests(self, plan: Plan, work: PlanPrune) -> None:
        """Every version of the manifest of each snapshot this prune removes, and of any
        snapshot an earlier prune marked whose manifest is still there (it crashed first, or Object Lock held
        the manifest), unless a backup that runs now compares with it."""
        s3 = self.clients.s3
        sealed = snapshots.sealed_backups(s3, self.plans.catalog_bucket)
        running = self._running(sealed, utcnow(), plan.name)
        marked = {backup_id for (name, backup_id) in self.markers.all() if name == plan.name}
        meta = snapshots.scan_bucket(s3, plan.bucket)
        candidates = [m.backup_id for m in meta.manifests.values() if m.plan == plan.name and m.backup_id in sealed]
        protected: set[str] = set()
        for running_id, started in running.items():
            protected |= snapshots.possible_bases(running_id, started, sealed, candidates, marked)
        present = {m.backup_id for m in meta.manifests.values() if m.plan == plan.name}
        doomed: list[dict[str, str]] = []
        for backup_id in sorted((set(work.removing) | marked) & present):
            if backup_id not in marked:
                continue  # never delete what is not marked first
            if backup_id in protected:
                work.warn(f"the manifest of snapshot {backup_id} stays until the backup comparing with it ends")
                continue
            # Every version the scan found (a delete marker there is refused by the bucket policy; one left
            # alone is removed by the lifecycle's ExpiredObjectDeleteMarker once nothing is under it).
            key = manifest_key(plan.name, backup_id)
            doomed += [{"Key": key, "VersionId": version_id} for version_id, _ in meta.manifests[key].versions]
        for start in range(0, len(doomed), DELETE_BATCH):
            batch = doomed[start:start + DELETE_BATCH]
            response = s3.delete_objects(Bucket=plan.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = response.get("Errors", [])
            work.manifests_deleted += len(batch) - len(errors)
            for error in errors:
                if held_by_object_lock(error):
                    work.object_locked += 1  # a later prune deletes it, once its retention has passed
                else:
                    work.add_error(f"could not delete {error.get('Key')} version {error.get('VersionId')}: {error.get('Code')}")


def _monthly(prices: Prices | None, storage_class: str, size: int) -> float:
    """What a version costs a month where it is (with the 40 KB an archived object carries)."""
    if prices is None:
        return 0.0
    known = storage_class if storage_class in prices.storage else "STANDARD"
    overhead = 0.0
    if known in prices.archive_classes:
        overhead = (
            prices.overhead_standard_bytes * prices.storage_per_byte_month("STANDARD")
            + prices.overhead_archive_bytes * prices.storage_per_byte_month(known)
        )
    return size * prices.storage_per_byte_month(known) + overhead


def _early_charge(
    plan: Plan, version: dict[str, Any], noncurrent_since: datetime | None, storage_class: str, prices: Prices | None, now: datetime
) -> float:
    if prices is None or prices.minimum_days(storage_class) <= 0:
        return 0.0
    written: datetime = version["LastModified"]
    stored = StoredVersion(
        size=int(version.get("Size", 0)),
        written=written,
        noncurrent_since=max(noncurrent_since, written) if noncurrent_since is not None else None,
    )
    return early_deletion_as_stored(stored, plan.lifecycle, storage_class, max(now, written), prices).charge


def _add_charge(tally: dict[str, Any], charge: float, size: int) -> None:
    tally["usd"] = round(tally["usd"] + charge, 9)
    tally["versions"] += 1
    tally["bytes"] += size


class _Deleter:
    """Deletes unreferenced versions a thousand at a time (one DeleteObjects request) and counts them."""

    def __init__(self, s3: Any, plan: Plan, work: PlanPrune, prices: Prices | None, now: datetime) -> None:
        self.s3 = s3
        self.plan = plan
        self.work = work
        self.prices = prices
        self.now = now
        self.pending: list[tuple[str, dict[str, Any], datetime | None]] = []

    def add(self, data_key: str, version: dict[str, Any], noncurrent_since: datetime | None) -> None:
        self.pending.append((data_key, version, noncurrent_since))
        if len(self.pending) >= DELETE_BATCH:
            self.flush()

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:DELETE_BATCH], self.pending[DELETE_BATCH:]
            objects = [{"Key": key, "VersionId": version["VersionId"]} for key, version, _ in batch]
            response = self.s3.delete_objects(Bucket=self.plan.bucket, Delete={"Objects": objects, "Quiet": True})
            failed = {(e.get("Key"), e.get("VersionId")): e for e in response.get("Errors", [])}
            for key, version, noncurrent_since in batch:
                error = failed.get((key, version["VersionId"]))
                if error is not None:
                    self._failed(key, version, error)
                    continue
                storage_class = version.get("StorageClass") or "STANDARD"
                size = int(version.get("Size", 0))
                add_to(self.work.deleted, storage_class, size)
                charge = _early_charge(self.plan, version, noncurrent_since, storage_class, self.prices, self.now)
                if charge:
                    _add_charge(self.work.early_deletion, charge, size)

    def _failed(self, key: str, version: dict[str, Any], error: dict[str, Any]) -> None:
        if held_by_object_lock(error):
            # Retention set on the version itself, longer than the bucket's default: a later prune takes it.
            self.work.object_locked += 1
            return
        self.work.add_error(f"could not delete {key} version {version['VersionId']}: {error.get('Code')}: {error.get('Message')}")

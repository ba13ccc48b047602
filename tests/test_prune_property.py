"""The prune, as a property on random histories (issue 12): days of writes, overwrites and deletions at an S3
source and a DynamoDB table (two sources of different kinds in one plan), backups in between (single,
delivered twice in a row, delivered twice at once, or one overlapping another: started, stopped at a
checkpoint, and finished only after a newer backup and perhaps a prune), and prunes with random retention
policies, grace periods and guard settings.

Time is simulated (time-machine, no sleeping): S3's write times (moto's) follow the same clock. After each
prune, checked by version id against a model of what each source held when each backup ran:

1. every snapshot still kept names versions that are still stored (each was read by its version id, and
   found to hold the source's bytes, when its backup ran), and a restore of the newest one (of every kept
   one at the end) into an empty bucket and a new table gives back exactly what the sources held then;
2. verification of every kept snapshot finds nothing missing or damaged;
3. every version under `data/` that no kept snapshot names (only removed ones named it, or none ever did),
   older than the grace period when the prune started and not protected by a backup still running, is gone;
4. no version younger than the grace period when the prune started was deleted, nor one written since a
   running backup started, nor one a kept snapshot names; a held prune deletes and marks nothing; removed
   snapshots are marked, their manifests gone, and verification refuses them.

Which snapshots are kept is checked against `retention.decide` over the model's snapshots (plus the base of
a running backup), so a wrong decision cannot hide behind "the prune kept what it said it kept".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import boto3
import pytest
import time_machine
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from moto import mock_aws

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import MANIFEST_SUFFIX, Entry
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import backup_time, new_backup_id
from chalicelib.config import Settings
from chalicelib.deploy.provision import provision
from chalicelib.errors import Pruned
from chalicelib.inventory import configuration as conf
from chalicelib.layout import SNAPSHOTS_PREFIX
from chalicelib.plans import DynamoDBSource, InventoryPlan, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prune.job import PruneJob
from chalicelib.prune.sweep import Rules
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from chalicelib.retention import RetentionPolicy, Snapshot, decide
from chalicelib.times import utcnow
from chalicelib.verify.verifier import Verifier
from tests.concurrency import at_once
from tests.s3_inventory import deliver
from tests.stored import assert_versions_hold, entries_of
from tests.test_scale import FakeContext, Invocations

PLAN = "mixed"
SOURCE_BUCKET = "pp-source"
TABLE = "pp-rows"
BACKUP_BUCKET = "pp-backup"
# The catalog (backup records, prune records, pruned markers) in another plan's bucket, as a deployment with
# several plans has it: the plan's bucket holds only its data and manifests.
CATALOG_BUCKET = "pp-catalog"
RESTORE_BUCKET = "pp-restore"
REPORTS = "pp-inventory"
FILES, ROWS = "files", "rows"  # the sources' names: an S3 bucket and a DynamoDB table
# A key too long for `data/files/<key>` (stored under data/~long/), yet restorable as `files/<key>`.
FILE_KEYS = ("a.txt", "b/c.txt", "b/d.bin", "été/ça va+bien %20.txt", "e", "e/f", "long/" + "x" * 1012)
ROW_KEYS = ("r1", "r2", "r3", "r4")
DAY0 = datetime(2026, 12, 21, 2, 0, tzinfo=timezone.utc)  # a Monday, eleven days before a new year
# Rules.judge keeps every version written from this long before a running backup started.
RUNNING_SLACK = timedelta(minutes=5)

# -- the histories --------------------------------------------------------------------------------------

changes = st.one_of(
    st.tuples(st.just("put"), st.just(FILES), st.sampled_from(FILE_KEYS), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("put"), st.just(ROWS), st.sampled_from(ROW_KEYS), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.just(FILES), st.sampled_from(FILE_KEYS)),
    st.tuples(st.just("delete"), st.just(ROWS), st.sampled_from(ROW_KEYS)),
)
# ("once" | "twice" | "at once", 0) or ("overlap", hours the overlapped backup stays stopped after the other).
backup_kinds = st.sampled_from(
    [("once", 0), ("once", 0), ("once", 0), ("twice", 0), ("at once", 0), ("at once", 0)]
    + [("overlap", 1), ("overlap", 20), ("overlap", 50)]
)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 3),
    keep_daily=st.integers(0, 4),
    keep_weekly=st.integers(0, 2),
    keep_monthly=st.integers(0, 2),
    keep_yearly=st.integers(0, 1),
    keep_within_days=st.integers(0, 3),
).map(lambda policy: policy if policy.describe() != "newest only" else RetentionPolicy(keep_last=1))
# (the plans file refuses a policy with no rule on)


@dataclass(frozen=True)
class PruneStep:
    policy: RetentionPolicy
    grace_hours: int
    allow: bool


prunes = st.builds(
    PruneStep,
    policy=policies,
    grace_hours=st.sampled_from([48, 48, 24, 6, 1]),
    allow=st.sampled_from([True, True, True, False]),
)


@dataclass(frozen=True)
class Day:
    changes: list[tuple[Any, ...]]
    backups: list[tuple[str, int]]
    prune: PruneStep | None
    hours: int  # how long until the next day starts


days = st.builds(
    Day,
    changes=st.lists(changes, max_size=4),
    backups=st.lists(backup_kinds, max_size=2),
    prune=st.one_of(st.none(), prunes),
    hours=st.sampled_from([6, 12, 24, 24, 24, 30, 48]),
)
histories = st.lists(days, min_size=10, max_size=14)

# -- the world --------------------------------------------------------------------------------------------


def make_settings(policy: RetentionPolicy) -> Settings:
    plan = Plan(
        name=PLAN,
        bucket=BACKUP_BUCKET,
        sources=(S3Source(name=FILES, bucket=SOURCE_BUCKET), DynamoDBSource(name=ROWS, table=TABLE, segments=1)),
        lifecycle=Lifecycle(transitions=()),
        retention=policy,
        max_delete_fraction=0.2,  # the deletion guard on: what it holds back stays named, and unrestored
    )
    catalog = Plan(
        name="catalog",
        bucket=CATALOG_BUCKET,
        sources=(S3Source(name=FILES, bucket=SOURCE_BUCKET),),  # never backed up here
        lifecycle=Lifecycle(transitions=()),
    )
    return Settings(
        plans=PlanSet(plans=(plan, catalog), catalog_bucket=CATALOG_BUCKET),
        topic_arn=None,
        worker_mode="inline",
        worker_function=None,
        max_workers=4,
        restore_buckets=(RESTORE_BUCKET,),
    )


State = tuple[dict[str, bytes], dict[str, bytes]]  # (files: key -> bytes, rows: pk -> bytes)


@dataclass
class Running:
    """A backup stopped at a checkpoint, and how it carries on."""

    backup_id: str
    service: BackupService
    invoker: Invocations
    state: State


@dataclass
class World:
    s3: Any
    dynamodb: Any
    clients: Clients
    clock: Any
    config: Settings = field(default_factory=lambda: make_settings(RetentionPolicy(keep_last=1)))
    files: dict[str, bytes] = field(default_factory=dict)
    rows: dict[str, bytes] = field(default_factory=dict)
    # What the sources held when each finished backup ran, and its manifest's entries (held ones included).
    expected: dict[str, State] = field(default_factory=dict)
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    # Snapshots of finished backups no prune has removed.
    live: set[str] = field(default_factory=set)
    running: Running | None = None
    restores: int = 0
    restored: set[str] = field(default_factory=set)
    # Versions read by their id: what each holds (see assert_holds).
    checked: dict[tuple[Any, ...], bytes | None] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # What the history exercised, counted.
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, amount: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + amount

    # -- the sources

    def change(self, step: tuple[Any, ...]) -> None:
        action, source, key = step[:3]
        if source == FILES and action == "put":
            self.s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=step[3])
            self.files[key] = step[3]
        elif source == FILES:
            self.s3.delete_object(Bucket=SOURCE_BUCKET, Key=key)
            self.files.pop(key, None)
        elif action == "put":
            self.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": key}, "body": {"B": step[3]}})
            self.rows[key] = step[3]
        else:
            self.dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": key}})
            self.rows.pop(key, None)

    def state(self) -> State:
        return dict(self.files), dict(self.rows)

    def hours(self, count: float) -> None:
        self.clock.shift(timedelta(hours=count))

    # -- backups

    def backup(self, how: str) -> str:
        backup_id = new_backup_id()
        BackupService(self.config, self.clients).start([PLAN], trigger="api", backup_id=backup_id)
        if how == "at once":
            delivery = (lambda: BackupService(self.config, self.clients), lambda service: service.run(backup_id))
            at_once(delivery, delivery)
        else:
            for _ in range(2 if how == "twice" else 1):
                BackupService(self.config, self.clients).run(backup_id)
        self.finished(backup_id, self.state(), how)
        return backup_id

    def finished(self, backup_id: str, state: State, how: str) -> None:
        record = BackupService(self.config, self.clients).get(backup_id)
        result = record.plans[PLAN]
        # PARTIAL only where the deletion guard held deletions back: their entries stay in the snapshot, held.
        assert result.snapshot and not result.errors and not result.failed, (how, record.status, result.errors)
        assert result.status == ("PARTIAL" if result.deletions_held_back else "SUCCEEDED"), (how, result.status)
        self.expected[backup_id] = state
        self.entries[backup_id] = entries_of(self.s3, BACKUP_BUCKET, PLAN, backup_id, include_held=True)
        # Every entry names, by version id, a version that holds the source's bytes of that time.
        self.assert_holds(backup_id)
        self.live.add(backup_id)
        self.log.append(f"{utcnow():%m-%d %H:%M} backup {backup_id} ({how})")
        self.count(f"backups {how}")

    def start_stopped(self) -> None:
        """A backup that stops at its first checkpoint, one object at a time: it runs on later."""
        assert self.running is None
        invoker = Invocations()
        # One object per batch, so a short budget stops it after the first.
        service = BackupService(self.config, self.clients, invoker=invoker, batch_size=1)
        backup_id = new_backup_id()
        service.start([PLAN], trigger="api", backup_id=backup_id)
        record = service.run(backup_id, context=FakeContext(1))
        assert record.status == "RUNNING" and invoker.queue, record.plans[PLAN].errors
        self.running = Running(backup_id, service, invoker, self.state())
        self.log.append(f"{utcnow():%m-%d %H:%M} backup {backup_id} started and stopped at a checkpoint")
        # What an invocation killed between a copy and its checkpoint leaves: a version under data/ that no
        # manifest, not even the partial one, names (the run copies it again when it carries on). A prune
        # keeps it while the backup runs (written since it started), and deletes it once past the grace period.
        short = sorted(key for key in self.files if not key.startswith("long/"))
        if short:
            self.s3.put_object(Bucket=BACKUP_BUCKET, Key=f"data/{FILES}/{short[0]}", Body=self.files[short[0]])

    def carry_on(self) -> None:
        running, self.running = self.running, None
        assert running is not None
        running.invoker.drive(lambda payload: running.service.run(payload["backup_id"]))
        self.finished(running.backup_id, running.state, "overlapped, finished")

    # -- checks of a snapshot

    def assert_holds(self, backup_id: str) -> None:
        """Every entry names, by version id, a version holding what its source held (`assert_versions_hold`).
        A version is immutable, so one read by its id is not read again for the next snapshot naming it (a
        deletion of it shows in the listings the prune checks)."""
        files, _ = self.expected[backup_id]
        wanted = {(FILES, key): body for key, body in files.items()}
        entries = self.entries[backup_id]
        objects = [e for e in entries if e.source == FILES]
        # Held entries (deletions the guard held back) still name their versions; the rest are the source.
        assert {e.key for e in objects if not e.held} == set(files), backup_id
        assert len([e for e in entries if e.source == ROWS]) == 1, backup_id
        fresh = [e for e in entries if self.checked.get(identity(e), b"") is None and not e.held] + [
            e for e in entries if identity(e) not in self.checked
        ]
        assert_versions_hold(self.s3, BACKUP_BUCKET, [e for e in fresh if e.source == FILES], wanted)
        assert_versions_hold(self.s3, BACKUP_BUCKET, [e for e in fresh if e.source == ROWS])
        for entry in fresh:
            # The bytes a file version was found to hold (None: only its recorded checksum was checked).
            known = None if entry.held or entry.source == ROWS else wanted[(FILES, entry.key)]
            self.checked[identity(entry)] = self.checked.get(identity(entry)) or known
        for entry in objects:
            if not entry.held:
                assert self.checked[identity(entry)] == wanted[(FILES, entry.key)], (backup_id, entry)

    def assert_restores(self, backup_id: str) -> None:
        """A restore into an empty bucket and a new table gives back exactly what the sources held."""
        self.restores += 1
        self.restored.add(backup_id)
        table = f"restored-{self.restores}"
        restores = RestoreService.from_settings(self.config, self.clients)
        request = RestoreRequest(backup_id=backup_id, plan=PLAN, target=Target(bucket=RESTORE_BUCKET, table=table))
        done = restores.run(restores.start(request).restore_id)
        assert done.status == "SUCCEEDED", (backup_id, done.failures)
        files: dict[str, bytes] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=RESTORE_BUCKET):
            for item in page.get("Contents", []):
                source, key = item["Key"].split("/", 1)
                assert source == FILES, item["Key"]
                files[key] = self.s3.get_object(Bucket=RESTORE_BUCKET, Key=item["Key"])["Body"].read()
                self.s3.delete_object(Bucket=RESTORE_BUCKET, Key=item["Key"])  # empty for the next restore
        rows: dict[str, bytes] = {}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                assert set(item) == {"pk", "body"}, item
                rows[item["pk"]["S"]] = item["body"]["B"]
        self.dynamodb.delete_table(TableName=table)
        assert (files, rows) == self.expected[backup_id], f"restore of {backup_id}"

    def assert_verifies(self, backup_id: str) -> None:
        result = Verifier(self.config.plans, self.clients).verify_backup(backup_id)
        assert result["ok"] and result["missing_count"] == 0 and result["damaged_count"] == 0, result
        # (Held entries are not part of the snapshot: verification leaves them out, as restores do.)
        assert result["checked"] == len([e for e in self.entries[backup_id] if not e.held]), result

    # -- prunes

    def data_versions(self) -> dict[tuple[str, str], datetime]:
        found: dict[tuple[str, str], datetime] = {}
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=BACKUP_BUCKET, Prefix="data/"):
            found.update({(v["Key"], v["VersionId"]): v["LastModified"] for v in page.get("Versions", [])})
        return found

    def named_by(self, backup_ids: set[str]) -> set[tuple[str, str]]:
        return {(e.data_key, e.version_id) for b in backup_ids for e in self.entries[b]}

    def prune(self, step: PruneStep) -> None:
        self.config = make_settings(step.policy)
        grace = timedelta(hours=step.grace_hours)
        before = self.data_versions()
        live = set(self.live)
        running = self.running
        # What the prune must keep: what the policy keeps of the live snapshots, and the snapshot a running
        # backup compares with (the newest one older than it).
        wanted = {s.backup_id for s in decide([Snapshot(b, backup_time(b)) for b in live], step.policy).kept}
        if running is not None:
            older = [b for b in live if (backup_time(b), b) < (backup_time(running.backup_id), running.backup_id)]
            if older:
                wanted.add(max(older, key=lambda b: (backup_time(b), b)))
        start = utcnow()
        self.log.append(
            f"{start:%m-%d %H:%M} prune: {step.policy.describe()}, grace {step.grace_hours}h, allow {step.allow}, "
            f"{len(live)} snapshots{', one backup running' if running else ''}"
        )
        # The job's own grace period is a floor (48 hours by default) that no record can shorten: set to the
        # step's, as a deployment's `prune_grace_hours` does, so that the period applied is the one drawn.
        # The plans' inventory: a report delivered now; what the listing sweep would delete, on the same state.
        deliver(self.s3, BACKUP_BUCKET, conf.DEFAULT_CONFIGURATION_ID, files=2, shuffle=len(self.log))
        listing = self.listing_would_delete(grace)
        plans = dataclasses.replace(self.config.plans, inventory=InventoryPlan(bucket=REPORTS))
        job = PruneJob(plans, self.clients, grace=grace)
        record = job.start([PLAN], "api", allow_large=[PLAN] if step.allow else None, grace=grace)
        record = job.run(record.prune_id)
        assert record.grace_hours == step.grace_hours, record.grace_hours
        work = record.plans[PLAN]
        after = self.data_versions()
        deleted = set(before) - set(after)
        assert not work.errors and work.error_count == 0, work.errors
        assert {row["backup_id"] for row in work.snapshots} == live, work.snapshots
        kept = {row["backup_id"] for row in work.snapshots if row["kept"]}
        assert kept == wanted, (sorted(kept), sorted(wanted), work.snapshots)
        assert sorted(live - kept) == work.removing
        marked = {backup_id for (plan, backup_id) in PrunedMarkers(self.s3, CATALOG_BUCKET).all() if plan == PLAN}

        if record.status == "HELD":
            # Held before anything was marked or deleted.
            assert not step.allow and work.guard and work.guard["held"], work.guard
            assert not deleted, sorted(deleted)
            assert not marked & live, sorted(marked & live)
            self.log.append("  held")
            self.count("prunes held")
            return
        assert record.status == "SUCCEEDED" and work.status == "SUCCEEDED", (record.status, work.errors)
        assert work.inventory is not None and work.inventory["problem"] is None, work.inventory
        # 0. The prune by its kept index (brought up to date from the one the last prune left) and the report
        # deletes exactly what the listing sweep, reading every manifest, would have deleted.
        assert work.inventory["kept_index"] or not live, work.inventory
        assert deleted == listing, (sorted(deleted - listing), sorted(listing - deleted))
        self.live = kept
        self.log.append(f"  removed {len(work.removing)}, deleted {len(deleted)} versions")
        self.count("prunes")
        self.count("prunes keeping snapshots with held entries", any(e.held for b in kept for e in self.entries[b]))
        self.count("prunes racing a running backup", running is not None)
        self.count("prunes that deleted versions", bool(deleted))
        self.count("prunes that deleted versions no snapshot named", bool(deleted - self.named_by(set(self.entries))))

        # 1. Every version a kept snapshot names is still there, by version id (versions are immutable: the
        # bytes were checked when the backup ran), and nothing it names was deleted.
        named = self.named_by(kept)
        assert not deleted & named, f"deleted versions kept snapshots name: {sorted(deleted & named)}"
        assert named <= set(after), f"versions kept snapshots name are missing: {sorted(named - set(after))}"
        # 4. Nothing younger than the grace period at the prune's start went.
        young = {version for version in deleted if before[version] > start - grace}
        assert not young, f"deleted versions younger than the grace period: {sorted(young)}"
        # Nor anything written since a backup that still runs started: its copies are in no manifest yet.
        protected_since = backup_time(running.backup_id) - RUNNING_SLACK if running is not None else None
        if protected_since is not None:
            racing = {version for version in deleted if before[version] >= protected_since}
            assert not racing, f"deleted versions written since a running backup started: {sorted(racing)}"
        # 3. Every version no kept snapshot names, past the grace period and not protected by a running backup,
        # is gone (whether removed snapshots named it or no snapshot ever did).
        left = {
            version
            for version, written in after.items()
            if version not in named
            and written <= start - grace
            and (protected_since is None or written < protected_since)
        }
        assert not left, f"unreferenced versions past the grace period remain: {sorted(left)}"
        # The removed snapshots are marked and their manifests gone (every version); the kept ones are whole.
        assert marked & live == set(work.removing) and not marked & kept, (sorted(marked), work.removing)
        manifests = self.manifests()
        assert not manifests & set(work.removing), sorted(manifests & set(work.removing))
        assert kept <= manifests, sorted(kept - manifests)
        if work.removing:
            with pytest.raises(Pruned):
                Verifier(self.config.plans, self.clients).verify_backup(work.removing[0])
        # 2. Verification of every kept snapshot finds nothing missing; and the newest restores byte for byte
        # (again whenever the prune deleted anything; all of them at the end).
        for backup_id in kept:
            self.assert_verifies(backup_id)
        newest = max(kept, key=lambda b: (backup_time(b), b), default=None)
        if newest is not None and (deleted or newest not in self.restored):
            self.assert_restores(newest)

    def listing_would_delete(self, grace: timedelta) -> set[tuple[str, str]]:
        """What the listing sweep (the plans without inventory) judges a version to delete now: a dry run,
        which marks and deletes nothing, with every verdict watched."""
        found: set[tuple[str, str]] = set()
        judge = Rules.judge

        def watched(rules: Rules, version: dict[str, Any], referenced: set[str]) -> str:
            verdict = judge(rules, version, referenced)
            if verdict == "delete":
                found.add((version["Key"], version["VersionId"]))
            return verdict

        with mock.patch.object(Rules, "judge", watched):
            job = PruneJob(self.config.plans, self.clients, grace=grace)
            record = job.run(job.start([PLAN], "api", dry_run=True, allow_large=[PLAN], grace=grace).prune_id)
        assert record.status == "SUCCEEDED", record.plans[PLAN].errors
        return found

    def manifests(self) -> set[str]:
        """The backup ids with a version of a manifest of the plan."""
        found: set[str] = set()
        prefix = f"{SNAPSHOTS_PREFIX}{PLAN}/"
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=BACKUP_BUCKET, Prefix=prefix):
            keys = {v["Key"] for v in page.get("Versions", [])}
            found |= {key[len(prefix):].removesuffix(MANIFEST_SUFFIX) for key in keys if key.endswith(MANIFEST_SUFFIX)}
        return found


def identity(entry: Entry) -> tuple[Any, ...]:
    """A version as an entry records it."""
    return (entry.data_key, entry.version_id, entry.size, entry.etag, entry.checksum, entry.sha256)


def live_through(world: World, history: list[Day], last: PruneStep) -> None:
    for day in history:
        for change in day.changes:
            world.change(change)
        pending = day.prune
        for how, pause in day.backups:
            if how != "overlap":
                world.backup(how)
                continue
            # One backup stops at a checkpoint; a newer one runs meanwhile, and the day's prune (if any) runs
            # while the first is still unfinished; then the first finishes, with nothing changed at the sources.
            world.start_stopped()
            world.hours(1)
            world.backup("once")
            world.hours(pause)
            if pending is not None:
                world.prune(pending)
                pending = None
            world.carry_on()
        if pending is not None:
            world.hours(1)
            world.prune(pending)
        world.hours(day.hours)
    # Past every grace period: a last prune (allowed, the default grace; it verifies every snapshot it keeps),
    # then every snapshot still kept restores.
    world.hours(49)
    world.prune(last)
    for backup_id in sorted(world.live):
        world.assert_restores(backup_id)


def _day(
    changes: list[tuple[Any, ...]], backups: list[tuple[str, int]], prune: PruneStep | None = None, hours: int = 24
) -> Day:
    return Day(changes, backups, prune, hours)


def _prune(grace_hours: int, allow: bool = True, **rules: int) -> PruneStep:
    return PruneStep(RetentionPolicy(**rules), grace_hours, allow)


LONG, ODD = FILE_KEYS[-1], FILE_KEYS[3]
# A history run every time, whatever Hypothesis draws: duplicated deliveries, deletions the guard holds back
# (their entries stay named), a prune racing an unfinished backup past a short grace period (with a copy no
# manifest names yet), a held prune, and periods across a new year.
EVERY_CASE = [
    _day(
        [("put", FILES, "a.txt", b"a1"), ("put", FILES, "b/c.txt", b"c1"), ("put", FILES, "e", b"e1")]
        + [("put", FILES, LONG, b"long1"), ("put", ROWS, "r1", b"x1"), ("put", ROWS, "r2", b"y1")],
        [("once", 0)],
    ),
    _day([("put", FILES, "a.txt", b"a2"), ("put", ROWS, "r1", b"x2")], [("at once", 0)]),
    _day([("delete", FILES, "e"), ("delete", FILES, "b/c.txt"), ("put", ROWS, "r3", b"z1")], [("twice", 0)]),
    _day([("put", FILES, "e/f", b"f1"), ("put", FILES, LONG, b"long2")], [("overlap", 50)], _prune(1, keep_last=1)),
    _day([("put", FILES, "a.txt", b"a3")], [("once", 0), ("once", 0)]),
    _day([("delete", ROWS, "r1"), ("put", FILES, ODD, b"u1")], [("once", 0)], _prune(48, False, keep_last=1), 48),
    _day([("put", FILES, "a.txt", b"a4")], [("once", 0)], _prune(6, keep_daily=2, keep_weekly=1)),
    _day([("put", ROWS, "r2", b"y2")], [("at once", 0)], hours=48),
    _day([("put", FILES, "b/d.bin", b"d1")], [("once", 0)], _prune(24, keep_monthly=2, keep_yearly=1)),
    _day([("delete", FILES, "a.txt")], [("once", 0)], _prune(48, keep_within_days=1)),
]
# Histories drawn per run: a fixed few (the first is Hypothesis's simplest, days with nothing in them), beside
# the explicit one, and
# under `make test-full` (--exhaustive) 40, in four chunks of 10 that the suite's workers share (a history
# takes seconds). Every run draws the same histories (derandomized, or seeded by chunk, no example database),
# so a failure reproduces by running the test again.
EXAMPLES, EXHAUSTIVE_CHUNKS, EXAMPLES_PER_CHUNK = 2, 4, 10


@pytest.mark.parametrize("chunk", range(EXHAUSTIVE_CHUNKS))
def test_every_prune_keeps_every_kept_snapshot_whole_and_removes_only_what_it_may(
    aws_credentials: None, exhaustive: bool, chunk: int
) -> None:
    if chunk > 1 and not exhaustive:
        pytest.skip("more drawn histories run under make test-full (--exhaustive)")
    property_test = given(history=histories, last=policies)(live_one_history)
    if chunk == 0:
        property_test = example(history=EVERY_CASE, last=RetentionPolicy(keep_last=2))(property_test)
    if exhaustive:
        property_test = seed(chunk)(property_test)
    settings(
        max_examples=EXAMPLES_PER_CHUNK if exhaustive else EXAMPLES,
        deadline=None,
        derandomize=not exhaustive,
        database=None,
        # No shrinking: a history takes seconds to replay, and the log printed on failure says what happened.
        # Under `make test` the explicit history (chunk 0) and the drawn ones (chunk 1) run apart, on two
        # workers at once.
        phases=[Phase.explicit, Phase.generate] if exhaustive else [[Phase.explicit], [Phase.generate]][chunk],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(property_test)()


def live_one_history(history: list[Day], last: RetentionPolicy) -> None:
    with mock_aws(), time_machine.travel(DAY0, tick=True) as clock:
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket=SOURCE_BUCKET)
        s3.create_bucket(Bucket=RESTORE_BUCKET)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        clients = Clients()
        # Made once, before any thread uses them (a boto3 session is not thread-safe while it makes clients).
        for _client in (clients.s3, clients.dynamodb, clients.sns):
            pass
        world = World(s3, dynamodb, clients, clock)
        for plan in world.config.plans.plans:
            provision(s3, plan)
        # The prunes' S3 Inventory (the backups run with plans without it, which do not check its settings).
        s3.create_bucket(Bucket=REPORTS)
        destination = conf.Destination(conf.bucket_arn(REPORTS), account_id="123456789012", prefix="inventory", encrypted=False)
        s3.put_bucket_inventory_configuration(
            Bucket=BACKUP_BUCKET, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
        )
        try:
            live_through(world, history, PruneStep(last, grace_hours=48, allow=True))
        except AssertionError:
            # The history itself (Hypothesis's report may leave the values out), then what happened.
            print(f"history = {history!r}\nlast = {last!r}")
            print("\n".join(world.log))
            raise
        # What this history exercised (seen with -s).
        print(f"{len(history)} days: " + ", ".join(f"{name} {n}" for name, n in sorted(world.counts.items())))

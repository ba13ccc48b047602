"""The prune: retention decided by snapshots, versions deleted only where no kept snapshot names them, in an
order that keeps every kept snapshot whole, guarded, and refused by restores and verifications afterwards.

Time is simulated (time-machine): S3's write times (moto's) follow the same clock, so the grace period and
the snapshot-time checks see days pass without any sleeping."""

from __future__ import annotations

import gzip
import io
import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import MANIFEST_FORMAT, ManifestWriter, manifest_key, put_manifest
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import BackupRecord, RecordStore, new_backup_id
from chalicelib.catalog.restoring import restore_record_key
from chalicelib.config import Settings
from chalicelib.deploy.provision import provision
from chalicelib.errors import Pruned
from chalicelib.layout import RESTORE_QUEUE_PREFIX
from chalicelib.plans import Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prune.deleter import retained_by_object_lock
from chalicelib.prune.job import PruneJob
from chalicelib.prune.record import PlanPrune, PruneRecord, new_prune_id
from chalicelib.prune.service import PruneJobs
from chalicelib.prune.decision import possible_bases
from chalicelib.prune.sweep import References, Rules, walk
from chalicelib.retention import RetentionPolicy
from chalicelib.times import isoformat, utcnow
from tests.concurrency import at_once
from tests.stored import assert_versions_hold, entries_of

SOURCE = "prune-source"
BUCKET = "prune-backup"
DAY0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # a Monday


def make_settings(retention: RetentionPolicy, **plan_fields: Any) -> Settings:
    plan = Plan(
        name="docs",
        bucket=BUCKET,
        sources=(S3Source(name="src", bucket=SOURCE),),
        lifecycle=Lifecycle(transitions=()),
        retention=retention,
        **plan_fields,
    )
    return Settings(
        plans=PlanSet(plans=(plan,), catalog_bucket=BUCKET),
        topic_arn=None,
        worker_mode="inline",
        worker_function=None,
        max_workers=4,
    )


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(DAY0, tick=True) as traveller:
        yield traveller


@pytest.fixture
def world(aws: None, s3: Any, clock: Any) -> Any:
    s3.create_bucket(Bucket=SOURCE)

    class World:
        def __init__(self) -> None:
            self.s3 = s3
            self.clients = Clients()
            self.clock = clock
            self.config = make_settings(RetentionPolicy(keep_last=2))
            provision(s3, self.config.plans.plans[0])

        def use(self, retention: RetentionPolicy, **plan_fields: Any) -> None:
            self.config = make_settings(retention, **plan_fields)

        def backup(self) -> str:
            service = BackupService(self.config, self.clients)
            backup_id = new_backup_id()
            service.start(None, trigger="api", backup_id=backup_id)
            record = service.run(backup_id)
            assert record.status == "SUCCEEDED", record.plans["docs"].errors
            return backup_id

        def prune(self, dry_run: bool = False, allow: bool = False, grace: timedelta = timedelta(hours=48)) -> Any:
            job = PruneJob(self.config.plans, self.clients)
            record = job.start(["docs"], "api", dry_run=dry_run, allow_large=["docs"] if allow else None, grace=grace)
            return job.run(record.prune_id)

        def days(self, count: float) -> None:
            self.clock.shift(timedelta(days=count))

    return World()


def test_a_prune_keeps_what_the_policy_keeps_and_deletes_only_what_no_kept_snapshot_names(world: Any) -> None:
    s3 = world.s3
    taken = []
    for day in range(5):
        s3.put_object(Bucket=SOURCE, Key="stable.txt", Body=b"never changes")
        s3.put_object(Bucket=SOURCE, Key="daily.txt", Body=f"day {day}".encode())
        taken.append(world.backup())
        world.days(1)
    world.days(3)
    entries = {backup_id: entries_of(s3, BUCKET, "docs", backup_id) for backup_id in taken}

    record = world.prune(allow=True)

    work = record.plans["docs"]
    assert record.status == "SUCCEEDED", work.errors
    assert work.removing == sorted(taken[:3])
    kept = {row["backup_id"]: row["reasons"] for row in work.snapshots if row["kept"]}
    assert set(kept) == set(taken[3:]) and kept[taken[4]][0] == "newest"
    # Every kept snapshot still names versions that exist and hold its bytes.
    for backup_id in taken[3:]:
        assert assert_versions_hold(s3, BUCKET, entries[backup_id]) == 2
    # Versions only the removed snapshots named are gone: three of daily.txt.
    gone = {(e.data_key, e.version_id) for b in taken[:3] for e in entries[b] if e.key == "daily.txt"}
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix="data/")
    present = {(v["Key"], v["VersionId"]) for v in listed.get("Versions", [])}
    assert not gone & present and len(gone) == 3
    assert work.deleted["versions"] == 3
    # The removed snapshots are marked, and their manifests are gone.
    markers = PrunedMarkers(s3, BUCKET)
    for backup_id in taken[:3]:
        assert markers.get("docs", backup_id) is not None
        assert "Versions" not in s3.list_object_versions(Bucket=BUCKET, Prefix=manifest_key("docs", backup_id))
    with pytest.raises(Pruned, match="was pruned at"):
        markers.check("docs", taken[0], "restored")


def test_nothing_younger_than_the_grace_period_goes(world: Any) -> None:
    s3 = world.s3
    taken = []
    for day in range(4):
        s3.put_object(Bucket=SOURCE, Key="daily.txt", Body=f"day {day}".encode())
        taken.append(world.backup())
        world.days(1)
    # The oldest two snapshots are removed (keep_last 2); their versions are 4 and 3 days old: with a grace
    # of 3.5 days only the older one goes.
    first, second = (entries_of(world.s3, BUCKET, "docs", backup_id)[0] for backup_id in taken[:2])
    record = world.prune(allow=True, grace=timedelta(days=3.5))
    work = record.plans["docs"]
    assert work.removing == sorted(taken[:2])
    assert (work.deleted["versions"], work.kept_young) == (1, 1)
    listed = world.s3.list_object_versions(Bucket=BUCKET, Prefix="data/")["Versions"]
    assert second.version_id in {v["VersionId"] for v in listed}
    assert first.version_id not in {v["VersionId"] for v in listed}


def listed_versions(s3: Any, prefix: str = "data/") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        found |= {(v["Key"], v["VersionId"]) for v in page.get("Versions", [])}
    return found


def daily_history(world: Any, days: int, keys: int = 3) -> list[str]:
    """A backup a day; each day one key changes and the others stay."""
    taken = []
    for day in range(days):
        for index in range(keys):
            if day == 0 or index == day % keys:
                world.s3.put_object(Bucket=SOURCE, Key=f"k{index}.txt", Body=f"{index} on day {day}".encode())
        taken.append(world.backup())
        world.days(1)
    return taken


def test_a_dry_run_says_what_a_prune_would_do_and_does_nothing(world: Any) -> None:
    taken = daily_history(world, 6)
    world.days(3)
    before = listed_versions(world.s3) | listed_versions(world.s3, "meta/")
    dry = world.prune(dry_run=True, allow=True)
    assert listed_versions(world.s3) | listed_versions(world.s3, "meta/") - {
        k for k in listed_versions(world.s3, "meta/") if k[0].startswith("meta/prunes/")
    } >= before
    assert not any(PrunedMarkers(world.s3, BUCKET).get("docs", b) for b in taken)
    plan = dry.plans["docs"]
    assert dry.status == "SUCCEEDED" and plan.phase == "done" and plan.deleted["versions"] == 0
    assert plan.removing == sorted(taken[:4]) and plan.would_delete["versions"] == 4
    # The real prune then deletes exactly what the dry run announced.
    real = world.prune(allow=True)
    assert real.plans["docs"].deleted == plan.would_delete
    assert real.plans["docs"].removing == plan.removing


def test_the_guard_holds_a_prune_that_would_remove_too_much_until_it_is_allowed(world: Any) -> None:
    taken = daily_history(world, 6)
    world.days(3)
    world.use(RetentionPolicy(keep_last=1))
    held = world.prune()
    plan = held.plans["docs"]
    assert held.status == "HELD" and plan.status == "HELD"
    assert plan.guard["held"] and "5 of 6 snapshots" in plan.guard["reasons"][0]
    assert "allow_large_prune" in plan.warnings[0]
    # Held before anything was marked or deleted.
    assert not any(PrunedMarkers(world.s3, BUCKET).get("docs", b) for b in taken)
    assert plan.deleted["versions"] == 0
    allowed = world.prune(allow=True)
    assert allowed.status == "SUCCEEDED" and allowed.plans["docs"].guard["allowed"]
    assert allowed.plans["docs"].removing == sorted(taken[:5])


def test_versions_no_manifest_ever_named_go_once_past_the_grace_period(world: Any) -> None:
    taken = daily_history(world, 2)
    # What a crashed run leaves: a version in data/ that no snapshot names.
    orphan = world.s3.put_object(Bucket=BUCKET, Key="data/src/k0.txt", Body=b"copied by a run that died")["VersionId"]
    young = world.prune(allow=True)
    assert ("data/src/k0.txt", orphan) in listed_versions(world.s3) and young.plans["docs"].kept_young >= 1
    world.days(3)
    record = world.prune(allow=True)
    assert ("data/src/k0.txt", orphan) not in listed_versions(world.s3)
    for backup_id in taken:
        assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", backup_id)) == 3
    assert record.plans["docs"].removing == []


def test_long_keys_and_manifests_of_other_plan_folders_are_references_too(world: Any) -> None:
    long_key = "deep/" + "x" * 1015  # fits the source bucket, not data/src/ in the backup bucket
    world.s3.put_object(Bucket=SOURCE, Key=long_key, Body=b"long one, first")
    first = world.backup()
    world.days(1)
    world.s3.put_object(Bucket=SOURCE, Key=long_key, Body=b"long one, second")
    second = world.backup()
    # A manifest in another plan's folder (a plan that once used this bucket) names the first long version.
    old = entries_of(world.s3, BUCKET, "docs", first)
    assert old[0].data_key.startswith("data/~long/src/")
    body = world.s3.get_object(Bucket=BUCKET, Key=manifest_key("docs", first))["Body"].read()
    world.s3.put_object(Bucket=BUCKET, Key=manifest_key("retired", first), Body=body, IfNoneMatch="*")
    world.days(3)
    world.use(RetentionPolicy(keep_last=1))
    record = world.prune(allow=True)
    assert record.plans["docs"].removing == [first]
    assert assert_versions_hold(world.s3, BUCKET, old) == 1  # still named by the retired plan's manifest
    assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", second)) == 1


def test_a_manifest_the_prune_cannot_read_stops_that_plan_before_anything_is_deleted(world: Any) -> None:
    taken = daily_history(world, 4)
    world.days(3)
    world.s3.put_object(Bucket=BUCKET, Key="meta/snapshots/docs/planted.jsonl.gz", Body=b"not gzip", IfNoneMatch="*")
    before = listed_versions(world.s3)
    record = world.prune(allow=True)
    plan = record.plans["docs"]
    assert record.status == "FAILED" and "TAMPERING" in plan.errors[0]
    assert listed_versions(world.s3) == before
    assert not any(PrunedMarkers(world.s3, BUCKET).get("docs", b) for b in taken)
    # It decided what to remove, but stopped before marking: the report says it removed nothing.
    assert plan.removing and plan.removed_count() == 0 and record.totals()["snapshots_removed"] == 0


@pytest.mark.parametrize("planted_in", ["survey", "delete"])
def test_a_manifest_out_of_key_order_stops_that_plan_before_anything_is_deleted(
    world: Any, monkeypatch: pytest.MonkeyPatch, planted_in: str
) -> None:
    """Someone with the writer's keys writes a new manifest whose entries are not sorted: merged with the
    others, it would end the references of the keys after its first out-of-order entry early, and the
    versions kept snapshots name there would look unreferenced. Planted before the survey, or between the
    survey and the delete pass (where the merge would meet it only after judging the keys before it)."""
    taken = daily_history(world, 4, keys=4)
    world.days(3)
    entries = entries_of(world.s3, BUCKET, "docs", taken[-1])
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb") as gz:
        gz.write(json.dumps({"format": MANIFEST_FORMAT, "plan": "docs", "backup_id": new_backup_id()}).encode() + b"\n")
        for entry in [entries[-1], *entries[:-1]]:  # the last key first
            gz.write(entry.to_json().encode() + b"\n")

    # The writer's request comes from a thread the test started: the recorded calls are attributed by the
    # calling frames and the starting thread, and this one is not the prune's.
    go, done = threading.Event(), threading.Event()

    def writer() -> None:
        go.wait()
        key = manifest_key("docs", new_backup_id())
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=body.getvalue(), IfNoneMatch="*")
        done.set()

    threading.Thread(target=writer, daemon=True).start()

    def plant() -> None:
        go.set()
        assert done.wait(30)

    sweep = PruneJob._sweep

    def sweep_then(job: Any, held: Any, plan: Any, work: Any, delete: bool) -> bool:
        if delete and planted_in == "delete":
            plant()
        return sweep(job, held, plan, work, delete)

    monkeypatch.setattr(PruneJob, "_sweep", sweep_then)
    if planted_in == "survey":
        plant()
    before = listed_versions(world.s3)
    record = world.prune(allow=True)
    plan = record.plans["docs"]
    assert record.status == "FAILED" and "TAMPERING" in plan.errors[0] and "sorted" in plan.errors[0], plan.errors
    assert f"in its {planted_in} step" in plan.errors[0]
    assert listed_versions(world.s3) == before
    for backup_id in taken:
        if backup_id not in plan.removing:
            assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", backup_id))


def test_a_forged_prune_record_cannot_mark_a_kept_snapshot_or_shorten_the_grace_period(world: Any) -> None:
    """The API's role writes prune records. One written to look half done (in its mark step, removing every
    snapshot, with no grace period) marks only what the policy drops now and deletes nothing young."""
    taken = []
    for step in range(4):  # keep_last 2: the two newest stay
        world.s3.put_object(Bucket=SOURCE, Key="k.txt", Body=f"version {step}".encode())
        taken.append(world.backup())
        world.days(0.4)
    before = listed_versions(world.s3)
    forged = PruneRecord(
        prune_id=new_prune_id(),
        trigger="api",
        plan_names=["docs"],
        allow_large=["docs"],
        grace_hours=0,
        plans={"docs": PlanPrune(plan="docs", phase="mark", removing=list(taken))},
    )
    job = PruneJob(world.config.plans, world.clients)
    job.store.create(forged)
    record = job.run(forged.prune_id)
    work = record.plans["docs"]
    assert record.status == "SUCCEEDED", work.errors
    assert work.removing == taken[:2]
    assert any(taken[-1] in warning and "kept after all" in warning for warning in work.warnings), work.warnings
    markers = PrunedMarkers(world.s3, BUCKET)
    assert [b for b in taken if markers.get("docs", b)] == taken[:2]
    for backup_id in taken[2:]:
        assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", backup_id)) == 1
    # The removed snapshots' own versions are 1.6 and 1.2 days old: the 48 hours hold whatever the record says.
    assert listed_versions(world.s3) == before and work.kept_young == 2


def plant_backup(s3: Any, backup_id: str, source_of: str) -> None:
    """A sealed record and a manifest for `backup_id`, naming what `source_of`'s snapshot names."""
    records = RecordStore(s3, BUCKET)
    record = records.get(source_of)
    writer = ManifestWriter()
    for entry in entries_of(s3, BUCKET, "docs", source_of):
        writer.add(entry)
    body = writer.finish({"plan": "docs", "backup_id": backup_id}, keep_held=True)
    written = put_manifest(s3, BUCKET, manifest_key("docs", backup_id), body)
    result = record.plans["docs"]
    result.snapshot = f"s3://{BUCKET}/{manifest_key('docs', backup_id)}"
    result.manifest_version, result.manifest_sha256 = written.version_id, written.sha256
    records.seal(BackupRecord(backup_id=backup_id, trigger="api", plans={"docs": result}, status="SUCCEEDED"))


def test_a_snapshot_whose_manifest_s3_dates_long_after_its_id_is_kept_and_counted_by_no_rule(world: Any) -> None:
    taken = daily_history(world, 3)
    # Someone with the writer's keys plants a finished backup under an id dated ten days back (the system
    # itself never writes a snapshot that late: a backup running that long is abandoned).
    forged = new_backup_id(datetime.now(timezone.utc) - timedelta(days=10))
    plant_backup(world.s3, forged, source_of=taken[-1])
    world.days(3)
    record = world.prune(allow=True)
    rows = {row["backup_id"]: row for row in record.plans["docs"].snapshots}
    assert rows[forged]["kept"] and rows[forged]["reasons"][0].startswith("time not trusted")
    assert not rows[forged]["governed"]
    assert any(w.startswith("TAMPERING") and forged in w for w in record.plans["docs"].warnings)
    assert record.plans["docs"].removing == [taken[0]]


def test_a_prune_racing_a_running_backup_never_deletes_what_that_backup_then_names(world: Any) -> None:
    """B starts and stops at a checkpoint (it runs on in a later invocation); a newer backup N finishes
    meanwhile, so retention (keep_last 1) keeps only N. B compares with S2, and copied a version before the
    prune: both stay, and once B finishes every version its snapshot names is there."""
    from tests.test_scale import FakeContext, Invocations

    s3 = world.s3
    s1, s2 = daily_history(world, 2, keys=4)
    for index in range(4):
        s3.put_object(Bucket=SOURCE, Key=f"k{index}.txt", Body=f"{index} changed before B".encode())

    invoker = Invocations()
    # One object per batch: a short budget stops it after the first.
    running = BackupService(world.config, world.clients, invoker=invoker, batch_size=1)
    b = new_backup_id()
    running.start(None, trigger="api", backup_id=b)
    assert running.run(b, context=FakeContext(1)).status == "RUNNING" and invoker.queue
    world.days(0.1)
    s3.put_object(Bucket=SOURCE, Key="k0.txt", Body=b"changed again")
    newest = world.backup()
    world.days(3)
    world.use(RetentionPolicy(keep_last=1))

    record = world.prune(allow=True)
    plan = record.plans["docs"]
    reasons = {row["backup_id"]: row["reasons"] for row in plan.snapshots if row["kept"]}
    assert reasons[newest] == ["newest", "last 1 of 1"]
    assert reasons[s2] == [f"base of running backup {b}"]
    assert plan.removing == [s1] and b in plan.running

    # B carries on and finishes: every version its snapshot names is stored.
    invoker.drive(lambda payload: running.run(payload["backup_id"]))
    final = running.get(b)
    assert final.status == "SUCCEEDED", final.plans["docs"].errors
    assert assert_versions_hold(s3, BUCKET, entries_of(s3, BUCKET, "docs", b)) == 4
    assert assert_versions_hold(s3, BUCKET, entries_of(s3, BUCKET, "docs", newest)) == 4


def test_under_rate_1_day_the_daily_prune_fired_with_the_daily_backup_leaves_every_kept_snapshot_whole(world: Any) -> None:
    """Under rate(1 day) both rules of a deployment fire at about the same minute: the day's prune meets the
    day's backup at work. However their steps interleave, the backup writes a whole snapshot and the prune
    removes only snapshots retention no longer keeps, never a version a kept snapshot or that backup names."""
    s3 = world.s3
    taken = daily_history(world, 6)
    world.days(3)  # the history is past the grace period
    world.use(RetentionPolicy(keep_last=3), max_prune_fraction=0.9)
    s3.put_object(Bucket=SOURCE, Key="k1.txt", Body=b"changed on the day both fire")
    fired = utcnow().replace(second=0, microsecond=0)
    backup = (lambda: BackupService(world.config, Clients()), lambda service: service.run_scheduled(fired, event_id="backup-rule"))
    prune = (lambda: PruneJobs(world.config, Clients()), lambda prunes: prunes.scheduled(fired, "prune-rule"))
    record, pruned = at_once(backup, prune)

    assert record.status == "SUCCEEDED", record.plans["docs"].errors
    assert pruned.status == "SUCCEEDED" and pruned.trigger == "schedule"
    removed = set(pruned.plans["docs"].removing)
    # The three oldest go whatever the order; the day's backup, sealed before the prune decided or not, stays.
    assert set(taken[:3]) <= removed <= set(taken[:4]) and record.backup_id not in removed
    markers = PrunedMarkers(s3, BUCKET)
    kept = [b for b in taken + [record.backup_id] if not markers.get("docs", b)]
    assert record.backup_id in kept and len(kept) >= 3
    for backup_id in kept:
        assert assert_versions_hold(s3, BUCKET, entries_of(s3, BUCKET, "docs", backup_id)) == 3
    assert entries_of(s3, BUCKET, "docs", record.backup_id)[1].size == len(b"changed on the day both fire")


def test_a_prune_longer_than_an_invocation_carries_on_from_its_checkpoint_and_ends_as_an_uninterrupted_one(
    world: Any,
) -> None:
    from tests.test_scale import FakeContext, Invocations

    daily_history(world, 8, keys=4)
    world.days(3)
    reference_world_state = listed_versions(world.s3)
    dry = world.prune(dry_run=True, allow=True)
    invoker = Invocations()
    job = PruneJob(world.config.plans, world.clients, budget=None, invoker=invoker, batch_size=2)
    record = job.start(["docs"], "api", allow_large=["docs"])

    def invocation(prune_id: str) -> Any:
        from chalicelib.jobs.budget import TimeBudget

        budget = TimeBudget(FakeContext(1))
        return PruneJob(world.config.plans, world.clients, budget=budget, invoker=invoker, batch_size=2).run(prune_id)

    first = invocation(record.prune_id)
    assert first.status == "RUNNING" and invoker.queue
    invoker.drive(lambda payload: invocation(payload["prune_id"]))
    assert invoker.count >= 3
    final = job.store.get(record.prune_id)
    plan = final.plans["docs"]
    assert final.status == "SUCCEEDED" and final.invocations >= 4
    assert plan.deleted == dry.plans["docs"].would_delete
    deleted = reference_world_state - listed_versions(world.s3)
    assert len(deleted) == plan.deleted["versions"] > 0


def test_what_keeps_an_unreferenced_version() -> None:
    now = datetime(2026, 3, 20, tzinfo=timezone.utc)
    rules = Rules(now=now, grace=timedelta(hours=48), running_since=now - timedelta(days=4), lock_days=10)

    def version(age_days: float, version_id: str = "v") -> dict[str, Any]:
        return {"VersionId": version_id, "LastModified": now - timedelta(days=age_days)}

    assert rules.judge(version(30, "named"), {"named"}) == "referenced"
    assert rules.judge(version(1.9), set()) == "young"
    assert rules.judge(version(3.9), set()) == "running"  # written after a running backup started
    assert rules.judge(version(9), set()) == "locked"  # Object Lock keeps it 10 days
    assert rules.judge(version(11), set()) == "delete"
    assert Rules(now=now, grace=timedelta(hours=48)).judge(version(3), set()) == "delete"


def test_versions_object_lock_still_protects_are_skipped_and_counted_then_taken_by_a_later_prune(
    aws: None, s3: Any, clock: Any
) -> None:
    from chalicelib.plans import ObjectLock

    s3.create_bucket(Bucket=SOURCE)
    config = make_settings(RetentionPolicy(keep_last=1), object_lock=ObjectLock(mode="GOVERNANCE", days=6))
    provision(s3, config.plans.plans[0])
    clients = Clients()
    taken = []
    for day in range(3):
        s3.put_object(Bucket=SOURCE, Key="k.txt", Body=f"day {day}".encode())
        service = BackupService(config, clients)
        backup_id = new_backup_id()
        service.start(None, trigger="api", backup_id=backup_id)
        result = service.run(backup_id)
        assert result.status == "SUCCEEDED", result.plans["docs"]
        taken.append(backup_id)
        clock.shift(timedelta(days=1))
    clock.shift(timedelta(days=2))  # the versions are 5, 4 and 3 days old: all still locked for 6 days
    job = PruneJob(config.plans, clients)
    first = job.run(job.start(["docs"], "api", allow_large=["docs"]).prune_id)
    plan = first.plans["docs"]
    assert first.status == "SUCCEEDED", plan.errors
    assert plan.removing == sorted(taken[:2])
    # Two data versions and the two removed snapshots' manifests: all under retention, none deleted.
    assert plan.object_locked == 4 and plan.deleted["versions"] == 0 and plan.manifests_deleted == 0
    assert len(listed_versions(s3)) == 3
    clock.shift(timedelta(days=2))  # the two unreferenced versions are now 7 and 6 days old
    second = job.run(job.start(["docs"], "api", allow_large=["docs"]).prune_id)
    assert second.plans["docs"].deleted["versions"] == 2 and second.plans["docs"].object_locked == 0
    assert second.plans["docs"].manifests_deleted == 2  # the marked snapshots' manifests, left by the first
    assert assert_versions_hold(s3, BUCKET, entries_of(s3, BUCKET, "docs", taken[2])) == 1


def test_a_running_backup_may_compare_with_any_snapshot_that_was_the_newest_sealed_while_it_ran() -> None:
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)

    def at(hours: float) -> datetime:
        return start + timedelta(hours=hours)

    s2, s4, a, b = (new_backup_id(at(h)) for h in (2, 4, 5, 6))
    # A (05:00) ran long and was sealed at 08:00, after B (06:00) had started and taken S4 as its base.
    sealed = {s2: at(2.1), s4: at(4.1), a: at(8)}
    assert possible_bases(b, at(6), sealed, [s2, s4, a]) == {s4, a}
    # A sealed before B started: B never compared with S4, nor with anything older.
    sealed[a] = at(5.5)
    assert possible_bases(b, at(6), sealed, [s2, s4, a]) == {a}
    # A marked: B may have skipped it and taken S4.
    assert possible_bases(b, at(6), sealed, [s2, s4, a], marked={a}) == {s4, a}
    # Not sealed, or newer than the backup: never its base.
    assert possible_bases(s4, at(4), {s2: at(2.1), a: at(5.5)}, [s2, a]) == {s2}


def test_only_s3s_object_lock_refusal_counts_as_retained_by_object_lock() -> None:
    assert retained_by_object_lock({"Code": "AccessDenied", "Message": "Access Denied because object protected by object lock."})
    # A missing permission (or a KMS key the role may not use) is an error, even in a bucket with Object Lock.
    assert not retained_by_object_lock({"Code": "AccessDenied", "Message": "Access Denied"})
    assert not retained_by_object_lock({"Code": "InternalError", "Message": "object lock"})


def test_a_snapshot_an_unfinished_restore_reads_is_kept_until_the_restore_ends(world: Any) -> None:
    """A restore from Deep Archive waits up to two days for its thaw: the prune keeps its snapshot."""
    taken = daily_history(world, 4)
    world.days(3)
    restore_id = new_backup_id()
    record = {"restore_id": restore_id, "backup_id": taken[0], "plan": "docs", "status": "WAITING_FOR_THAW"}
    world.s3.put_object(Bucket=BUCKET, Key=restore_record_key(restore_id), Body=json.dumps(record).encode())
    world.s3.put_object(Bucket=BUCKET, Key=f"{RESTORE_QUEUE_PREFIX}{restore_id}", Body=b"")
    work = world.prune(allow=True).plans["docs"]
    rows = {row["backup_id"]: row for row in work.snapshots}
    assert rows[taken[0]]["kept"] and f"being restored (restore {restore_id})" in rows[taken[0]]["reasons"]
    assert work.removing == [taken[1]]
    assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", taken[0])) == 3
    # Once it has finished, the next prune removes it.
    world.s3.put_object(Bucket=BUCKET, Key=restore_record_key(restore_id), Body=json.dumps({**record, "status": "SUCCEEDED"}).encode())
    assert world.prune(allow=True).plans["docs"].removing == [taken[0]]


def test_a_table_scan_still_running_beside_a_runs_partial_manifests_is_not_taken_for_one(world: Any) -> None:
    """A long table scan keeps its state under the run's checkpoint folder (`table-<source>/scan-...`,
    gzip like a partial manifest, but not one). The prune reads the run's partial manifests as references
    and leaves the scan's files alone: it succeeds, with no tampering finding, and deletes as it would."""
    s3 = world.s3
    taken = daily_history(world, 3)
    world.days(3)
    running = new_backup_id()
    folder = f"meta/checkpoints/docs/{running}/"
    scan = f"{folder}table-orders/scan-00-00001-0a1b2c3d.jsonl.gz"
    s3.put_object(Bucket=BUCKET, Key=scan, Body=gzip.compress(b'{"pk": {"S": "order-1"}}\n'))
    # The same run's partial manifest names a version no snapshot names: it must stay a reference.
    kept_by_partial = next(e for e in entries_of(s3, BUCKET, "docs", taken[0]) if e.key == "k1.txt")
    writer = ManifestWriter()
    writer.add(kept_by_partial)
    with writer.finish({"plan": "docs", "backup_id": running}, keep_held=False) as body:
        s3.put_object(Bucket=BUCKET, Key=f"{folder}partial-000001-0a1b2c3d.jsonl.gz", Body=body.read())
    writer.close()
    world.use(RetentionPolicy(keep_last=1))

    record = world.prune(allow=True)

    work = record.plans["docs"]
    assert record.status == "SUCCEEDED", work.errors
    assert not any("TAMPERING" in error for error in work.errors)
    assert work.removing == sorted(taken[:2])
    assert s3.head_object(Bucket=BUCKET, Key=scan)["ContentLength"] > 0
    assert assert_versions_hold(s3, BUCKET, [kept_by_partial]) == 1


def test_one_prune_per_plan_at_a_time_decided_by_a_conditional_write(world: Any) -> None:
    """A POST /prune while another prune of the plan runs is refused naming it: its conditional create of the
    plan's prune lock finds the lock there (S3 lets exactly one of two racing creates win; moto, in process,
    does not promise that across threads, so the race itself is S3's). The daily prune fired while that one
    runs leaves the plan to it. Every version goes once, and is counted once."""
    from chalicelib.errors import Conflict

    s3 = world.s3
    taken = daily_history(world, 4)
    world.days(3)
    world.use(RetentionPolicy(keep_last=2))
    jobs = PruneJobs(world.config, world.clients)
    first = jobs.start(["docs"], "api", allow_large=["docs"])
    with pytest.raises(Conflict) as refused:
        jobs.start(["docs"], "api", allow_large=["docs"])
    assert refused.value.ids == {"prune_id": first.prune_id} and first.prune_id in str(refused.value)
    # A dry run deletes nothing: it needs no lock.
    assert jobs.start(["docs"], "api", dry_run=True).dry_run

    # The daily prune, while the first still runs: the plan is not its to prune.
    daily = jobs.scheduled(utcnow(), event_id="daily-rule-event")
    assert daily.plan_names == [] and daily.totals()["versions_deleted"] == 0

    before = listed_versions(s3)
    done = jobs.run(first.prune_id)
    assert done.status == "SUCCEEDED" and done.plans["docs"].removing == sorted(taken[:2])
    gone = before - listed_versions(s3)
    assert done.plans["docs"].deleted["versions"] == len([k for k in gone if k[0].startswith("data/")]) > 0
    for backup_id in taken[2:]:
        assert assert_versions_hold(s3, BUCKET, entries_of(s3, BUCKET, "docs", backup_id)) == 3
    # Once it has finished, the next prune may take the plan: nothing is left for it to delete.
    again = jobs.start(["docs"], "api")
    assert jobs.run(again.prune_id).plans["docs"].deleted["versions"] == 0


def test_a_snapshot_kept_after_all_when_decided_again_before_marking_shows_why(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the survey and the marks a restore of one of the snapshots to remove is queued: decided again,
    it is kept, and the report says so with the rule that keeps it, not `kept: false` with no reason."""
    from chalicelib.prune import guard

    taken = daily_history(world, 4)
    world.days(3)
    restore_id = new_backup_id()
    apply = guard.apply

    def queue_a_restore(*args: Any, **kwargs: Any) -> None:
        from tests.record_calls import the_tests_own_calls

        apply(*args, **kwargs)
        record = {"restore_id": restore_id, "backup_id": taken[0], "plan": "docs", "status": "WAITING_FOR_THAW"}
        with the_tests_own_calls():  # the API's, queueing the restore
            world.s3.put_object(Bucket=BUCKET, Key=restore_record_key(restore_id), Body=json.dumps(record).encode())
            world.s3.put_object(Bucket=BUCKET, Key=f"{RESTORE_QUEUE_PREFIX}{restore_id}", Body=b"")

    monkeypatch.setattr(guard, "apply", queue_a_restore)
    record = world.prune(allow=True)
    work = record.plans["docs"]
    rows = {row["backup_id"]: row for row in work.snapshots}
    assert work.removing == [taken[1]] and record.totals()["snapshots_removed"] == 1
    assert rows[taken[0]]["kept"] and f"being restored (restore {restore_id})" in rows[taken[0]]["reasons"]
    assert not rows[taken[1]]["kept"]
    assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", taken[0])) == 3


def test_a_prune_lock_holds_while_its_prune_still_writes_its_record_however_long_it_runs(world: Any) -> None:
    from chalicelib.errors import Conflict
    from chalicelib.jobs.locks import lock_key
    from chalicelib.prune.service import WORKER_LOST_AFTER

    jobs = PruneJobs(world.config, world.clients)
    first = jobs.start(["docs"], "api")
    key = lock_key("docs", "prune")
    lock = json.loads(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert lock["prune_id"] == first.prune_id
    # Taken seven hours ago, but its prune wrote its record a minute ago: it still works.
    world.days((WORKER_LOST_AFTER + timedelta(hours=1)) / timedelta(days=1))
    found = jobs.store().read(first.prune_id)
    assert found is not None
    record, etag = found
    record.updated_at = isoformat(utcnow())  # as its worker writes it at a checkpoint
    jobs.store().replace(record, etag)
    with pytest.raises(Conflict, match=first.prune_id):
        jobs.start(["docs"], "api")
    # No word from its worker for longer than WORKER_LOST_AFTER: the lock is stale and taken over.
    world.days((WORKER_LOST_AFTER + timedelta(hours=1)) / timedelta(days=1))
    assert jobs.start(["docs"], "api").prune_id != first.prune_id


def history_at(world: Any, gaps_in_days: list[float]) -> list[str]:
    """A backup, then one after each gap (one key changed each time)."""
    taken = []
    for number, gap in enumerate([0.0, *gaps_in_days]):
        world.days(gap)
        world.s3.put_object(Bucket=SOURCE, Key=f"k{number % 3}.txt", Body=f"backup {number}".encode())
        taken.append(world.backup())
    return taken


def test_a_policy_change_that_drops_long_term_history_is_held_until_allowed_however_often_it_is_held(world: Any) -> None:
    # Three yearly snapshots, then five in the last days.
    taken = history_at(world, [365, 365, 365, 1, 1, 1, 1])
    world.days(3)
    before = RetentionPolicy(keep_daily=5, keep_yearly=7)
    world.use(before)
    first = world.prune()
    assert first.status == "SUCCEEDED" and first.plans["docs"].removing == [] and first.plans["docs"].rules["keep_yearly"] == 7
    # keep_yearly 7 -> 2: two of eight snapshots (25%, within max_prune_fraction), two years of history.
    world.use(RetentionPolicy(keep_daily=5, keep_yearly=2))
    for _ in range(3):
        held = world.prune()
        plan = held.plans["docs"]
        assert held.status == "HELD" and plan.baseline == first.plans["docs"].rules, plan.guard
        assert [r for r in plan.guard["reasons"]] == [plan.guard["reasons"][0]] and "long-term history" in plan.guard["reasons"][0]
        assert all(f"{b} (yearly" in plan.guard["reasons"][0] for b in taken[:2]), plan.guard
        assert plan.removing == sorted(taken[:2]) and plan.deleted["versions"] == 0
        assert not any(PrunedMarkers(world.s3, BUCKET).get("docs", b) for b in taken)
    allowed = world.prune(allow=True)
    assert allowed.status == "SUCCEEDED" and allowed.plans["docs"].removing == sorted(taken[:2])
    # The new policy is the baseline from now on: the next prune is not held.
    world.days(1)
    assert world.prune().status == "SUCCEEDED"


def test_a_snapshot_that_ages_out_of_the_same_policy_is_not_held(world: Any) -> None:
    policy = RetentionPolicy(keep_daily=6, keep_monthly=2)
    world.use(policy)
    taken = history_at(world, [31, 31, 1, 1, 1, 1, 1])
    world.days(3)
    assert world.prune().status == "SUCCEEDED"
    # A new month: the oldest monthly snapshot ages out of keep_monthly 2, as the same policy says.
    world.days(31)
    taken += history_at(world, [])
    world.days(3)
    routine = world.prune()
    assert routine.status == "SUCCEEDED", (taken, routine.plans["docs"].removing, routine.plans["docs"].guard)
    # Removed: April's snapshot (kept as monthly by the last prune), and the oldest daily one.
    assert routine.plans["docs"].removing == [taken[1], taken[2]] and not routine.plans["docs"].guard["reasons"]


def test_without_an_earlier_prune_removing_a_snapshot_older_than_a_year_is_held() -> None:
    from chalicelib.prune.guard import judge
    from chalicelib.prune.record import PlanPrune

    rows = [
        {"backup_id": "20270410T020000000Z-c", "taken_at": "2027-04-10T02:00:00.000Z", "kept": True, "reasons": ["newest"], "governed": True},
        {"backup_id": "20270409T020000000Z-b", "taken_at": "2027-04-09T02:00:00.000Z", "kept": False, "reasons": [], "governed": True},
        {"backup_id": "20260302T020000000Z-a", "taken_at": "2026-03-02T02:00:00.000Z", "kept": False, "reasons": [], "governed": True},
    ] + [{"backup_id": f"2027040{d}T020000000Z-x", "taken_at": f"2027-04-0{d}T02:00:00.000Z", "kept": True, "reasons": ["daily"], "governed": True} for d in range(1, 9)]
    old = PlanPrune(plan="docs", snapshots=rows, removing=["20260302T020000000Z-a"])
    verdict = judge(old, 0.3, allowed=False, previous=None)
    assert verdict.stops and "long-term history" in verdict.reasons[0] and "20260302T020000000Z-a" in verdict.reasons[0]
    assert judge(old, 0.3, allowed=True, previous=None).stops is False
    # A snapshot under a year old goes without a baseline.
    recent = PlanPrune(plan="docs", snapshots=rows, removing=["20270409T020000000Z-b"])
    assert not judge(recent, 0.3, allowed=False, previous=None).reasons


def test_the_guards_baseline_is_the_policy_a_prune_applied_never_one_a_lost_or_held_prune_only_decided() -> None:
    from chalicelib.prune.guard import baseline, policy_rules
    from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStatus

    old, new = RetentionPolicy(keep_daily=5, keep_yearly=7), RetentionPolicy(keep_daily=5, keep_yearly=1)

    def record(prune_id: str, status: PruneStatus | None, rules: RetentionPolicy | None, marked: bool = False,
               judged_by: RetentionPolicy | None = None, policy: str | None = None) -> PruneRecord:
        work = PlanPrune(plan="docs", status=status, marked=marked, rules=policy_rules(rules) if rules else None,
                         baseline=policy_rules(judged_by) if judged_by else None, policy=policy or (rules.describe() if rules else ""))
        return PruneRecord(prune_id=prune_id, trigger="schedule", plan_names=["docs"], plans={"docs": work})

    applied = record("prune-3", PruneStatus.SUCCEEDED, old)
    # A prune that decided by the new policy and then lost its worker (no status), or was held, or failed before
    # marking: none of them applied it, so the baseline stays the one they were judged by.
    for undone in (record("prune-5", None, new, judged_by=old), record("prune-5", PruneStatus.HELD, new, judged_by=old),
                   record("prune-5", PruneStatus.FAILED, new, judged_by=old)):
        assert baseline([undone, applied], "docs", "prune-6") == policy_rules(old)
    # One that failed after marking applied its policy.
    assert baseline([record("prune-5", PruneStatus.FAILED, new, marked=True), applied], "docs", "prune-6") == policy_rules(new)
    # A record written before prunes kept their rules gives the policy it describes.
    legacy = record("prune-2", PruneStatus.SUCCEEDED, None, policy=old.describe())
    assert baseline([legacy], "docs", "prune-6") == policy_rules(old)


def test_a_sweep_resumed_at_a_key_never_judges_that_key_again(world: Any) -> None:
    """The key at a saved position is done: its references are passed, so listed again (S3 documents the key
    marker as "the key to start with", and moto lists that key again) its versions would all look
    unreferenced and go, a kept snapshot's with them."""
    world.s3.put_object(Bucket=SOURCE, Key="k0.txt", Body=b"0")
    world.s3.put_object(Bucket=SOURCE, Key="k1.txt", Body=b"1")
    world.backup()
    world.s3.put_object(Bucket=SOURCE, Key="k0.txt", Body=b"0 again")
    world.backup()
    missing: list[int] = []
    walked = [stored.data_key for stored in walk(world.s3, BUCKET, References([]), ["short", "src", "k0.txt"], missing.append)]
    assert walked == ["data/src/k1.txt"]

"""Plans with `small_objects: pack`: manifest entries that name a pack, backups that write packs, restores
that read them, and a prune that keeps every pack a kept snapshot names."""

from __future__ import annotations

import dataclasses
import json
import threading
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine

from chalicelib.api.backups import list_objects
from chalicelib.aws import Clients
from chalicelib.backup import copying, ranges
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.plan_run import PlanOptions, run_plan
from chalicelib.backup.sources import readers_on
from chalicelib.backup.service import BackupService
from chalicelib.catalog import kept_index as ki
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, manifest_key, put_manifest
from chalicelib.catalog.records import RecordStore, new_backup_id
from chalicelib.config import Settings
from chalicelib.cost.inventory import PlanInventory
from chalicelib.deploy.provision import provision
from chalicelib.deploy.scope import BACKUP_WORKER, VERIFY_WORKER
from chalicelib.jobs.budget import TimeBudget
from chalicelib.layout import CHECKPOINTS_PREFIX, MANIFEST_SUFFIX, PACKS_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prune.job import PruneJob
from chalicelib.inventory.reports import Row
from chalicelib.prune.report_sweep import key_order, walk_report
from chalicelib.prune.sweep import References
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from chalicelib.restore.thaw import PackThaws
from chalicelib.retention import RetentionPolicy
from chalicelib.verify.checks import verify_entries
from tests.conftest import ACCOUNT
from tests.provisioned import provision_buckets
from tests.record_calls import assume_configuration, running_as
from tests.stored import assert_versions_hold, entries_of
# The resilience sweep's two days of a source (`two_states`) and its clock (`_clock`, autouse: 26 November 2026).
from tests.test_resilience import (  # noqa: F401
    CHUNKS,
    INCREMENTAL_BATCH,
    MiB,
    SingleThreaded,
    _clock,
    count_operations,
    latest_content,
    seeded_points,
    sweep,
    sweep_points,
    two_states,
)
from tests.test_scale import FakeContext, Invocations, content, make_bucket, snapshot_content

PACKED = Entry(
    source="documents",
    key="notes/é.txt",
    version_id="pack-version",
    size=5,
    etag="5d41402abc4b2a76b9719d911017c592",
    identity="etag:5d41402abc4b2a76b9719d911017c592:5",
    checksum="LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
    sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    pack_key="data/~packs/20261126T000000000Z-a/0001",
    pack_offset=42,
)


# --------------------------------------------------------------------------------------------------------
# Manifest entries of packed objects


def test_a_packed_entry_names_its_pack_and_an_old_entry_reads_as_before() -> None:
    line = PACKED.to_json()
    assert json.loads(line)["pack_key"] == PACKED.pack_key and json.loads(line)["pack_offset"] == 42
    again = Entry.from_json(line)
    assert again == PACKED
    assert again.packed and again.stored_key == PACKED.pack_key and again.byte_range == "bytes=42-46"
    # A line written before packs existed: no pack fields, and the object's own key holds its version.
    old = Entry.from_json('{"source":"documents","key":"a","version_id":"v1","size":3,"etag":"e","identity":"etag:e:3"}')
    assert not old.packed and old.pack_offset is None and old.stored_key == "data/documents/a" and old.byte_range is None
    assert "pack_key" not in old.to_json()
    # A zero-byte packed object has no bytes to read.
    empty = Entry(**{**PACKED.__dict__, "size": 0})
    assert empty.packed and empty.byte_range is None


def test_a_snapshot_with_packed_entries_stays_one_sorted_manifest_and_the_kept_index_keeps_the_pack(s3: Any) -> None:
    bucket, plan = "pack-entries", "documents"
    assume_configuration(PlanSet(plans=(Plan(name=plan, bucket=bucket, sources=(), lifecycle=Lifecycle(())),), catalog_bucket=bucket))
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    plain = Entry("documents", "a.bin", "v-a", 200_000, "e", "etag:e:200000")
    other = Entry(**{**PACKED.__dict__, "key": "z.txt", "pack_offset": 47})
    writer = ManifestWriter()
    for entry in (plain, PACKED, other):
        writer.add(entry)
    backup_id = "20261126T000000000Z-a"
    with writer.finish({"plan": plan, "backup_id": backup_id}, keep_held=False) as body, running_as(BACKUP_WORKER):
        put_manifest(s3, bucket, manifest_key(plan, backup_id), body)
    writer.close()
    with Manifest.download(s3, bucket, manifest_key(plan, backup_id)) as manifest:
        assert list(manifest.entries()) == [plain, PACKED, other]
        assert manifest.header["objects"] == 3
    with ExitStack() as stack, running_as(VERIFY_WORKER):
        index = ki.kept_index(s3, bucket, plan, [backup_id], stack)
        assert [entry for entry, _ in index.versions()] == [plain, PACKED, other]


# --------------------------------------------------------------------------------------------------------
# Backups that pack, restores that unpack


THRESHOLD = 4096
TARGET = 128 * 1024
SOURCE = "test-src-documents"
RESTORE_TARGET = "restore-target"


def pack_plans(plans: PlanSet) -> PlanSet:
    """The stage's documents source backed up twice: plan 'documents' packs (below 4 KiB, packs of 128 KiB),
    plan 'photos' (its bucket, the same source) stores every object on its own."""
    documents = plans.get("documents")
    packed = dataclasses.replace(
        documents,
        lifecycle=dataclasses.replace(
            documents.lifecycle, small_objects="pack", pack_threshold_bytes=THRESHOLD, pack_target_bytes=TARGET
        ),
    )
    plain = dataclasses.replace(documents, name="photos", bucket=plans.get("photos").bucket)
    return dataclasses.replace(plans, plans=(packed, plain), inventory=None)


class World:
    """A source bucket, the two plans' buckets, a backup service and a restore service over them, and a count
    of the packs written."""

    def __init__(self, s3: Any, stage_env: dict[str, str]) -> None:
        self.s3 = s3
        settings = Settings.from_environ({**stage_env, "MAX_WORKERS": "4"})
        self.plans = pack_plans(settings.plans)
        provision_buckets(s3, self.plans, ACCOUNT)
        s3.create_bucket(Bucket=SOURCE)
        s3.create_bucket(Bucket=RESTORE_TARGET)
        self.clients = Clients()
        self.backups = BackupService(dataclasses.replace(settings, plans=self.plans), self.clients)
        # As the command line has it (an operator's credentials): any bucket but a backup bucket, and folders.
        self.restores = RestoreService(self.plans, self.clients, max_workers=4)
        self.pack_puts: list[str] = []
        self.clients.s3.meta.events.register("provide-client-params.s3.PutObject", self._count)

    def _count(self, params: dict[str, Any], **kwargs: Any) -> None:
        if str(params.get("Key", "")).startswith(PACKS_PREFIX):
            self.pack_puts.append(params["Key"])

    def put(self, objects: dict[str, bytes | None]) -> None:
        for key, body in objects.items():
            if body is None:
                self.s3.delete_object(Bucket=SOURCE, Key=key)
            else:
                self.s3.put_object(Bucket=SOURCE, Key=key, Body=body)

    def backup(self) -> Any:
        record = self.backups.start(None, trigger="api")
        done = self.backups.run(record.backup_id)
        assert done.status == "SUCCEEDED", done.to_dict()
        return done

    def restore(self, backup_id: str, plan: str, target: Target, **request: Any) -> Any:
        record = self.restores.start(RestoreRequest(backup_id=backup_id, plan=plan, target=target, **request))
        done = self.restores.run(record.restore_id)
        assert done.status == "SUCCEEDED" and not done.failed, done
        return done

    def entries(self, plan: str, backup_id: str) -> dict[str, Entry]:
        bucket = self.plans.get(plan).bucket
        return {entry.key: entry for entry in entries_of(self.s3, bucket, plan, backup_id)}


def bucket_objects(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def folder_files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def first_day() -> dict[str, bytes | None]:
    # 40 small documents of 3.3 to 4 KB, 150 KB in all: more than one pack of 128 KiB.
    objects: dict[str, bytes | None] = {
        f"small/{index:03d}.txt": (f"document {index} " * 400).encode()[: 3300 + index * 18] for index in range(40)
    }
    objects.update({
        "unicode/résumé ünïcødé/日本語.txt": "こんにちは".encode() * 50,
        "unicode/emoji 📄.md": "# 📄\n".encode() * 10,
        "empty/zero.bin": b"",
        "edge/at-threshold.bin": bytes(range(256)) * (THRESHOLD // 256),
        "edge/below-threshold.bin": b"b" * (THRESHOLD - 1),
        "edge/grows.txt": b"small for now",
        "edge/shrinks.bin": b"L" * (THRESHOLD * 3),
        "large/photo.raw": b"P" * 300_000,
    })
    return objects


def restored_alike(world: World, backup_id: str, name: str, folder: Path | None = None) -> dict[str, bytes]:
    """The snapshot of both plans restored into the target bucket (and the packed one into a `folder`): all
    the same, object by object, and the same as the source."""
    world.restore(backup_id, "documents", Target(bucket=RESTORE_TARGET, prefix=f"{name}/packed/"))
    world.restore(backup_id, "photos", Target(bucket=RESTORE_TARGET, prefix=f"{name}/plain/"))
    packed = bucket_objects(world.s3, RESTORE_TARGET, f"{name}/packed/")
    plain = bucket_objects(world.s3, RESTORE_TARGET, f"{name}/plain/")
    assert sorted(packed) == sorted(plain)
    for key in plain:
        assert packed[key] == plain[key], key
    if folder is not None:
        world.restore(backup_id, "documents", Target(path=str(folder)))
        assert folder_files(folder) == plain
    assert plain == bucket_objects(world.s3, SOURCE, "")
    return plain


def test_a_packed_plan_restores_byte_identical_to_the_same_data_stored_unpacked(
    s3: Any, stage_env: dict[str, str], tmp_path: Path
) -> None:
    world = World(s3, stage_env)
    world.put(first_day())
    first = world.backup()
    entries = world.entries("documents", first.backup_id)
    packed = {key for key, entry in entries.items() if entry.packed}
    # Strictly below the threshold is packed (zero bytes too); at it and above, stored on its own.
    assert packed == {key for key, body in first_day().items() if body is not None and len(body) < THRESHOLD}
    assert not entries["edge/at-threshold.bin"].packed and entries["empty/zero.bin"].packed
    assert all(not entry.packed for entry in world.entries("photos", first.backup_id).values())
    # Written in two packs or more, each stored once.
    assert len(world.pack_puts) == len(set(world.pack_puts)) == len({entries[key].pack_key for key in packed}) >= 2
    assert_versions_hold(s3, world.plans.get("documents").bucket, entries.values(), source_bytes(s3))
    restored_alike(world, first.backup_id, "day1", tmp_path / "day1")
    # What a snapshot holds, as the API lists it: a packed object names its pack's key, version and offset.
    listed = list_objects(s3, world.backups.records, world.plans, first.backup_id, {"plan": "documents", "prefix": "edge/"})
    shown = {item["key"]: item for item in listed["objects"]}
    below = entries["edge/below-threshold.bin"]
    assert (shown["edge/below-threshold.bin"]["backup_key"], shown["edge/below-threshold.bin"]["version_id"]) == (below.pack_key, below.version_id)
    assert shown["edge/below-threshold.bin"]["pack_offset"] == below.pack_offset
    assert shown["edge/below-threshold.bin"]["storage_class"] == "STANDARD"
    assert shown["edge/at-threshold.bin"]["backup_key"] == "data/documents/edge/at-threshold.bin"
    assert "pack_offset" not in shown["edge/at-threshold.bin"]

    # A day later: three small objects change, one is new, one is gone, one grows past the threshold and one
    # shrinks below it. Only the four changed small objects are packed, into one new pack.
    world.pack_puts.clear()
    world.put({
        "small/001.txt": b"changed one", "small/002.txt": b"changed two", "small/030.txt": b"changed thirty",
        "small/new.txt": b"new", "small/039.txt": None,
        "edge/grows.txt": b"G" * (THRESHOLD * 2), "edge/shrinks.bin": b"s" * 10,
    })
    second = world.backup()
    assert len(world.pack_puts) == 1
    later = world.entries("documents", second.backup_id)
    changed = {"small/001.txt", "small/002.txt", "small/030.txt", "small/new.txt", "edge/shrinks.bin"}
    assert {key for key, entry in later.items() if entry.pack_key == world.pack_puts[0]} == changed
    for key, entry in later.items():
        if key not in changed and key in entries:
            # Unchanged: the same entry, a packed one still packed, in the same version of the same pack.
            assert entry == entries[key] or key == "edge/grows.txt", key
    assert "small/039.txt" not in later
    assert not later["edge/grows.txt"].packed and later["edge/shrinks.bin"].packed
    # The object now packed no longer shows at its own key (its version stays, for the first snapshot).
    documents = world.plans.get("documents").bucket
    assert "data/documents/edge/shrinks.bin" not in bucket_objects(s3, documents, "data/documents/edge/")
    assert_versions_hold(s3, documents, later.values(), source_bytes(s3))
    restored_alike(world, second.backup_id, "day2", tmp_path / "day2")

    # And back: the grown file shrinks again, the shrunk one grows; nothing else changed.
    world.pack_puts.clear()
    world.put({"edge/grows.txt": b"small again", "edge/shrinks.bin": b"S" * (THRESHOLD + 1)})
    third = world.backup()
    last = world.entries("documents", third.backup_id)
    assert last["edge/grows.txt"].packed and not last["edge/shrinks.bin"].packed and len(world.pack_puts) == 1
    restored_alike(world, third.backup_id, "day3")
    # The first snapshot still restores what the source held that day.
    world.restore(first.backup_id, "documents", Target(bucket=RESTORE_TARGET, prefix="again/"), keys=("edge/shrinks.bin", "small/039.txt"))
    assert bucket_objects(s3, RESTORE_TARGET, "again/") == {k: first_day()[k] for k in ("edge/shrinks.bin", "small/039.txt")}
    # A prefix of the packed plan restores only what is under it.
    world.restore(third.backup_id, "documents", Target(bucket=RESTORE_TARGET, prefix="unicode/"), prefix="unicode/")
    assert sorted(bucket_objects(s3, RESTORE_TARGET, "unicode/")) == ["unicode/emoji 📄.md", "unicode/résumé ünïcødé/日本語.txt"]


def source_bytes(s3: Any) -> dict[tuple[str, str], bytes]:
    return {("documents", key): body for key, body in bucket_objects(s3, SOURCE, "").items()}


# --------------------------------------------------------------------------------------------------------
# The prune keeps every pack a kept snapshot names


PRUNE_SOURCE = "pack-prune-source"
PRUNE_BUCKET = "pack-prune-backup"


def prune_settings(retention: RetentionPolicy) -> Settings:
    plan = Plan(
        name="docs",
        bucket=PRUNE_BUCKET,
        sources=(S3Source(name="src", bucket=PRUNE_SOURCE),),
        lifecycle=Lifecycle(transitions=(), small_objects="pack"),
        retention=retention,
    )
    return Settings(
        plans=PlanSet(plans=(plan,), catalog_bucket=PRUNE_BUCKET), topic_arn=None, worker_mode="inline",
        worker_function=None, max_workers=4,
    )


def pack_versions(s3: Any) -> set[tuple[str, str]]:
    listed = s3.list_object_versions(Bucket=PRUNE_BUCKET, Prefix=PACKS_PREFIX)
    return {(v["Key"], v["VersionId"]) for v in listed.get("Versions", [])}


def named_packs(entries: list[Entry]) -> set[tuple[str, str]]:
    return {(str(e.pack_key), e.version_id) for e in entries if e.packed}


def test_a_prune_keeps_every_pack_a_kept_snapshot_names_and_only_then_deletes_one(s3: Any) -> None:
    s3.create_bucket(Bucket=PRUNE_SOURCE)
    clients = Clients()
    settings = prune_settings(RetentionPolicy(keep_last=2))
    provision(s3, settings.plans.plans[0])
    taken: list[str] = []
    with time_machine.travel(datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc), tick=True) as clock:

        def backup(objects: dict[str, bytes]) -> str:
            for key, body in objects.items():
                s3.put_object(Bucket=PRUNE_SOURCE, Key=key, Body=body)
            service = BackupService(settings, clients)
            backup_id = new_backup_id()
            service.start(None, trigger="api", backup_id=backup_id)
            assert service.run(backup_id).status == "SUCCEEDED"
            clock.shift(timedelta(days=1))
            taken.append(backup_id)
            return backup_id

        def prune(retention: RetentionPolicy) -> Any:
            job = PruneJob(prune_settings(retention).plans, clients)
            record = job.start(["docs"], "api", allow_large=["docs"], grace=timedelta(hours=48))
            done = job.run(record.prune_id)
            assert done.status == "SUCCEEDED", done.plans["docs"].errors
            return done

        # Pack 1 holds a..f; pack 2 the changed a; pack 3 the changed b..f. The second snapshot names pack 1 for
        # b..f, the third names pack 1 nowhere.
        backup({name: f"{name} first".encode() for name in "abcdef"})
        backup({"a": b"a second"})
        backup({name: f"{name} third".encode() for name in "bcdef"})
        entries = {backup_id: entries_of(s3, PRUNE_BUCKET, "docs", backup_id) for backup_id in taken}
        first_pack, second_pack, third_pack = (
            named_packs(entries[taken[0]]),
            named_packs(entries[taken[1]]) - named_packs(entries[taken[0]]),
            named_packs(entries[taken[2]]) - named_packs(entries[taken[1]]),
        )
        assert len(first_pack) == len(second_pack) == len(third_pack) == 1
        assert named_packs(entries[taken[1]]) == first_pack | second_pack
        assert named_packs(entries[taken[2]]) == second_pack | third_pack
        # What a run that died after storing its pack leaves: a pack no snapshot names.
        orphan_key = f"{PACKS_PREFIX}crashed/0-000001.pack"
        orphan = s3.put_object(Bucket=PRUNE_BUCKET, Key=orphan_key, Body=b"x" * 1000)
        clock.shift(timedelta(days=3))

        # The cost report's walk of the bucket finds every pack the snapshots name, none missing, the orphan
        # named by none.
        inventory = PlanInventory(s3, settings.plans.plans[0], RecordStore(s3, PRUNE_BUCKET), lambda finding: None, [])
        walked = {(v.key, v.version_id): v.named for v in inventory.versions() if v.key.startswith(PACKS_PREFIX)}
        assert inventory.work.missing == 0
        assert walked == {**dict.fromkeys(first_pack | second_pack | third_pack, True), (orphan_key, orphan["VersionId"]): False}

        prune(RetentionPolicy(keep_last=2))
        # The first snapshot goes; its pack stays (the second names it), the orphan goes.
        assert pack_versions(s3) == first_pack | second_pack | third_pack
        for backup_id in taken[1:]:
            assert_versions_hold(s3, PRUNE_BUCKET, entries[backup_id], None)

        prune(RetentionPolicy(keep_last=1))
        # Only the third snapshot is kept: the pack only removed snapshots named is deleted, no other.
        assert pack_versions(s3) == second_pack | third_pack
        assert (orphan_key, orphan["VersionId"]) not in pack_versions(s3)
        assert_versions_hold(s3, PRUNE_BUCKET, entries[taken[2]], None)


def test_the_sweeps_walk_a_packed_entry_as_a_reference_to_its_pack() -> None:
    plain = Entry("documents", "a.bin", "v-a", 200_000, "e", "etag:e:200000")
    references = References([[plain, PACKED]])
    assert list(references.short()) == [("documents", "a.bin", "v-a")]
    assert list(references.long()) == [(str(PACKED.pack_key), PACKED.version_id)]
    references.close()
    # The inventory report's rows of a pack come where the references to it do, and its version is judged
    # referenced there: kept, however old.
    assert key_order(str(PACKED.pack_key)) == (1, PACKED.pack_key)
    assert key_order("data/~long/documents/abc") < key_order(str(PACKED.pack_key))
    long_ago = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [
        Row("b", str(PACKED.pack_key), PACKED.version_id, True, False, 300_000, long_ago, "e", "STANDARD"),
        Row("b", f"{PACKS_PREFIX}orphan.pack", "v-orphan", True, False, 300_000, long_ago, "e", "STANDARD"),
    ]
    kept = References([[plain, PACKED]])
    walked = {stored.data_key: stored.referenced for stored in walk_report(rows, References([]), kept, None, long_ago)}
    assert walked == {str(PACKED.pack_key): {PACKED.version_id}, f"{PACKS_PREFIX}orphan.pack": set()}
    kept.close()


# --------------------------------------------------------------------------------------------------------
# Crashes and checkpoints never leave a manifest naming a pack that is not stored


def packing(plan: Plan) -> Plan:
    """The plan packing its small objects: below 128 KiB, in packs of 128 KiB."""
    return dataclasses.replace(plan, lifecycle=dataclasses.replace(plan.lifecycle, small_objects="pack", pack_target_bytes=TARGET))


def assert_every_manifest_names_stored_data(s3: Any, bucket: str) -> int:
    """Every manifest in the bucket, snapshots and the partial manifests of checkpoints alike: each entry's
    version exists and holds its bytes (a packed one: its pack's version, at its offset)."""
    checked = 0
    for prefix in (SNAPSHOTS_PREFIX, CHECKPOINTS_PREFIX):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith(MANIFEST_SUFFIX):
                    with Manifest.download(s3, bucket, item["Key"]) as manifest:
                        checked += assert_versions_hold(s3, bucket, manifest.entries(include_held=True))
    return checked


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_a_crash_at_any_operation_of_a_packed_incremental_backup_then_a_new_backup_ends_as_an_uninterrupted_one(
    s3: Any, two_states: tuple[str, str], plans: PlanSet, fault_injector: Any, chunk: int, exhaustive: bool  # noqa: F811
) -> None:
    """The incremental backup of the resilience sweep with packing: the changed small objects packed, the
    large one copied in parts, deletions. Crashed at call k (before or after a pack's PUT, its delete
    markers, the manifest), the bucket holds no manifest naming a pack that is not stored, and the next
    backup leaves the snapshot of an uninterrupted run, unchanged objects in the same pack version."""
    clients = Clients()
    base = packing(plans.get("documents"))
    source = base.sources[0]
    before = dataclasses.replace(base, sources=(dataclasses.replace(source, bucket=two_states[0]),))
    after = dataclasses.replace(base, sources=(dataclasses.replace(source, bucket=two_states[1]),))
    backup = SingleThreaded(clients.s3, multipart_threshold=5 * MiB, batch_size=INCREMENTAL_BATCH)

    def first_backup(plan: Plan) -> None:
        result = backup(dataclasses.replace(before, bucket=plan.bucket), "20261125T000000000Z-first")
        assert result.status == "SUCCEEDED", result.errors

    reference = dataclasses.replace(after, bucket="crash-packed-ref")
    make_bucket(s3, reference.bucket)
    first_backup(reference)
    urls: list[str] = []
    clients.s3.meta.events.register("before-send.s3", lambda request, **_: urls.append(f"{request.method} {request.url}"))
    counted, done = count_operations(clients.s3, fault_injector, lambda: backup(reference, "20261126T000000000Z-ref"))
    clients.s3.meta.events.unregister("before-send.s3")
    assert (done.copied, done.unchanged, done.deleted) == (6, 13, 2), done
    # The five changed small objects in one pack, its PUT among the calls the sweep crashes at.
    assert counted.calls["s3.PutObject"] >= 2 and "s3.GetObject" in counted.calls, counted.calls
    expected = latest_content(s3, reference)
    entries = entries_of(s3, reference.bucket, reference.name, "20261126T000000000Z-ref")
    assert sum(entry.packed for entry in entries) == 18 and len({e.pack_key for e in entries if e.packed}) == 2

    operations = counted.operations
    # A seeded subset (every k with --exhaustive), and always the crash just before and just after each pack's
    # PUT: nothing stored, or a pack stored that nothing names yet.
    puts = [k for k, url in enumerate(urls) if "/data/~packs/" in url]
    assert len(puts) == 1, urls
    around = {k for put in puts for k in (put, put + 1) if k % CHUNKS == chunk}
    points = sorted(set(sweep_points(operations, chunk) if exhaustive else seeded_points(operations, chunk, sample=4)) | around)
    checked = {"manifests": 0}

    def crashed_backup(plan: Plan, backup_id: str) -> Any:
        try:
            return backup(plan, backup_id)
        finally:
            # Whatever the crash left: every manifest there (and a crashed run's partial one) is whole.
            checked["manifests"] += assert_every_manifest_names_stored_data(s3, plan.bucket)

    crashes = sweep(s3, clients.s3, after, fault_injector, points, crashed_backup, first_backup, expected)
    assert crashes == len(points) and checked["manifests"] > 0


class ShortInvocation:
    """An invocation's budget that runs out at its second look, and stays out (as time does): each invocation
    works a batch or two and saves a checkpoint."""

    def __init__(self) -> None:
        self.looks = 0

    def running_out(self) -> bool:
        self.looks += 1
        return self.looks >= 2


def test_a_packed_backup_stopped_at_every_batch_checkpoints_only_stored_packs(s3: Any, plans: PlanSet) -> None:
    """Short of time after every batch, each invocation stores its open pack before its checkpoint; carried on
    to the end, the snapshot is the one a single invocation writes."""
    clients = Clients()
    s3.create_bucket(Bucket=SOURCE)
    for index in range(23):
        s3.put_object(Bucket=SOURCE, Key=f"doc/{index:02d}.txt", Body=f"document {index}".encode() * (index + 1))
    plan = dataclasses.replace(packing(plans.get("documents")), bucket="pack-checkpoints")
    make_bucket(s3, plan.bucket)
    factory = readers_on(clients)
    invocations = 0
    while True:
        invocations += 1
        result = PlanBackup(plan, clients.s3, "20261126T000000000Z-stops", factory, max_workers=1, batch_size=4, budget=ShortInvocation()).run()
        assert_every_manifest_names_stored_data(s3, plan.bucket)
        if result.status != "RUNNING":
            break
    assert result.status == "SUCCEEDED" and invocations >= 3
    whole = dataclasses.replace(plan, bucket="pack-checkpoints-whole")
    make_bucket(s3, whole.bucket)
    assert PlanBackup(whole, clients.s3, "20261126T000000000Z-whole", factory, max_workers=1).run().status == "SUCCEEDED"
    stopped = entries_of(s3, plan.bucket, plan.name, "20261126T000000000Z-stops")
    assert content(iter(stopped)) == content(iter(entries_of(s3, whole.bucket, whole.name, "20261126T000000000Z-whole")))
    # Each invocation stored its own (small) pack before it stopped.
    assert len({entry.pack_key for entry in stopped}) >= invocations - 1


@pytest.mark.parametrize("kind", ["reset", "slowdown"])
def test_a_pack_put_that_fails_once_is_stored_once_whether_or_not_s3_wrote_it(
    s3: Any, plans: PlanSet, fault_injector: Any, kind: str
) -> None:
    """The pack's PUT meets a dropped connection (nothing written) or an error after S3 wrote it: the retry
    writes it, or finds its key taken by these very bytes and adopts that version."""
    clients = Clients()
    s3.create_bucket(Bucket=SOURCE)
    for index in range(5):
        s3.put_object(Bucket=SOURCE, Key=f"doc/{index}.txt", Body=f"document {index}".encode())
    plan = dataclasses.replace(packing(plans.get("documents")), bucket=f"pack-put-{kind}")
    make_bucket(s3, plan.bucket)
    faults = fault_injector(0)
    rule = faults.add("s3.PutObject", kind, url_contains="/data/~packs/", times=1)
    faults.attach(clients.s3)
    try:
        result = PlanBackup(plan, clients.s3, "20261126T000000000Z-put", readers_on(clients), max_workers=1).run()
    finally:
        faults.detach()
    assert rule.fired == 1 and result.status == "SUCCEEDED", result.errors
    listed = s3.list_object_versions(Bucket=plan.bucket, Prefix=PACKS_PREFIX).get("Versions", [])
    assert len(listed) == 1
    entries = entries_of(s3, plan.bucket, plan.name, "20261126T000000000Z-put")
    assert {(e.pack_key, e.version_id) for e in entries} == {(listed[0]["Key"], listed[0]["VersionId"])}
    assert assert_every_manifest_names_stored_data(s3, plan.bucket) == 5


def test_a_verification_checks_a_packed_object_by_its_pack_and_its_range(s3: Any, plans: PlanSet) -> None:
    """A packed object is checked by its pack's version (there or missing; tests/test_pack_verify.py has the
    rest) and, when sampled, by re-hashing its range: a pack's metadata is never taken for the object's."""
    clients = Clients()
    s3.create_bucket(Bucket=SOURCE)
    for index in range(4):
        s3.put_object(Bucket=SOURCE, Key=f"doc/{index}.txt", Body=f"document {index}".encode())
    s3.put_object(Bucket=SOURCE, Key="doc/large.bin", Body=b"L" * 200_000)
    plan = dataclasses.replace(packing(plans.get("documents")), bucket="pack-verify")
    make_bucket(s3, plan.bucket)
    assert PlanBackup(plan, clients.s3, "20261126T000000000Z-v", readers_on(clients), max_workers=1).run().status == "SUCCEEDED"
    entries = entries_of(s3, plan.bucket, plan.name, "20261126T000000000Z-v")
    assert sum(entry.packed for entry in entries) == 4
    report = verify_entries(clients.s3, plan, entries, sample_percent=100)
    assert report.ok and (report.checked, report.sampled) == (5, 5)
    # The pack's version gone: each of its objects is missing, and named; the large object is not.
    packed = next(entry for entry in entries if entry.packed)
    s3.delete_object(Bucket=plan.bucket, Key=str(packed.pack_key), VersionId=packed.version_id)
    report = verify_entries(clients.s3, plan, entries, sample_percent=100)
    assert sorted(finding.key for finding in report.missing) == [f"doc/{index}.txt" for index in range(4)]
    assert all(str(packed.pack_key) in finding.detail for finding in report.missing) and not report.damaged


def test_a_packed_plan_split_into_ranges_packs_per_range_and_equals_a_single_pass(s3: Any, plans: PlanSet) -> None:
    """A split plan's ranges, each run across invocations of two batches: each packs its own objects and
    stores its packs before its checkpoints; the merged snapshot is a single pass's, naming only stored packs."""
    clients = SimpleNamespace(s3=s3, dynamodb=None)
    s3.create_bucket(Bucket=SOURCE)
    for index in range(60):
        s3.put_object(Bucket=SOURCE, Key=f"docs/{index:03d}.txt", Body=f"document {index}".encode() * (index + 1))
    plan = dataclasses.replace(packing(plans.get("documents")), bucket="pack-split")
    single = dataclasses.replace(plan, bucket="pack-split-single")
    for each in (plan, single):
        make_bucket(s3, each.bucket)
        assert PlanBackup(each, s3, "20261126T000000000Z-first", readers_on(clients), max_workers=2).run().status == "SUCCEEDED"
    for index in range(0, 60, 3):
        s3.put_object(Bucket=SOURCE, Key=f"docs/{index:03d}.txt", Body=f"changed {index}".encode())

    invoker = Invocations()
    policy = ranges.SplitPolicy(split_objects=20, max_parallel=3, invoker=invoker)
    backup_id = "20261127T000000000Z-split"
    finished: list[Any] = []
    waiting: list[int] = []

    def invocation(payload: dict[str, Any]) -> None:
        options = PlanOptions(max_workers=2, budget=TimeBudget(FakeContext(1)), batch_size=2)
        outcome = run_plan(plan, clients, payload["backup_id"], options, payload.get("segment"), policy)
        assert_every_manifest_names_stored_data(s3, plan.bucket)
        if outcome.result.status == ranges.WAITING:
            waiting.append(outcome.segment)
        if outcome.result.status == "RUNNING":
            invoker({"backup_id": payload["backup_id"], "plan": plan.name, "segment": outcome.segment})
        elif outcome.result.status != ranges.WAITING:
            finished.append(outcome.result)

    invocation({"backup_id": backup_id})
    invoker.drive(invocation)
    assert [result.status for result in finished] == ["SUCCEEDED"] and len(waiting) == 2
    assert PlanBackup(single, s3, backup_id, readers_on(clients), max_workers=2).run().status == "SUCCEEDED"
    assert snapshot_content(s3, plan, backup_id) == snapshot_content(s3, single, backup_id)
    entries = entries_of(s3, plan.bucket, plan.name, backup_id)
    # The 20 changed objects were packed by the three ranges, in packs of their own (a token per invocation).
    changed = {e.pack_key for e in entries if e.key in {f"docs/{i:03d}.txt" for i in range(0, 60, 3)}}
    assert len(changed) >= 3 and not changed & {e.pack_key for e in entries_of(s3, plan.bucket, plan.name, "20261126T000000000Z-first")}
    assert_versions_hold(s3, plan.bucket, entries, source_bytes(s3))


def test_an_archived_pack_is_thawed_once_for_all_its_objects_then_each_is_one_ranged_get(
    s3: Any, stage_env: dict[str, str]
) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_api import state_manager
    from moto.s3.models import s3_backends

    world = World(s3, stage_env)
    small = {f"notes/{index}.txt": f"note {index}".encode() * 20 for index in range(6)}
    world.put({**small, "photo.raw": b"P" * 300_000})
    backup_id = world.backup().backup_id
    entries = world.entries("documents", backup_id)
    packs = {(e.pack_key, e.version_id) for e in entries.values() if e.packed}
    assert len(packs) == 1
    pack_key, pack_version = next(iter(packs))
    # What the lifecycle does after 180 days (moto never runs it); the thaw then stays under way for a while.
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(world.plans.get("documents").bucket, pack_key, version_id=pack_version).set_storage_class("DEEP_ARCHIVE")
    pack_size = s3.head_object(Bucket=world.plans.get("documents").bucket, Key=pack_key, VersionId=pack_version)["ContentLength"]
    sent: list[tuple[str, dict[str, Any]]] = []
    for operation in ("RestoreObject", "HeadObject", "GetObject"):
        world.clients.s3.meta.events.register(
            f"provide-client-params.s3.{operation}", lambda params, operation=operation, **_: sent.append((operation, dict(params)))
        )

    def to_pack(operation: str) -> list[dict[str, Any]]:
        return [params for name, params in sent if name == operation and params.get("Key") == pack_key]

    request = dict(backup_id=backup_id, plan="documents", target=Target(bucket=RESTORE_TARGET, prefix="thawed/"))
    quoted = world.restores.quote(RestoreRequest(**request, tier="Standard"))
    # One thaw, of the whole pack, however many of its objects are wanted.
    assert (quoted["need_thaw"], quoted["need_thaw_bytes"]) == (1, pack_size)
    assert quoted["archived"]["DEEP_ARCHIVE"] == {"objects": 1, "bytes": pack_size}
    sent.clear()
    state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": 2})
    try:
        record = world.restores.start(RestoreRequest(**request))
        first = world.restores.run(record.restore_id)
        assert first.status == "WAITING_FOR_THAW" and first.pending_thaw == 6 and first.restored == 1
        assert len(to_pack("RestoreObject")) == 1 and not to_pack("GetObject")
        passes = 0
        while True:
            sent.clear()
            done = world.restores.run(record.restore_id)
            passes += 1
            # Each later pass looks at the pack once, for all six.
            assert len(to_pack("HeadObject")) == 1 and not to_pack("RestoreObject")
            if done.status != "WAITING_FOR_THAW" or passes > 5:
                break
    finally:
        state_manager.unset_transition("s3::keyrestore")
    assert done.status == "SUCCEEDED" and done.restored == 7, done
    # Each object: one ranged GET of the thawed pack.
    ranges_read = sorted(params["Range"] for params in to_pack("GetObject"))
    assert ranges_read == sorted(str(entries[key].byte_range) for key in small)
    assert bucket_objects(s3, RESTORE_TARGET, "thawed/") == {**small, "photo.raw": b"P" * 300_000}


def test_a_batch_reads_ahead_only_so_many_bytes_for_its_packs_and_the_rest_one_at_a_time(
    s3: Any, plans: PlanSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = Clients()
    s3.create_bucket(Bucket=SOURCE)
    for index in range(12):
        s3.put_object(Bucket=SOURCE, Key=f"doc/{index:02d}.txt", Body=b"x" * (100 + index))
    snapshots = []
    for ahead in (copying.FETCH_AHEAD_BYTES, 350):
        monkeypatch.setattr(copying, "FETCH_AHEAD_BYTES", ahead)
        plan = dataclasses.replace(packing(plans.get("documents")), bucket=f"pack-ahead-{ahead}")
        make_bucket(s3, plan.bucket)
        reads: list[str] = []

        def factory(source: Any) -> Any:
            reader = readers_on(clients)(source)
            fetch = reader.fetch

            def counted(obj: Any) -> Any:
                reads.append(threading.current_thread().name)
                return fetch(obj)

            reader.fetch = counted
            return reader

        result = PlanBackup(plan, clients.s3, "20261126T000000000Z-ahead", factory, max_workers=4, batch_size=6).run()
        assert result.status == "SUCCEEDED" and len(reads) == 12
        snapshots.append(content(iter(entries_of(s3, plan.bucket, plan.name, "20261126T000000000Z-ahead"))))
        main = sum(1 for name in reads if name == threading.main_thread().name)
        # Without a limit every read runs on the pool; at 350 bytes, three of each six-object batch do, the
        # other three are read by the run itself as it flushes the batch.
        assert main == (0 if ahead > 350 else 6), reads
    assert snapshots[0] == snapshots[1]


def test_a_pack_is_looked_at_once_for_its_objects_whichever_thread_asks_first() -> None:
    """Two objects of one pack in a batch: the second asks while the first's look is under way, and waits for
    it rather than looking again (whatever the timing, the verdict is the same: one look)."""
    packs = PackThaws()
    other = Entry(**{**PACKED.__dict__, "key": "z.txt", "pack_offset": 47})
    looks: list[str] = []
    answers: list[Any] = []
    threads: list[threading.Thread] = []
    archived = {"StorageClass": "DEEP_ARCHIVE"}

    def second() -> None:
        answers.append(packs.head(other, lambda: looks.append("second") or archived))

    def first_look() -> dict[str, Any]:
        looks.append("first")
        asking = threading.Thread(target=second)
        threads.append(asking)
        asking.start()
        asking.join(0.2)  # it waits for this look (or, were it to look itself, has done so by now)
        return archived

    answers.append(packs.head(PACKED, first_look))
    threads[0].join(5)
    assert looks == ["first"] and answers == [archived, archived]
    # And its thaw is asked for once: the second object's head says a thaw is under way.
    assert packs.asked(PACKED, archived) == archived
    assert packs.asked(other, archived)["Restore"] == 'ongoing-request="true"'

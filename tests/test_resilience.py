"""Faults and repeated deliveries: whatever fails, the snapshots end up as a fault-free run would leave them,
and no manifest ever names data that is not stored."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import time_machine

from chalicelib import transfer
from chalicelib.aws import Clients
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.service import BackupService
from chalicelib.backup.sources import S3SourceReader, make_reader
from chalicelib.catalog.manifests import list_snapshot_keys, manifest_key
from chalicelib.config import Settings
from chalicelib.plans import Plan, PlanSet
from tests.concurrency import at_once
from tests.conftest import ACCOUNT, create_table, read_alerts
from tests.faults import Crash
from tests.provisioned import provision_buckets
from tests.stored import assert_versions_hold, entries_of
from tests.test_scale import assert_manifests_describe_stored_data, copy_counter, make_bucket, snapshot_content

MiB = 1024**2


def settings_for(stage_env: dict[str, str], prefix: str, workers: int = 4) -> Settings:
    """The stage's plans, backing up into buckets named after `prefix` (one set of buckets per run)."""
    settings = Settings.from_environ({**stage_env, "BACKUP_BUCKET_PREFIX": prefix, "MAX_WORKERS": str(workers)})
    return settings


def make_plan_buckets(s3: Any, plans: PlanSet) -> None:
    """Provisioned as deployed: a bucket short of its settings would make every plan PARTIAL (drift)."""
    provision_buckets(s3, plans, ACCOUNT)


def latest_id(s3: Any, plan: Plan) -> str:
    keys = list_snapshot_keys(s3, plan.bucket, plan.name)
    assert keys, f"plan {plan.name} has no snapshot"
    return keys[-1].rsplit("/", 1)[1].removesuffix(".jsonl.gz")


def latest_content(s3: Any, plan: Plan) -> list[tuple[Any, ...]]:
    keys = list_snapshot_keys(s3, plan.bucket, plan.name)
    assert keys, f"plan {plan.name} has no snapshot"
    backup_id = keys[-1].rsplit("/", 1)[1].removesuffix(".jsonl.gz")
    return snapshot_content(s3, plan, backup_id)


def all_contents(s3: Any, settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    return {plan.name: latest_content(s3, plan) for plan in settings.plans.plans}


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The schedule times these tests name (25 and 26 November 2026) stay within MAX_BACKUP_DAYS of the clock."""
    with time_machine.travel(datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def small_sources(s3: Any, dynamodb: Any, stage_env: dict[str, str]) -> None:
    """30 objects across the two S3 sources and a 20-item table: small enough for many runs."""
    for name, count in (("DOCUMENTS_SOURCE_BUCKET", 15), ("PHOTOS_SOURCE_BUCKET", 15)):
        s3.create_bucket(Bucket=stage_env[name])
        for index in range(count):
            s3.put_object(Bucket=stage_env[name], Key=f"f/{index:02d}", Body=f"{name} {index}".encode() * (index + 1))
    create_table(dynamodb, stage_env["DATABASE_TABLE"], items=20)


# --------------------------------------------------------------------------------------------------------
# Transient faults


def drop_snapshots(s3: Any, settings: Settings) -> None:
    """Hide every manifest (a delete marker), so the next backup is a full one again."""
    for plan in settings.plans.plans:
        for key in list_snapshot_keys(s3, plan.bucket, plan.name):
            s3.delete_object(Bucket=plan.bucket, Key=key)


def test_transient_faults_everywhere_change_nothing_in_the_snapshots(
    s3: Any, small_sources: None, topic_queue: str, stage_env: dict[str, str], fault_injector: Any, exhaustive: bool,
) -> None:
    """5% of all S3, DynamoDB and SNS calls fail, half before and half after the write: seeded full backups
    (20, or 50 under `make test-full`) all succeed with exactly the snapshots of a fault-free run."""
    settings = settings_for(stage_env, "faults-backup")
    # Versioned buckets without the deployed bucket policy: moto evaluates a bucket policy on every request,
    # which only slows this test down (the drift checks that would miss it are off here: tests/conftest.py).
    for plan in settings.plans.plans:
        make_bucket(s3, plan.bucket)
    clients = Clients()
    service = BackupService(settings, clients)
    record = service.start(None, trigger="api")
    assert service.run(record.backup_id).status == "SUCCEEDED"
    expected = all_contents(s3, settings)

    # What each S3 plan's entries must hold, by (source, key); the database's export is checked by its SHA-256.
    wanted = {plan.name: source_bytes(s3, plan) if plan.name != "database" else None for plan in settings.plans.plans}
    fired: set[str] = set()
    for seed in range(50 if exhaustive else 20):
        drop_snapshots(s3, settings)
        faults = fault_injector(seed)
        kinds = ("reset", "timeout", "slowdown", "error500")
        if seed % 5 == 0:
            # A backup makes one SNS call: at 5% it could go unfaulted in every run. Every fifth run fails it
            # once, each kind in turn, so every service certainly meets every kind of fault.
            faults.add("sns.Publish", kinds[(seed // 5) % 4], rate=1.0, times=1)
        for kind in kinds:
            faults.add("*", kind, rate=0.0125)
        faults.attach(clients.s3, clients.dynamodb, clients.sns)
        record = service.start(None, trigger="api")
        done = service.run(record.backup_id)
        faults.detach()
        assert done.status == "SUCCEEDED", (seed, faults.log, done.to_dict())
        assert all_contents(s3, settings) == expected, (seed, faults.log)
        for plan in settings.plans.plans:
            assert list_snapshot_keys(s3, plan.bucket, plan.name) == [manifest_key(plan.name, record.backup_id)]
            # By version id: each entry's version exists with its recorded size, ETag and checksum, and (the
            # S3 plans) holds the source's bytes, whatever faults the run met.
            assert_manifests_describe_stored_data(s3, plan.bucket)
            entries = entries_of(s3, plan.bucket, plan.name, record.backup_id)
            assert_versions_hold(s3, plan.bucket, entries, wanted[plan.name])
        fired.update(f"{operation}:{kind}" for _, operation, kind in faults.log)
    # The runs did meet faults: of every kind, on every service.
    assert {entry.rsplit(":", 1)[1] for entry in fired} == {"reset", "timeout", "slowdown", "error500"}
    assert {entry.split(".", 1)[0] for entry in fired} == {"s3", "dynamodb", "sns"}


def test_a_fault_that_never_clears_fails_one_source_and_the_alert_names_it(
    s3: Any, sqs: Any, small_sources: None, topic_queue: str, stage_env: dict[str, str], fault_injector: Any
) -> None:
    settings = settings_for(stage_env, "stuck-backup")
    make_plan_buckets(s3, settings.plans)
    clients = Clients()
    faults = fault_injector(1)
    faults.add("s3.*", "reset", rate=1.0, url_contains=stage_env["PHOTOS_SOURCE_BUCKET"])
    faults.attach(clients.s3, clients.dynamodb, clients.sns)
    service = BackupService(settings, clients)
    record = service.start(None, trigger="api")
    done = service.run(record.backup_id)

    assert done.status == "PARTIAL"
    assert done.plans["photos"].status == "FAILED"
    assert done.plans["documents"].status == "SUCCEEDED" and done.plans["database"].status == "SUCCEEDED"
    assert "photos" in done.plans["photos"].errors[0] and stage_env["PHOTOS_SOURCE_BUCKET"] in done.plans["photos"].errors[0]
    # Retried as far as the retry mode allows before giving up.
    assert faults.calls["s3.ListObjectsV2"] >= 10
    alerts = read_alerts(sqs, topic_queue)
    assert len(alerts) == 1
    assert "PARTIAL" in alerts[0]["Subject"]
    assert "photos" in alerts[0]["Message"] and stage_env["PHOTOS_SOURCE_BUCKET"] in alerts[0]["Message"]


# --------------------------------------------------------------------------------------------------------
# Crashes


# Each crash sweep kills "the process" at operation k for every k of one backup, then runs a new backup and
# compares. The operations are counted on a reference run; the sweep is split into chunks (k mod CHUNKS), so
# the test runner spreads one sweep over its workers.
CHUNKS = 4


def sweep_points(operations: int, chunk: int, chunks: int = CHUNKS) -> list[int]:
    return list(range(chunk, operations, chunks))


def seeded_points(operations: int, chunk: int, sample: int, seed: int = 20261129) -> list[int]:
    """A fixed subset for `make test`: the first and last three calls (the listings, the previous snapshot,
    the manifest and the clean-up, each of which the incremental sweep below also takes at every call) and a
    seeded sample of the calls in between."""
    edges = set(range(min(3, operations))) | set(range(max(0, operations - 3), operations))
    middle = sorted(set(range(operations)) - edges)
    chosen = edges | set(random.Random(seed).sample(middle, min(sample, len(middle))))
    return [k for k in sorted(chosen) if k % CHUNKS == chunk]


def source_bytes(s3: Any, plan: Plan) -> dict[tuple[str, str], bytes]:
    """What each S3 source of the plan holds now, by (source, key): the bytes a snapshot must name."""
    found: dict[tuple[str, str], bytes] = {}
    for source in plan.sources:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source.bucket, Prefix=source.prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=source.bucket, Key=item["Key"])["Body"].read()
                found[(source.name, item["Key"][len(source.prefix):])] = body
    return found


def sweep(
    s3: Any, client: Any, plan: Plan, fault_injector: Any, points: list[int], backup: Callable[[Plan, str], Any],
    prepare: Callable[[Plan], None], expected: list[tuple[Any, ...]],
) -> int:
    """For each k: a fresh bucket prepared as the reference's was, a backup whose process dies at call k
    (counted on `client`), then a new backup that must leave exactly the reference's snapshot, naming by
    version id versions that hold the source's bytes, keeping the version of every object the first
    snapshot already held unchanged, with every manifest naming stored data."""
    wanted = source_bytes(s3, plan)
    crashes = 0
    for k in points:
        plan_k = dataclasses.replace(plan, bucket=f"crash-{plan.name}-{k}")
        make_bucket(s3, plan_k.bucket)
        prepare(plan_k)
        before = {
            (e.source, e.key): e
            for key in list_snapshot_keys(s3, plan_k.bucket, plan_k.name)
            for e in entries_of(s3, plan_k.bucket, plan_k.name, key.rsplit("/", 1)[1].removesuffix(".jsonl.gz"))
        }
        faults = fault_injector(k)
        faults.crash_at_operation(k)
        faults.attach(client)
        try:
            backup(plan_k, "20261126T000000000Z-crashed")
        except Crash:
            crashes += 1
        finally:
            faults.detach()
        # Whatever the crash left, a new backup finishes the job, and no manifest (the new one, or one the
        # crashed run wrote before it died) names data that is not stored.
        assert backup(plan_k, "20261126T010000000Z-next").status == "SUCCEEDED", k
        assert latest_content(s3, plan_k) == expected, k
        final = entries_of(s3, plan_k.bucket, plan_k.name, latest_id(s3, plan_k))
        assert_versions_hold(s3, plan_k.bucket, final, wanted)
        for entry in final:
            first = before.get((entry.source, entry.key))
            if first is not None and first.identity == entry.identity:
                assert entry.version_id == first.version_id, (k, entry.key, "an unchanged object changed version")
        assert_manifests_describe_stored_data(s3, plan_k.bucket)
    return crashes


class SingleThreaded:
    """A plan backup with one copy thread, so the order of calls is the same on every run."""

    def __init__(self, s3: Any, multipart_threshold: int | None = None, batch_size: int = 1000) -> None:
        self.s3 = s3
        self.multipart_threshold = multipart_threshold
        self.batch_size = batch_size

    def __call__(self, plan: Plan, backup_id: str) -> Any:
        def factory(source: Any) -> Any:
            if self.multipart_threshold is not None:
                return S3SourceReader(self.s3, source, multipart_threshold=self.multipart_threshold)
            return make_reader(source, self.s3, None)

        return PlanBackup(plan, self.s3, backup_id, factory, max_workers=1, batch_size=self.batch_size).run()


def count_operations(s3: Any, fault_injector: Any, run: Callable[[], Any]) -> tuple[Any, Any]:
    """The calls an uninterrupted run makes on `s3` (`.operations`, and `.calls` by operation), and its result."""
    counting = fault_injector(0).attach(s3)
    try:
        result = run()
    finally:
        counting.detach()
    assert result.status == "SUCCEEDED", result
    return counting, result


@pytest.fixture
def crash_source(s3: Any, stage_env: dict[str, str]) -> None:
    bucket = stage_env["DOCUMENTS_SOURCE_BUCKET"]
    s3.create_bucket(Bucket=bucket)
    for index in range(185):
        s3.put_object(Bucket=bucket, Key=f"doc/{index:03d}.txt", Body=f"{index}".encode() * 7)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_a_crash_at_any_operation_then_a_new_backup_ends_as_an_uninterrupted_one(
    s3: Any, plans: PlanSet, fault_injector: Any, exhaustive: bool, chunk: int, request: pytest.FixtureRequest
) -> None:
    """A first backup of 185 objects: the process dies at call k; the next backup leaves the same snapshot
    as a backup that never crashed. Every k with --exhaustive (`make test-full`), a seeded subset otherwise;
    the incremental sweep below takes every k of its backup in every run."""
    if chunk and not exhaustive:
        # The subset is a few calls: one chunk takes them all rather than four each seeding the source and
        # taking the reference backup again.
        pytest.skip("the seeded subset runs in chunk 0; every chunk runs with --exhaustive")
    request.getfixturevalue("crash_source")
    clients = Clients()
    base = plans.get("documents")
    backup = SingleThreaded(clients.s3)
    reference = dataclasses.replace(base, bucket="crash-ref")
    make_bucket(s3, reference.bucket)
    counted, _ = count_operations(clients.s3, fault_injector, lambda: backup(reference, "20261126T000000000Z-ref"))
    operations = counted.operations
    assert 180 <= operations <= 230
    expected = latest_content(s3, reference)

    points = (
        sweep_points(operations, chunk) if exhaustive
        else sorted(k for each in range(CHUNKS) for k in seeded_points(operations, each, sample=2))
    )
    assert points
    crashes = sweep(s3, clients.s3, base, fault_injector, points, backup, lambda plan: None, expected)
    assert crashes == len(points)


INCREMENTAL_BATCH = 5


@pytest.fixture
def two_states(s3: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A source as it was (18 small objects and one large enough for a multipart copy at a 5 MiB threshold)
    and as it is a day later: 3 changed, 2 deleted, 2 new, the large one rewritten. Two buckets, so that every
    crashed bucket's first backup can be taken from the old state whenever the sweep gets to it."""
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    before, after = "crash-source-before", "crash-source-after"
    for bucket in (before, after):
        s3.create_bucket(Bucket=bucket)
        for index in range(18):
            s3.put_object(Bucket=bucket, Key=f"doc/{index:02d}.txt", Body=f"{index} ".encode() * 9)
    s3.put_object(Bucket=before, Key="doc/big.bin", Body=b"first" * (MiB // 4))
    for index in (1, 6, 11):
        s3.put_object(Bucket=after, Key=f"doc/{index:02d}.txt", Body=f"changed {index}".encode())
    for index in (3, 14):
        s3.delete_object(Bucket=after, Key=f"doc/{index:02d}.txt")
    for name in ("doc/05-new.txt", "doc/99-new.txt"):
        s3.put_object(Bucket=after, Key=name, Body=name.encode())
    s3.put_object(Bucket=after, Key="doc/big.bin", Body=b"second" * (11 * MiB // 6))
    return before, after


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_a_crash_at_any_operation_of_an_incremental_backup_then_a_new_backup_ends_as_an_uninterrupted_one(
    s3: Any, two_states: tuple[str, str], plans: PlanSet, fault_injector: Any, chunk: int
) -> None:
    """Every kind of call a backup makes, at every k, in every run of the suite: the plan's listing, the
    previous manifest, the source listing, copies across batches, a multipart copy with its marker and
    clean-up, delete markers, the manifest. Each crashed bucket starts from the same first snapshot; the
    next backup must leave the same second snapshot as an uninterrupted run."""
    clients = Clients()
    base = plans.get("documents")
    source = base.sources[0]
    before = dataclasses.replace(base, sources=(dataclasses.replace(source, bucket=two_states[0]),))
    after = dataclasses.replace(base, sources=(dataclasses.replace(source, bucket=two_states[1]),))
    backup = SingleThreaded(clients.s3, multipart_threshold=5 * MiB, batch_size=INCREMENTAL_BATCH)

    def first_backup(plan: Plan) -> None:
        assert backup(dataclasses.replace(before, bucket=plan.bucket), "20261125T000000000Z-first").status == "SUCCEEDED"

    reference = dataclasses.replace(after, bucket="crash-incremental-ref")
    make_bucket(s3, reference.bucket)
    first_backup(reference)
    counted, done = count_operations(clients.s3, fault_injector, lambda: backup(reference, "20261126T000000000Z-ref"))
    assert (done.copied, done.unchanged, done.deleted) == (6, 13, 2), done
    operations = counted.operations
    # Every kind of call is among those the sweep crashes at.
    assert set(counted.calls) >= {
        "s3.ListObjectsV2", "s3.GetObject", "s3.CopyObject", "s3.PutObject", "s3.CreateMultipartUpload",
        "s3.UploadPartCopy", "s3.CompleteMultipartUpload", "s3.HeadObject", "s3.DeleteObjects",
        "s3.ListMultipartUploads",
    }, counted.calls
    assert 15 <= operations <= 60, counted.calls
    expected = latest_content(s3, reference)

    points = sweep_points(operations, chunk)
    crashes = sweep(s3, clients.s3, after, fault_injector, points, backup, first_backup, expected)
    assert crashes == len(points)


def test_an_interrupted_multipart_copy_leaves_no_upload_once_the_next_backup_ends(
    s3: Any, plans: Any, fault_injector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Multipart copies at 5 MiB (S3's smallest part) instead of 5 GiB, so a test object can take that path.
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    plan = plans.get("documents")
    source = plan.sources[0]
    s3.create_bucket(Bucket=source.bucket)
    s3.put_object(Bucket=source.bucket, Key="big-a.bin", Body=b"a" * (11 * MiB))
    s3.put_object(Bucket=source.bucket, Key="big-b.bin", Body=b"b" * (11 * MiB))
    s3.put_object(Bucket=source.bucket, Key="small.txt", Body=b"small")
    make_bucket(s3, plan.bucket)

    def run(backup_id: str, client: Any) -> Any:
        factory = lambda src: S3SourceReader(client, src, multipart_threshold=5 * MiB)  # noqa: E731
        return PlanBackup(plan, client, backup_id, factory, max_workers=2).run()

    # Midway through the first multipart copy the connection drops for good: the part copies fail, and so
    # does the managed copy's own abort, as when the process dies: the upload is left behind.
    failing = Clients().s3
    faults = fault_injector(3)
    faults.add("s3.UploadPartCopy", "reset", rate=1.0)
    faults.add("s3.AbortMultipartUpload", "reset", rate=1.0)
    faults.attach(failing)
    first = run("20261126T000000000Z-interrupted", failing)
    faults.detach()
    assert first.failed == 2 and first.status == "PARTIAL", first
    assert s3.list_multipart_uploads(Bucket=plan.bucket).get("Uploads"), "the interruption should leave an upload"

    result = run("20261126T010000000Z-next", Clients().s3)
    assert result.status == "SUCCEEDED", result
    assert s3.list_multipart_uploads(Bucket=plan.bucket).get("Uploads", []) == []
    keys = [row[1] for row in snapshot_content(s3, plan, "20261126T010000000Z-next")]
    assert keys == ["big-a.bin", "big-b.bin", "small.txt"]
    assert_manifests_describe_stored_data(s3, plan.bucket)
    # The marker that asked for the clean-up is gone too.
    assert not [k["Key"] for k in s3.list_objects_v2(Bucket=plan.bucket, Prefix="meta/").get("Contents", [])
                if k["Key"].endswith(".uploading")]


# --------------------------------------------------------------------------------------------------------
# At-least-once delivery


@pytest.mark.usefixtures("without_projection")
def test_the_same_schedule_delivered_twice_in_sequence_gives_one_snapshot_per_plan(
    s3: Any, small_sources: None, stage_env: dict[str, str]
) -> None:
    settings = settings_for(stage_env, "twice-backup")
    make_plan_buckets(s3, settings.plans)
    clients = Clients()
    copies = copy_counter(clients.s3)
    moment = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
    first = BackupService(settings, clients).run_scheduled(moment)
    second = BackupService(settings, clients).run_scheduled(moment)
    assert first.backup_id == second.backup_id and second.status == "SUCCEEDED"
    for plan in settings.plans.plans:
        assert len(list_snapshot_keys(s3, plan.bucket, plan.name)) == 1
    # The second delivery found the work done: nothing copied again.
    assert set(copies.values()) == {1} and len(copies) == 30


@pytest.mark.usefixtures("without_projection")
def test_the_same_schedule_delivered_twice_at_once_gives_one_snapshot_per_plan(
    s3: Any, small_sources: None, stage_env: dict[str, str]
) -> None:
    settings = settings_for(stage_env, "race-backup")
    make_plan_buckets(s3, settings.plans)
    reference = settings_for(stage_env, "race-ref")
    make_plan_buckets(s3, reference.plans)
    BackupService(reference, Clients()).run_scheduled(datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc))
    expected = all_contents(s3, reference)

    moment = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
    delivery = (lambda: BackupService(settings, Clients()), lambda service: service.run_scheduled(moment))
    results = at_once(delivery, delivery)
    assert {record.backup_id for record in results} == {results[0].backup_id}
    final = BackupService(settings, Clients()).get(results[0].backup_id)
    assert final.status == "SUCCEEDED", final.to_dict()
    for plan in settings.plans.plans:
        assert len(list_snapshot_keys(s3, plan.bucket, plan.name)) == 1
        assert_manifests_describe_stored_data(s3, plan.bucket)
    assert all_contents(s3, settings) == expected


@pytest.mark.usefixtures("without_projection")
def test_a_manual_and_a_scheduled_backup_at_the_same_moment_each_write_a_whole_snapshot(
    s3: Any, small_sources: None, stage_env: dict[str, str]
) -> None:
    settings = settings_for(stage_env, "both-backup")
    make_plan_buckets(s3, settings.plans)
    reference = settings_for(stage_env, "both-ref")
    make_plan_buckets(s3, reference.plans)
    BackupService(reference, Clients()).run_scheduled(datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc))
    expected = all_contents(s3, reference)

    def manual() -> tuple[BackupService, str]:
        service = BackupService(settings, Clients())
        return service, service.start(None, trigger="api").backup_id

    scheduled = (
        lambda: BackupService(settings, Clients()),
        lambda service: service.run_scheduled(datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)),
    )
    records = dict(zip(("manual", "schedule"), at_once((manual, lambda started: started[0].run(started[1])), scheduled)))
    assert records["manual"].status == "SUCCEEDED" and records["schedule"].status == "SUCCEEDED"
    for plan in settings.plans.plans:
        # Two backups, two snapshots, each whole: the same content as a backup made alone, and every
        # version each one names is stored.
        keys = list_snapshot_keys(s3, plan.bucket, plan.name)
        assert len(keys) == 2
        for record in records.values():
            assert snapshot_content(s3, plan, record.backup_id) == expected[plan.name]
        assert_manifests_describe_stored_data(s3, plan.bucket)

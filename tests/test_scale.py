"""Backups past one invocation, duplicate deliveries, and faults: the snapshot always ends up the same.

Every comparison is with a single-pass, fault-free backup of the same data. Snapshots of two buckets are
compared by content (source, key, size, ETag, identity, checksums), since version ids differ from bucket to
bucket; and every entry of every manifest is checked by its version id against what the bucket stores.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.backup import checkpoints
from chalicelib.jobs.budget import DEFAULT_RESERVE_MS, TimeBudget, budget_for
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.plan_run import PlanOptions, run_plan
from chalicelib.backup.service import BackupService
from chalicelib.backup.sources import make_reader
from chalicelib.catalog.manifests import Manifest, list_snapshot_keys, manifest_key
from chalicelib.config import Settings
from chalicelib.plans import Plan
from tests.conftest import STAGE_ENV
from tests.stored import assert_every_manifest_holds

RESERVE_MS = DEFAULT_RESERVE_MS


class FakeContext:
    """A Lambda context whose clock runs out after `batches` checks: the run stops at the next batch."""

    def __init__(self, batches: int) -> None:
        self.checks = 0
        self.batches = batches

    def get_remaining_time_in_millis(self) -> int:
        self.checks += 1
        return RESERVE_MS + 1 if self.checks <= self.batches else RESERVE_MS - 1


class Invocations:
    """A fake Lambda: continuations are queued, and `drive` runs them one after another."""

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []
        self.count = 0

    def __call__(self, payload: dict[str, Any]) -> None:
        self.queue.append(payload)

    def drive(self, handle: Callable[[dict[str, Any]], Any]) -> int:
        ran = checkpoints.drive(self.queue, handle)
        self.count += ran
        return ran


def content(entries: Iterator[Any]) -> list[tuple[Any, ...]]:
    return [(e.source, e.key, e.size, e.etag, e.identity, e.checksum, e.item_count, e.held) for e in entries]


def snapshot_content(s3: Any, plan: Plan, backup_id: str) -> list[tuple[Any, ...]]:
    with Manifest.download(s3, plan.bucket, manifest_key(plan.name, backup_id)) as manifest:
        return content(manifest.entries(include_held=True))


def make_bucket(s3: Any, name: str) -> None:
    """What the engine needs of a backup bucket: versioning. (Provisioning is tested elsewhere.)"""
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def assert_manifests_describe_stored_data(s3: Any, bucket: str) -> int:
    """Every entry of every manifest in the bucket names a version that exists, by its version id, with its
    size, ETag, checksum (and bytes, where a SHA-256 was recorded)."""
    return assert_every_manifest_holds(s3, bucket)


def copy_counter(s3: Any) -> Counter[str]:
    """Successful copies by destination key, counted at the client."""
    copies: Counter[str] = Counter()
    lock = threading.Lock()

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["copy_key"] = params.get("Key")

    def count(parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        if "CopyObjectResult" in parsed:
            with lock:
                copies[context.get("copy_key", "?")] += 1

    s3.meta.events.register("provide-client-params.s3.CopyObject", remember)
    s3.meta.events.register("after-call.s3.CopyObject", count)
    return copies


# --------------------------------------------------------------------------------------------------------
# Past the 15-minute limit


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The backup ids these tests name (26 and 27 November 2026) stay within MAX_BACKUP_DAYS of the clock."""
    with time_machine.travel(datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def big_source(s3: Any, plans: Any) -> Plan:
    """The documents plan with 90 objects in its source, and a copy of the plan backing up to a second
    bucket, for single-pass reference runs."""
    plan = plans.get("documents")
    bucket = plan.sources[0].bucket
    s3.create_bucket(Bucket=bucket)
    for index in range(90):
        s3.put_object(Bucket=bucket, Key=f"docs/{index:03d}.txt", Body=f"document {index}\n".encode() * (index + 1))
    make_bucket(s3, plan.bucket)
    make_bucket(s3, "reference-backup")
    return plan


def reference(plan: Plan) -> Plan:
    return dataclasses.replace(plan, bucket="reference-backup")


def plan_run(plan: Plan, s3: Any, backup_id: str, budget: Any = None, batch_size: int = 3, dynamodb: Any = None) -> Any:
    factory = lambda source: make_reader(source, s3, dynamodb)  # noqa: E731
    return PlanBackup(plan, s3, backup_id, factory, max_workers=4, batch_size=batch_size, budget=budget).run()


def run_in_invocations(plan: Plan, s3: Any, backup_id: str, batches: int, batch_size: int = 3) -> int:
    """Run a plan the way the worker would with a tiny time budget; returns the number of invocations."""
    invocations = 0
    while True:
        invocations += 1
        assert invocations < 500, "no progress"
        result = plan_run(plan, s3, backup_id, budget=TimeBudget(FakeContext(batches)), batch_size=batch_size)
        if result.status != "RUNNING":
            assert result.status == "SUCCEEDED", result
            return invocations


def test_a_backup_spanning_dozens_of_invocations_equals_a_single_pass(s3: Any, big_source: Plan) -> None:
    copies = copy_counter(s3)
    invocations = run_in_invocations(big_source, s3, "20261126T000000000Z-multi", batches=1, batch_size=1)
    assert invocations >= 24
    single = plan_run(reference(big_source), s3, "20261126T000000000Z-single", batch_size=1000)
    assert single.status == "SUCCEEDED"

    multi = snapshot_content(s3, big_source, "20261126T000000000Z-multi")
    assert multi == snapshot_content(s3, reference(big_source), "20261126T000000000Z-single")
    assert len(multi) == 90
    # Every object copied exactly once, to each bucket.
    assert len(copies) == 90 and set(copies.values()) == {2}
    # The checkpoints are gone once the manifest is written.
    listing = s3.list_objects_v2(Bucket=big_source.bucket, Prefix="meta/")
    assert [item["Key"] for item in listing.get("Contents", [])] == [
        manifest_key(big_source.name, "20261126T000000000Z-multi")
    ]


def test_an_incremental_backup_across_invocations_equals_a_single_pass(s3: Any, big_source: Plan) -> None:
    source = big_source.sources[0].bucket
    for plan in (big_source, reference(big_source)):
        assert plan_run(plan, s3, "20261126T000000000Z-first", batch_size=1000).status == "SUCCEEDED"
    # 9 changed, 5 new and 8 deleted objects (one changed, then deleted): under the mass-deletion limit.
    for index in range(0, 90, 9):
        s3.put_object(Bucket=source, Key=f"docs/{index:03d}.txt", Body=b"changed")
    for index in range(5):
        s3.put_object(Bucket=source, Key=f"docs/{index:03d}-new.txt", Body=b"new")
    for index in range(3, 90, 11):
        s3.delete_object(Bucket=source, Key=f"docs/{index:03d}.txt")

    copies = copy_counter(s3)
    invocations = run_in_invocations(big_source, s3, "20261127T000000000Z-second", batches=1, batch_size=2)
    assert invocations >= 10
    single = plan_run(reference(big_source), s3, "20261127T000000000Z-second", batch_size=1000)
    assert single.status == "SUCCEEDED" and single.copied == 14 and single.deleted == 8

    multi = snapshot_content(s3, big_source, "20261127T000000000Z-second")
    assert multi == snapshot_content(s3, reference(big_source), "20261127T000000000Z-second")
    assert set(copies.values()) == {2} and len(copies) == 14
    assert assert_manifests_describe_stored_data(s3, big_source.bucket) == 90 + 87


def test_the_service_continues_in_new_invocations_until_done(
    clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through BackupService: each invocation stops at its checkpoint and queues {"backup_id": ...}."""

    invoker = Invocations()
    # One object per batch: every look at the clock may stop the run.
    service = BackupService(Settings.from_environ(stage_env), clients, invoker=invoker, batch_size=1)
    record = service.start(None, trigger="api")
    first = service.run(record.backup_id, context=FakeContext(0))
    assert first.status == "RUNNING" and invoker.queue == [{"backup_id": record.backup_id}]
    # The record shows progress between invocations.
    assert service.get(record.backup_id).plans["documents"].copied > 0

    invoker.drive(lambda payload: service.run(payload["backup_id"], context=FakeContext(0)))
    assert invoker.count >= 10
    final = service.get(record.backup_id)
    assert final.status == "SUCCEEDED", final.to_dict()
    assert final.plans["documents"].copied == 10 and final.plans["photos"].copied == 10

    # The same data in one pass gives the same snapshots.
    single = BackupService(Settings.from_environ(stage_env), clients).start(None, trigger="api")
    for plan in service.settings.plans.plans:
        make_bucket(clients.s3, f"{plan.bucket}-ref")
        ref = plan_run(dataclasses.replace(plan, bucket=f"{plan.bucket}-ref"), clients.s3, single.backup_id,
                       dynamodb=clients.dynamodb)
        assert ref.status == "SUCCEEDED", ref
    for plan in service.settings.plans.plans:
        if plan.name == "database":
            continue  # a DynamoDB export is compared by identity below (its bytes follow scan order)
        ref = dataclasses.replace(plan, bucket=f"{plan.bucket}-ref")
        assert snapshot_content(clients.s3, plan, record.backup_id) == snapshot_content(clients.s3, ref, single.backup_id)
    database = service.settings.plans.get("database")
    assert [row[4] for row in snapshot_content(clients.s3, database, record.backup_id)] == [
        row[4] for row in snapshot_content(clients.s3, dataclasses.replace(database, bucket=f"{database.bucket}-ref"),
                                           single.backup_id)
    ]


def test_time_budget_comes_from_the_lambda_context() -> None:
    assert budget_for(None) is None
    budget = budget_for(FakeContext(1), reserve_ms=RESERVE_MS)
    assert budget is not None and not budget.running_out() and budget.running_out()
    with pytest.raises(Exception, match="CHECKPOINT_RESERVE_SECONDS"):
        Settings.from_environ({**STAGE_ENV, "CHECKPOINT_RESERVE_SECONDS": "soon"})
    assert Settings.from_environ({**STAGE_ENV, "CHECKPOINT_RESERVE_SECONDS": "90"}).checkpoint_reserve_ms == 90_000


# --------------------------------------------------------------------------------------------------------
# A large plan split into key ranges worked by parallel invocations


def test_a_plan_split_into_ranges_across_many_invocations_equals_a_single_pass(s3: Any, big_source: Plan) -> None:
    from types import SimpleNamespace

    from chalicelib.backup import ranges

    source = big_source.sources[0].bucket
    for plan in (big_source, reference(big_source)):
        assert plan_run(plan, s3, "20261126T000000000Z-first", batch_size=1000).status == "SUCCEEDED"
    for index in range(0, 90, 7):
        s3.put_object(Bucket=source, Key=f"docs/{index:03d}.txt", Body=b"changed")
    for index in range(4):
        s3.put_object(Bucket=source, Key=f"docs/{index:03d}-new.txt", Body=b"new")
    for index in range(5, 90, 17):
        s3.delete_object(Bucket=source, Key=f"docs/{index:03d}.txt")

    clients = SimpleNamespace(s3=s3, dynamodb=None)
    invoker = Invocations()
    policy = ranges.SplitPolicy(split_objects=20, max_parallel=4, invoker=invoker)
    copies = copy_counter(s3)
    results: list[Any] = []
    backup_id = "20261127T000000000Z-split"

    def invocation(payload: dict[str, Any]) -> None:
        """The worker: a range (or the first, deciding invocation) with a budget of two batches."""
        options = PlanOptions(max_workers=4, budget=TimeBudget(FakeContext(1)), batch_size=2)
        outcome = run_plan(big_source, clients, payload["backup_id"], options, payload.get("segment"), policy)
        results.append(outcome.result)
        if outcome.result.status == "RUNNING":
            invoker({"backup_id": payload["backup_id"], "plan": big_source.name, "segment": outcome.segment})

    invocation({"backup_id": backup_id})
    assert [p["segment"] for p in invoker.queue[:3]] == [1, 2, 3]  # the other ranges, invoked at once
    invoker.drive(invocation)
    assert invoker.count >= 12
    finished = [r for r in results if r.status not in ("RUNNING", ranges.WAITING)]
    assert len(finished) == 1 and finished[0].status == "SUCCEEDED", finished
    assert sum(1 for r in results if r.status == ranges.WAITING) == 3

    single = plan_run(reference(big_source), s3, backup_id, batch_size=1000)
    assert single.status == "SUCCEEDED" and single.deleted == 5
    assert snapshot_content(s3, big_source, backup_id) == snapshot_content(s3, reference(big_source), backup_id)
    assert (finished[0].copied, finished[0].unchanged, finished[0].deleted) == (single.copied, single.unchanged, 5)
    # Each changed or new object copied once, into each bucket: no range copied another's keys.
    assert set(copies.values()) == {2} and len(copies) == single.copied
    assert assert_manifests_describe_stored_data(s3, big_source.bucket) == 90 + single.objects
    leftovers = [item["Key"] for item in s3.list_objects_v2(Bucket=big_source.bucket, Prefix="meta/").get("Contents", [])]
    assert all(key.endswith(".jsonl.gz") and "/snapshots/" in key for key in leftovers), leftovers


def test_a_small_plan_is_not_split(s3: Any, big_source: Plan) -> None:
    from types import SimpleNamespace

    from chalicelib.backup import ranges

    assert plan_run(big_source, s3, "20261126T000000000Z-first", batch_size=1000).status == "SUCCEEDED"
    invoker = Invocations()
    policy = ranges.SplitPolicy(split_objects=1000, max_parallel=4, invoker=invoker)
    result = run_plan(
        big_source, SimpleNamespace(s3=s3, dynamodb=None), "20261127T000000000Z-x", PlanOptions(), policy=policy
    ).result
    assert result.status == "SUCCEEDED" and result.unchanged == 90 and invoker.queue == []


def test_the_service_splits_large_plans_and_finishes_the_backup(
    clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str]
) -> None:
    """Worker payloads {"backup_id", "plan", "segment"} go through BackupService.run, as backup_worker does."""
    settings = Settings.from_environ({**stage_env, "SPLIT_OBJECTS": "3", "MAX_PARALLEL_RANGES": "3"})
    assert settings.split_objects == 3 and settings.max_parallel_ranges == 3
    invoker = Invocations()
    service = BackupService(settings, clients, invoker=invoker)
    first = service.start(None, trigger="api")
    assert service.run(first.backup_id).status == "SUCCEEDED"  # nothing to split by yet: no previous snapshot
    assert invoker.queue == []
    clients.s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key="reports/report-3.txt", Body=b"new text")
    clients.s3.put_object(Bucket=stage_env["PHOTOS_SOURCE_BUCKET"], Key="2026/img-99.png", Body=b"new photo")

    second = service.start(None, trigger="api")
    service.run(second.backup_id, context=FakeContext(0))
    assert {p.get("segment") for p in invoker.queue} >= {1, 2}
    invoker.drive(lambda p: service.run(p["backup_id"], context=FakeContext(0), plan_name=p.get("plan"),
                                        segment=p.get("segment")))
    final = service.get(second.backup_id)
    assert final.status == "SUCCEEDED", final.to_dict()
    assert final.plans["documents"].copied == 1 and final.plans["documents"].unchanged == 9
    assert final.plans["photos"].copied == 1 and final.plans["photos"].objects == 11
    for plan in settings.plans.plans:
        assert len(list_snapshot_keys(clients.s3, plan.bucket, plan.name)) == 2

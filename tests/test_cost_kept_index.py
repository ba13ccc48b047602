"""The cost report with S3 Inventory takes which versions the kept snapshots name from the prune's own kept
index (meta/prune-index/<plan>/) and the manifests it does not cover, instead of every kept manifest: the
figures are the same as from the manifests alone, for two plans in one bucket, with a snapshot pruned, a held
entry, and a snapshot taken after the prune wrote its index; an index changed after it was written is not
used; the cost report never writes one."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.kept_index import PRUNE_INDEX, index_keys
from chalicelib.catalog.records import new_backup_id
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
from chalicelib.deploy.provision import provision
from chalicelib.inventory import configuration as conf
from chalicelib.layout import PRUNE_INDEX_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import InventoryPlan, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prices import load_prices
from chalicelib.prune.job import PruneJob
from chalicelib.retention import RetentionPolicy
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver
from tests.stored import entries_of

BUCKET = "cost-index-backup"
REPORTS = "cost-index-reports"
SOURCES = {"docs": "cost-index-docs", "more": "cost-index-more"}
DAY0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
GRACE = timedelta(hours=1)
# Where the figures came from and what computing them read: not the figures.
NOT_FIGURES = ("figures", "work")


def _settings() -> Settings:
    plans = tuple(
        Plan(
            name=name,
            bucket=BUCKET,
            sources=(S3Source(name=f"{name}-src", bucket=source),),
            lifecycle=Lifecycle(transitions=()),
            retention=RetentionPolicy(keep_last=2),
        )
        for name, source in SOURCES.items()
    )
    plan_set = PlanSet(plans=plans, catalog_bucket=BUCKET, inventory=InventoryPlan(bucket=REPORTS, frequency="Daily"))
    return Settings(plans=plan_set, topic_arn=None, worker_mode="inline", worker_function=None, max_workers=4)


def _backup(s3: Any, settings: Settings, allow_deletions: list[str]) -> str:
    service = BackupService(dataclasses.replace(settings, plans=dataclasses.replace(settings.plans, inventory=None)), Clients())
    backup_id = new_backup_id()
    service.start(None, trigger="api", backup_id=backup_id, allow_deletions=allow_deletions)
    record = service.run(backup_id)
    # Two plans in one bucket: each finds the other's lifecycle rule (drift, PARTIAL), and writes its snapshot.
    assert record.status in ("SUCCEEDED", "PARTIAL") and all(result.snapshot for result in record.plans.values()), record
    return backup_id


def _compute(s3: Any, settings: Settings, backup_id: str) -> dict[str, Any]:
    return CostReports(settings.plans, s3, settings.prices or load_prices()).compute(backup_id, fresh=True)


@pytest.fixture
def world(aws: None, s3: Any) -> Any:
    """Two plans in one bucket, four daily backups; the prune (keeping two) ran after the third, so its
    index covers the second and third snapshots of each plan (the first is pruned) and not the fourth; plan
    'more' holds a deletion its guard held back (a held entry) in the third and fourth."""
    settings = _settings()
    with time_machine.travel(DAY0, tick=True) as clock:
        for source in SOURCES.values():
            s3.create_bucket(Bucket=source)
        provision(s3, settings.plans.plans[0])
        s3.create_bucket(Bucket=REPORTS)
        destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id="123456789012", prefix="inventory", encrypted=False)
        s3.put_bucket_inventory_configuration(
            Bucket=BUCKET, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
        )
        for index in range(4):
            s3.put_object(Bucket=SOURCES["more"], Key=f"m{index}.txt", Body=b"more")
        ids = []
        for day in range(4):
            s3.put_object(Bucket=SOURCES["docs"], Key="daily.txt", Body=f"day {day}".encode())
            s3.put_object(Bucket=SOURCES["more"], Key="daily.txt", Body=f"more on day {day}".encode())
            if day == 2:
                # Three of five files gone from the source: past the guard, so the deletions are held.
                for index in range(3):
                    s3.delete_object(Bucket=SOURCES["more"], Key=f"m{index}.txt")
            ids.append(_backup(s3, settings, [] if day == 2 else ["docs"]))
            if day == 2:
                clock.shift(GRACE * 2)
                deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID)
                job = PruneJob(settings.plans, Clients(), grace=GRACE)
                record = job.run(job.start(list(SOURCES), "api", allow_large=list(SOURCES), grace=GRACE).prune_id)
                assert record.status == "SUCCEEDED", {name: plan.errors for name, plan in record.plans.items()}
                assert all(plan.removing == [ids[0]] for plan in record.plans.values())
            clock.shift(timedelta(days=1))
        deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID)
        yield {"s3": s3, "settings": settings, "ids": ids}


def _without_figures(plan: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in plan.items() if name not in NOT_FIGURES}


def test_the_figures_from_the_prunes_index_are_those_from_every_kept_manifest_and_a_changed_one_is_not_used(world: Any) -> None:
    s3, settings, ids = world["s3"], world["settings"], world["ids"]
    indexes = {name: index_keys(s3, BUCKET, name, PRUNE_INDEX) for name in SOURCES}
    assert all(len(keys) == 1 for keys in indexes.values()), indexes
    since = CallsSince()
    by_index = _compute(s3, settings, ids[-1])
    calls = since.calls()
    # Nothing written under the prune's prefix; of the manifests, only the fourth snapshot's of each plan read.
    assert not [c for c in calls if c.operation == "PutObject" and c.params["Key"].startswith(PRUNE_INDEX_PREFIX)]
    read = sorted(c.params["Key"] for c in calls if c.operation == "GetObject" and c.params["Key"].startswith(SNAPSHOTS_PREFIX))
    assert read == sorted(f"{SNAPSHOTS_PREFIX}{name}/{ids[-1]}.jsonl.gz" for name in SOURCES)
    for name in SOURCES:
        named_from = by_index["plans"][name]["figures"]["named_from"]
        assert named_from["kept_index"] == indexes[name][0]
        assert named_from["snapshots_from_index"] == 2 and named_from["manifests_read"] == [ids[-1]]
        assert "merged in" in named_from["note"]

    # Counted from the manifests here: the versions the three kept snapshots name, held entries included.
    for name in SOURCES:
        kept_entries = [entry for backup_id in ids[1:] for entry in entries_of(s3, BUCKET, name, backup_id)]
        named = by_index["plans"][name]["versions"] - by_index["plans"][name]["named_by_no_snapshot"]["versions"]
        assert named == len({(entry.data_key, entry.version_id) for entry in kept_entries})
        assert by_index["plans"][name]["work"]["manifest_entries"] == len(kept_entries)
    assert any(entry.held for entry in entries_of(s3, BUCKET, "more", ids[2]))

    # The same bucket, every kept manifest read: the prune's indexes put aside for the while.
    kept = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for keys in indexes.values() for key in keys}
    for key in kept:
        s3.delete_object(Bucket=BUCKET, Key=key)
    try:
        by_manifests = _compute(s3, settings, ids[-1])
    finally:
        for key, body in kept.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    for name in SOURCES:
        assert by_manifests["plans"][name]["figures"]["named_from"]["kept_index"] is None
        assert _without_figures(by_index["plans"][name]) == _without_figures(by_manifests["plans"][name])
        # The same entries counted (three kept snapshots), so the upkeep figured from them is the same too.
        assert by_index["plans"][name]["work"]["manifest_entries"] == by_manifests["plans"][name]["work"]["manifest_entries"] > 0
    assert by_index["warnings"] == by_manifests["warnings"]

    # An index changed after the prune wrote it is not used: every kept manifest is read, the same figures.
    key = indexes["docs"][0]
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    # A newer version of the same key, its body another (an index of the first snapshot alone would do worse).
    s3.put_object(Bucket=BUCKET, Key=key, Body=original[:-8] + bytes(8))
    try:
        forged = _compute(s3, settings, ids[-1])
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)
    named_from = forged["plans"]["docs"]["figures"]["named_from"]
    assert named_from["kept_index"] is None and len(named_from["manifests_read"]) == 3
    assert _without_figures(forged["plans"]["docs"]) == _without_figures(by_index["plans"]["docs"])

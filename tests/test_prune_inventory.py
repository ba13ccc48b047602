"""The prune with the plans' S3 Inventory: candidates come from the removed snapshots' manifests and the newest
report (delivered by tests/s3_inventory.py), never from a listing of data/; DynamoDB's export files go once
past the grace period; a report that is older than a version, or missing, stale or unreadable, never makes a
version a candidate, and the prune says which report it used or why it used none."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import new_backup_id
from chalicelib.config import Settings
from chalicelib.deploy.provision import provision
from chalicelib.inventory import configuration as conf
from chalicelib.plans import InventoryPlan
from chalicelib.prune.job import PruneJob
from chalicelib.prune.report_sweep import key_order
from chalicelib.retention import RetentionPolicy
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver, rewrite_manifest
from tests.stored import entries_of
from tests.test_prune import BUCKET, SOURCE, make_settings

REPORTS = "prune-inventory-reports"
ACCOUNT = "123456789012"
DAY0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
EXPORT = "data/~exports/rows/20260302T020000000Z-1a2b3c4d/AWSDynamoDB/01234-abcd/data/part-0.json.gz"


def inventoried(retention: RetentionPolicy) -> Settings:
    config = make_settings(retention)
    return dataclasses.replace(config, plans=dataclasses.replace(config.plans, inventory=InventoryPlan(bucket=REPORTS)))


class World:
    """One plan with an inventory configuration; backups and prunes on a simulated clock."""

    def __init__(self, s3: Any, clock: Any) -> None:
        self.s3 = s3
        self.clock = clock
        self.clients = Clients()
        self.config = inventoried(RetentionPolicy(keep_last=1))
        s3.create_bucket(Bucket=SOURCE)
        provision(s3, self.config.plans.plans[0])
        # The reports' bucket without the policy that lets only S3 write (the double writes the reports), and
        # the backups run with plans that do not check its settings.
        s3.create_bucket(Bucket=REPORTS)
        destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id=ACCOUNT, prefix="inventory", encrypted=False)
        s3.put_bucket_inventory_configuration(
            Bucket=BUCKET, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
        )

    def backup(self, body: bytes) -> str:
        self.s3.put_object(Bucket=SOURCE, Key="daily.txt", Body=body)
        service = BackupService(dataclasses.replace(self.config, plans=dataclasses.replace(self.config.plans, inventory=None)), self.clients)
        backup_id = new_backup_id()
        service.start(None, trigger="api", backup_id=backup_id, allow_deletions=["docs"])
        assert service.run(backup_id).status == "SUCCEEDED"
        return backup_id

    def deliver(self) -> str:
        return deliver(self.s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID, files=2, shuffle=3)

    def prune(self, config: Settings | None = None, grace: timedelta = timedelta(hours=48)) -> Any:
        job = PruneJob((config or self.config).plans, self.clients, grace=grace)
        record = job.start(["docs"], "api", allow_large=["docs"], grace=grace)
        return job.run(record.prune_id)

    def days(self, count: float) -> None:
        self.clock.shift(timedelta(days=count))

    def versions(self, prefix: str = "data/") -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
            found |= {(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])}
        return found


def named(s3: Any, backup_id: str) -> set[tuple[str, str]]:
    return {(e.data_key, e.version_id) for e in entries_of(s3, BUCKET, "docs", backup_id)}


@pytest.fixture
def world(aws: None, s3: Any) -> Any:
    with time_machine.travel(DAY0, tick=True) as clock:
        yield World(s3, clock)


def test_the_sweep_order_is_the_listing_sweeps_then_the_rest_of_data() -> None:
    keys = ["data/a-b/x", "data/a/y", "data/a/y/z", "data/~long/a/ff", "data/~exports/t/1", "data/odd"]
    assert sorted(keys, key=key_order) == [
        "data/a/y", "data/a/y/z", "data/a-b/x", "data/~long/a/ff", "data/odd", "data/~exports/t/1",
    ]


def test_a_prune_with_inventory_lists_nothing_under_data_and_deletes_what_the_manifests_and_report_say(
    world: Any, recorded_calls: CallsSince
) -> None:
    s3 = world.s3
    first = world.backup(b"day 0")
    orphan = s3.put_object(Bucket=BUCKET, Key="data/src/orphan.txt", Body=b"an interrupted run's copy")["VersionId"]
    world.days(1)
    second = world.backup(b"day 1")
    world.days(3)
    gone, kept = named(s3, first), named(s3, second)
    assert gone - kept and orphan
    world.deliver()
    since = CallsSince()

    record = world.prune()

    work = record.plans["docs"]
    assert record.status == "SUCCEEDED" and work.removing == [first], work.errors
    after = world.versions()
    assert not (gone - kept) & after and ("data/src/orphan.txt", orphan) not in after
    assert kept <= after
    assert work.deleted["versions"] == len(gone - kept) + 1 and work.inventory["problem"] is None
    assert work.inventory["bucket"] == BUCKET and work.inventory["report"].endswith("manifest.json")
    listings = [c for c in since.calls() if c.operation == "ListObjectVersions"]
    assert listings and all(c.params.get("Prefix", "").startswith("meta/") for c in listings), listings
    assert [c.params["Bucket"] for c in since.calls() if c.operation == "DeleteObjects"] == [BUCKET] * 2


def test_export_files_no_snapshot_names_go_after_the_grace_period_and_not_before(world: Any) -> None:
    s3 = world.s3
    world.backup(b"day 0")
    # What a table's export leaves once joined: its files, each under a delete marker (table_export.py).
    written = s3.put_object(Bucket=BUCKET, Key=EXPORT, Body=b"{}")["VersionId"]
    marker = s3.delete_object(Bucket=BUCKET, Key=EXPORT)["VersionId"]
    world.days(1)
    world.deliver()

    young = world.prune()

    assert young.status == "SUCCEEDED" and world.versions("data/~exports/") == {(EXPORT, written), (EXPORT, marker)}
    assert young.plans["docs"].kept_young == 1
    world.days(2)
    world.deliver()

    old = world.prune()

    assert old.status == "SUCCEEDED" and world.versions("data/~exports/") == set()
    assert old.plans["docs"].deleted["versions"] == 1 and old.plans["docs"].markers_deleted == 1


def _deleted_at_the_source(world: Any) -> None:
    """gone.txt backed up on day 0, deleted at the source, and the day-1 backup puts a delete marker on
    data/src/gone.txt over the version the day-0 snapshot names (data/ mirrors the source)."""
    world.s3.put_object(Bucket=SOURCE, Key="gone.txt", Body=b"deleted at the source later")
    world.backup(b"day 0")
    world.s3.delete_object(Bucket=SOURCE, Key="gone.txt")
    world.days(1)
    world.backup(b"day 1")


def test_a_delete_marker_stays_while_a_version_under_it_stays_and_goes_with_the_last(world: Any) -> None:
    _deleted_at_the_source(world)
    both = world.versions("data/src/gone.txt")
    assert len(both) == 2
    world.config = inventoried(RetentionPolicy(keep_last=2))
    world.days(3)
    world.deliver()

    kept = world.prune()

    assert kept.status == "SUCCEEDED" and kept.plans["docs"].markers_deleted == 0
    assert world.versions("data/src/gone.txt") == both
    world.config = inventoried(RetentionPolicy(keep_last=1))
    # A day later, a new report: the last one's rows no manifest names were looked at by the prune above.
    world.days(1)
    world.deliver()

    removed = world.prune()

    assert removed.status == "SUCCEEDED" and removed.plans["docs"].markers_deleted == 1
    assert world.versions("data/src/gone.txt") == set()


def test_a_report_older_than_a_version_does_not_make_it_a_candidate(world: Any) -> None:
    s3 = world.s3
    world.backup(b"day 0")
    world.deliver()  # before the next backup and the orphan
    world.days(1)
    world.backup(b"day 1")
    orphan = ("data/src/late.txt", s3.put_object(Bucket=BUCKET, Key="data/src/late.txt", Body=b"x")["VersionId"])
    world.days(1.5)
    # The report is 2.5 days old: a weekly one may be, and is used.
    fresh = world.config.plans.inventory
    assert fresh is not None
    weekly = dataclasses.replace(
        world.config, plans=dataclasses.replace(world.config.plans, inventory=dataclasses.replace(fresh, frequency="Weekly"))
    )

    record = world.prune(weekly, grace=timedelta(hours=24))

    assert record.status == "SUCCEEDED" and record.plans["docs"].inventory["problem"] is None
    assert orphan in world.versions()  # past the grace period, but written after the report's scan
    world.deliver()

    assert world.prune(weekly, grace=timedelta(hours=24)).status == "SUCCEEDED"
    assert orphan not in world.versions()


@pytest.mark.parametrize("fault", ["missing", "stale", "unreadable"])
def test_without_a_usable_report_only_the_unnamed_versions_wait_and_the_record_says_why(world: Any, fault: str) -> None:
    s3 = world.s3
    first = world.backup(b"day 0")
    orphan = ("data/src/orphan.txt", s3.put_object(Bucket=BUCKET, Key="data/src/orphan.txt", Body=b"x")["VersionId"])
    world.days(1)
    second = world.backup(b"day 1")
    gone = named(s3, first) - named(s3, second)
    if fault == "stale":
        world.deliver()
    world.days(3)
    if fault == "unreadable":
        # A data file that differs from the MD5 its manifest gives: found before anything is judged.
        rewrite_manifest(s3, REPORTS, world.deliver(), lambda m: m["files"][0].update(MD5checksum="0" * 32))

    record = world.prune()

    work = record.plans["docs"]
    assert record.status == "SUCCEEDED" and work.removing == [first] and not work.errors
    assert gone and work.deleted["versions"] == len(gone) and not gone & world.versions()
    assert orphan in world.versions()
    problem = work.inventory["problem"]
    assert f"s3://{BUCKET}" in problem and "wait for a usable report" in problem
    assert {"missing": "has been delivered", "stale": "days old", "unreadable": "cannot be used"}[fault] in problem
    assert problem in work.warnings


def test_a_prune_with_inventory_carried_over_many_invocations_ends_as_an_uninterrupted_one(world: Any) -> None:
    from chalicelib.jobs.budget import TimeBudget
    from tests.test_scale import FakeContext, Invocations

    s3 = world.s3
    for day in range(5):
        for name in ("a.txt", "b/c.txt", "b-c.txt"):
            s3.put_object(Bucket=SOURCE, Key=name, Body=f"{name} {day}".encode())
        world.backup(f"day {day}".encode())
        s3.put_object(Bucket=BUCKET, Key=f"data/src/orphan-{day}.txt", Body=b"x")
        world.days(1)
    world.days(2)
    world.deliver()
    before = world.versions()
    dry = PruneJob(world.config.plans, world.clients)
    would = dry.run(dry.start(["docs"], "api", dry_run=True, allow_large=["docs"]).prune_id).plans["docs"].would_delete
    invoker = Invocations()

    def invocation(prune_id: str) -> Any:
        budget = TimeBudget(FakeContext(1))
        return PruneJob(world.config.plans, world.clients, budget=budget, invoker=invoker, batch_size=2).run(prune_id)

    record = PruneJob(world.config.plans, world.clients).start(["docs"], "api", allow_large=["docs"])
    assert invocation(record.prune_id).status == "RUNNING" and invoker.queue
    invoker.drive(lambda payload: invocation(payload["prune_id"]))

    final = dry.store.get(record.prune_id)
    work = final.plans["docs"]
    assert final.status == "SUCCEEDED" and final.invocations >= 4, final.invocations
    assert work.deleted == would and would["versions"] == len(before - world.versions()) > 5


def test_no_report_before_the_first_is_due_is_no_warning(world: Any) -> None:
    world.backup(b"day 0")
    world.days(1)

    work = world.prune().plans["docs"]

    assert work.status == "SUCCEEDED" and work.inventory["problem"] is None and not work.warnings
    assert "is not due before 2026-03-05T02:00" in work.inventory["pending"]


def test_a_second_prune_reading_the_same_report_neither_resends_nor_counts_what_the_first_deleted(world: Any) -> None:
    s3 = world.s3
    world.backup(b"day 0")
    # Leftovers of interrupted runs: no manifest names them, and they outweigh what the backups keep.
    orphans = {(f"data/src/left-{n}.txt", s3.put_object(Bucket=BUCKET, Key=f"data/src/left-{n}.txt", Body=b"x" * 1000)["VersionId"]) for n in range(3)}
    world.days(3)
    world.deliver()
    first = world.prune()
    assert first.status == "SUCCEEDED" and not orphans & world.versions()
    world.days(1)
    before = named(s3, world.backup(b"day 4"))  # the day-0 snapshot goes (keep_last 1); the report stays the same
    since = CallsSince()

    job = PruneJob(world.config.plans, world.clients)
    second = job.run(job.start(["docs"], "schedule").prune_id)

    work = second.plans["docs"]
    # The guard sees only the day-0 version the removed snapshot names, not the orphans' stale rows again.
    assert second.status == "SUCCEEDED" and work.status == "SUCCEEDED", work.warnings
    assert work.swept_report == first.plans["docs"].inventory["report"] == work.inventory["report"]
    assert "earlier prune" in work.inventory["unnamed"] and work.deleted["versions"] == 1
    sent = {(o["Key"], o["VersionId"]) for c in since.calls() if c.operation == "DeleteObjects" for o in c.params["Delete"]["Objects"]}
    assert not sent & orphans and before <= world.versions()


def test_a_delete_marker_under_an_orphan_version_deleted_in_the_same_pass_stays(world: Any) -> None:
    s3 = world.s3
    _deleted_at_the_source(world)
    kept = world.versions("data/src/gone.txt")
    # An interrupted run's copy on top: the newest version of the key, named by no manifest.
    orphan = s3.put_object(Bucket=BUCKET, Key="data/src/gone.txt", Body=b"left over")["VersionId"]
    world.config = inventoried(RetentionPolicy(keep_last=2))
    world.days(3)
    world.deliver()

    record = world.prune()

    assert record.status == "SUCCEEDED" and record.plans["docs"].deleted["versions"] == 1
    assert world.versions("data/src/gone.txt") == kept and ("data/src/gone.txt", orphan) not in kept
    # The key still shows the source's deletion: its newest item is the delete marker.
    with pytest.raises(s3.exceptions.ClientError) as gone:
        s3.head_object(Bucket=BUCKET, Key="data/src/gone.txt")
    assert gone.value.response["Error"]["Code"] in ("404", "NoSuchKey")

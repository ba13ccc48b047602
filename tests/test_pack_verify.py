"""Verification of packed plans: each pack is looked at once per verification, from its inventory report row
or by one HEAD, and every object it holds takes its verdict, by name; a sampled object is re-hashed by range."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import Entry, manifest_key
from chalicelib.config import Settings
from chalicelib.inventory import configuration as conf
from chalicelib.layout import PACKS_PREFIX
from chalicelib.plans import InventoryPlan, PlanSet
from chalicelib.cost.upkeep_model import BucketDay, UpkeepSettings
from chalicelib.cost.verify_upkeep import verification_by_head, verification_when_due
from chalicelib.verify.checks import check_version, verify_entries, weekly_slice
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.pack_check import PackFacts, pack_problem
from chalicelib.verify.record import VerificationRecord
from tests.conftest import ACCOUNT
from tests.faults import damage_reads
from tests.provisioned import provision_buckets
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver
from tests.test_cost_upkeep_recorded import KINDS
from tests.test_verify import read_manifest, rewrite_manifest
from tests.test_verify_inventory import heads
from tests.test_verify_job import TOPIC, later_id

REPORTS = "test-pack-inventory-reports"
TARGET = 128 * 1024
START = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
# Small documents of about 9 KB (in 3 packs of 128 KiB), and with the one large object, every object.
SMALL = 30
ALL = SMALL + 1


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(START, tick=True):
        yield


class Packed:
    """The stage's documents plan packing its small objects (packs of 128 KiB), backed up once: SMALL small
    documents in a few packs and one large object stored on its own; `with_report` sets the plans'
    inventory, configures it on the bucket and delivers a report of it."""

    def __init__(self, s3: Any, clients: Any, stage_env: dict[str, str]) -> None:
        self.s3, self.clients = s3, clients
        settings = Settings.from_environ({**stage_env, "MAX_WORKERS": "4"})
        documents = settings.plans.get("documents")
        self.plan = dataclasses.replace(
            documents, lifecycle=dataclasses.replace(documents.lifecycle, small_objects="pack", pack_target_bytes=TARGET)
        )
        self.plans = dataclasses.replace(settings.plans, plans=(self.plan,), inventory=None)
        provision_buckets(s3, self.plans, ACCOUNT)
        source = stage_env["DOCUMENTS_SOURCE_BUCKET"]
        s3.create_bucket(Bucket=source)
        for index in range(SMALL):
            s3.put_object(Bucket=source, Key=f"docs/{index:03d}.txt", Body=(f"document {index} " * 900).encode()[: 9000 + index])
        s3.put_object(Bucket=source, Key="large/scan.pdf", Body=b"L" * 200_000)
        self.source = source
        self.backups = BackupService(dataclasses.replace(settings, plans=self.plans), clients)
        self.backup()

    def backup(self) -> None:
        record = self.backups.start(None, trigger="api")
        self.backup_id = self.backups.run(record.backup_id).backup_id
        self.manifest = manifest_key(self.plan.name, self.backup_id)
        self.entries = read_manifest(self.s3, self.plan.bucket, self.manifest)[1]

    @property
    def packs(self) -> dict[tuple[str, str], list[Entry]]:
        """The objects of each pack version, by (pack key, version id)."""
        held: dict[tuple[str, str], list[Entry]] = {}
        for entry in self.entries:
            if entry.packed:
                held.setdefault((str(entry.pack_key), entry.version_id), []).append(entry)
        return held

    def with_report(self) -> PlanSet:
        self.s3.create_bucket(Bucket=REPORTS)
        destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id=ACCOUNT, prefix="inventory", encrypted=False)
        self.s3.put_bucket_inventory_configuration(
            Bucket=self.plan.bucket, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
        )
        # One file, as S3 writes a report this small (the upkeep model counts files by rows).
        deliver(self.s3, self.plan.bucket, conf.DEFAULT_CONFIGURATION_ID, shuffle=3)
        return dataclasses.replace(self.plans, inventory=InventoryPlan(bucket=REPORTS))

    def week(self, plans: PlanSet, tag: str) -> list[VerificationRecord]:
        """A job for each of the seven slices: together they check every stored version once."""
        job = VerificationJob(plans, self.clients, TOPIC, max_workers=4, sample_percent=0)
        return [job.run(job.start(later_id(f"{tag}{day}"), weekday=day).job_id) for day in range(7)]


@pytest.fixture
def packed(s3: Any, clients: Any, stage_env: dict[str, str]) -> Packed:
    world = Packed(s3, clients, stage_env)
    assert len(world.packs) >= 2 and sum(e.packed for e in world.entries) == SMALL and len(world.entries) == ALL
    return world


def named(records: list[VerificationRecord]) -> dict[str, list[tuple[str, str]]]:
    """The objects found missing and damaged, and each finding's detail."""
    return {
        problem: sorted((f["key"], f["detail"]) for record in records for f in getattr(record, problem))
        for problem in ("missing", "damaged")
    }


def test_a_clean_packed_plan_is_checked_against_the_report_with_no_head_at_all(packed: Packed) -> None:
    plans = packed.with_report()
    since = CallsSince()
    records = packed.week(plans, "clean")
    assert all(r.status == "SUCCEEDED" and r.ok for r in records), [r.to_dict() for r in records]
    assert sum(r.checked for r in records) == ALL
    assert heads(since) == [] and sum(r.headed for r in records) == 0


def test_without_a_report_each_pack_is_headed_once_for_all_its_objects(packed: Packed) -> None:
    since = CallsSince()
    records = packed.week(packed.plans, "heads")
    assert all(r.status == "SUCCEEDED" and r.ok for r in records)
    assert sum(r.checked for r in records) == ALL
    sent = Counter(heads(since))
    large = next(e for e in packed.entries if not e.packed)
    assert sent == Counter({**{version: 1 for version in packed.packs}, (large.data_key, large.version_id): 1})
    assert sum(r.headed for r in records) == len(packed.packs) + 1
    # An on-demand check of every entry, too: one HEAD per pack version, not per object.
    since = CallsSince()
    report = verify_entries(packed.clients.s3, packed.plan, packed.entries, max_workers=4)
    assert report.ok and report.checked == ALL and report.headed == len(packed.packs) + 1
    assert Counter(heads(since)) == sent


def test_a_missing_pack_is_reported_for_every_object_in_it_by_name(packed: Packed) -> None:
    (key, version), lost = next(iter(packed.packs.items()))
    packed.s3.delete_object(Bucket=packed.plan.bucket, Key=key, VersionId=version)
    expected = sorted(entry.key for entry in lost)
    # By HEAD: one HEAD of the pack, its every object missing, named with the pack and its version.
    since = CallsSince()
    report = verify_entries(packed.clients.s3, packed.plan, packed.entries, max_workers=4)
    assert sorted(f.key for f in report.missing) == expected and not report.damaged and not report.errors
    assert all(f.source == "documents" and f.version_id == version and key in f.detail and version in f.detail for f in report.missing)
    assert all("does not exist" in f.detail for f in report.missing)
    assert Counter(heads(since))[(key, version)] == 1
    # Against a report delivered after the loss: the pack's row is absent, one HEAD confirms, every object named.
    plans = packed.with_report()
    since = CallsSince()
    found = named(packed.week(plans, "lost"))
    assert [k for k, _ in found["missing"]] == expected and found["damaged"] == []
    assert all(key in detail and version in detail for _, detail in found["missing"])
    assert heads(since) == [(key, version)]


def test_a_damaged_pack_is_reported_for_every_object_in_it_by_name(packed: Packed) -> None:
    """The snapshot names a version of the pack's key that is not the pack the backup stored (shorter: its
    first 100 KiB): its size is not the recorded one, and each of its objects is damaged, by HEAD and by row."""
    (key, version), objects = next(iter(packed.packs.items()))
    whole = packed.s3.get_object(Bucket=packed.plan.bucket, Key=key, VersionId=version)["Body"].read()
    other = packed.s3.put_object(Bucket=packed.plan.bucket, Key=key, Body=whole[: 100 * 1024])["VersionId"]
    rewrite_manifest(packed.s3, packed.plan.bucket, packed.manifest, {e.key: {"version_id": other} for e in objects})
    packed.entries = read_manifest(packed.s3, packed.plan.bucket, packed.manifest)[1]
    expected = sorted(e.key for e in objects)
    report = verify_entries(packed.clients.s3, packed.plan, packed.entries, max_workers=4)
    assert sorted(f.key for f in report.damaged) == expected and not report.missing
    assert all(f"{key} version {other} has {100 * 1024} bytes instead of the recorded {len(whole)}" in f.detail for f in report.damaged)
    assert report.headed == len(packed.packs) + 1
    plans = packed.with_report()
    since = CallsSince()
    found = named(packed.week(plans, "damaged"))
    assert [k for k, _ in found["damaged"]] == expected and found["missing"] == []
    assert all(f"{key} version {other}" in detail for _, detail in found["damaged"])
    assert heads(since) == []


def test_an_object_whose_range_falls_outside_its_pack_is_damaged() -> None:
    """Without a recorded pack size (an entry written before packs recorded theirs), the pack's own size still
    bounds each object: one whose bytes would reach into the footer or past the end is damaged; the others not."""
    entry = Entry("documents", "a.txt", "v1", 1000, "e", "etag:e:1000", pack_key=f"{PACKS_PREFIX}b/t-000001.pack", pack_offset=0)
    size = 5000 + 48
    inside = [dataclasses.replace(entry, pack_offset=offset) for offset in (0, 4000)]
    outside = [dataclasses.replace(entry, pack_offset=offset) for offset in (4001, 5000, 9000)]
    facts = PackFacts(True, size=size, etag="x")
    assert [pack_problem("bucket", e, facts) for e in inside] == [None, None]
    for e in outside:
        problem = pack_problem("bucket", e, facts)
        assert problem is not None and problem[0] == "damaged" and "fall outside" in problem[1] and str(entry.pack_key) in problem[1]
    # Recorded values the pack disagrees with: each named.
    recorded = dataclasses.replace(entry, pack_size=size, pack_etag="x")
    assert pack_problem("bucket", recorded, facts) is None
    assert pack_problem("bucket", recorded, dataclasses.replace(facts, etag="y")) == (
        "damaged", f"its pack s3://bucket/{entry.pack_key} version v1 has ETag y instead of the recorded x"
    )
    assert pack_problem("bucket", recorded, dataclasses.replace(facts, etag=None)) is None  # a report without ETags
    assert pack_problem("bucket", recorded, PackFacts(True, delete_marker=True))[0] == "missing"  # type: ignore[index]


def test_a_sampled_object_whose_range_does_not_hash_is_damaged(packed: Packed) -> None:
    """The pack's metadata is sound; the bytes read back are not: the sample's ranged GET finds each object."""
    report = verify_entries(packed.clients.s3, packed.plan, packed.entries, sample_percent=100, max_workers=4)
    assert report.ok and report.sampled == ALL
    damage_reads(packed.clients.s3, PACKS_PREFIX)
    since = CallsSince()
    report = verify_entries(packed.clients.s3, packed.plan, packed.entries, sample_percent=100, max_workers=4)
    assert sorted(f.key for f in report.damaged) == sorted(e.key for e in packed.entries if e.packed and e.size)
    assert not report.missing and report.headed == len(packed.packs) + 1
    ranged = [c.params.get("Range") for c in since.calls() if c.operation == "GetObject" and c.params.get("Key", "").startswith(PACKS_PREFIX)]
    assert len(ranged) == SMALL and all(r and r.startswith("bytes=") for r in ranged)
    # One object alone, by its pack's facts from a HEAD: damaged too.
    one = next(e for e in packed.entries if e.packed)
    part = check_version(packed.clients.s3, packed.plan, one, None, 100)
    assert [f.key for f in part.damaged] == [one.key] and part.headed == 1


def _stored_versions(s3: Any, bucket: str) -> int:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="data/")
    return sum(len(page.get("Versions", [])) for page in pages)


def test_the_models_verification_requests_for_a_packed_plan_are_what_the_code_sends(packed: Packed) -> None:
    """By HEAD, a slice sends one HEAD per pack of the slice and one per version of its own, as the upkeep model
    counts (`by_head`); against a report, none, as the model counts now that a pack's row answers for its
    objects. Every other request of the job is compared too."""
    model = UpkeepSettings.of_plans(packed.plans)
    day = Counter(weekly_slice(e) for e in packed.entries if e.packed).most_common(1)[0][0]
    sliced = [e for e in packed.entries if weekly_slice(e) == day]
    state = BucketDay(
        versions=_stored_versions(packed.s3, packed.plan.bucket), named_versions=ALL, snapshots=1, manifest_entries=ALL,
        checked=len(sliced), heads=len({(e.stored_key, e.version_id) for e in sliced}), sampled=0, indexed=False,
        packed=SMALL, packs=len(packed.packs),
    )
    assert state.heads is not None and 0 < state.heads < len(sliced)
    job = VerificationJob(packed.plans, packed.clients, sample_percent=0)
    since = CallsSince()
    job.run(job.start(later_id("model"), weekday=day).job_id)
    expected = {kind: round(count, 6) for kind, count in verification_by_head(state, model).requests.items()}
    assert Counter(KINDS.get(c.operation, c.operation) for c in since.calls()) == Counter(expected)
    # Without `heads`, the model's average per slice: a seventh of the packs and of the versions of their own.
    average = dataclasses.replace(state, checked=None, heads=None)
    assert verification_by_head(average, model).requests["head"] == pytest.approx((1 + len(packed.packs)) / 7)
    # A day later, one document changed (packed anew: a pack more), then a report: the due job checks every
    # version against it and sends no HEAD, and the model counts none.
    packed.s3.put_object(Bucket=packed.source, Key="docs/007.txt", Body=b"changed " * 700)
    packed.backup()
    plans = packed.with_report()
    job = VerificationJob(plans, packed.clients, sample_percent=0)
    since = CallsSince()
    record = job.run(job.start(later_id("modeldue"), weekday=day).job_id)
    assert record.ok and record.checked == ALL + 1
    due = dataclasses.replace(
        state, versions=_stored_versions(packed.s3, packed.plan.bucket), named_versions=ALL + 1, snapshots=2,
        manifest_entries=2 * ALL + 1, checked=ALL + 1, heads=None, indexed=True, new_snapshots=1, backups_in_window=2,
        verifications_in_window=2,
    )
    recorded = Counter(KINDS.get(c.operation, c.operation) for c in since.calls())
    expected = {kind: round(count, 6) for kind, count in verification_when_due(due, dataclasses.replace(model, inventory="Daily")).requests.items()}
    assert "head" not in recorded and expected.get("head", 0) == 0
    assert recorded == Counter(expected)

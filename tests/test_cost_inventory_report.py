"""The cost report read from the newest S3 Inventory report instead of listing the bucket: on the same bucket
and a current report it gives the listing's figures without listing data/; versions written after the report's
scan are left out and the report says how old it was; a stale or missing report is listed instead and said."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.cost.reports import CostReports, plan_figures_key
from chalicelib.cost.upkeep import cost_report
from chalicelib.cost.upkeep_model import BucketDay, UpkeepSettings
from chalicelib.inventory import configuration as conf
from chalicelib.layout import LONG_KEYS_PREFIX
from chalicelib.times import isoformat, utcnow
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver
from tests.test_cost_upkeep_recorded import KINDS
from tests.test_cost_report import KIB, PRICES, snapshot, store

# What must come out the same whichever way the versions were read.
SAME = ("storage", "current", "noncurrent", "named_by_no_snapshot", "reported_by_s3", "transitions", "small_objects", "versions", "bytes")


@pytest.fixture(autouse=True)
def _no_projection(without_projection: None) -> None:
    pass


@pytest.fixture
def bucket(s3: Any, backup_buckets: Any) -> dict[str, Any]:
    """The documents bucket with current, noncurrent, deleted, unnamed and archived versions; a source the plan
    no longer has whose prefix sorts before the plan's own ("documents-old/" before "documents/"), and a long
    key; two snapshots, the newer a minute ago."""
    name = backup_buckets.get("documents").bucket
    # The double delivers as S3 would, which the inventory bucket's policy alone lets write: without it here.
    s3.delete_bucket_policy(Bucket=backup_buckets.inventory.bucket)
    big = store(s3, name, "big.bin", 200 * KIB, "GLACIER")
    small = store(s3, name, "small.txt", 10 * KIB)
    old = store(s3, name, "twice.bin", 300 * KIB)
    new = store(s3, name, "twice.bin", 310 * KIB)
    gone = store(s3, name, "gone.bin", 150 * KIB, "GLACIER")
    s3.delete_object(Bucket=name, Key="data/documents/gone.bin")
    store(s3, name, "stray.bin", 140 * KIB, "GLACIER")
    s3.put_object(Bucket=name, Key="data/documents-old/left.bin", Body=b"x" * 2000, IfNoneMatch="*")
    s3.put_object(Bucket=name, Key=f"{LONG_KEYS_PREFIX}{'a' * 64}", Body=b"y" * 3000, IfNoneMatch="*")
    now = utcnow()
    snapshot(s3, backup_buckets, [big, small, old, gone], now - timedelta(minutes=2))
    newest = snapshot(s3, backup_buckets, [big, small, new], now - timedelta(minutes=1))
    return {"name": name, "newest": newest}


def compute(s3: Any, plans: Any, backup_id: str, now: Any) -> dict[str, Any]:
    return CostReports(plans, s3, PRICES, sample_size=50).compute(backup_id, now)


def test_a_current_report_gives_the_listings_figures_without_listing(s3: Any, backup_buckets: Any, bucket: dict[str, Any]) -> None:
    scanned = utcnow()
    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=scanned, files=3, shuffle=5)
    # Forty days on (versions old enough for GLACIER, so that where each is placed matters), a day after the scan.
    later = scanned + timedelta(days=40)
    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=later - timedelta(hours=20), files=2, shuffle=9)
    since = CallsSince()
    by_report = compute(s3, backup_buckets, bucket["newest"], later)
    listed_data = [c for c in since.calls() if c.operation == "ListObjectVersions" and c.params["Bucket"] == bucket["name"] and c.params["Prefix"].startswith("data/")]
    by_listing = compute(s3, dataclasses.replace(backup_buckets, inventory=None), bucket["newest"], later)
    ours, theirs = by_report["plans"]["documents"], by_listing["plans"]["documents"]
    assert ours["work"]["versions_from"] == "inventory report" and theirs["work"]["versions_from"] == "ListObjectVersions"
    for name in SAME:
        assert ours[name] == theirs[name], name
    assert ours["versions"] == 8 and ours["noncurrent"]["versions"] == 2
    assert ours["work"]["versions"] == theirs["work"]["versions"] and ours["work"]["missing_versions"] == 0
    assert ours["parts"]["storage"] == theirs["parts"]["storage"]
    # Every version compared with the class S3 gives it, with the listing's verdicts.
    counts = ("compared", "agree", "pending", "disagreements_count")
    assert [ours["check"][name] for name in counts] == [theirs["check"][name] for name in counts]
    assert ours["check"]["compared"] == 8 and ours["check"]["disagreements_count"] == 0
    # The report's rows were read, data/ never listed; the report it used and its age are named.
    assert listed_data == [] and ours["work"]["list_requests"] == 1
    assert (ours["work"]["report_files"], ours["work"]["report_rows"]) == (2, 9)
    used = ours["work"]["inventory_report"]
    assert used["age_days"] == pytest.approx(20 / 24, abs=0.01) and used["problem"] is None
    assert "as of the report's scan" in used["note"]
    assert by_report["warnings"] == []


def test_versions_written_after_the_scan_are_not_in_it_and_the_report_says_its_age(s3: Any, backup_buckets: Any, bucket: dict[str, Any]) -> None:
    scanned = utcnow()
    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=scanned)
    later = store(s3, bucket["name"], "after.bin", 500 * KIB)
    newest = snapshot(s3, backup_buckets, [later], scanned + timedelta(seconds=5))
    report = compute(s3, backup_buckets, newest, scanned + timedelta(hours=30))
    documents = report["plans"]["documents"]
    # The version written after the scan is named by the newest snapshot but not in the report.
    assert documents["versions"] == 8 and documents["work"]["missing_versions"] == 1
    assert documents["work"]["inventory_report"]["age_days"] == pytest.approx(1.25, abs=0.01)
    listed = compute(s3, dataclasses.replace(backup_buckets, inventory=None), newest, scanned + timedelta(hours=30))
    assert listed["plans"]["documents"]["versions"] == 9


def test_a_stale_or_missing_report_is_listed_instead_and_said(s3: Any, backup_buckets: Any, bucket: dict[str, Any]) -> None:
    now = utcnow()
    # No Weekly report (the shipped plans') ten days after the first snapshot: due, and missing.
    assert backup_buckets.inventory.frequency == "Weekly"
    missing = compute(s3, backup_buckets, bucket["newest"], now + timedelta(days=10))
    documents = missing["plans"]["documents"]
    assert documents["work"]["versions_from"] == "ListObjectVersions" and documents["versions"] == 8
    assert any("documents" in w and "no inventory report" in w and "listed instead" in w for w in missing["warnings"])
    # Before the first is due: listed, and no warning.
    early = compute(s3, backup_buckets, bucket["newest"], now + timedelta(hours=2))
    assert "not due before" in early["plans"]["documents"]["work"]["inventory_report"]["pending"]
    assert not any("documents" in w for w in early["warnings"])
    # A Weekly report ten days old; the same report three days old is relied on, but not as a Daily one.
    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=now)
    stale = compute(s3, backup_buckets, bucket["newest"], now + timedelta(days=10))
    documents = stale["plans"]["documents"]
    assert documents["work"]["versions_from"] == "ListObjectVersions" and documents["versions"] == 8
    assert documents["work"]["inventory_report"]["age_days"] == pytest.approx(10, abs=0.01)
    assert any("10.0 days old" in w and "9.0 days a Weekly report" in w and "listed instead" in w for w in stale["warnings"])
    assert compute(s3, backup_buckets, bucket["newest"], now + timedelta(days=3))["plans"]["documents"]["work"]["versions_from"] == "inventory report"
    daily = dataclasses.replace(backup_buckets, inventory=dataclasses.replace(backup_buckets.inventory, frequency="Daily"))
    assert compute(s3, daily, bucket["newest"], now + timedelta(days=4))["plans"]["documents"]["work"]["versions_from"] == "ListObjectVersions"


def test_a_plans_figures_are_computed_once_per_report_and_carried_until_the_next(
    s3: Any, backup_buckets: Any, bucket: dict[str, Any]
) -> None:
    # The documents plan alone, so that every request counted is its own.
    plans = dataclasses.replace(backup_buckets, plans=[backup_buckets.get("documents")])
    scanned = utcnow()
    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=scanned)
    first = compute(s3, plans, bucket["newest"], scanned + timedelta(hours=2))["plans"]["documents"]
    assert first["figures"]["computed_at"] == isoformat(scanned + timedelta(hours=2)) and first["figures"]["carried"] is False
    # No prune has run: no kept index of its own, so every kept manifest was read, and the figures say so.
    assert first["figures"]["named_from"]["kept_index"] is None and len(first["figures"]["named_from"]["manifests_read"]) == 2
    # A version written since: the same report does not show it, and the figures are carried as they were,
    # reading nothing that grows with the bucket (the model's count for a day that carries).
    store(s3, bucket["name"], "later.bin", 500 * KIB)
    since = CallsSince()
    carried = compute(s3, plans, bucket["newest"], scanned + timedelta(days=1))["plans"]["documents"]
    calls = Counter(KINDS[call.operation] for call in since.calls())
    model = cost_report(BucketDay(versions=10, named_versions=5, snapshots=2, manifest_entries=7, cost_recomputed=0), UpkeepSettings(inventory="Weekly"))
    # (compute() neither looks for a stored report nor stores one: for_backup does, a GET and a PUT.)
    assert calls == Counter({kind: int(count) for kind, count in model.requests.items()}) - Counter(get=1, put=1)
    assert carried["figures"]["carried"] is True and carried["figures"]["computed_at"] == first["figures"]["computed_at"]
    assert first["work"]["inventory_report"]["report"] in carried["figures"]["note"]
    assert {name: carried[name] for name in SAME} == {name: first[name] for name in SAME}
    # The next report shows the new version: computed again.
    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=scanned + timedelta(days=2))
    second = compute(s3, plans, bucket["newest"], scanned + timedelta(days=2, hours=1))["plans"]["documents"]
    assert second["figures"]["carried"] is False and second["bytes"] == first["bytes"] + 500 * KIB
    # A prune removed a snapshot: computed again (which versions are named changed), then carried.
    PrunedMarkers(s3, plans.catalog_bucket).mark("documents", bucket["newest"], "a-prune", utcnow())
    assert compute(s3, plans, bucket["newest"], scanned + timedelta(days=2, hours=2))["plans"]["documents"]["figures"]["carried"] is False
    # Asked for (org-backup cost --refresh), other prices, or kept figures that cannot be read: computed again.
    reports = CostReports(plans, s3, PRICES, sample_size=50)
    assert reports.compute(bucket["newest"], scanned + timedelta(days=3), fresh=True)["plans"]["documents"]["figures"]["carried"] is False
    assert reports.compute(bucket["newest"], scanned + timedelta(days=3))["plans"]["documents"]["figures"]["carried"] is True
    other = dataclasses.replace(PRICES, read_on=PRICES.read_on - timedelta(days=1))
    assert CostReports(plans, s3, other).compute(bucket["newest"], scanned + timedelta(days=3))["plans"]["documents"]["figures"]["carried"] is False
    s3.put_object(Bucket=backup_buckets.catalog_bucket, Key=plan_figures_key("documents"), Body=b"{not json")
    assert compute(s3, plans, bucket["newest"], scanned + timedelta(days=3))["plans"]["documents"]["figures"]["carried"] is False


def test_the_reports_rows_stop_at_the_callers_deadline_and_nothing_is_kept(
    s3: Any, backup_buckets: Any, bucket: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily backup gives the computing a deadline: the rows are read and sorted before the first version is
    tallied, so the look at it is taken while they are read, not only while versions are tallied."""
    from chalicelib.cost import report_runs as inventory
    from chalicelib.cost.report_runs import OutOfTime

    deliver(s3, bucket["name"], conf.DEFAULT_CONFIGURATION_ID, at=utcnow(), files=2, shuffle=3)
    monkeypatch.setattr(inventory, "DEADLINE_EVERY", 3)
    looks: list[int] = []

    def deadline() -> bool:
        looks.append(1)
        return True

    reports = CostReports(backup_buckets, s3, PRICES, sample_size=50)
    with pytest.raises(OutOfTime, match=r"plan 'documents': 3 rows of the inventory report \S+ read when the time ran out"):
        reports.for_backup(bucket["newest"], deadline=deadline)
    assert looks == [1]
    # Neither the report nor the plan's figures were kept: the next caller computes them whole.
    assert reports.stored(bucket["newest"]) is None
    assert s3.list_objects_v2(Bucket=backup_buckets.catalog_bucket, Prefix=plan_figures_key("documents")).get("KeyCount") == 0
    whole = reports.for_backup(bucket["newest"])
    assert whole["plans"]["documents"]["versions"] == 8

"""The projection's manifests against what the code provisions and the per-version model: a plan with
`manifest_glacier_ir_days` has the lifecycle rule `deploy/bucket_settings.py` writes, and the simulation's
manifest bill (storage by class, the moves to GLACIER_IR, early deletions) is what pricing each kept manifest
one by one with `cost.model` (the rule's date, the class on each day, the early-deletion charge when the
prune deletes it) gives, month by month."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone

import pytest

from chalicelib.cost import model
from chalicelib.cost.projection import project
from chalicelib.cost.simulation import MANIFEST_BYTES_PER_ENTRY, Simulation
from chalicelib.cost.workload import SizeClass, Workload
from chalicelib.deploy.bucket_settings import lifecycle_rules, manifest_rule
from chalicelib.plans import MANIFEST_STORAGE_CLASS, MANIFEST_TRANSITION_MIN_BYTES, Lifecycle, Plan, S3Source, Transition
from chalicelib.prices import load_prices
from chalicelib.retention import RetentionPolicy, Snapshot, decide

START = date(2026, 1, 1)
AT = time(2, 0)
DAYS = 75
RETENTION = RetentionPolicy(keep_daily=7, keep_weekly=6)
LIFECYCLE = Lifecycle(transitions=(Transition(30, "GLACIER"),), manifest_glacier_ir_days=10)
# 3,000 objects: manifests of about 330 KB, over the rule's 128 KB.
WORKLOAD = Workload(
    name="small", objects=3000, sizes=(SizeClass("files", 200 * 1024, 1.0),), changed_per_day=0.02, deleted_per_day=0.001,
    new_per_day=5, description="3,000 objects",
)


def test_the_provisioned_rule_is_the_one_the_model_prices() -> None:
    plan = Plan(name="docs", bucket="b", sources=(S3Source(name="src", bucket="s"),), lifecycle=LIFECYCLE)
    rule = manifest_rule(plan)
    assert rule is not None and rule in lifecycle_rules(plan)
    assert rule["Transitions"] == [{"Days": LIFECYCLE.manifest_glacier_ir_days, "StorageClass": MANIFEST_STORAGE_CLASS}]
    assert rule["Filter"]["And"] == {"Prefix": "meta/snapshots/docs/", "ObjectSizeGreaterThan": MANIFEST_TRANSITION_MIN_BYTES}
    assert manifest_rule(replace(plan, lifecycle=replace(LIFECYCLE, manifest_glacier_ir_days=None))) is None


def _one_by_one(sizes: list[float]) -> dict[str, float]:
    """Each month's manifest bill from each kept manifest priced alone with `cost.model`: a version written at
    its backup's time, under a lifecycle of one GLACIER_IR transition after the plan's days."""
    prices = load_prices()
    moves = Lifecycle(transitions=(Transition(LIFECYCLE.manifest_glacier_ir_days or 0, MANIFEST_STORAGE_CLASS),))
    moment = [datetime.combine(START + timedelta(days=d), AT, tzinfo=timezone.utc) for d in range(DAYS)]
    versions = {d: model.StoredVersion(round(sizes[d]), moment[d]) for d in range(DAYS)}
    bill: dict[str, float] = {}
    kept: list[int] = []

    def add(day: int, amount: float) -> None:
        label = (START + timedelta(days=day)).strftime("%Y-%m")
        bill[label] = bill.get(label, 0.0) + amount

    for day in range(DAYS):
        # Transitions at midnight, before the day's backup.
        for d in kept:
            for placement in model.timeline(versions[d], moves)[1:]:
                if placement.since.date() == moment[day].date():
                    add(day, prices.transition_per_request(placement.storage_class))
        kept.append(day)
        decision = decide([Snapshot(f"{d:06d}", moment[d]) for d in kept], RETENTION)
        survivors = sorted(int(s.backup_id) for s in decision.kept)
        for gone in set(kept) - set(survivors):
            add(day, model.early_deletion(versions[gone], moves, moment[day], prices).charge)
        kept = survivors
        month_days = _month_days(day)
        for d in kept:
            where = model.placement_at(versions[d], moves, moment[day]).storage_class
            add(day, versions[d].size * prices.storage_per_byte_month(where) / month_days)
    return bill


def _month_days(day: int) -> int:
    first = (START + timedelta(days=day)).replace(day=1)
    return ((first + timedelta(days=32)).replace(day=1) - first).days


def test_the_simulations_manifest_bill_is_each_manifest_priced_one_by_one() -> None:
    prices = load_prices()
    months = project(WORKLOAD, LIFECYCLE, RETENTION, prices, days=DAYS, start=START, at=AT, baselines=False).ours.months
    # The manifests the simulation wrote: the day's objects after its backup, 110 bytes each.
    records = Simulation(WORKLOAD, LIFECYCLE, RETENTION, prices, DAYS, START, at=AT).run()
    sizes = [record.objects * MANIFEST_BYTES_PER_ENTRY for record in records]
    assert min(sizes) > MANIFEST_TRANSITION_MIN_BYTES
    expected = _one_by_one(sizes)
    assert {m.label: pytest.approx(m.manifests, rel=1e-6) for m in months} == expected
    # Every part happened: storage in both classes, moves, and daily snapshots deleted before their 90 days.
    parts = {name for m in months for name, amount in m.manifest_parts.items() if amount > 0}
    assert parts == {"STANDARD", MANIFEST_STORAGE_CLASS, "transitions", "early_deletions"}
    # Here the rule costs more than it saves: a manifest of 330 KB saves 0.2 millionths of a dollar a day in
    # GLACIER_IR against 20 millionths for its move, and this retention deletes every moved one long before
    # GLACIER_IR's 90 days (docs/cost.md says when it pays: manifests of many objects, kept for months).
    standard = project(WORKLOAD, replace(LIFECYCLE, manifest_glacier_ir_days=None), RETENTION, prices, days=DAYS, start=START, at=AT, baselines=False)
    assert sum(m.manifests for m in standard.ours.months) < sum(expected.values())
    assert math.isclose(sum(m.manifests for m in months), sum(expected.values()), rel_tol=1e-6)

"""The projection: small histories worked out by hand, and the reference report's invariants at a small scale."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, time, timezone
from pathlib import Path
from types import ModuleType

import pytest

from chalicelib.cost.projection import project
from chalicelib.cost.simulation import REFERENCE_BACKUP_TIME
from chalicelib.cost.workload import SizeClass, Workload
from chalicelib.plans import Lifecycle, Transition
from chalicelib.prices import load_prices
from chalicelib.retention import RetentionPolicy

ROOT = Path(__file__).resolve().parent.parent
PRICES = load_prices(environ={})
KIB, MIB, GIB = 1024, 1024**2, 1024**3
SHIPPED = Lifecycle(transitions=(Transition(30, "GLACIER"), Transition(180, "DEEP_ARCHIVE")))
# Dollars per object-month of the 40 KB overhead: 8 KiB at STANDARD plus 32 KiB at the archive class.
GLACIER_OVERHEAD = (8 * KIB * 0.023 + 32 * KIB * 0.0036) / GIB
DEEP_OVERHEAD = (8 * KIB * 0.023 + 32 * KIB * 0.00099) / GIB


def still(objects: int = 1000, size: int = MIB) -> Workload:
    return Workload("still", objects, (SizeClass("files", size, 1.0),), changed_per_day=0, deleted_per_day=0, new_per_day=0)


def test_a_source_that_never_changes() -> None:
    # 1,000 objects of 1 MiB written on 2026-01-01 at 02:00 and never touched again. GLACIER on day 30 is
    # Jan 31 02:00, rounded to Feb 1 00:00; DEEP_ARCHIVE on day 180 is Jun 30 02:00, rounded to Jul 1.
    projection = project(still(), SHIPPED, RetentionPolicy(keep_last=3), PRICES)
    months = {m.label: m for m in projection.ours.months}
    assert len(months) == 12
    gb = 1000 * MIB / GIB
    jan, feb, jun, jul, dec = (months[f"2026-{n:02d}"] for n in (1, 2, 6, 7, 12))
    assert jan.storage == pytest.approx({"STANDARD": gb * 0.023})
    assert (jan.overhead, jan.transitions, jan.early_deletions) == (0, 0, 0)
    assert feb.storage == pytest.approx({"GLACIER": gb * 0.0036})
    assert feb.overhead == pytest.approx(1000 * GLACIER_OVERHEAD)
    assert feb.transitions == pytest.approx(1000 * 0.03 / 1000)
    assert jun.storage == pytest.approx({"GLACIER": gb * 0.0036}) and jun.transitions == 0
    assert jul.storage == pytest.approx({"DEEP_ARCHIVE": gb * 0.00099})
    assert jul.overhead == pytest.approx(1000 * DEEP_OVERHEAD)
    assert jul.transitions == pytest.approx(1000 * 0.05 / 1000)
    assert dec.versions == pytest.approx({"DEEP_ARCHIVE": 1000}) and dec.bytes == pytest.approx({"DEEP_ARCHIVE": 1000 * MIB})
    assert sum(m.early_deletions for m in months.values()) == 0
    # Requests in January: the first backup copies all 1,000; every day lists 1 page of the source and the
    # metadata (2 LIST), reads the previous manifest (1 GET) and writes the manifest and records (3 PUT).
    assert jan.request_counts == pytest.approx({"copy": 1000, "list": 62, "get": 31, "put": 93})
    assert jan.requests == pytest.approx((1000 + 62 + 93) * 0.005 / 1000 + 31 * 0.0004 / 1000)
    assert feb.request_counts == pytest.approx({"copy": 0, "list": 56, "get": 28, "put": 84})
    # keep_last 3: 1, 2, then 3 manifests of 1,000 entries x 110 bytes.
    assert jan.manifests == pytest.approx(110_000 * (1 + 2 + 3 * 29) / 31 * 0.023 / GIB)
    assert jan.manifest_bytes == 330_000 and dec.manifest_bytes == 330_000

    others = projection.others
    # AWS Backup: the same 1,000 versions, 1 MiB each (above its 128 KB minimum), at 0.05.
    assert [m.total for m in others["aws_backup"].months] == pytest.approx([gb * 0.05] * 12)
    # The same retention without lifecycle keeps the 1,000 versions in STANDARD and the same 3 manifests.
    flat_jul = others["same_retention_no_lifecycle"].months[6]
    assert flat_jul.storage == pytest.approx({"STANDARD": gb * 0.023}) and flat_jul.overhead == 0
    assert flat_jul.manifests == pytest.approx(jul.manifests) and flat_jul.transitions == 0
    # The versioned bucket fed by sync: the 1,000 current versions in STANDARD, no manifests.
    versioned_jan = others["versioned_sync"].months[0]
    assert versioned_jan.storage == pytest.approx({"STANDARD": gb * 0.023}) and versioned_jan.manifests == 0
    # A sync copy: the same STANDARD bytes; each run lists the source and the destination.
    sync_jan = others["sync_copy"].months[0]
    assert sync_jan.request_counts == pytest.approx({"copy": 1000, "list": 62})
    assert sync_jan.total == pytest.approx(gb * 0.023 + 1062 * 0.005 / 1000)


def test_backups_at_midnight_move_a_day_sooner_than_backups_at_any_later_time() -> None:
    # S3 rounds a lifecycle date up to midnight UTC, and a date that is midnight already stays: written at
    # 00:00 on Jan 1, GLACIER after 30 days is Jan 31 00:00, a day sooner than written at 02:00 (or 13:47).
    gb = 1000 * MIB / GIB
    at_midnight = project(still(), SHIPPED, RetentionPolicy(keep_last=3), PRICES, days=31, at=time(0, 0)).ours.months[0]
    assert at_midnight.storage == pytest.approx({"STANDARD": gb * 0.023 * 30 / 31, "GLACIER": gb * 0.0036 / 31})
    for later in (REFERENCE_BACKUP_TIME, time(13, 47)):
        jan = project(still(), SHIPPED, RetentionPolicy(keep_last=3), PRICES, days=31, at=later).ours.months[0]
        assert jan.storage == pytest.approx({"STANDARD": gb * 0.023})


def test_the_cost_report_projects_at_the_time_of_day_the_schedule_runs() -> None:
    from chalicelib.catalog.records import new_backup_id, scheduled_suffix
    from chalicelib.cost.inventory import SnapshotFile
    from chalicelib.cost.plan_costs import backup_time_of_day
    from chalicelib.schedule import Schedule

    def snapshot(moment: datetime, suffix: str | None = None) -> SnapshotFile:
        return SnapshotFile(new_backup_id(moment, suffix=suffix), "key", 100, moment)

    now = datetime(2026, 11, 27, 20, 0, tzinfo=timezone.utc)
    scheduled = snapshot(datetime(2026, 11, 27, 13, 47, 21, tzinfo=timezone.utc), scheduled_suffix("event"))
    manual = snapshot(datetime(2026, 11, 27, 18, 5, tzinfo=timezone.utc))
    older = snapshot(datetime(2026, 11, 26, 13, 47, tzinfo=timezone.utc), "scheduled")
    # rate(1 day): the newest scheduled delivery's time of day, whatever ran by hand since.
    assert backup_time_of_day(Schedule(), [older, scheduled, manual], now) == time(13, 47)
    # A fixed time is the schedule's, whenever earlier backups ran.
    assert backup_time_of_day(Schedule(time(2, 0)), [older, scheduled, manual], now) == time(2, 0)
    # Before any scheduled backup: the newest snapshot's time, or now's.
    assert backup_time_of_day(Schedule(), [manual], now) == time(18, 5)
    assert backup_time_of_day(Schedule(), [], now) == time(20, 0)


@pytest.mark.parametrize(("at", "in_glacier"), [(time(2, 0), 26 / 24), (time(13, 30), 37.5 / 24), (time(23, 59), (48 - 1 / 60) / 24)])
def test_every_object_replaced_every_day_into_glacier_and_pruned_early(at: time, in_glacier: float) -> None:
    # GLACIER after 0 days: a version written at 02:00 moves at the next midnight, is replaced at 02:00 that
    # day, and keep_last 2 drops the snapshot naming it at the following backup: 1 day and 2 hours in
    # GLACIER, so 90 - 26/24 days of early deletion. January only. Backups at another time of day (under
    # rate(1 day), the time the schedule was deployed) keep a version in GLACIER for a day and that time.
    workload = Workload("churn", 1000, (SizeClass("files", MIB, 1.0),), changed_per_day=1.0, deleted_per_day=0, new_per_day=0)
    lifecycle = Lifecycle(transitions=(Transition(0, "GLACIER"),))
    jan = project(workload, lifecycle, RetentionPolicy(keep_last=2), PRICES, days=31, at=at).ours.months[0]
    gb = 1000 * MIB / GIB
    # Every day 1,000 current versions in STANDARD; from day 1 on, 1,000 noncurrent ones in GLACIER.
    assert jan.storage == pytest.approx({"STANDARD": gb * 0.023, "GLACIER": gb * 0.0036 * 30 / 31})
    assert jan.overhead == pytest.approx(1000 * GLACIER_OVERHEAD * 30 / 31)
    # 1,000 transitions on each of days 1 to 30.
    assert jan.transitions == pytest.approx(30 * 1000 * 0.03 / 1000)
    # Deletions on days 2 to 30.
    per_version = (MIB + 32 * KIB) / GIB * 0.0036 * (90 - in_glacier) / 30
    assert jan.early_deletions == pytest.approx(29 * 1000 * per_version)
    assert jan.versions == pytest.approx({"STANDARD": 1000, "GLACIER": 1000})
    assert jan.request_counts["copy"] == pytest.approx(31 * 1000)
    assert jan.manifests == pytest.approx(110_000 * (1 + 2 * 30) / 31 * 0.023 / GIB)


def test_small_objects_stay_in_standard_unless_archived() -> None:
    small = still(size=10 * KIB)
    standard = project(small, SHIPPED, RetentionPolicy(keep_last=1), PRICES, days=62).ours.months[1]
    assert standard.storage == pytest.approx({"STANDARD": 1000 * 10 * KIB / GIB * 0.023}) and standard.transitions == 0
    archived = Lifecycle(transitions=SHIPPED.transitions, small_objects="archive")
    moved = project(small, archived, RetentionPolicy(keep_last=1), PRICES, days=62).ours.months[1]
    assert moved.storage == pytest.approx({"GLACIER": 1000 * 10 * KIB / GIB * 0.0036})
    assert moved.overhead == pytest.approx(1000 * GLACIER_OVERHEAD)
    # Archived, the 10 KiB files cost more than in STANDARD: 8 KiB at STANDARD and 42 KiB at GLACIER.
    assert moved.total > standard.total


def test_without_lifecycle_or_retention_this_system_holds_what_the_versioned_bucket_fed_by_sync_holds() -> None:
    workload = Workload(
        "mixed",
        2000,
        (SizeClass("small", 20 * KIB, 0.5), SizeClass("large", 2 * MIB, 0.5)),
        changed_per_day=0.02,
        deleted_per_day=0.005,
        new_per_day=30,
    )
    projection = project(workload, Lifecycle(transitions=()), None, PRICES, days=90)
    versioned = projection.others["versioned_sync"].months
    for ours, bare in zip(projection.ours.months, versioned):
        # Every version kept, all in STANDARD: the same versions and bytes; ours adds manifests and its own
        # fixed requests, the sync lists the destination too.
        assert sum(ours.versions.values()) == pytest.approx(sum(bare.versions.values()), rel=1e-9)
        assert ours.storage == pytest.approx(bare.storage, rel=1e-9)
        assert ours.total - ours.manifests - ours.requests == pytest.approx(bare.total - bare.requests, rel=1e-9)
    # With the same retention and no transitions, the baseline is the plain simulation without a lifecycle.
    retention = RetentionPolicy(keep_daily=7)
    flat = project(workload, SHIPPED, retention, PRICES, days=90).others["same_retention_no_lifecycle"].months
    plain = project(workload, Lifecycle(transitions=()), retention, PRICES, days=90, baselines=False).ours.months
    assert [m.total for m in flat] == pytest.approx([m.total for m in plain], rel=1e-12)


def test_the_versioned_bucket_fed_by_sync_expires_noncurrent_versions_after_the_horizon() -> None:
    # 1% of 1,000 objects changed a day: 10 versions become noncurrent each day; keep_daily 7 has a horizon
    # of 7 + 14 days, so after day 21 the bucket holds 1,000 current and 21 x 10 noncurrent versions.
    workload = Workload("w", 1000, (SizeClass("files", MIB, 1.0),), changed_per_day=0.01, deleted_per_day=0, new_per_day=0)
    retention = RetentionPolicy(keep_daily=7)
    horizon = retention.horizon_days()
    versioned = project(workload, SHIPPED, retention, PRICES, days=60).others["versioned_sync"].months
    assert versioned[1].versions["STANDARD"] == pytest.approx(1000 + horizon * 10)
    forever = project(workload, SHIPPED, None, PRICES, days=60).others["versioned_sync"].months
    # Without retention nothing expires: February's last day is day 58, after 58 days of changes.
    assert forever[1].versions["STANDARD"] == pytest.approx(1000 + 58 * 10)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"sizes": (SizeClass("a", 1, 0.5),)}, "add up to"),
        ({"changed_per_day": 0.8, "deleted_per_day": 0.3}, "between 0 and 1"),
        ({"new_per_day": -1}, "new_per_day"),
        ({"objects": 0}, "at least one object"),
    ],
)
def test_a_workload_that_cannot_be_is_refused(kwargs: dict, fragment: str) -> None:
    fields = {"name": "w", "objects": 10, "sizes": (SizeClass("a", 1, 1.0),), "changed_per_day": 0.1, "deleted_per_day": 0, "new_per_day": 0}
    with pytest.raises(ValueError, match=fragment):
        Workload(**{**fields, **kwargs})


def _reference_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cost_reference", ROOT / "scripts" / "cost_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_report_at_a_small_scale() -> None:
    # A hundredth of the objects, the full year: the invariants below do not depend on the scale. Two of the
    # lifecycles compared (the shipped one and none), each with every small_objects choice.
    script = _reference_script()
    compared = {label: script.LIFECYCLES[label] for label in ("shipped", "no transitions")}
    report = script.run(scale=0.01, days=365, prices=PRICES, lifecycles=compared)
    assert set(report["workloads"]) == {"office", "many_small_files"}
    for name, entry in report["workloads"].items():
        totals = entry["monthly_totals"]
        assert set(totals) == {"ours", "aws_backup", "same_retention_no_lifecycle", "versioned_sync", "sync_copy"}
        for bill, months in totals.items():
            assert len(months) == 12 and all(cost > 0 for cost in months), (name, bill)
        # The versioned bucket holds at least the current copy the sync copy holds.
        for versioned, copy in zip(entry["monthly_bytes"]["versioned_sync"], entry["monthly_bytes"]["sync_copy"]):
            assert versioned >= copy
        # The upkeep is counted in ours, job by job.
        upkeep = entry["upkeep"]
        # (Against the weekly report the verification sends no HEAD: its reads are GETs.)
        assert entry["where_the_money_goes"]["upkeep"] > 0 and upkeep["jobs"]["verification"]["requests_per_day"]["get"] > 0
        assert "head" not in upkeep["jobs"]["verification"]["requests_per_day"]
        assert upkeep["jobs"]["prune"]["requests_per_day"]["list"] > 0 and 0 < upkeep["share"] < 1
        # One current copy and no history is the cheapest way to keep the data after a year.
        final = entry["totals"]
        assert final["sync_copy"] == min(final.values()), name
        assert entry["cheapest_settings"] and all(s["total"] > 0 for s in entry["settings"])
    office = report["workloads"]["office"]
    # Keeping everything in STANDARD is never cheaper than this system's lifecycle and retention.
    for ours, bare in zip(office["monthly_totals"]["ours"], office["monthly_totals"]["same_retention_no_lifecycle"]):
        assert bare >= ours - 1e-9
    assert set(office["targets"]) == {"aws_backup_at_least_5x", "same_retention_no_lifecycle_at_least_2.9x", "upkeep_at_most_5%"}
    assert set(report["workloads"]["many_small_files"]["targets"]) == {"aws_backup_at_least_5x", "versioned_sync_at_least_1x", "upkeep_at_most_5%"}
    for name, entry in report["workloads"].items():
        pack = entry["pack"]
        # The pack rows: one per lifecycle, beside standard and archive, and the same total as the pack figures.
        rows = {(s["lifecycle"], s["small_objects"]): s["total"] for s in entry["settings"]}
        assert {small for _, small in rows} == {"standard", "archive", "pack"} and len(rows) == 6
        assert rows[("shipped", "pack")] == pack["totals"]["ours"]
        # The baselines do not depend on how this system stores the data.
        for bill in ("aws_backup", "versioned_sync", "sync_copy"):
            assert pack["totals"][bill] == entry["totals"][bill], (name, bill)
        # (Of the totals before they are rounded to four places: the last digit may differ.)
        assert pack["ratios"]["versioned_sync"] == pytest.approx(pack["totals"]["versioned_sync"] / pack["totals"]["ours"], abs=0.01)
        # Packs are written, and the packed objects read from their source, instead of copies.
        assert 0 < pack["requests_per_day"]["pack_put"] < pack["requests_per_day"]["pack_get"]
        assert pack["requests_per_day"]["pack_get"] == pack["source_reads_per_day"]
    many = report["workloads"]["many_small_files"]["pack"]
    # Every object packed: nothing copied, and far fewer stored versions than objects.
    assert many["requests_per_day"]["copy"] == 0 and sum(many["versions"].values()) < report["workloads"]["many_small_files"]["objects"]
    assert set(many["targets"]) == {"versioned_sync_at_least_5x", "aws_backup_at_least_20x"}
    assert set(many["requests_target_met"]) == {"pack_put", "list", "put", "get"}
    # The office with an off-site copy in Deep Archive: the vault never forgets a key the source deleted, so it
    # holds more current versions than the source has objects; the restore's Standard thaw costs more than Bulk.
    vault = office["vault"]
    assert "DEEP_ARCHIVE" in vault["settings"] and "vault" not in report["workloads"]["many_small_files"]
    assert len(vault["monthly_totals"]) == 12 and all(cost > 0 for cost in vault["monthly_totals"])
    assert vault["month"]["versions"]["current"] > office["objects"] and vault["month"]["transfer"] > 0
    assert vault["with_rtc_month"] > vault["month"]["total"]
    assert vault["ours_with_vault"] == pytest.approx(office["totals"]["ours"] + vault["month"]["total"], abs=2e-4)
    tiers = vault["restore"]["tiers"]
    assert set(tiers) == {"Bulk", "Standard"} and tiers["Standard"]["total_usd"] > tiers["Bulk"]["total_usd"] > 0
    assert (tiers["Bulk"]["thaw_hours_at_most"], tiers["Standard"]["thaw_hours_at_most"]) == (48, 12)
    json.dumps(report)


def test_the_reference_script_ends_with_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _reference_script().main(["--scale", "0.001", "--days", "40"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["days"] == 40 and report["workloads"]["office"]["objects"] == 100


def test_the_cohort_bookkeeping_matches_the_model_version_by_version() -> None:
    """The projection books storage, moves and deletions by whole days and running totals. Here the same
    history is recomputed the slow way: every (written, replaced) cohort as one StoredVersion, its class
    read from the model at each day's backup time, its deletion charged by the model. A lifecycle with
    short steps (no plan would pass validation with it) makes moves and early deletions frequent."""
    from datetime import date, datetime, timedelta, timezone

    from chalicelib.cost.model import StoredVersion, early_deletion, placement_at, timeline
    from chalicelib.retention import Snapshot, decide

    days, start = 75, date(2026, 1, 20)
    sizes = ((4 * KIB, 0.6), (3 * MIB, 0.4))
    changed, deleted, new, initial = 0.1, 0.05, 7.0, 500.0
    lifecycle = Lifecycle(transitions=(Transition(3, "GLACIER"), Transition(10, "DEEP_ARCHIVE")))
    retention = RetentionPolicy(keep_daily=4, keep_weekly=3)
    workload = Workload("w", 500, tuple(SizeClass(str(s), s, share) for s, share in sizes), changed, deleted, new)
    projected = project(workload, lifecycle, retention, PRICES, days=days, start=start).ours.months

    def at(day: int) -> datetime:
        return datetime.combine(start + timedelta(days=day), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=2)

    # The workload itself: who is current, who is replaced when.
    current: dict[int, float] = {}
    cohorts: list[list] = []  # [written, replaced or None, count, deleted on day or None]
    snapshots: list[int] = []
    for day in range(days):
        if day == 0:
            current[0] = initial
        else:
            for written in list(current):
                cohorts.append([written, day, current[written] * (changed + deleted), None])
                current[written] *= 1 - changed - deleted
            current[day] = sum(c[2] for c in cohorts if c[1] == day) * changed / (changed + deleted) + new
        snapshots.append(day)
        kept = decide([Snapshot(str(d), at(d)) for d in snapshots], retention).kept
        snapshots = sorted(int(s.backup_id) for s in kept)
        for cohort in cohorts:
            if cohort[3] is None and not any(cohort[0] <= d < cohort[1] for d in snapshots):
                cohort[3] = day
    cohorts += [[written, None, count, None] for written, count in current.items()]

    months = {m.label: {"storage": {}, "overhead": 0.0, "transitions": 0.0, "early": 0.0, "days": m.days} for m in projected}
    for written, replaced, count, gone in cohorts:
        end = days if gone is None else gone
        for size, share in sizes:
            version = StoredVersion(size, at(written), None if replaced is None else at(replaced))
            for day in range(written, end):
                month = months[(start + timedelta(days=day)).strftime("%Y-%m")]
                name = placement_at(version, lifecycle, at(day)).storage_class
                cost = count * share * size * PRICES.storage_per_byte_month(name) / month["days"]
                month["storage"][name] = month["storage"].get(name, 0.0) + cost
                if name in PRICES.archive_classes:
                    overhead = 8 * KIB * PRICES.storage_per_byte_month("STANDARD") + 32 * KIB * PRICES.storage_per_byte_month(name)
                    month["overhead"] += count * share * overhead / month["days"]
            for placement in timeline(version, lifecycle)[1:]:
                if placement.since <= at(end if gone is not None else days - 1):
                    month = months[placement.since.strftime("%Y-%m")]
                    month["transitions"] += count * share * PRICES.transition_per_request(placement.storage_class)
            if gone is not None:
                month = months[(start + timedelta(days=gone)).strftime("%Y-%m")]
                month["early"] += count * share * early_deletion(version, lifecycle, at(gone), PRICES).charge

    assert sum(1 for c in cohorts if c[3] is not None) > 100
    for month in projected:
        expected = months[month.label]
        assert month.storage == pytest.approx(expected["storage"], rel=1e-9), month.label
        assert month.overhead == pytest.approx(expected["overhead"], rel=1e-9)
        assert month.transitions == pytest.approx(expected["transitions"], rel=1e-9)
        assert month.early_deletions == pytest.approx(expected["early"], rel=1e-9)
    assert sum(m.early_deletions for m in projected) > 0


def test_a_projection_from_what_a_bucket_holds_carries_the_history_on_exactly() -> None:
    """`project_from` starts from holdings instead of an empty bucket. Seeded with the state a simulation
    reached on day 45 (current versions by day written, noncurrent cohorts, kept snapshots and manifests), the
    next twelve months must be those the uninterrupted simulation priced: storage per class, overhead,
    transitions, early deletions, requests and manifests alike."""
    from datetime import date, timedelta

    from chalicelib.cost.projection import project_from
    from chalicelib.cost.simulation import Holdings, Simulation

    start, today = date(2026, 1, 20), 45
    lifecycle = Lifecycle(transitions=(Transition(3, "GLACIER"), Transition(10, "DEEP_ARCHIVE")))
    retention = RetentionPolicy(keep_daily=4, keep_weekly=3)
    workload = Workload("w", 500, (SizeClass("small", 4 * KIB, 0.6), SizeClass("large", 3 * MIB, 0.4)), 0.1, 0.05, 7.0)
    whole = project(workload, lifecycle, retention, PRICES, days=500, start=start).ours.months

    before = Simulation(workload, lifecycle, retention, PRICES, today + 1, start)
    before.run()
    holdings = Holdings(
        start=start,
        today=today,
        current={g.small: {w: (c, g.current_bytes[w]) for w, c in enumerate(g.current) if c} for g in before.groups},
        noncurrent={
            g.small: {(c.written, c.replaced): (c.count, c.count * c.size) for cs in g.noncurrent.values() for c in cs if c.alive}
            for g in before.groups
        },
        snapshot_days=tuple(before.snapshot_days),
        manifest_bytes=dict(before.manifest_bytes),
    )
    assert sum(len(cohorts) for cohorts in holdings.noncurrent.values()) > 20
    months = project_from(holdings, workload, lifecycle, retention, PRICES)
    # Day 45 is 2026-03-06: the twelve months after March.
    assert (start + timedelta(days=today)).strftime("%Y-%m") == "2026-03"
    assert [m.label for m in months] == [f"{2026 + (3 + n) // 12}-{(3 + n) % 12 + 1:02d}" for n in range(12)]
    expected = {m.label: m for m in whole}
    for month in months:
        full = expected[month.label]
        assert month.storage == pytest.approx(full.storage, rel=1e-9), month.label
        assert month.overhead_by_class == pytest.approx(full.overhead_by_class, rel=1e-9)
        assert month.transitions == pytest.approx(full.transitions, rel=1e-9)
        assert month.early_deletions == pytest.approx(full.early_deletions, rel=1e-9)
        assert month.requests == pytest.approx(full.requests, rel=1e-9)
        assert month.manifests == pytest.approx(full.manifests, rel=1e-9)
        assert month.versions == pytest.approx(full.versions, rel=1e-9)
    assert sum(m.early_deletions for m in months) > 0 and sum(m.transitions for m in months) > 0


def test_a_projection_from_holdings_ages_what_is_stored_with_nothing_new() -> None:
    # 100 versions of 1 MiB written on day 0 and never changed, seen on day 10: GLACIER from day 30 and
    # DEEP_ARCHIVE from day 180 under the shipped lifecycle, one transition each.
    from datetime import date

    from chalicelib.cost.projection import project_from
    from chalicelib.cost.simulation import Holdings

    holdings = Holdings(
        start=date(2026, 1, 1),
        today=10,
        current={False: {0: (100.0, 100.0 * MIB)}},
        noncurrent={},
        snapshot_days=(0, 5, 10),
        manifest_bytes={0: 11_000.0, 5: 11_000.0, 10: 11_000.0},
    )
    workload = Workload("still", 100, (SizeClass("files", MIB, 1.0),), changed_per_day=0, deleted_per_day=0, new_per_day=0)
    months = {m.label: m for m in project_from(holdings, workload, SHIPPED, RetentionPolicy(keep_last=3), PRICES)}
    assert list(months)[0] == "2026-02" and len(months) == 12
    gb = 100 * MIB / GIB
    assert months["2026-02"].storage == pytest.approx({"GLACIER": gb * 0.0036})
    assert months["2026-02"].transitions == pytest.approx(100 * 0.03 / 1000)
    assert months["2026-07"].storage == pytest.approx({"DEEP_ARCHIVE": gb * 0.00099})
    assert months["2026-07"].overhead_by_class == pytest.approx({"DEEP_ARCHIVE": 100 * DEEP_OVERHEAD})
    assert months["2027-01"].versions == pytest.approx({"DEEP_ARCHIVE": 100})

"""The repack rule (chalicelib/prune/repack_rule.py): a STANDARD pack mostly dead is repacked only when keeping
its dead bytes costs more than the GET, the PUTs, the relocation record and the Lambda time; the figures the
README gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.plans import Lifecycle, Transition
from chalicelib.prices import load_prices
from chalicelib.prune.repack_rule import PackState, decide_repack, next_move, repack_cost
from chalicelib.retention import RetentionPolicy, Snapshot, decide

PRICES = load_prices(environ={})
MIB = 1024 * 1024
SHIPPED = Lifecycle((Transition(30, "GLACIER"), Transition(180, "DEEP_ARCHIVE")), small_objects="pack")
SHIPPED_RETENTION = RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=24, keep_yearly=7)
NO_TRANSITIONS = Lifecycle((), small_objects="pack")
GRACE = 2
# A full pack of the reference workload: 1,638 objects of 10 KiB, 1.1% of them replaced a day.
OBJECTS, OBJECT, Q = 1638, 10 * 1024, 0.011


def cohort(age: int, storage_class: str = "STANDARD") -> PackState:
    """A full pack `age` days old whose replaced objects no kept snapshot names any more."""
    live = round(OBJECTS * (1 - Q) ** age)
    return PackState(live * OBJECT, (OBJECTS - live) * OBJECT, live, storage_class, age)


def test_under_the_shipped_retention_and_lifecycle_no_standard_pack_is_ever_dead_at_all() -> None:
    # Daily backups: the snapshot of the day a pack was written names every object in it, and is kept for
    # 35 days, while the lifecycle moves the pack to GLACIER at 30. Every day the pack is in STANDARD, that
    # snapshot is kept: the pack has no dead bytes, so nothing to repack.
    start = datetime(2026, 1, 1, 2, tzinfo=timezone.utc)
    taken = [Snapshot(f"day{d:03d}", start + timedelta(days=d)) for d in range(400)]
    for age in range(0, 400):
        kept = {s.backup_id for s in decide(taken[: age + 1], SHIPPED_RETENTION).kept}
        in_standard = next_move(SHIPPED, 16 * MIB, age) == (30.0, "GLACIER")
        assert not in_standard or "day000" in kept, age
        if not in_standard:
            break
    assert age == 30 and "day000" in kept
    # From then on it is archived: never repacked, however dead.
    assert not decide_repack(cohort(200, "GLACIER"), SHIPPED, PRICES, GRACE, 365).repack
    assert "thaw" in decide_repack(cohort(400, "DEEP_ARCHIVE"), SHIPPED, PRICES, GRACE, 365).reason
    assert decide_repack(PackState(16 * MIB, 0, OBJECTS, "STANDARD", 29), SHIPPED, PRICES, GRACE, 365).reason == "not mostly dead"


def test_with_daily_7_and_no_transitions_a_mostly_dead_pack_is_repacked_because_it_pays() -> None:
    # daily 7 and nothing else: a replaced object is dead a week later. At 100 days a pack holds a third of
    # its objects; the last would be replaced about ln(542) / 1.1% = 572 days later.
    pack = cohort(100)
    assert pack.live_objects == 542 and pack.dead_bytes > pack.live_bytes
    decision = decide_repack(pack, NO_TRANSITIONS, PRICES, GRACE, horizon_days=572)
    assert decision.repack and decision.days == 572
    # Keeping 10.7 MiB dead for 572 days: 0.0046 USD; repacking: 3.0e-5 (a GET, two PUTs, 0.6 s of Lambda,
    # the relocation record of 542 objects kept as long).
    assert decision.keep == pytest.approx(0.0046, rel=0.02)
    assert decision.cost == pytest.approx(3.0e-5, rel=0.05)
    # Per million objects packed (610 packs), 2.80 USD of storage saved for 0.018 spent.
    assert decision.keep * 1e6 / OBJECTS == pytest.approx(2.80, rel=0.01)
    assert decision.cost * 1e6 / OBJECTS == pytest.approx(0.018, rel=0.05)


def test_it_does_not_pay_when_the_dead_bytes_would_go_soon_anyway() -> None:
    # A small pack, 60% dead, whose last live object leaves the retention tomorrow.
    pack = PackState(100 * 1024, 150 * 1024, 10, "STANDARD", 40)
    decision = decide_repack(pack, NO_TRANSITIONS, PRICES, GRACE, horizon_days=1)
    assert not decision.repack and decision.keep < decision.cost
    # The same pack kept a year more: it pays.
    assert decide_repack(pack, NO_TRANSITIONS, PRICES, GRACE, horizon_days=365).repack


def test_the_next_transition_bounds_the_savings_and_the_new_packs_later_move_is_a_cost() -> None:
    # GLACIER at 90 days, daily 7: at 80 days a pack is 59% dead and moves in 10 days.
    lifecycle = Lifecycle((Transition(90, "GLACIER"),), small_objects="pack")
    pack = cohort(80)
    decision = decide_repack(pack, lifecycle, PRICES, GRACE, horizon_days=500)
    assert decision.days == 10 and pack.dead_bytes > pack.live_bytes
    # 10 days of its dead bytes (7.0e-5) do not pay for moving its live ones 80 days later (3.6e-4 in all).
    assert not decision.repack and decision.keep == pytest.approx(7.0e-5, rel=0.02) and decision.cost == pytest.approx(3.6e-4, rel=0.02)
    # The new pack's live bytes reach GLACIER 80 days later than the old pack's would have.
    delayed = pack.live_bytes * (PRICES.storage_per_byte_month("STANDARD") - PRICES.storage_per_byte_month("GLACIER")) * 80 / 30
    assert repack_cost(pack, lifecycle, PRICES, 500) - repack_cost(pack, NO_TRANSITIONS, PRICES, 500) == pytest.approx(delayed)
    # A pack under 128 KB never moves: only the horizon bounds it.
    assert next_move(lifecycle, 100 * 1024, 10) is None


def test_a_pack_within_the_grace_period_or_mostly_live_is_left_alone() -> None:
    assert "grace" in decide_repack(PackState(MIB, 15 * MIB, 100, "STANDARD", 1), NO_TRANSITIONS, PRICES, GRACE, 365).reason
    assert not decide_repack(PackState(9 * MIB, 7 * MIB, 900, "STANDARD", 50), NO_TRANSITIONS, PRICES, GRACE, 365).repack

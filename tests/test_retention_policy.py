"""Retention: which snapshots each rule keeps, worked out by hand, and properties over random histories."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.errors import PlanError
from chalicelib.retention import (
    HORIZON_SLACK_DAYS,
    MAX_KEEP,
    RetentionPolicy,
    Snapshot,
    UnknownTimeZone,
    decide,
    parse_retention,
)

UTC = timezone.utc


def at(text: str) -> datetime:
    """A UTC instant from `YYYY-MM-DDTHH:MM`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def snap(backup_id: str, text: str) -> Snapshot:
    return Snapshot(backup_id=backup_id, taken_at=at(text))


def kept_ids(decision: Any) -> list[str]:
    return [s.backup_id for s in decision.kept]


# Hand-worked cases -------------------------------------------------------------------------------------


def test_daily_over_a_month_with_gaps_keeps_the_newest_of_each_of_the_last_days_that_have_one() -> None:
    # November 2026, one backup a day at 02:00, none on the 20th, 25th and 26th, and a second one on the
    # 28th at 14:00. The last 7 days *with a snapshot* are 30, 29, 28, 27, 24, 23, 22: the gaps are skipped.
    snapshots = [snap(f"nov{day:02d}", f"2026-11-{day:02d}T02:00") for day in range(1, 31) if day not in (20, 25, 26)]
    snapshots.append(snap("nov28-late", "2026-11-28T14:00"))
    decision = decide(snapshots, RetentionPolicy(keep_daily=7))
    assert kept_ids(decision) == ["nov30", "nov29", "nov28-late", "nov27", "nov24", "nov23", "nov22"]
    assert decision.reasons("nov30") == ["newest", "daily 2026-11-30"]
    assert decision.reasons("nov28-late") == ["daily 2026-11-28"]
    # The earlier snapshot of the 28th is not its day's newest.
    assert decision.reasons("nov28") == []
    assert decision.reasons("nov21") == []
    # Newest first, every snapshot listed once.
    assert len(decision.verdicts) == 28
    times = [v.snapshot.taken_at for v in decision.verdicts]
    assert times == sorted(times, reverse=True)


def test_iso_weeks_across_the_year_boundary() -> None:
    # Daily at noon UTC from Thursday 2026-12-24 to Wednesday 2027-01-06. ISO weeks: 2026 has 53 of them;
    # Monday 2026-12-28 to Sunday 2027-01-03 is 2026-W53, so New Year's Day is in a 2026 week.
    start = at("2026-12-24T12:00")
    snapshots = [Snapshot(f"d{i:02d}", start + timedelta(days=i)) for i in range(14)]
    ids = {s.taken_at.date().isoformat(): s.backup_id for s in snapshots}
    decision = decide(snapshots, RetentionPolicy(keep_weekly=3, keep_monthly=2, keep_yearly=2))
    assert decision.reasons(ids["2027-01-06"]) == ["newest", "weekly 2027-W01", "monthly 2027-01", "yearly 2027"]
    # Sunday 2027-01-03 is the newest of 2026-W53; Sunday 2026-12-27 the newest of 2026-W52.
    assert decision.reasons(ids["2027-01-03"]) == ["weekly 2026-W53"]
    assert decision.reasons(ids["2026-12-27"]) == ["weekly 2026-W52"]
    # New Year's Eve closes December and 2026, though its week goes on into January.
    assert decision.reasons(ids["2026-12-31"]) == ["monthly 2026-12", "yearly 2026"]
    assert decision.reasons(ids["2027-01-01"]) == []
    assert sorted(kept_ids(decision)) == sorted(ids[d] for d in ("2027-01-06", "2027-01-03", "2026-12-27", "2026-12-31"))


def test_days_are_local_days_across_the_spring_change_in_berlin() -> None:
    # Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 2026-03-29.
    a = snap("a", "2026-03-27T23:30")  # Berlin 2026-03-28 00:30 (UTC+1)
    b = snap("b", "2026-03-28T22:30")  # Berlin 2026-03-28 23:30 (UTC+1)
    c = snap("c", "2026-03-29T22:30")  # Berlin 2026-03-30 00:30 (UTC+2); with a fixed +1 it would be the 29th
    policy = RetentionPolicy(keep_daily=3)
    in_utc = decide([a, b, c], policy)
    assert kept_ids(in_utc) == ["c", "b", "a"]
    assert in_utc.reasons("c") == ["newest", "daily 2026-03-29"]
    in_berlin = decide([a, b, c], policy, tz="Europe/Berlin")
    # Only two local days have a snapshot; a is not the newest of the 28th.
    assert in_berlin.reasons("c") == ["newest", "daily 2026-03-30"]
    assert in_berlin.reasons("b") == ["daily 2026-03-28"]
    assert in_berlin.reasons("a") == []


def test_the_repeated_hour_of_the_autumn_change_in_new_york() -> None:
    # New York goes from UTC-4 to UTC-5 at 06:00 UTC on 2026-11-01; 01:30 happens twice that night.
    s1 = snap("s1", "2026-10-31T12:00")  # 08:00 EDT on the 31st
    s2 = snap("s2", "2026-11-01T05:30")  # 01:30 EDT on the 1st
    s3 = snap("s3", "2026-11-01T06:30")  # 01:30 EST on the 1st, the repeated hour
    s4 = snap("s4", "2026-11-02T04:30")  # 23:30 EST on the 1st (UTC-4 would make it the 2nd)
    policy = RetentionPolicy(keep_daily=2)
    local = decide([s1, s2, s3, s4], policy, tz=ZoneInfo("America/New_York"))
    assert kept_ids(local) == ["s4", "s1"]
    assert local.reasons("s4") == ["newest", "daily 2026-11-01"]
    assert local.reasons("s1") == ["daily 2026-10-31"]
    utc = decide([s1, s2, s3, s4], policy, tz="UTC")
    assert kept_ids(utc) == ["s4", "s3"]


def test_keep_last_breaks_ties_by_backup_id() -> None:
    same = "2026-11-29T02:00"
    snapshots = [snap("b", same), snap("a", same), snap("c", same), snap("old", "2026-11-28T02:00")]
    decision = decide(snapshots, RetentionPolicy(keep_last=2))
    # Same instant: the greater backup_id counts as newer.
    assert [v.snapshot.backup_id for v in decision.verdicts] == ["c", "b", "a", "old"]
    assert decision.reasons("c") == ["newest", "last 1 of 2"]
    assert decision.reasons("b") == ["last 2 of 2"]
    assert decision.reasons("a") == [] and decision.reasons("old") == []
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        assert decide([snapshots[i] for i in order], RetentionPolicy(keep_last=2)) == decision


def test_the_newest_is_kept_when_no_rule_is_on() -> None:
    # Every rule selects the newest snapshot of its own accord, so the guarantee shows only when every rule
    # is off (possible in code, refused in the plans file): the newest alone survives.
    snapshots = [snap("x", "2026-01-01T00:00"), snap("y", "2026-06-01T00:00"), snap("z", "2025-06-01T00:00")]
    decision = decide(snapshots, RetentionPolicy())
    assert kept_ids(decision) == ["y"]
    assert decision.reasons("y") == ["newest"]
    assert decision.dropped == [snapshots[0], snapshots[2]]


def test_keep_within_days_counts_back_from_the_newest_inclusively() -> None:
    snapshots = [
        snap("newest", "2026-11-30T02:00"),
        snap("edge", "2026-11-20T02:00"),  # exactly 10 x 24 hours before the newest: kept
        snap("outside", "2026-11-20T01:59"),
    ]
    decision = decide(snapshots, RetentionPolicy(keep_within_days=10))
    assert kept_ids(decision) == ["newest", "edge"]
    assert decision.reasons("edge") == ["within 10 days"]


def test_a_snapshot_kept_by_every_rule_lists_every_reason() -> None:
    decision = decide(
        [snap("only", "2026-11-28T02:00")],
        RetentionPolicy(keep_last=1, keep_daily=1, keep_weekly=1, keep_monthly=1, keep_yearly=1, keep_within_days=1),
    )
    assert decision.reasons("only") == [
        "newest",
        "last 1 of 1",
        "daily 2026-11-28",
        "weekly 2026-W48",
        "monthly 2026-11",
        "yearly 2026",
        "within 1 days",
    ]


def test_no_snapshots_no_verdicts() -> None:
    assert decide([], RetentionPolicy(keep_daily=1)).verdicts == []


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", "UTC+1"])
def test_an_unknown_time_zone_is_a_value_error_naming_it(tz: str) -> None:
    with pytest.raises(UnknownTimeZone) as caught:
        decide([snap("a", "2026-01-01T00:00")], RetentionPolicy(keep_daily=1), tz=tz)
    assert isinstance(caught.value, ValueError)
    assert "time zone" in str(caught.value) and repr(tz) in str(caught.value)


def test_a_snapshot_without_a_time_zone_or_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        Snapshot("a", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="listed twice"):
        decide([snap("a", "2026-01-01T00:00"), snap("a", "2026-01-02T00:00")], RetentionPolicy(keep_daily=1))


# The horizon ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy, expected",
    [
        # 7 years of at most 366 days, plus the slack for missed backups.
        (RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=24, keep_yearly=7), 7 * 366 + 14),
        (RetentionPolicy(keep_daily=35, keep_weekly=12, keep_monthly=12), 12 * 31 + 14),
        (RetentionPolicy(keep_daily=35, keep_weekly=12), 12 * 7 + 14),
        (RetentionPolicy(keep_last=50), 50 + 14),
        (RetentionPolicy(keep_within_days=400, keep_daily=7), 400 + 14),
        (RetentionPolicy(), 14),
    ],
)
def test_horizon_days(policy: RetentionPolicy, expected: int) -> None:
    assert HORIZON_SLACK_DAYS == 14
    assert policy.horizon_days() == expected


policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 40),
    keep_daily=st.integers(0, 40),
    keep_weekly=st.integers(0, 20),
    keep_monthly=st.integers(0, 15),
    keep_yearly=st.integers(0, 3),
    keep_within_days=st.integers(0, 60),
)


@settings(max_examples=60, deadline=None)
@given(policy=policies, days=st.integers(1, 1200), hours=st.lists(st.integers(0, 23), min_size=1, max_size=5))
def test_with_a_backup_every_day_nothing_kept_is_older_than_the_horizon_without_slack(
    policy: RetentionPolicy, days: int, hours: list[int]
) -> None:
    start = at("2025-12-20T00:00")
    snapshots = [
        Snapshot(f"{day:05d}", start + timedelta(days=day, hours=hours[day % len(hours)])) for day in range(days)
    ]
    decision = decide(snapshots, policy)
    newest = decision.verdicts[0].snapshot.taken_at
    oldest_kept = min(s.taken_at for s in decision.kept)
    assert (newest - oldest_kept) <= timedelta(days=policy.horizon_days() - HORIZON_SLACK_DAYS)


# Properties over random histories -----------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# A narrow range of seconds makes equal instants (ties) common; a wide one spreads snapshots over years.
instants = st.one_of(
    st.integers(0, 4 * 365 * 86400), st.integers(0, 3).map(lambda n: n * 3600)
).map(lambda seconds: datetime(2025, 12, 1, tzinfo=UTC) + timedelta(seconds=seconds))
histories = st.lists(instants, min_size=1, max_size=40).map(
    lambda times: [Snapshot(f"b{index:03d}", t) for index, t in enumerate(times)]
)


def _periods(snapshot: Snapshot, zone: ZoneInfo) -> dict[str, str]:
    local = snapshot.taken_at.astimezone(zone)
    year, week, _ = local.isocalendar()
    return {
        "daily": local.strftime("%Y-%m-%d"),
        "weekly": f"{year:04d}-W{week:02d}",
        "monthly": local.strftime("%Y-%m"),
        "yearly": local.strftime("%Y"),
    }


@settings(max_examples=200, deadline=None)
@given(snapshots=histories, policy=policies, zone_name=st.sampled_from(ZONES), seed=st.integers(0, 2**32))
def test_properties_of_any_decision(snapshots: list[Snapshot], policy: RetentionPolicy, zone_name: str, seed: int) -> None:
    zone = ZoneInfo(zone_name)
    decision = decide(snapshots, policy, tz=zone_name)
    assert sorted(v.snapshot.backup_id for v in decision.verdicts) == sorted(s.backup_id for s in snapshots)
    for verdict in decision.verdicts:
        assert verdict.kept == bool(verdict.reasons)

    # (a) the newest, the greatest (taken_at, backup_id), is kept.
    newest = max(snapshots, key=lambda s: (s.taken_at, s.backup_id))
    assert decision.reasons(newest.backup_id)[0] == "newest"

    # keep_last N keeps exactly min(N, count) snapshots, the newest ones.
    by_last = [v.snapshot for v in decision.verdicts if any(r.startswith("last ") for r in v.reasons)]
    expected_last = sorted(snapshots, key=lambda s: (s.taken_at, s.backup_id), reverse=True)[: policy.keep_last]
    assert by_last == expected_last

    for label, wanted in (
        ("daily", policy.keep_daily),
        ("weekly", policy.keep_weekly),
        ("monthly", policy.keep_monthly),
        ("yearly", policy.keep_yearly),
    ):
        kept_by_rule = {}
        for verdict in decision.verdicts:
            for reason in verdict.reasons:
                if reason.startswith(label + " "):
                    kept_by_rule[reason.split(" ", 1)[1]] = verdict.snapshot
        all_periods = sorted({_periods(s, zone)[label] for s in snapshots})
        # (b) min(N, distinct periods) snapshots, one for each of the most recent periods (the period
        # names sort in time order).
        assert len(kept_by_rule) == min(wanted, len(all_periods))
        assert sorted(kept_by_rule) == all_periods[len(all_periods) - len(kept_by_rule) :]
        # (c) each is the newest snapshot of its period.
        for period, kept in kept_by_rule.items():
            members = [s for s in snapshots if _periods(s, zone)[label] == period]
            assert kept == max(members, key=lambda s: (s.taken_at, s.backup_id))

    # keep_within_days keeps exactly those at most D days before the newest.
    within = {v.snapshot.backup_id for v in decision.verdicts if any(r.startswith("within ") for r in v.reasons)}
    if policy.keep_within_days:
        cutoff = newest.taken_at - timedelta(days=policy.keep_within_days)
        assert within == {s.backup_id for s in snapshots if s.taken_at >= cutoff}
    else:
        assert within == set()

    # (d) the order the snapshots arrive in changes nothing.
    shuffled = list(snapshots)
    random.Random(seed).shuffle(shuffled)
    assert decide(shuffled, policy, tz=zone_name) == decision


# Parsing the plans file's block --------------------------------------------------------------------------

WHERE = "plan 'documents', field 'retention'"


def test_parse_a_full_block() -> None:
    data = {"keep_last": 3, "keep_daily": 35, "keep_weekly": 12, "keep_monthly": 24, "keep_yearly": 7, "keep_within_days": 2}
    assert parse_retention(data, WHERE) == RetentionPolicy(**data)
    assert parse_retention({"keep_daily": 7}, WHERE) == RetentionPolicy(keep_daily=7)


@pytest.mark.parametrize(
    "data, fragments",
    [
        ("daily", [WHERE, "JSON object", "str"]),
        ([{"keep_daily": 7}], [WHERE, "JSON object", "list"]),
        (None, [WHERE, "JSON object", "NoneType"]),
        ({}, [WHERE, "at least one rule"]),
        ({"keep_daily": 0, "keep_weekly": 0}, [WHERE, "at least one rule"]),
        ({"keep_daily": 7, "keep_hourly": 24}, [WHERE, "'keep_hourly'", "unknown field"]),
        ({"keep_daily": "7"}, [WHERE, "'keep_daily'", "integer", "str"]),
        ({"keep_daily": 7.0}, [WHERE, "'keep_daily'", "integer", "float"]),
        ({"keep_weekly": True}, [WHERE, "'keep_weekly'", "boolean"]),
        ({"keep_monthly": -1}, [WHERE, "'keep_monthly'", "at least 0", "-1"]),
        ({"keep_yearly": MAX_KEEP + 1}, [WHERE, "'keep_yearly'", f"at most {MAX_KEEP}", str(MAX_KEEP + 1)]),
        ({"keep_within_days": None}, [WHERE, "'keep_within_days'", "integer", "NoneType"]),
        ({"keep_last": [3]}, [WHERE, "'keep_last'", "integer", "list"]),
    ],
    ids=[
        "a string",
        "a list",
        "null",
        "empty",
        "every rule zero",
        "unknown rule",
        "number as text",
        "a float",
        "a boolean",
        "negative",
        "too large",
        "null value",
        "a list value",
    ],
)
def test_a_bad_block_is_a_plan_error_naming_plan_and_field(data: Any, fragments: list[str]) -> None:
    with pytest.raises(PlanError) as caught:
        parse_retention(data, WHERE)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_the_dataclass_refuses_what_the_plans_file_refuses() -> None:
    with pytest.raises(ValueError, match="keep_daily"):
        RetentionPolicy(keep_daily=-1)
    with pytest.raises(ValueError, match="keep_weekly"):
        RetentionPolicy(keep_weekly=True)

"""The storage-class model against S3's documented rules, every expected value worked out by hand."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.cost.model import (
    StoredVersion,
    early_deletion,
    lifecycle_date,
    monthly_storage_cost,
    placement_at,
    timeline,
    transition_cost,
)
from chalicelib.plans import Lifecycle, Transition
from chalicelib.prices import load_prices

UTC = timezone.utc
GIB = 2**30
MIB = 2**20
KIB = 1024
PRICES = load_prices(environ={})
TIERED = (Transition(30, "GLACIER"), Transition(180, "DEEP_ARCHIVE"))
STANDARD_SMALL = Lifecycle(transitions=TIERED, small_objects="standard")
ARCHIVE_SMALL = Lifecycle(transitions=TIERED, small_objects="archive")
# Written Thursday 2026-01-15 10:30 UTC. +30 days is Feb 14 10:30, rounded up to Feb 15 00:00; +180 days is
# Jul 14 10:30 (16 days left of January, then 28 + 31 + 30 + 31 + 30, then 14), so Jul 15 00:00.
WRITTEN = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_s3_rounds_a_rule_date_up_to_midnight_utc() -> None:
    assert lifecycle_date(WRITTEN, 30) == utc(2026, 2, 15)
    assert lifecycle_date(WRITTEN, 180) == utc(2026, 7, 15)
    # The example in AWS's documentation: Jan 15 10:30 + 3 days moves on Jan 19 at 00:00.
    assert lifecycle_date(utc(2014, 1, 15, 10, 30), 3) == utc(2014, 1, 19)


@pytest.mark.parametrize(
    "size, small_objects, expected",
    [
        (131071, "standard", "STANDARD"),  # smaller than 128 KB: never moves under the default
        (131072, "standard", "GLACIER"),  # exactly 128 KB is not smaller: it moves
        (131073, "standard", "GLACIER"),
        (131071, "archive", "GLACIER"),  # varies_by_storage_class lets it go to GLACIER
        (0, "archive", "GLACIER"),
    ],
)
def test_the_128_kb_boundary(size: int, small_objects: str, expected: str) -> None:
    lifecycle = Lifecycle(transitions=TIERED, small_objects=small_objects)
    placement = placement_at(StoredVersion(size, WRITTEN), lifecycle, utc(2026, 3, 1))
    assert placement.storage_class == expected
    if expected == "STANDARD":
        assert placement.reason == "stays in STANDARD: under 128 KB (all_storage_classes_128K)"
    else:
        assert placement.since == utc(2026, 2, 15) and placement.reason == "GLACIER since day 30"


def test_small_objects_never_go_to_infrequent_access_even_when_archived() -> None:
    lifecycle = Lifecycle(transitions=(Transition(30, "STANDARD_IA"), Transition(120, "GLACIER")), small_objects="archive")
    small = StoredVersion(131071, WRITTEN)
    # Skips STANDARD_IA (128 KB minimum in every mode) but goes to GLACIER on day 120: May 15 10:30 -> May 16.
    assert placement_at(small, lifecycle, utc(2026, 3, 1)).storage_class == "STANDARD"
    assert placement_at(small, lifecycle, utc(2026, 5, 16)).storage_class == "GLACIER"
    assert placement_at(StoredVersion(131072, WRITTEN), lifecycle, utc(2026, 3, 1)).storage_class == "STANDARD_IA"


def test_current_version_crosses_day_30_and_day_180_at_midnight() -> None:
    version = StoredVersion(MIB, WRITTEN)
    assert placement_at(version, STANDARD_SMALL, utc(2026, 2, 14, 23, 59, 59)).storage_class == "STANDARD"
    assert placement_at(version, STANDARD_SMALL, utc(2026, 2, 15)).storage_class == "GLACIER"
    assert placement_at(version, STANDARD_SMALL, utc(2026, 7, 14, 23, 59, 59)).storage_class == "GLACIER"
    deep = placement_at(version, STANDARD_SMALL, utc(2026, 7, 15))
    assert (deep.storage_class, deep.since, deep.reason) == ("DEEP_ARCHIVE", utc(2026, 7, 15), "DEEP_ARCHIVE since day 180")
    with pytest.raises(ValueError):
        placement_at(version, STANDARD_SMALL, utc(2026, 1, 1))


def test_a_version_replaced_early_counts_its_days_from_becoming_noncurrent() -> None:
    # Replaced on Jan 25 at 02:00, still in STANDARD. Its current-version date (Feb 15) no longer applies;
    # the noncurrent one is Jan 25 02:00 + 30 days = Feb 24 02:00 -> Feb 25, and +180 days = Jul 24 -> Jul 25.
    version = StoredVersion(MIB, WRITTEN, noncurrent_since=utc(2026, 1, 25, 2))
    assert placement_at(version, STANDARD_SMALL, utc(2026, 2, 20)).storage_class == "STANDARD"
    assert placement_at(version, STANDARD_SMALL, utc(2026, 2, 24, 23, 59)).storage_class == "STANDARD"
    glacier = placement_at(version, STANDARD_SMALL, utc(2026, 2, 25))
    assert (glacier.storage_class, glacier.reason) == ("GLACIER", "GLACIER since day 30 after it became noncurrent")
    assert placement_at(version, STANDARD_SMALL, utc(2026, 7, 24, 23)).storage_class == "GLACIER"
    assert placement_at(version, STANDARD_SMALL, utc(2026, 7, 25)).storage_class == "DEEP_ARCHIVE"


def test_a_version_replaced_in_glacier_waits_180_noncurrent_days_for_deep_archive() -> None:
    # In GLACIER since Feb 15, replaced Apr 1 at 02:00. As a current version it would have reached
    # DEEP_ARCHIVE on Jul 15; as a noncurrent one it goes on Apr 1 02:00 + 180 days = Sep 28 02:00 -> Sep 29.
    version = StoredVersion(MIB, WRITTEN, noncurrent_since=utc(2026, 4, 1, 2))
    assert [(p.storage_class, p.since) for p in timeline(version, STANDARD_SMALL)] == [
        ("STANDARD", WRITTEN),
        ("GLACIER", utc(2026, 2, 15)),
        ("DEEP_ARCHIVE", utc(2026, 9, 29)),
    ]
    assert placement_at(version, STANDARD_SMALL, utc(2026, 8, 1)).storage_class == "GLACIER"


def test_a_small_noncurrent_version_stays_in_standard_under_the_default() -> None:
    version = StoredVersion(10 * KIB, WRITTEN, noncurrent_since=utc(2026, 1, 20))
    assert [p.storage_class for p in timeline(version, STANDARD_SMALL)] == ["STANDARD"]
    assert [p.storage_class for p in timeline(version, ARCHIVE_SMALL)] == ["STANDARD", "GLACIER", "DEEP_ARCHIVE"]


def test_monthly_storage_includes_40_kb_per_archived_object() -> None:
    cost = monthly_storage_cost([("GLACIER", GIB), ("DEEP_ARCHIVE", MIB), ("STANDARD", 10 * KIB)], PRICES)
    # GLACIER: 1 GiB + 32 KiB at 0.0036. DEEP_ARCHIVE: 1 MiB + 32 KiB at 0.00099. STANDARD: the 10 KiB
    # object plus 8 KiB for each of the two archived objects, at 0.023.
    assert cost["GLACIER"] == pytest.approx((GIB + 32 * KIB) / GIB * 0.0036, rel=1e-12)
    assert cost["DEEP_ARCHIVE"] == pytest.approx((MIB + 32 * KIB) / GIB * 0.00099, rel=1e-12)
    assert cost["STANDARD"] == pytest.approx((10 * KIB + 2 * 8 * KIB) / GIB * 0.023, rel=1e-12)


def test_a_tiny_archived_object_costs_more_than_in_standard() -> None:
    # 1 KiB in STANDARD: 1 KiB x 0.023. In DEEP_ARCHIVE: 8 KiB x 0.023 + 33 KiB x 0.00099, about 8.1 times more.
    standard = sum(monthly_storage_cost([("STANDARD", KIB)], PRICES).values())
    archived = sum(monthly_storage_cost([("DEEP_ARCHIVE", KIB)], PRICES).values())
    assert standard == pytest.approx(KIB / GIB * 0.023)
    assert archived == pytest.approx((8 * KIB * 0.023 + 33 * KIB * 0.00099) / GIB)
    assert archived > 8 * standard


def test_transition_requests() -> None:
    version = StoredVersion(GIB, WRITTEN)
    # Into GLACIER (0.03 per 1,000) and DEEP_ARCHIVE (0.05 per 1,000).
    assert transition_cost(version, STANDARD_SMALL, PRICES) == pytest.approx(0.00003 + 0.00005)
    assert transition_cost(version, STANDARD_SMALL, PRICES, until=utc(2026, 7, 1)) == pytest.approx(0.00003)
    assert transition_cost(StoredVersion(KIB, WRITTEN), STANDARD_SMALL, PRICES) == 0


def test_early_deletion_from_glacier_is_billed_for_the_rest_of_90_days() -> None:
    version = StoredVersion(GIB, WRITTEN)
    # In GLACIER from Feb 15 to Apr 1: 14 days of February (2026 is not a leap year) and 31 of March = 45.
    charge = early_deletion(version, STANDARD_SMALL, utc(2026, 4, 1), PRICES)
    assert (charge.storage_class, charge.days_in_class, charge.remaining_days) == ("GLACIER", 45, 45)
    assert charge.charge == pytest.approx((GIB + 32 * KIB) / GIB * 0.0036 * 45 / 30)


def test_early_deletion_counts_from_entering_deep_archive_not_from_writing() -> None:
    version = StoredVersion(GIB, WRITTEN)
    # 198 days after writing, but only 17 in DEEP_ARCHIVE (Jul 15 to Aug 1): 163 days are still owed.
    charge = early_deletion(version, STANDARD_SMALL, utc(2026, 8, 1), PRICES)
    assert (charge.storage_class, charge.days_in_class, charge.remaining_days) == ("DEEP_ARCHIVE", 17, 163)
    assert charge.charge == pytest.approx((GIB + 32 * KIB) / GIB * 0.00099 * 163 / 30)


def test_no_early_deletion_after_the_minimum_or_from_standard() -> None:
    glacier_only = Lifecycle(transitions=(Transition(30, "GLACIER"),))
    # GLACIER from Feb 15; deleted May 16 (90 days later: 13 + 31 + 30 + 16) owes nothing.
    assert early_deletion(StoredVersion(GIB, WRITTEN), glacier_only, utc(2026, 5, 16), PRICES).charge == 0
    assert early_deletion(StoredVersion(GIB, WRITTEN), glacier_only, utc(2026, 5, 15), PRICES).remaining_days == 1
    assert early_deletion(StoredVersion(GIB, WRITTEN), glacier_only, utc(2026, 2, 1), PRICES).charge == 0
    small = early_deletion(StoredVersion(KIB, WRITTEN), STANDARD_SMALL, utc(2026, 4, 1), PRICES)
    assert (small.storage_class, small.charge) == ("STANDARD", 0)


def test_a_version_must_be_written_before_it_is_replaced() -> None:
    with pytest.raises(ValueError):
        StoredVersion(1, WRITTEN, noncurrent_since=utc(2026, 1, 1))
    with pytest.raises(ValueError):
        StoredVersion(1, datetime(2026, 1, 1))

"""The vault's cost model (chalicelib/cost/vault_model.py) against histories counted by hand, and the prices it
reads (the prices file's `replication`)."""

from __future__ import annotations

import copy
import json
from datetime import date

import pytest

from chalicelib.cost.bills import Day
from chalicelib.cost.vault_model import VaultSettings, vault_months, vault_restore
from chalicelib.cost.workload import SizeClass, Workload
from chalicelib.prices import DEFAULT_PRICES_FILE, GB, PriceError, load_prices, parse_prices

PRICES = load_prices(environ={})
KIB = 1024
# 1,000 objects of one GB: GB-months and dollars can be counted by hand.
WORKLOAD = Workload("w", 1000, (SizeClass("gigabytes", GB, 1.0),), 0.1, 0.01, 0.0)
# Day 0 copies everything; day 1 copies 100 changed objects; day 2 copies 50 changed ones, and 10 objects are
# deleted at the source (their keys stay current in the vault: delete markers are not replicated).
RECORDS = [
    Day(copies=1000, objects=1000, versions=0, deleted=0),
    Day(copies=100, objects=1000, versions=0, deleted=0),
    Day(copies=50, objects=990, versions=0, deleted=10),
]
MANIFEST_ENTRY = 110


def test_the_shipped_replication_prices() -> None:
    rates = PRICES.replication
    assert (rates.inter_region_transfer_per_gb, rates.rtc_per_gb) == (0.02, 0.015)
    assert rates.put_per_1000["DEEP_ARCHIVE"] == 0.05 and rates.put_per_1000["GLACIER"] == 0.03
    assert rates.put_per_1000["STANDARD"] == PRICES.put_copy_post_list
    assert "https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication.html" in PRICES.source


def test_a_replication_price_missing_or_wrong_is_named() -> None:
    document = json.loads(DEFAULT_PRICES_FILE.read_text())
    broken = copy.deepcopy(document)
    del broken["replication"]["put_per_1000"]["DEEP_ARCHIVE"]
    with pytest.raises(PriceError, match=r"field 'replication.put_per_1000.DEEP_ARCHIVE': is required"):
        parse_prices(broken)
    broken = copy.deepcopy(document)
    broken["replication"]["rtc_per_gb"] = "0.015"
    with pytest.raises(PriceError, match=r"field 'replication.rtc_per_gb': must be a non-negative number, got str"):
        parse_prices(broken)


def test_three_days_of_a_vault_in_deep_archive_counted_by_hand() -> None:
    vault = VaultSettings("DEEP_ARCHIVE", expire_after_days=1)
    (month,) = vault_months(RECORDS, WORKLOAD, vault, PRICES, date(2026, 1, 1), MANIFEST_ENTRY)
    assert month.label == "2026-01" and month.days == 31
    # Held after each day: 1,000 current; 1,000 + 100 replaced; 1,000 (the deleted keys stay) + 50 (the 100
    # replaced on day 1 expired a day later).
    assert (month.current_versions, month.noncurrent_versions) == (1000, 50)
    assert month.storage == pytest.approx((1000 + 1100 + 1050) / 31 * 0.00099)
    # 8 KiB at STANDARD and 32 KiB at DEEP_ARCHIVE per replica and day held.
    assert month.overhead == pytest.approx((1000 + 1100 + 1050) / 31 * (8 * 0.023 + 32 * 0.00099) / (1024 * 1024))
    # The 100 expired after 1 day of 180: 179 days more of their GB and 32 KiB billed.
    assert month.early_deletions == pytest.approx(100 * (1 + 32 / 1024**2) * 179 / 30 * 0.00099)
    # One PUT per replica at DEEP_ARCHIVE's price, two metadata replicas a backup at STANDARD's.
    assert month.puts == pytest.approx(1150 * 0.05 / 1000 + 6 * 0.005 / 1000)
    manifests = (1000 + 1000 + 990) * MANIFEST_ENTRY
    assert month.transfer == pytest.approx((1150 * GB + manifests) / GB * 0.02)
    assert month.rtc == 0
    # Every manifest stays in the vault (deletions are not replicated): 1, 2 and 3 days' worth held.
    assert month.metadata == pytest.approx((1000 + 2000 + 2990) * MANIFEST_ENTRY / 31 * 0.023 / GB)
    assert month.total == pytest.approx(
        month.storage + month.overhead + month.early_deletions + month.puts + month.transfer + month.metadata
    )


def test_the_same_region_pays_no_transfer_and_rtc_is_per_gb() -> None:
    here = VaultSettings("GLACIER_IR", expire_after_days=400, cross_region=False, rtc=True)
    (month,) = vault_months(RECORDS, WORKLOAD, here, PRICES, date(2026, 1, 1), MANIFEST_ENTRY)
    manifests = (1000 + 1000 + 990) * MANIFEST_ENTRY
    assert month.transfer == 0 and month.rtc == pytest.approx((1150 * GB + manifests) / GB * 0.015)
    # No archive overhead outside GLACIER and DEEP_ARCHIVE; nothing expired: 1,000 + 1,100 + 1,150 GB-days.
    assert month.overhead == 0 and month.early_deletions == 0
    assert month.storage == pytest.approx((1000 + 1100 + 1150) / 31 * 0.004)
    assert month.puts == pytest.approx(1150 * 0.02 / 1000 + 6 * 0.005 / 1000)


def test_a_full_restore_from_the_vault_per_tier() -> None:
    restore = vault_restore(1000, 1000 * GB, "DEEP_ARCHIVE", PRICES, cross_region=True, thawed_days=3)
    bulk, standard = restore.tiers["Bulk"], restore.tiers["Standard"]
    assert bulk["retrieval_usd"] == pytest.approx(1000 * 0.0025 + 1000 * 0.025 / 1000)
    assert standard["retrieval_usd"] == pytest.approx(1000 * 0.02 + 1000 * 0.10 / 1000)
    assert bulk["thawed_copies_usd"] == pytest.approx(1000 * 0.023 * 3 / 30)
    assert bulk["copy_requests_usd"] == pytest.approx(1000 * 0.005 / 1000) and bulk["transfer_usd"] == pytest.approx(20.0)
    assert (bulk["thaw_hours_at_most"], standard["thaw_hours_at_most"]) == (48, 12)
    assert bulk["total_usd"] == pytest.approx(sum(v for k, v in bulk.items() if k.endswith("_usd") and k != "total_usd"))
    # Replicas read at once: no thaw and no thawed copy, GLACIER_IR's retrieval per GB and per read, and no
    # transfer within the vault's region.
    instant = vault_restore(10, 10 * GB, "GLACIER_IR", PRICES, cross_region=False, thawed_days=3)
    assert list(instant.tiers) == ["Instant"] and instant.tiers["Instant"]["thawed_copies_usd"] == 0
    assert instant.tiers["Instant"]["total_usd"] == pytest.approx(10 * 0.005 / 1000 + 10 * 0.03 + 10 * 0.01 / 1000)
    assert "read at once" in instant.note
    # A class with no retrieval fee (STANDARD) is read at once for the copies alone.
    plain = vault_restore(10, 10 * GB, "STANDARD", PRICES, cross_region=False, thawed_days=3)
    assert list(plain.tiers) == ["none"] and plain.tiers["none"]["total_usd"] == pytest.approx(10 * 0.005 / 1000)

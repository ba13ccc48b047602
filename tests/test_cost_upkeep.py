"""The upkeep model: each job's requests a day as a function of what the bucket holds, priced."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from chalicelib.cost.prune_upkeep import PRUNE_SWEPT_LOOKBACK, prune_waiting, prune_when_due
from chalicelib.cost.upkeep import cost_report, describe, job_usd, request_usd, upkeep_day
from chalicelib.cost.verify_upkeep import VERIFY_LOOKBACK, verification_waiting, verification_when_due
from chalicelib.cost.upkeep_model import (
    CHECKED_MERGE_SECONDS,
    COST_ROW_SECONDS,
    COST_VERSION_SECONDS,
    COUNT_ROW_SECONDS,
    ENTRY_SECONDS,
    EPHEMERAL_STORAGE_MB,
    INDEX_LINE_BYTES,
    MANIFEST_ENTRY_BYTES,
    MERGE_ENTRY_SECONDS,
    REPORT_RUN_ROW_BYTES,
    FUNCTION_MEMORY_MB,
    INDEX_ROW_SECONDS,
    INDEX_WRITE_SECONDS,
    JOB_FUNCTIONS,
    JOBS,
    REQUEST_SECONDS,
    REPORT_ROW_SECONDS,
    SORTED_ROW_SECONDS,
    VERIFY_SAVE_EVERY,
    VERIFY_SAVE_EVERY_AGAINST_REPORT,
    VERIFY_SLICES,
    BucketDay,
    UpkeepSettings,
    spool_bytes,
)
from chalicelib.deploy.template import EPHEMERAL_STORAGE_MB as DEPLOYED_TMP_MB
from chalicelib.plans import InventoryPlan, PlanSet
from chalicelib.prices import load_prices
from chalicelib.prune.job import SWEPT_LOOKBACK
from chalicelib.verify.plan_check import SAVE_EVERY, SAVE_EVERY_AGAINST_REPORT
from chalicelib.verify.cadence import LOOKBACK
from chalicelib.verify.checks import SLICES

ROOT = Path(__file__).resolve().parent.parent
PRICES = load_prices(environ={})
# About the office workload at month 12: 470,000 versions, 51 kept snapshots of about 100,000 entries.
OFFICE = BucketDay(versions=470_000, named_versions=468_000, snapshots=51, manifest_entries=5_100_000, deleted=2_000)


def test_the_model_follows_the_code_it_counts() -> None:
    # The verification's slices, and the memory of the functions that run each job.
    assert VERIFY_SLICES == SLICES and PRUNE_SWEPT_LOOKBACK == SWEPT_LOOKBACK and VERIFY_SAVE_EVERY == SAVE_EVERY
    assert VERIFY_SAVE_EVERY_AGAINST_REPORT == SAVE_EVERY_AGAINST_REPORT and VERIFY_LOOKBACK == LOOKBACK
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["lambda_functions"]
    assert set(JOB_FUNCTIONS.values()) == set(FUNCTION_MEMORY_MB)
    for function, memory in FUNCTION_MEMORY_MB.items():
        assert config[function]["lambda_memory_size"] == memory, function


def test_the_weekly_verification_heads_a_seventh_of_the_named_versions_a_day() -> None:
    jobs = upkeep_day(OFFICE, UpkeepSettings())
    verification = jobs["verification"]
    assert verification.requests["head"] == pytest.approx(468_000 / 7)
    # One invocation is enough here: its record (after asking for its sealed result), yesterday's kept index
    # and the day's new manifest are read once (not the 51 kept manifests); the markers, snapshots and indexes
    # listed; no sample is re-read.
    assert verification.invocations == 1
    assert verification.requests["get"] == 2 + 1 + 1 and verification.requests["list"] == 3
    # Created, after every tenth of 67 batches, after the plan, at the end; the new index; the sealed result.
    assert verification.requests["put"] == 1 + 6 + 1 + 1 + 1 + 1
    sampled = upkeep_day(OFFICE, UpkeepSettings(verify_sample_percent=1))["verification"]
    assert sampled.requests["get"] == pytest.approx(4 + 468_000 / 7 / 100)
    # Without an earlier index, every kept manifest is merged once.
    first = upkeep_day(BucketDay(**{**OFFICE.__dict__, "indexed": False}), UpkeepSettings())["verification"]
    assert first.requests["get"] == 2 + 51 and first.seconds > verification.seconds
    # Today's slice, where it is known, instead of the average.
    known = upkeep_day(BucketDay(versions=10, named_versions=10, snapshots=1, manifest_entries=10, checked=0), UpkeepSettings())
    assert "head" not in known["verification"].requests and known["verification"].requests["put"] == 5


def test_a_verification_that_takes_several_invocations_reads_the_kept_index_in_each() -> None:
    large = BucketDay(versions=42e6, named_versions=42e6, snapshots=51, manifest_entries=510e6)
    verification = upkeep_day(large, UpkeepSettings())["verification"]
    n = verification.invocations
    assert n > 1
    # Its record (after asking for its sealed result) and the index in each invocation (yesterday's in the
    # first), the day's manifest once.
    assert verification.requests["get"] == 2 * n + n + 1
    # 42 million distinct versions, not 510 million manifest entries, in each: every invocation reaches its
    # checkpoint. An index of 200 million versions would take longer to read than an invocation has.
    assert [limit for limit in verification.limits if "would not finish" in limit] == []
    # Its /tmp: the index read and the new one written beside it (the day's manifest is read as S3 sends it),
    # about 7 GB, within the 10,240 MB the deployment gives verify_worker.
    assert verification.limits == []
    assert 6_900 < spool_bytes(large, report=False) / 2**20 < EPHEMERAL_STORAGE_MB["verify_worker"] == 10_240
    larger = upkeep_day(BucketDay(**{**large.__dict__, "named_versions": 200e6}), UpkeepSettings())["verification"]
    # Five times as many: the two indexes no longer fit in the most /tmp Lambda gives.
    (tmp,) = larger.limits
    assert "33,188 MB" in tmp and "cannot run in one function" in tmp


def test_the_prune_lists_every_data_version_twice_and_the_cost_report_once() -> None:
    jobs = upkeep_day(OFFICE, UpkeepSettings())
    # 470,000 versions, 1,000 a page, with the source folders', the long keys' and the packs' listings.
    walk = 1 + 470 + 1 + 1
    # The catalog in each of the five phases (six listings, the restore queue among them) and the markers
    # again when marking; with the superseded kept index listed (its keys and versions) and deleted; and the
    # earlier prunes' records listed and read (the guard's baseline).
    earlier = min(PRUNE_SWEPT_LOOKBACK, OFFICE.prunes_in_window + 1)
    # The relocation records of repacked packs, listed by each sweep: 2.
    assert jobs["prune"].requests["list"] == 31 + 2 * walk + 2 + 1 + 2 and jobs["prune"].requests["delete"] == 1
    assert jobs["prune"].requests["get"] == 1 + 2 * 51 + earlier
    # The record: created, after each phase, concluded, and before the delete pass's last DeleteObjects.
    assert jobs["prune"].requests["post"] == 2 and jobs["prune"].requests["put"] == 8
    removing = upkeep_day(BucketDay(**{**OFFICE.__dict__, "removed": 1}), UpkeepSettings())["prune"]
    # A marker, and the record saved before the manifests' DeleteObjects.
    assert removing.requests["put"] == 10 and removing.requests["post"] == 3
    # 30 backup records (a page of 100), 30 prune records, 51 snapshots each looked at four ways.
    assert jobs["cost_report"].requests["list"] == 1 + 1 + 1 + 51 + walk
    assert jobs["cost_report"].requests["get"] == 30 + 30 + 3 * 51 + 1
    assert jobs["cost_report"].requests["head"] == 20


def test_against_a_report_the_verification_checks_every_version_once_per_report() -> None:
    office = BucketDay(**{**OFFICE.__dict__, "written": 1_150})
    by_head = upkeep_day(office, UpkeepSettings())["verification"]
    daily = UpkeepSettings(inventory="Daily", verify_sample_percent=0.1)
    due = verification_when_due(office, daily)
    # A daily report makes it due every day: every kept version (not a seventh) against the report. What the
    # backups wrote since the scan waits for the next report: no HEAD (none is expected gone); a GET for the
    # 0.1% sample.
    assert upkeep_day(office, daily)["verification"].requests == due.requests
    assert "head" not in due.requests and due.invocations == 1
    # The report's folders and the verification records listed, besides the markers, snapshots and indexes.
    assert due.requests["list"] == by_head.requests["list"] + 2 == 1 + 1 + 3
    # Its record, after asking for its sealed result; the report's manifest.json, manifest.checksum and data
    # file; ten verification records, its own after asking for its sealed result too; yesterday's index and
    # the day's manifest; the sample.
    assert due.requests["get"] == pytest.approx(2 + 3 + 10 + 1 + 1 + 1 + 468_000 / 1000)
    # Created, after every hundredth of 468 batches, after the plan, at the end; the new index; the sealed result.
    assert due.requests["put"] == 1 + 4 + 1 + 1 + 1 + 1
    # Today's counts, where known, instead of the estimates.
    known = verification_when_due(BucketDay(**{**office.__dict__, "unreported": 5, "sampled": 2}), daily)
    assert known.requests["head"] == 5 and known.requests["get"] == 2 + 3 + 10 + 1 + 1 + 1 + 2
    # A weekly report: due one day in seven, with the week's manifests merged into the index; the six other
    # days it only checks that it waits (its record, the report's manifest, the verification records, a sealed
    # result asked for before its own record is read, twice; the result sealed).
    weekly = UpkeepSettings(inventory="Weekly", verify_sample_percent=0.1)
    week = verification_when_due(BucketDay(**{**office.__dict__, "new_snapshots": 7}), weekly)
    waiting = verification_waiting(office, weekly)
    assert waiting.requests == {"list": 2, "get": 1 + 2 + 10 + 2, "put": 3 + 1} and waiting.invocations == 1
    assert week.requests["get"] == due.requests["get"] + 6
    average = upkeep_day(office, weekly)["verification"]
    for kind in ("list", "get", "put"):
        assert average.requests[kind] == pytest.approx((week.requests[kind] + 6 * waiting.requests[kind]) / 7)
    assert average.seconds == pytest.approx((week.seconds + 6 * waiting.seconds) / 7) and average.seconds < by_head.seconds / 2
    assert not average.limits


def test_at_ten_million_objects_the_due_verification_finishes_within_an_invocation_and_its_tmp() -> None:
    large = BucketDay(versions=42.5e6, named_versions=42.5e6, snapshots=51, manifest_entries=510e6, new_snapshots=7)
    due = verification_when_due(large, UpkeepSettings(inventory="Weekly", verify_sample_percent=0.1))
    assert due.limits == []
    # The week's seven manifests (read as S3 sends them) merged into the index and the index written: within
    # the first invocation; and the report read and sorted before each invocation's first checkpoint.
    update = 42.5e6 * (INDEX_ROW_SECONDS + INDEX_WRITE_SECONDS) + 7 * 10e6 * MERGE_ENTRY_SECONDS
    assert 600 < update < 840
    reading = (42.5e6 + 51) * REPORT_ROW_SECONDS + 42.5e6 * SORTED_ROW_SECONDS
    assert 500 < reading < 840
    # /tmp: the earlier index and the new one side by side (87 bytes a version each), more than the report's
    # runs (54 bytes a row) beside the new index, within the 10,240 MB verify_worker has.
    assert spool_bytes(large, report=True) == 2 * 42.5e6 * 87
    assert 42.5e6 * (87 + 54) < 2 * 42.5e6 * 87 < EPHEMERAL_STORAGE_MB["verify_worker"] * 2**20
    # Twice the size: the update alone takes more than an invocation, and /tmp cannot hold both indexes.
    double = BucketDay(versions=85e6, named_versions=85e6, snapshots=51, manifest_entries=1020e6, new_snapshots=7)
    index, report, tmp = verification_when_due(double, UpkeepSettings(inventory="Weekly")).limits
    assert "bringing the kept index up to date" in index and "would not finish" in index
    assert "reads and sorts the report" in report and "cannot run in one function" in tmp


def test_at_ten_million_objects_the_due_prune_streams_its_manifests_and_fits_the_tmp_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    large = BucketDay(versions=42.5e6, named_versions=42.5e6, snapshots=51, manifest_entries=510e6, new_snapshots=1)
    weekly = UpkeepSettings(inventory="Weekly")
    due = prune_when_due(large, weekly, period=7)
    assert due.limits == []
    # The week's seven manifests merged as S3 sends them (each checked: order and SHA-256), the old index read
    # and the new one written; the merge no longer costs a manifest entry's full read.
    assert CHECKED_MERGE_SECONDS < ENTRY_SECONDS
    # /tmp: the earlier index and the new one side by side (the manifests are not copied), more than the
    # report's runs beside the new index; within what the deployment gives prune_worker.
    needed = spool_bytes(large, report=True, indexed=True)
    assert needed == 2 * 42.5e6 * INDEX_LINE_BYTES > 42.5e6 * (INDEX_LINE_BYTES + REPORT_RUN_ROW_BYTES)
    assert needed < EPHEMERAL_STORAGE_MB["prune_worker"] * 2**20 == DEPLOYED_TMP_MB["prune_worker"] * 2**20
    # Without it (Lambda's 512 MB), the model says the prune cannot run.
    monkeypatch.setitem(EPHEMERAL_STORAGE_MB, "prune_worker", 512)
    (tmp,) = prune_when_due(large, weekly, period=7).limits
    assert f"about {needed / 2**20:,.0f} MB in /tmp" in tmp and "512 MB prune_worker has" in tmp


def test_the_cost_report_counts_each_row_as_its_join_and_tally_take_it() -> None:
    """A row of the report costs the cost report what scripts/bench_rows.py's cost-row measures (read, sorted,
    split by source, read back as a listing, counted by the tally), not a sorted row's time; the manifests it
    reads are decoded in blocks (a merge-entry's time). That is the way when no verification has counted a
    fresh report's rows."""
    large = BucketDay(versions=42.5e6, named_versions=42.5e6, snapshots=51, manifest_entries=510e6, cost_recomputed=1, cost_counted=False)
    weekly = UpkeepSettings(inventory="Weekly")
    job = cost_report(large, weekly)
    rows = 42.5e6 + 51
    assert COST_ROW_SECONDS > 2 * (REPORT_ROW_SECONDS + SORTED_ROW_SECONDS)
    limit, tmp = job.limits
    assert f"{rows * COST_ROW_SECONDS:,.0f} s of it each row of the bucket joined and counted" in limit
    # The week's seven manifests the prune's index does not cover, and the index's lines.
    named = 7 * 10e6 * MERGE_ENTRY_SECONDS + 42.5e6 * INDEX_ROW_SECONDS
    total = float(limit.split("takes about ")[1].split(" s")[0].replace(",", ""))
    assert total == pytest.approx(rows * COST_ROW_SECONDS + named, abs=60) and total > 840
    # Its /tmp: the prune's index and the seven manifests it reads, held through the join beside the report's
    # sorted runs: more than backup_worker's 512 MB, more than any function's.
    spooled = 42.5e6 * INDEX_LINE_BYTES + 7 * 10e6 * MANIFEST_ENTRY_BYTES + rows * REPORT_RUN_ROW_BYTES
    assert f"about {spooled / 2**20:,.0f} MB in /tmp" in tmp and "512 MB backup_worker has" in tmp and "cannot run in one function" in tmp
    # The office workload's fits.
    assert cost_report(BucketDay(**{**OFFICE.__dict__, "cost_recomputed": 1.0}), weekly).limits == []
    # Without an inventory, each listed version is joined and counted the same way, beside its listing.
    listed = cost_report(OFFICE, UpkeepSettings())
    assert listed.seconds > 470_000 * COST_VERSION_SECONDS + 5_100_000 * MERGE_ENTRY_SECONDS


def test_counted_by_the_verification_the_cost_report_reads_no_row_and_fits_at_ten_million_objects() -> None:
    """With the verification's counts (cost/row_counts.py) the cost report's requests and seconds do not grow
    with the bucket: the window's records, the sealed results, the HeadObject sample. The rows are counted in
    the verification's seconds instead, once each (`COUNT_ROW_SECONDS`), and it still fits its invocations."""
    large = BucketDay(versions=42.5e6, named_versions=42.5e6, snapshots=51, manifest_entries=510e6, cost_recomputed=1)
    small = BucketDay(**{**OFFICE.__dict__, "cost_recomputed": 1.0})
    weekly = UpkeepSettings(inventory="Weekly")
    job, office = cost_report(large, weekly), cost_report(small, weekly)
    assert job.limits == [] and job.seconds < 10 and job.requests == office.requests
    # The report looked for and the snapshots listed; the window's records (a page of each), the sealed results
    # (the one that counted, behind three that waited on average); the report chosen (its folders, manifest and
    # checksum), the pruned markers and the kept figures; the sample; the figures and the report written.
    assert job.requests["list"] == 1 + 1 + 1 + 1 + 1 + 1
    assert job.requests["get"] == 1 + 30 + 30 + 4 + 2 + 1
    assert job.requests["head"] == 20 and job.requests["put"] == 2
    uncounted = cost_report(dataclasses.replace(large, cost_counted=False), weekly)
    assert uncounted.limits and uncounted.seconds > 100 * job.seconds
    # The verification pays for the rows: once each, far less than the cost report's own pass.
    verifying = verification_when_due(large, weekly)
    before = verifying.seconds - 42.5e6 * COUNT_ROW_SECONDS
    assert COUNT_ROW_SECONDS < COST_ROW_SECONDS / 3 and verifying.limits == [] and before > 0


def test_with_an_inventory_the_prune_and_the_cost_report_read_the_report_and_list_no_version() -> None:
    settings = UpkeepSettings(inventory="Daily")
    removing = BucketDay(**{**OFFICE.__dict__, "removed": 1})
    jobs = upkeep_day(removing, settings)
    by_listing = upkeep_day(removing, UpkeepSettings())
    # With a daily report the prune works every day: the catalog; the prune records and the report's folder
    # for the check that it is due; the prune's indexes in each pass; the report's folder in each pass; the
    # verification's and its own superseded indexes, keys and versions; the relocation records in each pass.
    assert jobs["prune"].requests == prune_when_due(removing, settings).requests
    assert jobs["prune"].requests["list"] == 31 + 2 + 2 + 2 + 2 + 2 + 2
    # Its record; ten prune records and the report's manifest and checksum; its index in each pass and the
    # day's new manifest merged into it (not the 51 kept ones); in each pass the report's three objects.
    assert jobs["prune"].requests["get"] == 1 + 10 + 2 + 2 + 1 + 2 * 3
    # The record also saved after each of the two full DeleteObjects, and the new index written.
    assert jobs["prune"].requests["put"] == by_listing["prune"].requests["put"] + 2 + 1
    assert jobs["prune"].requests["post"] == by_listing["prune"].requests["post"]
    # A day a new report arrived: the figures computed from it (the report's folder listed, its manifest.json,
    # manifest.checksum and data file read; the kept figures read, then written). Which versions are named:
    # the prune's indexes listed and the newest read, and only the manifest it does not cover yet (today's),
    # not the 51 kept ones; each snapshot's pruned marker and record still read, its versions listed.
    # (Before a verification has counted the report's rows for it.)
    computing = upkeep_day(BucketDay(**{**OFFICE.__dict__, "removed": 1, "cost_recomputed": 1.0, "cost_counted": False}), settings)
    assert computing["cost_report"].requests["list"] == 1 + 1 + 1 + 51 + 1 + 1 + 1
    assert computing["cost_report"].requests["get"] == 30 + 30 + 2 * 51 + 1 + 1 + 1 + 3 + 1
    # Without the prune's index (none written yet): every kept manifest.
    unindexed = upkeep_day(BucketDay(**{**OFFICE.__dict__, "cost_recomputed": 1.0, "cost_indexed": False, "cost_counted": False}), settings)
    assert unindexed["cost_report"].requests["get"] == computing["cost_report"].requests["get"] - 1 - 1 + 51
    assert unindexed["cost_report"].seconds > computing["cost_report"].seconds
    assert computing["cost_report"].requests["put"] == 1 + 1
    # The requests one after another; the old index read, the new manifest merged, the new index written and
    # each of its lines read twice in each pass; every row read and sorted in each pass.
    sent = sum(count for kind, count in jobs["prune"].requests.items() if kind != "delete") + 1
    index = 468_000 * INDEX_ROW_SECONDS + 100_000 * CHECKED_MERGE_SECONDS + 468_000 * INDEX_WRITE_SECONDS + 4 * 468_000 * INDEX_ROW_SECONDS
    row = REPORT_ROW_SECONDS + SORTED_ROW_SECONDS
    assert jobs["prune"].seconds == pytest.approx(sent * 0.1 + index + 2 * 470_051 * row, rel=0.01)
    # 42,000,051 rows: 43 data files of at most a million rows (an assumption: AWS does not say how it splits).
    large = upkeep_day(BucketDay(versions=42e6, named_versions=42e6, snapshots=51, manifest_entries=510e6), settings)
    uncounted = BucketDay(versions=42e6, named_versions=42e6, snapshots=51, manifest_entries=510e6, cost_recomputed=1, cost_counted=False)
    large = upkeep_day(uncounted, settings)
    assert large["cost_report"].requests["get"] == 30 + 30 + 2 * 51 + 1 + 1 + 1 + 2 + 43 + 1
    # The prune's pass (the report sorted, its index read twice) fits in an invocation; the cost report's
    # own pass does not fit in the backup's, but with the verification's counts it reads no row.
    assert not large["prune"].limits and large["cost_report"].limits
    assert not upkeep_day(dataclasses.replace(uncounted, cost_counted=True), settings)["cost_report"].limits
    double = upkeep_day(BucketDay(versions=84e6, named_versions=84e6, snapshots=51, manifest_entries=1020e6), settings)
    assert "carry on between invocations" in double["prune"].limits[0]


def test_with_a_weekly_report_the_prune_works_once_a_week_and_checks_on_the_other_days() -> None:
    weekly = UpkeepSettings(inventory="Weekly")
    waiting = prune_waiting(OFFICE, weekly)
    # The prune records and the report's manifest and checksum, its record read and written three times.
    assert waiting.requests == {"list": 2, "get": 10 + 2 + 1, "put": 3}
    # The week's work on one day: seven days of deletions, removed snapshots and new manifests.
    week = BucketDay(**{**OFFICE.__dict__, "removed": 1})
    seven = {"deleted": 7 * week.deleted, "removed": 7, "superseded_indexes": 7}
    due = prune_when_due(BucketDay(**{**week.__dict__, **seven}), weekly, period=7)
    assert due.requests["get"] == 1 + 10 + 2 + 2 + 7 + 2 * 3 and due.requests["post"] == 14 + 1
    # The verification's seven superseded indexes and the prune's own.
    assert due.requests["delete"] == 7 + 1
    day = upkeep_day(week, weekly)["prune"]
    for kind in due.requests:
        assert day.requests[kind] == pytest.approx((due.requests[kind] + 6 * waiting.requests.get(kind, 0)) / 7)
    assert day.seconds == pytest.approx((due.seconds + 6 * waiting.seconds) / 7)
    # Neither grows with the manifests kept: only the report's rows and the index's lines do.
    more = BucketDay(**{**week.__dict__, "snapshots": 510, "manifest_entries": 51_000_000})
    assert upkeep_day(more, weekly)["prune"].requests == day.requests


def test_inventory_is_counted_only_when_the_plans_set_it() -> None:
    assert upkeep_day(OFFICE, UpkeepSettings())["inventory"].requests == {}
    daily = upkeep_day(OFFICE, UpkeepSettings(inventory="Daily"))["inventory"]
    weekly = upkeep_day(OFFICE, UpkeepSettings(inventory="Weekly"))["inventory"]
    assert daily.requests == {"inventory_objects": 470_000 + 51}
    assert weekly.requests["inventory_objects"] == pytest.approx(daily.requests["inventory_objects"] / 7)
    assert job_usd(daily, UpkeepSettings(), PRICES) == pytest.approx(470_051 * 0.0025 / 1e6)
    plans = PlanSet(plans=(), catalog_bucket="c", inventory=InventoryPlan(bucket="inv", frequency="Weekly"))
    assert UpkeepSettings.of_plans(plans).inventory == "Weekly"
    assert UpkeepSettings.of_plans(plans).verify_sample_percent == 0.1
    assert UpkeepSettings.of_plans(PlanSet(plans=(), catalog_bucket="c")).inventory is None


def test_requests_are_priced_by_kind() -> None:
    requests = {"list": 1000, "put": 1000, "post": 1000, "get": 1000, "head": 1000, "sns": 1e6}
    assert request_usd(requests, PRICES) == pytest.approx(3 * 0.005 + 2 * 0.0004 + 0.5)


def test_lambda_time_is_billed_at_the_functions_memory() -> None:
    settings = UpkeepSettings()
    prune = upkeep_day(OFFICE, settings)["prune"]
    halved = UpkeepSettings(memory_mb={**FUNCTION_MEMORY_MB, "prune_worker": 512})
    lambda_usd = prune.seconds * PRICES.upkeep.lambda_gb_second
    assert job_usd(prune, settings, PRICES) - job_usd(prune, halved, PRICES) == pytest.approx(lambda_usd / 2)


def test_upkeep_grows_with_what_is_stored_and_is_reported_per_job() -> None:
    small = describe(upkeep_day(OFFICE, UpkeepSettings()), UpkeepSettings(), PRICES)
    double = BucketDay(versions=940_000, named_versions=936_000, snapshots=51, manifest_entries=10_200_000, deleted=2_000)
    large = describe(upkeep_day(double, UpkeepSettings()), UpkeepSettings(), PRICES)
    assert set(small["jobs"]) == set(JOBS)
    assert small["monthly_usd"] == pytest.approx(sum(job["monthly_usd"] for job in small["jobs"].values()))
    for job in ("verification", "prune", "cost_report"):
        assert large["jobs"][job]["monthly_usd"] > small["jobs"][job]["monthly_usd"], job
        assert small["jobs"][job]["lambda_seconds_per_day"] > 0
    # The day's alert, and the stage's hourly heartbeat (here one plan: all of it).
    assert small["jobs"]["alerts"]["requests_per_day"] == {"sns": 1, "list": 24, "get": 24, "metric": 24}
    three = UpkeepSettings(plans=3)
    assert describe(upkeep_day(OFFICE, three), three, PRICES)["jobs"]["alerts"]["requests_per_day"]["metric"] == 8


def test_with_an_inventory_the_cost_report_computes_a_plans_figures_once_per_report() -> None:
    weekly = UpkeepSettings(inventory="Weekly")
    computing = cost_report(BucketDay(**{**OFFICE.__dict__, "cost_recomputed": 1.0}), weekly)
    carrying = cost_report(BucketDay(**{**OFFICE.__dict__, "cost_recomputed": 0.0}), weekly)
    average = cost_report(OFFICE, weekly)
    # Carried: the report written, the stored one looked for, the snapshots listed, the newest report found
    # (its folder listed, manifest.json and manifest.checksum read), the pruned markers listed, the kept
    # figures read. Nothing grows with the versions or the snapshots.
    assert carrying.requests == {"get": 1 + 2 + 1, "list": 1 + 1 + 1, "put": 1}
    # Its seconds are its requests', one after another: nothing read that grows with the bucket.
    assert carrying.seconds == pytest.approx(sum(carrying.requests.values()) * REQUEST_SECONDS)
    assert computing.seconds > 10 * carrying.seconds
    # On average a seventh of the days compute.
    for kind, count in computing.requests.items():
        assert average.requests[kind] == pytest.approx(carrying.requests.get(kind, 0.0) + (count - carrying.requests.get(kind, 0.0)) / 7)
    assert average.seconds == pytest.approx(carrying.seconds + (computing.seconds - carrying.seconds) / 7)
    # Without an inventory there is nothing to carry figures from: computed every day.
    assert cost_report(OFFICE, UpkeepSettings()).requests["list"] > computing.requests["list"] - 3

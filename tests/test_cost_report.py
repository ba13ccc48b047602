"""The cost report against moto: versions written in chosen storage classes (moto keeps the class a PUT asks
for and never runs lifecycle rules), snapshots naming some of them, and the report's figures worked out by
hand; its check against S3's answers; its keeping per backup; prunes' early-deletion charges; and the
requests and rates of change measured from backup records."""

from __future__ import annotations

from dataclasses import replace

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.catalog.manifests import Entry, ManifestWriter, manifest_key, put_manifest
from chalicelib.catalog.records import BackupRecord, PlanResult, RecordStore, new_backup_id
from chalicelib.cost.reports import CostReports, cost_key
from chalicelib.cost.usage import PlanRun, measure, recent_history
from chalicelib.layout import PRUNES_PREFIX
from chalicelib.s3docs import inverted_time
from chalicelib.prices import load_prices
from chalicelib.times import isoformat, utcnow
from tests.api_helpers import S3Calls

PRICES = load_prices(environ={})
KIB, GIB = 1024, 1024**3
# What one archived version costs a month besides its bytes: 8 KiB at STANDARD and 32 KiB at its class.
GLACIER_OVERHEAD = (8 * KIB * 0.023 + 32 * KIB * 0.0036) / GIB


def store(s3: Any, bucket: str, name: str, size: int, storage_class: str = "STANDARD") -> Entry:
    """A version under data/documents/, written in `storage_class`, as a manifest entry names it."""
    answer = s3.put_object(Bucket=bucket, Key=f"data/documents/{name}", Body=b"x" * size, StorageClass=storage_class)
    return Entry("documents", name, answer["VersionId"], size, answer["ETag"].strip('"'), identity=f"{size}")


def snapshot(s3: Any, plans: Any, entries: list[Entry], moment: datetime, plan: str = "documents") -> str:
    """A finished backup of `plan` whose sealed record and manifest name `entries`, as a backup writes them."""
    bucket = plans.get(plan).bucket
    backup_id = new_backup_id(moment)
    writer = ManifestWriter()
    for entry in sorted(entries, key=lambda e: e.sort_key):
        writer.add(entry)
    written = put_manifest(s3, bucket, manifest_key(plan, backup_id), writer.finish({"plan": plan, "backup_id": backup_id}, keep_held=False))
    result = PlanResult(
        plan=plan, status="SUCCEEDED", objects=len(entries), copied=len(entries), snapshot=f"s3://{bucket}/{manifest_key(plan, backup_id)}",
        manifest_version=written.version_id, manifest_sha256=written.sha256,
    )
    record = BackupRecord(backup_id, "api", {plan: result}, status="SUCCEEDED", started_at=isoformat(moment), finished_at=isoformat(moment))
    records = RecordStore(s3, plans.catalog_bucket)
    records.create(record)
    records.seal(record)
    return backup_id


@pytest.fixture
def stored(s3: Any, backup_buckets: Any) -> dict[str, Any]:
    """In the documents bucket: five versions of 128 KB or more in GLACIER (two of them noncurrent, one named by
    no snapshot) and one small file in STANDARD; two snapshots."""
    bucket = backup_buckets.get("documents").bucket
    big = store(s3, bucket, "big.bin", 200 * KIB, "GLACIER")
    small = store(s3, bucket, "small.txt", 10 * KIB)
    twice_old = store(s3, bucket, "twice.bin", 300 * KIB, "GLACIER")
    twice_new = store(s3, bucket, "twice.bin", 300 * KIB, "GLACIER")
    gone = store(s3, bucket, "gone.bin", 150 * KIB, "GLACIER")
    s3.delete_object(Bucket=bucket, Key="data/documents/gone.bin")
    store(s3, bucket, "stray.bin", 140 * KIB, "GLACIER")
    now = utcnow()
    older = snapshot(s3, backup_buckets, [big, small, twice_old, gone], now - timedelta(minutes=2))
    newer = snapshot(s3, backup_buckets, [big, small, twice_new], now - timedelta(minutes=1))
    return {"older": older, "newer": newer, "written": now}


def reports(s3: Any, plans: Any, **kwargs: Any) -> CostReports:
    return CostReports(plans, s3, PRICES, sample_size=50, **kwargs)


def test_versions_are_counted_where_the_lifecycle_puts_them_and_priced(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    # Forty days on: every version of 128 KB or more has been in GLACIER for about ten days (current ones
    # 30 days after they were written, noncurrent ones 30 days after they were replaced, moments apart here);
    # the 10 KiB file stays in STANDARD.
    report = reports(s3, backup_buckets).compute(stored["newer"], stored["written"] + timedelta(days=40))
    documents = report["plans"]["documents"]
    archived = (200 + 300 + 300 + 150 + 140) * KIB
    glacier_usd = archived / GIB * 0.0036 + 5 * GLACIER_OVERHEAD
    assert documents["storage"]["GLACIER"] == {"versions": 5, "bytes": archived, "monthly_usd": pytest.approx(glacier_usd, abs=1e-6)}
    assert documents["storage"]["STANDARD"] == {"versions": 1, "bytes": 10 * KIB, "monthly_usd": pytest.approx(10 * KIB / GIB * 0.023, abs=1e-6)}
    assert (documents["current"]["versions"], documents["noncurrent"]["versions"]) == (4, 2)
    assert documents["noncurrent"]["storage"]["GLACIER"]["bytes"] == (300 + 150) * KIB
    unnamed = documents["named_by_no_snapshot"]
    assert (unnamed["versions"], unnamed["bytes"], list(unnamed["storage"])) == (1, 140 * KIB, ["GLACIER"])
    # The 128 KB rule: the small file is old enough for GLACIER but stays in STANDARD, and the report says why.
    rule = documents["small_objects"]["kept_in_standard_by_128k_rule"]
    assert (rule["versions"], rule["bytes"], rule["would_be_in"]) == (1, 10 * KIB, {"GLACIER": 1})
    assert "all_storage_classes_128K" in rule["why"] and "smaller than 128 KB" in rule["why"]
    # Each choice priced for this data: 'archive' would also move the small file, with its 40 KB overhead.
    choices = documents["small_objects"]["choices"]
    assert choices["standard"]["chosen"] and not choices["archive"]["chosen"]
    assert choices["archive"]["storage"]["GLACIER"]["versions"] == 6 and "STANDARD" not in choices["archive"]["storage"]
    assert choices["archive"]["switch_transitions"] == {"GLACIER": 1}
    assert choices["archive"]["switch_usd"] == pytest.approx(0.03 / 1000)
    assert choices["archive"]["storage_usd"] > choices["standard"]["storage_usd"]
    # Each version entered GLACIER about ten days ago: five transitions in the last 30 days.
    assert documents["transitions"]["last_30_days"] == {"GLACIER": 5}
    assert documents["parts"]["transitions"] == pytest.approx(5 * 0.03 / 1000, abs=1e-6)
    assert documents["manifests"]["snapshots"] == 2 and documents["manifests"]["bytes"] > 0
    parts = documents["parts"]
    assert documents["monthly_usd"] == pytest.approx(sum(parts.values()), abs=1e-5)
    # AWS Backup bills the five named versions, the small one as 128 KB; no cold tier.
    aws_backup = documents["alternatives"]["aws_backup"]
    assert aws_backup["monthly_usd"] == pytest.approx((200 + 128 + 300 + 300 + 150) * KIB / GIB * 0.05, abs=1e-6)
    assert "128 KB" in aws_backup["notes"] and "no cold tier" in aws_backup["notes"]
    # Everything agrees with what S3 says, in the listing and asked again version by version.
    check = documents["check"]
    assert (check["compared"], check["agree"], check["disagreements_count"], check["head_sampled"]) == (6, 6, 0, 6)
    assert documents["work"]["snapshots_read"] == 2 and documents["work"]["versions"] == 6
    assert documents["work"]["missing_versions"] == 0
    # The other plans hold nothing; the total is the documents plan's.
    assert report["plans"]["photos"]["versions"] == 0
    assert report["total"]["storage"]["GLACIER"]["versions"] == 5
    assert report["total"]["monthly_usd"] == pytest.approx(sum(p["monthly_usd"] for p in report["plans"].values()), abs=1e-5)
    # Twelve months ahead, each with its classes; nothing changes, so GLACIER until DEEP_ARCHIVE's day 180.
    projection = documents["projection"]
    assert len(projection) == 12
    assert projection[0]["by_class"]["GLACIER"]["versions"] == 5
    assert projection[-1]["by_class"]["DEEP_ARCHIVE"]["versions"] == 5
    json.dumps(report)


def test_a_plan_with_a_vault_shows_its_off_site_line(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    from tests.offsite_world import with_vaults

    vaulted = with_vaults(backup_buckets, storage_class="DEEP_ARCHIVE")
    report = reports(s3, vaulted).compute(stored["newer"], stored["written"] + timedelta(days=40))
    documents = report["plans"]["documents"]
    vault = documents["vault"]
    # At least every version this bucket stores, as a replica in DEEP_ARCHIVE with its 40 KB, and every manifest.
    stored_bytes = (200 + 10 + 300 + 300 + 150 + 140) * KIB
    overhead = 6 * (8 * KIB * 0.023 + 32 * KIB * 0.00099) / GIB
    assert vault["parts"]["storage_at_least"] == pytest.approx(stored_bytes / GIB * 0.00099 + overhead, abs=1e-6)
    assert vault["parts"]["metadata_at_least"] == pytest.approx(documents["manifests"]["bytes"] / GIB * 0.023, abs=1e-6)
    # A month of backups replicated: at least a manifest and a sealed record a day, at STANDARD's PUT price,
    # into another region than the prices file's (transfer counted).
    assert vault["replicated_per_month"]["versions"] >= 60 and vault["parts"]["puts"] >= 60 * 0.005 / 1000
    replicated = vault["replicated_per_month"]["bytes"]
    assert replicated > 0 and vault["parts"]["rtc"] == 0
    assert vault["parts"]["transfer"] == pytest.approx(replicated / GIB * 0.02, abs=1e-6)
    assert vault["monthly_usd"] == pytest.approx(sum(vault["parts"].values()), abs=1e-5)
    assert "DEEP_ARCHIVE" in vault["settings"] and "not in it" in vault["note"]
    # Beside the plan's bill, not in it; a plan without a vault has no such line.
    assert documents["monthly_usd"] == pytest.approx(sum(documents["parts"].values()), abs=1e-5)
    assert "vault" not in reports(s3, backup_buckets).compute(stored["newer"], stored["written"] + timedelta(days=40))["plans"]["documents"]
    # The plan's `offsite.rtc` is priced: Replication Time Control per GB replicated.
    fast = replace(vaulted, plans=tuple(replace(p, offsite=replace(p.offsite, rtc=True)) for p in vaulted.plans))
    timed = reports(s3, fast).compute(stored["newer"], stored["written"] + timedelta(days=40))["plans"]["documents"]["vault"]
    assert timed["parts"]["rtc"] == pytest.approx(replicated / GIB * 0.015, abs=1e-6) and "Control on" in timed["settings"]


def test_a_version_s3_reports_in_another_class_is_named(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    bucket = backup_buckets.get("documents").bucket
    late = store(s3, bucket, "late.bin", 256 * KIB)  # STANDARD, where the lifecycle says GLACIER after 30 days
    newest = snapshot(s3, backup_buckets, [late], utcnow())
    # Sixty days on, the move fell due thirty days ago: no lag of S3's explains it.
    check = reports(s3, backup_buckets).compute(newest, stored["written"] + timedelta(days=60))["plans"]["documents"]["check"]
    assert check["disagreements_count"] == 1 and check["head_disagreements_count"] == 1
    listed, headed = check["disagreements"]
    assert (listed["key"], listed["version_id"], listed["model"], listed["s3"], listed["by"]) == (
        "data/documents/late.bin", late.version_id, "GLACIER", "STANDARD", "ListObjectVersions"
    )
    assert headed["by"] == "HeadObject" and headed["version_id"] == late.version_id
    assert "GLACIER since day 30" in listed["why"] and "says STANDARD" in listed["why"]
    # A day after the move fell due, it is only pending: S3 moves versions some time after the date.
    check = reports(s3, backup_buckets).compute(newest, stored["written"] + timedelta(days=31))["plans"]["documents"]["check"]
    assert (check["pending"], check["disagreements_count"], check["agree"]) == (1, 0, 6)


def test_the_report_is_kept_per_backup_and_computed_again_only_when_something_changed(
    s3: Any, backup_buckets: Any, stored: dict[str, Any]
) -> None:
    calls = S3Calls(s3)
    costs = reports(s3, backup_buckets)
    first = costs.latest()
    assert first["backup_id"] == stored["newer"] and calls.counts["ListObjectVersions"] > 0
    kept = json.loads(s3.get_object(Bucket=backup_buckets.catalog_bucket, Key=cost_key(stored["newer"]))["Body"].read())
    assert kept == first
    calls.reset()
    assert costs.latest() == first
    # Read back: no listing of the buckets, no manifest read.
    assert calls.counts["ListObjectVersions"] == 0 and calls.total <= 6, calls.counts
    # A newer finished backup gets a report of its own; a running one or a dry run does not count.
    running = new_backup_id(utcnow() + timedelta(seconds=5))
    RecordStore(s3, backup_buckets.catalog_bucket).create(BackupRecord(running, "api", {"documents": PlanResult("documents")}))
    assert costs.latest()["backup_id"] == stored["newer"]
    newer = snapshot(s3, backup_buckets, [], utcnow() + timedelta(seconds=10), plan="photos")
    assert costs.latest()["backup_id"] == newer
    # Other prices: computed again, not served stale.
    calls.reset()
    repriced = CostReports(backup_buckets, s3, dataclasses.replace(PRICES, read_on=PRICES.read_on - timedelta(days=1)))
    assert repriced.latest()["prices"]["read_on"] != first["prices"]["read_on"]
    assert calls.counts["ListObjectVersions"] > 0
    # A report that is not one (edited by hand, cut short) is computed again too.
    s3.put_object(Bucket=backup_buckets.catalog_bucket, Key=cost_key(newer), Body=b'{"format": "cost-rep')
    assert repriced.latest()["backup_id"] == newer


def test_no_finished_backup_is_a_clear_not_found(s3: Any, backup_buckets: Any) -> None:
    from chalicelib.errors import NotFound

    with pytest.raises(NotFound, match="no finished backup yet"):
        reports(s3, backup_buckets).latest()


def prune_record(s3: Any, bucket: str, finished: datetime, plans: dict[str, float], dry_run: bool = False, raw: bytes | None = None) -> str:
    prune_id = f"prune-{finished:%H%M%S%f}"
    key = f"{PRUNES_PREFIX}{inverted_time(finished - timedelta(minutes=5))}_{prune_id}.json"
    body = {
        "prune_id": prune_id,
        "status": "SUCCEEDED",
        "dry_run": dry_run,
        "finished_at": isoformat(finished),
        "plans": {name: {"early_deletion": {"usd": usd, "versions": 3, "bytes": 3000}} for name, usd in plans.items()},
    }
    s3.put_object(Bucket=bucket, Key=key, Body=raw if raw is not None else json.dumps(body).encode())
    return key


def test_early_deletion_charges_of_recent_prunes_are_counted(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    catalog = backup_buckets.catalog_bucket
    now = utcnow()
    prune_record(s3, catalog, now - timedelta(days=1), {"documents": 0.25, "photos": 0.5})
    prune_record(s3, catalog, now - timedelta(days=12), {"documents": 0.125})
    prune_record(s3, catalog, now - timedelta(days=2), {"documents": 9.0}, dry_run=True)
    prune_record(s3, catalog, now - timedelta(days=40), {"documents": 9.0})
    broken = prune_record(s3, catalog, now - timedelta(days=3), {}, raw=b"{not json")
    running = {"prune_id": "p", "status": "RUNNING", "dry_run": False, "finished_at": None, "plans": {"documents": {"early_deletion": {"usd": 9.0}}}}
    s3.put_object(Bucket=catalog, Key=f"{PRUNES_PREFIX}{inverted_time(now)}_p.json", Body=json.dumps(running).encode())
    report = reports(s3, backup_buckets).compute(stored["newer"], now)
    documents, photos = report["plans"]["documents"], report["plans"]["photos"]
    assert documents["early_deletion"]["usd"] == pytest.approx(0.375)
    assert (documents["early_deletion"]["prunes"], documents["early_deletion"]["versions"]) == (2, 6)
    assert documents["parts"]["early_deletion"] == pytest.approx(0.375)
    assert photos["parts"]["early_deletion"] == pytest.approx(0.5) and photos["monthly_usd"] >= 0.5
    assert report["total"]["parts"]["early_deletion"] == pytest.approx(0.875)
    assert any(broken in warning and "skipped" in warning for warning in report["warnings"])


def test_without_prune_records_early_deletion_is_zero(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    report = reports(s3, backup_buckets).compute(stored["newer"])
    assert report["total"]["parts"]["early_deletion"] == 0 and report["warnings"] == []


def test_requests_and_rates_of_change_are_measured_from_the_backups() -> None:
    day0 = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    runs = [
        PlanRun(day0, copied=100, deleted=0, objects=100, bytes_copied=10_000),
        # 3 deleted and 102 left: 5 new, so 7 of the 12 copies were changes.
        PlanRun(day0 + timedelta(days=1), copied=12, deleted=3, objects=102, bytes_copied=1_200),
        # Nothing deleted and 2 more: 2 new, 8 changed.
        PlanRun(day0 + timedelta(days=2), copied=10, deleted=0, objects=104, bytes_copied=1_000),
    ]
    usage = measure(runs, day0 + timedelta(days=2, hours=1), PRICES)
    # Three days of backups, scaled to thirty: each lists one page of the source plus its metadata, reads the
    # previous manifest, writes three objects (and one DeleteObjects for the deletions). The first copied
    # every object: a one-off, not a month of full copies, so only the later 22 copies are scaled.
    assert usage.days == 3
    assert usage.requests == pytest.approx({"copy": 220, "list": 60, "get": 30, "put": 100})
    assert usage.monthly_usd == pytest.approx((220 + 60 + 100) * 0.005 / 1000 + 30 * 0.0004 / 1000)
    assert usage.initial_copies == 100 and usage.to_dict()["one_off_initial_copies"] == 100
    assert (usage.new_per_day, usage.changed_per_day, usage.deleted_per_day) == (3.5, 7.5, 1.5)
    assert usage.changed_share == pytest.approx(7.5 / 104) and usage.bytes_copied_per_day == 1_100
    # One backup measures no change.
    assert measure(runs[:1], day0, PRICES).changed_per_day == 0
    # A window that starts with an incremental backup scales all of its copies.
    assert measure(runs[1:], day0 + timedelta(days=2, hours=1), PRICES).requests["copy"] == pytest.approx((12 + 10) * 15)


def test_the_measured_backups_leave_out_dry_runs_failures_and_old_ones(s3: Any, backup_buckets: Any) -> None:
    records = RecordStore(s3, backup_buckets.catalog_bucket)
    now = utcnow()

    def record(age: timedelta, status: str = "SUCCEEDED", dry_run: bool = False, plan_status: str = "SUCCEEDED") -> None:
        moment = now - age
        backup_id = new_backup_id(moment)
        result = PlanResult("photos", status=plan_status, copied=4, objects=40, snapshot=f"s3://b/meta/snapshots/photos/{backup_id}.jsonl.gz")
        records.create(BackupRecord(backup_id, "api", {"photos": result}, status=status, dry_run=dry_run, started_at=isoformat(moment)))

    record(timedelta(days=1))
    record(timedelta(days=2))
    record(timedelta(days=3), dry_run=True)
    record(timedelta(days=4), status="FAILED", plan_status="FAILED")
    record(timedelta(hours=1), status="RUNNING", plan_status="RUNNING")
    record(timedelta(days=45))
    history = recent_history(records, now)
    assert [run.taken for run in history.runs["photos"]] == sorted(run.taken for run in history.runs["photos"])
    assert len(history.runs["photos"]) == 2
    # The listing stops at the first record older than the window.
    assert history.records == 5


def test_versions_a_kept_snapshot_names_but_the_bucket_lacks_are_counted_missing(
    s3: Any, backup_buckets: Any, stored: dict[str, Any]
) -> None:
    bucket = backup_buckets.get("documents").bucket
    kept = store(s3, bucket, "kept.bin", 130 * KIB)
    ghost = dataclasses.replace(kept, key="ghost.bin", version_id="not-in-the-bucket")
    newest = snapshot(s3, backup_buckets, [kept, ghost], utcnow())
    work = reports(s3, backup_buckets).compute(newest)["plans"]["documents"]["work"]
    assert (work["versions"], work["missing_versions"]) == (7, 1)


def test_a_record_the_prune_job_writes_is_read_as_it_is_written(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    from chalicelib.prune.record import PruneRecord, PruneStore, new_prune_id

    now = utcnow()
    record = PruneRecord(new_prune_id(now - timedelta(hours=2)), "api", ["documents"], started_at=isoformat(now - timedelta(hours=2)))
    record.plan("documents").early_deletion = {"usd": 0.5, "versions": 4, "bytes": 4096}
    record.plan("documents").status = "SUCCEEDED"
    record.conclude(isoformat(now - timedelta(hours=1)))
    PruneStore(s3, backup_buckets.catalog_bucket).create(record)
    report = reports(s3, backup_buckets).compute(stored["newer"], now)
    early = report["plans"]["documents"]["early_deletion"]
    assert (early["usd"], early["versions"], early["bytes"], early["prunes"]) == (0.5, 4, 4096, 1)
    assert report["warnings"] == []


def test_a_backup_dated_after_the_reports_clock_is_projected_once(s3: Any, backup_buckets: Any, stored: dict[str, Any]) -> None:
    # Clocks disagree: the newest snapshot's day is tomorrow by the report's clock. The projection's first
    # simulated day already has that snapshot; it is counted once, not refused as listed twice.
    report = reports(s3, backup_buckets).compute(stored["newer"], stored["written"] - timedelta(days=1))
    assert report["warnings"] == [] and len(report["plans"]["documents"]["projection"]) == 12

"""The cost report as users meet it, after real backups through the app: `GET /costs` and `GET /costs/{plan}`,
the daily backup's alert line, `org-backup cost` (table and --json), and the report's storage classes
against what S3 answers once the lifecycle has moved versions (moto keeps a version's class but never runs
lifecycle rules, so the test moves them as S3 would)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.s3.models import s3_backends

from chalicelib import cli
from chalicelib.cost.reports import CostReports, cost_key
from chalicelib.prices import load_prices
from chalicelib.times import utcnow
from tests.conftest import read_alerts, scheduled_event

KIB = 1024
ACCOUNT = "123456789012"
# Three documents of 128 KB or more: the only ones the shipped lifecycle moves (small_objects 'standard').
LARGE = {f"scans/scan-{i}.pdf": bytes([65 + i]) * (200 * KIB + i) for i in range(3)}


@pytest.fixture
def stack(app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, clients: Any, s3: Any, stage_env: dict[str, str]) -> Any:
    """The app with the seeded sources, and three large documents beside the small ones."""
    import app as app_module

    for key, body in LARGE.items():
        s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=key, Body=body)
    app_module._clients = clients
    return app_client


def stored_versions(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return [v for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="data/") for v in page.get("Versions", [])]


def test_get_costs_after_the_daily_backup_reports_what_the_buckets_hold(
    stack: Any, s3: Any, sqs: Any, topic_queue: str, backup_buckets: Any
) -> None:
    missing = stack.http.get("/costs")
    assert missing.status_code == 404 and "no finished backup yet" in missing.json_body["Message"]
    backup_id = stack.lambda_.invoke("daily_backup", scheduled_event(stack)).payload["backup_id"]

    # The daily alert ends with the one-line summary: bytes and monthly cost per storage class.
    alert = next(a for a in read_alerts(sqs, topic_queue) if a["MessageAttributes"]["kind"]["Value"] == "backup")
    last = alert["Message"].strip().splitlines()[-1]
    assert last.startswith("Cost (USD a month): STANDARD ") and "in all" in last and "GET /costs" in last

    # The alert's backup computed and kept the report: GET /costs reads it back.
    kept = json.loads(s3.get_object(Bucket=backup_buckets.catalog_bucket, Key=cost_key(backup_id))["Body"].read())
    response = stack.http.get("/costs")
    assert response.status_code == 200 and response.json_body == kept
    report = response.json_body
    assert report["backup_id"] == backup_id
    # Every version just written is current and in STANDARD; the bytes are what S3 lists under data/.
    for name in ("documents", "photos"):
        plan = report["plans"][name]
        versions = stored_versions(s3, backup_buckets.get(name).bucket)
        assert plan["storage"] == {"STANDARD": {"versions": len(versions), "bytes": sum(v["Size"] for v in versions), "monthly_usd": pytest.approx(plan["storage"]["STANDARD"]["monthly_usd"])}}
        assert plan["current"]["versions"] == len(versions) and plan["noncurrent"]["versions"] == 0
        assert plan["check"]["disagreements_count"] == 0 and plan["check"]["agree"] == len(versions)
        # Every version is named by the snapshot, none is missing, and none is named by no snapshot.
        assert plan["work"]["missing_versions"] == 0 and plan["named_by_no_snapshot"]["versions"] == 0
        assert len(plan["projection"]) == 12
        assert set(plan["alternatives"]) == {"ours", "aws_backup", "same_retention_no_lifecycle", "versioned_sync", "sync_copy"}
        # The upkeep, per job, with the shipped plans' weekly inventory: the weekly slice HEADs only what the
        # report does not list yet (after one backup no change is measured, so none); the prune works once a
        # week: its record, the newest ten prune records (a month of them is assumed), the newest report's
        # manifest and checksum (is it due?), its index in each pass, the one snapshot's manifest merged into it
        # and, in each pass, the report's manifest, checksum and data file; on the six other days only the
        # records and the report's manifest and checksum, and its record. Neither lists data/.
        upkeep = plan["upkeep"]["jobs"]
        assert backup_buckets.inventory is not None and backup_buckets.inventory.frequency == "Weekly"
        assert "head" not in upkeep["verification"]["requests_per_day"]
        due, waiting = 1 + 10 + 2 + 2 + 1 + 2 * 3, 10 + 2 + 1
        assert upkeep["prune"]["requests_per_day"]["get"] == round((due + 6 * waiting) / 7, 1)
        # The cost report computes a plan's figures (and HEADs its sample) once per weekly report.
        assert upkeep["cost_report"]["requests_per_day"]["head"] == pytest.approx(min(20, len(versions)) / 7, abs=0.05)
        assert plan["parts"]["upkeep"] == plan["upkeep"]["monthly_usd"] > 0
    assert report["total"]["storage"]["STANDARD"]["versions"] == sum(
        report["plans"][name]["storage"].get("STANDARD", {}).get("versions", 0) for name in report["plans"]
    )
    assert report["prices"]["region"] == "us-east-1" and report["prices"]["file"]
    assert report["total"]["upkeep"]["monthly_usd"] == pytest.approx(sum(p["upkeep"]["monthly_usd"] for p in report["plans"].values()))

    one = stack.http.get("/costs/documents")
    assert one.status_code == 200 and one.json_body["plan"] == "documents"
    assert one.json_body["storage"] == report["plans"]["documents"]["storage"]
    assert one.json_body["backup_id"] == backup_id and "prices" in one.json_body
    unknown = stack.http.get("/costs/nope")
    assert unknown.status_code == 404 and "documents" in unknown.json_body["Message"]
    bad = stack.http.get("/costs?plan=documents")
    assert bad.status_code == 400 and "'plan'" in bad.json_body["Message"]


def age_bucket(bucket: str, storage_class: str, smallest: int) -> int:
    """Move every version under data/ of at least `smallest` bytes into `storage_class`, as the lifecycle
    would have by now. Returns how many were moved."""
    moved = 0
    stored = s3_backends[ACCOUNT]["global"].buckets[bucket].keys
    for name in list(stored.keys()):
        if not name.startswith("data/"):
            continue
        for version in stored.getlist(name):
            if getattr(version, "size", 0) >= smallest:
                version.set_storage_class(storage_class)
                moved += 1
    return moved


def test_the_report_agrees_with_the_classes_s3_reports_after_the_lifecycle_ran(
    stack: Any, s3: Any, backup_buckets: Any, stage_env: dict[str, str]
) -> None:
    stack.lambda_.invoke("daily_backup", scheduled_event(stack))
    # Two large documents change: their first versions become noncurrent.
    for key in list(LARGE)[:2]:
        s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=key, Body=b"z" * (300 * KIB))
    second = stack.lambda_.invoke("daily_backup", scheduled_event(stack, utcnow() + timedelta(minutes=1))).payload["backup_id"]
    bucket = backup_buckets.get("documents").bucket
    # Forty days on, S3 has moved every version of 128 KB or more to GLACIER (current ones 30 days after they
    # were written, noncurrent ones 30 days after they were replaced); the small ones stay in STANDARD.
    assert age_bucket(bucket, "GLACIER", 128 * KIB) == 5
    later = utcnow() + timedelta(days=40)
    costs = CostReports(backup_buckets, s3, load_prices(environ={}), sample_size=100, clock=lambda: later)
    documents = costs.compute(second)["plans"]["documents"]
    versions = stored_versions(s3, bucket)
    by_s3: dict[str, dict[str, int]] = {}
    for version in versions:
        entry = by_s3.setdefault(version.get("StorageClass", "STANDARD"), {"versions": 0, "bytes": 0})
        entry["versions"] += 1
        entry["bytes"] += version["Size"]
    # The model's classes are S3's, version for version, in the listing and asked again with HeadObject.
    assert {name: {"versions": e["versions"], "bytes": e["bytes"]} for name, e in documents["storage"].items()} == by_s3
    assert documents["reported_by_s3"] == by_s3
    check = documents["check"]
    assert (check["compared"], check["agree"], check["disagreements_count"]) == (len(versions), len(versions), 0)
    assert (check["head_sampled"], check["head_disagreements_count"]) == (len(versions), 0)
    assert documents["noncurrent"]["storage"] == {"GLACIER": {"versions": 2, "bytes": 2 * 200 * KIB + 1, "monthly_usd": pytest.approx(documents["noncurrent"]["storage"]["GLACIER"]["monthly_usd"])}}
    # The small documents would be in GLACIER too but for the 128 KB rule.
    rule = documents["small_objects"]["kept_in_standard_by_128k_rule"]
    assert rule["versions"] == by_s3["STANDARD"]["versions"] and rule["would_be_in"] == {"GLACIER": rule["versions"]}

    # Left in STANDARD past its date, one version is named as a disagreement, with what each side says.
    stored = s3_backends[ACCOUNT]["global"].buckets[bucket].keys.getlist("data/documents/" + list(LARGE)[2])
    stored[-1].set_storage_class("STANDARD")
    check = costs.compute(second, later + timedelta(days=20))["plans"]["documents"]["check"]
    assert check["disagreements_count"] == 1 and check["disagreements"][0]["key"] == "data/documents/" + list(LARGE)[2]
    assert (check["disagreements"][0]["model"], check["disagreements"][0]["s3"]) == ("GLACIER", "STANDARD")


def test_org_backup_cost_prints_a_table_and_the_report_as_json(
    project_dir: Path, backup_buckets: Any, sources: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--stage", "local", "--project-dir", str(project_dir), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("cost")
    assert code == 2 and "no finished backup yet" in err
    assert run("backup", "--json")[0] == 0
    code, out, _ = run("cost")
    assert code == 0
    assert "PLAN" in out and "STANDARD" in out and "TOTAL" in out and "The next 12 months" in out
    assert "aws_backup" in out and "check against S3" in out
    # The upkeep is a line of its own, per plan, with each job's requests a day.
    assert "upkeep" in [cell.strip() for line in out.splitlines() for cell in line.split("  ") if cell.strip()]
    assert "verification: " in out and "requests a day: " in out and "head " in out
    code, out, _ = run("cost", "--json")
    report = json.loads(out)
    assert code == 0 and set(report["plans"]) == {"documents", "photos", "database"}
    code, out, _ = run("cost", "--plan", "photos", "--json")
    assert code == 0 and json.loads(out)["plan"] == "photos"
    assert json.loads(out)["storage"] == report["plans"]["photos"]["storage"]

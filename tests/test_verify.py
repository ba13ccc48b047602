"""Verification: every seeded fault (deleted versions, delete markers, versions whose size or checksum no
longer match, bytes altered in transit) is found, and the daily backup checks every stored version once a week."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from chalice.test import Client

from chalicelib.api.backups import get_backup
from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import Entry, PackTable, list_snapshot_keys, manifest_key
from chalicelib.config import Settings
from chalicelib.verify import plan_check as slice_job
from chalicelib.verify.checks import VerifyReport, in_sample, weekly_slice
from chalicelib.verify.record import VerificationStore, verification_id
from chalicelib.verify.verifier import Verifier
from tests.faults import damage_reads

BUCKET = "test-backup-documents"


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The scheduled runs these tests name (Monday 30 November 2026 and the days after) are still ahead of the clock, within MAX_BACKUP_DAYS."""
    with time_machine.travel(datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.http.post(path, headers={"Content-Type": "application/json"}, body=json.dumps(body))


@pytest.fixture
def backups(clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str]) -> BackupService:
    return BackupService(Settings.from_environ(stage_env), clients)


def take_backup(backups: BackupService, plans: list[str] | None = None) -> str:
    record = backups.start(plans, trigger="api")
    return backups.run(record.backup_id).backup_id


def read_manifest(s3: Any, bucket: str, key: str) -> tuple[dict[str, Any], list[Entry]]:
    lines = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).splitlines()
    packs = PackTable()
    return json.loads(lines[0]), [packs.entry(json.loads(line)) for line in lines[1:]]


def rewrite_manifest(s3: Any, bucket: str, key: str, change: dict[str, dict[str, Any]]) -> None:
    """Point entries (by source key) at other versions or metadata, as a damaged bucket would look; and have
    the backup's sealed record name that manifest (as if the backup had written it so), so that verification
    reads these entries (a manifest rewritten behind its record's back is tampering: see test_tampering.py)."""
    from chalicelib.catalog.records import sealed_key

    header, entries = read_manifest(s3, bucket, key)
    lines = [json.dumps(header)] + [
        Entry(**{**e.__dict__, **change.get(e.key, {})}).to_json() for e in entries
    ]
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    version = s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
    backup_id, plan = header["backup_id"], header["plan"]
    record_key = sealed_key(backup_id)
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=record_key)["Body"].read())
    record["plans"][plan] |= {"manifest_version": version, "manifest_sha256": hashlib.sha256(body).hexdigest()}
    s3.put_object(Bucket=BUCKET, Key=record_key, Body=json.dumps(record).encode())


def data_version(s3: Any, key: str) -> str:
    return s3.head_object(Bucket=BUCKET, Key=f"data/documents/{key}")["VersionId"]


def keys_of(findings: list[dict[str, Any]]) -> set[str]:
    return {f["key"] for f in findings}


# ------------------------------------------------------------------------------------------------ seeded faults


def seed_faults(s3: Any, backup_id: str) -> dict[str, set[str]]:
    """Five kinds of fault in one snapshot; returns which keys must be reported missing and damaged."""
    # A deleted version.
    s3.delete_object(Bucket=BUCKET, Key="data/documents/reports/report-1.txt", VersionId=data_version(s3, "reports/report-1.txt"))
    # An entry whose version id now names a delete marker.
    marker = s3.delete_object(Bucket=BUCKET, Key="data/documents/reports/report-2.txt")["VersionId"]
    # Same size, other bytes: S3's checksum and ETag no longer match the manifest.
    same_size = s3.put_object(Bucket=BUCKET, Key="data/documents/reports/report-3.txt", Body=b"X" * 36,
                              ChecksumAlgorithm="SHA256")["VersionId"]
    # Another size.
    other_size = s3.put_object(Bucket=BUCKET, Key="data/documents/reports/report-4.txt", Body=b"short",
                               ChecksumAlgorithm="SHA256")["VersionId"]
    rewrite_manifest(
        s3,
        BUCKET,
        manifest_key("documents", backup_id),
        {
            "reports/report-2.txt": {"version_id": marker},
            "reports/report-3.txt": {"version_id": same_size},
            "reports/report-4.txt": {"version_id": other_size},
            # A version that never existed.
            "reports/report-5.txt": {"version_id": "nonexistent-version-id"},
        },
    )
    return {
        "missing": {"reports/report-1.txt", "reports/report-2.txt", "reports/report-5.txt"},
        "damaged": {"reports/report-3.txt", "reports/report-4.txt"},
    }


def test_a_clean_backup_verifies(backups: BackupService, clients: Any, plans: Any) -> None:
    backup_id = take_backup(backups)
    result = Verifier(plans, clients).verify_backup(backup_id, sample_percent=100)
    assert result["ok"], result
    assert result["checked"] == 10 + 10 + 1
    assert result["sampled"] == result["checked"]
    assert result["missing"] == [] and result["damaged"] == []


def test_every_seeded_fault_is_found_by_the_metadata_check(backups: BackupService, clients: Any, plans: Any, s3: Any) -> None:
    backup_id = take_backup(backups, ["documents"])
    seeded = seed_faults(s3, backup_id)
    result = Verifier(plans, clients).verify_backup(backup_id)
    assert not result["ok"]
    assert keys_of(result["missing"]) == seeded["missing"]
    assert keys_of(result["damaged"]) == seeded["damaged"]
    assert result["checked"] == 10 and result["sampled"] == 0


def test_the_metadata_check_reads_no_data(backups: BackupService, clients: Any, plans: Any) -> None:
    backup_id = take_backup(backups, ["documents"])
    calls: list[str] = []
    clients.s3.meta.events.register("provide-client-params.s3.*", lambda params, model, **kw: calls.append(f"{model.name} {params.get('Key', '')}"))
    Verifier(plans, clients).verify_backup(backup_id)
    data_calls = [c for c in calls if " data/" in c]
    assert len(data_calls) == 10 and all(c.startswith("HeadObject ") for c in data_calls)


def test_altered_bytes_are_found_only_by_re_reading(backups: BackupService, clients: Any, plans: Any) -> None:
    backup_id = take_backup(backups, ["documents", "database"])
    damage_reads(clients.s3, "data/documents/reports/report-6.txt")
    damage_reads(clients.s3, "data/orders/")
    verifier = Verifier(plans, clients)
    assert verifier.verify_backup(backup_id)["ok"]  # metadata alone cannot see it
    result = verifier.verify_backup(backup_id, sample_percent=100)
    assert keys_of(result["damaged"]) == {"reports/report-6.txt", "test-orders.jsonl.gz"}
    assert result["missing"] == []


def test_sampling_is_a_stable_share() -> None:
    entries = [Entry("s", f"k{i}", f"v{i}", 1, "e", "i") for i in range(2000)]
    share = sum(in_sample(e, 10) for e in entries) / len(entries)
    assert 0.07 < share < 0.13
    assert [in_sample(e, 10) for e in entries] == [in_sample(e, 10) for e in entries]
    assert all(in_sample(e, 100) for e in entries) and not any(in_sample(e, 0) for e in entries)


def test_verify_through_the_api(app_client: Client, backup_buckets: Any, sources: Any, s3: Any) -> None:
    response = post(app_client, "/backup", {"plans": ["documents"]})
    backup_id = response.json_body["backup_id"]
    # The request only records the check (202) and hands it to the verify worker (inline here): a whole
    # backup may hold millions of versions, far more than a request's 29 seconds.
    clean = post(app_client, f"/backups/{backup_id}/verify", {})
    assert clean.status_code == 202 and clean.json_body["verification_id"].startswith("check-")
    job = app_client.http.get(clean.headers["Location"]).json_body
    assert job["status"] == "SUCCEEDED" and job["ok"] and job["checked"] == 10 and job["kind"] == "backup"
    seeded = seed_faults(s3, backup_id)
    started = post(app_client, f"/backups/{backup_id}/verify", {"sample_percent": 50}).json_body
    found = app_client.http.get(f"/verifications/{started['verification_id']}").json_body
    # Version ids are random, so which healthy versions fall in the 50% sample is worked out, not assumed.
    healthy = sorted(set(sources["documents"]) - seeded["missing"] - seeded["damaged"])
    in_half = [key for key in healthy if in_sample(Entry("documents", key, data_version(s3, key), 0, "", ""), 50)]
    assert found["status"] == "FAILED" and found["sample_percent"] == 50
    assert found["sampled"] == len(in_half)
    assert keys_of(found["missing"]) == seeded["missing"]
    assert keys_of(found["damaged"]) == seeded["damaged"]
    assert found["plans"]["documents"] == {"snapshots": 1, "checked": 10, "missing": 3, "damaged": 2}
    assert app_client.http.get("/verifications/check-20200101T000000000Z-nothing").status_code == 404
    assert app_client.http.get("/verifications/nonsense").status_code == 404

    assert post(app_client, "/backups/20200101T000000000Z-deadbeef/verify", {}).status_code == 404
    bad = post(app_client, f"/backups/{backup_id}/verify", {"sample_percent": 101})
    assert bad.status_code == 400 and "sample_percent" in bad.json_body["Message"]
    bad = post(app_client, f"/backups/{backup_id}/verify", {"plans": ["photos"]})
    assert bad.status_code == 404 and "photos" in bad.json_body["Message"]
    # Like POST /backup: an explicit null is a mistake, not "every plan"; a misspelt field is named.
    bad = post(app_client, f"/backups/{backup_id}/verify", {"plans": None})
    assert bad.status_code == 400 and "'plans'" in bad.json_body["Message"]
    bad = post(app_client, f"/backups/{backup_id}/verify", {"sample_pct": 5})
    assert bad.status_code == 400 and "'sample_pct'" in bad.json_body["Message"]


# ------------------------------------------------------------------------------------------------ weekly rotation


def verification_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """The verification jobs' alerts among those published (backups send their own)."""
    from tests.conftest import read_alerts

    found: list[dict[str, Any]] = []
    while batch := read_alerts(sqs, queue_url):
        found += [a for a in batch if a["MessageAttributes"].get("kind", {}).get("Value") == "verification"]
    return found


def test_daily_backups_check_every_stored_version_within_a_week(
    backups: BackupService, clients: Any, plans: Any, s3: Any, sqs: Any, topic_queue: str, without_projection: None
) -> None:
    first = take_backup(backups)
    s3.put_object(Bucket="test-src-documents", Key="reports/report-0.txt", Body=b"changed")
    take_backup(backups)
    # Every distinct stored version across both snapshots of every plan.
    stored: set[tuple[str, str]] = set()
    for plan in plans.plans:
        for key in list_snapshot_keys(s3, plan.bucket, plan.name):
            _, entries = read_manifest(s3, plan.bucket, key)
            stored.update((e.data_key, e.version_id) for e in entries)
    lost = next(e for e in read_manifest(s3, BUCKET, manifest_key("documents", first))[1] if e.key == "reports/report-7.txt")
    s3.delete_object(Bucket=BUCKET, Key=lost.data_key, VersionId=lost.version_id)
    verification_alerts(sqs, topic_queue)

    monday = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
    checked = 0
    for day in range(7):
        record = backups.run_scheduled(monday + timedelta(days=day))
        # The backup's own result is final and clean; its slice is checked by a job of its own.
        assert record.status == "SUCCEEDED" and record.verification is None
        verification = get_backup(backups.records, record.backup_id)["verification"]
        assert verification is not None and verification["weekday"] == day and verification["status"] != "RUNNING"
        job = VerificationStore(s3, BUCKET).get(verification_id(record.backup_id))
        checked += job.checked
        (alert,) = verification_alerts(sqs, topic_queue)
        if day == weekly_slice(lost):
            assert [(f["key"], f["version_id"]) for f in job.missing] == [(lost.key, lost.version_id)]
            assert verification["missing_count"] == 1 and verification["status"] == "FAILED"
            assert alert["Subject"].startswith("VERIFY FAILED")
            assert "1 MISSING" in alert["Message"] and lost.key in alert["Message"]
        else:
            assert verification["missing_count"] == 0 and verification["status"] == "SUCCEEDED", verification
            assert alert["Subject"].startswith("Verification SUCCEEDED")
    # The scheduled backups add no new versions (nothing changed), so the week covered exactly what was stored.
    assert checked == len(stored)


def test_a_failing_slice_check_never_fails_the_backup(
    backups: BackupService, clients: Any, monkeypatch: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("listing failed")

    monkeypatch.setattr(slice_job, "list_snapshot_keys", broken)
    record = backups.run_scheduled(datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc))
    assert record.status == "SUCCEEDED"
    assert backups.get(record.backup_id).status == "SUCCEEDED"
    job = VerificationStore(s3, BUCKET).get(verification_id(record.backup_id))
    assert job.status == "FAILED" and not job.ok
    assert "listing failed" in job.errors[0]
    (alert,) = verification_alerts(sqs, topic_queue)
    assert alert["Subject"].startswith("VERIFY FAILED") and "listing failed" in alert["Message"]


def test_report_totals_add_up() -> None:
    total = VerifyReport()
    total.add(VerifyReport(checked=2, sampled=1))
    total.add(VerifyReport(checked=3, errors=["x"]))
    assert (total.checked, total.sampled, total.ok) == (5, 1, False)

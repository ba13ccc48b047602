"""Someone holding a writer's keys can add backups, never change, hide or poison one that exists.

Each attack below was reproduced against the previous design: a forged manifest (made verify say `ok`, a
restore return planted bytes, and later backups carry the planted version), a forged record (made the backup
vanish from GET /backups and restores answer 500 or 404), a manifest planted under a future id (became the
base of every later backup), a record pre-created under tomorrow's scheduled id, a lock dated in the future
(never stale), a checkpoint or a queued restore written by someone else. moto does not evaluate the bucket
policy's conditions, so the create-only rule is checked with the policy evaluator over the generated
statements, and the code's own detection is checked in moto.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService, scheduled_suffix
from chalicelib.catalog.manifests import Entry, manifest_key
from chalicelib.catalog.records import backup_time, new_backup_id, record_key, sealed_key
from chalicelib.config import Settings
from chalicelib.deploy.bucket_settings import bucket_policy, create_only_statements
from chalicelib.deploy.permissions import Permission, denies, required_permissions
from chalicelib.restore.record import RestoreRecord, RestoreStore
from chalicelib.verify.verifier import Verifier
from tests.conftest import read_alerts
from tests.stored import entries_of

JSON = {"Content-Type": "application/json"}
DOCS = "test-src-documents"


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The scheduled runs these tests name (Monday 30 November 2026 and the days after) are still ahead of the clock, within MAX_BACKUP_DAYS."""
    with time_machine.travel(datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def service(backup_buckets: Any, sources: Any, stage_env: dict[str, str], topic_queue: str, s3: Any) -> BackupService:
    s3.create_bucket(Bucket="restore-target")
    return BackupService(Settings.from_environ(stage_env), Clients())


@pytest.fixture
def restore_target(s3: Any) -> str:
    s3.create_bucket(Bucket="restore-target")
    return "restore-target"


def backup(service: BackupService, plans: list[str] | None = None, backup_id: str | None = None) -> Any:
    return service.run(service.start(plans or ["documents"], trigger="api", backup_id=backup_id).backup_id)


def plant_version(s3: Any, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    """A version the attacker writes under data/ (the writer may), with real size, ETag and SHA-256."""
    response = s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")
    return {"version_id": response["VersionId"], "size": len(body), "etag": response["ETag"].strip('"'),
            "checksum": response["ChecksumSHA256"], "sha256": hashlib.sha256(body).hexdigest()}


def forge_manifest(s3: Any, bucket: str, plan: str, backup_id: str, change: dict[str, dict[str, Any]]) -> None:
    """Overwrite a manifest (as moto lets anyone; S3's bucket policy would refuse it) with entries pointing
    at planted versions."""
    from chalicelib.catalog.manifests import Manifest

    key = manifest_key(plan, backup_id)
    with Manifest.download(s3, bucket, key) as manifest:
        header, entries = manifest.header, list(manifest.entries(include_held=True))
    lines = [json.dumps(header)] + [Entry(**{**e.__dict__, **change.get(e.key, {})}).to_json() for e in entries]
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))


# --------------------------------------------------------------------------------------------------------
# Forged manifests


def test_a_forged_manifest_is_never_read_and_is_reported(
    service: BackupService, s3: Any, sqs: Any, topic_queue: str, stage_env: dict[str, str]
) -> None:
    plan = service.settings.plans.get("documents")
    first = backup(service)
    key = "reports/report-3.txt"
    planted = plant_version(s3, plan.bucket, f"data/documents/{key}", b"planted bytes, same length!!!!!!!!!!")
    forge_manifest(s3, plan.bucket, "documents", first.backup_id, {key: planted})
    read_alerts(sqs, topic_queue)
    alerts = service.tampering

    # Verify at 100% reads the version the backup wrote, and says the manifest was written again.
    result = Verifier(service.settings.plans, service.clients, report=alerts.report).verify_backup(
        first.backup_id, ["documents"], sample_percent=100
    )
    assert not result["ok"] and any("TAMPERING" in e and "versions of the manifest" in e for e in result["errors"])
    assert result["missing"] == [] and result["damaged"] == []
    (alert,) = read_alerts(sqs, topic_queue)
    assert alert["Subject"] == "TAMPERING SUSPECTED in the backups"

    # A restore gives back the original bytes, never the planted ones.
    from chalicelib.restore.requests import RestoreRequest, Target
    from chalicelib.restore.service import RestoreService

    restores = RestoreService.from_settings(service.settings, service.clients, alerts.report)
    done = restores.run(restores.start(RestoreRequest(first.backup_id, "documents", Target(bucket="restore-target"),
                                                      keys=(key,))).restore_id)
    assert done.status == "SUCCEEDED"
    assert s3.get_object(Bucket="restore-target", Key=key)["Body"].read() == b"report 3\n" * 4

    # The next backup compares with the version the backup wrote: it never carries the planted version.
    second = backup(service)
    assert any("TAMPERING" in w for w in second.plans["documents"].warnings)
    entry = {e.key: e for e in entries_of(s3, plan.bucket, "documents", second.backup_id)}[key]
    assert entry.version_id != planted["version_id"]
    assert s3.get_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)["Body"].read() == b"report 3\n" * 4


def test_a_manifest_whose_bytes_are_not_what_its_record_holds_is_refused(service: BackupService, s3: Any) -> None:
    """The record names version V and hash H: V rewritten with other bytes (an administrator's overwrite of
    that very version is impossible in S3, but a record pointing elsewhere is not) is refused, 409."""
    first = backup(service)
    record = json.loads(s3.get_object(Bucket=service.records.bucket, Key=sealed_key(first.backup_id))["Body"].read())
    record["plans"]["documents"]["manifest_sha256"] = "0" * 64
    s3.put_object(Bucket=service.records.bucket, Key=sealed_key(first.backup_id), Body=json.dumps(record).encode())
    from chalicelib.errors import Tampered

    with pytest.raises(Tampered, match="hashes to"):
        Verifier(service.settings.plans, service.clients).verify_backup(first.backup_id)


def test_the_bucket_policy_makes_manifests_and_sealed_records_create_only() -> None:
    policy = bucket_policy("b")
    manifest = "meta/snapshots/documents/20261126T000000000Z-x.jsonl.gz"

    def refused(operation: str, key: str, **params: Any) -> str | None:
        permissions = required_permissions("s3", operation, {"Bucket": "b", "Key": key, **params}, "us-east-1", "1")
        return next((sid for sid in (denies(policy, p) for p in permissions) if sid), None)

    assert refused("PutObject", manifest) == "CreateOnlyMetadata"
    assert refused("PutObject", manifest, IfMatch='"abc"') == "CreateOnlyMetadata"
    assert refused("PutObject", manifest, IfNoneMatch="*") is None
    assert refused("PutObject", "meta/sealed/backups/1_x.json") == "CreateOnlyMetadata"
    assert refused("PutObject", "meta/sealed/backups/1_x.json", IfNoneMatch="*") is None
    assert refused("CompleteMultipartUpload", manifest) == "CreateOnlyMetadata"
    assert refused("CompleteMultipartUpload", manifest, IfNoneMatch="*") is None
    # No multipart upload there (nor on the working records): S3 would date the object at the upload's
    # start, so a manifest or record finished weeks later could carry the date of the day it was begun.
    for key in (manifest, "meta/sealed/backups/1_x.json", "meta/backups/1_x.json"):
        assert refused("CreateMultipartUpload", key) == "NoMultipartUploadsOfMetadata"
        assert refused("UploadPart", key, UploadId="u", PartNumber=1) == "NoMultipartUploadsOfMetadata"
    assert refused("CreateMultipartUpload", "data/documents/big.bin") is None
    assert refused("DeleteObject", manifest) == "NoDeleteMarkersOnMetadata"
    # Fail closed: a write authorized as s3:PutObject that does not say whether it creates an object is
    # denied too, and S3 Replication from another bucket cannot write a replica over a manifest.
    from chalicelib.deploy.permissions import Permission

    assert denies(policy, Permission("s3:PutObject", f"arn:aws:s3:::b/{manifest}")) == "CreateOnlyMetadata"
    for action in ("s3:ReplicateObject", "s3:ReplicateDelete"):
        assert denies(policy, Permission(action, f"arn:aws:s3:::b/{manifest}")) == "NoReplicasOverMetadata"
        assert denies(policy, Permission(action, "arn:aws:s3:::b/data/documents/a.txt")) is None
    # Everything else is written as before: data (server-side copies), checkpoints, working records.
    assert refused("CopyObject", "data/documents/a.txt", CopySource={"Bucket": "src", "Key": "a.txt"}) is None
    assert refused("PutObject", "meta/snapshots/documents/20261126T000000000Z-x.checkpoint.json") is None
    assert refused("PutObject", "meta/backups/1_x.json") is None
    assert refused("DeleteObject", "meta/snapshots/documents/20261126T000000000Z-x.uploading") is None
    assert create_only_statements("b")[0]["Condition"] == {
        "Null": {"s3:if-none-match": "true"}, "BoolIfExists": {"s3:ObjectCreationOperation": "true"}
    }


def test_every_write_the_system_sends_passes_the_bucket_policy(
    service: BackupService, s3: Any, recorded_calls: Any
) -> None:
    """A whole backup, a second one, a restore and a verification: every request to a backup bucket passes
    its create-only statements (the session checks this for the whole suite too)."""
    from tests.record_calls import bucket_policy_violations

    backup(service)
    s3.put_object(Bucket=DOCS, Key="reports/new.txt", Body=b"new")
    backup(service)
    calls = recorded_calls.calls()
    assert any(c.operation == "PutObject" and "/sealed/" in c.params.get("Key", "") for c in calls)
    assert bucket_policy_violations(calls, {service.settings.plans.get("documents").bucket}) == []
    # And the check can fail: an unconditional PutObject on a manifest key is reported.
    from tests.record_calls import Call

    forged = Call("s3", "PutObject", {"Bucket": "test-backup-documents", "Key": "meta/snapshots/documents/x.jsonl.gz"},
                  "us-east-1", "test")
    assert bucket_policy_violations([forged], {"test-backup-documents"})


# --------------------------------------------------------------------------------------------------------
# Sealed records


@pytest.mark.parametrize("forged", [b"not json", json.dumps({"plans": {}}).encode()])
def test_a_forged_working_record_changes_nothing_once_the_backup_is_sealed(
    app_client: Any, backup_buckets: Any, sources: Any, s3: Any, restore_target: str, forged: bytes
) -> None:
    started = app_client.http.post("/backup", headers=JSON, body=b'{"plans": ["documents"]}').json_body
    backup_id = started["backup_id"]
    s3.put_object(Bucket=backup_buckets.catalog_bucket, Key=record_key(backup_id), Body=forged)
    listed = app_client.http.get("/backups").json_body["backups"]
    assert [(b["backup_id"], b["status"]) for b in listed] == [(backup_id, "SUCCEEDED")]
    assert app_client.http.get(f"/backups/{backup_id}").json_body["status"] == "SUCCEEDED"
    response = app_client.http.post("/restores", headers=JSON, body=json.dumps(
        {"backup_id": backup_id, "plan": "documents", "target": {"bucket": "restore-target"}}).encode())
    assert response.status_code == 202


@pytest.mark.parametrize("forged", [b"not json", json.dumps({"plans": {}}).encode()])
def test_an_unreadable_sealed_record_is_a_clear_409_an_alert_and_never_a_shorter_list(
    app_client: Any, backup_buckets: Any, sources: Any, s3: Any, sqs: Any, topic_queue: str, restore_target: str,
    forged: bytes,
) -> None:
    ids = [app_client.http.post("/backup", headers=JSON, body=b'{"plans": ["documents"]}').json_body["backup_id"]
           for _ in range(2)]
    read_alerts(sqs, topic_queue)
    victim = ids[0]
    for key in (sealed_key(victim), record_key(victim)):
        s3.put_object(Bucket=backup_buckets.catalog_bucket, Key=key, Body=forged)
    listed = app_client.http.get("/backups").json_body["backups"]
    assert [b["backup_id"] for b in listed] == list(reversed(ids))
    unreadable = next(b for b in listed if b["backup_id"] == victim)
    assert unreadable["status"] == "UNREADABLE" and "record" in unreadable["error"]
    response = app_client.http.get(f"/backups/{victim}")
    assert response.status_code == 409 and response.json_body["Code"] == "TamperingDetected"
    # Restores find the snapshot from the plan and the backup id alone.
    restore = app_client.http.post("/restores", headers=JSON, body=json.dumps(
        {"backup_id": victim, "plan": "documents", "target": {"bucket": "restore-target"}}).encode())
    assert restore.status_code == 202, restore.json_body
    status = app_client.http.get(f"/restores/{restore.json_body['restore_id']}").json_body
    assert status["status"] == "SUCCEEDED" and status["restored"] == 10
    # Told once, however many requests met it.
    alerts = [a for a in read_alerts(sqs, topic_queue) if a["Subject"].startswith("TAMPERING")]
    assert len(alerts) == 1 and victim in alerts[0]["Message"]


# --------------------------------------------------------------------------------------------------------
# Planted metadata that later backups trust


def test_a_manifest_planted_under_a_future_id_never_becomes_a_base(service: BackupService, s3: Any) -> None:
    plan = service.settings.plans.get("documents")
    first = backup(service)
    evil = "99991231T235959999Z-evil"
    # A copy of the real manifest under the evil id claims every object unchanged: as a base it would make
    # the next backup copy nothing.
    body = s3.get_object(Bucket=plan.bucket, Key=manifest_key("documents", first.backup_id))["Body"].read()
    s3.put_object(Bucket=plan.bucket, Key=manifest_key("documents", evil), Body=body)
    s3.put_object(Bucket=DOCS, Key="reports/report-1.txt", Body=b"changed since")
    second = backup(service)
    assert second.plans["documents"].copied == 1 and second.plans["documents"].unchanged == 9
    # With no sealed record at all (legacy), the bucket's manifests decide, and a future id is never one.
    from chalicelib.backup.plan_run import back_up_plan

    third = back_up_plan(plan, service.clients, new_backup_id())
    assert third.unchanged == 10 and third.copied == 0


def test_a_sealed_record_planted_in_the_future_is_not_a_base(service: BackupService, s3: Any) -> None:
    first = backup(service)
    future = new_backup_id(datetime.now(timezone.utc) + timedelta(days=30), suffix="evil")
    real = json.loads(s3.get_object(Bucket=service.records.bucket, Key=sealed_key(first.backup_id))["Body"].read())
    planted = {**real, "backup_id": future}
    planted["plans"]["documents"]["snapshot"] = real["plans"]["documents"]["snapshot"].replace(first.backup_id, future)
    s3.put_object(Bucket=service.records.bucket, Key=sealed_key(future), Body=json.dumps(planted).encode())
    s3.put_object(Bucket=service.records.bucket, Key=record_key(future), Body=json.dumps(planted).encode())
    s3.put_object(Bucket=DOCS, Key="reports/report-2.txt", Body=b"changed")
    second = backup(service)
    assert (second.plans["documents"].copied, second.plans["documents"].unchanged) == (1, 9)


def test_tomorrows_scheduled_backup_cannot_be_prepared_in_advance(service: BackupService, s3: Any) -> None:
    """The predictable id `<time>Z-scheduled` is pre-created with a record claiming success; the real
    delivery's id carries a part derived from its event's id, so the planted record is never met."""
    tomorrow = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
    predictable = new_backup_id(tomorrow, suffix="scheduled")
    fake = service.start(["documents"], trigger="schedule", backup_id=predictable)
    fake.status = "SUCCEEDED"
    service.records.replace(fake, service.records.current(predictable)[1] or "")
    record = service.run_scheduled(tomorrow, event_id="3f5e0c1e-8b7a-4d5c-9e2f-1a2b3c4d5e6f")
    assert record.backup_id != predictable and record.backup_id.endswith(scheduled_suffix("3f5e0c1e-8b7a-4d5c-9e2f-1a2b3c4d5e6f"))
    assert backup_time(record.backup_id) == tomorrow and record.status == "SUCCEEDED"
    assert record.plans["documents"].copied == 10
    # A redelivery of the same event finds the same backup.
    again = service.run_scheduled(tomorrow, event_id="3f5e0c1e-8b7a-4d5c-9e2f-1a2b3c4d5e6f")
    assert again.backup_id == record.backup_id


def test_a_lock_dated_in_the_future_is_not_a_lock(app_client: Any, backup_buckets: Any, sources: Any, s3: Any) -> None:
    from chalicelib.jobs.locks import lock_key

    forged = {"plan": "documents", "backup_id": new_backup_id(), "acquired_at": "2099-01-01T00:00:00.000Z"}
    s3.put_object(Bucket=backup_buckets.catalog_bucket, Key=lock_key("documents"), Body=json.dumps(forged).encode())
    response = app_client.http.post("/backup", headers=JSON, body=b'{"plans": ["documents"]}')
    assert response.status_code == 202, response.json_body


def test_a_forged_checkpoint_is_ignored_and_the_run_starts_over(service: BackupService, s3: Any) -> None:
    from chalicelib.backup.checkpoints import checkpoint_key

    plan = service.settings.plans.get("documents")
    record = service.start(["documents"], trigger="api")
    forged = {"plan": "documents", "backup_id": record.backup_id, "seq": 1, "source_index": 1, "last_key": None,
              "partial_key": "meta/elsewhere/planted.jsonl.gz"}
    s3.put_object(Bucket=plan.bucket, Key=checkpoint_key("documents", record.backup_id), Body=json.dumps(forged).encode())
    done = service.run(record.backup_id)
    assert done.status == "SUCCEEDED" and done.plans["documents"].copied == 10
    assert len(entries_of(s3, plan.bucket, "documents", record.backup_id)) == 10


def test_a_queued_restore_naming_another_bucket_is_refused_by_the_worker(
    service: BackupService, s3: Any, stage_env: dict[str, str]
) -> None:
    from chalicelib.restore.service import RestoreService

    first = backup(service)
    s3.create_bucket(Bucket="attacker-bucket")
    forged = RestoreRecord(restore_id=new_backup_id(), backup_id=first.backup_id, plan="documents",
                           target={"bucket": "attacker-bucket", "prefix": ""}, created_at="2026-11-26T00:00:00.000Z")
    RestoreStore(s3, service.records.bucket).create(forged)
    restores = RestoreService.from_settings(service.settings, service.clients)
    (done,) = restores.resume_pending()
    assert done.status == "FAILED" and "not one of this stage's restore buckets" in done.warnings[-1]
    assert "Contents" not in s3.list_objects_v2(Bucket="attacker-bucket")


def test_permission_context_of_conditional_writes() -> None:
    (put,) = required_permissions("s3", "PutObject", {"Bucket": "b", "Key": "k", "IfNoneMatch": "*"}, "us-east-1", "1")
    assert dict(put.context) == {"s3:ResourceAccount": "1", "s3:ObjectCreationOperation": "true", "s3:if-none-match": "*"}
    assert denies({"Statement": []}, Permission("s3:PutObject", "arn:aws:s3:::b/k")) is None

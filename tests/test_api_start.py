"""POST /backup: 202 and Location, dry runs, one running backup per plan, Idempotency-Key, refusals."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.api_helpers import all_keys, make_buckets, post, seed_record

CATALOG = "test-backup-documents"
PHOTOS = "test-backup-photos"


@pytest.fixture
def api(app_client: Any, s3: Any, plans: Any, sources: Any) -> Any:
    make_buckets(s3, plans)
    return app_client


@pytest.fixture
def no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backups stay RUNNING: the worker never picks them up."""
    from chalicelib.backup.service import BackupService

    monkeypatch.setattr(BackupService, "dispatch", lambda self, record, run_key=None: None)


def records(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=CATALOG, Prefix="meta/backups/").get("Contents", [])
    return [item["Key"] for item in listed]


def test_post_answers_202_with_location_and_the_backup_runs(api: Any) -> None:
    response = post(api, {"plans": ["photos"]})
    assert response.status_code == 202
    body = response.json_body
    assert response.headers["Location"] == f"/backups/{body['backup_id']}"
    assert body["plans"] == ["photos"] and body["dry_run"] is False and body["replayed"] is False
    detail = api.http.get(response.headers["Location"]).json_body
    assert detail["plans"]["photos"]["status"] != "RUNNING"
    assert detail["plans"]["photos"]["snapshot"].startswith(f"s3://{PHOTOS}/meta/snapshots/photos/")


def test_empty_body_backs_up_every_plan(api: Any, plans: Any) -> None:
    response = api.http.post("/backup")
    assert response.status_code == 202
    assert response.json_body["plans"] == plans.names


def test_dry_run_reports_copies_deletions_and_holds_and_writes_nothing(api: Any, s3: Any, stage_env: dict[str, str]) -> None:
    before = all_keys(s3, PHOTOS)
    response = post(api, {"plans": ["photos"], "dry_run": True})
    assert response.status_code == 202 and response.json_body["dry_run"] is True
    detail = api.http.get(response.headers["Location"]).json_body
    assert detail["dry_run"] is True and "dry run" in detail["note"]
    plan = detail["plans"]["photos"]
    assert plan["would"] == {"copy": 10, "copy_bytes": sum(100 + i for i in range(10)), "delete": 0, "hold_back": 0}
    assert plan["snapshot"] is None and plan["status"] in ("SUCCEEDED", "PARTIAL")
    assert all_keys(s3, PHOTOS) == before

    # After a real backup: one object gone (under the plan's 20% limit), then five (over it).
    assert post(api, {"plans": ["photos"]}).status_code == 202
    source = stage_env["PHOTOS_SOURCE_BUCKET"]
    s3.delete_object(Bucket=source, Key="2026/img-0.png")
    before = all_keys(s3, PHOTOS)
    plan = api.http.get(post(api, {"plans": ["photos"], "dry_run": True}).headers["Location"]).json_body["plans"]["photos"]
    assert plan["would"] == {"copy": 0, "copy_bytes": 0, "delete": 1, "hold_back": 0}
    for index in range(1, 5):
        s3.delete_object(Bucket=source, Key=f"2026/img-{index}.png")
    plan = api.http.get(post(api, {"plans": ["photos"], "dry_run": True}).headers["Location"]).json_body["plans"]["photos"]
    assert plan["would"]["hold_back"] == 5 and plan["would"]["delete"] == 0
    assert plan["findings"]["mass_deletion"]["deletions_held_back"] == 5
    assert all_keys(s3, PHOTOS) == before


def test_a_plan_already_running_answers_409_with_the_running_backup(api: Any, s3: Any, no_worker: None) -> None:
    first = post(api, {"plans": ["photos"]}).json_body["backup_id"]
    again = post(api, {"plans": ["photos"]})
    assert again.status_code == 409
    assert again.json_body["Code"] == "ConflictError"
    assert again.json_body["backup_id"] == first
    assert first in again.json_body["Message"]
    # Refused as a whole: the documents lock it took first is given back, and no record is written.
    before = all_keys(s3, CATALOG)
    mixed = post(api, {"plans": ["documents", "photos"]}, {"Idempotency-Key": "mixed"})
    assert mixed.status_code == 409 and mixed.json_body["backup_id"] == first
    assert all_keys(s3, CATALOG) == before  # no record, no lock, no idempotency claim: nothing written
    assert post(api, {"plans": ["documents"]}).status_code == 202
    # A dry run reads every source (and scans the table): it waits for the running backup like a backup.
    dry = post(api, {"plans": ["photos"], "dry_run": True})
    assert dry.status_code == 409 and dry.json_body["backup_id"] == first


def test_the_lock_is_free_once_the_backup_finished(api: Any) -> None:
    first = post(api, {"plans": ["photos"]})
    second = post(api, {"plans": ["photos"]})
    assert first.status_code == second.status_code == 202
    assert first.json_body["backup_id"] != second.json_body["backup_id"]


def test_a_stale_lock_is_taken_over(api: Any, s3: Any, no_worker: None) -> None:
    from chalicelib.jobs.locks import DEFAULT_LOCK_LIFETIME, lock_key

    first = post(api, {"plans": ["photos"]}).json_body["backup_id"]
    lock = json.loads(s3.get_object(Bucket=CATALOG, Key=lock_key("photos"))["Body"].read())
    assert lock["backup_id"] == first
    # The worker died hours ago: its record still says RUNNING, but the lock has outlived its lifetime.
    from datetime import datetime

    old = datetime.fromisoformat(lock["acquired_at"].replace("Z", "+00:00")) - DEFAULT_LOCK_LIFETIME - timedelta(minutes=1)
    lock["acquired_at"] = old.isoformat()
    s3.put_object(Bucket=CATALOG, Key=lock_key("photos"), Body=json.dumps(lock).encode())
    taken = post(api, {"plans": ["photos"]})
    assert taken.status_code == 202 and taken.json_body["backup_id"] != first


def test_two_requests_racing_for_a_free_lock_only_one_wins(api: Any, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the same finished lock; the other request replaces it first, so ours must lose."""
    from datetime import datetime, timezone

    from chalicelib import s3docs
    from chalicelib.jobs.locks import lock_key

    post(api, {"plans": ["photos"]})  # finished: its lock is free to take over
    rival = seed_record(s3, CATALOG, datetime.now(timezone.utc), status="RUNNING", plans=("photos",))
    real_replace = s3docs.replace

    def rival_first(s3_: Any, bucket: str, key: str, data: dict[str, Any], etag: str) -> str:
        if key == lock_key("photos") and data["backup_id"] != rival:
            s3_.put_object(
                Bucket=bucket,
                Key=key,
                Body=json.dumps({"plan": "photos", "backup_id": rival, "acquired_at": datetime.now(timezone.utc).isoformat()}).encode(),
            )
        return real_replace(s3_, bucket, key, data, etag)

    monkeypatch.setattr(s3docs, "replace", rival_first)
    lost = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "raced"})
    assert lost.status_code == 409
    assert lost.json_body["backup_id"] == rival
    # The key it had claimed is given back: a retry is not answered with a backup that never started.
    assert s3.list_objects_v2(Bucket=CATALOG, Prefix="meta/idempotency/").get("KeyCount") == 0


def test_idempotency_key_returns_the_first_backup_and_starts_nothing(api: Any, s3: Any) -> None:
    first = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "run-2026-11-26"})
    count = len(records(s3))
    again = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "run-2026-11-26"})
    assert again.status_code == 202
    assert again.json_body["backup_id"] == first.json_body["backup_id"]
    assert again.json_body["replayed"] is True
    assert again.headers["Location"] == first.headers["Location"]
    assert len(records(s3)) == count
    other = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "run-2026-11-27"})
    assert other.json_body["backup_id"] != first.json_body["backup_id"]
    # The key is stored hashed, never as given.
    claims = [item["Key"] for item in s3.list_objects_v2(Bucket=CATALOG, Prefix="meta/idempotency/")["Contents"]]
    assert len(claims) == 2 and not any("run-2026" in key for key in claims)


def test_idempotency_key_repeated_while_the_backup_runs_is_not_a_conflict(api: Any, no_worker: None) -> None:
    first = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k1"}).json_body["backup_id"]
    again = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.json_body["backup_id"] == first


def test_idempotency_key_reused_for_another_request_is_refused(api: Any, s3: Any) -> None:
    post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k2"})
    count = len(records(s3))
    response = post(api, {"plans": ["documents"]}, {"Idempotency-Key": "k2"})
    assert response.status_code == 422
    assert response.json_body["Code"] == "UnprocessableEntityError" and "new key" in response.json_body["Message"]
    assert len(records(s3)) == count


def _age_claim(s3: Any, key: str, by: timedelta) -> None:
    from datetime import datetime

    from chalicelib.api.idempotency import document_key

    doc = json.loads(s3.get_object(Bucket=CATALOG, Key=document_key(key))["Body"].read())
    doc["created_at"] = (datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00")) - by).isoformat()
    s3.put_object(Bucket=CATALOG, Key=document_key(key), Body=json.dumps(doc).encode())


def test_idempotency_key_expires_after_24_hours(api: Any, s3: Any) -> None:
    first = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k3"}).json_body["backup_id"]
    _age_claim(s3, "k3", timedelta(hours=24, minutes=1))
    later = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k3"})
    assert later.status_code == 202 and later.json_body["backup_id"] != first and later.json_body["replayed"] is False


def test_a_claim_whose_backup_is_not_recorded_yet_is_in_progress_then_abandoned(api: Any, s3: Any) -> None:
    from datetime import datetime, timezone

    from chalicelib.api.idempotency import IdempotencyKeys, fingerprint

    keys = IdempotencyKeys(s3, CATALOG)
    now = datetime.now(timezone.utc)
    request = fingerprint({"plans": ["photos"], "dry_run": False})
    keys.claim("k4", request, "20261126T000000000Z-00000000", now, is_recorded=lambda _: False)
    in_progress = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k4"})
    assert in_progress.status_code == 409 and "retry" in in_progress.json_body["Message"]
    _age_claim(s3, "k4", timedelta(minutes=2))
    taken = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k4"})
    assert taken.status_code == 202 and taken.json_body["backup_id"] != "20261126T000000000Z-00000000"


def test_a_refused_request_gives_its_idempotency_key_back(api: Any, s3: Any, no_worker: None) -> None:
    from chalicelib.catalog.records import RecordStore

    running = post(api, {"plans": ["photos"]}).json_body["backup_id"]
    refused = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k5"})
    assert refused.status_code == 409
    assert s3.list_object_versions(Bucket=CATALOG, Prefix="meta/idempotency/").get("Versions") is None
    store = RecordStore(s3, CATALOG)
    record, etag = store.current(running)
    record.status = "SUCCEEDED"
    store.replace(record, etag or "")
    retried = post(api, {"plans": ["photos"]}, {"Idempotency-Key": "k5"})
    assert retried.status_code == 202 and retried.json_body["replayed"] is False


MISTAKES = [
    ("{not json", {}, 400, "BadRequestError", "not valid JSON"),
    ("[1, 2]", {}, 400, "BadRequestError", "JSON object"),
    ({"plans": ["photos"], "dryrun": True}, {}, 400, "BadRequestError", "'dryrun'"),
    ({"plans": ["nope"]}, {}, 400, "BadRequestError", "documents, photos, database"),
    ({"plans": "photos"}, {}, 400, "BadRequestError", "list of plan names"),
    ({"dry_run": "yes"}, {}, 400, "BadRequestError", "true or false"),
    ({"plans": ["photos"]}, {"Idempotency-Key": "x" * 256}, 400, "BadRequestError", "Idempotency-Key"),
    ({"plans": ["photos"]}, {"Idempotency-Key": ""}, 400, "BadRequestError", "Idempotency-Key"),
    ({"plans": ["photos"], "pad": "x" * 70_000}, {}, 413, "PayloadTooLarge", "64 KiB"),
    ('{"plans": ["photos"]}', {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType", "application/json"),
    ("plans=photos", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "UnsupportedMediaType", "Content-Type"),
]


def test_client_mistakes_are_explained_and_write_nothing(api: Any, s3: Any, plans: Any) -> None:
    before = {plan.bucket: all_keys(s3, plan.bucket) for plan in plans.plans}
    for body, headers, status, code, says in MISTAKES:
        response = post(api, body, headers)
        assert response.status_code == status, body
        assert response.json_body["Code"] == code
        assert says in response.json_body["Message"], response.json_body
    assert {plan.bucket: all_keys(s3, plan.bucket) for plan in plans.plans} == before


@pytest.mark.parametrize("route", ["/backup", "/prune", "/restores", "/backups/20261126T000000000Z-00000000/verify"])
def test_a_deeply_nested_body_is_refused_as_a_bad_request(app_client: Any, route: str) -> None:
    # Sixty thousand brackets fit in the 64 KiB limit and exceed the JSON parser's recursion.
    body = "[" * 30_000 + "]" * 30_000
    response = app_client.http.post(route, headers={"Content-Type": "application/json"}, body=body)
    assert response.status_code == 400, (route, response.body[:200])
    assert response.json_body["Code"] == "BadRequestError"
    assert "nests" in response.json_body["Message"]


def test_an_empty_body_needs_no_json_content_type(api: Any) -> None:
    response = api.http.post("/backup", headers={"Content-Type": "text/plain"}, body="")
    assert response.status_code == 202


def test_a_running_scheduled_backup_holds_its_plans_too(
    api: Any, stage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime, timezone

    from chalicelib.aws import Clients
    from chalicelib.backup.service import BackupService
    from chalicelib.config import Settings

    # The daily backup has started and is still working (its worker is elsewhere).
    monkeypatch.setattr(BackupService, "run", lambda self, backup_id, context=None, run_key=None: self.records.get(backup_id))
    scheduled = BackupService(Settings.from_environ(stage_env), Clients()).run_scheduled(datetime.now(timezone.utc))
    response = post(api, {"plans": ["photos"]})
    assert response.status_code == 409
    assert response.json_body["backup_id"] == scheduled.backup_id

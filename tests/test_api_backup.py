"""POST /backup, GET /backups and GET /backups/{id} end to end through the chalice test client, and bad input:
a client mistake is a 4xx that says what was wrong, never a 500, and a rejected request writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.catalog.manifests import list_snapshot_keys

JSON = {"Content-Type": "application/json"}
PLANS = ["documents", "photos", "database"]


@pytest.fixture
def api(app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str) -> Any:
    return app_client


@pytest.fixture
def bare_api(app_client: Any, s3: Any) -> Any:
    """Just the catalog bucket: enough for requests that must be refused before any work starts."""
    s3.create_bucket(Bucket="test-backup-documents")
    return app_client


def post(api: Any, body: Any = None, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return api.http.post("/backup", headers=JSON, body=data)


def test_post_backup_runs_every_plan(api: Any, s3: Any) -> None:
    response = post(api)
    assert response.status_code == 202
    body = response.json_body
    backup_id = body["backup_id"]
    assert response.headers["Location"] == f"/backups/{backup_id}"
    assert body["plans"] == PLANS
    shown = api.http.get(f"/backups/{backup_id}")
    assert shown.status_code == 200
    record = shown.json_body
    assert record["backup_id"] == backup_id and record["status"] == "SUCCEEDED" and record["trigger"] == "api"
    assert {name: result["status"] for name, result in record["plans"].items()} == dict.fromkeys(PLANS, "SUCCEEDED")
    assert record["plans"]["documents"]["copied"] == 10 and record["plans"]["database"]["copied"] == 1
    for plan in PLANS:
        assert len(list_snapshot_keys(s3, f"test-backup-{plan}", plan)) == 1


def test_post_backup_of_named_plans(api: Any, s3: Any) -> None:
    response = post(api, {"plans": ["photos"]})
    assert response.status_code == 202 and response.json_body["plans"] == ["photos"]
    record = api.http.get(f"/backups/{response.json_body['backup_id']}").json_body
    assert list(record["plans"]) == ["photos"] and record["status"] == "SUCCEEDED"
    assert list_snapshot_keys(s3, "test-backup-documents", "documents") == []


def test_unknown_plan_is_a_400_naming_the_known_plans(bare_api: Any, s3: Any) -> None:
    response = post(bare_api, {"plans": ["photos", "holidays"]})
    assert response.status_code == 400
    message = response.json_body["Message"]
    assert "holidays" in message
    for plan in PLANS:
        assert plan in message
    # Nothing at all in the catalog bucket: no backup record under meta/backups/, nor anything else.
    assert "Versions" not in s3.list_object_versions(Bucket="test-backup-documents")


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b'{"plans": ["photos"', "not valid JSON"),
        (b"{plans: photos}", "not valid JSON"),
        (b"\xff\xfe{}", "JSON"),
        (b'["photos"]', "JSON object"),
        (b'"photos"', "JSON object"),
        (b"42", "JSON object"),
        (b"null", "JSON object"),
        (b'{"plans": "photos"}', "plans"),
        (b'{"plans": []}', "plans"),
        (b'{"plans": [1, 2]}', "plans"),
        (b'{"plans": [["photos"]]}', "plans"),
        (b'{"plan": ["photos"]}', "plan"),
        (b'{"dry_run": "yes"}', "dry_run"),
    ],
    ids=[
        "truncated",
        "unquoted",
        "not utf-8",
        "a list",
        "a string",
        "a number",
        "null",
        "plans a string",
        "plans empty",
        "plans numbers",
        "plans nested",
        "misspelt field",
        "dry_run a string",
    ],
)
def test_bad_bodies_are_400_and_write_nothing(bare_api: Any, s3: Any, raw: bytes, fragment: str) -> None:
    response = post(bare_api, raw=raw)
    assert response.status_code == 400, response.body
    assert fragment in response.json_body["Message"]
    # Nothing at all in the catalog bucket: no backup record under meta/backups/, nor anything else.
    assert "Versions" not in s3.list_object_versions(Bucket="test-backup-documents")


def test_unknown_backup_is_404(bare_api: Any) -> None:
    for backup_id in ("20261126T134735123Z-9f2c4a1b", "not-a-backup-id", "..%2F..%2Fetc"):
        response = bare_api.http.get(f"/backups/{backup_id}")
        assert response.status_code == 404, (backup_id, response.body)
        assert "Message" in response.json_body


def test_backups_are_listed_newest_first_with_per_plan_results(api: Any, clients: Any) -> None:
    import app as app_module

    app_module._clients = clients
    ids = []
    for plans in (["photos"], ["documents"], ["photos", "database"]):
        ids.append(post(api, {"plans": plans}).json_body["backup_id"])
    listing = api.http.get("/backups")
    assert listing.status_code == 200
    backups = listing.json_body["backups"]
    assert [b["backup_id"] for b in backups] == list(reversed(ids))
    newest = backups[0]
    assert newest["status"] == "SUCCEEDED"
    assert set(newest["plans"]) == {"photos", "database"}
    assert newest["plans"]["photos"]["status"] == "SUCCEEDED"
    assert newest["plans"]["photos"]["unchanged"] == 10 and newest["plans"]["photos"]["copied"] == 0
    assert backups[2]["plans"]["photos"]["copied"] == 10


def test_no_backups_yet_is_an_empty_list(bare_api: Any) -> None:
    response = bare_api.http.get("/backups")
    assert response.status_code == 200 and response.json_body["backups"] == []


def test_a_backup_with_a_failing_source_is_reported_partial(api: Any, s3: Any) -> None:
    for item in s3.list_objects_v2(Bucket="test-src-photos")["Contents"]:
        s3.delete_object(Bucket="test-src-photos", Key=item["Key"])
    s3.delete_bucket(Bucket="test-src-photos")
    response = post(api)
    assert response.status_code == 202
    record = api.http.get(f"/backups/{response.json_body['backup_id']}").json_body
    assert record["status"] == "PARTIAL"
    assert record["plans"]["photos"]["status"] == "FAILED"
    assert "NoSuchBucket" in record["plans"]["photos"]["errors"][0]
    assert record["plans"]["documents"]["status"] == record["plans"]["database"]["status"] == "SUCCEEDED"

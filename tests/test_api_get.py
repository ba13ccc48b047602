"""GET /backups/{id}, GET /backups/{id}/objects and GET /plans."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from tests.api_helpers import make_buckets, post, seed_record

CATALOG = "test-backup-documents"


@pytest.fixture
def api(app_client: Any, s3: Any, plans: Any, sources: Any) -> Any:
    make_buckets(s3, plans)
    return app_client


def test_a_backup_in_detail(api: Any, s3: Any, sources: dict[str, Any]) -> None:
    from chalicelib.catalog.manifests import manifest_key

    backup_id = post(api, {}).json_body["backup_id"]
    response = api.http.get(f"/backups/{backup_id}")
    assert response.status_code == 200
    body = response.json_body
    assert body["backup_id"] == backup_id and body["trigger"] == "api" and body["dry_run"] is False
    assert body["duration_seconds"] >= 0
    photos = body["plans"]["photos"]
    assert photos["copied"] == 10 and photos["objects"] == 10
    assert photos["bytes"] == sum(len(v) for v in sources["photos"].values())
    assert photos["bytes_copied"] == photos["bytes"]
    assert photos["duration_seconds"] >= 0
    assert photos["snapshot"] == f"s3://test-backup-photos/{manifest_key('photos', backup_id)}"
    assert photos["errors"] == []
    assert photos["findings"]["mass_deletion"] is None
    # These buckets were made without the plan's settings: the backup's drift check says so.
    assert photos["findings"]["drift"] and all(isinstance(item, str) for item in photos["findings"]["drift"])
    assert body["totals"]["copied"] == sum(plan["copied"] for plan in body["plans"].values())
    assert body["plans"]["database"]["sources"]["orders"]["items"] == 50


def test_mass_deletion_and_errors_are_findings(api: Any, s3: Any, stage_env: dict[str, str]) -> None:
    post(api, {"plans": ["photos", "documents"]})
    for index in range(6):
        s3.delete_object(Bucket=stage_env["PHOTOS_SOURCE_BUCKET"], Key=f"2026/img-{index}.png")
    for item in s3.list_objects_v2(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"])["Contents"]:
        s3.delete_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=item["Key"])
    s3.delete_bucket(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"])
    backup_id = post(api, {"plans": ["photos", "documents"]}).json_body["backup_id"]
    body = api.http.get(f"/backups/{backup_id}").json_body
    finding = body["plans"]["photos"]["findings"]["mass_deletion"]
    assert finding["deletions_held_back"] == 6 and "held back" in finding["message"]
    documents = body["plans"]["documents"]
    assert documents["status"] == "FAILED" and documents["errors"]
    assert body["status"] != "SUCCEEDED"


@pytest.mark.parametrize("backup_id", ["20201126T134735123Z-9f2c4a1b", "nope", "..%2F..%2Fetc", "2" * 300])
def test_unknown_or_malformed_ids_are_404(api: Any, backup_id: str) -> None:
    response = api.http.get(f"/backups/{backup_id}")
    assert response.status_code == 404
    assert response.json_body["Code"] == "NotFoundError"
    assert "20261126T134735123Z-9f2c4a1b" in response.json_body["Message"] or "no backup" in response.json_body["Message"]
    assert api.http.get(f"/backups/{backup_id}/objects?plan=photos").status_code == 404


def test_objects_of_a_snapshot_page_by_page(api: Any, s3: Any, sources: dict[str, Any]) -> None:
    backup_id = post(api, {"plans": ["documents", "photos"]}).json_body["backup_id"]
    first = api.http.get(f"/backups/{backup_id}/objects?plan=documents&limit=4")
    assert first.status_code == 200
    body = first.json_body
    assert body["plan"] == "documents" and body["snapshot"].endswith(f"/{backup_id}.jsonl.gz")
    item = body["objects"][0]
    assert item["key"] == "reports/report-0.txt" and item["size"] == len(sources["documents"]["reports/report-0.txt"])
    head = s3.head_object(Bucket="test-backup-documents", Key="data/documents/reports/report-0.txt")
    assert item["version_id"] == head["VersionId"]
    assert item["storage_class"] == "STANDARD"
    keys = [o["key"] for o in body["objects"]]
    token = body["next_token"]
    while token:
        page = api.http.get(f"/backups/{backup_id}/objects?plan=documents&limit=4&next_token={token}").json_body
        keys += [o["key"] for o in page["objects"]]
        token = page["next_token"]
    assert keys == sorted(sources["documents"])
    only = api.http.get(f"/backups/{backup_id}/objects?plan=documents&prefix=reports/report-3").json_body
    assert [o["key"] for o in only["objects"]] == ["reports/report-3.txt"] and only["next_token"] is None


def test_storage_class_only_where_known(api: Any, s3: Any) -> None:
    backup_id = post(api, {"plans": ["photos"]}).json_body["backup_id"]
    first = api.http.get(f"/backups/{backup_id}/objects?limit=1").json_body["objects"][0]
    # The version is gone (in AWS: expired by a retention rule): the listing still answers, without a class.
    s3.delete_object(Bucket="test-backup-photos", Key=first["backup_key"], VersionId=first["version_id"])
    again = api.http.get(f"/backups/{backup_id}/objects?limit=1").json_body["objects"][0]
    assert again["key"] == first["key"] and again["storage_class"] is None


def test_objects_mistakes(api: Any, s3: Any) -> None:
    backup_id = post(api, {"plans": ["documents", "photos"]}).json_body["backup_id"]
    dry = post(api, {"plans": ["photos"], "dry_run": True}).json_body["backup_id"]
    running = seed_record(s3, CATALOG, datetime.now(timezone.utc), status="RUNNING", plans=("photos",))
    token = api.http.get(f"/backups/{backup_id}/objects?plan=documents&limit=2").json_body["next_token"]
    cases = [
        (f"/backups/{backup_id}/objects", 400, "name the plan"),
        (f"/backups/{backup_id}/objects?plan=database", 400, "has no plan 'database'"),
        (f"/backups/{backup_id}/objects?plan=documents&limit=0", 400, "limit"),
        (f"/backups/{backup_id}/objects?plan=documents&colour=red", 400, "unknown query parameter"),
        (f"/backups/{backup_id}/objects?plan=documents&next_token=xyz", 400, "next_token"),
        (f"/backups/{backup_id}/objects?plan=photos&next_token={token}", 400, "different query"),
        (f"/backups/{backup_id}/objects?plan=documents&prefix=a&next_token={token}", 400, "different query"),
        (f"/backups/{dry}/objects", 404, "dry run"),
        (f"/backups/{running}/objects", 409, "still running"),
    ]
    for url, status, says in cases:
        response = api.http.get(url)
        assert response.status_code == status, url
        assert says in response.json_body["Message"], (url, response.json_body)


def test_plans(api: Any, plans: Any) -> None:
    response = api.http.get("/plans")
    assert response.status_code == 200
    body = response.json_body
    assert body["catalog_bucket"] == plans.catalog_bucket
    by_name = {plan["name"]: plan for plan in body["plans"]}
    assert list(by_name) == plans.names
    assert by_name["photos"]["bucket"] == "test-backup-photos"
    assert by_name["photos"]["sources"][0] == {
        "name": "photos", "type": "s3", "bucket": "test-src-photos", "prefix": "", "archived": "skip", "kms_key_id": None
    }
    assert [(t["days"], t["storage_class"]) for t in by_name["documents"]["lifecycle"]["transitions"]] == [
        (30, "GLACIER"),
        (180, "DEEP_ARCHIVE"),
    ]
    assert [(t["days"], t["storage_class"]) for t in by_name["database"]["lifecycle"]["transitions"]] == [(7, "GLACIER")]
    assert by_name["database"]["sources"][0]["table"] == "test-orders"
    assert "retention" in by_name["photos"]

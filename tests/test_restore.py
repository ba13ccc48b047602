"""Restores through the API: exact versions back, byte for byte; refusals that write nothing; archived
versions that wait for a thaw and then complete; the database export into a new table; the dry-run quote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import scheduled_event
from chalice.test import Client

from chalicelib.config import Settings
from chalicelib.layout import RESTORE_QUEUE_PREFIX as QUEUE_PREFIX
from chalicelib.layout import RESTORES_PREFIX
from chalicelib.restore.service import RestoreService
from chalicelib.restore.table import item_from_export

TARGET = "restore-target"
DOCS = "test-src-documents"


# ------------------------------------------------------------------------------------------------ helpers


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.http.post(path, headers={"Content-Type": "application/json"}, body=json.dumps(body))


def get(client: Client, path: str) -> Any:
    return client.http.get(path)


def backup(client: Client, plans: list[str]) -> str:
    response = post(client, "/backup", {"plans": plans})
    assert response.status_code == 202, response.body
    backup_id = response.json_body["backup_id"]
    assert get(client, f"/backups/{backup_id}").json_body["status"] in ("SUCCEEDED", "PARTIAL")
    return backup_id


def bucket_contents(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            contents[item["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return contents


def restore_records(s3: Any) -> list[str]:
    response = s3.list_objects_v2(Bucket="test-backup-documents", Prefix=RESTORES_PREFIX)
    return [item["Key"] for item in response.get("Contents", [])]


def archive(bucket: str, key: str, version_id: str, storage_class: str = "GLACIER") -> None:
    """What a lifecycle transition does to a version (moto stores lifecycle rules but never runs them)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key, version_id=version_id).set_storage_class(storage_class)



@pytest.fixture
def world(app_client: Client, backup_buckets: Any, sources: dict[str, Any], s3: Any) -> dict[str, Any]:
    s3.create_bucket(Bucket=TARGET)
    return sources


@pytest.fixture
def thaws(app_client: Client, clients: Any) -> list[dict[str, Any]]:
    """Every RestoreObject request the app sends, recorded (the app uses these test clients)."""
    import app as app_module

    app_module._clients = clients
    sent: list[dict[str, Any]] = []
    clients.s3.meta.events.register("provide-client-params.s3.RestoreObject", lambda params, **kw: sent.append(dict(params)))
    return sent


@pytest.fixture
def manual_thaw() -> Iterator[Any]:
    """Thaws that stay in progress until S3 has been asked about them a few times (moto finishes them at once)."""
    from moto.moto_api import state_manager

    def set_checks(times: int) -> None:
        state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": times})

    yield set_checks
    state_manager.unset_transition("s3::keyrestore")


# ------------------------------------------------------------------------------------------------ exact restores


def test_changed_and_deleted_files_come_back_byte_identical(app_client: Client, world: dict[str, Any], s3: Any) -> None:
    original = world["documents"]
    backup_id = backup(app_client, ["documents"])
    # After the backup the source moves on: one file changed, one deleted, one added, then backed up again.
    s3.put_object(Bucket=DOCS, Key="reports/report-3.txt", Body=b"rewritten after the backup")
    s3.delete_object(Bucket=DOCS, Key="reports/report-5.txt")
    s3.put_object(Bucket=DOCS, Key="reports/new.txt", Body=b"new")
    backup(app_client, ["documents"])

    response = post(
        app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET, "prefix": "r1/"}}
    )
    assert response.status_code == 202, response.body
    restore_id = response.json_body["restore_id"]
    assert response.headers["Location"] == f"/restores/{restore_id}"

    status = get(app_client, f"/restores/{restore_id}").json_body
    assert status["status"] == "SUCCEEDED"
    assert (status["restored"], status["pending_thaw"], status["failed"]) == (len(original), 0, 0)
    assert bucket_contents(s3, TARGET, "r1/") == original
    assert s3.get_object(Bucket=TARGET, Key="r1/reports/report-3.txt")["Body"].read() == original["reports/report-3.txt"]


def test_copies_name_the_exact_version_server_side(app_client: Client, world: dict[str, Any], s3: Any, clients: Any) -> None:
    import app as app_module

    app_module._clients = clients
    calls: list[dict[str, Any]] = []
    clients.s3.meta.events.register("provide-client-params.s3.CopyObject", lambda params, **kw: calls.append(dict(params)))
    clients.s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **kw: calls.append({"get": params}))
    backup_id = backup(app_client, ["documents"])
    calls.clear()
    post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "keys": ["reports/report-1.txt"],
                                   "target": {"bucket": TARGET}})
    copies = [c for c in calls if "CopySource" in c]
    assert len(copies) == 1
    assert copies[0]["CopySource"]["VersionId"] and copies[0]["CopySource"]["Bucket"] == "test-backup-documents"
    assert copies[0]["IfNoneMatch"] == "*"
    assert not [c for c in calls if "get" in c and c["get"]["Bucket"] == "test-backup-documents" and c["get"]["Key"].startswith("data/")]


def test_prefix_and_keys_select_what_comes_back(app_client: Client, world: dict[str, Any], s3: Any) -> None:
    backup_id = backup(app_client, ["photos"])
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "photos", "keys": ["2026/img-2.png", "2026/img-7.png"],
                                              "target": {"bucket": TARGET, "prefix": "k/"}})
    assert response.status_code == 202
    assert bucket_contents(s3, TARGET, "k/") == {k: world["photos"][k] for k in ("2026/img-2.png", "2026/img-7.png")}
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "photos", "prefix": "2026/img-1",
                                              "target": {"bucket": TARGET, "prefix": "p/"}})
    assert response.status_code == 202
    assert set(bucket_contents(s3, TARGET, "p/")) == {"2026/img-1.png"}


def test_database_export_restores_into_a_new_table_item_for_item(
    app_client: Client, world: dict[str, Any], dynamodb: Any
) -> None:
    def items(table: str) -> list[str]:
        found = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            found.extend(json.dumps(item, sort_keys=True) for item in page["Items"])
        return sorted(found)

    before = items("test-orders")
    backup_id = backup(app_client, ["database"])
    dynamodb.delete_item(TableName="test-orders", Key={"pk": {"S": "order-0003"}})
    dynamodb.put_item(TableName="test-orders", Item={"pk": {"S": "order-0004"}, "total": {"N": "999"}})

    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "database", "target": {"table": "restored-orders"}})
    assert response.status_code == 202, response.body
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert status["status"] == "SUCCEEDED", status
    assert items("restored-orders") == before
    key_schema = dynamodb.describe_table(TableName="restored-orders")["Table"]["KeySchema"]
    assert key_schema == [{"AttributeName": "pk", "KeyType": "HASH"}]

    # The worker checks the target (the request only records the restore): an existing table refuses it.
    again = post(app_client, "/restores", {"backup_id": backup_id, "plan": "database", "target": {"table": "restored-orders"}})
    assert again.status_code == 202
    refused = get(app_client, again.headers["Location"]).json_body
    assert refused["status"] == "FAILED" and "table restored-orders" in refused["refused"]


def test_binary_attributes_survive_the_export_round_trip() -> None:
    exported = {"pk": {"S": "a"}, "blob": {"B": "AAEC"}, "set": {"BS": ["AAE="]}, "m": {"M": {"B": {"B": "/w=="}}}}
    assert item_from_export(exported) == {
        "pk": {"S": "a"}, "blob": {"B": b"\x00\x01\x02"}, "set": {"BS": [b"\x00\x01"]}, "m": {"M": {"B": {"B": b"\xff"}}}
    }


# ------------------------------------------------------------------------------------------------ refusals


def test_existing_target_is_refused_without_overwrite_and_replaced_with_it(
    app_client: Client, world: dict[str, Any], s3: Any
) -> None:
    backup_id = backup(app_client, ["documents"])
    s3.put_object(Bucket=TARGET, Key="reports/report-2.txt", Body=b"someone's newer work")
    body = {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}}
    response = post(app_client, "/restores", body)
    assert response.status_code == 202
    refused = get(app_client, response.headers["Location"]).json_body
    assert refused["status"] == "FAILED" and refused["restored"] == 0
    assert "s3://restore-target/reports/report-2.txt" in refused["refused"] and "overwrite" in refused["refused"]
    assert bucket_contents(s3, TARGET) == {"reports/report-2.txt": b"someone's newer work"}

    response = post(app_client, "/restores", {**body, "overwrite": True})
    assert response.status_code == 202
    assert bucket_contents(s3, TARGET) == world["documents"]


BAD_INPUT = [
    ({"target": {"bucket": "test-backup-photos"}}, 400, "backup bucket"),
    ({"target": {"bucket": "test-backup-documents", "prefix": "data/"}}, 400, "backup bucket"),
    ({"prefix": "../etc"}, 400, "'..'"),
    ({"prefix": "reports/\x00x"}, 400, "control character"),
    ({"target": {"bucket": TARGET, "prefix": "a/../../b/"}}, 400, "'..'"),
    ({"target": {"bucket": TARGET, "prefix": "new\nline/"}}, 400, "control character"),
    ({"plan": "nope"}, 400, "unknown plan 'nope'"),
    ({"backup_id": "20200101T000000000Z-deadbeef"}, 404, "20200101T000000000Z-deadbeef"),
    ({"backup_id": "not-an-id"}, 404, "not-an-id"),
    ({"target": {"bucket": "some-other-bucket"}}, 400, "not one of this stage's restore buckets"),
    ({"target": {"table": "restored-x"}}, 400, "no database source"),
    ({"tier": "Instant"}, 400, "'tier'"),
    ({"target": {"bucket": TARGET, "path": "/tmp/x"}}, 400, "'path'"),
    ({"colour": "blue"}, 400, "'colour'"),
    ({"target": {}}, 400, "'target'"),
]


def test_bad_input_is_a_clear_4xx_and_writes_nothing(app_client: Client, world: dict[str, Any], s3: Any) -> None:
    # One backup serves every case: each case must be refused before anything is written.
    backup_id = backup(app_client, ["documents"])
    for change, status, words in BAD_INPUT:
        body = {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}, **change}
        response = post(app_client, "/restores", body)
        assert response.status_code == status, (change, response.body)
        assert words in response.json_body["Message"], (change, response.json_body)
    assert bucket_contents(s3, TARGET) == {}
    assert restore_records(s3) == []


def test_keys_not_in_the_snapshot_are_refused_by_the_worker_and_nothing_is_written(
    app_client: Client, world: dict[str, Any], s3: Any
) -> None:
    """Reading the snapshot to find keys is the worker's work, not the request's: 202, then FAILED saying
    which keys are missing."""
    backup_id = backup(app_client, ["documents"])
    body = {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}, "keys": ["reports/nope.txt"]}
    response = post(app_client, "/restores", body)
    assert response.status_code == 202 and response.json_body["status"] == "PREPARING"
    refused = get(app_client, response.headers["Location"]).json_body
    assert refused["status"] == "FAILED" and "reports/nope.txt" in refused["refused"]
    assert bucket_contents(s3, TARGET) == {}


def test_table_target_must_be_new_and_carry_the_restore_prefix(app_client: Client, world: dict[str, Any], dynamodb: Any) -> None:
    backup_id = backup(app_client, ["database"])
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "database", "target": {"table": "test-orders"}})
    assert response.status_code == 400 and "restored-" in response.json_body["Message"]
    assert dynamodb.list_tables()["TableNames"] == ["test-orders"]


def test_unknown_restore_is_404_and_bodies_must_be_json(app_client: Client, world: dict[str, Any]) -> None:
    assert get(app_client, "/restores/20200101T000000000Z-deadbeef").status_code == 404
    assert get(app_client, "/restores/whatever").status_code == 404
    for path in ("/restores", "/backups/20200101T000000000Z-deadbeef/verify"):
        response = app_client.http.post(path, headers={"Content-Type": "text/plain"}, body="backup_id=x")
        assert response.status_code == 415, response.body
        response = app_client.http.post(path, headers={"Content-Type": "application/json"}, body="{not json")
        assert response.status_code == 400 and "not valid JSON" in response.json_body["Message"]


# ------------------------------------------------------------------------------------------------ archived data


def test_archived_versions_wait_for_a_thaw_then_complete(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any, manual_thaw: Any, thaws: list[dict[str, Any]]
) -> None:
    backup_id = backup(app_client, ["documents"])
    archived = {}
    for key in ("reports/report-1.txt", "reports/report-2.txt"):
        head = s3.head_object(Bucket="test-backup-documents", Key=f"data/documents/{key}")
        archive("test-backup-documents", f"data/documents/{key}", head["VersionId"])
        archived[key] = head["VersionId"]
    manual_thaw(2)

    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}})
    assert response.status_code == 202
    restore_id = response.json_body["restore_id"]
    status = get(app_client, f"/restores/{restore_id}").json_body
    assert status["status"] == "WAITING_FOR_THAW"
    assert (status["restored"], status["pending_thaw"], status["failed"]) == (8, 2, 0)
    assert status["expected_thaw_completion"] > status["created_at"]
    assert sorted(p["key"] for p in status["pending"]) == sorted(archived)
    assert {(t["Key"], t["VersionId"], t["RestoreRequest"]["GlacierJobParameters"]["Tier"]) for t in thaws} == {
        (f"data/documents/{k}", v, "Bulk") for k, v in archived.items()
    }
    assert set(bucket_contents(s3, TARGET)) == set(world["documents"]) - set(archived)
    assert s3.list_objects_v2(Bucket="test-backup-documents", Prefix=QUEUE_PREFIX)["KeyCount"] == 1

    # The hourly check: the first finds the thaw still running (no second thaw request), the next completes.
    app_client.lambda_.invoke("resume_restores", scheduled_event(app_client))
    status = get(app_client, f"/restores/{restore_id}").json_body
    assert status["status"] == "WAITING_FOR_THAW"
    assert len(thaws) == 2
    app_client.lambda_.invoke("resume_restores", scheduled_event(app_client))
    status = get(app_client, f"/restores/{restore_id}").json_body
    assert status["status"] == "SUCCEEDED", status
    assert (status["restored"], status["pending_thaw"], status["failed"]) == (10, 0, 0)
    assert status["expected_thaw_completion"] is None
    assert bucket_contents(s3, TARGET) == world["documents"]
    assert s3.head_object(Bucket=TARGET, Key="reports/report-1.txt").get("StorageClass", "STANDARD") == "STANDARD"

    # Later checks leave a finished restore alone, and the first takes it out of the queue.
    app_client.lambda_.invoke("resume_restores", scheduled_event(app_client))
    assert get(app_client, f"/restores/{restore_id}").json_body["passes"] == status["passes"]
    assert s3.list_objects_v2(Bucket="test-backup-documents", Prefix=QUEUE_PREFIX)["KeyCount"] == 0


def test_expedited_is_used_for_glacier_only(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any, manual_thaw: Any, thaws: list[dict[str, Any]]
) -> None:
    backup_id = backup(app_client, ["documents"])
    for key, storage_class in (("reports/report-1.txt", "GLACIER"), ("reports/report-2.txt", "DEEP_ARCHIVE")):
        head = s3.head_object(Bucket="test-backup-documents", Key=f"data/documents/{key}")
        archive("test-backup-documents", f"data/documents/{key}", head["VersionId"], storage_class)
    manual_thaw(5)
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "tier": "Expedited",
                                              "target": {"bucket": TARGET}})
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert status["status"] == "WAITING_FOR_THAW"
    tiers = {t["Key"].rsplit("/", 1)[1]: t["RestoreRequest"]["GlacierJobParameters"]["Tier"] for t in thaws}
    assert tiers == {"report-1.txt": "Expedited", "report-2.txt": "Standard"}
    ready = {p["key"]: p["ready_by"] for p in status["pending"]}
    assert status["expected_thaw_completion"] == max(ready.values()) == ready["reports/report-2.txt"]


def test_dry_run_quotes_objects_bytes_thaws_and_costs_and_writes_nothing(
    app_client: Client, world: dict[str, Any], s3: Any
) -> None:
    backup_id = backup(app_client, ["documents"])
    sizes = {k: len(v) for k, v in world["documents"].items()}
    for key, storage_class in (("reports/report-8.txt", "GLACIER"), ("reports/report-9.txt", "DEEP_ARCHIVE")):
        head = s3.head_object(Bucket="test-backup-documents", Key=f"data/documents/{key}")
        archive("test-backup-documents", f"data/documents/{key}", head["VersionId"], storage_class)
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "dry_run": True,
                                              "target": {"bucket": TARGET}})
    assert response.status_code == 202 and response.json_body["dry_run"] is True, response.body
    quoted = get(app_client, response.headers["Location"]).json_body
    assert quoted["status"] == "QUOTED"
    quote = quoted["quote"]
    assert quote["objects"] == 10 and quote["bytes"] == sum(sizes.values())
    assert quote["need_thaw"] == 2
    assert quote["need_thaw_bytes"] == sizes["reports/report-8.txt"] + sizes["reports/report-9.txt"]
    assert quote["archived"]["DEEP_ARCHIVE"] == {"objects": 1, "bytes": sizes["reports/report-9.txt"]}
    tiers = quote["tiers"]
    # Deep Archive has no Expedited tier: an Expedited restore thaws it at Standard (12 h at most).
    assert tiers["Bulk"]["thaw_hours_at_most"] == 48
    assert tiers["Standard"]["thaw_hours_at_most"] == 12
    assert tiers["Expedited"]["thaw_hours_at_most"] == 12
    assert tiers["Expedited"]["notes"]
    assert tiers["Expedited"]["retrieval_cost_usd"] > tiers["Standard"]["retrieval_cost_usd"] > tiers["Bulk"]["retrieval_cost_usd"] > 0
    # The manifest read for the quote: in STANDARD (a day old), so reading it costs no retrieval.
    manifest = s3.head_object(Bucket="test-backup-documents", Key=f"meta/snapshots/documents/{backup_id}.jsonl.gz")
    assert (quote["manifest_storage_class"], quote["manifest_bytes"], quote["manifest_retrieval_usd_per_read"]) == ("STANDARD", manifest["ContentLength"], 0.0)
    # Nothing restored, nothing thawed: the dry run's own record (QUOTED) is all it wrote.
    assert bucket_contents(s3, TARGET) == {}
    assert [key.rsplit("_", 1)[1] for key in restore_records(s3)] == [f"{quoted['restore_id']}.json"]


# ------------------------------------------------------------------------------------------------ robustness


def test_missing_version_fails_that_object_not_the_restore(app_client: Client, world: dict[str, Any], s3: Any) -> None:
    backup_id = backup(app_client, ["documents"])
    head = s3.head_object(Bucket="test-backup-documents", Key="data/documents/reports/report-4.txt")
    s3.delete_object(Bucket="test-backup-documents", Key="data/documents/reports/report-4.txt", VersionId=head["VersionId"])
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}})
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert status["status"] == "PARTIAL"
    assert (status["restored"], status["failed"]) == (9, 1)
    assert status["failures"][0]["key"] == "reports/report-4.txt" and "missing" in status["failures"][0]["reason"]


def test_an_object_that_appears_at_the_target_during_the_restore_is_not_replaced(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any
) -> None:
    import app as app_module

    app_module._clients = clients
    backup_id = backup(app_client, ["documents"])

    def another_writer(params: dict[str, Any], **kwargs: Any) -> None:
        # Someone else writes the key after the restore found it free and before its copy lands.
        if params["Key"] == "reports/report-7.txt":
            s3.put_object(Bucket=TARGET, Key="reports/report-7.txt", Body=b"written meanwhile")

    clients.s3.meta.events.register("provide-client-params.s3.CopyObject", another_writer)
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}})
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert (status["status"], status["restored"], status["failed"]) == ("PARTIAL", 9, 1)
    assert status["failures"][0]["key"] == "reports/report-7.txt"
    assert "appeared during the restore" in status["failures"][0]["reason"]
    expected = {**world["documents"], "reports/report-7.txt": b"written meanwhile"}
    assert bucket_contents(s3, TARGET) == expected


def test_a_pass_repeated_after_an_interruption_counts_its_own_copies(
    world: dict[str, Any], s3: Any, clients: Any, stage_env: dict[str, str]
) -> None:
    from chalicelib.backup.service import BackupService
    from chalicelib.restore.requests import RestoreRequest, Target

    settings = Settings.from_environ(stage_env)
    backups = BackupService(settings, clients)
    record = backups.start(["documents"], trigger="api")
    backups.run(record.backup_id)
    restores = RestoreService.from_settings(settings, clients)
    started = restores.start(RestoreRequest(backup_id=record.backup_id, plan="documents", target=Target(bucket=TARGET)))
    # An earlier invocation copied one object, then died before saving the record.
    entry_version = s3.head_object(Bucket="test-backup-documents", Key="data/documents/reports/report-0.txt")["VersionId"]
    s3.copy_object(Bucket=TARGET, Key="reports/report-0.txt",
                   CopySource={"Bucket": "test-backup-documents", "Key": "data/documents/reports/report-0.txt", "VersionId": entry_version})
    done = restores.run(started.restore_id)
    assert (done.status, done.restored, done.failed) == ("SUCCEEDED", 10, 0)
    assert restores.run(started.restore_id).passes == done.passes
    assert bucket_contents(s3, TARGET) == world["documents"]


def test_objects_above_the_single_copy_limit_go_through_a_managed_multipart_copy(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any, monkeypatch: Any
) -> None:
    import app as app_module
    import chalicelib.transfer as transfer_module

    app_module._clients = clients
    parts: list[dict[str, Any]] = []
    clients.s3.meta.events.register("provide-client-params.s3.UploadPartCopy", lambda params, **kw: parts.append(dict(params)))
    backup_id = backup(app_client, ["photos"])
    # 5 GiB objects are out of reach of a test: lower the limit so every object takes the large-object path.
    monkeypatch.setattr(transfer_module, "COPY_OBJECT_LIMIT", 50)
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "photos", "target": {"bucket": TARGET}})
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert status["status"] == "SUCCEEDED", status
    assert bucket_contents(s3, TARGET) == world["photos"]
    assert len(parts) == 10 and all(p["CopySource"]["VersionId"] for p in parts)


def test_deployed_restores_run_in_the_restore_worker_beside_the_backup_worker(plans: Any) -> None:
    from types import SimpleNamespace

    from chalicelib.restore.record import RestoreRecord
    from chalicelib.jobs.dispatch import worker_beside
    from chalicelib.restore.service import RESTORE_WORKER

    invoked: list[dict[str, Any]] = []
    fake = SimpleNamespace(s3=None, lambda_=SimpleNamespace(invoke=lambda **kw: invoked.append(kw)))
    service = RestoreService(plans, fake, worker_mode="lambda", worker_function="org-backup-dev-backup_worker")
    service.dispatch(RestoreRecord(restore_id="20261126T000000000Z-abc", backup_id="b", plan="documents", target={}))
    assert invoked == [{
        "FunctionName": "org-backup-dev-restore_worker",
        "InvocationType": "Event",
        "Payload": json.dumps({"restore_id": "20261126T000000000Z-abc"}).encode(),
    }]
    backup_worker = "arn:aws:lambda:us-east-1:1:function:org-backup-prod-backup_worker"
    assert worker_beside(backup_worker, RESTORE_WORKER).endswith("prod-restore_worker")


def test_the_restore_worker_function_runs_a_recorded_restore(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any, stage_env: dict[str, str]
) -> None:
    from chalicelib.restore.requests import RestoreRequest, Target

    backup_id = backup(app_client, ["photos"])
    restores = RestoreService.from_settings(Settings.from_environ(stage_env), clients)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="photos", target=Target(bucket=TARGET)))
    assert bucket_contents(s3, TARGET) == {}
    result = app_client.lambda_.invoke("restore_worker", {"restore_id": record.restore_id})
    assert result.payload == {"restore_id": record.restore_id, "status": "SUCCEEDED"}
    assert bucket_contents(s3, TARGET) == world["photos"]


def test_no_expedited_capacity_falls_back_to_standard(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any, manual_thaw: Any
) -> None:
    from botocore.awsrequest import AWSResponse

    import app as app_module

    app_module._clients = clients
    tiers: list[str] = []

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["tier"] = params["RestoreRequest"]["GlacierJobParameters"]["Tier"]
        tiers.append(context["tier"])

    def no_capacity(context: dict[str, Any], **kwargs: Any) -> Any:
        # S3 answers 503, which botocore retries first; a 400 here keeps the test fast with the same code.
        if context.get("tier") == "Expedited":
            code = "GlacierExpeditedRetrievalNotAvailable"
            return AWSResponse("https://s3.amazonaws.com/", 400, {}, None), {"Error": {"Code": code, "Message": code}}
        return None

    clients.s3.meta.events.register("provide-client-params.s3.RestoreObject", remember)
    clients.s3.meta.events.register("before-call.s3.RestoreObject", no_capacity)
    backup_id = backup(app_client, ["documents"])
    key = "data/documents/reports/report-1.txt"
    archive("test-backup-documents", key, s3.head_object(Bucket="test-backup-documents", Key=key)["VersionId"])
    manual_thaw(5)
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "tier": "Expedited",
                                              "target": {"bucket": TARGET}})
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert status["status"] == "WAITING_FOR_THAW" and status["failed"] == 0
    assert tiers == ["Expedited", "Standard"]
    assert status["pending"][0]["tier"] == "Standard"


def test_a_version_archived_during_the_restore_is_thawed_not_failed(
    app_client: Client, world: dict[str, Any], s3: Any, clients: Any, manual_thaw: Any
) -> None:
    import app as app_module

    app_module._clients = clients
    backup_id = backup(app_client, ["documents"])
    key = "data/documents/reports/report-6.txt"
    version = s3.head_object(Bucket="test-backup-documents", Key=key)["VersionId"]

    def transition_now(params: dict[str, Any], **kwargs: Any) -> None:
        # A lifecycle transition between the restore's look at the version and its copy.
        if params["CopySource"]["Key"] == key:
            archive("test-backup-documents", key, version)

    clients.s3.meta.events.register("provide-client-params.s3.CopyObject", transition_now)
    manual_thaw(5)
    response = post(app_client, "/restores", {"backup_id": backup_id, "plan": "documents", "target": {"bucket": TARGET}})
    status = get(app_client, f"/restores/{response.json_body['restore_id']}").json_body
    assert status["status"] == "WAITING_FOR_THAW"
    assert (status["restored"], status["pending_thaw"], status["failed"]) == (9, 1, 0)

"""The backup engine end to end against moto: bytes, incremental snapshots, versions, delete markers, the
mass-deletion guard, failure isolation, and manifests that appear only once their data is complete."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.plan_run import back_up_plan
from chalicelib.backup.service import BackupService
from chalicelib.backup.sources import make_reader
from chalicelib.catalog.manifests import Entry, Manifest, list_snapshot_keys, manifest_key, put_manifest
from chalicelib.catalog.records import BackupRecord, PlanResult, new_backup_id
from chalicelib.config import Settings
from chalicelib.errors import AlreadyExists
from tests.conftest import ACCOUNT

# --------------------------------------------------------------------------------------------------------
# Botocore event hooks: count and fail calls on one client without touching the code under test.


class Calls:
    """Records the calls of the given operations (S3 writes by default) made through one client, with
    their API parameters, and makes chosen ones fail.

    `provide-client-params` is the first event of a call and carries the caller's parameters; the
    `before-call` event (which can answer instead of S3) only sees the serialised request, so faults
    registered with `fail` decide there from what the first event saw.
    """

    WRITES = ("CopyObject", "PutObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload", "DeleteObjects")

    def __init__(self, client: Any, operations: tuple[str, ...] = WRITES) -> None:
        self.client = client
        self.service = client.meta.service_model.service_id.hyphenize()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, Callable[..., Any]]] = []
        for operation in operations:
            self._on(f"provide-client-params.{self.service}.{operation}", self._recorder(operation))

    def _on(self, event: str, handler: Callable[..., Any]) -> None:
        self.client.meta.events.register(event, handler)
        self._handlers.append((event, handler))

    def _recorder(self, operation: str) -> Callable[..., Any]:
        def record(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
            with self._lock:
                self.calls.append((operation, dict(params)))
            context["test_params"] = dict(params)

        return record

    def fail(
        self,
        operation: str,
        when: Callable[[dict[str, Any]], bool] = lambda params: True,
        code: str = "AccessDenied",
        status: int = 403,
        raise_: BaseException | None = None,
    ) -> None:
        """Make matching calls fail: with an S3 error answer (nothing written), or by raising `raise_`."""
        if operation not in self.ops():
            self._on(f"provide-client-params.{self.service}.{operation}", self._recorder(operation))

        def answer(context: dict[str, Any], **kwargs: Any) -> Any:
            params = context.get("test_params", {})
            if not when(params):
                return None
            if raise_ is not None:
                raise raise_
            http = AWSResponse("https://s3.amazonaws.com/", status, {}, None)
            return http, {"Error": {"Code": code, "Message": f"{code} (injected)"}, "ResponseMetadata": {"HTTPStatusCode": status}}

        self._on(f"before-call.{self.service}.{operation}", answer)

    def ops(self) -> set[str]:
        return {event.rsplit(".", 1)[1] for event, _ in self._handlers if event.startswith("provide-client-params")}

    def keys(self, operation: str, prefix: str = "") -> list[str]:
        return [params.get("Key", "") for op, params in self.calls if op == operation and params.get("Key", "").startswith(prefix)]

    def data_writes(self) -> list[tuple[str, dict[str, Any]]]:
        """Calls that write or delete backed-up data (anything but the metadata prefix)."""
        return [(op, p) for op, p in self.calls if op == "DeleteObjects" or not p.get("Key", "").startswith("meta/")]

    def close(self) -> None:
        for event, handler in self._handlers:
            self.client.meta.events.unregister(event, handler)
        self._handlers.clear()


@contextmanager
def client_calls(client: Any, operations: tuple[str, ...] = Calls.WRITES) -> Iterator[Calls]:
    calls = Calls(client, operations)
    try:
        yield calls
    finally:
        calls.close()


class Crash(BaseException):
    """Stands for the Lambda runtime killing the function (a timeout): nothing in the code may catch it."""


# --------------------------------------------------------------------------------------------------------
# Reading what a backup left behind.


def backup(service: BackupService, plans: list[str] | None = None) -> BackupRecord:
    record = service.start(plans, trigger="api")
    return service.run(record.backup_id)


def snapshot(s3: Any, result: PlanResult) -> tuple[dict[str, Any], dict[str, Entry]]:
    """A plan result's manifest: header, and every entry (held ones too) by key."""
    assert result.snapshot, f"plan {result.plan} wrote no snapshot: {result}"
    bucket, key = result.snapshot.removeprefix("s3://").split("/", 1)
    with Manifest.download(s3, bucket, key) as manifest:
        return manifest.header, {entry.key: entry for entry in manifest.entries(include_held=True)}


def version_bytes(s3: Any, bucket: str, key: str, version_id: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()


def versions(s3: Any, bucket: str, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return (
        [v for v in listing.get("Versions", []) if v["Key"] == key],
        [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key],
    )


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def service(backup_buckets: Any, sources: Any, clients: Any, stage_env: dict[str, str], topic_queue: str) -> BackupService:
    """All three plans, provisioned and seeded."""
    return BackupService(Settings.from_environ(stage_env), clients)


# The same documents as the shared `sources` fixture seeds.
DOCUMENTS = {f"reports/report-{i}.txt": f"report {i}\n".encode() * (i + 1) for i in range(10)}


@pytest.fixture
def docs(s3: Any, plans: Any, clients: Any, stage_env: dict[str, str], topic_queue: str) -> BackupService:
    """Only the documents plan's bucket and source: most behaviour needs one plan, and setup is cheaper."""
    from chalicelib.deploy.inventory_bucket import provision_inventory
    from chalicelib.deploy.provision import provision

    provision(s3, plans.get("documents"))
    provision_inventory(s3, plans, ACCOUNT, ["documents"])
    s3.create_bucket(Bucket=DOCS_SRC)
    for key, body in DOCUMENTS.items():
        s3.put_object(Bucket=DOCS_SRC, Key=key, Body=body)
    return BackupService(Settings.from_environ(stage_env), clients)


@pytest.fixture
def db(s3: Any, dynamodb: Any, plans: Any, clients: Any, stage_env: dict[str, str]) -> BackupService:
    """Only the database plan's bucket and a table of 50 items."""
    from chalicelib.deploy.inventory_bucket import provision_inventory
    from chalicelib.deploy.provision import provision
    from tests.conftest import create_table

    # The catalog (backup records) lives in the documents bucket.
    provision(s3, plans.get("documents"))
    provision(s3, plans.get("database"))
    provision_inventory(s3, plans, ACCOUNT, ["documents", "database"])
    create_table(dynamodb, "test-orders", items=50)
    return BackupService(Settings.from_environ(stage_env), clients)


DOCS_SRC = "test-src-documents"
DOCS_BACKUP = "test-backup-documents"

# --------------------------------------------------------------------------------------------------------
# Bytes arrive intact.


def test_s3_sources_arrive_byte_for_byte(service: BackupService, s3: Any, sources: dict[str, dict[str, bytes]]) -> None:
    record = backup(service)
    assert record.status == "SUCCEEDED", record.to_dict()
    for plan in ("documents", "photos"):
        result = record.plans[plan]
        header, entries = snapshot(s3, result)
        assert sorted(entries) == sorted(sources[plan])
        assert header["objects"] == result.objects == len(sources[plan])
        for key, body in sources[plan].items():
            entry = entries[key]
            assert entry.data_key == f"data/{plan}/{key}"
            assert version_bytes(s3, f"test-backup-{plan}", entry.data_key, entry.version_id) == body
            assert entry.size == len(body)
            assert entry.etag == hashlib.md5(body).hexdigest()
            # S3 computed SHA-256 over what it stored (ChecksumAlgorithm on the copy).
            assert entry.checksum == sha256_b64(body)


def test_dynamodb_table_arrives_as_dynamodb_json_lines(db: BackupService, s3: Any, dynamodb: Any) -> None:
    dynamodb.put_item(
        TableName="test-orders",
        Item={"pk": {"S": "blob"}, "data": {"B": b"\x00\xffraw"}, "tags": {"SS": ["a", "b"]}, "bins": {"BS": [b"\x01"]}},
    )
    record = backup(db, ["database"])
    result = record.plans["database"]
    assert result.status == "SUCCEEDED", result
    _, entries = snapshot(s3, result)
    assert list(entries) == ["test-orders.jsonl.gz"]
    entry = entries["test-orders.jsonl.gz"]
    export = version_bytes(s3, "test-backup-database", entry.data_key, entry.version_id)
    assert hashlib.sha256(export).hexdigest() == entry.sha256
    lines = gzip.decompress(export).decode("utf-8").splitlines()
    items = [json.loads(line) for line in lines]
    assert entry.item_count == len(items) == 51
    assert result.sources["orders"]["items"] == 51
    by_key = {item["pk"]["S"]: item for item in items}
    assert by_key["order-0007"] == {"pk": {"S": "order-0007"}, "total": {"N": "21"}, "note": {"S": "été #7"}}
    # Binary values are base64 in DynamoDB JSON, as in DynamoDB's own exports.
    assert base64.b64decode(by_key["blob"]["data"]["B"]) == b"\x00\xffraw"
    assert [base64.b64decode(b) for b in by_key["blob"]["bins"]["BS"]] == [b"\x01"]
    table = {i["pk"]["S"] for i in dynamodb.scan(TableName="test-orders")["Items"]}
    assert set(by_key) == table


def directory_plans_file(tmp_path: Path, folder: Path) -> Path:
    document = {
        "version": 1,
        "plans": [
            {
                "name": "laptop",
                "bucket": "test-backup-laptop",
                "sources": [{"type": "directory", "name": "home", "path": str(folder)}],
                "lifecycle": {"transitions": [{"days": 30, "storage_class": "GLACIER"}]},
            }
        ],
    }
    path = tmp_path / "plans-laptop.json"
    path.write_text(json.dumps(document))
    return path


def test_directory_source_from_a_plans_file_arrives_intact(tmp_path: Path, s3: Any, clients: Any) -> None:
    from chalicelib.deploy.provision import provision

    folder = tmp_path / "home"
    files = {
        "notes.txt": b"hello\n",
        "photos/2026/beach.jpg": bytes(range(256)) * 40,
        "photos/2026/empty.bin": b"",
        "taxes/2025 return (final).pdf": b"%PDF-1.7 not really",
    }
    for key, body in files.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(body)
    settings = Settings.from_environ({"PLANS_FILE": str(directory_plans_file(tmp_path, folder)), "WORKER_MODE": "inline"})
    provision(s3, settings.plans.get("laptop"))
    laptop = BackupService(settings, clients)
    record = backup(laptop)
    assert record.status == "SUCCEEDED", record.to_dict()
    _, entries = snapshot(s3, record.plans["laptop"])
    assert sorted(entries) == sorted(files)
    for key, body in files.items():
        entry = entries[key]
        assert version_bytes(s3, "test-backup-laptop", f"data/home/{key}", entry.version_id) == body
        assert entry.sha256 == hashlib.sha256(body).hexdigest()
    assert backup(laptop).plans["laptop"].copied == 0


# --------------------------------------------------------------------------------------------------------
# Incremental: nothing changed copies nothing; a change is a new version; old snapshots keep old versions.


def test_second_backup_with_nothing_changed_copies_nothing(service: BackupService, s3: Any, clients: Any) -> None:
    first = backup(service)
    assert first.status == "SUCCEEDED"
    with client_calls(clients.s3) as calls:
        second = backup(service)
    assert second.status == "SUCCEEDED", second.to_dict()
    for name, result in second.plans.items():
        assert result.copied == 0 and result.bytes_copied == 0, result
        assert result.unchanged == first.plans[name].copied > 0
        _, old = snapshot(s3, first.plans[name])
        _, new = snapshot(s3, result)
        assert {k: e.version_id for k, e in new.items()} == {k: e.version_id for k, e in old.items()}
    # The only writes were the new manifests and the backup record: no object was copied or uploaded again.
    assert calls.data_writes() == []
    assert calls.keys("CopyObject") == []
    assert sorted(calls.keys("PutObject", "meta/snapshots/")) == sorted(
        manifest_key(name, second.backup_id) for name in second.plans
    )


def test_changed_object_is_a_new_version_and_the_older_snapshot_keeps_the_older_one(
    docs: BackupService, s3: Any, clients: Any
) -> None:
    key = "reports/report-3.txt"
    first = backup(docs, ["documents"])
    s3.put_object(Bucket=DOCS_SRC, Key=key, Body=b"revised report\n")
    with client_calls(clients.s3) as calls:
        second = backup(docs, ["documents"])
    result = second.plans["documents"]
    assert (result.copied, result.unchanged, result.status) == (1, 9, "SUCCEEDED")
    assert calls.keys("CopyObject") == [f"data/documents/{key}"]
    _, old = snapshot(s3, first.plans["documents"])
    _, new = snapshot(s3, result)
    assert old[key].version_id != new[key].version_id
    assert version_bytes(s3, DOCS_BACKUP, f"data/documents/{key}", old[key].version_id) == b"report 3\n" * 4
    assert version_bytes(s3, DOCS_BACKUP, f"data/documents/{key}", new[key].version_id) == b"revised report\n"
    stored, markers = versions(s3, DOCS_BACKUP, f"data/documents/{key}")
    assert len(stored) == 2 and markers == []
    # Everything else in the new snapshot is the version the first backup stored.
    assert all(new[k].version_id == old[k].version_id for k in old if k != key)


def test_changed_table_is_a_new_version_unchanged_table_is_not(db: BackupService, s3: Any, dynamodb: Any) -> None:
    first = backup(db, ["database"]).plans["database"]
    again = backup(db, ["database"]).plans["database"]
    assert again.copied == 0
    dynamodb.put_item(TableName="test-orders", Item={"pk": {"S": "order-0001"}, "total": {"N": "999"}})
    third = backup(db, ["database"]).plans["database"]
    assert third.copied == 1
    key = "test-orders.jsonl.gz"
    _, old = snapshot(s3, first)
    _, new = snapshot(s3, third)
    assert old[key].version_id != new[key].version_id
    old_items = [json.loads(line) for line in gzip.decompress(version_bytes(s3, "test-backup-database", f"data/orders/{key}", old[key].version_id)).splitlines()]
    assert {"pk": {"S": "order-0001"}, "total": {"N": "3"}, "note": {"S": "été #1"}} in old_items


# --------------------------------------------------------------------------------------------------------
# Deletions and the mass-deletion guard.


def test_deletion_at_the_source_makes_a_delete_marker_and_keeps_versions(docs: BackupService, s3: Any) -> None:
    key = "reports/report-5.txt"
    first = backup(docs, ["documents"])
    s3.delete_object(Bucket=DOCS_SRC, Key=key)
    second = backup(docs, ["documents"]).plans["documents"]
    assert (second.deleted, second.deletions_held_back, second.status) == (1, 0, "SUCCEEDED")
    stored, markers = versions(s3, DOCS_BACKUP, f"data/documents/{key}")
    assert len(markers) == 1 and markers[0]["IsLatest"]
    assert len(stored) == 1
    _, old = snapshot(s3, first.plans["documents"])
    header, new = snapshot(s3, second)
    assert key not in new and header["objects"] == 9
    # The older snapshot still restores it.
    assert version_bytes(s3, DOCS_BACKUP, f"data/documents/{key}", old[key].version_id) == b"report 5\n" * 6
    # A third run neither deletes again nor copies anything.
    third = backup(docs, ["documents"]).plans["documents"]
    assert (third.deleted, third.copied) == (0, 0)
    assert len(versions(s3, DOCS_BACKUP, f"data/documents/{key}")[1]) == 1


def test_a_refused_delete_marker_is_retried_by_the_next_backup(
    docs: BackupService, s3: Any, clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "reports/report-5.txt"
    backup(docs, ["documents"])
    s3.delete_object(Bucket=DOCS_SRC, Key=key)

    def refuse(**params: Any) -> dict[str, Any]:
        return {"Errors": [{"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"} for o in params["Delete"]["Objects"]]}

    monkeypatch.setattr(clients.s3, "delete_objects", refuse)
    refused = backup(docs, ["documents"]).plans["documents"]
    assert (refused.deleted, refused.failed, refused.status) == (0, 1, "PARTIAL")
    assert any("AccessDenied" in error for error in refused.errors)
    assert versions(s3, DOCS_BACKUP, f"data/documents/{key}")[1] == []
    header, entries = snapshot(s3, refused)
    # Not part of the snapshot's content, but remembered as a pending deletion.
    assert entries[key].held and header["held_deletions"] == 1
    monkeypatch.undo()
    retried = backup(docs, ["documents"]).plans["documents"]
    assert (retried.deleted, retried.status) == (1, "SUCCEEDED")
    assert len(versions(s3, DOCS_BACKUP, f"data/documents/{key}")[1]) == 1


@pytest.mark.parametrize("deleted", [1, 2])
def test_deletions_up_to_the_share_proceed(docs: BackupService, s3: Any, deleted: int) -> None:
    backup(docs, ["documents"])
    for i in range(deleted):
        s3.delete_object(Bucket=DOCS_SRC, Key=f"reports/report-{i}.txt")
    result = backup(docs, ["documents"]).plans["documents"]
    # 2 of 10 is exactly the default 20%: "more than the share" is what is held back.
    assert (result.deleted, result.deletions_held_back, result.status) == (deleted, 0, "SUCCEEDED")


def test_mass_deletion_is_held_back_and_reconsidered(
    docs: BackupService, s3: Any, sqs: Any, topic_queue: str
) -> None:
    from tests.conftest import read_alerts

    backup(docs, ["documents"])
    read_alerts(sqs, topic_queue)
    gone = [f"reports/report-{i}.txt" for i in range(3)]
    for key in gone:
        s3.delete_object(Bucket=DOCS_SRC, Key=key)
    with client_calls(docs.clients.s3) as calls:
        record = backup(docs, ["documents"])
    result = record.plans["documents"]
    assert record.status == "PARTIAL"
    assert (result.status, result.deleted, result.deletions_held_back) == ("PARTIAL", 0, 3)
    assert calls.keys("DeleteObjects") == [] and not any(op == "DeleteObjects" for op, _ in calls.calls)
    assert "held back" in result.warnings[0] and "3 of 10" in result.warnings[0]
    for key in gone:
        stored, markers = versions(s3, DOCS_BACKUP, f"data/documents/{key}")
        assert markers == [] and len(stored) == 1
    header, entries = snapshot(s3, result)
    assert header["held_deletions"] == 3 and header["objects"] == 7
    assert sorted(k for k, e in entries.items() if e.held) == gone
    bucket, manifest = result.snapshot.removeprefix("s3://").split("/", 1)
    with Manifest.download(s3, bucket, manifest) as loaded:
        assert sorted(e.key for e in loaded.entries()) == sorted(set(DOCUMENTS) - set(gone))
    alert = read_alerts(sqs, topic_queue)[0]
    assert "PARTIAL" in alert["Subject"]
    assert "3 DELETIONS HELD BACK" in alert["Message"] and "held back" in alert["Message"]

    # Still gone next run: still held, still no delete marker.
    again = backup(docs, ["documents"]).plans["documents"]
    assert (again.deletions_held_back, again.deleted, again.copied) == (3, 0, 0)

    # The source comes back (same content): nothing is copied and nothing is held any more.
    for key in gone:
        s3.put_object(Bucket=DOCS_SRC, Key=key, Body=DOCUMENTS[key])
    restored = backup(docs, ["documents"]).plans["documents"]
    assert (restored.status, restored.copied, restored.unchanged, restored.deletions_held_back) == ("SUCCEEDED", 0, 10, 0)
    _, entries = snapshot(s3, restored)
    assert not any(e.held for e in entries.values()) and len(entries) == 10


def test_held_deletions_proceed_once_the_plan_allows_them(docs: BackupService, s3: Any, clients: Any) -> None:
    backup(docs, ["documents"])
    for i in range(5):
        s3.delete_object(Bucket=DOCS_SRC, Key=f"reports/report-{i}.txt")
    held = backup(docs, ["documents"]).plans["documents"]
    assert held.deletions_held_back == 5
    # The operator confirms the deletions by raising the plan's share; the held entries are reconsidered.
    plan = dataclasses.replace(docs.settings.plans.get("documents"), max_delete_fraction=0.5)
    result = back_up_plan(plan, clients, "20991231T000000000Z-confirmed")
    assert (result.status, result.deleted, result.deletions_held_back) == ("SUCCEEDED", 5, 0)
    assert len(versions(s3, DOCS_BACKUP, "data/documents/reports/report-0.txt")[1]) == 1


def test_emptied_source_deletes_nothing(docs: BackupService, s3: Any) -> None:
    backup(docs, ["documents"])
    for key in DOCUMENTS:
        s3.delete_object(Bucket=DOCS_SRC, Key=key)
    result = backup(docs, ["documents"]).plans["documents"]
    assert (result.deletions_held_back, result.deleted, result.status) == (10, 0, "PARTIAL")
    listing = s3.list_object_versions(Bucket=DOCS_BACKUP, Prefix="data/")
    assert "DeleteMarkers" not in listing and len(listing["Versions"]) == 10


# --------------------------------------------------------------------------------------------------------
# Failures are isolated and named.


def _missing_bucket(s3: Any, dynamodb: Any, calls: Calls) -> None:
    for item in s3.list_objects_v2(Bucket="test-src-photos")["Contents"]:
        s3.delete_object(Bucket="test-src-photos", Key=item["Key"])
    s3.delete_bucket(Bucket="test-src-photos")


def _access_denied(s3: Any, dynamodb: Any, calls: Calls) -> None:
    calls.fail("ListObjectsV2", when=lambda params: params.get("Bucket") == "test-src-photos", code="AccessDenied")


def _missing_table(s3: Any, dynamodb: Any, calls: Calls) -> None:
    dynamodb.delete_table(TableName="test-orders")


@pytest.mark.parametrize(
    "break_source, plan, fragments",
    [
        (_missing_bucket, "photos", ["photos", "test-src-photos", "NoSuchBucket"]),
        (_access_denied, "photos", ["photos", "test-src-photos", "AccessDenied"]),
        (_missing_table, "database", ["orders", "test-orders", "ResourceNotFoundException"]),
    ],
    ids=["missing bucket", "access denied", "missing table"],
)
def test_a_failing_source_fails_its_plan_only(
    service: BackupService, s3: Any, dynamodb: Any, clients: Any, break_source: Any, plan: str, fragments: list[str]
) -> None:
    with client_calls(clients.s3, ("ListObjectsV2",)) as calls:
        break_source(s3, dynamodb, calls)
        record = backup(service)
    assert record.status == "PARTIAL"
    failed = record.plans[plan]
    assert failed.status == "FAILED" and failed.snapshot is None
    assert len(failed.errors) == 1
    for fragment in fragments:
        assert fragment in failed.errors[0], failed.errors
    for name, result in record.plans.items():
        if name != plan:
            assert result.status == "SUCCEEDED" and result.snapshot and result.copied > 0
    assert list_snapshot_keys(s3, f"test-backup-{plan}", plan) == []
    assert service.get(record.backup_id).plans[plan].errors == failed.errors


def test_a_failing_copy_is_partial_and_is_retried_next_time(docs: BackupService, s3: Any, clients: Any) -> None:
    bad = "reports/report-4.txt"
    with client_calls(clients.s3) as calls:
        calls.fail("CopyObject", when=lambda p: p.get("Key") == f"data/documents/{bad}", code="AccessDenied")
        record = backup(docs, ["documents"])
    result = record.plans["documents"]
    assert (result.status, result.copied, result.failed) == ("PARTIAL", 9, 1)
    assert bad in result.errors[0] and "AccessDenied" in result.errors[0]
    # The snapshot names only what is really stored, and says that one object failed.
    header, entries = snapshot(s3, result)
    assert bad not in entries and header["failed"] == 1 and len(entries) == 9
    assert versions(s3, DOCS_BACKUP, f"data/documents/{bad}") == ([], [])
    retry = backup(docs, ["documents"]).plans["documents"]
    assert (retry.status, retry.copied, retry.unchanged) == ("SUCCEEDED", 1, 9)


# --------------------------------------------------------------------------------------------------------
# A manifest appears only when its data is complete, and is never overwritten.


def test_a_crashed_run_leaves_no_manifest_and_its_retry_completes(
    docs: BackupService, s3: Any, clients: Any
) -> None:
    seen: list[str] = []

    def sixth_copy(params: dict[str, Any]) -> bool:
        seen.append(params["Key"])
        return len(seen) == 6

    record = docs.start(["documents"], trigger="api")
    with client_calls(clients.s3) as calls:
        calls.fail("CopyObject", when=sixth_copy, raise_=Crash())
        with pytest.raises(Crash):
            docs.run(record.backup_id)
    # Some data went in, but no manifest: the snapshot does not exist, and the record still says RUNNING.
    assert s3.list_object_versions(Bucket=DOCS_BACKUP, Prefix="data/").get("Versions")
    assert list_snapshot_keys(s3, DOCS_BACKUP, "documents") == []
    assert docs.get(record.backup_id).status == "RUNNING"
    # The runtime retries the same backup: it completes with every object.
    done = docs.run(record.backup_id)
    assert done.status == "SUCCEEDED"
    assert list_snapshot_keys(s3, DOCS_BACKUP, "documents") == [manifest_key("documents", record.backup_id)]
    _, entries = snapshot(s3, done.plans["documents"])
    for key, body in DOCUMENTS.items():
        assert version_bytes(s3, DOCS_BACKUP, entries[key].data_key, entries[key].version_id) == body


def test_a_failure_after_the_copies_leaves_no_manifest(docs: BackupService, s3: Any, clients: Any) -> None:
    backup(docs, ["documents"])
    s3.delete_object(Bucket=DOCS_SRC, Key="reports/report-0.txt")
    with client_calls(clients.s3) as calls:
        calls.fail("DeleteObjects", code="InternalError", status=500)
        record = backup(docs, ["documents"])
    result = record.plans["documents"]
    assert result.status == "FAILED" and result.snapshot is None
    assert "InternalError" in result.errors[0] and DOCS_BACKUP in result.errors[0]
    assert manifest_key("documents", record.backup_id) not in list_snapshot_keys(s3, DOCS_BACKUP, "documents")


def test_the_manifest_is_written_last_and_only_if_absent(docs: BackupService, s3: Any, clients: Any) -> None:
    with client_calls(clients.s3) as calls:
        record = backup(docs, ["documents"])
    key = manifest_key("documents", record.backup_id)
    order = [p.get("Key") for op, p in calls.calls if p.get("Key", "").startswith(("data/", "meta/snapshots/"))]
    assert order[-1] == key and order.count(key) == 1
    manifest_put = [p for op, p in calls.calls if op == "PutObject" and p.get("Key") == key][0]
    assert manifest_put["IfNoneMatch"] == "*"
    before = s3.get_object(Bucket=DOCS_BACKUP, Key=key)["Body"].read()
    with pytest.raises(AlreadyExists):
        put_manifest(s3, DOCS_BACKUP, key, __import__("io").BytesIO(b"not a manifest"))
    stored, _ = versions(s3, DOCS_BACKUP, key)
    assert len(stored) == 1
    assert s3.get_object(Bucket=DOCS_BACKUP, Key=key)["Body"].read() == before


def test_running_a_finished_backup_again_writes_nothing(docs: BackupService, s3: Any, clients: Any) -> None:
    first = backup(docs, ["documents"])
    s3.put_object(Bucket=DOCS_SRC, Key="reports/new.txt", Body=b"new")
    second = backup(docs, ["documents"])
    plan = docs.settings.plans.get("documents")
    # A late duplicate of the first backup's invocation, after the second finished.
    with client_calls(clients.s3) as calls:
        again = back_up_plan(plan, clients, first.backup_id)
        docs.run(second.backup_id)
    assert calls.calls == []
    assert (again.status, again.copied, again.snapshot) == ("SUCCEEDED", 10, first.plans["documents"].snapshot)
    assert len(list_snapshot_keys(s3, DOCS_BACKUP, "documents")) == 2


def test_dry_run_reports_and_writes_nothing(docs: BackupService, s3: Any, clients: Any) -> None:
    backup(docs, ["documents"])
    s3.put_object(Bucket=DOCS_SRC, Key="reports/new.txt", Body=b"new")
    s3.delete_object(Bucket=DOCS_SRC, Key="reports/report-0.txt")
    with client_calls(clients.s3) as calls:
        record = docs.start(["documents"], trigger="api", dry_run=True)
        result = docs.run(record.backup_id).plans["documents"]
    assert (result.copied, result.unchanged) == (1, 9)
    assert calls.data_writes() == []
    assert len(list_snapshot_keys(s3, DOCS_BACKUP, "documents")) == 1


# --------------------------------------------------------------------------------------------------------
# Copies run on a bounded thread pool.


def test_copies_run_on_a_bounded_thread_pool(docs: BackupService, s3: Any, clients: Any) -> None:
    for i in range(40):
        s3.put_object(Bucket=DOCS_SRC, Key=f"bulk/{i:03d}", Body=b"x" * i)
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "calls": 0}
    # The first three copies must all be running at once to pass this barrier: proof that the pool runs
    # three at a time (with fewer threads it breaks after its timeout and the copies fail).
    together = threading.Barrier(3, timeout=30)

    def factory(source: Any) -> Any:
        reader = make_reader(source, clients.s3, clients.dynamodb)
        store = reader.store

        def counted(*args: Any) -> Any:
            with lock:
                state["now"] += 1
                state["calls"] += 1
                state["max"] = max(state["max"], state["now"])
                first_three = state["calls"] <= 3
            try:
                if first_three:
                    together.wait()
                return store(*args)
            finally:
                with lock:
                    state["now"] -= 1

        reader.store = counted  # type: ignore[method-assign]
        return reader

    plan = docs.settings.plans.get("documents")
    result = PlanBackup(plan, clients.s3, new_backup_id(suffix="pool"), factory, max_workers=3, batch_size=16).run()
    assert result.status == "SUCCEEDED" and result.copied == state["calls"] == 50
    assert state["max"] == 3 and not together.broken


def test_a_plan_dropped_from_the_plans_file_fails_instead_of_hanging(service: BackupService, clients: Any) -> None:
    record = service.start(["documents", "photos"], trigger="api")
    plans = service.settings.plans
    # Deployed between the request and the worker: the new plans file no longer has "documents".
    shrunk = dataclasses.replace(plans, plans=tuple(p for p in plans.plans if p.name != "documents"))
    later = BackupService(dataclasses.replace(service.settings, plans=shrunk), clients)
    done = later.run(record.backup_id)
    assert done.status == "PARTIAL"
    assert done.plans["documents"].status == "FAILED"
    assert "no longer in the plans file" in done.plans["documents"].errors[0]
    assert done.plans["photos"].status == "SUCCEEDED"


def test_clients_retry_in_standard_mode_with_a_pool_as_big_as_the_copy_pool(clients: Any) -> None:
    from chalicelib.aws import client_config

    workers = Settings.from_environ({"BACKUP_BUCKET_PREFIX": "x-backup", "DOCUMENTS_SOURCE_BUCKET": "x-docs",
                                     "PHOTOS_SOURCE_BUCKET": "x-photos", "DATABASE_TABLE": "x-orders"}).max_workers
    # What aws.py asks for: standard mode, 10 retries after the first attempt (botocore: 11 attempts in all).
    assert client_config().retries == {"mode": "standard", "max_attempts": 10}
    for client in (clients.s3, clients.dynamodb, clients.sns, clients.lambda_, clients.cloudwatch):
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 11}
    assert clients.s3.meta.config.max_pool_connections >= workers


# --------------------------------------------------------------------------------------------------------
# Requests: what an unchanged backup costs


# The requests of a plan with nothing changed: one listing page per 1,000 objects and four more.
ENGINE_REQUESTS = {
    "s3:GetBucketVersioning": 1,  # the bucket keeps every version (before anything is written)
    "s3:ListObjectsV2": 1,  # the plan's snapshots and checkpoints (plus the source's pages, added below)
    "s3:GetObject": 1,  # the previous manifest, at the version its sealed record names
    "s3:PutObject": 1,  # the new manifest, create-only
}
# What the backup as a whole adds, whatever the number of objects.
BOOKKEEPING_REQUESTS = {
    "s3:PutObject": 3,  # the record created, saved once finished, and sealed (create-only)
    # The worker reads the record (its sealed key first, then the working one); the previous backup's sealed
    # record names the base, and its pruned marker (absent) says it may still be compared with.
    "s3:GetObject": 4,
    "s3:ListObjectsV2": 1,  # the records, newest first, for the previous sealed one
    # drift: the bucket's settings read back after the plan
    "s3:GetBucketVersioning": 1,
    "s3:GetBucketLifecycleConfiguration": 1,
    # ... and the inventory bucket's default encryption and policy (S3 alone writes reports there)
    "s3:GetBucketEncryption": 2,
    "s3:GetPublicAccessBlock": 1,
    "s3:GetBucketOwnershipControls": 1,
    "s3:GetBucketPolicy": 2,
    "s3:GetObjectLockConfiguration": 1,
    "s3:GetBucketInventoryConfiguration": 1,  # the bucket's inventory configuration
    "sns:Publish": 1,  # the alert
}


def test_an_unchanged_backup_lists_a_page_per_thousand_objects_and_sends_a_fixed_few_more(
    docs: BackupService, recorded_calls: Any
) -> None:
    from collections import Counter

    docs.run(docs.start(["documents"], trigger="api").backup_id)
    before = len(recorded_calls.calls())
    record = docs.run(docs.start(["documents"], trigger="api").backup_id)
    assert record.plans["documents"].unchanged == len(DOCUMENTS) and record.plans["documents"].copied == 0
    sent = Counter(f"{call.service}:{call.operation}" for call in recorded_calls.calls()[before:])
    pages = 1  # ten objects
    expected = Counter(ENGINE_REQUESTS) + Counter({"s3:ListObjectsV2": pages}) + Counter(BOOKKEEPING_REQUESTS)
    assert sent == expected
    assert sum(ENGINE_REQUESTS.values()) == 4


def test_the_benchmark_counts_the_same_bookkeeping() -> None:
    """`make bench` measures the engine alone against the emulator, and adds the backup's bookkeeping."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parent.parent / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.BOOKKEEPING_REQUESTS == sum(BOOKKEEPING_REQUESTS.values())

"""DynamoDB sources at scale: DynamoDB's own export where the table has point-in-time recovery, a scan that
continues past the invocation's end where it has not, and restores from either form, item for item."""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import time_machine
from botocore.awsrequest import AWSResponse

from chalicelib.backup import table_export, tables
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.service import BackupService
from chalicelib.backup.source_reader import ReaderRun
from chalicelib.backup.sources import make_reader
from chalicelib.catalog.manifests import EXPORT_IDENTITY
from chalicelib.config import Settings
from chalicelib.layout import EXPORTS_PREFIX
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from tests.stored import assert_versions_hold, entries_of
from tests.test_backup_engine import client_calls
from tests.test_scale import FakeContext, Invocations

TABLE = "test-orders"
DATABASE = "test-backup-database"

# Every kind of attribute value, binary ones included (base64 in DynamoDB JSON).
AWKWARD_ITEMS = [
    {"pk": {"S": "blob"}, "data": {"B": b"\x00\xffraw"}, "bins": {"BS": [b"\x01", b"\x02\x03"]}},
    {"pk": {"S": "sets"}, "tags": {"SS": ["a", "b"]}, "nums": {"NS": ["1", "2.5", "-3e10"]}},
    {"pk": {"S": "nested"}, "m": {"M": {"l": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True}, {"BOOL": False}]},
                                        "b": {"B": b"\xfe"}}}},
    {"pk": {"S": "\u65e5\u672c\u8a9e \U0001f389"}, "note": {"S": "\u00e9t\u00e9\n\"quoted\""}, "n": {"N": "0.000001"}},
]


def items(dynamodb: Any, table: str) -> list[str]:
    found = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        found.extend(json.dumps(item, sort_keys=True, default=repr) for item in page["Items"])
    return sorted(found)


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """An export moto reports still running is polled again at once, not after the functions' 20 s."""
    monkeypatch.setattr(table_export, "EXPORT_POLL_SECONDS", 0.01)


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The backup ids these tests name (26 and 27 November 2026) stay within MAX_BACKUP_DAYS of the clock."""
    with time_machine.travel(datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def database(backup_buckets: Any, sources: Any, dynamodb: Any, clients: Any, stage_env: dict[str, str]) -> Settings:
    for item in AWKWARD_ITEMS:
        dynamodb.put_item(TableName=TABLE, Item=item)
    return Settings.from_environ(stage_env)


def point_in_time_recovery(dynamodb: Any) -> None:
    dynamodb.update_continuous_backups(
        TableName=TABLE, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )


def restore(settings: Settings, clients: Any, backup_id: str, table: str) -> None:
    restores = RestoreService.from_settings(settings, clients)
    request = RestoreRequest(backup_id=backup_id, plan="database", target=Target(table=table))
    done = restores.run(restores.start(request).restore_id)
    assert done.status == "SUCCEEDED", done.failures


def operations(recorded: Any) -> Counter[str]:
    return Counter(call.operation for call in recorded.calls() if call.service == "dynamodb")


def test_a_table_with_point_in_time_recovery_is_exported_and_restores_item_for_item(
    database: Settings, clients: Any, dynamodb: Any, s3: Any, recorded_calls: Any
) -> None:
    point_in_time_recovery(dynamodb)
    before = items(dynamodb, TABLE)
    service = BackupService(database, clients)
    record = service.run(service.start(["database"], trigger="api").backup_id)
    result = record.plans["database"]
    assert result.status == "SUCCEEDED", result
    used = operations(recorded_calls)
    # DynamoDB's export, and not one page of scan (no read capacity consumed).
    assert used["ExportTableToPointInTime"] == 1 and used["Scan"] == 0, used

    [entry] = entries_of(s3, DATABASE, "database", record.backup_id)
    assert entry.key == f"{TABLE}.jsonl.gz" and entry.identity.startswith(EXPORT_IDENTITY)
    assert entry.item_count == result.sources["orders"]["items"] == 50 + len(AWKWARD_ITEMS)
    # The snapshot names the version this run wrote, holding every exported line.
    assert_versions_hold(s3, DATABASE, [entry])
    body = s3.get_object(Bucket=DATABASE, Key=entry.data_key, VersionId=entry.version_id)["Body"].read()
    assert len(gzip.decompress(body).splitlines()) == entry.item_count
    # DynamoDB's own files, now joined, are only noncurrent versions behind delete markers.
    assert "Contents" not in s3.list_objects_v2(Bucket=DATABASE, Prefix=EXPORTS_PREFIX)

    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "order-0003"}})
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "blob"}, "data": {"B": b"changed"}})
    restore(database, clients, record.backup_id, "restored-orders")
    assert items(dynamodb, "restored-orders") == before


def test_a_dry_run_starts_no_export(database: Settings, clients: Any, dynamodb: Any, recorded_calls: Any) -> None:
    point_in_time_recovery(dynamodb)
    service = BackupService(database, clients)
    record = service.run(service.start(["database"], trigger="api", dry_run=True).backup_id)
    assert record.plans["database"].status == "SUCCEEDED"
    assert record.plans["database"].copied == 1  # would be exported
    assert operations(recorded_calls)["ExportTableToPointInTime"] == 0


def export_status(dynamodb: Any, statuses: list[str]) -> None:
    """DescribeExport answers these statuses first (moto completes an export at once), then the truth."""
    lock = threading.Lock()

    def answer(params: dict[str, Any], **kwargs: Any) -> Any:
        with lock:
            if not statuses:
                return None
            status = statuses.pop(0)
        description = {"ExportArn": params["ExportArn"], "ExportStatus": status}
        if status == "FAILED":
            description.update(FailureCode="S3AccessDenied", FailureMessage="Access Denied (injected)")
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 200, {}, None), {
            "ExportDescription": description, "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    def keep(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["export_params"] = params

    dynamodb.meta.events.register("provide-client-params.dynamodb.DescribeExport", keep)
    dynamodb.meta.events.register(
        "before-call.dynamodb.DescribeExport", lambda context, **kwargs: answer(context["export_params"])
    )


def database_run(settings: Settings, clients: Any, backup_id: str) -> Any:
    """One plan run, on its own (no backup record: nothing to restore from)."""
    plan = settings.plans.get("database")
    factory = lambda source: make_reader(source, clients.s3, clients.dynamodb)  # noqa: E731
    return PlanBackup(plan, clients.s3, backup_id, factory, max_workers=4).run()


def backed_up(settings: Settings, clients: Any, checks: int | None = None) -> tuple[Any, int]:
    """A backup of the database plan through the service; with `checks`, each invocation's clock runs out after
    that many looks at it, and continuations run until the backup is done. The record, and the invocations."""
    invoker = Invocations()
    service = BackupService(settings, clients, invoker=invoker)
    backup_id = service.start(["database"], trigger="api").backup_id
    service.run(backup_id, context=FakeContext(checks) if checks is not None else None)
    invoker.drive(lambda payload: service.run(payload["backup_id"], context=FakeContext(checks or 0)))
    return service.get(backup_id), invoker.count + 1


def test_an_export_still_running_is_waited_for_by_the_next_invocation(
    database: Settings, clients: Any, dynamodb: Any, s3: Any, recorded_calls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_in_time_recovery(dynamodb)
    before = items(dynamodb, TABLE)
    export_status(clients.dynamodb, ["IN_PROGRESS"] * 7)
    record, invocations = backed_up(database, clients, checks=1)
    result = record.plans["database"]
    assert result.status == "SUCCEEDED", result
    assert invocations >= 3
    # One export, waited for across invocations (its ARN kept in the run's checkpoint prefix).
    assert operations(recorded_calls)["ExportTableToPointInTime"] == 1
    assert "Contents" not in s3.list_objects_v2(Bucket=DATABASE, Prefix="meta/checkpoints/")
    restore(database, clients, record.backup_id, "restored-waited")
    assert items(dynamodb, "restored-waited") == before


def test_a_failed_export_fails_the_table_naming_it(database: Settings, clients: Any, dynamodb: Any, s3: Any) -> None:
    """Like a copy that fails: the table counts as failed, and the snapshot keeps the version it had."""
    kept = database_run(database, clients, "20261126T000000000Z-scan")
    point_in_time_recovery(dynamodb)
    export_status(clients.dynamodb, ["FAILED"])
    result = database_run(database, clients, "20261127T000000000Z-failed")
    assert (result.status, result.failed, result.copied) == ("PARTIAL", 1, 0)
    assert "test-orders" in result.errors[0] and "S3AccessDenied" in result.errors[0], result.errors
    [before] = entries_of(s3, DATABASE, "database", "20261126T000000000Z-scan")
    [after] = entries_of(s3, DATABASE, "database", "20261127T000000000Z-failed")
    assert kept.copied == 1 and after == before


def test_a_scan_longer_than_one_invocation_continues_from_its_checkpoint(
    database: Settings, clients: Any, dynamodb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "SCAN_PAGE_ITEMS", 4)
    before = items(dynamodb, TABLE)
    record, invocations = backed_up(database, clients, checks=2)
    result = record.plans["database"]
    assert result.status == "SUCCEEDED", result
    assert invocations >= 3
    [entry] = entries_of(s3, DATABASE, "database", record.backup_id)
    assert entry.item_count == 50 + len(AWKWARD_ITEMS)
    # The same identity as a scan in one go: nothing counted twice, nothing missed.
    monkeypatch.setattr(tables, "SCAN_PAGE_ITEMS", None)
    reference = database_run(database, clients, "29991231T000000000Z-single")
    assert (reference.copied, reference.unchanged) == (0, 1)
    assert "Contents" not in s3.list_objects_v2(Bucket=DATABASE, Prefix="meta/checkpoints/")
    restore(database, clients, record.backup_id, "restored-scanned")
    assert items(dynamodb, "restored-scanned") == before


@pytest.mark.parametrize("rewritten", ["state", "part", "no proof"])
def test_a_scan_checkpoint_rewritten_while_the_backup_runs_is_not_resumed_from(
    database: Settings, clients: Any, dynamodb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, rewritten: str
) -> None:
    """The scan's progress is kept where the backup writer can write (the run's checkpoint prefix): its state
    rewritten to say the scan is done with items of the writer's choosing, or a saved part replaced, is
    tampering; the run resumes from neither, and the plan fails saying so. A state without any proof (as a
    version before proofs saved it, found at an upgrade) is not resumed from either, and no alarm: the scan
    starts over and the backup ends whole."""
    from chalicelib.catalog.run_keys import new_run_key

    monkeypatch.setattr(tables, "SCAN_PAGE_ITEMS", 4)
    invoker = Invocations()
    service = BackupService(database, clients, invoker=invoker)
    key = new_run_key()
    backup_id = service.start(["database"], trigger="api", run_key=key).backup_id
    assert service.run(backup_id, context=FakeContext(2), run_key=key).status == "RUNNING"
    [state_key] = [o["Key"] for o in s3.list_objects_v2(Bucket=DATABASE, Prefix="meta/checkpoints/")["Contents"] if o["Key"].endswith("scan.json")]
    state = json.loads(s3.get_object(Bucket=DATABASE, Key=state_key)["Body"].read())
    planted = gzip.compress(json.dumps({"Item": {"pk": {"S": "planted"}}}).encode() + b"\n")
    part = next(k for segment in state["segments"] for k in segment["parts"])
    s3.put_object(Bucket=DATABASE, Key=part, Body=planted)
    if rewritten in ("state", "no proof"):
        for segment in state["segments"]:
            segment.update(done=True, count=1, parts=[part])
        if rewritten == "no proof":
            state.pop("run_proof")
        s3.put_object(Bucket=DATABASE, Key=state_key, Body=json.dumps(state).encode())

    invoker.drive(lambda payload: service.run(payload["backup_id"], context=FakeContext(2), run_key=payload.get("run_key")))

    result = service.get(backup_id).plans["database"]
    if rewritten == "no proof":
        assert result.status == "SUCCEEDED" and not [e for e in result.errors if e.startswith("TAMPERING")], result
        [entry] = entries_of(s3, DATABASE, "database", backup_id)
        assert entry.item_count == 50 + len(AWKWARD_ITEMS)
        return
    assert result.status == "FAILED" and not result.manifest_version, result
    assert any(e.startswith("TAMPERING") for e in result.errors), result.errors


def test_an_export_of_many_files_is_joined_server_side_where_it_can_be(s3: Any, backup_buckets: Any) -> None:
    """What DynamoDB writes for a large table: several data files (one of them over S3's 5 MiB part minimum),
    manifests beside them. moto writes one file, so the files are laid out here as DynamoDB lays them out."""
    export = table_export.Export("arn:aws:dynamodb:us-east-1:123456789012:table/t/export/1-a", f"{EXPORTS_PREFIX}orders/b-x")
    base = f"{export.prefix}/AWSDynamoDB/1-a/"
    lines: dict[str, list[bytes]] = {}
    for name, count, size in (("big", 700, 9000), ("small-1", 3, 10), ("small-2", 5, 10), ("small-3", 1, 10)):
        lines[name] = [json.dumps({"Item": {"pk": {"S": f"{name}-{i}"}, "r": {"B": os.urandom(size).hex()}}}).encode()
                       for i in range(count)]
        s3.put_object(Bucket=DATABASE, Key=f"{base}data/{name}.json.gz", Body=gzip.compress(b"\n".join(lines[name]) + b"\n"))
    s3.put_object(Bucket=DATABASE, Key=f"{base}manifest-summary.json", Body=b"{}")
    s3.put_object(Bucket=DATABASE, Key=f"{base}manifest-files.json", Body=b"{}")
    exports = table_export.TableExports(None, s3, DATABASE, ReaderRun(DATABASE, "meta/checkpoints/x/", "b-x"), "table t")
    with client_calls(s3, ("UploadPartCopy", "UploadPart", "GetObject")) as calls:
        written, count = exports.join({"ItemCount": 709}, export, "data/orders/t.jsonl.gz")
    assert count == 709
    assert len(calls.keys("UploadPartCopy")) == 1 and len(calls.keys("UploadPart")) == 1
    assert sorted(calls.keys("GetObject")) == [f"{base}data/small-{i}.json.gz" for i in (1, 2, 3)]
    body = s3.get_object(Bucket=DATABASE, Key="data/orders/t.jsonl.gz", VersionId=written.version_id)["Body"].read()
    assert sorted(gzip.decompress(body).splitlines()) == sorted(line for group in lines.values() for line in group)
    assert written.size == len(body)
    assert s3.head_object(Bucket=DATABASE, Key="data/orders/t.jsonl.gz")["VersionId"] == written.version_id


def test_the_export_and_scan_forms_are_told_apart_by_the_snapshot(database: Settings, clients: Any, dynamodb: Any, s3: Any) -> None:
    """A table first scanned, then exported once point-in-time recovery is on: the next backup copies it again
    (a new form), keeps one entry for the table, and both snapshots restore."""
    first, _ = backed_up(database, clients)
    point_in_time_recovery(dynamodb)
    second, _ = backed_up(database, clients)
    results = [record.plans["database"] for record in (first, second)]
    assert [(r.copied, r.deleted, r.deletions_held_back) for r in results] == [(1, 0, 0), (1, 0, 0)]
    forms = [entries_of(s3, DATABASE, "database", record.backup_id)[0].identity.split(":", 1)[0] for record in (first, second)]
    assert forms == ["items", "export"]
    for index, record in enumerate((first, second)):
        restore(database, clients, record.backup_id, f"restored-{index}")
    assert items(dynamodb, "restored-0") == items(dynamodb, "restored-1") == items(dynamodb, TABLE)

"""The restore worker trusts no record: a pass checks the recorded target again (one of the stage's restore
buckets, a table named with its prefix, never a backup bucket or a folder) before it writes anything. A
record someone rewrote after the API checked it (the catalog's writer, or whoever holds its credentials)
fails, naming why, and nothing is written anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.backup.service import BackupService
from chalicelib.config import Settings
from chalicelib.layout import RESTORE_QUEUE_PREFIX
from chalicelib.restore.record import restore_record_key
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService

CATALOG = "test-backup-documents"
ALLOWED = "restore-target"
ELSEWHERE = "attacker-bucket"


@pytest.fixture
def restores(clients: Any, backup_buckets: Any, sources: Any, s3: Any, stage_env: dict[str, str]) -> RestoreService:
    for bucket in (ALLOWED, ELSEWHERE):
        s3.create_bucket(Bucket=bucket)
    return RestoreService.from_settings(Settings.from_environ(stage_env), clients)


def worker(clients: Any, stage_env: dict[str, str]) -> RestoreService:
    """The restore worker: another process than the one that checked and recorded the restore, so it has
    nothing but the record to go by."""
    return RestoreService.from_settings(Settings.from_environ(stage_env), clients)


def backed_up(clients: Any, stage_env: dict[str, str]) -> str:
    backups = BackupService(Settings.from_environ(stage_env), clients)
    record = backups.start(None, trigger="api")
    assert backups.run(record.backup_id).status == "SUCCEEDED"
    return record.backup_id


def forge(s3: Any, restore_id: str, target: dict[str, Any]) -> None:
    """Rewrite a recorded restore's target, as whoever can write the catalog could."""
    key = restore_record_key(restore_id)
    record = json.loads(s3.get_object(Bucket=CATALOG, Key=key)["Body"].read())
    record["target"] = target
    s3.put_object(Bucket=CATALOG, Key=key, Body=json.dumps(record).encode())


def keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize(
    ("forged", "reason"),
    [
        ({"bucket": ELSEWHERE, "prefix": ""}, f"target bucket '{ELSEWHERE}' is not one of this stage's restore buckets"),
        ({"bucket": "test-backup-photos", "prefix": ""}, "target bucket 'test-backup-photos' is a backup bucket"),
        ({"path": "FOLDER"}, "only the command line restores into a folder"),
    ],
)
def test_a_restore_record_rewritten_to_another_target_fails_and_writes_nothing(
    restores: RestoreService, clients: Any, s3: Any, stage_env: dict[str, str], forged: dict[str, Any], reason: str,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "elsewhere"
    forged = {k: str(folder) if v == "FOLDER" else v for k, v in forged.items()}
    backup_id = backed_up(clients, stage_env)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=ALLOWED)))
    before = {bucket: keys(s3, bucket) for bucket in (ALLOWED, ELSEWHERE, "test-backup-photos")}
    forge(s3, record.restore_id, forged)
    done = worker(clients, stage_env).run(record.restore_id)
    assert done.status == "FAILED" and done.restored == 0
    assert any(reason in warning for warning in done.warnings), done.warnings
    assert {bucket: keys(s3, bucket) for bucket in before} == before
    assert not folder.exists()
    # Finished: the hourly check does not run it again, and takes it out of the queue.
    assert restores.resume_pending() == []
    assert keys(s3, CATALOG).count(RESTORE_QUEUE_PREFIX + record.restore_id) == 0


def test_a_record_rewritten_under_the_process_that_checked_it_is_not_followed(
    restores: RestoreService, clients: Any, s3: Any, stage_env: dict[str, str]
) -> None:
    # The operator's command checks, records and runs the restore in one process: its first pass goes by what
    # its own checks read, never by the stored record, so a rewrite meanwhile cannot aim it elsewhere.
    backup_id = backed_up(clients, stage_env)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="photos", target=Target(bucket=ALLOWED)))
    forge(s3, record.restore_id, {"bucket": ELSEWHERE, "prefix": "loot/"})
    restores.run(record.restore_id)
    assert keys(s3, ELSEWHERE) == [] and len(keys(s3, ALLOWED)) == 10


def test_a_table_target_rewritten_without_the_prefix_creates_no_table(
    restores: RestoreService, clients: Any, dynamodb: Any, stage_env: dict[str, str], s3: Any
) -> None:
    backup_id = backed_up(clients, stage_env)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="database", target=Target(table="restored-orders")))
    forge(s3, record.restore_id, {"table": "orders-live", "prefix": ""})
    done = worker(clients, stage_env).run(record.restore_id)
    assert done.status == "FAILED" and done.tables_created == []
    assert any("must be named restored-" in warning for warning in done.warnings), done.warnings
    assert "orders-live" not in dynamodb.list_tables()["TableNames"]


def test_the_restore_worker_function_checks_the_record_it_is_handed(
    app_client: Any, restores: RestoreService, clients: Any, s3: Any, stage_env: dict[str, str]
) -> None:
    backup_id = backed_up(clients, stage_env)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="photos", target=Target(bucket=ALLOWED)))
    forge(s3, record.restore_id, {"bucket": ELSEWHERE, "prefix": "loot/"})
    result = app_client.lambda_.invoke("restore_worker", {"restore_id": record.restore_id})
    assert result.payload == {"restore_id": record.restore_id, "status": "FAILED"}
    assert keys(s3, ELSEWHERE) == [] and keys(s3, ALLOWED) == []


def test_an_untouched_record_still_restores(restores: RestoreService, clients: Any, s3: Any, stage_env: dict[str, str]) -> None:
    backup_id = backed_up(clients, stage_env)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="photos", target=Target(bucket=ALLOWED, prefix="back/")))
    assert restores.run(record.restore_id).status == "SUCCEEDED"
    assert len(keys(s3, ALLOWED)) == 10

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
from chalicelib.errors import BadRequest
from chalicelib.layout import RESTORE_BUCKET_RESERVED_PREFIX, RESTORE_QUEUE_PREFIX
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


def test_no_restore_writes_under_the_reserved_prefix_of_the_first_restore_bucket(
    restores: RestoreService, clients: Any, s3: Any, stage_env: dict[str, str]
) -> None:
    # `org-backup/` of the first restore bucket holds the records of the restores from the vault: a source key
    # restored there without a target prefix would land on them.
    planted = "org-backup/vault-restore-queue/planted"
    s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=planted, Body=b"not a queue entry")
    backup_id = backed_up(clients, stage_env)
    for target, prefix in ((Target(bucket=ALLOWED, prefix="org-backup/vault-restores/"), "reports/"), (Target(bucket=ALLOWED), None)):
        with pytest.raises(BadRequest, match=f"under {RESTORE_BUCKET_RESERVED_PREFIX}, reserved in this bucket"):
            restores.start(RestoreRequest(backup_id=backup_id, plan="documents", target=target, prefix=prefix))
    # A recorded restore rewritten to either is refused by its pass, before it writes anything.
    for forged in ({"bucket": ALLOWED, "prefix": "org-backup/"}, {"bucket": ALLOWED, "prefix": ""}):
        record = restores.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=ALLOWED, prefix="back/")))
        forge(s3, record.restore_id, forged)
        done = worker(clients, stage_env).run(record.restore_id)
        assert done.status == "FAILED" and done.restored == 0, forged
        assert any(f"under {RESTORE_BUCKET_RESERVED_PREFIX}" in warning for warning in done.warnings), done.warnings
    assert keys(s3, ALLOWED) == []
    # In a stage where it is not the first restore bucket (the names sorted), it has no reserved prefix.
    other = RestoreService.from_settings(Settings.from_environ({**stage_env, "RESTORE_BUCKETS": f"{ALLOWED},{ELSEWHERE}"}), clients)
    record = other.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=ALLOWED), prefix="org-backup/"))
    assert other.run(record.restore_id).status == "SUCCEEDED"
    assert keys(s3, ALLOWED) == [planted]

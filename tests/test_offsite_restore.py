"""A restore from the vault: after two backups replicated into a second account and region, every backup bucket
of the stage is deleted, and `org-backup restore --from offsite` (and `POST /restores` with "from": "offsite")
still give back the newest snapshot, each object the version the snapshot names, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.cli.main import main
from chalicelib.deploy.offsite import restore_reader_arns
from chalicelib.deploy.provision import provision_offsite
from tests.conftest import ACCOUNT, REGION, snapshot_entries
from tests.offsite_world import VAULT_REGION, VAULT_ROLE_ARN, assumed_client, delete_bucket, stage_env_with_vaults
from tests.s3_replication import Replication
from tests.test_restore import backup, bucket_contents, post

TARGET = "restore-target"
DOCS = "test-src-documents"


@pytest.fixture
def stage_env(tmp_path: Path, stage_env: dict[str, str]) -> dict[str, str]:
    """The shipped plans, each with a vault `<bucket>-vault` in the second account and region."""
    return stage_env_with_vaults(tmp_path, stage_env, "GLACIER_IR")


def test_the_newest_snapshot_is_restored_from_the_vault_once_every_backup_bucket_is_gone(
    app_client: Any, backup_buckets: Any, sources: dict[str, Any], s3: Any, stage_env: dict[str, str],
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OFFSITE_ROLE_ARN", VAULT_ROLE_ARN)
    readers = restore_reader_arns(ACCOUNT, "org-backup", "local")  # the stage's restore roles may read the vault
    assert provision_offsite(boto3.session.Session(region_name=REGION), s3, backup_buckets, ACCOUNT, None, readers=readers) == 0
    capsys.readouterr()
    vault = assumed_client("s3")
    vault.create_bucket(Bucket=TARGET, CreateBucketConfiguration={"LocationConstraint": VAULT_REGION})
    documents = backup_buckets.get("documents")
    with Replication() as replication:
        backup(app_client, ["documents"])
        # Between the two backups: a changed object, a new one and a deleted one.
        expected = dict(sources["documents"])
        expected["reports/report-1.txt"] = b"changed after the first backup\n"
        expected["reports/new.txt"] = b"new in the second backup\n"
        del expected["reports/report-2.txt"]
        for key in ("reports/report-1.txt", "reports/new.txt"):
            s3.put_object(Bucket=DOCS, Key=key, Body=expected[key])
        s3.delete_object(Bucket=DOCS, Key="reports/report-2.txt")
        newest = backup(app_client, ["documents"])
    assert replication.replicated and {r.destination_bucket for r in replication.replicated} == {documents.offsite.bucket}
    entries = {e.key: e for e in snapshot_entries(s3, documents.bucket, "documents", newest)}
    assert set(entries) == set(expected)

    for plan in backup_buckets.plans:
        delete_bucket(s3, plan.bucket)
    assert not {p.bucket for p in backup_buckets.plans} & {b["Name"] for b in s3.list_buckets()["Buckets"]}

    # The command line, with the vault account's credentials.
    code = main(["restore", newest, "--plan", "documents", "--to-bucket", TARGET, "--to-prefix", "cli/", "--from", "offsite",
                 "--stage", "local", "--project-dir", str(project_dir), "--json", "--no-progress"])
    printed = capsys.readouterr()
    assert printed.out, printed.err
    answer = json.loads(printed.out)
    assert code == 0 and answer["status"] == "SUCCEEDED", answer
    assert main(["restore-status", answer["restore_id"], "--from", "offsite", "--stage", "local",
                 "--project-dir", str(project_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "SUCCEEDED"
    restored = bucket_contents(vault, TARGET, "cli/")
    assert restored == expected
    # Each object is the version the snapshot names, read from the vault.
    for key, entry in entries.items():
        kept = vault.get_object(Bucket=documents.offsite.bucket, Key=f"data/documents/{key}", VersionId=entry.version_id)
        assert kept["Body"].read() == expected[key] == restored[key]

    # The API, on a stage still running (its buckets gone): the same restore, from the vault.
    response = post(app_client, "/restores", {"backup_id": newest, "plan": "documents", "from": "offsite",
                                              "target": {"bucket": TARGET, "prefix": "api/"}})
    assert response.status_code == 202, response.body
    restore_id = response.json_body["restore_id"]
    assert app_client.http.get(f"/restores/{restore_id}?from=offsite").json_body["status"] == "SUCCEEDED"
    assert app_client.http.get(f"/restores/{restore_id}").status_code != 200  # the backup catalog is gone
    assert bucket_contents(vault, TARGET, "api/") == restored and bucket_contents(vault, TARGET, "api/") != {}
    # Without "from", the restore reads the backup buckets, which are gone.
    gone = post(app_client, "/restores", {"backup_id": newest, "plan": "documents", "target": {"bucket": TARGET, "prefix": "x/"}})
    assert gone.status_code >= 400

    # The snapshot is whole in the vault, every version re-read and re-hashed, and the vaults are as provisioned.
    verify = ["verify", newest, "--plan", "documents", "--from", "offsite", "--sample-percent", "100",
              "--stage", "local", "--project-dir", str(project_dir), "--json", "--no-progress"]
    assert main(verify) == 0
    checked = json.loads(capsys.readouterr().out)
    assert (checked["ok"], checked["checked"], checked["sampled"], checked["vault_drift"]) == (True, len(expected), len(expected), [])
    vault.delete_bucket_policy(Bucket=documents.offsite.bucket)
    assert main(verify) == 1
    checked = json.loads(capsys.readouterr().out)
    assert checked["ok"] is False and checked["vault_drift"] == [
        f"vault {documents.offsite.bucket}: its policy is not the one provisioned (it may let in more than the replication role)"]


def test_where_a_restore_reads_is_checked(stage_env: dict[str, str]) -> None:
    from chalicelib.aws import Clients
    from chalicelib.bootstrap import System
    from chalicelib.config import Settings
    from chalicelib.errors import BadRequest
    from chalicelib.plans_file import load_plans
    from chalicelib.api.requests import restore_request_from_dict

    body = {"backup_id": "20261126T134735123Z-9f2c4a1b", "plan": "documents", "target": {"bucket": TARGET}}
    assert restore_request_from_dict(body).origin == "backup"
    assert restore_request_from_dict({**body, "from": "offsite"}).origin == "offsite"
    with pytest.raises(BadRequest, match="'from' must be 'backup' .* or 'offsite' .*, got 'vault'"):
        restore_request_from_dict({**body, "from": "vault"})
    # The vault's view: each plan reads its vault, the catalog is the catalog plan's vault.
    view = load_plans(stage_env).in_vaults()
    assert [p.bucket for p in view.plans] == ["test-backup-documents-vault", "test-backup-photos-vault", "test-backup-database-vault"]
    assert view.catalog_bucket == "test-backup-documents-vault"
    with pytest.raises(BadRequest, match="no plan has an 'offsite' vault"):
        load_plans({**stage_env, "PLANS_FILE": ""}).in_vaults()
    # The deployed functions restore from the vault with their own roles, recording it in the first restore
    # bucket (tests/test_offsite_deployed_restore.py); a stage without one is refused before anything is recorded.
    deployed = {**stage_env, "WORKER_MODE": "lambda", "WORKER_FUNCTION_NAME": "org-backup-dev-backup_worker"}
    service = System(Settings.from_environ(deployed), Clients()).restores_from("offsite")
    assert (service.origin, service.store.bucket, service.plans.catalog_bucket) == ("offsite", TARGET, "test-backup-documents-vault")
    with pytest.raises(BadRequest, match="set RESTORE_BUCKETS, or run `org-backup restore --from offsite`"):
        System(Settings.from_environ({**deployed, "RESTORE_BUCKETS": ""}), Clients()).restores_from("offsite")

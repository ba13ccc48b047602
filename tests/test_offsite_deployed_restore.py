"""A restore from the vault by the deployed functions, with their own roles: after a backup replicated into a
second account and region (its data in DEEP_ARCHIVE there) every backup bucket of the stage is deleted, and
`POST /restores` with "from": "offsite" (worker mode `lambda`) still gives back the snapshot, each object the
version the vault's manifest names, thawed in the vault by the hourly check's pass. Every call the functions
make is checked against their generated policies (tests/record_calls.py); moto does not evaluate a bucket
policy across accounts, so the vault's policy is checked as a document (`permissions.admits`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.deploy.offsite import VAULT_READS, replication_role_arn, restore_reader_arns
from chalicelib.deploy.permissions import Permission, admits, required_permissions
from chalicelib.deploy.provision import provision_offsite
from chalicelib.deploy.vault_bucket import vault_policy
from chalicelib.layout import VAULT_RESTORE_QUEUE_PREFIX, VAULT_RESTORES_PREFIX
from tests.conftest import ACCOUNT, REGION, scheduled_event, snapshot_entries
from tests.record_calls import CallsSince, assume_configuration
from tests.offsite_world import VAULT_ACCOUNT, VAULT_ROLE_ARN, assumed_client, delete_bucket, stage_env_with_vaults
from tests.s3_replication import Replication
from tests.test_restore import backup, bucket_contents, post

TARGET = "restore-target"
WORKER = "org-backup-local-backup_worker"
# The roles the vault's policy lets read: the stage's restore functions (`app_name` of this project, stage "local").
READERS = restore_reader_arns(ACCOUNT, "org-backup", "local")


@pytest.fixture
def stage_env(tmp_path: Path, stage_env: dict[str, str]) -> dict[str, str]:
    """The shipped plans, each with a vault `<bucket>-vault` in the second account and region, data in Deep Archive."""
    return stage_env_with_vaults(tmp_path, stage_env, "DEEP_ARCHIVE")


def vault_reader(plans: Any) -> Any:
    """The vault account's client as the command line makes it (aws.vault_clients): its calls are no function's."""
    from chalicelib.aws import vault_clients

    return vault_clients(plans, {"OFFSITE_ROLE_ARN": VAULT_ROLE_ARN}).s3


class Invocations:
    """The Lambda client of the deployed functions: what they invoke asynchronously, kept for the test to run."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, dict[str, Any]]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> None:  # noqa: N803 (boto3's names)
        self.payloads.append((FunctionName, json.loads(Payload)))


def test_the_deployed_functions_restore_from_the_vault_with_every_backup_bucket_gone(
    app_client: Any, backup_buckets: Any, sources: dict[str, Any], s3: Any, stage_env: dict[str, str],
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import chalice.test
    from chalice.local import LambdaContext
    from chalice.test import Client

    import app as app_module
    from chalicelib.aws import Clients
    from chalicelib.config import Settings

    monkeypatch.setenv("OFFSITE_ROLE_ARN", VAULT_ROLE_ARN)
    assert provision_offsite(boto3.session.Session(region_name=REGION), s3, backup_buckets, ACCOUNT, None, readers=READERS) == 0
    capsys.readouterr()
    documents = backup_buckets.get("documents")
    assert documents.offsite is not None
    with Replication():
        backup_id = backup(app_client, ["documents"])
    vault = assumed_client("s3")
    # The vault's own manifest, read with the vault account's credentials, names what must come back.
    entries = {e.key: e for e in snapshot_entries(vault_reader(backup_buckets), documents.offsite.bucket, "documents", backup_id)}
    assert set(entries) == set(sources["documents"])
    for plan in backup_buckets.plans:
        delete_bucket(s3, plan.bucket)
    s3.create_bucket(Bucket=TARGET)

    # The stage as deployed: its workers are Lambda functions, started by an asynchronous invoke.
    config_path = project_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["local"]["environment_variables"].update({"WORKER_MODE": "lambda", "WORKER_FUNCTION_NAME": WORKER})
    config_path.write_text(json.dumps(config))
    # Lambda's 15 minutes (the test client's invocations have 3 seconds, less than a pass keeps in reserve).
    monkeypatch.setattr(chalice.test, "LambdaContext", lambda name, memory_size: LambdaContext(name, memory_size, 900_000))
    invoked = Invocations()
    # The functions' own clients (no vault credentials: OFFSITE_* are not read), their invokes kept.
    deployed_settings = Settings.from_environ({**stage_env, "WORKER_MODE": "lambda", "WORKER_FUNCTION_NAME": WORKER})
    clients = Clients(bucket_owner=deployed_settings.bucket_owner)
    clients.lambda_ = invoked
    app_module._clients = clients
    # No system frame holds the deployed stage's settings when the API hands the restore to its worker.
    assume_configuration(deployed_settings)
    calls = CallsSince()
    with Client(app_module.app, stage_name="local", project_dir=str(project_dir)) as deployed:
        response = post(deployed, "/restores", {"backup_id": backup_id, "plan": "documents", "from": "offsite",
                                                "target": {"bucket": TARGET, "prefix": "api/"}})
        assert response.status_code == 202, response.body
        restore_id = response.json_body["restore_id"]
        # Recorded in the first restore bucket, outside the vault, and queued for the hourly check.
        queued, record = [o["Key"] for o in s3.list_objects_v2(Bucket=TARGET, Prefix="org-backup/")["Contents"]]
        assert record.startswith(VAULT_RESTORES_PREFIX) and record.endswith(f"_{restore_id}.json")
        assert queued == VAULT_RESTORE_QUEUE_PREFIX + restore_id
        assert invoked.payloads == [("org-backup-local-restore_worker", {"restore_id": restore_id, "from": "offsite"})]

        # The worker thaws the Deep Archive replicas in the vault; the hourly check copies them once thawed.
        worker = deployed.lambda_.invoke("restore_worker", invoked.payloads[0][1]).payload
        assert worker == {"restore_id": restore_id, "status": "WAITING_FOR_THAW"}, worker
        resumed = deployed.lambda_.invoke("resume_restores", scheduled_event(deployed)).payload
        assert resumed == {"resumed": [{"restore_id": restore_id, "status": "SUCCEEDED"}]}, resumed
        status = deployed.http.get(f"/restores/{restore_id}?from=offsite").json_body
        assert (status["status"], status["restored"], status["failed"]) == ("SUCCEEDED", len(entries), 0), status
        # The next check finds it finished and takes it out of the queue.
        deployed.lambda_.invoke("resume_restores", scheduled_event(deployed))
        assert s3.list_objects_v2(Bucket=TARGET, Prefix=VAULT_RESTORE_QUEUE_PREFIX).get("KeyCount") == 0
    app_module._clients = None

    restored = bucket_contents(s3, TARGET, "api/")
    assert restored == sources["documents"]
    for key, entry in entries.items():
        kept = vault.get_object(Bucket=documents.offsite.bucket, Key=f"data/documents/{key}", VersionId=entry.version_id)
        assert kept["Body"].read() == restored[key]
    # Every request into the vault came from a restore function's role, and the vault's policy lets it in (moto
    # lets any account in: the policy is evaluated here, as S3 would); the roles' own policies are checked at
    # the end of the run (tests/record_calls.py).
    policy = vault_policy(documents, replication_role_arn(documents, ACCOUNT), READERS)
    into_vault = [c for c in calls.calls() if documents.offsite.bucket in json.dumps(c.params, default=str)]
    assert {c.function for c in into_vault} == {"api_handler", "restore_worker", "resume_restores"}
    assert {c.operation for c in into_vault} >= {"GetObject", "ListObjectVersions", "RestoreObject", "CopyObject"}
    for call in into_vault:
        role = f"arn:aws:iam::{ACCOUNT}:role/org-backup-local-{call.function}"
        for needed in required_permissions(call.service, call.operation, call.params, call.region, ACCOUNT):
            if documents.offsite.bucket in needed.resource:
                assert admits(policy, role, needed), (call.operation, needed)
    # Nothing was written into the vault but the thaws: its versions are the replicas alone.
    versions = vault.list_object_versions(Bucket=documents.offsite.bucket)
    assert not versions.get("DeleteMarkers") and not [v["Key"] for v in versions["Versions"] if "restore" in v["Key"]]


def test_the_vault_lets_the_restore_roles_read_and_thaw_and_nothing_more(plans: Any, stage_env: dict[str, str]) -> None:
    from chalicelib.config import Settings
    from chalicelib.deploy.policy import generate, settings_scope
    from chalicelib.plans_file import load_plans
    from chalicelib.deploy.permissions import allows

    vaulted = load_plans(stage_env)
    plan = vaulted.get("documents")
    assert plan.offsite is not None
    bucket = plan.offsite.bucket
    replicator = replication_role_arn(plan, ACCOUNT)
    policy = vault_policy(plan, replicator, READERS)
    reads = {action for _, actions, _ in VAULT_READS for action in actions}
    assert reads == {"s3:ListBucket", "s3:ListBucketVersions", "s3:GetObject", "s3:GetObjectVersion",
                     "s3:GetObjectVersionTagging", "s3:RestoreObject"}
    # Who the policy lets in, for what: the replication role to replicate, the restore roles to read, no one else.
    for statement in (s for s in policy["Statement"] if s["Effect"] == "Allow"):
        if set(statement["Action"]) <= reads:
            assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": list(READERS)}
        else:
            assert statement["Principal"] == {"AWS": replicator}
            assert not set(statement["Action"]) & reads - {"s3:GetBucketVersioning"}

    def permission(action: str, key: str | None = None, **context: str) -> Permission:
        resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
        return Permission(action, resource, tuple(context.items()) + (("s3:ResourceAccount", VAULT_ACCOUNT),))

    version = permission("s3:GetObjectVersion", "data/documents/a.txt")
    thaw = permission("s3:RestoreObject", "data/documents/a.txt")
    listing = permission("s3:ListBucketVersions", **{"s3:prefix": "data/documents/"})
    manifest = permission("s3:GetObject", "meta/snapshots/documents/x.jsonl.gz")
    for reader in READERS:
        assert all(admits(policy, reader, p) for p in (version, thaw, listing, manifest)), reader
    stranger = f"arn:aws:iam::{ACCOUNT}:role/org-backup-local-backup_worker"
    assert not any(admits(policy, stranger, p) for p in (version, thaw, listing, manifest))
    writes = [permission(a, "data/documents/a.txt") for a in (
        "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:ReplicateObject")]
    writes.append(permission("s3:PutLifecycleConfiguration"))
    for reader in READERS:
        assert not any(admits(policy, reader, p) for p in writes), reader

    # The restore worker's own policy: read and thaw in the vault (that account's bucket only), never write there.
    settings = Settings.from_environ({**stage_env, "WORKER_MODE": "lambda", "WORKER_FUNCTION_NAME": WORKER})
    role = generate(settings_scope("org-backup", "local", settings), "restore_worker")
    owned = (("s3:ResourceAccount", VAULT_ACCOUNT),)
    assert all(allows(role, p) for p in (version, thaw, listing, manifest))
    assert not allows(role, Permission(version.action, version.resource, (("s3:ResourceAccount", "999999999999"),)))
    on_vault = [s for s in role["Statement"] if any(bucket in r for r in s["Resource"])]
    assert on_vault and {a for s in on_vault for a in s["Action"]} <= reads
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert not allows(role, Permission(action, version.resource, owned)), action

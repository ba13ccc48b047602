"""The generated least-privilege policies: committed files match the generator, nothing forbidden is ever
granted, resources are scoped, and the calls a real backup makes are all allowed (the whole suite's
calls are checked the same way at the end of the run, by tests/record_calls.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.deploy.permissions import Permission, allows, required_permissions
from chalicelib.deploy.policy import (
    FORBIDDEN_ACTIONS,
    VERIFY_GRANTS,
    PolicyError,
    check_actions,
    generate,
    main,
    policy_path,
    render,
    settings_scope,
    stage_scope,
    write_stage,
)
from chalicelib.stages import read_config, stage_names
from tests.conftest import ROOT
from tests.record_calls import Call, violations

STAGES = ("local", "dev", "prod")


def actions_of(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def permission(service: str, operation: str, **params: Any) -> list[Permission]:
    return required_permissions(service, operation, params, "us-east-1", "123456789012")


def test_every_stage_has_a_policy_file() -> None:
    config = read_config(ROOT)
    assert config["autogen_policy"] is False
    assert sorted(stage_names(ROOT)) == sorted(STAGES)
    for stage in STAGES:
        assert config["stages"][stage]["iam_policy_file"] == f"policy-{stage}.json"
        assert policy_path(stage, ROOT).exists()


@pytest.mark.parametrize("stage", STAGES)
def test_committed_policy_is_what_the_generator_writes(stage: str) -> None:
    committed = policy_path(stage, ROOT).read_text(encoding="utf-8")
    assert committed == render(generate(stage_scope(stage, ROOT))), f"run `make policies`: {stage} is stale"


def test_the_check_command_passes_on_the_committed_files() -> None:
    assert main(["--check"]) == 0


def test_writing_is_idempotent_and_detects_stale_files(tmp_path: Path) -> None:
    (tmp_path / ".chalice").mkdir()
    shutil.copy(ROOT / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    path, changed = write_stage("dev", tmp_path)
    assert changed and path == tmp_path / ".chalice" / "policy-dev.json"
    assert write_stage("dev", tmp_path) == (path, False)
    path.write_text("{}")
    assert write_stage("dev", tmp_path)[1] is True


@pytest.mark.parametrize("stage", STAGES)
def test_nothing_forbidden_and_no_wildcard_actions(stage: str) -> None:
    policy = generate(stage_scope(stage, ROOT))
    actions = actions_of(policy)
    assert not actions & FORBIDDEN_ACTIONS
    assert all("*" not in action and "?" not in action for action in actions)
    assert {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"} <= actions
    for forbidden in sorted(FORBIDDEN_ACTIONS):
        assert not allows(policy, Permission(forbidden, "arn:aws:s3:::acme-backup-dev-documents/data/x"))


def test_a_grant_table_can_not_sneak_in_a_forbidden_action() -> None:
    with pytest.raises(PolicyError, match="PutLifecycleConfiguration"):
        check_actions(["s3:GetObject", "s3:PutLifecycleConfiguration"])
    with pytest.raises(PolicyError, match="wildcards"):
        check_actions(["s3:Get*"])


def test_resources_are_scoped_to_the_stage() -> None:
    policy = generate(stage_scope("prod", ROOT))
    backup = "arn:aws:s3:::acme-backup-prod-documents"
    source = "arn:aws:s3:::acme-documents"
    assert allows(policy, Permission("s3:PutObject", f"{backup}/data/documents/a.txt"))
    assert allows(policy, Permission("s3:PutObject", f"{backup}/meta/backups/x.json"))
    # Another stage's buckets, the sources, and anything else: no writes.
    assert not allows(policy, Permission("s3:PutObject", "arn:aws:s3:::acme-backup-dev-documents/data/a.txt"))
    assert not allows(policy, Permission("s3:PutObject", f"{source}/a.txt"))
    assert not allows(policy, Permission("s3:DeleteObject", f"{source}/a.txt"))
    assert allows(policy, Permission("s3:GetObject", f"{source}/a.txt"))
    assert allows(policy, Permission("s3:GetObjectTagging", f"{source}/a.txt"))
    # Snapshots and records are never deleted by the functions.
    assert not allows(policy, Permission("s3:DeleteObject", f"{backup}/meta/snapshots/documents/20261126T000000000Z-x.jsonl.gz"))
    assert not allows(policy, Permission("s3:DeleteObject", f"{backup}/meta/backups/0001_x.json"))
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/acme-orders"
    assert allows(policy, Permission("dynamodb:Scan", table))
    assert not allows(policy, Permission("dynamodb:PutItem", table))
    assert not allows(policy, Permission("dynamodb:Scan", "arn:aws:dynamodb:us-east-1:123456789012:table/acme-dev-orders"))
    topic = "arn:aws:sns:us-east-1:123456789012:org-backup-alerts-prod"
    assert allows(policy, Permission("sns:Publish", topic))
    assert not allows(policy, Permission("sns:Publish", topic.replace("prod", "dev")))
    worker = "arn:aws:lambda:us-east-1:123456789012:function:org-backup-prod-backup_worker"
    assert allows(policy, Permission("lambda:InvokeFunction", worker))
    assert not allows(policy, Permission("lambda:InvokeFunction", worker.replace("backup_worker", "other")))
    metric = Permission("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "OrgBackup"),))
    assert allows(policy, metric)
    assert not allows(policy, Permission("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "Other"),)))


def test_local_stage_runs_workers_in_threads_so_invokes_nothing() -> None:
    assert not any(a.startswith("lambda:") for a in actions_of(generate(stage_scope("local", ROOT))))


def test_a_source_prefix_limits_listing_and_reading(stage_env: dict[str, str], tmp_path: Path) -> None:
    plans = json.loads((ROOT / "chalicelib" / "plans.json").read_text())
    plans["plans"][0]["sources"][0]["prefix"] = "shared/"
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(plans))
    settings = Settings.from_environ({**stage_env, "PLANS_FILE": str(path)})
    policy = generate(settings_scope("org-backup", "test", settings))
    bucket = "arn:aws:s3:::test-src-documents"
    assert allows(policy, Permission("s3:ListBucket", bucket, (("s3:prefix", "shared/"),)))
    assert not allows(policy, Permission("s3:ListBucket", bucket, (("s3:prefix", "private/"),)))
    assert not allows(policy, Permission("s3:ListBucket", bucket))
    assert allows(policy, Permission("s3:GetObject", f"{bucket}/shared/a.txt"))
    assert not allows(policy, Permission("s3:GetObject", f"{bucket}/private/a.txt"))


def test_operations_map_to_the_actions_iam_checks() -> None:
    copy = permission("s3", "CopyObject", Bucket="dst", Key="data/k", CopySource={"Bucket": "src", "Key": "k"})
    assert {(p.action, p.resource) for p in copy} == {
        ("s3:GetObject", "arn:aws:s3:::src/k"),
        ("s3:GetObjectTagging", "arn:aws:s3:::src/k"),
        ("s3:PutObject", "arn:aws:s3:::dst/data/k"),
        ("s3:PutObjectTagging", "arn:aws:s3:::dst/data/k"),
    }
    versioned = permission("s3", "CopyObject", Bucket="dst", Key="k", CopySource="src/a%20b?versionId=v1")
    assert ("s3:GetObjectVersion", "arn:aws:s3:::src/a b") in {(p.action, p.resource) for p in versioned}
    assert ("s3:GetObjectVersionTagging", "arn:aws:s3:::src/a b") in {(p.action, p.resource) for p in versioned}
    part_copy = permission("s3", "UploadPartCopy", Bucket="dst", Key="k", CopySource={"Bucket": "src", "Key": "k"})
    assert {p.action for p in part_copy} == {"s3:GetObject", "s3:PutObject"}
    assert [p.action for p in permission("s3", "ListParts", Bucket="b", Key="k")] == ["s3:ListMultipartUploadParts"]
    assert [p.action for p in permission("s3", "AbortMultipartUpload", Bucket="b", Key="k")] == ["s3:AbortMultipartUpload"]
    assert [p.action for p in permission("s3", "HeadObject", Bucket="b", Key="k")] == ["s3:GetObject"]
    deletes = permission("s3", "DeleteObjects", Bucket="b", Delete={"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": "v"}]})
    assert [(p.action, p.resource) for p in deletes] == [
        ("s3:DeleteObject", "arn:aws:s3:::b/a"),
        ("s3:DeleteObjectVersion", "arn:aws:s3:::b/b"),
    ]
    (listing,) = permission("s3", "ListObjectsV2", Bucket="b", Prefix="meta/")
    assert listing == Permission("s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "meta/"),))
    assert permission("s3", "GetBucketLifecycleConfiguration", Bucket="b")[0].action == "s3:GetLifecycleConfiguration"
    assert permission("s3", "PutBucketLifecycleConfiguration", Bucket="b")[0].action == "s3:PutLifecycleConfiguration"
    assert permission("s3", "GetPublicAccessBlock", Bucket="b")[0].action == "s3:GetBucketPublicAccessBlock"
    (invoke,) = permission("lambda", "Invoke", FunctionName="worker")
    assert invoke == Permission("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:worker")
    (scan,) = permission("dynamodb", "Scan", TableName="t")
    assert scan == Permission("dynamodb:Scan", "arn:aws:dynamodb:us-east-1:123456789012:table/t")
    retention = permission("s3", "PutObject", Bucket="b", Key="k", ObjectLockMode="GOVERNANCE")
    assert "s3:PutObjectRetention" in {p.action for p in retention}


def test_the_recorded_calls_check_catches_what_the_policy_lacks(stage_env: dict[str, str]) -> None:
    policy = generate(settings_scope("org-backup", "test", Settings.from_environ(stage_env)))
    fine = Call("s3", "PutObject", {"Bucket": "test-backup-photos", "Key": "data/photos/a.png"}, "us-east-1", "here")
    assert violations([fine], policy) == []
    into_source = Call("s3", "PutObject", {"Bucket": "test-src-photos", "Key": "a.png"}, "us-east-1", "here")
    (problem,) = violations([into_source], policy)
    assert "s3:PutObject on arn:aws:s3:::test-src-photos/*" in problem
    purge = Call(
        "s3",
        "DeleteObjects",
        {"Bucket": "test-backup-photos", "Delete": {"Objects": [{"Key": "data/photos/a.png", "VersionId": "v1"}]}},
        "us-east-1",
        "here",
    )
    (problem,) = violations([purge], policy)
    assert problem.startswith("FORBIDDEN s3:DeleteObjectVersion")


def test_a_whole_backup_needs_only_the_stage_policy(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, stage_env: dict[str, str], recorded_calls: Any, s3: Any
) -> None:
    s3.delete_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key="reports/report-0.txt")
    for _ in range(2):  # the second run compares with the first snapshot and writes a delete marker
        response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=b"{}")
        assert response.status_code == 202
        s3.delete_object(Bucket=stage_env["PHOTOS_SOURCE_BUCKET"], Key="2026/img-0.png")
    calls = recorded_calls.calls()
    operations = {call.operation for call in calls}
    assert {"CopyObject", "PutObject", "Scan", "Publish", "PutMetricData", "GetBucketVersioning", "DeleteObjects"} <= operations
    policy = generate(settings_scope("org-backup", "test", Settings.from_environ(stage_env)))
    assert violations(calls, policy) == []


def test_calls_from_transfer_threads_are_recorded_and_allowed(
    s3: Any, backup_buckets: Any, stage_env: dict[str, str], recorded_calls: Any
) -> None:
    from chalicelib.backup.sources import S3SourceReader
    from chalicelib.plans import S3Source

    source_bucket = stage_env["DOCUMENTS_SOURCE_BUCKET"]
    s3.create_bucket(Bucket=source_bucket)
    s3.put_object(Bucket=source_bucket, Key="big.bin", Body=b"x" * (6 * 1024 * 1024))
    reader = S3SourceReader(s3, S3Source(name="documents", bucket=source_bucket), multipart_threshold=5 * 1024 * 1024)
    (listed,) = list(reader.list_objects())
    reader.store(listed, backup_buckets.get("documents").bucket, "data/documents/big.bin")
    calls = recorded_calls.calls()
    part_copies = [call for call in calls if call.operation == "UploadPartCopy"]
    assert part_copies, sorted({call.operation for call in calls})
    # The parts are copied on the engine's own part pool, each call seen with its system frame.
    assert all(call.origin.startswith("chalicelib/backup/writes.py") for call in part_copies), part_copies
    policy = generate(settings_scope("org-backup", "test", Settings.from_environ(stage_env)))
    assert violations(calls, policy) == []


def own_policy(grants: tuple[Any, ...], scope: Any) -> dict[str, Any]:
    """The policy a function would get from these grant tables alone."""
    statements = [
        {"Sid": grant.sid, "Effect": "Allow", "Action": list(grant.actions), "Resource": grant.resources(scope)}
        for grant in grants
        if grant.resources(scope)
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def test_the_verify_job_needs_only_its_own_grants(
    clients: Any, backup_buckets: Any, sources: Any, topic_queue: str, stage_env: dict[str, str], recorded_calls: Any
) -> None:
    from datetime import datetime, timezone

    from chalicelib.backup.service import BackupService
    from chalicelib.catalog.records import new_backup_id

    settings = Settings.from_environ(stage_env)
    backups = BackupService(settings, clients)
    backups.run(backups.start(None, trigger="api").backup_id)
    start = len(recorded_calls.calls())
    job = backups.verification.job()
    for weekday in range(7):
        job.run(job.start(new_backup_id(datetime(2100, 1, 1, tzinfo=timezone.utc), suffix=f"p{weekday}"), weekday).job_id)
    calls = recorded_calls.calls()[start:]
    assert {"ListObjectsV2", "GetObject", "HeadObject", "PutObject", "Publish"} <= {call.operation for call in calls}
    assert violations(calls, own_policy(VERIFY_GRANTS, settings_scope("org-backup", "test", settings))) == []


def test_the_verify_grants_read_and_write_only_its_own_records() -> None:
    policy = own_policy(VERIFY_GRANTS, stage_scope("dev", ROOT))
    documents = "arn:aws:s3:::acme-backup-dev-documents"
    assert allows(policy, Permission("s3:GetObjectVersion", "arn:aws:s3:::acme-backup-dev-photos/data/photos/a.png"))
    assert allows(policy, Permission("s3:GetObject", f"{documents}/meta/snapshots/documents/x.jsonl.gz"))
    assert allows(policy, Permission("s3:PutObject", f"{documents}/meta/verifications/0001_verify-x.json"))
    for key in ("data/documents/a.txt", "meta/snapshots/documents/x.jsonl.gz", "meta/backups/0001_x.json"):
        assert not allows(policy, Permission("s3:PutObject", f"{documents}/{key}"))
    # Only the catalog bucket holds verification records.
    assert not allows(policy, Permission("s3:PutObject", "arn:aws:s3:::acme-backup-dev-photos/meta/verifications/x.json"))
    assert not any(action.startswith(("s3:Delete", "dynamodb:")) for action in actions_of(policy))
    worker = "arn:aws:lambda:us-east-1:123456789012:function:org-backup-dev-verify_worker"
    assert allows(policy, Permission("lambda:InvokeFunction", worker))
    assert not allows(policy, Permission("lambda:InvokeFunction", worker.replace("verify_worker", "backup_worker")))
    # The stage's shared policy lets the backup's invocation start the job.
    assert allows(generate(stage_scope("dev", ROOT)), Permission("lambda:InvokeFunction", worker))


def test_calls_made_by_tests_themselves_are_not_recorded(s3: Any, recorded_calls: Any) -> None:
    s3.create_bucket(Bucket="made-by-a-test")
    s3.put_bucket_versioning(Bucket="made-by-a-test", VersioningConfiguration={"Status": "Enabled"})
    assert recorded_calls.calls() == []

"""The generated least-privilege policies, one per function: committed files match the generator and
`.chalice/config.json` names each, nothing forbidden is ever granted, resources are scoped, and the calls a
real backup makes are all allowed by the role of the function that makes them (the whole suite's calls are
checked the same way at the end of the run, by tests/record_calls.py). What each role must refuse is in
tests/test_roles.py."""

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
    PRUNE_ACTION,
    FUNCTIONS,
    PolicyError,
    check_actions,
    config_problems,
    generate,
    main,
    policy_path,
    render,
    settings_scope,
    stage_scope,
    union,
    write_stage,
)
from chalicelib.deploy.roles import DELETES_VERSIONS
from chalicelib.deploy.scope import (
    API_HANDLER,
    BACKUP_WORKER,
    DAILY_BACKUP,
    DAILY_PRUNE,
    PRUNE_WORKER,
    RESTORE_WORKER,
    VERIFY_WORKER,
)
from chalicelib.stages import read_config, stage_names
from tests.conftest import ROOT
from tests.record_calls import Call, violations

STAGES = ("local", "dev", "prod")


def actions_of(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def permission(service: str, operation: str, **params: Any) -> list[Permission]:
    return required_permissions(service, operation, params, "us-east-1", "123456789012")


def roles(scope: Any) -> dict[str, dict[str, Any]]:
    """Every function's generated policy in `scope`."""
    return {function: generate(scope, function) for function in FUNCTIONS}


def test_every_stage_gives_each_function_its_own_policy_file() -> None:
    config = read_config(ROOT)
    assert config["autogen_policy"] is False
    assert sorted(stage_names(ROOT)) == sorted(STAGES)
    for stage in STAGES:
        functions = config["stages"][stage]["lambda_functions"]
        assert {name: functions[name]["iam_policy_file"] for name in FUNCTIONS} == {
            name: f"policy-{stage}-{name}.json" for name in FUNCTIONS
        }
        assert all(policy_path(stage, name, ROOT).exists() for name in FUNCTIONS)
        # No stage-wide file: a function Chalice found no per-function file for would fall back to it.
        assert "iam_policy_file" not in config["stages"][stage]
        assert not (ROOT / ".chalice" / f"policy-{stage}.json").exists()
        assert config_problems(stage, ROOT) == []


def test_every_function_of_the_app_has_a_role() -> None:
    import app as app_module

    chalice_app = app_module.app
    functions = {"api_handler"} | {f.name for f in chalice_app.pure_lambda_functions} | {s.name for s in chalice_app.event_sources}
    assert functions == set(FUNCTIONS)
    with pytest.raises(PolicyError, match="'prune' has no role"):
        generate(stage_scope("dev", ROOT), "prune")


@pytest.mark.parametrize("stage", STAGES)
def test_committed_policies_are_what_the_generator_writes(stage: str) -> None:
    scope = stage_scope(stage, ROOT)
    for function in FUNCTIONS:
        committed = policy_path(stage, function, ROOT).read_text(encoding="utf-8")
        assert committed == render(generate(scope, function)), f"run `make policies`: {stage} {function} is stale"


def test_the_check_command_passes_on_the_committed_files() -> None:
    assert main(["--check"]) == 0


def test_writing_is_idempotent_and_detects_stale_files(tmp_path: Path) -> None:
    (tmp_path / ".chalice").mkdir()
    shutil.copy(ROOT / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    written = write_stage("dev", tmp_path)
    assert [path for path, _ in written] == [tmp_path / ".chalice" / f"policy-dev-{f}.json" for f in FUNCTIONS]
    assert all(changed for _, changed in written)
    assert write_stage("dev", tmp_path) == [(path, False) for path, _ in written]
    written[0][0].write_text("{}")
    assert [changed for _, changed in write_stage("dev", tmp_path)] == [True] + [False] * (len(FUNCTIONS) - 1)


def test_a_function_without_its_own_policy_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / ".chalice").mkdir()
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    del config["stages"]["dev"]["lambda_functions"]["api_handler"]
    config["stages"]["dev"]["lambda_functions"]["verify_worker"]["iam_policy_file"] = "policy-dev-backup_worker.json"
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    assert config_problems("dev", tmp_path) == [
        ".chalice/config.json: stages.dev.lambda_functions.api_handler.iam_policy_file is None, "
        "must be 'policy-dev-api_handler.json'",
        ".chalice/config.json: stages.dev.lambda_functions.verify_worker.iam_policy_file is "
        "'policy-dev-backup_worker.json', must be 'policy-dev-verify_worker.json'",
    ]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_nothing_forbidden_and_no_wildcard_actions(stage: str, function: str) -> None:
    policy = generate(stage_scope(stage, ROOT), function)
    actions = actions_of(policy)
    # Only the prune roles delete versions, and nothing else forbidden is ever granted.
    assert actions & FORBIDDEN_ACTIONS == ({PRUNE_ACTION} if function in DELETES_VERSIONS else set())
    assert all("*" not in action and "?" not in action for action in actions)
    assert {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"} <= actions
    account = (("s3:ResourceAccount", "123456789012"),)
    bucket = f"arn:aws:s3:::acme-backup-{stage}-documents"
    for forbidden in sorted(FORBIDDEN_ACTIONS - {PRUNE_ACTION}):
        assert not allows(policy, Permission(forbidden, f"{bucket}/data/x", account))
    prunable = [f"{bucket}/data/x", f"{bucket}/meta/snapshots/documents/1.jsonl.gz"]
    for resource in prunable:
        assert allows(policy, Permission(PRUNE_ACTION, resource, account)) == (function in DELETES_VERSIONS)
    # Never the catalog: records, sealed records, pruned markers, prune and restore records.
    for kept in ("meta/backups/x.json", "meta/sealed/backups/x.json", "meta/pruned/x/documents.json", "meta/prunes/x.json"):
        assert not allows(policy, Permission(PRUNE_ACTION, f"{bucket}/{kept}", account))
    # A bucket of the same name in another account is never pruned.
    other = (("s3:ResourceAccount", "999999999999"),)
    assert not allows(policy, Permission(PRUNE_ACTION, prunable[0], other))


def test_each_function_writes_only_its_own_log_group() -> None:
    scope = stage_scope("dev", ROOT)
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/"
    assert allows(generate(scope, API_HANDLER), Permission("logs:PutLogEvents", f"{group}org-backup-dev:log-stream:x"))
    assert not allows(generate(scope, API_HANDLER), Permission("logs:PutLogEvents", f"{group}org-backup-dev-backup_worker:log-stream:x"))
    worker = generate(scope, BACKUP_WORKER)
    assert allows(worker, Permission("logs:PutLogEvents", f"{group}org-backup-dev-backup_worker:log-stream:x"))
    assert not allows(worker, Permission("logs:PutLogEvents", f"{group}org-backup-dev-verify_worker:log-stream:x"))


def test_a_grant_table_can_not_sneak_in_a_forbidden_action() -> None:
    with pytest.raises(PolicyError, match="PutLifecycleConfiguration"):
        check_actions(["s3:GetObject", "s3:PutLifecycleConfiguration"])
    with pytest.raises(PolicyError, match="wildcards"):
        check_actions(["s3:Get*"])


def test_resources_are_scoped_to_the_stage() -> None:
    scope = stage_scope("prod", ROOT)
    policy = generate(scope, BACKUP_WORKER)
    backup = "arn:aws:s3:::acme-backup-prod-documents"
    source = "arn:aws:s3:::acme-documents"
    own = (("s3:ResourceAccount", "123456789012"),)
    assert allows(policy, Permission("s3:PutObject", f"{backup}/data/documents/a.txt", own))
    assert allows(policy, Permission("s3:PutObject", f"{backup}/meta/backups/x.json", own))
    # Another stage's buckets, the sources, and anything else: no writes.
    assert not allows(policy, Permission("s3:PutObject", "arn:aws:s3:::acme-backup-dev-documents/data/a.txt", own))
    assert not allows(policy, Permission("s3:PutObject", f"{source}/a.txt", own))
    assert not allows(policy, Permission("s3:DeleteObject", f"{source}/a.txt", own))
    assert allows(policy, Permission("s3:GetObject", f"{source}/a.txt", own))
    assert allows(policy, Permission("s3:GetObjectTagging", f"{source}/a.txt", own))
    # Snapshots and records are never deleted by any function.
    everything = union(roles(scope).values())
    assert not allows(everything, Permission("s3:DeleteObject", f"{backup}/meta/snapshots/documents/20261126T000000000Z-x.jsonl.gz", own))
    assert not allows(everything, Permission("s3:DeleteObject", f"{backup}/meta/backups/0001_x.json", own))
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/acme-orders"
    assert allows(policy, Permission("dynamodb:Scan", table))
    assert not allows(everything, Permission("dynamodb:PutItem", table))
    assert not allows(everything, Permission("dynamodb:Scan", "arn:aws:dynamodb:us-east-1:123456789012:table/acme-dev-orders"))
    topic = "arn:aws:sns:us-east-1:123456789012:org-backup-alerts-prod"
    assert allows(policy, Permission("sns:Publish", topic))
    assert not allows(everything, Permission("sns:Publish", topic.replace("prod", "dev")))
    worker = "arn:aws:lambda:us-east-1:123456789012:function:org-backup-prod-backup_worker"
    assert allows(policy, Permission("lambda:InvokeFunction", worker))
    assert not allows(everything, Permission("lambda:InvokeFunction", worker.replace("backup_worker", "other")))
    metric = Permission("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "OrgBackup/acme-backup-prod-documents"),))
    assert not allows(policy, metric)
    heartbeat = generate(scope, "heartbeat")
    assert allows(heartbeat, metric)
    assert not allows(heartbeat, Permission("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "Other"),)))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_local_stage_runs_workers_in_threads_so_invokes_nothing(function: str) -> None:
    assert not any(a.startswith("lambda:") for a in actions_of(generate(stage_scope("local", ROOT), function)))


def test_a_source_prefix_limits_listing_and_reading(stage_env: dict[str, str], tmp_path: Path) -> None:
    plans = json.loads((ROOT / "chalicelib" / "plans.json").read_text())
    plans["plans"][0]["sources"][0]["prefix"] = "shared/"
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(plans))
    settings = Settings.from_environ({**stage_env, "PLANS_FILE": str(path)})
    policy = generate(settings_scope("org-backup", "test", settings), BACKUP_WORKER)
    bucket = "arn:aws:s3:::test-src-documents"
    assert allows(policy, Permission("s3:ListBucket", bucket, (("s3:prefix", "shared/"),)))
    assert not allows(policy, Permission("s3:ListBucket", bucket, (("s3:prefix", "private/"),)))
    assert not allows(policy, Permission("s3:ListBucket", bucket))
    assert allows(policy, Permission("s3:GetObject", f"{bucket}/shared/a.txt"))
    assert not allows(policy, Permission("s3:GetObject", f"{bucket}/private/a.txt"))


def test_operations_map_to_the_actions_iam_checks() -> None:
    own = (("s3:ResourceAccount", "123456789012"),)
    copy = permission("s3", "CopyObject", Bucket="dst", Key="data/k", CopySource={"Bucket": "src", "Key": "k"})
    # The write carries its own condition keys too (for the create-only rule of the bucket policy).
    assert {p.context for p in copy} == {own, own + (("s3:ObjectCreationOperation", "true"),)}
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
    assert listing == Permission("s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "meta/"),) + own)
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
    policy = generate(settings_scope("org-backup", "test", Settings.from_environ(stage_env)), BACKUP_WORKER)
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
    assert problem.startswith("unattributed: FORBIDDEN s3:DeleteObjectVersion")


def test_each_recorded_call_is_checked_against_its_own_functions_policy(stage_env: dict[str, str]) -> None:
    policies = roles(settings_scope("org-backup", "test", Settings.from_environ(stage_env)))
    policies["unattributed"] = union(policies.values())
    params = {"Bucket": "test-backup-photos", "Key": "data/photos/a.png"}
    writes = [Call("s3", "PutObject", params, "us-east-1", "here", function) for function in FUNCTIONS]
    problems = violations(writes, policies)
    # Only the backup writer may write data/: every other function's write is reported, naming it.
    assert sorted(line.split(":", 1)[0] for line in problems) == sorted(set(FUNCTIONS) - {DAILY_BACKUP, BACKUP_WORKER})
    assert all("s3:PutObject on arn:aws:s3:::test-backup-photos/data/*" in line for line in problems)
    # The same write through the union (what the shared role allowed) would have passed.
    assert violations([Call("s3", "PutObject", params, "us-east-1", "here")], policies) == []


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
    assert {"CopyObject", "PutObject", "Scan", "Publish", "GetBucketVersioning", "DeleteObjects"} <= operations
    # POST /backup runs the backup inline here; deployed, the API hands it to the backup worker.
    by_function = {call.function for call in calls if call.operation in ("CopyObject", "Scan", "DeleteObjects")}
    assert by_function == {BACKUP_WORKER}
    assert {call.function for call in calls if "meta/locks/" in call.params.get("Key", "")} == {API_HANDLER}
    policies = roles(settings_scope("org-backup", "test", Settings.from_environ(stage_env)))
    assert violations(calls, policies) == []


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
    # ... and belongs to the backup worker, like the reader that started the pool.
    assert {call.function for call in calls} == {BACKUP_WORKER}
    policy = generate(settings_scope("org-backup", "test", Settings.from_environ(stage_env)), BACKUP_WORKER)
    assert violations(calls, policy) == []


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
    assert {call.function for call in calls} == {VERIFY_WORKER}
    assert violations(calls, generate(settings_scope("org-backup", "test", settings), VERIFY_WORKER)) == []


def test_the_verify_role_reads_and_writes_only_its_own_records() -> None:
    scope = stage_scope("dev", ROOT)
    policy = generate(scope, VERIFY_WORKER)
    own = (("s3:ResourceAccount", "123456789012"),)
    documents = "arn:aws:s3:::acme-backup-dev-documents"
    assert allows(policy, Permission("s3:GetObjectVersion", "arn:aws:s3:::acme-backup-dev-photos/data/photos/a.png", own))
    assert allows(policy, Permission("s3:GetObject", f"{documents}/meta/snapshots/documents/x.jsonl.gz", own))
    assert allows(policy, Permission("s3:PutObject", f"{documents}/meta/verifications/0001_verify-x.json", own))
    for key in ("data/documents/a.txt", "meta/snapshots/documents/x.jsonl.gz", "meta/backups/0001_x.json"):
        assert not allows(policy, Permission("s3:PutObject", f"{documents}/{key}", own))
    # Only the catalog bucket holds verification records.
    assert not allows(policy, Permission("s3:PutObject", "arn:aws:s3:::acme-backup-dev-photos/meta/verifications/x.json", own))
    assert not any(action.startswith(("s3:Delete", "dynamodb:")) for action in actions_of(policy))
    worker = "arn:aws:lambda:us-east-1:123456789012:function:org-backup-dev-verify_worker"
    assert allows(policy, Permission("lambda:InvokeFunction", worker))
    assert not allows(policy, Permission("lambda:InvokeFunction", worker.replace("verify_worker", "backup_worker")))
    # The backup functions start the weekly job, the API a backup's check (POST /backups/{id}/verify); the
    # restores and the prunes do not.
    starters = {f for f in FUNCTIONS if allows(generate(scope, f), Permission("lambda:InvokeFunction", worker))}
    assert starters == {DAILY_BACKUP, BACKUP_WORKER, VERIFY_WORKER, API_HANDLER}
    assert RESTORE_WORKER not in starters


def test_calls_made_by_tests_themselves_are_not_recorded(s3: Any, recorded_calls: Any) -> None:
    s3.create_bucket(Bucket="made-by-a-test")
    s3.put_bucket_versioning(Bucket="made-by-a-test", VersioningConfiguration={"Status": "Enabled"})
    assert recorded_calls.calls() == []


def test_inventory_reports_are_read_by_the_whole_bucket_passes_and_written_by_no_function() -> None:
    scope = stage_scope("dev", ROOT)
    own = (("s3:ResourceAccount", "123456789012"),)
    reports = "arn:aws:s3:::acme-backup-dev-inventory"
    manifest = f"{reports}/inventory/acme-backup-dev-photos/org-backup-versions/2031-03-02T04-00Z/manifest.json"
    listing = Permission("s3:ListBucket", reports, (("s3:prefix", "inventory/acme-backup-dev-photos/"), *own))
    readers = {f for f in FUNCTIONS if allows(generate(scope, f), Permission("s3:GetObject", manifest, own))}
    # The API computes the cost report for GET /costs, from the newest report as the daily backup does.
    assert readers == {API_HANDLER, VERIFY_WORKER, DAILY_BACKUP, BACKUP_WORKER, DAILY_PRUNE, PRUNE_WORKER}
    assert readers == {f for f in FUNCTIONS if allows(generate(scope, f), listing)}
    for function in FUNCTIONS:
        policy = generate(scope, function)
        # Listing and reading stop at the reports' prefix; nothing may write, delete or reconfigure them.
        assert not allows(policy, Permission("s3:ListBucket", reports, (("s3:prefix", ""), *own)))
        assert not allows(policy, Permission("s3:GetObject", f"{reports}/elsewhere/x", own))
        for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutBucketPolicy"):
            assert not allows(policy, Permission(action, manifest, own)), (function, action)
        assert not allows(policy, Permission("s3:PutInventoryConfiguration", "arn:aws:s3:::acme-backup-dev-photos", own))
    # Drift detection reads the configuration and the inventory bucket's policy; only the backup does.
    for function in (DAILY_BACKUP, BACKUP_WORKER):
        policy = generate(scope, function)
        assert allows(policy, Permission("s3:GetInventoryConfiguration", "arn:aws:s3:::acme-backup-dev-photos", own))
        assert allows(policy, Permission("s3:GetBucketPolicy", reports, own))
    with pytest.raises(PolicyError, match="s3:PutInventoryConfiguration must never be granted"):
        check_actions(["s3:PutInventoryConfiguration"])

"""The deployable template: `chalice package` with the generated merge template, checked from the packaged
SAM template itself (built once per test session) and linted with cfn-lint: the functions, each with its own
role, the buckets, the alarm, and the audit trail."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chalicelib.deploy import audit
from chalicelib.deploy.bucket_differences import denies_insecure_transport
from chalicelib.deploy.policy import FUNCTIONS, generate, policy_path, stage_scope
from chalicelib.deploy.inventory_bucket import REPORT_EXPIRATION_DAYS, configuration
from chalicelib.deploy.template import INVENTORY_BUCKET, RUNTIME, bucket_resource_name, merge_template
from chalicelib.notify import metrics
from chalicelib.stages import stage_environment, stage_plans
from tests.conftest import ROOT

STAGE = "dev"
# The documents plan's vault in the packaged copy with a vault (`packaged_at_a_fixed_time`).
VAULT = {"account": "210987654321", "region": "eu-central-1", "bucket": "${BACKUP_BUCKET_PREFIX}-documents-vault",
         "storage_class": "GLACIER_IR", "object_lock_days": 2576}
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed (make install)"
    return found


@contextmanager
def once_per_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder shared by every worker of this test run, and whether it still has to be filled: the first
    worker to get here fills it while the others wait (an exclusive lock), so that work as slow as
    `chalice package` is done once per run rather than once per worker. Without workers, a folder of its own."""
    if worker_id == "master":
        yield tmp_path_factory.mktemp(name), True
        return
    # Each worker's base folder is inside the run's own folder (pytest-N/popen-gwK): shared, and new each run.
    shared = tmp_path_factory.getbasetemp().parent / name
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / ".done"
        shared.mkdir(exist_ok=True)
        yield shared, not done.exists()
        done.touch()


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    with once_per_run(tmp_path_factory, worker_id, "package") as (out, to_build):
        if to_build:
            _package(out)
    return out / "build" / "sam.json"


def _package(out: Path) -> None:
    extra = out / "template-extra.json"
    extra.write_text(json.dumps(merge_template(STAGE, ROOT)))
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    result = subprocess.run(
        [_tool("chalice"), "--project-dir", str(ROOT), "package", "--stage", STAGE, "--merge-template", str(extra), str(out / "build")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def template(packaged: Path) -> dict[str, Any]:
    return json.loads(packaged.read_text())


def of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def schedules(template: dict[str, Any], function: str) -> list[str]:
    events = template["Resources"][function]["Properties"]["Events"]
    return [e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule"]


def test_the_daily_backup_and_prune_are_rate_1_day_by_default(template: dict[str, Any]) -> None:
    # The shipped plans file sets no time of day: the design's rate(1 day), for the prune too.
    assert schedules(template, "DailyBackup") == ["rate(1 day)"]
    assert schedules(template, "DailyPrune") == ["rate(1 day)"]
    assert schedules(template, "ResumeRestores") == ["rate(1 hour)"]


@pytest.fixture(scope="session")
def packaged_at_a_fixed_time(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`chalice package` of a copy of the project whose committed plans file sets `"daily_at_utc": "01:30"` and
    gives the documents plan a vault (VAULT)."""
    import app as app_module
    from chalicelib import plans_file as plans_module

    project = tmp_path_factory.mktemp("fixed-time") / "project"
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("venv", "deployments"))
    # Without requirements.txt: only the template matters here, and building the functions' dependencies
    # again is most of a package's time (the shipped package, with them, is `packaged` above).
    shutil.copy(ROOT / "app.py", project / "app.py")
    plans_file = project / "chalicelib" / "plans.json"
    shipped = json.loads(plans_file.read_text())
    plans = [{**plan, "offsite": VAULT} if plan["name"] == "documents" else plan for plan in shipped["plans"]]
    plans_file.write_text(json.dumps({**shipped, "plans": plans, "schedule": {"daily_at_utc": "01:30"}}))
    with pytest.MonkeyPatch.context() as patch:
        # The merge template reads the copy's plans file, as `make package` run there would (the functions'
        # names come from this tree's app: the copy's are the same).
        patch.setattr(plans_module, "DEFAULT_PLANS_FILE", plans_file)
        extra = merge_template(STAGE, project, app_module)
    out = project.parent / "template-extra.json"
    out.write_text(json.dumps(extra))
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    result = subprocess.run(
        [_tool("chalice"), "--project-dir", str(project), "package", "--stage", STAGE, "--merge-template", str(out),
         str(project.parent / "build")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lint = subprocess.run([_tool("cfn-lint"), str(project.parent / "build" / "sam.json")], capture_output=True, text=True, timeout=240)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plans_module, "DEFAULT_PLANS_FILE", plans_file)
        (documents,) = [plan for plan in stage_plans(STAGE, project).plans if plan.name == "documents"]
    return {**json.loads((project.parent / "build" / "sam.json").read_text()), "documents plan": documents}


def test_a_plan_with_a_vault_packages_the_replication_make_provision_sets(packaged_at_a_fixed_time: dict[str, Any]) -> None:
    """The source side is in the template (linted with the rest above): the bucket's replication rules and the
    role S3 assumes are those `make provision` writes, from the same definitions."""
    from chalicelib.deploy.offsite import ROLE_POLICY_NAME, replication_configuration, replication_role_name, role_policy, rules_as_compared, trust_policy

    template, plan = packaged_at_a_fixed_time, packaged_at_a_fixed_time["documents plan"]
    resources = template["Resources"]
    bucket = resources[bucket_resource_name(plan)]["Properties"]["ReplicationConfiguration"]
    role_name = f"{bucket_resource_name(plan)}ReplicationRole"
    assert bucket["Role"] == {"Fn::GetAtt": [role_name, "Arn"]}
    packaged_rules = [{"ID": rule["Id"], **{k: v for k, v in rule.items() if k != "Id"}} for rule in bucket["Rules"]]
    assert rules_as_compared({"Rules": packaged_rules}) == rules_as_compared(replication_configuration(plan, "123456789012"))
    assert {rule["Destination"]["StorageClass"] for rule in bucket["Rules"]} == {"GLACIER_IR", "STANDARD"}
    role = resources[role_name]
    assert role["Type"] == "AWS::IAM::Role" and role["DeletionPolicy"] == "Retain"
    assert role["Properties"]["RoleName"] == replication_role_name(plan)
    assert role["Properties"]["Policies"] == [{"PolicyName": ROLE_POLICY_NAME, "PolicyDocument": role_policy(plan)}]
    trust = json.loads(json.dumps(role["Properties"]["AssumeRolePolicyDocument"]).replace('{"Ref": "AWS::AccountId"}', '"123456789012"'))
    assert trust == trust_policy(plan, "123456789012")
    # The plans without a vault replicate nothing, and no more roles are made than vaults.
    assert all("ReplicationConfiguration" not in r["Properties"] for n, r in of_type(template, "AWS::S3::Bucket").items()
               if n != bucket_resource_name(plan))
    assert [n for n in of_type(template, "AWS::IAM::Role") if n.endswith("ReplicationRole")] == [role_name]
    # The restore functions' roles have the names the vault's policy lets read (offsite.restore_reader_arns).
    deployed = resources["APIHandler"]["Properties"]["FunctionName"]
    assert {resources[name]["Properties"].get("RoleName") for name in ("ApiHandlerRole", "RestoreWorkerRole", "ResumeRestoresRole")} == {
        f"{deployed}-api_handler", f"{deployed}-restore_worker", f"{deployed}-resume_restores"}


def test_a_time_of_day_in_the_committed_plans_file_packages_the_cron_expressions(
    packaged_at_a_fixed_time: dict[str, Any],
) -> None:
    template = packaged_at_a_fixed_time
    assert schedules(template, "DailyBackup") == ["cron(30 1 * * ? *)"]
    # The prune three hours after the backup.
    assert schedules(template, "DailyPrune") == ["cron(30 4 * * ? *)"]
    (alarm,) = of_type(template, "AWS::CloudWatch::Alarm").values()
    assert "(cron(30 1 * * ? *))" in alarm["Properties"]["AlarmDescription"]


def test_every_function_runs_python_312_under_its_deployed_name(template: dict[str, Any]) -> None:
    functions = of_type(template, "AWS::Serverless::Function")
    assert {"APIHandler", "DailyBackup", "BackupWorker"} <= set(functions)
    assert {f["Properties"]["Runtime"] for f in functions.values()} == {RUNTIME}
    worker = functions["BackupWorker"]["Properties"]
    assert worker["FunctionName"] == stage_environment(STAGE, ROOT)["WORKER_FUNCTION_NAME"]


def test_the_verify_worker_is_packaged_with_its_own_settings(template: dict[str, Any]) -> None:
    from chalicelib.backup.verification import verify_worker_name

    worker = of_type(template, "AWS::Serverless::Function")["VerifyWorker"]["Properties"]
    assert worker["FunctionName"] == verify_worker_name(stage_environment(STAGE, ROOT)["WORKER_FUNCTION_NAME"])
    assert worker["FunctionName"] == "org-backup-dev-verify_worker"
    assert (worker["Runtime"], worker["Timeout"], worker["MemorySize"]) == (RUNTIME, 900, 1024)
    assert worker["Handler"] == "app.verify_worker"


def named_buckets(template: dict[str, Any]) -> dict[str, Any]:
    """The buckets the stage names (backup and restore buckets), by name; the audit log bucket's name is
    CloudFormation's, and the inventory bucket's tests are its own."""
    return {
        r["Properties"]["BucketName"]: r
        for name, r in of_type(template, "AWS::S3::Bucket").items()
        if name not in (audit.TRAIL_BUCKET, INVENTORY_BUCKET)
    }


def test_each_bucket_carries_its_plan(template: dict[str, Any]) -> None:
    plans = stage_plans(STAGE, ROOT)
    backup_buckets = set(named_buckets(template))
    assert {plan.bucket for plan in plans.plans} <= backup_buckets
    for plan in plans.plans:
        bucket = template["Resources"][bucket_resource_name(plan)]
        assert bucket["DeletionPolicy"] == "Retain"
        props = bucket["Properties"]
        assert props["BucketName"] == plan.bucket
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        rule, manifests = props["LifecycleConfiguration"]["Rules"]
        # The kept manifests over 128 KB move to GLACIER_IR after the plan's days (CloudFormation's spelling).
        assert manifests == {
            "Id": f"{plan.name}-manifest-tiering",
            "Status": "Enabled",
            "Prefix": f"meta/snapshots/{plan.name}/",
            "ObjectSizeGreaterThan": "131072",
            "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": plan.lifecycle.manifest_glacier_ir_days}],
        }
        # What objects under 128 KB do is stated, from the plan's small_objects, never left to S3's default.
        setting = props["LifecycleConfiguration"]["TransitionDefaultMinimumObjectSize"]
        assert setting == plan.lifecycle.transition_default_minimum_object_size
        assert rule["Prefix"] == "data/" and rule["Status"] == "Enabled"
        wanted = [(t.storage_class, t.days) for t in plan.lifecycle.transitions]
        assert [(t["StorageClass"], t["TransitionInDays"]) for t in rule["Transitions"]] == wanted
        assert [(t["StorageClass"], t["TransitionInDays"]) for t in rule["NoncurrentVersionTransitions"]] == wanted
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
        (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == ("aws:kms" if plan.kms_key_id else "AES256")
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
        assert len(props["PublicAccessBlockConfiguration"]) == 4
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        policy = template["Resources"][f"{bucket_resource_name(plan)}Policy"]["Properties"]
        assert policy["Bucket"] == {"Ref": bucket_resource_name(plan)}
        assert denies_insecure_transport(policy["PolicyDocument"], plan.bucket)
    documents = template["Resources"]["BackupBucketDocuments"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert [t["TransitionInDays"] for t in documents["Transitions"]] == [30, 180]


def test_the_inventory_bucket_and_every_backup_buckets_configuration_are_as_provisioned(template: dict[str, Any]) -> None:
    plans = stage_plans(STAGE, ROOT)
    assert plans.inventory is not None
    bucket = template["Resources"][INVENTORY_BUCKET]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain" and props["BucketName"] == plans.inventory.bucket
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True} and len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert (rule["Prefix"], rule["ExpirationInDays"], rule["Status"]) == ("inventory/", REPORT_EXPIRATION_DAYS, "Enabled")
    policy = template["Resources"][f"{INVENTORY_BUCKET}Policy"]["Properties"]
    assert policy["Bucket"] == {"Ref": INVENTORY_BUCKET}
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert denies_insecure_transport(policy["PolicyDocument"], plans.inventory.bucket)
    allow, deny = statements["InventoryReportsFromS3"], statements["InventoryReportsOnlyFromS3"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"] == sorted(f"arn:aws:s3:::{p.bucket}" for p in plans.plans)
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:PrincipalIsAWSService": "false"}}
    wanted = configuration(plans.inventory, "123456789012")
    for plan in plans.plans:
        (inventory,) = template["Resources"][bucket_resource_name(plan)]["Properties"]["InventoryConfigurations"]
        assert inventory["Id"] == wanted["Id"] and inventory["Enabled"] is True
        assert inventory["IncludedObjectVersions"] == "All" and inventory["ScheduleFrequency"] == plans.inventory.frequency
        assert inventory["OptionalFields"] == wanted["OptionalFields"]
        assert inventory["Destination"] == {
            "BucketArn": f"arn:aws:s3:::{plans.inventory.bucket}",
            "BucketAccountId": {"Ref": "AWS::AccountId"},
            "Format": "CSV",
            "Prefix": plans.inventory.prefix,
        }


def test_the_restore_buckets_exist_private_encrypted_and_versioned(template: dict[str, Any]) -> None:
    wanted = {b for b in stage_environment(STAGE, ROOT)["RESTORE_BUCKETS"].split(",") if b}
    plans = stage_plans(STAGE, ROOT)
    restore = {name: r for name, r in named_buckets(template).items() if name not in {plan.bucket for plan in plans.plans}}
    assert set(restore) == wanted
    for resource in restore.values():
        assert resource["DeletionPolicy"] == "Retain"
        assert set(resource["Properties"]["PublicAccessBlockConfiguration"].values()) == {True}
        assert resource["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        # A restore that overwrites a key (or whoever holds the restore role) leaves what was there.
        assert resource["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_the_alarm_fires_after_26_silent_hours(template: dict[str, Any]) -> None:
    (alarm,) = of_type(template, "AWS::CloudWatch::Alarm").values()
    props = alarm["Properties"]
    catalog = stage_plans(STAGE, ROOT).catalog_bucket
    # The stage's own namespace, which only its backup functions may publish to (tests/test_roles.py).
    assert (props["Namespace"], props["MetricName"]) == (f"OrgBackup/{catalog}", metrics.METRIC)
    assert props["Namespace"] == metrics.namespace(catalog) != metrics.NAMESPACE_PREFIX
    assert props["Dimensions"] == [{"Name": metrics.DIMENSION, "Value": catalog}]
    assert props["Period"] * props["EvaluationPeriods"] == 26 * 3600
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    assert (props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == ("Sum", "LessThanThreshold", 1)
    assert props["TreatMissingData"] == "breaching"
    assert props["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert "the daily schedule (rate(1 day)) stopped" in props["AlarmDescription"]
    topic = template["Resources"]["AlertTopic"]["Properties"]["TopicName"]
    assert stage_environment(STAGE, ROOT)["ALERT_TOPIC_ARN"].endswith(f":{topic}")


def test_each_function_has_a_role_of_its_own_with_its_generated_policy(template: dict[str, Any]) -> None:
    from chalice.utils import to_cfn_resource_name

    scope = stage_scope(STAGE, ROOT)
    functions = of_type(template, "AWS::Serverless::Function")
    roles = of_type(template, "AWS::IAM::Role")
    documents = []
    for function in FUNCTIONS:
        generated = generate(scope, function)
        assert json.loads(policy_path(STAGE, function, ROOT).read_text()) == generated
        resource = "APIHandler" if function == "api_handler" else to_cfn_resource_name(function)
        role_name = functions[resource]["Properties"]["Role"]["Fn::GetAtt"][0]
        (policy,) = roles[role_name]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == generated, function
        documents.append(json.dumps(generated, sort_keys=True))
    # A role per function, each policy different (if only by the log group it may write).
    assert len({functions[r]["Properties"]["Role"]["Fn::GetAtt"][0] for r in functions}) == len(FUNCTIONS)
    assert len(set(documents)) == len(FUNCTIONS)


def test_the_audit_trail_records_every_write_under_meta(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    (trail,) = of_type(template, "AWS::CloudTrail::Trail").values()
    props = trail["Properties"]
    assert props["IsLogging"] is True and props["EnableLogFileValidation"] is True
    assert props["S3BucketName"] == {"Ref": audit.TRAIL_BUCKET}
    assert trail["DependsOn"] == [f"{audit.TRAIL_BUCKET}Policy"]
    (selector,) = props["AdvancedEventSelectors"]
    fields = {f["Field"]: f for f in selector["FieldSelectors"]}
    assert fields["eventCategory"]["Equals"] == ["Data"]
    assert fields["resources.type"]["Equals"] == ["AWS::S3::Object"]
    # Writes and deletes (every event that is not read-only), under each backup bucket's meta/ only.
    assert fields["readOnly"]["Equals"] == ["false"]
    plans = stage_plans(STAGE, ROOT)
    assert sorted(fields["resources.ARN"]["StartsWith"]) == sorted(f"arn:aws:s3:::{p.bucket}/meta/" for p in plans.plans)
    log_bucket = resources[audit.TRAIL_BUCKET]
    assert (log_bucket["DeletionPolicy"], log_bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert log_bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(log_bucket["Properties"]["PublicAccessBlockConfiguration"].values()) == {True}
    statements = {s["Sid"]: s for s in resources[f"{audit.TRAIL_BUCKET}Policy"]["Properties"]["PolicyDocument"]["Statement"]}
    trail_arn = {"Fn::Sub": f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/{props['TrailName']}"}
    for sid, action in (("CloudTrailAclCheck", "s3:GetBucketAcl"), ("CloudTrailWrite", "s3:PutObject")):
        assert statements[sid]["Principal"] == {"Service": "cloudtrail.amazonaws.com"} and statements[sid]["Action"] == action
        # Only this trail may write there (no confused deputy).
        assert statements[sid]["Condition"]["StringEquals"]["aws:SourceArn"] == trail_arn
    assert statements["CloudTrailWrite"]["Condition"]["StringEquals"]["s3:x-amz-acl"] == "bucket-owner-full-control"
    assert statements["DenyInsecureTransport"]["Effect"] == "Deny"
    assert template["Outputs"]["AuditLogBucketName"]["Value"] == {"Ref": audit.TRAIL_BUCKET}


def test_the_api_logs_every_request_and_is_throttled(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    api = resources["RestAPI"]
    assert "ApiGatewayAccount" in api["DependsOn"]
    access = api["Properties"]["AccessLogSetting"]
    assert "${ApiAccessLogs}" in access["DestinationArn"]["Fn::Sub"]
    fields = json.loads(access["Format"])
    assert {"requestId", "ip", "userArn", "httpMethod", "resourcePath", "status"} <= set(fields)
    assert resources["ApiAccessLogs"]["Properties"]["RetentionInDays"] == audit.LOG_RETENTION_DAYS
    (throttling,) = api["Properties"]["MethodSettings"]
    assert (throttling["ResourcePath"], throttling["HttpMethod"]) == ("/*", "*")
    assert 0 < throttling["ThrottlingRateLimit"] <= throttling["ThrottlingBurstLimit"] <= 100
    account = resources["ApiGatewayAccount"]
    assert account["Type"] == "AWS::ApiGateway::Account"
    role = resources[account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}


def test_every_function_log_group_has_a_retention_period(template: dict[str, Any]) -> None:
    groups = {
        r["Properties"]["LogGroupName"]: r for r in of_type(template, "AWS::Logs::LogGroup").values()
    }
    functions = of_type(template, "AWS::Serverless::Function")
    assert len(functions) == len(FUNCTIONS)
    for name, function in functions.items():
        group = groups[f"/aws/lambda/{function['Properties']['FunctionName']}"]
        assert group["Properties"]["RetentionInDays"] == audit.LOG_RETENTION_DAYS
        assert function["DependsOn"] == [f"{name}LogGroup"]


def test_cfn_lint_passes(packaged: Path) -> None:
    result = subprocess.run([_tool("cfn-lint"), str(packaged)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_locked_kms_plan_becomes_a_locked_kms_bucket() -> None:
    from chalicelib.deploy.template import bucket_resources
    from chalicelib.plans_file import parse_plans

    (plan,) = parse_plans(
        {
            "version": 1,
            "plans": [
                {
                    "name": "ledger",
                    "bucket": "acme-ledger-backup",
                    "sources": [{"type": "dynamodb", "name": "ledger", "table": "ledger"}],
                    "lifecycle": {"transitions": [{"days": 7, "storage_class": "GLACIER"}], "noncurrent_expiration_days": 400},
                    "object_lock": {"mode": "COMPLIANCE", "days": 365},
                    "kms_key_id": "alias/backups",
                }
            ],
        },
        {},
    ).plans
    props = bucket_resources(plan)["BackupBucketLedger"]["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}},
    }
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/backups"},
        "BucketKeyEnabled": True,
    }
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 400}

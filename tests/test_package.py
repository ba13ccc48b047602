"""The deployable template: `chalice package` with the generated merge template, checked from the packaged
SAM template itself (built once per test session) and linted with cfn-lint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.notify import metrics
from chalicelib.deploy.bucket_settings import denies_insecure_transport
from chalicelib.deploy.policy import generate, stage_scope
from chalicelib.deploy.template import RUNTIME, bucket_resource_name, merge_template
from chalicelib.stages import stage_environment, stage_plans
from tests.conftest import ROOT

STAGE = "dev"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed (make install)"
    return found


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package")
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
    return out / "build" / "sam.json"


@pytest.fixture(scope="session")
def template(packaged: Path) -> dict[str, Any]:
    return json.loads(packaged.read_text())


def of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_the_schedule_is_daily(template: dict[str, Any]) -> None:
    events = template["Resources"]["DailyBackup"]["Properties"]["Events"]
    assert [e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule"] == ["rate(1 day)"]


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


def test_each_bucket_carries_its_plan(template: dict[str, Any]) -> None:
    plans = stage_plans(STAGE, ROOT)
    backup_buckets = {r["Properties"]["BucketName"] for r in of_type(template, "AWS::S3::Bucket").values()}
    assert {plan.bucket for plan in plans.plans} <= backup_buckets
    for plan in plans.plans:
        bucket = template["Resources"][bucket_resource_name(plan)]
        assert bucket["DeletionPolicy"] == "Retain"
        props = bucket["Properties"]
        assert props["BucketName"] == plan.bucket
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        (rule,) = props["LifecycleConfiguration"]["Rules"]
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


def test_the_restore_buckets_exist_private_and_encrypted(template: dict[str, Any]) -> None:
    wanted = {b for b in stage_environment(STAGE, ROOT)["RESTORE_BUCKETS"].split(",") if b}
    plans = stage_plans(STAGE, ROOT)
    restore = {
        r["Properties"]["BucketName"]: r
        for r in of_type(template, "AWS::S3::Bucket").values()
        if r["Properties"]["BucketName"] not in {plan.bucket for plan in plans.plans}
    }
    assert set(restore) == wanted
    for resource in restore.values():
        assert resource["DeletionPolicy"] == "Retain"
        assert set(resource["Properties"]["PublicAccessBlockConfiguration"].values()) == {True}
        assert resource["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_the_alarm_fires_after_26_silent_hours(template: dict[str, Any]) -> None:
    (alarm,) = of_type(template, "AWS::CloudWatch::Alarm").values()
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (metrics.NAMESPACE, metrics.METRIC)
    assert props["Dimensions"] == [{"Name": metrics.DIMENSION, "Value": stage_plans(STAGE, ROOT).catalog_bucket}]
    assert props["Period"] * props["EvaluationPeriods"] == 26 * 3600
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    assert (props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == ("Sum", "LessThanThreshold", 1)
    assert props["TreatMissingData"] == "breaching"
    assert props["AlarmActions"] == [{"Ref": "AlertTopic"}]
    topic = template["Resources"]["AlertTopic"]["Properties"]["TopicName"]
    assert stage_environment(STAGE, ROOT)["ALERT_TOPIC_ARN"].endswith(f":{topic}")


def test_the_roles_have_the_generated_policy(template: dict[str, Any]) -> None:
    generated = generate(stage_scope(STAGE, ROOT))
    committed = json.loads((ROOT / ".chalice" / f"policy-{STAGE}.json").read_text())
    assert committed == generated
    roles = of_type(template, "AWS::IAM::Role")
    assert roles
    for name, role in roles.items():
        (policy,) = role["Properties"]["Policies"]
        assert policy["PolicyDocument"] == generated, name


def test_cfn_lint_passes(packaged: Path) -> None:
    result = subprocess.run([_tool("cfn-lint"), str(packaged)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_locked_kms_plan_becomes_a_locked_kms_bucket() -> None:
    from chalicelib.deploy.template import bucket_resources
    from chalicelib.plans import parse_plans

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

"""The CloudFormation additions merged into `chalice package` output (`--merge-template`), per stage:

- the plans' backup buckets with every protective setting of `bucket_settings.py` (versioning, lifecycle rules
  scoped to data/, default encryption, all four Block Public Access settings, ACLs disabled, the TLS-only
  bucket policy, Object Lock default retention where a plan asks for it), kept when the stack is deleted;
- the buckets restores may write into (RESTORE_BUCKETS), private, encrypted and versioned;
- for a plan with a vault (`offsite`), the source side of its replication as `make provision` sets it
  (`offsite.py`): the role S3 assumes, with its trust and permissions, and the backup bucket's replication
  configuration (the vault itself is the vault account's, provisioned with its credentials);
- where the plans name an S3 Inventory: its bucket as provisioning makes it (`inventory_bucket.py`: private,
  SSE-S3, reports expiring, written by S3 alone) and each backup bucket's inventory configuration;
- the alert topic named by the stage's ALERT_TOPIC_ARN;
- an alarm on the backups' heartbeat metric (in the stage's own namespace, published by the `heartbeat`
  function from the sealed records) that fires when some plan has had no successful backup for 26 hours,
  missing data counting as breaching;
- every function on python3.12 and named as `chalice deploy` names it (the worker is invoked by name);
- the audit trail (`audit.py`): CloudTrail data events for writes under the backup buckets' meta/, the API's
  access logs and throttling, and a retention period on every function's log group.

    python -m chalicelib.deploy.template --stage dev --output build/template-extra-dev.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from chalicelib.deploy import audit
from chalicelib.deploy import bucket_settings as buckets
from chalicelib.deploy import inventory_bucket, offsite
from chalicelib.notify import metrics
from chalicelib.plans import InventoryPlan, Plan, PlanSet
from chalicelib.schedule import INTERVAL
from chalicelib.stages import PROJECT_DIR, app_name, stage_environment, stage_plans

RUNTIME = "python3.12"
# /tmp (MB) of the functions that need more than Lambda's 512 MB default: the weekly verification and the
# prune (with an inventory) each hold the kept index they read and the one they write at once (about 7 GB at
# ten million objects a plan with a year of history; chalicelib/cost/upkeep_model.py `spool_bytes`). Billed
# per GB-second above 512 MB.
EPHEMERAL_STORAGE_MB = {"verify_worker": 10_240, "prune_worker": 10_240}
# A day between two deliveries of the daily schedule (a rate and a fixed time alike), plus two hours of slack
# for the backup to finish: one missed or failed run is an alarm. Hourly periods: no time of day is assumed.
SILENCE_HOURS = (INTERVAL + timedelta(hours=2)) // timedelta(hours=1)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)


def bucket_resource_name(plan: Plan) -> str:
    return f"BackupBucket{_camel(plan.name)}"


def _lifecycle_rules(plan: Plan) -> list[dict[str, Any]]:
    """`buckets.lifecycle_rules` in CloudFormation's spelling."""
    rules = []
    for rule in buckets.lifecycle_rules(plan):
        both = rule["Filter"].get("And", rule["Filter"])
        out: dict[str, Any] = {"Id": rule["ID"], "Status": rule["Status"], "Prefix": both["Prefix"]}
        if "ObjectSizeGreaterThan" in both:
            # CloudFormation takes the size as a string of digits.
            out["ObjectSizeGreaterThan"] = str(both["ObjectSizeGreaterThan"])
        if "Transitions" in rule:
            out["Transitions"] = [{"StorageClass": t["StorageClass"], "TransitionInDays": t["Days"]} for t in rule["Transitions"]]
        if "NoncurrentVersionTransitions" in rule:
            out["NoncurrentVersionTransitions"] = [
                {"StorageClass": t["StorageClass"], "TransitionInDays": t["NoncurrentDays"]}
                for t in rule["NoncurrentVersionTransitions"]
            ]
        if "NoncurrentVersionExpiration" in rule:
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]}
        if "AbortIncompleteMultipartUpload" in rule:
            out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
        rules.append(out)
    return rules


def _encryption(plan: Plan) -> dict[str, Any]:
    default = buckets.encryption_default(plan)
    rule: dict[str, Any] = {"ServerSideEncryptionByDefault": dict(default["ApplyServerSideEncryptionByDefault"])}
    if plan.kms_key_id:
        rule["BucketKeyEnabled"] = True
    return {"ServerSideEncryptionConfiguration": [rule]}


INVENTORY_BUCKET = "InventoryBucket"
# Stands in for the stack's account while a document is built by the functions that check account ids, then
# becomes `{"Ref": "AWS::AccountId"}` (`_stack_account`).
_ACCOUNT = "000000000000"


def _stack_account(document: Any) -> Any:
    if document == _ACCOUNT:
        return {"Ref": "AWS::AccountId"}
    if isinstance(document, dict):
        return {key: _stack_account(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_stack_account(value) for value in document]
    return document


def _inventory_configuration(inventory: InventoryPlan) -> dict[str, Any]:
    """`inventory_bucket.configuration` in CloudFormation's spelling. CloudFormation cannot state the reports'
    encryption: they get the inventory bucket's default, SSE-S3, which drift detection counts as the same."""
    wanted = inventory_bucket.configuration(inventory, _ACCOUNT)
    target = wanted["Destination"]["S3BucketDestination"]
    return _stack_account(
        {
            "Id": wanted["Id"],
            "Enabled": wanted["IsEnabled"],
            "IncludedObjectVersions": wanted["IncludedObjectVersions"],
            "OptionalFields": wanted["OptionalFields"],
            "ScheduleFrequency": wanted["Schedule"]["Frequency"],
            "Destination": {
                "BucketArn": target["Bucket"],
                "BucketAccountId": target["AccountId"],
                "Format": target["Format"],
                "Prefix": target["Prefix"],
            },
        }
    )


def inventory_resources(plans: PlanSet) -> dict[str, Any]:
    """The inventory bucket and its policy (nothing without an inventory in the plans)."""
    if plans.inventory is None:
        return {}
    (rule,) = inventory_bucket.lifecycle_rules(plans.inventory)
    return {
        INVENTORY_BUCKET: {
            "Type": "AWS::S3::Bucket",
            # A day's reports are written again the next day; but a stack deletion never empties a bucket.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": plans.inventory.bucket,
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
                "PublicAccessBlockConfiguration": dict(buckets.PUBLIC_ACCESS_BLOCK),
                "OwnershipControls": {"Rules": [{"ObjectOwnership": buckets.OBJECT_OWNERSHIP}]},
                "LifecycleConfiguration": {
                    "Rules": [
                        {
                            "Id": rule["ID"],
                            "Status": rule["Status"],
                            "Prefix": rule["Filter"]["Prefix"],
                            "ExpirationInDays": rule["Expiration"]["Days"],
                            "AbortIncompleteMultipartUpload": rule["AbortIncompleteMultipartUpload"],
                        }
                    ]
                },
            },
        },
        f"{INVENTORY_BUCKET}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": INVENTORY_BUCKET},
                "PolicyDocument": _stack_account(inventory_bucket.bucket_policy(plans, _ACCOUNT)),
            },
        },
    }


def replication_resources(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bucket's `ReplicationConfiguration` and the role it names, in CloudFormation's spelling, from the
    definitions `make provision` uses (`offsite.replication_configuration`, `role_policy`, `trust_policy`).
    The role keeps its provisioned name: the vault's policy lets in that role's ARN alone."""
    role = f"{bucket_resource_name(plan)}ReplicationRole"
    wanted = offsite.replication_configuration(plan, _ACCOUNT)
    rules = [{"Id": rule["ID"], **{key: value for key, value in rule.items() if key != "ID"}} for rule in wanted["Rules"]]
    resource = {
        "Type": "AWS::IAM::Role",
        # Deleting the stack keeps the backup buckets: it must not quietly stop their replication either.
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "RoleName": offsite.replication_role_name(plan),
            "Description": offsite.role_description(plan),
            "AssumeRolePolicyDocument": _stack_account(offsite.trust_policy(plan, _ACCOUNT)),
            "Policies": [{"PolicyName": offsite.ROLE_POLICY_NAME, "PolicyDocument": offsite.role_policy(plan)}],
        },
    }
    return {"Role": {"Fn::GetAtt": [role, "Arn"]}, "Rules": rules}, {role: resource}


def bucket_resources(plan: Plan, inventory: InventoryPlan | None = None) -> dict[str, Any]:
    name = bucket_resource_name(plan)
    extra: dict[str, Any] = {}
    properties: dict[str, Any] = {
        "BucketName": plan.bucket,
        "VersioningConfiguration": {"Status": "Enabled"},
        "LifecycleConfiguration": {
            "Rules": _lifecycle_rules(plan),
            # Stated, never left to S3's default: the plan's small_objects choice.
            "TransitionDefaultMinimumObjectSize": plan.lifecycle.transition_default_minimum_object_size,
        },
        "BucketEncryption": _encryption(plan),
        "PublicAccessBlockConfiguration": dict(buckets.PUBLIC_ACCESS_BLOCK),
        "OwnershipControls": {"Rules": [{"ObjectOwnership": buckets.OBJECT_OWNERSHIP}]},
    }
    if inventory is not None:
        properties["InventoryConfigurations"] = [_inventory_configuration(inventory)]
    lock = buckets.object_lock_rule(plan)
    if lock is not None:
        properties["ObjectLockEnabled"] = True
        properties["ObjectLockConfiguration"] = {"ObjectLockEnabled": "Enabled", "Rule": lock}
    if plan.offsite is not None:
        properties["ReplicationConfiguration"], extra = replication_resources(plan)
    return {
        **extra,
        name: {
            "Type": "AWS::S3::Bucket",
            # Backups outlive the stack: deleting or replacing it must never delete a bucket.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": properties,
        },
        f"{name}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {"Bucket": {"Ref": name}, "PolicyDocument": buckets.bucket_policy(plan.bucket)},
        },
    }


def restore_bucket_resources(bucket: str, index: int) -> dict[str, Any]:
    """A bucket restores may write into: private, encrypted, owner-enforced, TLS only, kept on stack deletion,
    and versioned, so that a restore (or whoever holds the restore role) that overwrites a key leaves what was
    there recoverable."""
    name = f"RestoreBucket{index + 1}"
    return {
        name: {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": bucket,
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
                "PublicAccessBlockConfiguration": dict(buckets.PUBLIC_ACCESS_BLOCK),
                "OwnershipControls": {"Rules": [{"ObjectOwnership": buckets.OBJECT_OWNERSHIP}]},
            },
        },
        f"{name}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {"Bucket": {"Ref": name}, "PolicyDocument": buckets.bucket_policy(bucket, create_only=False)},
        },
    }


def function_names(app_module: Any, app: str, stage: str) -> dict[str, str]:
    """CloudFormation resource name -> function name, as `chalice deploy` names the functions."""
    from chalice.utils import to_cfn_resource_name

    chalice_app = app_module.app
    names: dict[str, str] = {}
    if chalice_app.routes:
        names["APIHandler"] = f"{app}-{stage}"
    for function in chalice_app.pure_lambda_functions:
        names[to_cfn_resource_name(function.name)] = f"{app}-{stage}-{function.name}"
    for source in chalice_app.event_sources:
        names[to_cfn_resource_name(source.name)] = f"{app}-{stage}-{source.name}"
    return names


def restore_role_names(app: str, stage: str) -> dict[str, Any]:
    """The restore functions' roles named as `chalice deploy` names them (CloudFormation would make up a name):
    each vault's policy lets these names read there (offsite.restore_reader_arns)."""
    from chalice.utils import to_cfn_resource_name

    return {
        to_cfn_resource_name(f"{function}_role"): {"Properties": {"RoleName": offsite.restore_role_name(app, stage, function)}}
        for function in offsite.RESTORE_READERS
    }


def _load_app(project_dir: Path) -> Any:
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    return importlib.import_module("app")


def merge_template(stage: str, project_dir: str | Path = PROJECT_DIR, app_module: Any = None) -> dict[str, Any]:
    directory = Path(project_dir)
    app = app_name(directory)
    environ = stage_environment(stage, directory)
    plans = stage_plans(stage, directory)
    resources: dict[str, Any] = {}
    for plan in plans.plans:
        resources.update(bucket_resources(plan, plans.inventory))
    outputs: dict[str, Any] = {
        f"{bucket_resource_name(plan)}Name": {"Value": {"Ref": bucket_resource_name(plan)}} for plan in plans.plans
    }
    resources.update(inventory_resources(plans))
    if plans.inventory is not None:
        outputs[f"{INVENTORY_BUCKET}Name"] = {"Value": {"Ref": INVENTORY_BUCKET}}
    restore_buckets = sorted({b.strip() for b in environ.get("RESTORE_BUCKETS", "").split(",") if b.strip()})
    for index, bucket in enumerate(restore_buckets):
        resources.update(restore_bucket_resources(bucket, index))
    topic_arn = environ.get("ALERT_TOPIC_ARN")
    alarm_actions: list[Any] = []
    if topic_arn:
        resources["AlertTopic"] = {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": topic_arn.rsplit(":", 1)[1], "DisplayName": f"{app} {stage} backups"},
        }
        alarm_actions = [{"Ref": "AlertTopic"}]
        outputs["AlertTopicArn"] = {"Value": {"Ref": "AlertTopic"}}
    resources["NoSuccessfulBackupAlarm"] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"{app}-{stage}-no-successful-backup",
            "AlarmDescription": (
                f"A plan has had no successful backup for {SILENCE_HOURS} hours: the daily schedule "
                f"({plans.schedule.backup_expression()}) stopped, "
                "the function cannot start, backups keep failing, or the heartbeat function stopped. "
                "See GET /backups and the function logs."
            ),
            "Namespace": metrics.namespace(plans.catalog_bucket),
            "MetricName": metrics.METRIC,
            "Dimensions": [{"Name": metrics.DIMENSION, "Value": plans.catalog_bucket}],
            "Statistic": "Sum",
            # Hourly periods, all 26 empty or below 1: the alarm fires 26 hours after the last success (the
            # heartbeat dates its datapoint when that success ended, whenever it runs).
            "Period": 3600,
            "EvaluationPeriods": SILENCE_HOURS,
            "DatapointsToAlarm": SILENCE_HOURS,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
            "AlarmActions": alarm_actions,
            "OKActions": alarm_actions,
        },
    }
    module = app_module if app_module is not None else _load_app(directory)
    functions = function_names(module, app, stage)
    for resource, function in functions.items():
        properties: dict[str, Any] = {"Runtime": RUNTIME, "FunctionName": function}
        tmp = EPHEMERAL_STORAGE_MB.get(function.rsplit("-", 1)[-1])
        if tmp is not None:
            properties["EphemeralStorage"] = {"Size": tmp}
        resources[resource] = {
            # The stack's log group (with its retention) must exist before the function can create its own.
            "DependsOn": [audit.log_group_name(resource)],
            "Properties": properties,
        }
    if any(plan.offsite for plan in plans.plans):
        resources.update(restore_role_names(app, stage))
    resources.update(audit.log_group_resources(functions))
    resources.update(audit.trail_resources(app, stage, [plan.bucket for plan in plans.plans]))
    outputs["AuditLogBucketName"] = {"Value": {"Ref": audit.TRAIL_BUCKET}}
    if "APIHandler" in functions:
        resources.update(audit.api_resources(app, stage))
        outputs["ApiAccessLogGroup"] = {"Value": {"Ref": audit.API_ACCESS_LOGS}}
    return {"Resources": resources, "Outputs": outputs}


def main(argv: list[str] | None = None) -> int:
    from chalicelib.errors import BackupError

    parser = argparse.ArgumentParser(prog="python -m chalicelib.deploy.template", description="Write the --merge-template file.")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--output", required=True, help="where to write the JSON")
    args = parser.parse_args(argv)
    try:
        template = merge_template(args.stage)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    print(f"{output}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

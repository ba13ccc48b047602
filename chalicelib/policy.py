"""Least-privilege IAM policies for the backup functions, generated from the plans.

Chalice's automatic policy only reads `app.py`, so with the logic in `chalicelib/` it would grant nothing
useful; `autogen_policy` is off and this module writes `.chalice/policy-<stage>.json` for every stage:

    python -m chalicelib.policy            # every stage of .chalice/config.json
    python -m chalicelib.policy --stage dev
    python -m chalicelib.policy --check    # exit 1 when a committed file is out of date

What may be granted is declared below in one table per concern (`Grant` rows): the backup buckets, the
sources, alerts, the worker function, metrics, logs. A new feature that calls AWS adds rows to its
concern's table (or a new table to `CONCERNS`). Resources are scoped to the stage's buckets and prefixes,
tables, topic and functions, resolved from the stage's environment variables.

`required_permissions` maps an AWS API call to the IAM actions and resources it needs; `allows` evaluates
a policy for one of them. The test suite uses both to check every call the code makes against the
generated policy.

Never granted, whatever a table says: the actions in `FORBIDDEN_ACTIONS` (a backup writer that can change
lifecycle rules, versioning, retention or bucket policies, or delete versions, can destroy every backup)
and any action with a wildcard.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.metrics import NAMESPACE as METRICS_NAMESPACE
from chalicelib.plans import DynamoDBSource, Plan, S3Source
from chalicelib.snapshots import DATA_PREFIX, META_PREFIX

FORBIDDEN_ACTIONS = frozenset(
    {
        "s3:DeleteObjectVersion",
        "s3:DeleteBucket",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutObjectRetention",
        "s3:PutObjectLegalHold",
        "s3:BypassGovernanceRetention",
    }
)


class PolicyError(Exception):
    """A grant table asks for something a backup function must never have."""


@dataclass(frozen=True)
class Scope:
    """Everything a stage's policy is scoped to."""

    app_name: str
    stage: str
    plans: tuple[Plan, ...]
    topic_arns: tuple[str, ...] = ()
    # Functions the code invokes (the worker, when POST /backup hands work to Lambda).
    invoked_functions: tuple[str, ...] = ()
    region: str = "*"
    account: str = "*"
    # Where restores may write: these buckets, and new tables whose names start with the prefix.
    restore_buckets: tuple[str, ...] = ()
    restore_table_prefix: str = ""

    @property
    def backup_buckets(self) -> list[str]:
        return sorted({plan.bucket for plan in self.plans})

    @property
    def s3_sources(self) -> list[S3Source]:
        found = {s for plan in self.plans for s in plan.sources if isinstance(s, S3Source)}
        return sorted(found, key=lambda s: (s.bucket, s.prefix))

    @property
    def tables(self) -> list[str]:
        return sorted({s.table for plan in self.plans for s in plan.sources if isinstance(s, DynamoDBSource)})

    @property
    def kms_keys(self) -> list[str]:
        return sorted({plan.kms_key_id for plan in self.plans if plan.kms_key_id})


@dataclass(frozen=True)
class Grant:
    """One policy statement: these actions on the resources `resources(scope)` names (none: omitted)."""

    sid: str
    actions: tuple[str, ...]
    resources: Callable[[Scope], list[str]]
    # Extra condition block, e.g. {"StringEquals": {...}}; None for no condition.
    condition: Callable[[Scope], dict[str, Any] | None] = field(default=lambda scope: None)


def _bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _object_arns(scope: Scope, prefix: str) -> list[str]:
    return [f"{_bucket_arn(bucket)}/{prefix}*" for bucket in scope.backup_buckets]


def _table_arn(scope: Scope, table: str) -> str:
    return f"arn:aws:dynamodb:{scope.region}:{scope.account}:table/{table}"


def function_arn(region: str, account: str, name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{name}"


def _kms_arn(scope: Scope, key: str) -> str:
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{scope.region}:{scope.account}:{key}"
    return f"arn:aws:kms:{scope.region}:{scope.account}:key/{key}"


# The backup buckets: objects under data/, manifests and records under meta/, and reading (never writing)
# the bucket settings that drift detection compares with the plan.
BACKUP_BUCKET_GRANTS: tuple[Grant, ...] = (
    Grant("BackupBucketsList", ("s3:ListBucket",), lambda s: [_bucket_arn(b) for b in s.backup_buckets]),
    Grant(
        "BackupBucketsReadSettings",
        (
            "s3:GetBucketVersioning",
            "s3:GetLifecycleConfiguration",
            "s3:GetEncryptionConfiguration",
            "s3:GetBucketPublicAccessBlock",
            "s3:GetBucketPolicy",
            "s3:GetBucketOwnershipControls",
            "s3:GetBucketObjectLockConfiguration",
        ),
        lambda s: [_bucket_arn(b) for b in s.backup_buckets],
    ),
    Grant(
        "BackupData",
        (
            "s3:PutObject",
            # CopyObject copies the source's tags by default (TaggingDirective COPY).
            "s3:PutObjectTagging",
            "s3:GetObject",
            # Delete markers for objects gone from the source; versions stay (no DeleteObjectVersion).
            "s3:DeleteObject",
            # Managed multipart copies and uploads clean up and resume parts.
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        ),
        lambda s: _object_arns(s, DATA_PREFIX),
    ),
    Grant(
        "BackupMetadata",
        ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
        lambda s: _object_arns(s, META_PREFIX),
    ),
)


# The sources: read only. Listing is limited to the configured prefix where there is one.
def _s3_source_grants(scope: Scope) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    whole = sorted({s.bucket for s in scope.s3_sources if not s.prefix})
    if whole:
        statements.append(_statement("SourceBucketsList", ["s3:ListBucket"], [_bucket_arn(b) for b in whole]))
    prefixed = sorted({(s.bucket, s.prefix) for s in scope.s3_sources if s.prefix and s.bucket not in whole})
    for index, bucket in enumerate(sorted({b for b, _ in prefixed})):
        prefixes = sorted(p + "*" for b, p in prefixed if b == bucket)
        statements.append(
            _statement(
                f"SourcePrefixList{index}",
                ["s3:ListBucket"],
                [_bucket_arn(bucket)],
                {"StringLike": {"s3:prefix": prefixes}},
            )
        )
    objects = sorted({f"{_bucket_arn(s.bucket)}/{s.prefix}*" for s in scope.s3_sources})
    if objects:
        # GetObjectTagging: CopyObject reads the source's tags to copy them.
        statements.append(_statement("SourceObjectsRead", ["s3:GetObject", "s3:GetObjectTagging"], objects))
    return statements


SOURCE_GRANTS: tuple[Grant, ...] = (
    Grant("SourceTablesRead", ("dynamodb:DescribeTable", "dynamodb:Scan"), lambda s: [_table_arn(s, t) for t in s.tables]),
)

# Backup buckets encrypted with a plan's KMS key: writing needs a data key, copying and reading decrypt.
ENCRYPTION_GRANTS: tuple[Grant, ...] = (
    Grant("BackupKeysUse", ("kms:GenerateDataKey", "kms:Decrypt"), lambda s: [_kms_arn(s, k) for k in s.kms_keys]),
)

ALERT_GRANTS: tuple[Grant, ...] = (Grant("AlertsPublish", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),)

WORKER_GRANTS: tuple[Grant, ...] = (
    Grant(
        "WorkerInvoke",
        ("lambda:InvokeFunction",),
        lambda s: sorted({function_arn(s.region, s.account, f) for f in s.invoked_functions}),
    ),
)

# PutMetricData has no resource-level permissions; the namespace condition is the scope.
METRIC_GRANTS: tuple[Grant, ...] = (
    Grant(
        "HeartbeatMetric",
        ("cloudwatch:PutMetricData",),
        lambda s: ["*"],
        lambda s: {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
    ),
)

# A policy file replaces Chalice's default one entirely, so the functions' own logging must be granted.
LOG_GRANTS: tuple[Grant, ...] = (
    Grant(
        "FunctionLogs",
        ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
        lambda s: [f"arn:aws:logs:{s.region}:{s.account}:log-group:/aws/lambda/{s.app_name}-{s.stage}*"],
    ),
)

# The API: the storage class of a snapshot's versions (HEAD of a version), and giving back a plan lock or
# an idempotency key that a request claimed before it was refused (chalicelib/locks.py, idempotency.py).
API_GRANTS: tuple[Grant, ...] = (
    Grant("ApiReadVersions", ("s3:GetObjectVersion",), lambda s: _object_arns(s, DATA_PREFIX)),
    Grant(
        "ApiReleaseClaims",
        ("s3:DeleteObject",),
        lambda s: _object_arns(s, META_PREFIX + "locks/") + _object_arns(s, META_PREFIX + "idempotency/"),
    ),
)

# Restores: thaw archived versions and copy exact versions (with their tags) out of the backup buckets, into
# the stage's restore buckets and into new tables named with the restore prefix; drop a finished restore
# from the queue of unfinished ones.
RESTORE_GRANTS: tuple[Grant, ...] = (
    Grant(
        "RestoreReadVersions",
        ("s3:RestoreObject", "s3:GetObjectVersion", "s3:GetObjectVersionTagging"),
        lambda s: _object_arns(s, DATA_PREFIX),
    ),
    Grant("RestoreQueue", ("s3:DeleteObject",), lambda s: _object_arns(s, META_PREFIX + "restore-queue/")),
    Grant("RestoreTargetsList", ("s3:ListBucket",), lambda s: [_bucket_arn(b) for b in s.restore_buckets]),
    Grant(
        "RestoreTargetsWrite",
        ("s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"),
        lambda s: [f"{_bucket_arn(b)}/*" for b in s.restore_buckets],
    ),
    Grant(
        "RestoreTables",
        ("dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:BatchWriteItem"),
        lambda s: [_table_arn(s, s.restore_table_prefix + "*")] if s.restore_table_prefix else [],
    ),
)

# Long backups (chalicelib/progress.py): drop a finished run's checkpoints and upload markers, and find the
# multipart uploads a crashed run left under data/ (aborting them is in BackupData). Manifests stay
# undeletable: only the checkpoint and marker names next to them are granted.
LONG_RUN_GRANTS: tuple[Grant, ...] = (
    Grant(
        "CheckpointsClear",
        ("s3:DeleteObject",),
        lambda s: _object_arns(s, META_PREFIX + "checkpoints/")
        + [f"{_bucket_arn(b)}/{META_PREFIX}snapshots/*.checkpoint.json" for b in s.backup_buckets]
        + [f"{_bucket_arn(b)}/{META_PREFIX}snapshots/*.uploading" for b in s.backup_buckets],
    ),
    Grant("StaleUploadsList", ("s3:ListBucketMultipartUploads",), lambda s: [_bucket_arn(b) for b in s.backup_buckets]),
)

# Every concern, in the order its statements appear. Tables may also be functions returning statements.
CONCERNS: tuple[tuple[Grant, ...] | Callable[[Scope], list[dict[str, Any]]], ...] = (
    BACKUP_BUCKET_GRANTS,
    _s3_source_grants,
    SOURCE_GRANTS,
    ENCRYPTION_GRANTS,
    ALERT_GRANTS,
    WORKER_GRANTS,
    METRIC_GRANTS,
    LOG_GRANTS,
    API_GRANTS,
    RESTORE_GRANTS,
    LONG_RUN_GRANTS,
)


def _statement(sid: str, actions: Iterable[str], resources: Iterable[str], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": sorted(set(resources))}
    if condition:
        statement["Condition"] = condition
    return statement


def check_actions(actions: Iterable[str]) -> None:
    for action in actions:
        if action in FORBIDDEN_ACTIONS:
            raise PolicyError(f"{action} must never be granted to the backup functions")
        if "*" in action or "?" in action or ":" not in action:
            raise PolicyError(f"{action!r}: actions are named one by one, never with wildcards")


def generate(scope: Scope) -> dict[str, Any]:
    """The IAM policy document for `scope`."""
    statements: list[dict[str, Any]] = []
    for concern in CONCERNS:
        if callable(concern):
            statements.extend(concern(scope))
            continue
        for grant in concern:
            resources = grant.resources(scope)
            if resources:
                statements.append(_statement(grant.sid, grant.actions, resources, grant.condition(scope)))
    for statement in statements:
        check_actions(statement["Action"])
    return {"Version": "2012-10-17", "Statement": statements}


def render(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):(\d{12}):[A-Za-z0-9_-]+$")


def stage_scope(stage: str, project_dir: str | Path | None = None) -> Scope:
    """The scope of a stage of `.chalice/config.json`, with its plans resolved from its environment.

    Region and account come from the alert topic's ARN (the one fully qualified name in the
    configuration); without a topic they are left as wildcards.
    """
    from chalicelib.config import Settings
    from chalicelib.stages import PROJECT_DIR, app_name, stage_environment

    directory = Path(project_dir or PROJECT_DIR)
    environ = stage_environment(stage, directory)
    settings = Settings.from_environ(environ)
    return settings_scope(app_name(directory), stage, settings)


def settings_scope(app: str, stage: str, settings: Any) -> Scope:
    region, account = "*", "*"
    match = _TOPIC_ARN.match(settings.topic_arn or "")
    if match:
        region, account = match.group(1), match.group(2)
    return Scope(
        app_name=app,
        stage=stage,
        plans=tuple(settings.plans.plans),
        topic_arns=(settings.topic_arn,) if settings.topic_arn else (),
        invoked_functions=_invoked_functions(settings),
        region=region,
        account=account,
        restore_buckets=tuple(getattr(settings, "restore_buckets", ())),
        restore_table_prefix=getattr(settings, "restore_table_prefix", ""),
    )


def _invoked_functions(settings: Any) -> tuple[str, ...]:
    """The backup worker, and the restore worker deployed beside it (`...-backup_worker` -> `...-restore_worker`)."""
    if settings.worker_mode != "lambda" or not settings.worker_function:
        return ()
    worker = settings.worker_function
    if worker.endswith("backup_worker"):
        return (worker, worker[: -len("backup_worker")] + "restore_worker")
    return (worker,)


def policy_path(stage: str, project_dir: str | Path | None = None) -> Path:
    from chalicelib.stages import PROJECT_DIR

    return Path(project_dir or PROJECT_DIR) / ".chalice" / f"policy-{stage}.json"


# Checking calls against a policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class Permission:
    """One IAM authorisation an API call needs."""

    action: str
    resource: str
    # Condition keys the request supplies (e.g. s3:prefix for a listing).
    context: tuple[tuple[str, str], ...] = ()


# S3 operations whose IAM action is not simply "s3:<operation>", and what they act on.
_S3_BUCKET_ACTIONS = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeleteBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketTagging": "s3:GetBucketTagging",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
}
_S3_OBJECT_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
    "RestoreObject": "s3:RestoreObject",
    "SelectObjectContent": "s3:GetObject",
}
# Reading a specific version needs the *Version variant of the action.
_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:RestoreObject": "s3:RestoreObject",
}


def _copy_source(value: Any) -> tuple[str, str, str | None]:
    if isinstance(value, Mapping):
        return value["Bucket"], value["Key"], value.get("VersionId")
    text = str(value).lstrip("/")
    version = None
    if "?versionId=" in text:
        text, version = text.split("?versionId=", 1)
    from urllib.parse import unquote

    bucket, key = text.split("/", 1)
    return bucket, unquote(key), version


def _s3_permissions(operation: str, params: Mapping[str, Any]) -> list[Permission]:
    bucket = params.get("Bucket", "")
    object_arn = f"{_bucket_arn(bucket)}/{params.get('Key', '')}"
    version = params.get("VersionId")

    def obj(action: str, arn: str = object_arn, versioned: Any = version) -> Permission:
        return Permission(_VERSIONED.get(action, action) if versioned else action, arn)

    needed: list[Permission] = []
    if operation == "ListBuckets":
        return [Permission("s3:ListAllMyBuckets", "*")]
    if operation in ("CopyObject", "UploadPartCopy"):
        src_bucket, src_key, src_version = _copy_source(params["CopySource"])
        src_arn = f"{_bucket_arn(src_bucket)}/{src_key}"
        needed += [obj("s3:GetObject", src_arn, src_version), obj("s3:PutObject", object_arn, None)]
        if operation == "CopyObject" and params.get("TaggingDirective", "COPY") == "COPY":
            needed += [obj("s3:GetObjectTagging", src_arn, src_version), obj("s3:PutObjectTagging", object_arn, None)]
        if operation == "CopyObject" and params.get("TaggingDirective") == "REPLACE" and params.get("Tagging"):
            needed.append(obj("s3:PutObjectTagging", object_arn, None))
    elif operation == "DeleteObjects":
        for item in params.get("Delete", {}).get("Objects", []):
            arn = f"{_bucket_arn(bucket)}/{item['Key']}"
            needed.append(obj("s3:DeleteObject", arn, item.get("VersionId")))
    elif operation == "GetObjectAttributes":
        needed += [obj("s3:GetObject"), obj("s3:GetObjectAttributes")]
    elif operation in _S3_BUCKET_ACTIONS:
        context: tuple[tuple[str, str], ...] = ()
        if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions") and params.get("Prefix") is not None:
            context = (("s3:prefix", params["Prefix"]),)
        needed.append(Permission(_S3_BUCKET_ACTIONS[operation], _bucket_arn(bucket), context))
    elif operation in _S3_OBJECT_ACTIONS:
        needed.append(obj(_S3_OBJECT_ACTIONS[operation]))
    elif "Key" in params:
        needed.append(obj(f"s3:{operation}"))
    else:
        needed.append(Permission(f"s3:{operation}", _bucket_arn(bucket)))
    # Parameters that need rights of their own.
    if operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
        if params.get("Tagging") and operation != "CopyObject":
            needed.append(obj("s3:PutObjectTagging", object_arn, None))
        if params.get("ObjectLockMode") or params.get("ObjectLockRetainUntilDate"):
            needed.append(obj("s3:PutObjectRetention", object_arn, None))
        if params.get("ObjectLockLegalHoldStatus"):
            needed.append(obj("s3:PutObjectLegalHold", object_arn, None))
    if params.get("BypassGovernanceRetention"):
        needed.append(Permission("s3:BypassGovernanceRetention", object_arn if "Key" in params else _bucket_arn(bucket) + "/*"))
    return needed


_LAMBDA_ACTIONS = {"Invoke": "lambda:InvokeFunction", "InvokeAsync": "lambda:InvokeFunction"}


def required_permissions(service: str, operation: str, params: Mapping[str, Any], region: str, account: str) -> list[Permission]:
    """The IAM authorisations one API call needs, for the services this system uses."""
    if service == "s3":
        return _s3_permissions(operation, params)
    if service == "dynamodb":
        action = f"dynamodb:{operation}"
        if "TableName" in params:
            return [Permission(action, f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}")]
        if "TableArn" in params:
            return [Permission(action, params["TableArn"])]
        if "RequestItems" in params:
            return [Permission(action, f"arn:aws:dynamodb:{region}:{account}:table/{t}") for t in params["RequestItems"]]
        return [Permission(action, "*")]
    if service == "sns":
        return [Permission(f"sns:{operation}", params.get("TopicArn") or params.get("TargetArn") or "*")]
    if service == "lambda":
        name = params.get("FunctionName", "*")
        return [Permission(_LAMBDA_ACTIONS.get(operation, f"lambda:{operation}"), function_arn(region, account, name))]
    if service == "cloudwatch":
        context = (("cloudwatch:namespace", params["Namespace"]),) if "Namespace" in params else ()
        return [Permission(f"cloudwatch:{operation}", "*", context)]
    return [Permission(f"{service}:{operation}", "*")]


def _matches(pattern: str, value: str) -> bool:
    # IAM wildcards: '*' any run of characters (including '/' and ':'), '?' one character.
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if key not in context:
                return False
            actual = context[key]
            if operator == "StringEquals":
                ok = actual in values
            elif operator == "StringLike":
                ok = any(_matches(v, actual) for v in values)
            else:
                return False  # an operator this checker does not know never counts as allowing
            if not ok:
                return False
    return True


def allows(policy: Mapping[str, Any], permission: Permission) -> bool:
    """Whether the policy's statements allow `permission` (explicit Deny wins)."""
    context = dict(permission.context)
    allowed = False
    for statement in policy.get("Statement", []):
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(a.lower() == permission.action.lower() or _matches(a.lower(), permission.action.lower()) for a in actions):
            continue
        if not any(_matches(r, permission.resource) for r in resources):
            continue
        if not _condition_holds(statement.get("Condition", {}), context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


# Command line ----------------------------------------------------------------------------------------


def write_stage(stage: str, project_dir: str | Path | None = None) -> tuple[Path, bool]:
    """Write the stage's policy file; returns its path and whether it changed."""
    path = policy_path(stage, project_dir)
    text = render(generate(stage_scope(stage, project_dir)))
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old != text:
        path.write_text(text, encoding="utf-8")
    return path, old != text


def main(argv: Sequence[str] | None = None) -> int:
    from chalicelib.errors import BackupError
    from chalicelib.stages import stage_names

    parser = argparse.ArgumentParser(prog="python -m chalicelib.policy", description="Write .chalice/policy-<stage>.json.")
    parser.add_argument("--stage", action="append", help="a stage of .chalice/config.json (default: every stage)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a policy file is out of date")
    args = parser.parse_args(argv)
    status = 0
    try:
        for stage in args.stage or stage_names():
            path = policy_path(stage)
            if args.check:
                wanted = render(generate(stage_scope(stage)))
                current = path.read_text(encoding="utf-8") if path.exists() else ""
                if current != wanted:
                    print(f"{path} is out of date: run `make policies`", file=sys.stderr)
                    status = 1
                continue
            path, changed = write_stage(stage)
            print(f"{path}: {'written' if changed else 'unchanged'}")
    except (BackupError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())

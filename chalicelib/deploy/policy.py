"""Least-privilege IAM policies for the backup functions, generated from the plans.

Chalice's automatic policy only reads `app.py`, so with the logic in `chalicelib/` it would grant nothing
useful; `autogen_policy` is off and this module writes `.chalice/policy-<stage>.json` for every stage:

    python -m chalicelib.deploy.policy            # every stage of .chalice/config.json
    python -m chalicelib.deploy.policy --stage dev
    python -m chalicelib.deploy.policy --check    # exit 1 when a committed file is out of date

What may be granted is declared below in one table per concern (`Grant` rows): the backup buckets, the
sources, alerts, the worker function, metrics, logs, restores, long runs, the weekly verification job, the
cost report. A new feature that calls AWS adds rows to its concern's table (or a new table to `CONCERNS`). Resources are scoped to the stage's buckets and prefixes,
tables, topic and functions, resolved from the stage's environment variables.

`permissions.py` maps an AWS API call to the IAM actions and resources it needs and evaluates a policy for
one of them; the test suite checks every call the code makes against the generated policy with it.

Never granted, whatever a table says: the actions in `FORBIDDEN_ACTIONS` (a backup writer that can change
lifecycle rules, versioning, retention or bucket policies, or delete versions, can destroy every backup)
and any action with a wildcard.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.layout import (
    CHECKPOINTS_PREFIX,
    COSTS_PREFIX,
    DATA_PREFIX,
    IDEMPOTENCY_PREFIX,
    LOCKS_PREFIX,
    META_PREFIX,
    PRUNES_PREFIX,
    RECORDS_PREFIX,
    RESTORE_QUEUE_PREFIX,
    SEALED_RECORDS_PREFIX,
    SNAPSHOTS_PREFIX,
    VERIFICATIONS_PREFIX,
)
from chalicelib.notify.metrics import NAMESPACE as METRICS_NAMESPACE
from chalicelib.plans import DynamoDBSource, Plan, S3Source

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
    # The backup bucket that holds the catalog (records); empty: unknown, nothing scoped to it is granted.
    catalog_bucket: str = ""

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

    @property
    def source_kms_keys(self) -> list[str]:
        """Keys the S3 sources' objects are encrypted with (SSE-KMS under a customer key)."""
        return sorted({s.kms_key_id for s in self.s3_sources if s.kms_key_id})


@dataclass(frozen=True)
class Grant:
    """One policy statement: these actions on the resources `resources(scope)` names (none: omitted)."""

    sid: str
    actions: tuple[str, ...]
    resources: Callable[[Scope], list[str]]
    # Extra condition block, e.g. {"StringEquals": {...}}; None for no condition.
    condition: Callable[[Scope], dict[str, Any] | None] = field(default=lambda scope: None)


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _object_arns(scope: Scope, prefix: str) -> list[str]:
    return [f"{bucket_arn(bucket)}/{prefix}*" for bucket in scope.backup_buckets]


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
    Grant("BackupBucketsList", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.backup_buckets]),
    # A manifest's versions (one listing of its own key): its original version, and any tampering after it.
    Grant(
        "ManifestVersionsList",
        ("s3:ListBucketVersions",),
        lambda s: [bucket_arn(b) for b in s.backup_buckets],
        lambda s: {"StringLike": {"s3:prefix": [SNAPSHOTS_PREFIX + "*"]}},
    ),
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
        lambda s: [bucket_arn(b) for b in s.backup_buckets],
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
        statements.append(_statement("SourceBucketsList", ["s3:ListBucket"], [bucket_arn(b) for b in whole]))
    prefixed = sorted({(s.bucket, s.prefix) for s in scope.s3_sources if s.prefix and s.bucket not in whole})
    for index, bucket in enumerate(sorted({b for b, _ in prefixed})):
        prefixes = sorted(p + "*" for b, p in prefixed if b == bucket)
        statements.append(
            _statement(
                f"SourcePrefixList{index}",
                ["s3:ListBucket"],
                [bucket_arn(bucket)],
                {"StringLike": {"s3:prefix": prefixes}},
            )
        )
    objects = sorted({f"{bucket_arn(s.bucket)}/{s.prefix}*" for s in scope.s3_sources})
    if objects:
        # GetObjectTagging: CopyObject reads the source's tags to copy them.
        statements.append(_statement("SourceObjectsRead", ["s3:GetObject", "s3:GetObjectTagging"], objects))
    # Sources whose archived objects are thawed (`archived: thaw`) ask S3 to restore them, and nothing else.
    thawed = sorted({f"{bucket_arn(s.bucket)}/{s.prefix}*" for s in scope.s3_sources if s.archived == "thaw"})
    if thawed:
        statements.append(_statement("SourceObjectsThaw", ["s3:RestoreObject"], thawed))
    return statements


SOURCE_GRANTS: tuple[Grant, ...] = (
    Grant("SourceTablesRead", ("dynamodb:DescribeTable", "dynamodb:Scan"), lambda s: [_table_arn(s, t) for t in s.tables]),
)

# Backup buckets encrypted with a plan's KMS key: writing needs a data key, copying and reading decrypt.
ENCRYPTION_GRANTS: tuple[Grant, ...] = (
    Grant("BackupKeysUse", ("kms:GenerateDataKey", "kms:Decrypt"), lambda s: [_kms_arn(s, k) for k in s.kms_keys]),
    # Copying a source object encrypted under a customer key reads it: decrypt with that key, nothing else.
    Grant("SourceKeysDecrypt", ("kms:Decrypt",), lambda s: [_kms_arn(s, k) for k in s.source_kms_keys]),
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
# an idempotency key that a request claimed before it was refused (chalicelib/backup/locks.py, chalicelib/api/idempotency.py).
API_GRANTS: tuple[Grant, ...] = (
    Grant("ApiReadVersions", ("s3:GetObjectVersion",), lambda s: _object_arns(s, DATA_PREFIX)),
    Grant(
        "ApiReleaseClaims",
        ("s3:DeleteObject",),
        lambda s: _object_arns(s, LOCKS_PREFIX) + _object_arns(s, IDEMPOTENCY_PREFIX),
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
    Grant("RestoreQueue", ("s3:DeleteObject",), lambda s: _object_arns(s, RESTORE_QUEUE_PREFIX)),
    Grant("RestoreTargetsList", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.restore_buckets]),
    Grant(
        "RestoreTargetsWrite",
        ("s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"),
        lambda s: [f"{bucket_arn(b)}/*" for b in s.restore_buckets],
    ),
    Grant(
        "RestoreTables",
        ("dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:BatchWriteItem"),
        lambda s: [_table_arn(s, s.restore_table_prefix + "*")] if s.restore_table_prefix else [],
    ),
)

# Long backups (chalicelib/backup/checkpoints.py): drop a finished run's checkpoints and upload markers, and find the
# multipart uploads a crashed run left under data/ (aborting them is in BackupData). Manifests stay
# undeletable: only the checkpoint and marker names next to them are granted.
LONG_RUN_GRANTS: tuple[Grant, ...] = (
    Grant(
        "CheckpointsClear",
        ("s3:DeleteObject",),
        lambda s: _object_arns(s, CHECKPOINTS_PREFIX)
        + [f"{bucket_arn(b)}/{SNAPSHOTS_PREFIX}*.checkpoint.json" for b in s.backup_buckets]
        + [f"{bucket_arn(b)}/{SNAPSHOTS_PREFIX}*.uploading" for b in s.backup_buckets],
    ),
    Grant("StaleUploadsList", ("s3:ListBucketMultipartUploads",), lambda s: [bucket_arn(b) for b in s.backup_buckets]),
)

# The weekly verification job (chalicelib/verify/job.py, the verify_worker function): read only. It lists
# and reads the manifests, asks S3 about exact versions of the data (HeadObject with VersionId), writes its
# own record and checkpoint under meta/verifications/, sends its alert, and invokes itself to carry on.
# Everything it needs is here, apart from logs, so that it can be given a policy of its own.
VERIFY_GRANTS: tuple[Grant, ...] = (
    Grant("VerifyList", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.backup_buckets]),
    Grant(
        "VerifyRead",
        ("s3:GetObject", "s3:GetObjectVersion"),
        lambda s: _object_arns(s, SNAPSHOTS_PREFIX) + _object_arns(s, DATA_PREFIX),
    ),
    Grant(
        "VerifyRecords",
        ("s3:PutObject", "s3:GetObject"),
        lambda s: [f"{bucket_arn(s.catalog_bucket)}/{VERIFICATIONS_PREFIX}*"] if s.catalog_bucket else [],
    ),
    Grant("VerifyAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
    Grant(
        "VerifyContinue",
        ("lambda:InvokeFunction",),
        lambda s: sorted({function_arn(s.region, s.account, f) for f in s.invoked_functions if f.endswith("verify_worker")}),
    ),
)

# The cost report (chalicelib/cost/: GET /costs, org-backup cost, the daily backup's alert): read only but for
# its own report. It lists every version under data/ (write times and storage classes, 1,000 a request) and
# the manifests' versions, reads the backup records, the prune records and the kept snapshots' manifests,
# asks S3 about a sample of versions (HeadObject with VersionId), and keeps its report under meta/costs/
# in the catalog bucket. Everything it needs is here, apart from logs, so that it can go to any function.
COST_GRANTS: tuple[Grant, ...] = (
    Grant("CostList", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.backup_buckets]),
    Grant(
        "CostVersionsList",
        ("s3:ListBucketVersions",),
        lambda s: [bucket_arn(b) for b in s.backup_buckets],
        lambda s: {"StringLike": {"s3:prefix": [DATA_PREFIX + "*", SNAPSHOTS_PREFIX + "*"]}},
    ),
    Grant(
        "CostRead",
        ("s3:GetObject", "s3:GetObjectVersion"),
        lambda s: _object_arns(s, SNAPSHOTS_PREFIX)
        + _object_arns(s, DATA_PREFIX)
        + (
            [f"{bucket_arn(s.catalog_bucket)}/{prefix}*" for prefix in (RECORDS_PREFIX, SEALED_RECORDS_PREFIX, PRUNES_PREFIX)]
            if s.catalog_bucket
            else []
        ),
    ),
    Grant(
        "CostReports",
        ("s3:PutObject", "s3:GetObject"),
        lambda s: [f"{bucket_arn(s.catalog_bucket)}/{COSTS_PREFIX}*"] if s.catalog_bucket else [],
    ),
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
    VERIFY_GRANTS,
    COST_GRANTS,
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
        catalog_bucket=settings.plans.catalog_bucket,
    )


def _invoked_functions(settings: Any) -> tuple[str, ...]:
    """The backup worker, and the restore and verify workers deployed beside it (`...-backup_worker` ->
    `...-restore_worker`, `...-verify_worker`)."""
    if settings.worker_mode != "lambda" or not settings.worker_function:
        return ()
    worker = settings.worker_function
    if worker.endswith("backup_worker"):
        base = worker[: -len("backup_worker")]
        return (worker, base + "restore_worker", base + "verify_worker")
    return (worker,)


def policy_path(stage: str, project_dir: str | Path | None = None) -> Path:
    from chalicelib.stages import PROJECT_DIR

    return Path(project_dir or PROJECT_DIR) / ".chalice" / f"policy-{stage}.json"


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

    parser = argparse.ArgumentParser(prog="python -m chalicelib.deploy.policy", description="Write .chalice/policy-<stage>.json.")
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

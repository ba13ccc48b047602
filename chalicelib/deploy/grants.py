"""What may be granted, one table per concern (`Grant` rows): the rows, the tables every function shares and
the API's (`backup_grants.py`: the backup writer's; `job_grants.py`: restores, verification, prunes and the
cost report's); `roles.py` gives each function the tables it needs. A new feature that calls AWS adds rows to its concern's table (or a new table to the roles that need
it).

Resources are scoped to the stage's buckets and prefixes, tables, topic and functions. Statements on the
backup and restore buckets also carry `s3:ResourceAccount` (the stage's account, when known): a bucket of
the same name in another account is never written to or read, even if ours were deleted and its name taken.
The sources are not pinned: they may live in other accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.deploy.scope import (
    BACKUP_WORKER,
    NOTIFIER,
    PRUNE_WORKER,
    RESTORE_WORKER,
    VERIFY_WORKER,
    Scope,
    bucket_arn,
    deployed_name,
    kms_arn,
    object_arns,
    table_arn,
)
from chalicelib.layout import (
    DATA_PREFIX,
    IDEMPOTENCY_PREFIX,
    LOCKS_PREFIX,
    META_PREFIX,
    PRUNES_PREFIX,
    RECORDS_PREFIX,
    RELOCATIONS_PREFIX,
    RESTORE_QUEUE_PREFIX,
    RESTORES_PREFIX,
    SEALED_RECORDS_PREFIX,
    SNAPSHOTS_PREFIX,
    TAMPERING_PREFIX,
    VERIFICATIONS_PREFIX,
)

from chalicelib.notify import metrics

RESOURCE_ACCOUNT = "s3:ResourceAccount"


@dataclass(frozen=True)
class Grant:
    """One policy statement: these actions on the resources `resources(scope)` names (none: omitted)."""

    sid: str
    actions: tuple[str, ...]
    resources: Callable[[Scope], list[str]]
    # Extra condition block, e.g. {"StringLike": {...}}; None for no condition.
    condition: Callable[[Scope], dict[str, Any] | None] = field(default=lambda scope: None)
    # The resources are backup or restore buckets (or their objects): pin them to the stage's account.
    owned: bool = False

    def statement_condition(self, scope: Scope) -> dict[str, Any] | None:
        condition = {operator: dict(keys) for operator, keys in (self.condition(scope) or {}).items()}
        if self.owned and scope.account != "*":
            condition.setdefault("StringEquals", {})[RESOURCE_ACCOUNT] = scope.account
        return condition or None


# A concern is a table of grants, or a function writing statements that a table cannot express.
Concern = tuple[Grant, ...] | Callable[[Scope], list[dict[str, Any]]]


def statement(sid: str, actions: Any, resources: Any, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": sorted(set(resources))}
    if condition:
        found["Condition"] = condition
    return found


def backup_bucket_arns(scope: Scope) -> list[str]:
    return [bucket_arn(b) for b in scope.backup_buckets]


def catalog_objects(scope: Scope, *prefixes: str) -> list[str]:
    """Objects under `prefixes` in the catalog bucket only (records, locks, claims, restores, verifications)."""
    return object_arns([scope.catalog_bucket], *prefixes) if scope.catalog_bucket else []


def inventory_bucket_arns(scope: Scope) -> list[str]:
    return [bucket_arn(scope.inventory.bucket)] if scope.inventory else []


def inventory_report_arns(scope: Scope) -> list[str]:
    return object_arns([scope.inventory.bucket], scope.inventory.prefix + "/") if scope.inventory else []


def meta_listing(scope: Scope) -> dict[str, Any]:
    # Listing for the catalog's readers is limited to meta/: they have no business enumerating data/.
    return {"StringLike": {"s3:prefix": [META_PREFIX + "*"]}}


# The functions' own logs. A policy file replaces Chalice's default one entirely, so they must be granted;
# each function writes only its own log group.
LOG_GRANTS: tuple[Grant, ...] = (
    Grant(
        "FunctionLogs",
        ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
        lambda s: [
            f"arn:aws:logs:{s.region}:{s.account}:log-group:/aws/lambda/{deployed_name(s.app_name, s.stage, s.function)}{suffix}"
            for suffix in ("", ":*")
        ],
    ),
)

# Backup buckets encrypted with a plan's KMS key: writing needs a data key, reading decrypts.
WRITER_KEY_GRANTS: tuple[Grant, ...] = (
    Grant("BackupKeysUse", ("kms:GenerateDataKey", "kms:Decrypt"), lambda s: [kms_arn(s, k) for k in s.kms_keys]),
    # Copying a source object encrypted under a customer key reads it: decrypt with that key, nothing else.
    Grant("SourceKeysDecrypt", ("kms:Decrypt",), lambda s: [kms_arn(s, k) for k in s.source_kms_keys]),
)
READER_KEY_GRANTS: tuple[Grant, ...] = (
    Grant("BackupKeysDecrypt", ("kms:Decrypt",), lambda s: [kms_arn(s, k) for k in s.kms_keys]),
)

ALERT_GRANTS: tuple[Grant, ...] = (Grant("AlertsPublish", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),)

# Every reader of a snapshot reads its manifest at the version its sealed record holds, and lists the
# versions of that one key to tell tampering after it (chalicelib/catalog/manifests.py); and reads the
# relocation records of repacked packs, which say where a packed entry's bytes are now
# (chalicelib/catalog/relocations.py): read only, the prune alone writes them.
SEALED_MANIFEST_GRANTS: tuple[Grant, ...] = (
    Grant("ManifestVersionsRead", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX), owned=True),
    Grant(
        "ManifestVersionsList",
        ("s3:ListBucketVersions",),
        backup_bucket_arns,
        lambda s: {"StringLike": {"s3:prefix": [SNAPSHOTS_PREFIX + "*"]}},
        owned=True,
    ),
    Grant(
        "RelocationsList",
        ("s3:ListBucket",),
        backup_bucket_arns,
        lambda s: {"StringLike": {"s3:prefix": [RELOCATIONS_PREFIX + "*"]}},
        owned=True,
    ),
    Grant("RelocationsRead", ("s3:GetObject",), lambda s: object_arns(s.backup_buckets, RELOCATIONS_PREFIX), owned=True),
)

# The S3 Inventory reports of the backup buckets (chalicelib/inventory/reports.py: the newest report's folder,
# its manifest, checksum and data files), for the whole-bucket passes: verification, the prune's sweep, the
# cost report. Reading only: S3 alone writes there (the inventory bucket's policy denies everyone else).
INVENTORY_READ_GRANTS: tuple[Grant, ...] = (
    Grant(
        "InventoryReportsList",
        ("s3:ListBucket",),
        inventory_bucket_arns,
        lambda s: {"StringLike": {"s3:prefix": [s.inventory.prefix + "/*"]}} if s.inventory else None,
        owned=True,
    ),
    Grant("InventoryReportsRead", ("s3:GetObject",), inventory_report_arns, owned=True),
)

# Whichever function finds a manifest or record that differs from what was sealed hands the finding to the
# notifier (chalicelib/notify/tampering.py): it never writes the findings' markers itself, so no role that
# could tamper can also keep the alert about it from going out.
TAMPERING_GRANTS: tuple[Grant, ...] = (
    Grant("TamperingReport", ("lambda:InvokeFunction",), lambda s: s.invoked(NOTIFIER)),
)

# The notifier (notifier): alert a finding, then remember it by its create-only marker; nothing else.
NOTIFIER_GRANTS: tuple[Grant, ...] = (
    Grant("TamperingFindings", ("s3:PutObject", "s3:GetObject"), lambda s: catalog_objects(s, TAMPERING_PREFIX), owned=True),
    Grant("TamperingAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
)

# The heartbeat (heartbeat): read the sealed backup records, and publish the metric the 26-hour alarm watches.
# No role that writes backups may publish it. PutMetricData has no resource-level permissions; the stage's
# own namespace (`metrics.namespace`) is the scope.
HEARTBEAT_GRANTS: tuple[Grant, ...] = (
    Grant(
        "SealedRecordsList",
        ("s3:ListBucket",),
        lambda s: [bucket_arn(s.catalog_bucket)] if s.catalog_bucket else [],
        lambda s: {"StringLike": {"s3:prefix": [SEALED_RECORDS_PREFIX + "*"]}},
        owned=True,
    ),
    Grant("SealedRecordsRead", ("s3:GetObject",), lambda s: catalog_objects(s, SEALED_RECORDS_PREFIX), owned=True),
    Grant(
        "HeartbeatMetric",
        ("cloudwatch:PutMetricData",),
        lambda s: ["*"] if s.catalog_bucket else [],
        lambda s: {"StringEquals": {"cloudwatch:namespace": metrics.namespace(s.catalog_bucket)}},
    ),
)


# The API (api_handler: every route) ------------------------------------------------------------------------

# The internet-facing function reads the catalog, writes only the records its routes create, and hands every
# byte of backup or restore work to a worker: it never writes data/, places delete markers, touches the
# sources, creates tables or writes to restore buckets.
API_GRANTS: tuple[Grant, ...] = (
    Grant("ApiCatalogList", ("s3:ListBucket",), backup_bucket_arns, meta_listing, owned=True),
    # Records, manifests, restore records, locks and claims.
    Grant("ApiCatalogRead", ("s3:GetObject",), lambda s: object_arns(s.backup_buckets, META_PREFIX), owned=True),
    # The storage class of a snapshot's versions (HEAD of a version), restore quotes, and POST
    # /backups/{id}/verify (HEAD of each version, re-reading a sample).
    Grant("ApiReadVersions", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, DATA_PREFIX), owned=True),
    Grant(
        "ApiRecordsWrite",
        ("s3:PutObject",),
        lambda s: catalog_objects(
            s,
            RECORDS_PREFIX,
            RESTORES_PREFIX,
            RESTORE_QUEUE_PREFIX,
            LOCKS_PREFIX,
            IDEMPOTENCY_PREFIX,
            PRUNES_PREFIX,
        ),
        owned=True,
    ),
    # The first record of a check POST /backups/{id}/verify asks for (`check-...`), created only (the request:
    # the verify worker does the work and alone seals what it finds); never a weekly job's (`verify-...`),
    # never a result (meta/sealed/).
    Grant(
        "ApiChecksCreate",
        ("s3:PutObject",),
        lambda s: catalog_objects(s, VERIFICATIONS_PREFIX + "*_check-"),
        lambda s: {"Null": {"s3:if-none-match": "false"}},
        owned=True,
    ),
    # Giving back a plan lock or an idempotency key that a request claimed before it was refused
    # (chalicelib/jobs/locks.py, chalicelib/api/idempotency.py).
    Grant("ApiReleaseClaims", ("s3:DeleteObject",), lambda s: catalog_objects(s, LOCKS_PREFIX, IDEMPOTENCY_PREFIX), owned=True),
    # POST /restores checks its target before recording it: the bucket exists and which keys it holds, or
    # whether the table exists. Reading only.
    Grant("ApiRestoreTargetsCheck", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.restore_buckets], owned=True),
    Grant(
        "ApiRestoreTablesCheck",
        ("dynamodb:DescribeTable",),
        lambda s: [table_arn(s, s.restore_table_prefix + "*")] if s.restore_table_prefix else [],
    ),
    # The backup, restore and prune workers, and the verify worker for POST /backups/{id}/verify.
    Grant(
        "ApiStartWorkers",
        ("lambda:InvokeFunction",),
        lambda s: s.invoked(BACKUP_WORKER, RESTORE_WORKER, PRUNE_WORKER, VERIFY_WORKER),
    ),
)

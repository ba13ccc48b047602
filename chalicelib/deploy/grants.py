"""What may be granted, one table per concern (`Grant` rows); `roles.py` gives each function the tables it
needs. A new feature that calls AWS adds rows to its concern's table (or a new table to the roles that need
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
    CHECKPOINTS_PREFIX,
    COSTS_PREFIX,
    DATA_PREFIX,
    EXPORTS_PREFIX,
    IDEMPOTENCY_PREFIX,
    LOCKS_PREFIX,
    META_PREFIX,
    PRUNED_PREFIX,
    PRUNES_PREFIX,
    RECORDS_PREFIX,
    RESTORE_QUEUE_PREFIX,
    RESTORES_PREFIX,
    SEALED_PREFIX,
    SNAPSHOTS_PREFIX,
    TAMPERING_PREFIX,
    VERIFICATIONS_PREFIX,
)
from chalicelib.notify import metrics
from chalicelib.plans import DynamoDBSource

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


def _buckets(scope: Scope) -> list[str]:
    return [bucket_arn(b) for b in scope.backup_buckets]


def _catalog(scope: Scope, *prefixes: str) -> list[str]:
    """Objects under `prefixes` in the catalog bucket only (records, locks, claims, restores, verifications)."""
    return object_arns([scope.catalog_bucket], *prefixes) if scope.catalog_bucket else []


def _meta_listing(scope: Scope) -> dict[str, Any]:
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
# versions of that one key to tell tampering after it (chalicelib/catalog/manifests.py).
SEALED_MANIFEST_GRANTS: tuple[Grant, ...] = (
    Grant("ManifestVersionsRead", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX), owned=True),
    Grant(
        "ManifestVersionsList",
        ("s3:ListBucketVersions",),
        _buckets,
        lambda s: {"StringLike": {"s3:prefix": [SNAPSHOTS_PREFIX + "*"]}},
        owned=True,
    ),
)

# Whichever function finds a manifest or record that differs from what was sealed remembers the finding
# (create-only, so that it alerts once: chalicelib/notify/tampering.py).
TAMPERING_GRANTS: tuple[Grant, ...] = (
    Grant("TamperingFindings", ("s3:PutObject",), lambda s: _catalog(s, TAMPERING_PREFIX), owned=True),
    Grant("TamperingAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
)


# The backup writer (daily_backup, backup_worker) ---------------------------------------------------------

# The backup buckets: objects under data/, manifests, checkpoints and records under meta/, and reading (never
# writing) the bucket settings that drift detection compares with the plan.
BACKUP_BUCKET_GRANTS: tuple[Grant, ...] = (
    Grant("BackupBucketsList", ("s3:ListBucket",), _buckets, owned=True),
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
        _buckets,
        owned=True,
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
            # Multipart copies and uploads clean up and resume parts.
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        ),
        lambda s: object_arns(s.backup_buckets, DATA_PREFIX),
        owned=True,
    ),
    # Manifests and checkpoints next to each plan's data; the backup records, and the first record of the
    # weekly verification job a scheduled backup starts, in the catalog. Nothing else under meta/: restore
    # records and the restore queue are not the backup writer's to forge.
    Grant(
        "BackupMetadata",
        ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX, CHECKPOINTS_PREFIX)
        + _catalog(s, RECORDS_PREFIX, SEALED_PREFIX, VERIFICATIONS_PREFIX),
        owned=True,
    ),
    # The base of the next backup is never a pruned snapshot (its marker).
    Grant("PrunedMarkersRead", ("s3:GetObject",), lambda s: _catalog(s, PRUNED_PREFIX), owned=True),
)


# The sources: read only. Listing is limited to the configured prefix where there is one.
def source_grants(scope: Scope) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    whole = sorted({s.bucket for s in scope.s3_sources if not s.prefix})
    if whole:
        statements.append(statement("SourceBucketsList", ["s3:ListBucket"], [bucket_arn(b) for b in whole]))
    prefixed = sorted({(s.bucket, s.prefix) for s in scope.s3_sources if s.prefix and s.bucket not in whole})
    for index, bucket in enumerate(sorted({b for b, _ in prefixed})):
        prefixes = sorted(p + "*" for b, p in prefixed if b == bucket)
        statements.append(
            statement(f"SourcePrefixList{index}", ["s3:ListBucket"], [bucket_arn(bucket)], {"StringLike": {"s3:prefix": prefixes}})
        )
    objects = sorted({f"{bucket_arn(s.bucket)}/{s.prefix}*" for s in scope.s3_sources})
    if objects:
        # GetObjectTagging: CopyObject reads the source's tags to copy them.
        statements.append(statement("SourceObjectsRead", ["s3:GetObject", "s3:GetObjectTagging"], objects))
    # Sources whose archived objects are thawed (`archived: thaw`) ask S3 to restore them, and nothing else.
    thawed = sorted({f"{bucket_arn(s.bucket)}/{s.prefix}*" for s in scope.s3_sources if s.archived == "thaw"})
    if thawed:
        statements.append(statement("SourceObjectsThaw", ["s3:RestoreObject"], thawed))
    return statements


SOURCE_TABLE_GRANTS: tuple[Grant, ...] = (
    Grant("SourceTablesRead", ("dynamodb:DescribeTable", "dynamodb:Scan"), lambda s: [table_arn(s, t) for t in s.tables]),
)


def _export_buckets(scope: Scope) -> list[str]:
    """The backup buckets DynamoDB exports tables into: those of plans with a table."""
    return sorted({plan.bucket for plan in scope.plans if any(isinstance(s, DynamoDBSource) for s in plan.sources)})


# Tables with point-in-time recovery are backed up by DynamoDB's own export (chalicelib/backup/table_export.py).
# DynamoDB writes an export with the caller's permissions (the ACL one too, though ACLs are disabled on the
# backup buckets), into the export prefix only; the run then reads the exact versions it wrote there to join
# them into the table's object, and puts delete markers on them (BackupData's s3:DeleteObject on data/).
TABLE_EXPORT_GRANTS: tuple[Grant, ...] = (
    Grant(
        "SourceTablesExport",
        ("dynamodb:DescribeContinuousBackups", "dynamodb:ExportTableToPointInTime"),
        lambda s: [table_arn(s, t) for t in s.tables],
    ),
    Grant("SourceTableExportsDescribe", ("dynamodb:DescribeExport",), lambda s: [table_arn(s, t) + "/export/*" for t in s.tables]),
    Grant(
        "TableExportsWrite",
        ("s3:PutObject", "s3:PutObjectAcl", "s3:AbortMultipartUpload", "s3:GetObjectVersion"),
        lambda s: object_arns(_export_buckets(s), EXPORTS_PREFIX),
        owned=True,
    ),
    Grant(
        "TableExportsList",
        ("s3:ListBucketVersions",),
        lambda s: [bucket_arn(bucket) for bucket in _export_buckets(s)],
        lambda s: {"StringLike": {"s3:prefix": [f"{EXPORTS_PREFIX}*"]}},
        owned=True,
    ),
)

# A backup carries itself on (checkpoints, key ranges) in the backup worker and starts the weekly
# verification job in the verify worker.
BACKUP_INVOKE_GRANTS: tuple[Grant, ...] = (
    Grant("WorkersInvoke", ("lambda:InvokeFunction",), lambda s: s.invoked(BACKUP_WORKER, VERIFY_WORKER)),
)

# The heartbeat that keeps the 26-hour alarm quiet. PutMetricData has no resource-level permissions; the
# stage's own namespace (`metrics.namespace`) is the scope.
METRIC_GRANTS: tuple[Grant, ...] = (
    Grant(
        "HeartbeatMetric",
        ("cloudwatch:PutMetricData",),
        lambda s: ["*"] if s.catalog_bucket else [],
        lambda s: {"StringEquals": {"cloudwatch:namespace": metrics.namespace(s.catalog_bucket)}},
    ),
)

# Long backups (chalicelib/backup/checkpoints.py): drop a finished run's checkpoints and upload markers, and
# find the multipart uploads a crashed run left under data/ (aborting them is in BackupData). Manifests stay
# undeletable: only the checkpoint and marker names next to them are granted.
LONG_RUN_GRANTS: tuple[Grant, ...] = (
    Grant(
        "CheckpointsClear",
        ("s3:DeleteObject",),
        lambda s: object_arns(s.backup_buckets, CHECKPOINTS_PREFIX)
        + [f"{bucket_arn(b)}/{SNAPSHOTS_PREFIX}*.checkpoint.json" for b in s.backup_buckets]
        + [f"{bucket_arn(b)}/{SNAPSHOTS_PREFIX}*.uploading" for b in s.backup_buckets],
        owned=True,
    ),
    Grant("StaleUploadsList", ("s3:ListBucketMultipartUploads",), _buckets, owned=True),
)

# The daily backup takes the plan locks (so that POST /backup answers 409 meanwhile), and gives back the ones
# it took when another backup holds the rest (chalicelib/backup/locks.py).
SCHEDULE_LOCK_GRANTS: tuple[Grant, ...] = (
    Grant("PlanLocks", ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"), lambda s: _catalog(s, LOCKS_PREFIX), owned=True),
)


# The API (api_handler: every route) ------------------------------------------------------------------------

# The internet-facing function reads the catalog, writes only the records its routes create, and hands every
# byte of backup or restore work to a worker: it never writes data/, places delete markers, touches the
# sources, creates tables or writes to restore buckets.
API_GRANTS: tuple[Grant, ...] = (
    Grant("ApiCatalogList", ("s3:ListBucket",), _buckets, _meta_listing, owned=True),
    # Records, manifests, restore records, locks and claims.
    Grant("ApiCatalogRead", ("s3:GetObject",), lambda s: object_arns(s.backup_buckets, META_PREFIX), owned=True),
    # The storage class of a snapshot's versions (HEAD of a version), restore quotes, and POST
    # /backups/{id}/verify (HEAD of each version, re-reading a sample).
    Grant("ApiReadVersions", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, DATA_PREFIX), owned=True),
    Grant(
        "ApiRecordsWrite",
        ("s3:PutObject",),
        lambda s: _catalog(
            s,
            RECORDS_PREFIX,
            RESTORES_PREFIX,
            RESTORE_QUEUE_PREFIX,
            LOCKS_PREFIX,
            IDEMPOTENCY_PREFIX,
            PRUNES_PREFIX,
        )
        # The record of a check POST /backups/{id}/verify starts (`check-...`; the verify worker runs it), never
        # a weekly job's (`verify-...`).
        + _catalog(s, VERIFICATIONS_PREFIX + "*_check-"),
        owned=True,
    ),
    # Giving back a plan lock or an idempotency key that a request claimed before it was refused
    # (chalicelib/backup/locks.py, chalicelib/api/idempotency.py).
    Grant("ApiReleaseClaims", ("s3:DeleteObject",), lambda s: _catalog(s, LOCKS_PREFIX, IDEMPOTENCY_PREFIX), owned=True),
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


# Restores (restore_worker, resume_restores) ----------------------------------------------------------------

# Read the catalog (the backup's record, its manifests, the restore's own record and the queue of unfinished
# ones), thaw archived versions and copy exact versions (with their tags) out of the backup buckets, into the
# stage's restore buckets and into new tables named with the restore prefix; keep the restore's record and
# drop it from the queue when done.
RESTORE_GRANTS: tuple[Grant, ...] = (
    Grant("RestoreCatalogList", ("s3:ListBucket",), _buckets, _meta_listing, owned=True),
    Grant(
        "RestoreCatalogRead",
        ("s3:GetObject",),
        # Pruned markers: a snapshot retention removed is never restored.
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX) + _catalog(s, RECORDS_PREFIX, SEALED_PREFIX, RESTORES_PREFIX, PRUNED_PREFIX),
        owned=True,
    ),
    Grant("RestoreRecords", ("s3:PutObject",), lambda s: _catalog(s, RESTORES_PREFIX), owned=True),
    Grant("RestoreQueue", ("s3:DeleteObject",), lambda s: _catalog(s, RESTORE_QUEUE_PREFIX), owned=True),
    Grant(
        "RestoreReadVersions",
        ("s3:RestoreObject", "s3:GetObjectVersion", "s3:GetObjectVersionTagging"),
        lambda s: object_arns(s.backup_buckets, DATA_PREFIX),
        owned=True,
    ),
    Grant("RestoreTargetsList", ("s3:ListBucket",), lambda s: [bucket_arn(b) for b in s.restore_buckets], owned=True),
    Grant(
        "RestoreTargetsWrite",
        # AbortMultipartUpload: boto3's managed copy of a large version cleans up the upload it began.
        ("s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:AbortMultipartUpload"),
        lambda s: [f"{bucket_arn(b)}/*" for b in s.restore_buckets],
        owned=True,
    ),
    Grant(
        "RestoreTables",
        ("dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:BatchWriteItem"),
        lambda s: [table_arn(s, s.restore_table_prefix + "*")] if s.restore_table_prefix else [],
    ),
    # A snapshot older than the recorded key schema is restored with the source table's current one.
    Grant("RestoreSourceSchemas", ("dynamodb:DescribeTable",), lambda s: [table_arn(s, t) for t in s.tables]),
)


# The weekly verification job (verify_worker) -----------------------------------------------------------------

# Read only (chalicelib/verify/job.py): it lists and reads the manifests, asks S3 about exact versions
# of the data (HeadObject with VersionId) and re-reads some, writes its own record and checkpoint under
# meta/verifications/, sends its alert, and invokes itself to carry on.
VERIFY_GRANTS: tuple[Grant, ...] = (
    Grant("VerifyList", ("s3:ListBucket",), _buckets, owned=True),
    Grant(
        "VerifyRead",
        ("s3:GetObject", "s3:GetObjectVersion"),
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX, DATA_PREFIX),
        owned=True,
    ),
    Grant("VerifyRecords", ("s3:PutObject", "s3:GetObject"), lambda s: _catalog(s, VERIFICATIONS_PREFIX), owned=True),
    # Backup records, to find a snapshot, and pruned markers: a snapshot retention removed is not verified.
    Grant("VerifyCatalogRead", ("s3:GetObject",), lambda s: _catalog(s, RECORDS_PREFIX, SEALED_PREFIX, PRUNED_PREFIX), owned=True),
    Grant("VerifyAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
    Grant("VerifyContinue", ("lambda:InvokeFunction",), lambda s: s.invoked(VERIFY_WORKER)),
)


# Retention (daily_prune, prune_worker) -------------------------------------------------------------------------

# The only role that deletes versions (chalicelib/prune/). It reads the catalog and every manifest version,
# lists the versions under data/ to find the ones no kept snapshot names, marks the snapshots it removes
# (create-only markers) and keeps its own record, then deletes versions of data/ and of manifests. It writes
# nothing under data/ and cannot change a bucket's settings, lifecycle, policy or Object Lock retention: on
# a bucket with Object Lock, S3 itself refuses to delete a version before its retention date.
PRUNE_GRANTS: tuple[Grant, ...] = (
    Grant("PruneCatalogList", ("s3:ListBucket",), _buckets, _meta_listing, owned=True),
    Grant(
        "PruneVersionsList",
        ("s3:ListBucketVersions",),
        _buckets,
        lambda s: {"StringLike": {"s3:prefix": [DATA_PREFIX + "*", SNAPSHOTS_PREFIX + "*"]}},
        owned=True,
    ),
    Grant(
        "PruneCatalogRead",
        ("s3:GetObject", "s3:GetObjectVersion"),
        lambda s: object_arns(s.backup_buckets, META_PREFIX),
        owned=True,
    ),
    Grant("PruneRecords", ("s3:PutObject",), lambda s: _catalog(s, PRUNED_PREFIX, PRUNES_PREFIX), owned=True),
    Grant(
        "PruneDeleteVersions",
        ("s3:DeleteObjectVersion",),
        lambda s: object_arns(s.backup_buckets, DATA_PREFIX, SNAPSHOTS_PREFIX),
        owned=True,
    ),
    Grant("PruneAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
    Grant("PruneContinue", ("lambda:InvokeFunction",), lambda s: s.invoked(PRUNE_WORKER)),
)


# The cost report (chalicelib/cost/: GET /costs, `org-backup cost`, the daily backup's alert line) ----------------

# Read only, but for its own report. It lists every version under data/ (sizes, write times and the storage
# classes S3 reports, 1,000 to a request) and the plans' manifests, reads the backup records, the kept
# snapshots' manifests (as every reader does, SEALED_MANIFEST_GRANTS) and the prune records, asks S3 again
# about a sample of versions (HeadObject with VersionId), and keeps the report under meta/costs/ in the
# catalog. It never reads an object's content under data/ (HeadObject of a version needs GetObjectVersion).
COST_GRANTS: tuple[Grant, ...] = (
    Grant("CostCatalogList", ("s3:ListBucket",), _buckets, _meta_listing, owned=True),
    Grant(
        "CostVersionsList",
        ("s3:ListBucketVersions",),
        _buckets,
        lambda s: {"StringLike": {"s3:prefix": [DATA_PREFIX + "*"]}},
        owned=True,
    ),
    Grant(
        "CostCatalogRead",
        ("s3:GetObject",),
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX) + _catalog(s, RECORDS_PREFIX, SEALED_PREFIX, PRUNES_PREFIX),
        owned=True,
    ),
    Grant("CostVersionsHead", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, DATA_PREFIX), owned=True),
    Grant("CostReports", ("s3:PutObject", "s3:GetObject"), lambda s: _catalog(s, COSTS_PREFIX), owned=True),
)

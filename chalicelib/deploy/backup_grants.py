"""What the backup writer may be granted (`daily_backup`, `backup_worker`): one table per concern, as in
`grants.py`, whose rows, shared tables and account pinning these use."""

from __future__ import annotations

from typing import Any

from chalicelib.deploy.grants import Grant, backup_bucket_arns, catalog_objects, inventory_bucket_arns, statement
from chalicelib.deploy.scope import (
    BACKUP_WORKER,
    VERIFY_WORKER,
    Scope,
    bucket_arn,
    object_arns,
    table_arn,
)
from chalicelib.layout import (
    CHECKPOINTS_PREFIX,
    DATA_PREFIX,
    EXPORTS_PREFIX,
    LOCKS_PREFIX,
    PRUNED_PREFIX,
    RECORDS_PREFIX,
    SEALED_RECORDS_PREFIX,
    SNAPSHOTS_PREFIX,
)
from chalicelib.plans import DynamoDBSource

# The backup writer (daily_backup, backup_worker) ---------------------------------------------------------

# The backup buckets: objects under data/, manifests, checkpoints and records under meta/, and reading (never
# writing) the bucket settings that drift detection compares with the plan.
BACKUP_BUCKET_GRANTS: tuple[Grant, ...] = (
    Grant("BackupBucketsList", ("s3:ListBucket",), backup_bucket_arns, owned=True),
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
            "s3:GetInventoryConfiguration",
        ),
        backup_bucket_arns,
        owned=True,
    ),
    # Drift detection of the replication into a plan's vault (only the buckets of plans that have one).
    Grant(
        "ReplicatedBucketsReadReplication",
        ("s3:GetReplicationConfiguration",),
        lambda s: [bucket_arn(plan.bucket) for plan in s.plans if plan.offsite is not None],
        owned=True,
    ),
    # Drift detection of the inventory bucket: its policy (S3 alone writes reports) and the default
    # encryption its reports get.
    Grant(
        "InventoryBucketReadSettings",
        ("s3:GetBucketPolicy", "s3:GetEncryptionConfiguration"),
        inventory_bucket_arns,
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
    # Manifests and checkpoints next to each plan's data; the backup records and their sealed copies in the
    # catalog. Nothing else under meta/: restore records, the restore queue, verification records and their
    # sealed results are not the backup writer's to forge (the verify worker records the job a scheduled
    # backup starts, given only the backup's id).
    Grant(
        "BackupMetadata",
        ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX, CHECKPOINTS_PREFIX)
        + catalog_objects(s, RECORDS_PREFIX, SEALED_RECORDS_PREFIX),
        owned=True,
    ),
    # The base of the next backup is never a pruned snapshot (its marker).
    Grant("PrunedMarkersRead", ("s3:GetObject",), lambda s: catalog_objects(s, PRUNED_PREFIX), owned=True),
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
    Grant("StaleUploadsList", ("s3:ListBucketMultipartUploads",), backup_bucket_arns, owned=True),
)

# The daily backup takes the plan locks (so that POST /backup answers 409 meanwhile), and gives back the ones
# it took when another backup holds the rest (chalicelib/jobs/locks.py).
SCHEDULE_LOCK_GRANTS: tuple[Grant, ...] = (
    Grant("PlanLocks", ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"), lambda s: catalog_objects(s, LOCKS_PREFIX), owned=True),
)

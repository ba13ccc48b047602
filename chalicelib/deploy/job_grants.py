"""What restores, the weekly verification job, prunes and the cost report may be granted: one table per
concern, as in `grants.py`, whose rows, shared tables and account pinning these use."""

from __future__ import annotations

from typing import Any

from chalicelib.deploy.grants import RESOURCE_ACCOUNT, Grant, backup_bucket_arns, catalog_objects, meta_listing, statement
from chalicelib.deploy.offsite import vault_read_statements
from chalicelib.deploy.scope import (
    PRUNE_WORKER,
    RESTORE_WORKER,
    VERIFY_WORKER,
    Scope,
    bucket_arn,
    object_arns,
    table_arn,
)
from chalicelib.layout import (
    COSTS_PREFIX,
    DATA_PREFIX,
    INDEX_PREFIX,
    META_PREFIX,
    PACKS_PREFIX,
    PRUNE_INDEX_PREFIX,
    PRUNED_PREFIX,
    PRUNE_LOCKS_PREFIX,
    PRUNES_PREFIX,
    RECORDS_PREFIX,
    RELOCATIONS_PREFIX,
    RESTORE_QUEUE_PREFIX,
    RESTORES_PREFIX,
    SEALED_PREFIX,
    SEALED_VERIFICATIONS_PREFIX,
    SNAPSHOTS_PREFIX,
    VAULT_RESTORE_QUEUE_PREFIX,
    VAULT_RESTORES_PREFIX,
    VERIFICATIONS_PREFIX,
)

# Restores (restore_worker, resume_restores) ----------------------------------------------------------------

# Read the catalog (the backup's record, its manifests, the restore's own record and the queue of unfinished
# ones), thaw archived versions and copy exact versions (with their tags) out of the backup buckets, into the
# stage's restore buckets and into new tables named with the restore prefix; keep the restore's record and
# drop it from the queue when done.
RESTORE_GRANTS: tuple[Grant, ...] = (
    Grant("RestoreCatalogList", ("s3:ListBucket",), backup_bucket_arns, meta_listing, owned=True),
    Grant(
        "RestoreCatalogRead",
        ("s3:GetObject",),
        # Pruned markers: a snapshot retention removed is never restored.
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX) + catalog_objects(s, RECORDS_PREFIX, SEALED_PREFIX, RESTORES_PREFIX, PRUNED_PREFIX),
        owned=True,
    ),
    Grant("RestoreRecords", ("s3:PutObject",), lambda s: catalog_objects(s, RESTORES_PREFIX), owned=True),
    # A restore leaves the queue as its record says it finished, and is put back should that write lose.
    Grant("RestoreQueue", ("s3:DeleteObject", "s3:PutObject"), lambda s: catalog_objects(s, RESTORE_QUEUE_PREFIX), owned=True),
    # Which versions of the selection are archived: listed, 1,000 a request, never headed one by one.
    Grant(
        "RestoreListVersions",
        ("s3:ListBucketVersions",),
        backup_bucket_arns,
        lambda s: {"StringLike": {"s3:prefix": [DATA_PREFIX + "*"]}},
        owned=True,
    ),
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
    # A first pass too long for one invocation stops at a checkpoint and has the restore worker carry it on.
    Grant("RestoreContinue", ("lambda:InvokeFunction",), lambda s: s.invoked(RESTORE_WORKER)),
)


def _vaults(scope: Scope) -> dict[str, list[str]]:
    """The plans' vault buckets by their account."""
    found: dict[str, list[str]] = {}
    for plan in scope.plans:
        if plan.offsite is not None:
            found.setdefault(plan.offsite.account, []).append(plan.offsite.bucket)
    return {account: sorted(set(buckets)) for account, buckets in found.items()}


def _vault_restore_records(scope: Scope, *prefixes: str) -> list[str]:
    """Objects under `prefixes` of the stage's first restore bucket, where restores from the vault are recorded
    (restore/record.py `VaultRestoreStore`); none when no plan has a vault."""
    if not _vaults(scope) or not scope.restore_buckets:
        return []
    return object_arns([sorted(scope.restore_buckets)[0]], *prefixes)


def vault_restore_grants(scope: Scope) -> list[dict[str, Any]]:
    """Restores from the vault by the restore functions: read-only there (`offsite.VAULT_READS`, which each
    vault's policy grants these roles too), and the restore's queue beside its record in the stage's first
    restore bucket (its records fall under RestoreTargetsWrite)."""
    found = [s for account, buckets in sorted(_vaults(scope).items()) for s in vault_read_statements(buckets, account)]
    queue = _vault_restore_records(scope, VAULT_RESTORE_QUEUE_PREFIX)
    if queue:
        found.append(statement("VaultRestoreQueue", ("s3:DeleteObject",), queue, _owned(scope)))
    return found


def vault_restore_api_grants(scope: Scope) -> list[dict[str, Any]]:
    """POST /restores with "from": "offsite" reads the vault's catalog (the sealed record, the pruned marker),
    records the restore and queues it; GET /restores/{id}?from=offsite reads the record back."""
    found = [
        s for account, buckets in sorted(_vaults(scope).items()) for s in vault_read_statements(buckets, account)
        if s["Sid"].startswith(("VaultListTheCatalog", "VaultReadTheCatalog"))
    ]
    records = _vault_restore_records(scope, VAULT_RESTORES_PREFIX)
    queue = _vault_restore_records(scope, VAULT_RESTORE_QUEUE_PREFIX)
    if records:
        found.append(statement("VaultRestoreRecords", ("s3:GetObject", "s3:PutObject"), records, _owned(scope)))
        # A record that could not be written takes its queue entry away again.
        found.append(statement("VaultRestoreQueue", ("s3:DeleteObject", "s3:PutObject"), queue, _owned(scope)))
    return found


def _owned(scope: Scope) -> dict[str, Any] | None:
    return {"StringEquals": {RESOURCE_ACCOUNT: scope.account}} if scope.account != "*" else None


# The weekly verification job (verify_worker) -----------------------------------------------------------------

# Reads (chalicelib/verify/job.py): it lists and reads the manifests, asks S3 about exact versions of the
# data (HeadObject with VersionId) and re-reads some, keeps the kept index under meta/index/, writes its own
# record and checkpoint under meta/verifications/, sends its alert, and invokes itself to carry on.
VERIFY_GRANTS: tuple[Grant, ...] = (
    Grant("VerifyList", ("s3:ListBucket",), backup_bucket_arns, owned=True),
    Grant(
        "VerifyRead",
        ("s3:GetObject", "s3:GetObjectVersion"),
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX, DATA_PREFIX),
        owned=True,
    ),
    # The kept index (chalicelib/catalog/kept_index.py): derived from the manifests and written create-only;
    # nothing else of a backup bucket is written (the prune deletes superseded indexes).
    Grant("VerifyIndex", ("s3:PutObject", "s3:GetObject"), lambda s: object_arns(s.backup_buckets, INDEX_PREFIX), owned=True),
    # Its records (the weekly job's first one too: the backup only hands the worker its id), and the sealed
    # result of a finished job (create-only), which no other role may write.
    Grant(
        "VerifyRecords",
        ("s3:PutObject", "s3:GetObject"),
        lambda s: catalog_objects(s, VERIFICATIONS_PREFIX, SEALED_VERIFICATIONS_PREFIX),
        owned=True,
    ),
    # Backup records, to find a snapshot, and pruned markers: a snapshot retention removed is not verified.
    Grant("VerifyCatalogRead", ("s3:GetObject",), lambda s: catalog_objects(s, RECORDS_PREFIX, SEALED_PREFIX, PRUNED_PREFIX), owned=True),
    Grant("VerifyAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
    Grant("VerifyContinue", ("lambda:InvokeFunction",), lambda s: s.invoked(VERIFY_WORKER)),
)


# Retention (daily_prune, prune_worker) -------------------------------------------------------------------------

# The only role that deletes versions (chalicelib/prune/). It reads the catalog and every manifest version,
# lists the versions under data/ to find the ones no kept snapshot names (or, with an inventory, keeps its own
# kept index under meta/prune-index/, which no other role may write), marks the snapshots it removes
# (create-only markers) and keeps its own record, then deletes versions of data/ and of manifests. Under
# data/ it writes only the packs it repacks (chalicelib/prune/repack.py: it reads the live objects of an old
# pack version by range, writes a new pack and its create-only relocation record under meta/relocations/,
# which no other role may write). It cannot change a bucket's settings, lifecycle, policy or Object Lock retention: on
# a bucket with Object Lock, S3 itself refuses to delete a version before its retention date.
PRUNE_GRANTS: tuple[Grant, ...] = (
    Grant("PruneCatalogList", ("s3:ListBucket",), backup_bucket_arns, meta_listing, owned=True),
    # meta/backups/: S3's time for a backup record's first version dates the backup's start (prune/backdating.py).
    Grant(
        "PruneVersionsList",
        ("s3:ListBucketVersions",),
        backup_bucket_arns,
        lambda s: {
            "StringLike": {
                "s3:prefix": [
                    DATA_PREFIX + "*", SNAPSHOTS_PREFIX + "*", INDEX_PREFIX + "*", PRUNE_INDEX_PREFIX + "*", RECORDS_PREFIX + "*",
                    RELOCATIONS_PREFIX + "*",
                ]
            }
        },
        owned=True,
    ),
    Grant(
        "PruneCatalogRead",
        ("s3:GetObject", "s3:GetObjectVersion"),
        lambda s: object_arns(s.backup_buckets, META_PREFIX),
        owned=True,
    ),
    Grant("PruneRecords", ("s3:PutObject",), lambda s: catalog_objects(s, PRUNED_PREFIX, PRUNES_PREFIX), owned=True),
    # One prune per plan at a time: the scheduled prune takes the plans' prune locks (chalicelib/jobs/locks.py).
    Grant("PruneLocks", ("s3:PutObject",), lambda s: catalog_objects(s, PRUNE_LOCKS_PREFIX), owned=True),
    # The prune's own kept index (chalicelib/prune/references.py): the prune deletes what it does not protect,
    # so this role alone writes it.
    Grant("PruneIndex", ("s3:PutObject",), lambda s: object_arns(s.backup_buckets, PRUNE_INDEX_PREFIX), owned=True),
    # A repack (chalicelib/prune/repack.py): ranged GETs of an old pack version, the new pack written and
    # checked (HEAD), then its relocation record, create-only (the bucket policy refuses it otherwise).
    Grant("PruneRepackRead", ("s3:GetObject", "s3:GetObjectVersion"), lambda s: object_arns(s.backup_buckets, PACKS_PREFIX), owned=True),
    # Every version of the relocation records: one hidden or rewritten stops the prune's deletions.
    Grant("PruneRelocationVersionsRead", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, RELOCATIONS_PREFIX), owned=True),
    Grant("PruneRepackWrite", ("s3:PutObject",), lambda s: object_arns(s.backup_buckets, PACKS_PREFIX, RELOCATIONS_PREFIX), owned=True),
    Grant(
        "PruneDeleteVersions",
        ("s3:DeleteObjectVersion",),
        # meta/index/, meta/prune-index/: the kept indexes a newer one superseded (chalicelib/catalog/kept_index.py).
        lambda s: object_arns(s.backup_buckets, DATA_PREFIX, SNAPSHOTS_PREFIX, INDEX_PREFIX, PRUNE_INDEX_PREFIX),
        owned=True,
    ),
    Grant("PruneAlerts", ("sns:Publish",), lambda s: sorted(set(s.topic_arns))),
    Grant("PruneContinue", ("lambda:InvokeFunction",), lambda s: s.invoked(PRUNE_WORKER)),
)


# The cost report (chalicelib/cost/: GET /costs, `org-backup cost`, the daily backup's alert line) ----------------

# Read only, but for its own report. It lists every version under data/ (sizes, write times and the storage
# classes S3 reports, 1,000 to a request) and the plans' manifests, reads the backup records, the kept
# snapshots' manifests (as every reader does, SEALED_MANIFEST_GRANTS) or, with an inventory, the prune's kept
# index under meta/prune-index/ (read, never written: only the prune's role writes there) and the prune
# records, asks S3 again about a sample of versions (HeadObject with VersionId), and keeps the report under
# meta/costs/ in the catalog. It never reads an object's content under data/ (HeadObject of a version needs
# GetObjectVersion).
COST_GRANTS: tuple[Grant, ...] = (
    Grant("CostCatalogList", ("s3:ListBucket",), backup_bucket_arns, meta_listing, owned=True),
    Grant(
        "CostVersionsList",
        ("s3:ListBucketVersions",),
        backup_bucket_arns,
        lambda s: {"StringLike": {"s3:prefix": [DATA_PREFIX + "*"]}},
        owned=True,
    ),
    Grant(
        "CostCatalogRead",
        ("s3:GetObject",),
        lambda s: object_arns(s.backup_buckets, SNAPSHOTS_PREFIX, PRUNE_INDEX_PREFIX)
        + catalog_objects(s, RECORDS_PREFIX, SEALED_PREFIX, PRUNES_PREFIX),
        owned=True,
    ),
    Grant("CostVersionsHead", ("s3:GetObjectVersion",), lambda s: object_arns(s.backup_buckets, DATA_PREFIX), owned=True),
    Grant("CostReports", ("s3:PutObject", "s3:GetObject"), lambda s: catalog_objects(s, COSTS_PREFIX), owned=True),
)

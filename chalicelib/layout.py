"""Where everything lives in a backup bucket. Every prefix the system reads or writes is named here once.

    data/<source>/<source key>                         backed-up objects (lifecycle rules apply here only)
    data/~long/<source>/<sha256 of the source key>     the same, for keys too long for the line above
    data/~exports/<source>/<backup_id>-<token>/...     DynamoDB's own export files, before they are joined
    data/~packs/<backup_id>/<token>-<seq>.pack         packs: many small objects in one (plans that pack)
    meta/relocations/<pack path>/<version id>.json     where a repacked pack version's objects are now (create-only)
    meta/snapshots/<plan>/<backup_id>.jsonl.gz         one manifest per plan per backup
    meta/snapshots/<plan>/<backup_id>.checkpoint.json  where an unfinished plan run stopped
    meta/snapshots/<plan>/<backup_id>.uploading        a run of this backup began multipart copies
    meta/index/<plan>/<backup_id>-<digest>.jsonl.gz   the distinct versions the kept snapshots name (derived)
    meta/checkpoints/<plan>/<backup_id>/...            partial manifests of unfinished runs, split records
    meta/backups/<inverted time>_<backup_id>.json      backup records (in the catalog bucket)
    meta/sealed/backups/<same name>                    finished backups' records, written once (create-only)
    meta/locks/<plan>.json                             one backup per plan at a time (catalog bucket)
    meta/locks/prune/<plan>.json                       one prune per plan at a time (catalog bucket)
    meta/idempotency/<sha256 of key>.json              Idempotency-Key claims (catalog bucket)
    meta/restores/<inverted time>_<restore_id>.json    restore records (catalog bucket)
    meta/restore-queue/<restore_id>                    restores not finished yet (catalog bucket)
    meta/verifications/<inverted time>_<job_id>.json   weekly verification jobs, with their checkpoint (catalog bucket)
    meta/sealed/verifications/<same name>              finished verifications' results, written once (create-only)
    meta/pruned/<inverted time>_<backup_id>/<plan>.json a snapshot the prune removes, written once (catalog bucket)
    meta/vault-pruned/<same name as pruned>            a snapshot the vault's own prune removes (vault only)
    meta/prunes/<inverted time>_<prune_id>.json        prune jobs, with their checkpoint (catalog bucket)
    meta/costs/<backup_id>.json                        the cost report computed after that backup (catalog bucket)
    meta/costs/plans/<plan>.json                       a plan's figures and the inventory report they came from

Lifecycle rules are scoped to `data/`, so metadata stays in S3 Standard, readable at once; the one exception
is a plan's own rule for its kept manifests over 128 KB, which move to GLACIER_IR (read at once too, billed
per GB read) after the plan's `manifest_glacier_ir_days` (deploy/bucket_settings.py `manifest_rule`).
"""

from __future__ import annotations

import hashlib

DATA_PREFIX = "data/"
META_PREFIX = "meta/"
SNAPSHOTS_PREFIX = META_PREFIX + "snapshots/"
MANIFEST_SUFFIX = ".jsonl.gz"
CHECKPOINTS_PREFIX = META_PREFIX + "checkpoints/"
# How the file name of a partial manifest under a run's checkpoints starts (beside them lie a table scan's
# state files, never manifests).
PARTIAL_MANIFEST_START = "partial-"
# The kept index (chalicelib/catalog/kept_index.py): derived from the manifests, rewritten as they change.
INDEX_PREFIX = META_PREFIX + "index/"
# The prune's own kept index: outside INDEX_PREFIX, so that only the prune's role may write it.
PRUNE_INDEX_PREFIX = META_PREFIX + "prune-index/"
RECORDS_PREFIX = META_PREFIX + "backups/"
# Written once, never replaced: the bucket policy refuses a PutObject here without If-None-Match.
SEALED_PREFIX = META_PREFIX + "sealed/"
SEALED_RECORDS_PREFIX = SEALED_PREFIX + "backups/"
# A verification's result, written once by the verify worker when it ends: the only copy whose findings count.
SEALED_VERIFICATIONS_PREFIX = SEALED_PREFIX + "verifications/"
# One create-only marker per tampering finding, so that each is alerted once (notify/tampering.py).
TAMPERING_PREFIX = META_PREFIX + "tampering/"
LOCKS_PREFIX = META_PREFIX + "locks/"
# One prune per plan at a time (chalicelib/jobs/locks.py); backups' locks are the plans' names under LOCKS_PREFIX.
PRUNE_LOCKS_PREFIX = LOCKS_PREFIX + "prune/"
IDEMPOTENCY_PREFIX = META_PREFIX + "idempotency/"
RESTORES_PREFIX = META_PREFIX + "restores/"
RESTORE_QUEUE_PREFIX = META_PREFIX + "restore-queue/"
# Restores from the vault run by the deployed functions are recorded outside the vault and outside the backup
# buckets (whose loss they are for): in the stage's first restore bucket, under these prefixes
# (restore/record.py `VaultRestoreStore`). No restore writes under the reserved prefix of that bucket
# (restore/prepare.py `RestoreChecks`), so none can overwrite them.
RESTORE_BUCKET_RESERVED_PREFIX = "org-backup/"
VAULT_RESTORES_PREFIX = RESTORE_BUCKET_RESERVED_PREFIX + "vault-restores/"
VAULT_RESTORE_QUEUE_PREFIX = RESTORE_BUCKET_RESERVED_PREFIX + "vault-restore-queue/"
VERIFICATIONS_PREFIX = META_PREFIX + "verifications/"
# A snapshot is marked here before the prune deletes anything of it; written once, like sealed records.
PRUNED_PREFIX = META_PREFIX + "pruned/"
# In a vault, its own prune's markers: replication never writes here (meta/pruned/ there holds replicas).
VAULT_PRUNED_PREFIX = META_PREFIX + "vault-pruned/"
PRUNES_PREFIX = META_PREFIX + "prunes/"
COSTS_PREFIX = META_PREFIX + "costs/"
# A plan's last figures computed from an inventory report, reused until the next report (cost/reports.py).
PLAN_FIGURES_PREFIX = COSTS_PREFIX + "plans/"


# S3 refuses keys longer than 1,024 bytes of UTF-8 (KeyTooLongError).
MAX_KEY_BYTES = 1024
LONG_KEYS_PREFIX = DATA_PREFIX + "~long/"
# Where DynamoDB writes a table export (chalicelib/backup/table_export.py); like `~long/`, never a source's name.
EXPORTS_PREFIX = DATA_PREFIX + "~exports/"
# Packs of small objects (chalicelib/backup/packing.py): under `data/`, so the lifecycle moves them too.
PACKS_PREFIX = DATA_PREFIX + "~packs/"
PACK_SUFFIX = ".pack"
# Relocation records of repacked packs (chalicelib/catalog/relocations.py): under `meta/`, not beside the packs,
# so that the backup role (which writes `data/`) cannot write one, the lifecycle never archives one, and the
# prune's sweep of `data/` versions never takes one for an unreferenced version.
RELOCATIONS_PREFIX = META_PREFIX + "relocations/"


def pack_key(backup_id: str, token: str, seq: int) -> str:
    """A pack written by a run of `backup_id` (`token`: the invocation's, so no two writers share a key)."""
    return f"{PACKS_PREFIX}{backup_id}/{token}-{seq:06d}{PACK_SUFFIX}"


def data_key(source: str, key: str) -> str:
    """Where a source object lives in the backup bucket: `data/<source>/<key>`, or, when that would pass S3's
    1,024-byte limit, a deterministic short name (the SHA-256 of the key) under `data/~long/<source>/`. Source
    names cannot start with '~', so the two never meet; the manifest keeps the original key, and a restore
    gives it back."""
    full = f"{DATA_PREFIX}{source}/{key}"
    if len(full.encode("utf-8")) <= MAX_KEY_BYTES:
        return full
    return f"{LONG_KEYS_PREFIX}{source}/{hashlib.sha256(key.encode('utf-8')).hexdigest()}"

"""Which grant tables (`grants.py`, `backup_grants.py`, `job_grants.py`) each function's role is made of: a
role per function, so that whoever holds one function's credentials can do that function's job and nothing
more.

| function | may |
|---|---|
| `api_handler` (internet-facing) | read the catalog and HEAD data versions; list and read the inventory reports (the cost report); write the records its routes create and its plan locks and idempotency claims (meta/ of the catalog only); start the backup and restore workers; for a plan with a vault, list and read the vault's replicated catalog, and record a restore from the vault in the first restore bucket |
| `daily_backup`, `backup_worker` | read the sources (tables by scan, or by DynamoDB's export into data/~exports/ of the plan's bucket); write data/ (delete markers included), manifests, checkpoints, backup records; read bucket settings, inventory configurations and (for a plan with a vault) replication configurations (drift); list and read the inventory reports (the cost report); alert; invoke the backup and verify workers. The daily backup also takes the plan locks |
| `restore_worker`, `resume_restores` | read the catalog and data versions; thaw; write the restore buckets and create `restored-*` tables; keep restore records and the queue; start the restore worker (a first pass carried on); for a plan with a vault, read only there (list, read the replicated catalog and data versions, thaw), and keep a restore from the vault's record and queue in the first restore bucket |
| `verify_worker` | read manifests and data versions; list and read the inventory reports; keep the kept index (meta/index/, create-only); write its records under meta/verifications/; alert; invoke itself |
| `daily_prune`, `prune_worker` | read the catalog and every manifest version; list versions under data/ and meta/snapshots/; list and read the inventory reports; keep the prune's own kept index (meta/prune-index/, which no other role may write); mark pruned snapshots and keep prune records; delete versions under data/ and meta/snapshots/, and superseded kept indexes; alert; invoke itself |
| `notifier` | alert a tampering finding and write its marker under meta/tampering/ (the only role that may) |
| `heartbeat` | list and read the sealed backup records; publish the heartbeat metric (the only role that may) |

Every role but the notifier's hands the tampering it finds to the notifier (`TAMPERING_GRANTS`: invoke it),
and none of the roles that write backups may publish the heartbeat: whoever holds their keys cannot keep an
alert or the 26-hour alarm quiet.

The cost report (`COST_GRANTS`: list versions under data/, read records, manifests, the prune's kept index
(never written) and prune records, HEAD a sample of versions, keep the report under meta/costs/) goes with `GET /costs` in `api_handler` and with the
daily backup's alert, computed where the backup finishes (`daily_backup` or `backup_worker`).

The prune functions are the only roles with `s3:DeleteObjectVersion` (`DELETES_VERSIONS`): `policy.py`'s
forbidden-action check lets those roles have that one action and no other role.
"""

from __future__ import annotations

from chalicelib.deploy import backup_grants, grants, job_grants
from chalicelib.deploy.grants import Concern
from chalicelib.deploy.scope import (
    API_HANDLER,
    BACKUP_WORKER,
    DAILY_BACKUP,
    DAILY_PRUNE,
    HEARTBEAT,
    NOTIFIER,
    PRUNE_WORKER,
    RESTORE_WORKER,
    RESUME_RESTORES,
    VERIFY_WORKER,
)

# Both backup functions run the same engine: the schedule's invocation backs up in-process until it must
# carry on in the worker.
BACKUP_WRITER: tuple[Concern, ...] = (
    backup_grants.BACKUP_BUCKET_GRANTS,
    backup_grants.source_grants,
    backup_grants.SOURCE_TABLE_GRANTS,
    backup_grants.TABLE_EXPORT_GRANTS,
    grants.WRITER_KEY_GRANTS,
    grants.ALERT_GRANTS,
    backup_grants.BACKUP_INVOKE_GRANTS,
    grants.LOG_GRANTS,
    backup_grants.LONG_RUN_GRANTS,
    grants.TAMPERING_GRANTS,
    grants.SEALED_MANIFEST_GRANTS,
)

# What every reader of the catalog has beside its own table.
READER: tuple[Concern, ...] = (
    grants.READER_KEY_GRANTS,
    grants.LOG_GRANTS,
    grants.TAMPERING_GRANTS,
    grants.SEALED_MANIFEST_GRANTS,
)

# Both restore functions run passes of recorded restores: the worker the first, the hourly check the rest.
RESTORER: tuple[Concern, ...] = (job_grants.RESTORE_GRANTS, job_grants.vault_restore_grants, *READER)

# Both prune functions run the same job: the schedule's invocation starts it, the worker carries it on.
PRUNER: tuple[Concern, ...] = (
    job_grants.PRUNE_GRANTS,
    grants.READER_KEY_GRANTS,
    grants.LOG_GRANTS,
    grants.TAMPERING_GRANTS,
    grants.INVENTORY_READ_GRANTS,
)


ROLES: dict[str, tuple[Concern, ...]] = {
    API_HANDLER: (grants.API_GRANTS, job_grants.vault_restore_api_grants, *READER, job_grants.COST_GRANTS, grants.INVENTORY_READ_GRANTS),
    DAILY_BACKUP: BACKUP_WRITER + (backup_grants.SCHEDULE_LOCK_GRANTS, job_grants.COST_GRANTS, grants.INVENTORY_READ_GRANTS),
    BACKUP_WORKER: BACKUP_WRITER + (job_grants.COST_GRANTS, grants.INVENTORY_READ_GRANTS),
    RESTORE_WORKER: RESTORER,
    RESUME_RESTORES: RESTORER,
    VERIFY_WORKER: (job_grants.VERIFY_GRANTS, *READER, grants.INVENTORY_READ_GRANTS),
    DAILY_PRUNE: PRUNER,
    PRUNE_WORKER: PRUNER,
    NOTIFIER: (grants.NOTIFIER_GRANTS, grants.LOG_GRANTS),
    HEARTBEAT: (grants.HEARTBEAT_GRANTS, grants.READER_KEY_GRANTS, grants.LOG_GRANTS),
}

# The roles that may delete versions, and the one forbidden action they are allowed.
DELETES_VERSIONS: frozenset[str] = frozenset({DAILY_PRUNE, PRUNE_WORKER})

FUNCTIONS: tuple[str, ...] = tuple(ROLES)

"""The vault bucket: what it must look like, how it differs (`vault_differences`), and making it so
(`provision_vault`), with the vault account's credentials. Read with get_* calls only, except by
`provision_vault`.

Versioned, Object Lock in COMPLIANCE mode for the plan's `object_lock_days` by default, ACLs disabled, all public
access blocked, SSE-S3, and a policy whose one write grant is to the replication role, for replicas only (and
whose one read grant is to the stage's restore functions' roles: list, read, thaw); no one may
replicate a deletion into it, no principal of another account may delete, expire or unlock anything there, and
no request without TLS is served.

The vault's own retention is a lifecycle rule of the vault account: a version expires once it has been
noncurrent (replaced by a newer replica of its key) for longer than the plan's retention horizon, and never
while its lock lasts. A version a kept snapshot names was current when that snapshot was taken, and no kept
snapshot is older than the horizon: the rule never expires what a kept snapshot still names, whatever the
backup account does (`vault_expiration_days`). What the source deleted stays current there (delete markers are
not replicated): the vault's own prune removes it (`org-backup prune --from offsite`, the vault account's).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.deploy.bucket_differences import canonical_rule, describe_rule
from chalicelib.deploy.bucket_settings import OBJECT_OWNERSHIP, PUBLIC_ACCESS_BLOCK, tls_statement
from chalicelib.deploy.bucket_state import BucketState, bucket_exists, read_state
from chalicelib.deploy.offsite import VaultError, replicated_objects, vault_of, vault_read_statements
from chalicelib.plans import Plan

VAULT_REPLICAS_SID = "ReplicasFromTheBackupBucket"
ONLY_THE_ROLE_SID = "OnlyTheReplicationRoleReplicates"
NO_DELETES_SID = "NoReplicatedDeletes"
ONLY_THE_VAULT_ACCOUNT_SID = "OnlyTheVaultAccountDeletesOrExpires"
# What would remove, expire or unlock versions of the vault, or change who may: denied to every principal of
# another account (the backup account's included), whatever their own policies allow.
VAULT_ACCOUNT_ONLY_ACTIONS = (
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutLifecycleConfiguration", "s3:PutObjectRetention",
    "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold", "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketVersioning", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:DeleteBucket",
)
SSE_S3 = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def vault_policy(plan: Plan, role_arn: str, readers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Only the replication role comes in to write, and only replicas; only the `readers` (the stage's restore
    functions' roles, `offsite.restore_reader_arns`) come in to read, list and thaw (`offsite.VAULT_READS`),
    nothing else; nothing replicates a deletion; no request without TLS. (The vault account's own
    administrators are let in by their IAM policies, as in any bucket.)"""
    vault = vault_of(plan)
    bucket_arn, objects = f"arn:aws:s3:::{vault.bucket}", f"arn:aws:s3:::{vault.bucket}/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            tls_statement(vault.bucket),
            {
                "Sid": VAULT_REPLICAS_SID,
                "Effect": "Allow",
                "Principal": {"AWS": role_arn},
                "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                "Resource": replicated_objects(vault.bucket),
            },
            {
                "Sid": "ReplicationRoleReadsVersioning",
                "Effect": "Allow",
                "Principal": {"AWS": role_arn},
                "Action": "s3:GetBucketVersioning",
                "Resource": bucket_arn,
            },
            {
                "Sid": ONLY_THE_ROLE_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                "Resource": objects,
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": role_arn}},
            },
            *(vault_read_statements([vault.bucket], vault.account, readers) if readers else []),
            {"Sid": NO_DELETES_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:ReplicateDelete", "Resource": objects},
            {
                "Sid": ONLY_THE_VAULT_ACCOUNT_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(VAULT_ACCOUNT_ONLY_ACTIONS),
                "Resource": [bucket_arn, objects],
                "Condition": {"StringNotEquals": {"aws:PrincipalAccount": vault.account}},
            },
        ],
    }


def vault_expiration_days(plan: Plan) -> int:
    """How long a version stays in the vault once a newer replica of its key replaced it: longer than the plan's
    retention horizon (no kept snapshot names it any more), and no shorter than the vault's lock (S3 expires
    no locked version)."""
    return max(vault_of(plan).object_lock_days, plan.retention.horizon_days() + 1)


def vault_lifecycle(plan: Plan) -> list[dict[str, Any]]:
    """The vault's lifecycle rules: noncurrent versions expire after `vault_expiration_days`; nothing else (a
    current version is what the newest snapshots name, and what the source deleted stays: delete markers are
    not replicated)."""
    return [{
        "ID": f"{plan.name}-vault-expire-replaced-versions",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": vault_expiration_days(plan)},
    }]


def object_lock_configuration(plan: Plan) -> dict[str, Any]:
    return {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": vault_of(plan).object_lock_days}},
    }


def _lock_as_compared(configuration: dict[str, Any] | None) -> tuple[Any, ...]:
    """Whether Object Lock is on, and its default mode, days and years (an absent period reads 0)."""
    retention = ((configuration or {}).get("Rule") or {}).get("DefaultRetention") or {}
    return (
        (configuration or {}).get("ObjectLockEnabled"),
        retention.get("Mode"), int(retention.get("Days") or 0), int(retention.get("Years") or 0),
    )


def vault_differences(
    plan: Plan, state: BucketState, role_arn: str | None, readers: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """(setting, what is wrong) for each way the vault differs from the plan; `role_arn` None leaves the
    policy's principals unchecked (the reader does not know the backup account); `readers`: the restore
    functions' roles the policy lets read."""
    vault = vault_of(plan)
    found: list[tuple[str, str]] = []
    if state.versioning != "Enabled":
        found.append(("versioning", f"versioning is {state.versioning or 'off'}: S3 replicates into no unversioned bucket"))
    lock = _lock_as_compared(state.object_lock)
    if lock[0] != "Enabled":
        found.append(("object lock", "has no Object Lock: whoever holds the vault account can delete every replica"))
    elif lock[1:] != _lock_as_compared(object_lock_configuration(plan))[1:]:
        found.append(("object lock retention", f"its default retention is {lock[1] or 'none'} for {lock[2]} days and "
                      f"{lock[3]} years, not COMPLIANCE for {vault.object_lock_days} days"))
    if state.ownership != OBJECT_OWNERSHIP:
        found.append(("ownership", f"object ownership is {state.ownership or 'not set'}, not {OBJECT_OWNERSHIP}"))
    if state.public_access_block != PUBLIC_ACCESS_BLOCK:
        found.append(("public access", "public access is not blocked in all four ways"))
    if state.encryption is None:
        found.append(("encryption", "has no default encryption"))
    wanted_rules = sorted((canonical_rule(rule) for rule in vault_lifecycle(plan)), key=str)
    if state.lifecycle is None:
        found.append(("lifecycle", "has no lifecycle rule: nothing expires there, storage grows with every version replaced"))
    elif sorted((canonical_rule(rule) for rule in state.lifecycle), key=str) != wanted_rules:
        rules = "; ".join(describe_rule(canonical_rule(rule)) for rule in state.lifecycle) or "none"
        found.append(("lifecycle", f"its lifecycle rules are not the provisioned ones (replaced versions expire after "
                      f"{vault_expiration_days(plan)} days, nothing else): {rules}"))
    if role_arn is not None and state.policy != vault_policy(plan, role_arn, readers):
        found.append(("policy", "its policy is not the one provisioned (it may let in more than the replication role)"))
    elif role_arn is None and not any(s.get("Sid") == NO_DELETES_SID for s in (state.policy or {}).get("Statement", [])):
        found.append(("policy", "its policy does not deny replicated deletions"))
    return found


def provision_vault(s3: Any, plan: Plan, role_arn: str, readers: tuple[str, ...] = ()) -> list[str]:
    """The vault side, with the vault account's credentials (`s3` in the vault's region). Returns what it
    changed. A vault whose Object Lock is off cannot be fixed here (`VaultError`): S3 could switch it on, but
    an administrator should first know that replicas were written there unlocked."""
    vault = vault_of(plan)
    changes: list[str] = []
    if not bucket_exists(s3, vault.bucket):
        params: dict[str, Any] = {"Bucket": vault.bucket, "ObjectLockEnabledForBucket": True}
        if vault.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": vault.region}
        s3.create_bucket(**params)
        changes.append("created the vault bucket with Object Lock")
    state = read_state(s3, vault.bucket)
    if state.unreadable:
        raise VaultError(f"vault {vault.bucket} (plan '{plan.name}'): " + "; ".join(f"{k}: {v}" for k, v in state.unreadable.items()))
    settings = {setting for setting, _ in vault_differences(plan, state, role_arn, readers)}
    if "object lock" in settings:
        raise VaultError(
            f"vault {vault.bucket} (plan '{plan.name}') exists without Object Lock; nothing was changed. Replicas "
            "written there so far were never locked: check them, then create the vault anew with Object Lock"
        )
    # Order matters: versioning before Object Lock's retention, ownership and the access block before the policy.
    if "versioning" in settings:
        s3.put_bucket_versioning(Bucket=vault.bucket, VersioningConfiguration={"Status": "Enabled"})
        changes.append("enabled versioning")
    if "ownership" in settings:
        s3.put_bucket_ownership_controls(Bucket=vault.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": OBJECT_OWNERSHIP}]})
        changes.append(f"set object ownership to {OBJECT_OWNERSHIP}")
    if "public access" in settings:
        s3.put_public_access_block(Bucket=vault.bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK))
        changes.append("blocked all public access")
    if "encryption" in settings:
        s3.put_bucket_encryption(Bucket=vault.bucket, ServerSideEncryptionConfiguration={"Rules": [SSE_S3]})
        changes.append("set default encryption to SSE-S3")
    if "policy" in settings:
        s3.put_bucket_policy(Bucket=vault.bucket, Policy=json.dumps(vault_policy(plan, role_arn, readers)))
        changes.append("set the policy that lets in only the replication role" + (" and the restore functions' roles" if readers else ""))
    if "object lock retention" in settings:
        s3.put_object_lock_configuration(Bucket=vault.bucket, ObjectLockConfiguration=object_lock_configuration(plan))
        changes.append(f"set Object Lock to COMPLIANCE for {vault.object_lock_days} days")
    if "lifecycle" in settings:
        s3.put_bucket_lifecycle_configuration(Bucket=vault.bucket, LifecycleConfiguration={"Rules": vault_lifecycle(plan)})
        changes.append(f"set its lifecycle: replaced versions expire after {vault_expiration_days(plan)} days")
    return changes


def vault_drift(s3: Any, plan: Plan, role_arn: str | None = None, readers: tuple[str, ...] = ()) -> list[str]:
    """What differs between the plan's vault and the plan, one readable line each (get_* calls only, with the
    vault account's credentials)."""
    vault = vault_of(plan)
    try:
        state = read_state(s3, vault.bucket)
        if not state.exists:
            return [f"vault {vault.bucket}: does not exist: nothing is replicated"]
    except (ClientError, BotoCoreError) as exc:
        return [f"vault {vault.bucket}: its settings could not be read: {exc}"]
    found = [f"vault {vault.bucket}: {setting}: could not be read ({reason})" for setting, reason in state.unreadable.items()]
    return found + [f"vault {vault.bucket}: {message}" for _, message in vault_differences(plan, state, role_arn, readers)]

"""The second copy: S3 Replication from each backup bucket into its plan's vault (`plans.Offsite`), in another
account or region.

Two sides, each provisioned with its own account's credentials (`make provision`):

- the source side (`provision_replication`): a role S3 assumes to replicate one backup bucket, allowed to read
  only that bucket's replicated prefixes and to write replicas only into its vault, never to replicate a
  deletion; and the bucket's replication configuration, one rule per replicated prefix, delete markers not
  replicated. Backed-up objects go to the vault in the plan's storage class; manifests, sealed records and
  pruned markers in STANDARD, so that a restore from the vault reads them at once.
- the vault side (`provision_vault`): the bucket, versioned, with Object Lock in COMPLIANCE mode for the plan's
  days, all public access blocked, ACLs disabled, encrypted, and a policy that lets in the replication role
  alone, for replicas only.

Replicas keep their version ids, so the manifests and sealed records replicated beside them name the vault's
versions as they name the backup bucket's. Both functions change only what differs, and return what they
changed: a second run changes nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from chalicelib.deploy.bucket_settings import OBJECT_OWNERSHIP, PUBLIC_ACCESS_BLOCK, tls_statement
from chalicelib.deploy.bucket_state import bucket_exists, read_state
from chalicelib.errors import BackupError, error_code
from chalicelib.layout import DATA_PREFIX, PRUNED_PREFIX, SEALED_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import Offsite, Plan

# What is replicated, and in which storage class (None: the vault's `storage_class`).
REPLICATED_PREFIXES: tuple[tuple[str, str | None], ...] = (
    (DATA_PREFIX, None),
    (SNAPSHOTS_PREFIX, "STANDARD"),
    (SEALED_PREFIX, "STANDARD"),
    (PRUNED_PREFIX, "STANDARD"),
)
ROLE_POLICY_NAME = "replicate-to-vault"
VAULT_REPLICAS_SID = "ReplicasFromTheBackupBucket"
ONLY_THE_ROLE_SID = "OnlyTheReplicationRoleReplicates"
NO_DELETES_SID = "NoReplicatedDeletes"
# IAM role names are at most 64 characters.
MAX_ROLE_NAME = 64


class VaultError(BackupError):
    """The vault cannot be provisioned as the plan says (another account owns the name, or a setting S3 will not
    change); nothing more was changed."""


def _vault(plan: Plan) -> Offsite:
    if plan.offsite is None:
        raise VaultError(f"plan '{plan.name}' has no 'offsite' vault")
    return plan.offsite


def replication_role_name(plan: Plan) -> str:
    suffix = "-replication"
    return plan.bucket[: MAX_ROLE_NAME - len(suffix)] + suffix


def replication_role_arn(plan: Plan, account: str) -> str:
    return f"arn:aws:iam::{account}:role/{replication_role_name(plan)}"


def trust_policy(plan: Plan, account: str) -> dict[str, Any]:
    """S3 may assume the role, for this bucket of this account only (no confused deputy)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account},
                "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{plan.bucket}"},
            },
        }],
    }


def _objects(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix, _ in REPLICATED_PREFIXES]


def role_policy(plan: Plan) -> dict[str, Any]:
    """What S3 Replication needs and no more: read the replication configuration and the replicated prefixes'
    versions of this backup bucket, write replicas and their tags into this vault. No s3:ReplicateDelete:
    a deletion in the backup bucket never reaches the vault, whatever the configuration says."""
    vault = _vault(plan)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadTheReplicationConfiguration",
                "Effect": "Allow",
                "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                "Resource": f"arn:aws:s3:::{plan.bucket}",
            },
            {
                "Sid": "ReadTheVersionsToReplicate",
                "Effect": "Allow",
                "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
                "Resource": _objects(plan.bucket),
            },
            {
                "Sid": "WriteReplicasIntoTheVault",
                "Effect": "Allow",
                "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                "Resource": _objects(vault.bucket),
            },
        ],
    }


def rule_id(plan: Plan, prefix: str) -> str:
    return f"{plan.name}-vault-{prefix.strip('/').replace('/', '-')}"


def replication_configuration(plan: Plan, account: str) -> dict[str, Any]:
    """`PutBucketReplication`'s `ReplicationConfiguration`: one enabled rule per replicated prefix."""
    vault = _vault(plan)
    rules = []
    for priority, (prefix, storage_class) in enumerate(REPLICATED_PREFIXES, start=1):
        rules.append({
            "ID": rule_id(plan, prefix),
            "Priority": priority,
            "Status": "Enabled",
            "Filter": {"Prefix": prefix},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{vault.bucket}", "StorageClass": storage_class or vault.storage_class},
        })
    return {"Role": replication_role_arn(plan, account), "Rules": rules}


def rules_as_compared(configuration: dict[str, Any] | None) -> list[tuple[Any, ...]]:
    """The parts of a replication configuration that decide what reaches the vault, in a form that compares
    alike however S3 (or moto) answered it."""
    found = []
    for rule in (configuration or {}).get("Rules", []):
        destination = rule.get("Destination") or {}
        found.append((
            str(rule.get("ID")),
            int(rule.get("Priority", 0)),
            rule.get("Status"),
            (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix")),
            (rule.get("DeleteMarkerReplication") or {}).get("Status", "Disabled"),
            destination.get("Bucket"),
            destination.get("StorageClass"),
        ))
    return sorted(found)


def read_replication(s3: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's replication configuration; None when it has none."""
    try:
        return dict(s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"])
    except ClientError as exc:
        if error_code(exc) == "ReplicationConfigurationNotFoundError":
            return None
        raise


def provision_replication(iam: Any, s3: Any, plan: Plan, account: str) -> list[str]:
    """The source side, with the backup account's credentials: the role and the bucket's replication
    configuration. Returns what it changed."""
    changes: list[str] = []
    name = replication_role_name(plan)
    trust = trust_policy(plan, account)
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                        Description=f"S3 Replication of {plan.bucket} into its vault")
        changes.append(f"created the replication role {name}")
    else:
        if _document(role.get("AssumeRolePolicyDocument")) != trust:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
            changes.append(f"set who may assume the role {name}")
    wanted = role_policy(plan)
    try:
        current = _document(iam.get_role_policy(RoleName=name, PolicyName=ROLE_POLICY_NAME)["PolicyDocument"])
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        current = None
    if current != wanted:
        iam.put_role_policy(RoleName=name, PolicyName=ROLE_POLICY_NAME, PolicyDocument=json.dumps(wanted))
        changes.append(f"set the role {name}'s permissions")
    configuration = replication_configuration(plan, account)
    current_configuration = read_replication(s3, plan.bucket) or {}
    if (current_configuration.get("Role"), rules_as_compared(current_configuration)) != (
        configuration["Role"], rules_as_compared(configuration)
    ):
        s3.put_bucket_replication(Bucket=plan.bucket, ReplicationConfiguration=configuration)
        changes.append(f"set replication into the vault {_vault(plan).bucket}")
    return changes


def _document(value: Any) -> Any:
    """An IAM policy document as IAM answers it: a dict, or URL-encoded JSON text."""
    if isinstance(value, str):
        return json.loads(unquote(value))
    return value


def vault_policy(plan: Plan, role_arn: str) -> dict[str, Any]:
    """Only the replication role comes in, and only to write replicas; nothing replicates a deletion; no request
    without TLS. (The vault account's own administrators are let in by their IAM policies, as in any bucket.)"""
    vault = _vault(plan)
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
                "Resource": _objects(vault.bucket),
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
            {"Sid": NO_DELETES_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:ReplicateDelete", "Resource": objects},
        ],
    }


def object_lock_configuration(plan: Plan) -> dict[str, Any]:
    return {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": _vault(plan).object_lock_days}},
    }


def _lock_as_compared(configuration: dict[str, Any] | None) -> tuple[Any, ...]:
    """Whether Object Lock is on, and its default mode, days and years (an absent period reads 0)."""
    retention = ((configuration or {}).get("Rule") or {}).get("DefaultRetention") or {}
    return (
        (configuration or {}).get("ObjectLockEnabled"),
        retention.get("Mode"), int(retention.get("Days") or 0), int(retention.get("Years") or 0),
    )


def provision_vault(s3: Any, plan: Plan, role_arn: str) -> list[str]:
    """The vault side, with the vault account's credentials (`s3` in the vault's region). Returns what it
    changed. A vault whose Object Lock is off cannot be fixed here (`VaultError`): S3 switches it on for good,
    and an administrator should know that a vault existed without it."""
    vault = _vault(plan)
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
    if (state.object_lock or {}).get("ObjectLockEnabled") != "Enabled" and not changes:
        raise VaultError(
            f"vault {vault.bucket} (plan '{plan.name}') exists without Object Lock; nothing was changed. Replicas "
            "written there so far were never locked: check them, then create the vault anew with Object Lock"
        )
    if state.versioning != "Enabled":
        s3.put_bucket_versioning(Bucket=vault.bucket, VersioningConfiguration={"Status": "Enabled"})
        changes.append("enabled versioning")
    if state.ownership != OBJECT_OWNERSHIP:
        s3.put_bucket_ownership_controls(Bucket=vault.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": OBJECT_OWNERSHIP}]})
        changes.append(f"set object ownership to {OBJECT_OWNERSHIP}")
    if state.public_access_block != PUBLIC_ACCESS_BLOCK:
        s3.put_public_access_block(Bucket=vault.bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK))
        changes.append("blocked all public access")
    if state.encryption is None:
        s3.put_bucket_encryption(Bucket=vault.bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        changes.append("set default encryption to SSE-S3")
    wanted = vault_policy(plan, role_arn)
    if state.policy != wanted:
        s3.put_bucket_policy(Bucket=vault.bucket, Policy=json.dumps(wanted))
        changes.append("set the policy that lets in only the replication role")
    lock = object_lock_configuration(plan)
    if _lock_as_compared(state.object_lock) != _lock_as_compared(lock):
        s3.put_object_lock_configuration(Bucket=vault.bucket, ObjectLockConfiguration=lock)
        changes.append(f"set Object Lock to COMPLIANCE for {vault.object_lock_days} days")
    return changes

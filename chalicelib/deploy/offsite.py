"""The second copy: S3 Replication from each backup bucket into its plan's vault (`plans.Offsite`), in another
account or region.

Two sides, each provisioned with its own account's credentials (`make provision`), and each checked for drift:

- the source side (`provision_replication`): a role S3 assumes to replicate one backup bucket, allowed to read
  only that bucket's replicated prefixes and to write replicas only into its vault, never to replicate a
  deletion; and the bucket's replication configuration, one rule per replicated prefix, delete markers not
  replicated. Backed-up objects go to the vault in the plan's storage class; manifests, sealed records and
  pruned markers in STANDARD, so that a restore from the vault reads them at once.
- the vault side (`vault_bucket.py`): the bucket, versioned, with Object Lock in COMPLIANCE mode for the plan's
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

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.deploy.scope import API_HANDLER, RESTORE_WORKER, RESUME_RESTORES
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
# The deployed functions that restore from the vault, with their own roles (read-only there): the API checks
# and records a restore, the worker and the hourly check run its passes.
RESTORE_READERS = (API_HANDLER, RESTORE_WORKER, RESUME_RESTORES)
# What they may do in the vault, and where: list the catalog, the data's and the manifests' versions, read the
# replicated manifests (their first version too: a manifest is sealed), sealed records and pruned markers,
# read exact versions of the data (with their tags, which a CopyObject of a tagged version reads) and thaw
# archived ones (a thaw makes a temporary copy, billed to the vault account, and changes no version, lock or
# rule). Never put, delete, tag or unlock.
VAULT_READS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("ListTheCatalog", ("s3:ListBucket",), ()),
    ("ListTheVersions", ("s3:ListBucketVersions",), ()),
    ("ReadTheCatalog", ("s3:GetObject",), (SNAPSHOTS_PREFIX, SEALED_PREFIX, PRUNED_PREFIX)),
    ("ReadManifestVersions", ("s3:GetObjectVersion",), (SNAPSHOTS_PREFIX,)),
    ("ReadAndThawVersions", ("s3:GetObjectVersion", "s3:GetObjectVersionTagging", "s3:RestoreObject"), (DATA_PREFIX,)),
)
# Listing is limited to what each listing reads: the catalog under meta/, versions under data/ and of manifests.
VAULT_LISTED = {"ListTheCatalog": ["meta/*"], "ListTheVersions": [DATA_PREFIX + "*", SNAPSHOTS_PREFIX + "*"]}
# IAM role names are at most 64 characters.
MAX_ROLE_NAME = 64


class VaultError(BackupError):
    """The vault cannot be provisioned as the plan says (another account owns the name, or a setting S3 will not
    change); nothing more was changed."""


def vault_of(plan: Plan) -> Offsite:
    if plan.offsite is None:
        raise VaultError(f"plan '{plan.name}' has no 'offsite' vault")
    return plan.offsite


def replication_role_name(plan: Plan) -> str:
    suffix = "-replication"
    return plan.bucket[: MAX_ROLE_NAME - len(suffix)] + suffix


def replication_role_arn(plan: Plan, account: str) -> str:
    return f"arn:aws:iam::{account}:role/{replication_role_name(plan)}"


def restore_role_name(app: str, stage: str, function: str) -> str:
    """The role of a deployed function as `chalice deploy` names it, and as the packaged template names the
    restore functions' roles when a plan has a vault (template.py): `<app>-<stage>-<function>`, the routes'
    handler's included (its function is `<app>-<stage>`, its role `<app>-<stage>-api_handler`)."""
    return f"{app}-{stage}-{function}"


def restore_reader_arns(account: str, app: str, stage: str) -> tuple[str, ...]:
    """The roles of the functions that restore from the vault (`RESTORE_READERS`)."""
    return tuple(f"arn:aws:iam::{account}:role/{restore_role_name(app, stage, f)}" for f in RESTORE_READERS)


def vault_read_statements(buckets: list[str], account: str, readers: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`VAULT_READS` as statements on the vault `buckets`, pinned to the vaults' `account` (s3:ResourceAccount:
    a bucket of the same name elsewhere is never read). With `readers` (role ARNs), for a vault's bucket
    policy: the principal is the roles' account and the condition names the roles (aws:PrincipalArn), so that
    the policy can be set before the roles exist and still holds once a role is made anew (S3 refuses a role
    ARN principal that does not exist, and stores one that does as the role's id)."""
    found = []
    for sid, actions, prefixes in VAULT_READS:
        resources = [f"arn:aws:s3:::{b}/{prefix}*" for b in buckets for prefix in prefixes] or [f"arn:aws:s3:::{b}" for b in buckets]
        condition: dict[str, Any] = {"StringEquals": {"s3:ResourceAccount": account}}
        if sid in VAULT_LISTED:
            condition["StringLike"] = {"s3:prefix": VAULT_LISTED[sid]}
        # A role's policy may name vaults of several accounts: one statement each, told apart by the account.
        name = f"Vault{sid}" if readers else f"Vault{sid}In{account}"
        statement: dict[str, Any] = {"Sid": name, "Effect": "Allow", "Action": sorted(actions), "Resource": sorted(resources)}
        if readers:
            accounts = sorted({arn.split(":")[4] for arn in readers})
            statement["Principal"] = {"AWS": [f"arn:aws:iam::{a}:root" for a in accounts]}
            condition["ArnEquals"] = {"aws:PrincipalArn": list(readers)}
        statement["Condition"] = condition
        found.append(statement)
    return found


def role_description(plan: Plan) -> str:
    return f"S3 Replication of {plan.bucket} into its vault"


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


def replicated_objects(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix, _ in REPLICATED_PREFIXES]


def role_policy(plan: Plan) -> dict[str, Any]:
    """What S3 Replication needs and no more: read the replication configuration and the replicated prefixes'
    versions of this backup bucket, write replicas and their tags into this vault. No s3:ReplicateDelete:
    a deletion in the backup bucket never reaches the vault, whatever the configuration says."""
    vault = vault_of(plan)
    # S3 replicates a locked version's retention with it, and reads it with the role's rights.
    lock_reads = ["s3:GetObjectRetention", "s3:GetObjectLegalHold"] if plan.object_lock is not None else []
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
                "Action": [
                    "s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging", *lock_reads,
                ],
                "Resource": replicated_objects(plan.bucket),
            },
            {
                "Sid": "WriteReplicasIntoTheVault",
                "Effect": "Allow",
                "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                "Resource": replicated_objects(vault.bucket),
            },
        ],
    }


# Replication Time Control's threshold, and its metrics' (S3 accepts 15 minutes only, and RTC only with its
# metrics enabled; with RTC off, neither is sent: metrics may not carry a threshold without RTC).
RTC_MINUTES = 15


def rtc_destination(enabled: bool) -> dict[str, Any]:
    """What a rule's `Destination` carries for Replication Time Control: both blocks, or nothing."""
    if not enabled:
        return {}
    return {
        "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": RTC_MINUTES}},
        "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": RTC_MINUTES}},
    }


def rule_id(plan: Plan, prefix: str) -> str:
    return f"{plan.name}-vault-{prefix.strip('/').replace('/', '-')}"


def replication_configuration(plan: Plan, account: str) -> dict[str, Any]:
    """`PutBucketReplication`'s `ReplicationConfiguration`: one enabled rule per replicated prefix."""
    vault = vault_of(plan)
    rules = []
    for priority, (prefix, storage_class) in enumerate(REPLICATED_PREFIXES, start=1):
        rules.append({
            "ID": rule_id(plan, prefix),
            "Priority": priority,
            "Status": "Enabled",
            "Filter": {"Prefix": prefix},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {
                "Bucket": f"arn:aws:s3:::{vault.bucket}", "StorageClass": storage_class or vault.storage_class,
                **rtc_destination(vault.rtc),
            },
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
            _rtc_as_compared(destination),
        ))
    return sorted(found)


def _rtc_as_compared(destination: dict[str, Any]) -> tuple[Any, ...]:
    """Replication Time Control as a rule's destination says it: its status and minutes, its metrics'."""
    time, metrics = destination.get("ReplicationTime") or {}, destination.get("Metrics") or {}

    def minutes(value: Any) -> int | None:
        return None if (value or {}).get("Minutes") is None else int(value["Minutes"])

    return time.get("Status", "Disabled"), minutes(time.get("Time")), metrics.get("Status", "Disabled"), minutes(metrics.get("EventThreshold"))


def read_replication(s3: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's replication configuration; None when it has none."""
    try:
        return dict(s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"])
    except ClientError as exc:
        if error_code(exc) == "ReplicationConfigurationNotFoundError":
            return None
        raise


def replication_drift(s3: Any, plan: Plan, account: str | None) -> list[str]:
    """What differs between the backup bucket's replication and the plan's vault, one readable line each: no
    configuration, a rule missing, disabled, pointed elsewhere, in another storage class or replicating delete
    markers, another role (`account` None: the role is not checked). Read with GetBucketReplication only."""
    vault = vault_of(plan)
    try:
        current = read_replication(s3, plan.bucket)
    except (ClientError, BotoCoreError) as exc:
        return [f"bucket {plan.bucket}: its replication could not be read: {exc}"]
    if current is None:
        return [f"bucket {plan.bucket}: has no replication configuration: nothing reaches the vault {vault.bucket}"]
    wanted = replication_configuration(plan, account or "")
    found = []
    if account is not None and current.get("Role") != wanted["Role"]:
        found.append(f"bucket {plan.bucket}: replicates with the role {current.get('Role')}, not {wanted['Role']}")
    rules = {rule[3]: rule for rule in rules_as_compared(current)}
    for rule in rules_as_compared(wanted):
        _, _, _, prefix, _, destination, storage_class, rtc = rule
        have = rules.get(prefix)
        where = f"bucket {plan.bucket}: the rule replicating {prefix}"
        if have is None:
            found.append(f"bucket {plan.bucket}: no rule replicates {prefix} into the vault {vault.bucket}")
        elif have[2] != "Enabled":
            found.append(f"{where} is {have[2]}: nothing there reaches the vault")
        elif have[5] != destination:
            found.append(f"{where} writes to {have[5]}, not the vault {vault.bucket}")
        elif have[4] != "Disabled":
            found.append(f"{where} replicates delete markers, which could hide backups in the vault")
        elif have[6] != storage_class:
            found.append(f"{where} writes replicas in {have[6] or 'the source class'}, not {storage_class}")
        elif have[7] != rtc:
            wanted_rtc = "on" if vault.rtc else "off"
            found.append(f"{where} has Replication Time Control {_describe_rtc(have[7])}, not {wanted_rtc} as the plan says")
    return found


def _describe_rtc(rtc: tuple[Any, ...]) -> str:
    status, minutes, metrics, threshold = rtc
    if status != "Enabled":
        return "off" + (f" (metrics {metrics})" if metrics == "Enabled" else "")
    return f"on ({minutes} minutes, metrics {metrics}{f' at {threshold} minutes' if threshold else ''})"


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
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description=role_description(plan))
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
        changes.append(f"set replication into the vault {vault_of(plan).bucket}")
    return changes


def _document(value: Any) -> Any:
    """An IAM policy document as IAM answers it: a dict, or URL-encoded JSON text."""
    if isinstance(value, str):
        return json.loads(unquote(value))
    return value

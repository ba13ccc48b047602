"""The S3 Inventory of the backup buckets, as deployed: the bucket the reports go to (what it must look like,
how it differs, provisioning it) and each backup bucket's inventory configuration.

The reports are what verification, the prune's sweep and the cost report trust about a backup bucket, so
only S3 may write them: the bucket's policy allows S3's service principal for these backup buckets of this
account (`inventory/configuration.py`'s statements) and denies a write by anyone else. Nothing of the
running system may change it: `make provision` and the deploy template do; `drift.py` reads it.

Report objects expire after REPORT_EXPIRATION_DAYS; the bucket is not versioned (S3 writes each report key
once, and nothing else may write there).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.deploy.bucket_differences import denies_insecure_transport
from chalicelib.deploy.bucket_settings import (
    ABORT_MULTIPART_DAYS,
    OBJECT_OWNERSHIP,
    PUBLIC_ACCESS_BLOCK,
    TLS_STATEMENT_SID,
    BucketConflict,
    tls_statement,
)
from chalicelib.deploy.bucket_state import bucket_exists, read_state
from chalicelib.errors import error_code
from chalicelib.inventory import configuration as conf
from chalicelib.plans import InventoryPlan, PlanSet

logger = logging.getLogger(__name__)

# A weekly report is at most 7 days old when the next arrives, and S3 may deliver up to 48 hours after the
# date it names: 21 days keeps the newest two weekly reports (16 days at most) with room, and the newest
# twenty daily ones.
REPORT_EXPIRATION_DAYS = 21
LIFECYCLE_RULE_ID = "inventory-reports-expire"
_OURS = {TLS_STATEMENT_SID, "InventoryReportsFromS3", "InventoryReportsOnlyFromS3"}
# What a missing or changed destination statement means, for drift messages.
_MEANING = {
    "InventoryReportsFromS3": "S3 may no longer deliver every backup bucket's reports, or may deliver others'",
    "InventoryReportsOnlyFromS3": "reports are no longer limited to S3's own writes",
}


def destination(inventory: InventoryPlan, account: str) -> conf.Destination:
    """Where the backup buckets' reports go; S3 encrypts them with its own keys (SSE-S3)."""
    return conf.Destination(bucket_arn=conf.bucket_arn(inventory.bucket), account_id=account, prefix=inventory.prefix)


def configuration(inventory: InventoryPlan, account: str) -> dict[str, Any]:
    """The `InventoryConfiguration` every backup bucket gets."""
    return conf.inventory_configuration(destination(inventory, account), conf.Frequency(inventory.frequency), inventory.configuration_id)


def lifecycle_rules(inventory: InventoryPlan) -> list[dict[str, Any]]:
    return [
        {
            "ID": LIFECYCLE_RULE_ID,
            "Filter": {"Prefix": inventory.prefix + "/"},
            "Status": "Enabled",
            "Expiration": {"Days": REPORT_EXPIRATION_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        }
    ]


def bucket_policy(plans: PlanSet, account: str, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The existing policy with the TLS statement and the destination statements added or put back."""
    assert plans.inventory is not None
    statements = [s for s in (existing or {}).get("Statement", []) if s.get("Sid") not in _OURS]
    statements.append(tls_statement(plans.inventory.bucket))
    statements += conf.destination_policy_statements(destination(plans.inventory, account), [p.bucket for p in plans.plans], account)
    return {"Version": "2012-10-17", "Statement": statements}


def _stated_account(policy: dict[str, Any] | None) -> str | None:
    for statement in (policy or {}).get("Statement", []):
        if statement.get("Sid") == "InventoryReportsFromS3":
            return (statement.get("Condition", {}).get("StringEquals") or {}).get("aws:SourceAccount")
    return None


def policy_differences(plans: PlanSet, policy: dict[str, Any] | None, account: str | None) -> list[str]:
    """How the inventory bucket's policy falls short: TLS only, and report writes limited to S3's service
    principal for these backup buckets. Without a known account, the one the policy states is taken (the
    Deny statement, which keeps everyone else out, names no account)."""
    assert plans.inventory is not None
    bucket = plans.inventory.bucket
    if policy is None:
        return [f"inventory bucket {bucket} has no bucket policy: reports are not limited to S3's own writes"]
    found = []
    if not denies_insecure_transport(policy, bucket):
        found.append(f"inventory bucket {bucket}: the bucket policy no longer denies requests without TLS")
    wanted = bucket_policy(plans, account or _stated_account(policy) or "000000000000")["Statement"][1:]
    by_sid = {s.get("Sid"): s for s in policy.get("Statement", [])}
    for statement in wanted:
        if not _covers(by_sid.get(statement["Sid"]), statement):
            what = "is missing" if statement["Sid"] not in by_sid else "was changed"
            found.append(f"inventory bucket {bucket}: policy statement {statement['Sid']} {what}: {_MEANING[statement['Sid']]}")
    return found


def _covers(have: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    """True when a stored statement is the wanted one, or admits reports of more source buckets besides:
    a bucket dropped from the plans since provisioning still being admitted opens nothing to anyone but S3."""
    if have is None or have == want:
        return have is not None
    arns = ((want.get("Condition") or {}).get("ArnLike") or {}).get("aws:SourceArn")
    stored = ((have.get("Condition") or {}).get("ArnLike") or {}).get("aws:SourceArn")
    if arns is None or stored is None:
        return False
    listed = {stored} if isinstance(stored, str) else set(stored)
    if not ({arns} if isinstance(arns, str) else set(arns)) <= listed:
        return False
    rest = {**have, "Condition": {**have["Condition"], "ArnLike": {**have["Condition"]["ArnLike"], "aws:SourceArn": arns}}}
    return rest == want


def _effective(stored: dict[str, Any], default_encryption: dict[str, Any] | None) -> dict[str, Any]:
    """The stored configuration with the encryption its reports get: a configuration that names none (as
    CloudFormation's cannot, and as moto answers for SSE-S3) leaves it to the destination bucket's default."""
    target = (stored.get("Destination") or {}).get("S3BucketDestination") or {}
    encryption = target.get("Encryption") or {}
    if "SSES3" in encryption or "SSEKMS" in encryption:
        return stored
    default = (default_encryption or {}).get("ApplyServerSideEncryptionByDefault") or {}
    if default.get("SSEAlgorithm") == "AES256":
        encryption = {"SSES3": {}}
    elif default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
        encryption = {"SSEKMS": {"KeyId": default.get("KMSMasterKeyID", "aws/s3")}}
    else:
        return stored
    return {**stored, "Destination": {"S3BucketDestination": {**target, "Encryption": encryption}}}


def read_configuration(s3: Any, bucket: str, configuration_id: str) -> dict[str, Any] | None:
    try:
        return s3.get_bucket_inventory_configuration(Bucket=bucket, Id=configuration_id)["InventoryConfiguration"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchInventoryConfig":
            return None
        raise


def read_default_encryption(s3: Any, bucket: str) -> dict[str, Any] | None:
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"].get("Rules", [])
    except ClientError as exc:
        if error_code(exc) in ("ServerSideEncryptionConfigurationNotFoundError", "NoSuchBucket"):
            return None
        raise
    return rules[0] if rules else None


def configuration_differences(
    stored: dict[str, Any] | None, inventory: InventoryPlan, account: str | None, default_encryption: dict[str, Any] | None
) -> list[str]:
    """How a backup bucket's stored configuration differs from the wanted one (`conf.differences`), its
    reports' encryption taken as S3 applies it. Without a known account, the stored one is taken."""
    stated = ((stored or {}).get("Destination") or {}).get("S3BucketDestination", {}).get("AccountId")
    wanted = configuration(inventory, account or stated or "000000000000")
    return conf.differences(None if stored is None else _effective(stored, default_encryption), wanted)


def _bucket_differences(s3: Any, plans: PlanSet, account: str) -> tuple[set[str], dict[str, str]]:
    """The inventory bucket's settings that are missing, and those configured otherwise (setting: what)."""
    assert plans.inventory is not None
    state = read_state(s3, plans.inventory.bucket)
    if state.unreadable:
        problems = [f"{name} could not be read: {why}" for name, why in state.unreadable.items()]
        raise BucketConflict(f"inventory bucket {plans.inventory.bucket}: " + "; ".join(problems), problems)
    missing: set[str] = set()
    conflicts: dict[str, str] = {}
    if state.public_access_block != PUBLIC_ACCESS_BLOCK:
        missing.add("public access")
    if state.ownership is None:
        missing.add("ownership")
    elif state.ownership != OBJECT_OWNERSHIP:
        conflicts["ownership"] = f"object ownership is {state.ownership}, should be {OBJECT_OWNERSHIP}"
    algorithm = ((state.encryption or {}).get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
    if algorithm is None:
        missing.add("encryption")
    elif algorithm != "AES256":
        conflicts["encryption"] = f"default encryption is {algorithm}, should be SSE-S3 (AES256)"
    if state.lifecycle is None:
        missing.add("lifecycle")
    elif state.lifecycle != lifecycle_rules(plans.inventory):
        conflicts["lifecycle"] = f"lifecycle rules differ from one rule expiring reports after {REPORT_EXPIRATION_DAYS} days"
    if policy_differences(plans, state.policy, account):
        # Our statements are put back beside the others, which are kept: nothing anyone chose is overridden.
        missing.add("policy")
    return missing, conflicts


def provision_inventory(
    s3: Any, plans: PlanSet, account: str, names: list[str] | None = None, region: str | None = None, force: bool = False
) -> list[str]:
    """Create the inventory bucket if needed, give it its settings (its policy admits reports of every plan's
    bucket), and put the inventory configuration on the named plans' buckets (all when `names` is None; they
    must exist: `provision` first). Returns what it changed; nothing when the plans name no inventory or
    everything already matched. Settings that contradict these are left alone and `BucketConflict` lists
    them, unless `force`."""
    inventory = plans.inventory
    if inventory is None:
        return []
    bucket = inventory.bucket
    region = region or getattr(getattr(s3, "meta", None), "region_name", None) or "us-east-1"
    changes: list[str] = []
    if not bucket_exists(s3, bucket):
        params: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**params)
        changes.append(f"created inventory bucket {bucket}")
    missing, conflicts = _bucket_differences(s3, plans, account)
    wanted = configuration(inventory, account)
    stored = {p.bucket: read_configuration(s3, p.bucket, inventory.configuration_id) for p in plans.select(names)}
    default = read_default_encryption(s3, bucket)
    for name, have in stored.items():
        if have is not None and configuration_differences(have, inventory, account, default):
            lines = configuration_differences(have, inventory, account, default)
            conflicts[name] = f"bucket {name}: inventory " + "; ".join(lines)
    if conflicts and not force:
        listing = "".join(f"\n  - {message}" for message in conflicts.values())
        raise BucketConflict(
            f"inventory bucket {bucket} or a backup bucket's inventory configuration differs from the plans; "
            f"nothing was changed (provision with force to apply them):{listing}",
            list(conflicts.values()),
        )
    to_set = missing | set(conflicts)
    if "ownership" in to_set:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": OBJECT_OWNERSHIP}]})
        changes.append(f"set the inventory bucket's object ownership to {OBJECT_OWNERSHIP}")
    if "public access" in to_set:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK))
        changes.append("blocked all public access to the inventory bucket")
    if "encryption" in to_set:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
        changes.append("set the inventory bucket's default encryption to SSE-S3")
    if "lifecycle" in to_set:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(inventory)})
        changes.append(f"set reports to expire after {REPORT_EXPIRATION_DAYS} days")
    if "policy" in to_set:
        existing = read_state(s3, bucket).policy
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(bucket_policy(plans, account, existing)))
        changes.append("set the inventory bucket's policy: TLS only, reports written by S3 alone")
    for name, have in stored.items():
        if have is None or name in conflicts:
            s3.put_bucket_inventory_configuration(Bucket=name, Id=inventory.configuration_id, InventoryConfiguration=wanted)
            changes.append(f"put inventory configuration {inventory.configuration_id} ({inventory.frequency}) on {name}")
    for change in changes:
        logger.info("inventory: %s", change)
    return changes

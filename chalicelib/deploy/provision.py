"""The administrator's provisioning step: create a plan's backup bucket if needed and give it every setting
of the plan; then the S3 Inventory bucket and each backup bucket's inventory configuration, where the plans
name one (`inventory_bucket.py`). `make provision STAGE=...` runs it (`python -m chalicelib.deploy.provision`); the running backup
system never does: it only reads the settings (see `drift.py`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.deploy.bucket_differences import differences
from chalicelib.deploy.bucket_settings import (
    OBJECT_OWNERSHIP,
    PUBLIC_ACCESS_BLOCK,
    BucketConflict,
    bucket_policy,
    encryption_default,
    lifecycle_configuration,
    object_lock_rule,
)
from chalicelib.deploy.bucket_state import bucket_exists, read_state
from chalicelib.deploy.inventory_bucket import provision_inventory
from chalicelib.deploy.offsite import provision_replication, replication_role_arn, restore_reader_arns
from chalicelib.deploy.vault_bucket import provision_vault
from chalicelib.errors import BackupError
from chalicelib.plans import Plan, PlanSet
from chalicelib.plans_file import check_offsite_apart

logger = logging.getLogger(__name__)


def provision(s3: Any, plan: Plan, region: str | None = None, force: bool = False) -> list[str]:
    """Create the plan's bucket if needed and give it every setting of the plan. Returns what it changed
    (empty when the bucket already matched).

    An existing bucket whose settings contradict the plan is left alone and `BucketConflict` lists what
    differs, unless `force` is true. Settings that are simply absent are added without forcing.
    """
    region = region or getattr(getattr(s3, "meta", None), "region_name", None) or "us-east-1"
    changes: list[str] = []
    if not bucket_exists(s3, plan.bucket):
        params: dict[str, Any] = {"Bucket": plan.bucket}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if plan.object_lock is not None:
            # Object Lock is switched on at creation; the default retention follows below.
            params["ObjectLockEnabledForBucket"] = True
        s3.create_bucket(**params)
        changes.append("created bucket")
    state = read_state(s3, plan.bucket)
    found = differences(plan, state)
    unreadable = [d.message for d in found if d.kind == "unreadable"]
    if unreadable:
        raise BucketConflict(f"bucket {plan.bucket} (plan '{plan.name}'): " + "; ".join(unreadable), unreadable)
    conflicts = [d.message for d in found if d.kind == "conflict"]
    if conflicts and not force:
        listing = "".join(f"\n  - {message}" for message in conflicts)
        raise BucketConflict(
            f"bucket {plan.bucket} (plan '{plan.name}') exists with settings that differ from the plan; "
            f"nothing was changed (provision with force to apply the plan):{listing}",
            conflicts,
        )
    settings = {d.setting for d in found}
    bucket = plan.bucket
    # Order matters: versioning before Object Lock, ownership and the access block before the policy.
    if "versioning" in settings:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        changes.append("enabled versioning")
    if "ownership" in settings:
        s3.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": OBJECT_OWNERSHIP}]}
        )
        changes.append(f"set object ownership to {OBJECT_OWNERSHIP} (ACLs disabled)")
    if "public access" in settings:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK))
        changes.append("blocked all public access")
    if "encryption" in settings:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [encryption_default(plan)]})
        changes.append("set default encryption to " + ("SSE-KMS with a bucket key" if plan.kms_key_id else "SSE-S3"))
    if "tls policy" in settings:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(bucket_policy(bucket, state.policy)))
        changes.append("set the bucket policy statements that deny requests without TLS and make metadata create-only")
    if "lifecycle" in settings:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, **lifecycle_configuration(plan))
        changes.append(
            f"set lifecycle rules (objects under 128 KB: {plan.lifecycle.transition_default_minimum_object_size})"
        )
    if "object lock" in settings:
        s3.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": object_lock_rule(plan)}
        )
        changes.append("set object lock default retention")
    if changes:
        for change in changes:
            logger.info("bucket %s (plan %s): %s", bucket, plan.name, change)
    else:
        logger.info("bucket %s (plan %s) already matches the plan: nothing changed", bucket, plan.name)
    return changes


def main(argv: list[str] | None = None) -> int:
    """`python -m chalicelib.deploy.provision --stage dev [--force]`: provision every plan's bucket of a stage,
    and each plan's vault and its replication (the vault account's credentials: OFFSITE_PROFILE or
    OFFSITE_ROLE_ARN)."""
    import boto3

    from chalicelib.aws import client_config
    from chalicelib.stages import stage_plans

    parser = argparse.ArgumentParser(prog="python -m chalicelib.deploy.provision", description=main.__doc__)
    parser.add_argument("--stage", required=True, help="a stage of .chalice/config.json")
    parser.add_argument("--plan", action="append", help="only this plan (repeatable)")
    parser.add_argument("--force", action="store_true", help="overwrite settings that differ from the plan")
    parser.add_argument("--vaults-only", action="store_true",
                        help="only the plans' vaults, with the vault account's credentials: the packaged template "
                        "creates the buckets and the source side of the replication, which needs its vault first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        plans = stage_plans(args.stage)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    session = boto3.session.Session()
    s3 = session.client("s3", config=client_config())
    if args.vaults_only:
        account = session.client("sts", config=client_config()).get_caller_identity()["Account"]
        return provision_offsite(session, s3, plans, account, args.plan, source_side=False, readers=restore_readers(account, args.stage))
    status = 0
    for plan in plans.select(args.plan):
        try:
            changes = provision(s3, plan, force=args.force)
        except BucketConflict as exc:
            print(f"{exc}", file=sys.stderr)
            status = 1
            continue
        if changes:
            print(f"{plan.bucket} (plan {plan.name}): " + "; ".join(changes))
        else:
            print(f"{plan.bucket} (plan {plan.name}): already as planned, nothing changed")
    if plans.inventory is None and not any(plan.offsite for plan in plans.plans) or status != 0:
        return status
    # The administrator's own account: the one whose buckets were just provisioned.
    account = session.client("sts", config=client_config()).get_caller_identity()["Account"]
    if any(plan.offsite for plan in plans.plans):
        status = provision_offsite(session, s3, plans, account, args.plan, readers=restore_readers(account, args.stage))
    if plans.inventory is not None and status == 0:
        try:
            changes = provision_inventory(s3, plans, account, args.plan, force=args.force)
        except BucketConflict as exc:
            print(f"{exc}", file=sys.stderr)
            return 1
        print(f"inventory {plans.inventory.bucket}: " + ("; ".join(changes) or "already as planned, nothing changed"))
    return status


def restore_readers(account: str, stage: str) -> tuple[str, ...]:
    """The stage's restore functions' roles, which each vault's policy lets read there."""
    from chalicelib.stages import app_name

    return restore_reader_arns(account, app_name(), stage)


def provision_offsite(
    session: Any, s3: Any, plans: PlanSet, account: str, names: list[str] | None, source_side: bool = True,
    readers: tuple[str, ...] = (),
) -> int:
    """Each vault with the vault account's credentials (OFFSITE_PROFILE or OFFSITE_ROLE_ARN, read now), then
    (`source_side`) the replication into it with the administrator's own; 1 when something could not be done.
    The vault needs only the replication role's ARN, which the role keeps by its name wherever it is made, and
    the `readers` (`restore_readers`), named the same way."""
    from chalicelib.aws import client_config, vault_clients

    region = session.region_name or "us-east-1"
    try:
        check_offsite_apart(plans, account, region)
        vault = vault_clients(plans, base=session)
        vault_account = vault.session.client("sts", config=client_config()).get_caller_identity()["Account"]
    except (BackupError, ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    iam = session.client("iam", config=client_config())
    status = 0
    for plan in plans.select(names):
        if plan.offsite is None:
            continue
        if vault_account != plan.offsite.account:
            print(f"error: plan '{plan.name}': the vault credentials are account {vault_account}'s, the plan's "
                  f"vault is in {plan.offsite.account}", file=sys.stderr)
            return 1
        try:
            # The vault first: S3 replicates only into a bucket that exists, versioned.
            changes = provision_vault(vault.s3, plan, replication_role_arn(plan, account), readers)
            if source_side:
                changes += provision_replication(iam, s3, plan, account)
        except (BackupError, ClientError) as exc:
            # E.g. a vault name another account owns: S3 refuses with 403 (the vault clients pin the owner).
            print(f"vault {plan.offsite.bucket} (plan {plan.name}): {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"vault {plan.offsite.bucket} (plan {plan.name}): " + ("; ".join(changes) or "already as planned, nothing changed"))
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Drift: a backup bucket whose protective settings no longer match its plan.

After each plan's backup the bucket's settings are read (get_* calls only) and compared with the plan.
Every difference is recorded in the plan's result and the alert, and a plan that otherwise succeeded is
PARTIAL. Nothing is repaired here: the running system has no right to change bucket settings, because a
writer that can change lifecycle rules or versioning can destroy every backup. An administrator repairs
drift with `make provision` (forced where a setting was changed on purpose).

A plan with a vault must still replicate into it as provisioned (`offsite.replication_drift`): a rule disabled,
missing or changed means new backups no longer reach the second copy. (The vault itself is read with the vault
account's credentials, which the functions do not have: `org-backup verify --from offsite` reads it.)

Where the plans name an S3 Inventory, the plan's bucket must have its inventory configuration as
provisioned, and the inventory bucket's policy must still let S3 alone write reports there
(`inventory_bucket.py`): reports anyone else could write, or stop, are nothing to verify against.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import BackupStatus, PlanResult
from chalicelib.deploy.bucket_differences import differences
from chalicelib.deploy.bucket_state import read_state
from chalicelib.deploy.offsite import replication_drift
from chalicelib.deploy.inventory_bucket import (
    configuration_differences,
    policy_differences,
    read_configuration,
    read_default_encryption,
)
from chalicelib.errors import HistoryNotKept, error_code
from chalicelib.plans import Plan, PlanSet

logger = logging.getLogger(__name__)


def find_drift(s3: Any, plan: Plan, plans: PlanSet | None = None, account: str | None = None) -> list[str]:
    """What differs between the plan's bucket and the plan, one readable line each; with `plans` naming an
    inventory, the bucket's inventory configuration and the inventory bucket's policy too (`account`: the
    stage's, None when unknown)."""
    try:
        state = read_state(s3, plan.bucket)
    except (ClientError, BotoCoreError) as exc:
        return [f"bucket {plan.bucket}: settings could not be read: {exc}"]
    found = [f"bucket {plan.bucket}: {d.message}" for d in differences(plan, state)]
    if plan.offsite is not None:
        found += replication_drift(s3, plan, account)
    if plans is not None and plans.inventory is not None:
        found += inventory_drift(s3, plan, plans, account)
    return found


def inventory_drift(s3: Any, plan: Plan, plans: PlanSet, account: str | None) -> list[str]:
    inventory = plans.inventory
    assert inventory is not None
    try:
        stored = read_configuration(s3, plan.bucket, inventory.configuration_id)
        default = read_default_encryption(s3, inventory.bucket)
        policy = _read_policy(s3, inventory.bucket)
    except (ClientError, BotoCoreError) as exc:
        return [f"bucket {plan.bucket}: its inventory could not be read: {exc}"]
    found = [f"bucket {plan.bucket}: {line}" for line in configuration_differences(stored, inventory, account, default)]
    return found + policy_differences(plans, policy, account)


def _read_policy(s3: Any, bucket: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucketPolicy":
            return None
        raise


def check_plan(s3: Any, plan: Plan, result: PlanResult, plans: PlanSet | None = None, account: str | None = None) -> PlanResult:
    """Record the plan bucket's drift in `result` (`find_drift`); a drifted plan that otherwise succeeded is
    PARTIAL."""
    result.drift = find_drift(s3, plan, plans, account)
    if result.drift:
        logger.warning("plan %s: bucket settings drifted: %s", plan.name, "; ".join(result.drift))
        if result.status == BackupStatus.SUCCEEDED:
            result.status = BackupStatus.PARTIAL
    return result


def check_history_kept(s3: Any, plan: Plan) -> None:
    """Before a plan writes anything: its bucket must keep every version (and lock them, where the plan asks
    for Object Lock). `HistoryNotKept` names what is wrong; the plan then fails without writing a byte.
    One or two reads, against a backup that would otherwise put unprotected bytes under a snapshot."""
    status = s3.get_bucket_versioning(Bucket=plan.bucket).get("Status")
    if status != "Enabled":
        raise HistoryNotKept(
            f"backup bucket {plan.bucket}: versioning is {status or 'not enabled'}, so a later write could replace "
            "what a snapshot names; nothing was written. Enable it (make provision) and back up again"
        )
    if plan.object_lock is not None:
        try:
            lock = s3.get_object_lock_configuration(Bucket=plan.bucket).get("ObjectLockConfiguration", {})
        except ClientError as exc:
            if error_code(exc) != "ObjectLockConfigurationNotFoundError":
                raise
            lock = {}
        if lock.get("ObjectLockEnabled") != "Enabled":
            raise HistoryNotKept(
                f"backup bucket {plan.bucket}: Object Lock is off, and plan '{plan.name}' asks for "
                f"{plan.object_lock.mode} retention of {plan.object_lock.days} days; nothing was written"
            )

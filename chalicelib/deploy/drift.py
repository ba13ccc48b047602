"""Drift: a backup bucket whose protective settings no longer match its plan.

After each plan's backup the bucket's settings are read (get_* calls only) and compared with the plan.
Every difference is recorded in the plan's result and the alert, and a plan that otherwise succeeded is
PARTIAL. Nothing is repaired here: the running system has no right to change bucket settings, because a
writer that can change lifecycle rules or versioning can destroy every backup. An administrator repairs
drift with `make provision` (forced where a setting was changed on purpose).
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import BackupStatus, PlanResult
from chalicelib.deploy.bucket_differences import differences
from chalicelib.deploy.bucket_state import read_state
from chalicelib.errors import HistoryNotKept, error_code
from chalicelib.plans import Plan

logger = logging.getLogger(__name__)


def find_drift(s3: Any, plan: Plan) -> list[str]:
    """What differs between the plan's bucket and the plan, one readable line each."""
    try:
        state = read_state(s3, plan.bucket)
    except (ClientError, BotoCoreError) as exc:
        return [f"bucket {plan.bucket}: settings could not be read: {exc}"]
    return [f"bucket {plan.bucket}: {d.message}" for d in differences(plan, state)]


def check_plan(s3: Any, plan: Plan, result: PlanResult) -> PlanResult:
    """Record the plan bucket's drift in `result`; a drifted plan that otherwise succeeded is PARTIAL."""
    result.drift = find_drift(s3, plan)
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

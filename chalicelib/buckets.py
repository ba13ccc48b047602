"""Backup bucket settings: what a plan's bucket must look like, and the administrator's provisioning step.

The running backup system never calls `provision`: a writer that can change lifecycle rules or versioning
can destroy every backup. Provisioning is for the `make provision` command and the deploy template.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.plans import Plan
from chalicelib.snapshots import DATA_PREFIX

logger = logging.getLogger(__name__)


def lifecycle_rules(plan: Plan) -> list[dict[str, Any]]:
    """The plan's lifecycle, scoped to the data prefix so manifests and records stay in STANDARD."""
    rule: dict[str, Any] = {
        "ID": f"{plan.name}-data-tiering",
        "Filter": {"Prefix": DATA_PREFIX},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }
    transitions = [{"Days": t.days, "StorageClass": t.storage_class} for t in plan.lifecycle.transitions]
    if transitions:
        rule["Transitions"] = transitions
        rule["NoncurrentVersionTransitions"] = [
            {"NoncurrentDays": t.days, "StorageClass": t.storage_class} for t in plan.lifecycle.transitions
        ]
    if plan.lifecycle.noncurrent_expiration_days:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": plan.lifecycle.noncurrent_expiration_days}
    return [rule]


def provision(s3: Any, plan: Plan, region: str = "us-east-1") -> list[str]:
    """Create the plan's bucket if needed, with versioning and lifecycle rules. Returns what it changed."""
    changes: list[str] = []
    try:
        s3.head_bucket(Bucket=plan.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        params: dict[str, Any] = {"Bucket": plan.bucket}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if plan.object_lock is not None:
            params["ObjectLockEnabledForBucket"] = True
        s3.create_bucket(**params)
        changes.append("created bucket")
    if s3.get_bucket_versioning(Bucket=plan.bucket).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=plan.bucket, VersioningConfiguration={"Status": "Enabled"})
        changes.append("enabled versioning")
    wanted = lifecycle_rules(plan)
    try:
        current = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket).get("Rules", [])
    except ClientError:
        current = []
    if current != wanted:
        s3.put_bucket_lifecycle_configuration(Bucket=plan.bucket, LifecycleConfiguration={"Rules": wanted})
        changes.append("set lifecycle rules")
    return changes

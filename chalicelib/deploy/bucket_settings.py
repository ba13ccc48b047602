"""Backup bucket settings: what a plan's bucket must look like (reading what it looks like:
`bucket_state.py`; how the two differ: `bucket_differences.py`).

The running backup system only reads the settings (see `drift.py`): a writer that can change lifecycle rules
or versioning can destroy every backup. Changing them is the administrator's step (`provision.py`) and the
deploy template's.
"""

from __future__ import annotations

from typing import Any

from chalicelib.errors import BackupError
from chalicelib.layout import (
    DATA_PREFIX,
    MANIFEST_SUFFIX,
    PRUNED_PREFIX,
    RECORDS_PREFIX,
    RELOCATIONS_PREFIX,
    SEALED_PREFIX,
    SNAPSHOTS_PREFIX,
    TAMPERING_PREFIX,
)
from chalicelib.plans import MANIFEST_STORAGE_CLASS, MANIFEST_TRANSITION_MIN_BYTES, Plan

TLS_STATEMENT_SID = "DenyInsecureTransport"
CREATE_ONLY_SID = "CreateOnlyMetadata"
NO_HIDING_SID = "NoDeleteMarkersOnMetadata"
NO_REPLICAS_SID = "NoReplicasOverMetadata"
NO_MULTIPART_SID = "NoMultipartUploadsOfMetadata"
# Under a backup bucket: keys written once (see create_only_statements).
CREATE_ONLY_PATTERNS = (
    SNAPSHOTS_PREFIX + "*" + MANIFEST_SUFFIX,
    SEALED_PREFIX + "*",
    TAMPERING_PREFIX + "*",
    PRUNED_PREFIX + "*",
    RELOCATIONS_PREFIX + "*",
)
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
OBJECT_OWNERSHIP = "BucketOwnerEnforced"
ABORT_MULTIPART_DAYS = 7
class BucketConflict(BackupError):
    """An existing bucket's settings contradict the plan; nothing was changed."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


# What the plan wants ---------------------------------------------------------------------------------


def lifecycle_rule_id(plan: Plan) -> str:
    return f"{plan.name}-data-tiering"


def manifest_rule_id(plan: Plan) -> str:
    return f"{plan.name}-manifest-tiering"


def manifest_rule(plan: Plan) -> dict[str, Any] | None:
    """The plan's kept manifests over 128 KB move to GLACIER_IR `manifest_glacier_ir_days` after they were
    written (None: the plan keeps them in STANDARD). Manifests are written once, so only current versions
    move; checkpoints beside them are smaller than the filter's size."""
    days = plan.lifecycle.manifest_glacier_ir_days
    if days is None:
        return None
    return {
        "ID": manifest_rule_id(plan),
        "Filter": {"And": {"Prefix": f"{SNAPSHOTS_PREFIX}{plan.name}/", "ObjectSizeGreaterThan": MANIFEST_TRANSITION_MIN_BYTES}},
        "Status": "Enabled",
        "Transitions": [{"Days": days, "StorageClass": MANIFEST_STORAGE_CLASS}],
    }


def lifecycle_rules(plan: Plan) -> list[dict[str, Any]]:
    """The plan's lifecycle, scoped to the data prefix so records and indexes stay in STANDARD; and the
    manifests' own rule when the plan has one (`manifest_rule`)."""
    rule: dict[str, Any] = {
        "ID": lifecycle_rule_id(plan),
        "Filter": {"Prefix": DATA_PREFIX},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
    }
    transitions = [{"Days": t.days, "StorageClass": t.storage_class} for t in plan.lifecycle.transitions]
    if transitions:
        rule["Transitions"] = transitions
        # Older versions age on the same schedule, counted from the day they stopped being current.
        rule["NoncurrentVersionTransitions"] = [
            {"NoncurrentDays": t.days, "StorageClass": t.storage_class} for t in plan.lifecycle.transitions
        ]
    if plan.lifecycle.noncurrent_expiration_days:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": plan.lifecycle.noncurrent_expiration_days}
    manifests = manifest_rule(plan)
    return [rule] if manifests is None else [rule, manifests]


def lifecycle_configuration(plan: Plan) -> dict[str, Any]:
    """`PutBucketLifecycleConfiguration`'s parameters besides the bucket: the rules, and what happens to
    objects under 128 KB (`TransitionDefaultMinimumObjectSize`, from the plan's `small_objects`), always
    given: S3 applies its default to any configuration written without it."""
    return {
        "LifecycleConfiguration": {"Rules": lifecycle_rules(plan)},
        "TransitionDefaultMinimumObjectSize": plan.lifecycle.transition_default_minimum_object_size,
    }


def encryption_default(plan: Plan) -> dict[str, Any]:
    """`ApplyServerSideEncryptionByDefault` plus `BucketKeyEnabled`: SSE-KMS with a bucket key (fewer KMS
    requests, lower cost) when the plan names a key, SSE-S3 otherwise."""
    if plan.kms_key_id:
        return {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": plan.kms_key_id},
            "BucketKeyEnabled": True,
        }
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def tls_statement(bucket: str) -> dict[str, Any]:
    """Deny every request that does not use TLS, whoever makes it."""
    return {
        "Sid": TLS_STATEMENT_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def create_only_keys(bucket: str) -> list[str]:
    """The object ARNs that are written once and never replaced: manifests, sealed records, tampering and
    pruned markers, the relocation records of repacked packs. (Checkpoints and working records next to them are rewritten, and are not among them.)"""
    return [f"arn:aws:s3:::{bucket}/{pattern}" for pattern in CREATE_ONLY_PATTERNS]


def create_only_statements(bucket: str) -> list[dict[str, Any]]:
    """Enforced by S3 itself, whoever writes: a PutObject (or the CompleteMultipartUpload that ends an upload)
    on a create-only key without `If-None-Match` is denied, so nothing there can be overwritten, only created;
    the parts of a multipart upload are exempt (`s3:ObjectCreationOperation` false), as AWS documents, since
    they carry no conditional header. The exemption is `BoolIfExists`: a write that S3 authorizes as
    s3:PutObject without saying whether it creates an object is denied too, so a write path this policy does
    not know about fails closed. A delete marker there is denied too: it would hide a backup, and so is a
    replica written there by S3 Replication from some other bucket (s3:ReplicateObject and
    s3:ReplicateDelete are authorized apart from s3:PutObject and would otherwise pass). (A `CopyObject`
    into those keys is refused by S3 either way; nothing copies there.)

    No multipart upload may start there, nor on the backup records: S3 dates an object made by one at the
    upload's start, so an upload begun on day X and finished weeks later would give a manifest or a record
    written then the date of day X (prune/backdating.py reads those dates). The system writes each of them
    with one PutObject."""
    resources = create_only_keys(bucket)
    return [
        {
            "Sid": CREATE_ONLY_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": resources,
            "Condition": {"Null": {"s3:if-none-match": "true"}, "BoolIfExists": {"s3:ObjectCreationOperation": "true"}},
        },
        {"Sid": NO_HIDING_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": resources},
        {
            "Sid": NO_REPLICAS_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:ReplicateObject", "s3:ReplicateDelete"],
            "Resource": resources,
        },
        {
            "Sid": NO_MULTIPART_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": resources + [f"arn:aws:s3:::{bucket}/{RECORDS_PREFIX}*"],
            "Condition": {"Bool": {"s3:ObjectCreationOperation": "false"}},
        },
    ]


def bucket_policy(bucket: str, existing: dict[str, Any] | None = None, create_only: bool = True) -> dict[str, Any]:
    """The existing policy with the TLS statement and (for a backup bucket) the create-only statements added
    or put back; other statements are kept."""
    ours = {TLS_STATEMENT_SID, CREATE_ONLY_SID, NO_HIDING_SID, NO_REPLICAS_SID, NO_MULTIPART_SID}
    statements = [s for s in (existing or {}).get("Statement", []) if s.get("Sid") not in ours]
    statements.append(tls_statement(bucket))
    if create_only:
        statements += create_only_statements(bucket)
    return {"Version": "2012-10-17", "Statement": statements}


def has_create_only_statements(policy: dict[str, Any] | None, bucket: str) -> bool:
    """True when the policy holds the create-only statements exactly as `create_only_statements` writes
    them (drift: a weakened condition or a narrower resource list is a difference)."""
    by_sid = {s.get("Sid"): s for s in (policy or {}).get("Statement", [])}
    return all(by_sid.get(wanted["Sid"]) == wanted for wanted in create_only_statements(bucket))


def object_lock_rule(plan: Plan) -> dict[str, Any] | None:
    if plan.object_lock is None:
        return None
    return {"DefaultRetention": {"Mode": plan.object_lock.mode, "Days": plan.object_lock.days}}

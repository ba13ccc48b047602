"""Backup bucket settings: what a plan's bucket must look like, how to read what it looks like, and how the
two differ.

The running backup system only reads the settings (see `drift.py`): a writer that can change lifecycle rules
or versioning can destroy every backup. Changing them is the administrator's step (`provision.py`) and the
deploy template's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import BackupError
from chalicelib.layout import (
    DATA_PREFIX,
    MANIFEST_SUFFIX,
    PRUNED_PREFIX,
    SEALED_PREFIX,
    SNAPSHOTS_PREFIX,
    TAMPERING_PREFIX,
)
from chalicelib.plans import SMALL_OBJECT_SETTINGS, Plan

TLS_STATEMENT_SID = "DenyInsecureTransport"
CREATE_ONLY_SID = "CreateOnlyMetadata"
NO_HIDING_SID = "NoDeleteMarkersOnMetadata"
# Under a backup bucket: keys written once (see create_only_statements).
CREATE_ONLY_PATTERNS = (
    SNAPSHOTS_PREFIX + "*" + MANIFEST_SUFFIX,
    SEALED_PREFIX + "*",
    TAMPERING_PREFIX + "*",
    PRUNED_PREFIX + "*",
)
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
OBJECT_OWNERSHIP = "BucketOwnerEnforced"
ABORT_MULTIPART_DAYS = 7
# What each TransitionDefaultMinimumObjectSize does, for drift messages.
_SMALL_OBJECT_EFFECT = {
    "all_storage_classes_128K": "objects under 128 KB stay in STANDARD",
    "varies_by_storage_class": "objects under 128 KB go to GLACIER and DEEP_ARCHIVE too",
}

# Error codes S3 answers when a setting has never been configured (or was deleted).
_NOT_CONFIGURED = {
    "NoSuchLifecycleConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchPublicAccessBlockConfiguration",
    "OwnershipControlsNotFoundError",
    "NoSuchBucketPolicy",
    "ObjectLockConfigurationNotFoundError",
}


class BucketConflict(BackupError):
    """An existing bucket's settings contradict the plan; nothing was changed."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


# What the plan wants ---------------------------------------------------------------------------------


def lifecycle_rule_id(plan: Plan) -> str:
    return f"{plan.name}-data-tiering"


def lifecycle_rules(plan: Plan) -> list[dict[str, Any]]:
    """The plan's lifecycle, scoped to the data prefix so manifests and records stay in STANDARD."""
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
    return [rule]


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
    pruned markers. (Checkpoints and working records next to them are rewritten, and are not among them.)"""
    return [f"arn:aws:s3:::{bucket}/{pattern}" for pattern in CREATE_ONLY_PATTERNS]


def create_only_statements(bucket: str) -> list[dict[str, Any]]:
    """Enforced by S3 itself, whoever writes: a PutObject (or the CompleteMultipartUpload that ends an upload)
    on a create-only key without `If-None-Match` is denied, so nothing there can be overwritten, only created;
    the parts of a multipart upload are exempt (`s3:ObjectCreationOperation` false), as AWS documents, since
    they carry no conditional header. A delete marker there is denied too: it would hide a backup. (A
    `CopyObject` into those keys is refused by S3 either way; nothing copies there.)"""
    resources = create_only_keys(bucket)
    return [
        {
            "Sid": CREATE_ONLY_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": resources,
            "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}},
        },
        {"Sid": NO_HIDING_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": resources},
    ]


def bucket_policy(bucket: str, existing: dict[str, Any] | None = None, create_only: bool = True) -> dict[str, Any]:
    """The existing policy with the TLS statement and (for a backup bucket) the create-only statements added
    or put back; other statements are kept."""
    ours = {TLS_STATEMENT_SID, CREATE_ONLY_SID, NO_HIDING_SID}
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


# What the bucket has --------------------------------------------------------------------------------


@dataclass
class BucketState:
    """A bucket's protective settings as S3 reports them; None where a setting is not configured."""

    bucket: str
    exists: bool = True
    versioning: str | None = None
    lifecycle: list[dict[str, Any]] | None = None
    # What the lifecycle configuration does with objects under 128 KB (None without a configuration).
    transition_default_minimum_object_size: str | None = None
    encryption: dict[str, Any] | None = None
    public_access_block: dict[str, bool] | None = None
    ownership: str | None = None
    policy: dict[str, Any] | None = None
    object_lock: dict[str, Any] | None = None
    # Settings that could not be read (e.g. AccessDenied), with the reason.
    unreadable: dict[str, str] = field(default_factory=dict)


def _read(state: BucketState, name: str, call: Any) -> Any:
    try:
        return call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _NOT_CONFIGURED:
            return None
        state.unreadable[name] = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".strip()
        return None


def bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def read_state(s3: Any, bucket: str) -> BucketState:
    """Read every protective setting with get_* calls only (the running system's rights allow no more)."""
    state = BucketState(bucket=bucket)
    versioning = _read(state, "versioning", lambda: s3.get_bucket_versioning(Bucket=bucket))
    if "versioning" in state.unreadable and "NoSuchBucket" in state.unreadable["versioning"]:
        return BucketState(bucket=bucket, exists=False)
    state.versioning = (versioning or {}).get("Status")
    lifecycle = _read(state, "lifecycle", lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket))
    state.lifecycle = None if lifecycle is None else lifecycle.get("Rules", [])
    if lifecycle is not None:
        # A configuration written before September 2024 has no value: S3 treats it as the old default,
        # which let small objects transition (varies_by_storage_class).
        state.transition_default_minimum_object_size = lifecycle.get("TransitionDefaultMinimumObjectSize") or SMALL_OBJECT_SETTINGS["archive"]
    encryption = _read(state, "encryption", lambda: s3.get_bucket_encryption(Bucket=bucket))
    if encryption is not None:
        rules = encryption.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        state.encryption = rules[0] if rules else None
    block = _read(state, "public access block", lambda: s3.get_public_access_block(Bucket=bucket))
    if block is not None:
        state.public_access_block = block.get("PublicAccessBlockConfiguration", {})
    ownership = _read(state, "ownership controls", lambda: s3.get_bucket_ownership_controls(Bucket=bucket))
    if ownership is not None:
        rules = ownership.get("OwnershipControls", {}).get("Rules", [])
        state.ownership = rules[0].get("ObjectOwnership") if rules else None
    policy = _read(state, "bucket policy", lambda: s3.get_bucket_policy(Bucket=bucket))
    if policy is not None:
        try:
            state.policy = json.loads(policy.get("Policy") or "{}")
        except json.JSONDecodeError:
            state.unreadable["bucket policy"] = "the policy is not valid JSON"
    lock = _read(state, "object lock", lambda: s3.get_object_lock_configuration(Bucket=bucket))
    if lock is not None:
        state.object_lock = lock.get("ObjectLockConfiguration")
    return state


# Comparing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    setting: str
    message: str
    # "missing": not configured, so applying the plan adds protection and overrides no one's choice.
    # "conflict": configured differently; provisioning changes it only when forced.
    kind: str


def _canonical_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A lifecycle rule in one spelling: S3 may answer with a top-level Prefix, an And filter, or
    zero-valued fields the request did not have."""
    prefix = rule.get("Prefix")
    flt = dict(rule.get("Filter") or {})
    if "Prefix" in flt:
        prefix = flt.pop("Prefix")
    elif "And" in flt:
        both = dict(flt["And"])
        prefix = both.pop("Prefix", prefix)
        flt = {"And": both} if both else {}
    out: dict[str, Any] = {"ID": rule.get("ID"), "Status": rule.get("Status"), "Prefix": prefix or ""}
    if flt:
        out["Filter"] = flt
    for name in ("Transitions", "NoncurrentVersionTransitions"):
        items = [{k: v for k, v in t.items() if v not in (None, 0) or k in ("Days", "NoncurrentDays")} for t in rule.get(name, [])]
        if items:
            out[name] = sorted(items, key=lambda t: (t.get("Days", t.get("NoncurrentDays", 0)), t.get("StorageClass", "")))
    for name in ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"):
        value = {k: v for k, v in (rule.get(name) or {}).items() if v not in (None, False)}
        if value:
            out[name] = value
    return out


def _describe_rule(rule: dict[str, Any]) -> str:
    parts = []
    for t in rule.get("Transitions", []):
        parts.append(f"{t.get('StorageClass')} after {t.get('Days')} days")
    for t in rule.get("NoncurrentVersionTransitions", []):
        parts.append(f"noncurrent {t.get('StorageClass')} after {t.get('NoncurrentDays')} days")
    if "Expiration" in rule:
        parts.append(f"expires current versions {rule['Expiration']}")
    if "NoncurrentVersionExpiration" in rule:
        parts.append(f"expires noncurrent versions after {rule['NoncurrentVersionExpiration'].get('NoncurrentDays')} days")
    if "AbortIncompleteMultipartUpload" in rule:
        parts.append(f"aborts uploads after {rule['AbortIncompleteMultipartUpload'].get('DaysAfterInitiation')} days")
    scope = f"prefix {rule.get('Prefix')!r}" + (f", filter {rule['Filter']}" if "Filter" in rule else "")
    return f"{rule.get('Status')}, {scope}: {'; '.join(parts) or 'no actions'}"


def _lifecycle_differences(plan: Plan, current: list[dict[str, Any]] | None, small_objects: str | None = None) -> list[Difference]:
    wanted = [_canonical_rule(rule) for rule in lifecycle_rules(plan)]
    if current is None:
        return [Difference("lifecycle", "lifecycle rules removed (none configured)", "missing")]
    have = {rule.get("ID"): _canonical_rule(rule) for rule in current}
    found: list[Difference] = []
    planned = plan.lifecycle.transition_default_minimum_object_size
    if small_objects is not None and small_objects != planned:
        found.append(
            Difference(
                "lifecycle",
                f"objects under 128 KB: TransitionDefaultMinimumObjectSize is {small_objects}, plan wants {planned} "
                f"(small_objects {plan.lifecycle.small_objects!r}: {_SMALL_OBJECT_EFFECT[planned]})",
                "conflict",
            )
        )
    for rule in wanted:
        existing = have.pop(rule["ID"], None)
        if existing is None:
            found.append(Difference("lifecycle", f"lifecycle rule '{rule['ID']}' removed", "conflict"))
        elif existing != rule:
            found.append(
                Difference(
                    "lifecycle",
                    f"lifecycle rule '{rule['ID']}' changed: {_describe_rule(existing)} "
                    f"(plan: {_describe_rule(rule)})",
                    "conflict",
                )
            )
    for rule_id, rule in sorted(have.items(), key=lambda item: str(item[0])):
        found.append(Difference("lifecycle", f"unexpected lifecycle rule '{rule_id}': {_describe_rule(rule)}", "conflict"))
    return found


def _encryption_differences(plan: Plan, current: dict[str, Any] | None) -> list[Difference]:
    wanted = encryption_default(plan)["ApplyServerSideEncryptionByDefault"]
    if current is None:
        return [Difference("encryption", "default encryption removed", "missing")]
    have = current.get("ApplyServerSideEncryptionByDefault", {})
    algorithm = have.get("SSEAlgorithm")
    if plan.kms_key_id:
        if algorithm == "AES256":
            # Moving up from SSE-S3 (every bucket's default since 2023) to the plan's key overrides nothing.
            return [Difference("encryption", f"default encryption is AES256, plan wants aws:kms with key {plan.kms_key_id}", "missing")]
        if algorithm != "aws:kms" or have.get("KMSMasterKeyID") != plan.kms_key_id:
            return [
                Difference(
                    "encryption",
                    f"default encryption is {algorithm} with key {have.get('KMSMasterKeyID')}, "
                    f"plan wants aws:kms with key {plan.kms_key_id}",
                    "conflict",
                )
            ]
        if not current.get("BucketKeyEnabled"):
            return [Difference("encryption", "S3 bucket key is off (every object then calls KMS)", "conflict")]
        return []
    if algorithm != wanted["SSEAlgorithm"]:
        # Any KMS algorithm is at least as strong as SSE-S3: a deliberate choice, kept unless forced.
        return [Difference("encryption", f"default encryption is {algorithm}, plan wants AES256", "conflict")]
    return []


def _public_access_differences(current: dict[str, bool] | None) -> list[Difference]:
    if current is None:
        return [Difference("public access", "public access block removed: the bucket can be made public", "missing")]
    opened = [name for name in PUBLIC_ACCESS_BLOCK if not current.get(name)]
    if opened:
        return [Difference("public access", f"public access opened: {', '.join(opened)} off", "conflict")]
    return []


def _ownership_differences(current: str | None) -> list[Difference]:
    if current is None:
        return [Difference("ownership", "ownership controls removed: ACLs are enabled", "missing")]
    if current != OBJECT_OWNERSHIP:
        return [Difference("ownership", f"object ownership is {current}, plan wants {OBJECT_OWNERSHIP} (ACLs disabled)", "conflict")]
    return []


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def denies_insecure_transport(policy: dict[str, Any] | None, bucket: str) -> bool:
    """True when some statement denies every principal every S3 action on the bucket and its objects
    when aws:SecureTransport is false."""
    needed = {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    for statement in (policy or {}).get("Statement", []):
        if statement.get("Effect") != "Deny":
            continue
        principal = statement.get("Principal")
        if principal not in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
            continue
        if not set(_as_list(statement.get("Action", []))) & {"s3:*", "*"}:
            continue
        resources = set(_as_list(statement.get("Resource", [])))
        if not (needed <= resources or "*" in resources or f"arn:aws:s3:::{bucket}*" in resources):
            continue
        condition = statement.get("Condition", {}).get("Bool", {})
        if str(condition.get("aws:SecureTransport", "")).lower() == "false":
            return True
    return False


def _policy_differences(bucket: str, current: dict[str, Any] | None) -> list[Difference]:
    if current is None:
        return [Difference("tls policy", "TLS-only and create-only bucket policy is gone (no bucket policy)", "missing")]
    found = []
    if not denies_insecure_transport(current, bucket):
        # Added next to the existing statements, which are kept: nothing anyone chose is overridden.
        found.append(Difference("tls policy", "the bucket policy no longer denies requests without TLS", "missing"))
    if not has_create_only_statements(current, bucket):
        found.append(
            Difference(
                "tls policy",
                "the bucket policy no longer makes manifests and sealed records create-only (statements "
                f"{CREATE_ONLY_SID} and {NO_HIDING_SID})",
                "missing",
            )
        )
    return found


def _versioning_differences(current: str | None) -> list[Difference]:
    if current == "Enabled":
        return []
    if current == "Suspended":
        return [Difference("versioning", "versioning is suspended", "conflict")]
    return [Difference("versioning", "versioning is not enabled", "missing")]


def _object_lock_differences(plan: Plan, current: dict[str, Any] | None) -> list[Difference]:
    wanted = object_lock_rule(plan)
    if wanted is None:
        return []  # a lock the plan doesn't ask for only adds protection
    retention = wanted["DefaultRetention"]
    text = f"{retention['Mode']} for {retention['Days']} days"
    if not current or current.get("ObjectLockEnabled") != "Enabled":
        return [Difference("object lock", f"object lock is not enabled (plan wants {text})", "conflict")]
    have = (current.get("Rule") or {}).get("DefaultRetention") or {}
    if not have:
        return [Difference("object lock", f"object lock has no default retention (plan wants {text})", "missing")]
    days = have.get("Days") or (have.get("Years") or 0) * 365
    if have.get("Mode") != retention["Mode"] or days != retention["Days"]:
        shown = f"{have.get('Mode')} for {days} days"
        return [Difference("object lock", f"object lock default retention is {shown} (plan wants {text})", "conflict")]
    return []


def differences(plan: Plan, state: BucketState) -> list[Difference]:
    """Every way the bucket differs from the plan. Settings that could not be read are differences too:
    an unreadable setting cannot be vouched for."""
    if not state.exists:
        return [Difference("bucket", f"bucket {state.bucket} does not exist", "missing")]
    found: list[Difference] = []
    checks = [
        ("versioning", lambda: _versioning_differences(state.versioning)),
        ("lifecycle", lambda: _lifecycle_differences(plan, state.lifecycle, state.transition_default_minimum_object_size)),
        ("encryption", lambda: _encryption_differences(plan, state.encryption)),
        ("public access block", lambda: _public_access_differences(state.public_access_block)),
        ("ownership controls", lambda: _ownership_differences(state.ownership)),
        ("bucket policy", lambda: _policy_differences(plan.bucket, state.policy)),
        ("object lock", lambda: _object_lock_differences(plan, state.object_lock)),
    ]
    for name, check in checks:
        if name in state.unreadable:
            found.append(Difference(name, f"{name} could not be read: {state.unreadable[name]}", "unreadable"))
        else:
            found.extend(check())
    return found

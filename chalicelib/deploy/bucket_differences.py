"""How a backup bucket's settings (`bucket_state.py`) differ from what its plan wants (`bucket_settings.py`):
each difference named, for drift alerts, provisioning and the audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.deploy.bucket_settings import (
    CREATE_ONLY_SID,
    NO_HIDING_SID,
    OBJECT_OWNERSHIP,
    PUBLIC_ACCESS_BLOCK,
    encryption_default,
    has_create_only_statements,
    lifecycle_rules,
    object_lock_rule,
)
from chalicelib.deploy.bucket_state import BucketState
from chalicelib.plans import Plan

# What each TransitionDefaultMinimumObjectSize does, for drift messages.
_SMALL_OBJECT_EFFECT = {
    "all_storage_classes_128K": "objects under 128 KB stay in STANDARD",
    "varies_by_storage_class": "objects under 128 KB go to GLACIER and DEEP_ARCHIVE too",
}


@dataclass(frozen=True)
class Difference:
    setting: str
    message: str
    # "missing": not configured, so applying the plan adds protection and overrides no one's choice.
    # "conflict": configured differently; provisioning changes it only when forced.
    kind: str


def canonical_rule(rule: dict[str, Any]) -> dict[str, Any]:
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


def describe_rule(rule: dict[str, Any]) -> str:
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
    wanted = [canonical_rule(rule) for rule in lifecycle_rules(plan)]
    if current is None:
        return [Difference("lifecycle", "lifecycle rules removed (none configured)", "missing")]
    have = {rule.get("ID"): canonical_rule(rule) for rule in current}
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
                    f"lifecycle rule '{rule['ID']}' changed: {describe_rule(existing)} "
                    f"(plan: {describe_rule(rule)})",
                    "conflict",
                )
            )
    for rule_id, rule in sorted(have.items(), key=lambda item: str(item[0])):
        found.append(Difference("lifecycle", f"unexpected lifecycle rule '{rule_id}': {describe_rule(rule)}", "conflict"))
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

"""What a backup bucket's protective settings are, as S3 reports them, read with get_* calls only (the
running system's rights allow no more)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.plans import SMALL_OBJECT_SETTINGS

# Error codes S3 answers when a setting has never been configured (or was deleted).
_NOT_CONFIGURED = {
    "NoSuchLifecycleConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchPublicAccessBlockConfiguration",
    "OwnershipControlsNotFoundError",
    "NoSuchBucketPolicy",
    "ObjectLockConfigurationNotFoundError",
}


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

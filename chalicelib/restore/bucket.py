"""Restoring into a bucket: each version is copied server-side (`CopySource` with `VersionId`); nothing
passes through the function, and nothing is read first: one request per object. A packed object is read
with one ranged GET of its pack's version and written with `PutObject`, under the same rules. Without `overwrite` the copy
carries `IfNoneMatch: "*"`, so S3 itself refuses (412) to write over a key that exists; only then is the
target looked at: holding the same content it counts as restored (an interrupted pass copied it), holding
something else it is left alone. With `overwrite` the copy replaces whatever is there."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from chalicelib import s3docs, transfer
from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.packs import read_packed
from chalicelib.layout import MAX_KEY_BYTES
from chalicelib.plans import Plan
from chalicelib.restore.outcome import Outcome
from chalicelib.restore.requests import Target
from chalicelib.restore.selection import target_key
from chalicelib.errors import error_code
from chalicelib.s3docs import is_missing

# S3's answer to a conditional write while another conditional write to the same key is in flight.
CONDITIONAL_CONFLICT = ("ConditionalRequestConflict", "409")


def same_content(entry: Entry, head: dict[str, Any]) -> bool:
    """Does an existing target object already hold this entry's bytes? (An interrupted pass did the copy.)"""
    if head.get("ContentLength") != entry.size:
        return False
    checksum = head.get("ChecksumSHA256")
    if entry.checksum and checksum and "-" not in entry.checksum and "-" not in checksum:
        return checksum == entry.checksum
    etag = head.get("ETag", "").strip('"')
    return bool(entry.etag) and etag == entry.etag


def existing_keys(s3: Any, bucket: str, prefix: str) -> set[str]:
    """The keys under `prefix` in a target bucket (one listing, for the conflict check)."""
    existing: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        existing.update(item["Key"] for item in page.get("Contents", []))
    return existing


def copy_to_bucket(s3: Any, plan: Plan, target: Target, entry: Entry, overwrite: bool) -> Outcome:
    assert target.bucket
    key = target_key(plan, target, entry)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        # S3 cannot hold the original key under this prefix (it was stored under a short name in the backup).
        return Outcome(
            "failed", entry, reason=f"s3://{target.bucket}/{key[:60]}... would be {len(key.encode('utf-8'))} bytes, "
            f"more than S3's {MAX_KEY_BYTES}; restore it with a shorter target prefix, or to a folder"
        )
    if entry.packed:
        return _put_packed(s3, plan, target.bucket, key, entry, overwrite)
    source = {"Bucket": plan.bucket, "Key": entry.data_key, "VersionId": entry.version_id}
    extra: dict[str, Any] = {"StorageClass": "STANDARD", "ChecksumAlgorithm": "SHA256"}
    if entry.size <= transfer.COPY_OBJECT_LIMIT:
        if not overwrite:
            # S3 refuses the copy (412) where the key exists: no look at the target first, and no gap
            # between a look and the write.
            extra["IfNoneMatch"] = "*"
        try:
            response = _copy(s3, target.bucket, key, source, extra)
        except ClientError as exc:
            if not overwrite and s3docs.lost_race(exc):
                return _already_there(s3, target.bucket, key, entry)
            raise
        checksum = response.get("CopyObjectResult", {}).get("ChecksumSHA256")
    else:
        # Above 5 GiB: boto3's managed multipart copy, each part copied server-side from the same version. A
        # multipart copy cannot carry IfNoneMatch: for these objects only, the target is looked at first.
        if not overwrite and (existing := _target_head(s3, target.bucket, key)) is not None:
            return _judged(entry, existing, f"s3://{target.bucket}/{key} already exists (overwrite is off)")
        config = TransferConfig(
            multipart_threshold=transfer.COPY_OBJECT_LIMIT, multipart_chunksize=transfer.copy_part_size(entry.size)
        )
        s3.copy(CopySource=source, Bucket=target.bucket, Key=key, ExtraArgs=extra, Config=config)
        checksum = None
        size = s3.head_object(Bucket=target.bucket, Key=key)["ContentLength"]
        if size != entry.size:
            return Outcome("failed", entry, reason=f"the copy has {size} bytes, the snapshot {entry.size}")
    if checksum and entry.checksum and "-" not in entry.checksum and checksum != entry.checksum:
        return Outcome("failed", entry, reason=f"the copy's SHA-256 {checksum} differs from the snapshot's {entry.checksum}")
    return Outcome("restored", entry, bytes=entry.size)


def _put_packed(s3: Any, plan: Plan, bucket: str, key: str, entry: Entry, overwrite: bool) -> Outcome:
    """A packed object: its bytes read with one ranged GET of its pack's version (their SHA-256 checked), then
    written with that SHA-256 for S3 to check, under the same no-overwrite rule as a copy (`IfNoneMatch`)."""
    data = read_packed(s3, plan.bucket, entry)
    # read_packed checked the bytes against the entry's SHA-256, which the entry also holds in S3's form.
    checksum = entry.checksum or base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    extra: dict[str, Any] = {"StorageClass": "STANDARD", "ChecksumSHA256": checksum}
    if not overwrite:
        extra["IfNoneMatch"] = "*"
    try:
        response = _once_more_on_conflict(lambda: s3.put_object(Bucket=bucket, Key=key, Body=data, **extra))
    except ClientError as exc:
        if not overwrite and s3docs.lost_race(exc):
            return _already_there(s3, bucket, key, entry)
        raise
    stored = response.get("ChecksumSHA256")
    if stored and entry.checksum and stored != entry.checksum:
        return Outcome("failed", entry, reason=f"the object's SHA-256 {stored} differs from the snapshot's {entry.checksum}")
    return Outcome("restored", entry, bytes=entry.size)


def _copy(s3: Any, bucket: str, key: str, source: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
    return _once_more_on_conflict(lambda: s3.copy_object(Bucket=bucket, Key=key, CopySource=source, **extra))


def _once_more_on_conflict(write: Callable[[], Any]) -> dict[str, Any]:
    """The write; sent once more when S3 answers 409 `ConditionalRequestConflict`: another conditional write to
    the key was in flight (a second invocation of the same pass), and S3 asks for the request to be sent again
    (botocore's retry modes do not). The resend meets what that write left: 412 when it wrote the key."""
    try:
        return dict(write())
    except ClientError as exc:
        if error_code(exc) not in CONDITIONAL_CONFLICT:
            raise
    return dict(write())


def _target_head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    except ClientError as exc:
        if not is_missing(exc):
            raise
        return None


def _judged(entry: Entry, existing: dict[str, Any], refusal: str) -> Outcome:
    """An object found at the target: restored when it holds the entry's bytes (an interrupted pass copied
    it), else left alone and the entry failed with `refusal`."""
    if same_content(entry, existing):
        return Outcome("restored", entry, bytes=entry.size)
    return Outcome("failed", entry, reason=refusal)


def _already_there(s3: Any, bucket: str, key: str, entry: Entry) -> Outcome:
    """S3 refused the copy because the key exists. The restore's checks found it free before it started, so an
    earlier pass wrote it (the same bytes) or someone else did meanwhile (never replaced without overwrite)."""
    existing = _target_head(s3, bucket, key)
    if existing is None:
        # Deleted again since S3 refused the copy: still not ours to write without overwrite.
        return Outcome("failed", entry, reason=f"s3://{bucket}/{key} appeared during the restore (and went again)")
    return _judged(entry, existing, f"s3://{bucket}/{key} appeared during the restore (overwrite is off)")

"""Restoring into a bucket: each version is copied server-side (`CopySource` with `VersionId`); nothing
passes through the function. A target that already holds the same content counts as restored; one that
holds something else is replaced only when the restore asked for `overwrite`."""

from __future__ import annotations

from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from chalicelib import s3docs, transfer
from chalicelib.catalog.manifests import Entry
from chalicelib.layout import MAX_KEY_BYTES
from chalicelib.plans import Plan
from chalicelib.restore.outcome import Outcome
from chalicelib.restore.requests import Target
from chalicelib.restore.selection import target_key
from chalicelib.s3docs import is_missing


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
    try:
        existing = s3.head_object(Bucket=target.bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if not is_missing(exc):
            raise
        existing = None
    if existing is not None:
        if same_content(entry, existing):
            return Outcome("restored", entry, bytes=entry.size)
        if not overwrite:
            return Outcome("failed", entry, reason=f"s3://{target.bucket}/{key} already exists (overwrite is off)")
    source = {"Bucket": plan.bucket, "Key": entry.data_key, "VersionId": entry.version_id}
    extra: dict[str, Any] = {"StorageClass": "STANDARD", "ChecksumAlgorithm": "SHA256"}
    if not overwrite:
        # Closes the gap between the check above and the write.
        extra["IfNoneMatch"] = "*"
    if entry.size <= transfer.COPY_OBJECT_LIMIT:
        try:
            response = s3.copy_object(Bucket=target.bucket, Key=key, CopySource=source, **extra)
        except ClientError as exc:
            if s3docs.lost_race(exc):
                return Outcome("failed", entry, reason=f"s3://{target.bucket}/{key} appeared during the restore")
            raise
        checksum = response.get("CopyObjectResult", {}).get("ChecksumSHA256")
    else:
        # Above 5 GiB: boto3's managed multipart copy, each part copied server-side from the same version.
        # (The existence check above stands in for IfNoneMatch, which a multipart copy cannot carry.)
        extra.pop("IfNoneMatch", None)
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

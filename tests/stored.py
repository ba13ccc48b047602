"""What a snapshot names, checked against what the bucket stores: by version id, never by content alone.

A snapshot that names the right bytes under the wrong version (another run's, a superseded one, `null`) looks
correct when compared by content, and loses data the day that version goes. So every check here reads each
named version by its id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.catalog.manifests import Entry, Manifest, manifest_key
from chalicelib.layout import MAX_KEY_BYTES, SNAPSHOTS_PREFIX


def entries_of(s3: Any, bucket: str, plan: str, backup_id: str, include_held: bool = True) -> list[Entry]:
    with Manifest.download(s3, bucket, manifest_key(plan, backup_id)) as manifest:
        return list(manifest.entries(include_held=include_held))


def identity_of(entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    """Entries as compared across snapshots of the same run: content and the version each one names."""
    return [(e.source, e.key, e.version_id, e.size, e.etag, e.checksum, e.sha256, e.item_count, e.held) for e in entries]


def assert_versions_hold(
    s3: Any, bucket: str, entries: Iterable[Entry], expected: Mapping[tuple[str, str], bytes] | None = None
) -> int:
    """Every entry names a version that exists (not a delete marker, not `null`), with the recorded size,
    ETag and SHA-256 checksum, under a key S3 accepts; with `expected`, its bytes are exactly those.
    Returns how many entries were checked."""
    checked = 0
    for entry in entries:
        where = f"{entry.source}/{entry.key} -> {entry.data_key}@{entry.version_id}"
        assert entry.version_id and entry.version_id != "null", f"{where}: no version id"
        assert len(entry.data_key.encode("utf-8")) <= MAX_KEY_BYTES, f"{where}: key longer than S3 allows"
        head = s3.head_object(Bucket=bucket, Key=entry.data_key, VersionId=entry.version_id, ChecksumMode="ENABLED")
        assert head["ContentLength"] == entry.size, f"{where}: stored {head['ContentLength']} bytes, recorded {entry.size}"
        assert head["ETag"].strip('"') == entry.etag, f"{where}: ETag {head['ETag']} vs recorded {entry.etag}"
        if entry.checksum:
            assert head.get("ChecksumSHA256") == entry.checksum, f"{where}: checksum {head.get('ChecksumSHA256')}"
        if expected is not None or entry.sha256:
            body = s3.get_object(Bucket=bucket, Key=entry.data_key, VersionId=entry.version_id)["Body"].read()
            if entry.sha256:
                assert hashlib.sha256(body).hexdigest() == entry.sha256, f"{where}: bytes differ from the recorded SHA-256"
            if expected is not None and not entry.held:
                want = expected.get((entry.source, entry.key))
                assert want is not None, f"{where}: not expected in this snapshot"
                assert body == want, f"{where}: stored bytes differ from the source's"
        checked += 1
    return checked


def assert_every_manifest_holds(s3: Any, bucket: str) -> int:
    """`assert_versions_hold` for every manifest in the bucket (including ones a crashed run wrote)."""
    checked = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=SNAPSHOTS_PREFIX):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".jsonl.gz"):
                with Manifest.download(s3, bucket, item["Key"]) as manifest:
                    checked += assert_versions_hold(s3, bucket, manifest.entries(include_held=True))
    return checked


def versions_written(s3: Any, bucket: str, data_key: str) -> list[str]:
    """Every version id of one key, newest first."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=data_key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == data_key]

"""What a snapshot names, checked against what the bucket stores: by version id, never by content alone.

A snapshot that names the right bytes under the wrong version (another run's, a superseded one, `null`) looks
correct when compared by content, and loses data the day that version goes. So every check here reads each
named version by its id.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import Entry, Manifest, manifest_key
from chalicelib.layout import MAX_KEY_BYTES, SNAPSHOTS_PREFIX
from tests.moto_state import in_process

TEST_ACCOUNT = os.environ.get("MOTO_ACCOUNT_ID", "123456789012")
ARCHIVED = ("GLACIER", "DEEP_ARCHIVE")


def entries_of(s3: Any, bucket: str, plan: str, backup_id: str, include_held: bool = True) -> list[Entry]:
    with Manifest.download(s3, bucket, manifest_key(plan, backup_id)) as manifest:
        return list(manifest.entries(include_held=include_held))


def identity_of(entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    """Entries as compared across snapshots of the same run: content and the version each one names."""
    return [(e.source, e.key, e.version_id, e.size, e.etag, e.checksum, e.sha256, e.item_count, e.held) for e in entries]


@dataclass(frozen=True)
class Stored:
    """One stored version, as S3 describes it: what `HeadObject ... ChecksumMode=ENABLED` and `GetObject` return."""

    size: int
    etag: str
    checksum_sha256: str | None
    read: Callable[[], bytes]


class NotStored(AssertionError):
    pass


def _in_process_bucket(s3: Any, bucket: str) -> Any | None:
    """moto's own record of the bucket when `s3` talks to the in-process emulator (mock_aws), else None.

    Reading it directly gives the same answers as a request would, at a small fraction of the cost: the
    crash sweeps check tens of thousands of versions. Clients of moto's server (the local stack) go through
    the API."""
    if not in_process(s3):
        return None
    from moto.s3.models import s3_backends

    try:
        backend = s3_backends[TEST_ACCOUNT]["global"]
    except KeyError:
        return None
    # Where versioning is not Enabled, S3 refuses a HeadObject naming a version: that answer is the API's.
    if bucket not in backend.buckets or not backend.buckets[bucket].is_versioned:
        return None
    return backend


def _stored(s3: Any, backend: Any | None, bucket: str, key: str, version_id: str) -> Stored:
    """The version `version_id` of `key`; raises NotStored when it does not exist or is a delete marker."""
    if backend is None:
        try:
            head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
        except ClientError as exc:
            raise NotStored(f"HeadObject answered {exc.response['Error'].get('Code')}") from exc
        return Stored(
            head["ContentLength"],
            head["ETag"].strip('"'),
            head.get("ChecksumSHA256"),
            lambda: s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read(),
        )
    from moto.s3.exceptions import HeadOnDeleteMarker

    try:
        found = backend.head_object(bucket, key, version_id=version_id)
    except HeadOnDeleteMarker as exc:
        raise NotStored("the version is a delete marker") from exc
    except Exception as exc:  # moto raises its own 404s for a version it does not hold
        raise NotStored(f"no such version ({type(exc).__name__})") from exc
    if found is None:
        raise NotStored("no such version")
    # S3 returns the SHA-256 only for an object stored with that checksum algorithm.
    sha256 = found.checksum_value if (found.checksum_algorithm or "").upper() == "SHA256" else None
    if found.storage_class in ARCHIVED:
        # An archived version's bytes are S3's to refuse (InvalidObjectState until thawed).
        return Stored(found.size, found.etag.strip('"'), sha256, _stored(s3, None, bucket, key, version_id).read)
    return Stored(found.size, found.etag.strip('"'), sha256, lambda: bytes(found.value))


def assert_versions_hold(
    s3: Any, bucket: str, entries: Iterable[Entry], expected: Mapping[tuple[str, str], bytes] | None = None
) -> int:
    """Every entry names a version that exists (not a delete marker, not `null`), with the recorded size,
    ETag and SHA-256 checksum, under a key S3 accepts; with `expected`, its bytes are exactly those.
    Returns how many entries were checked."""
    backend = _in_process_bucket(s3, bucket)
    checked = 0
    for entry in entries:
        if entry.packed:
            _assert_packed_holds(s3, backend, bucket, entry, expected)
            checked += 1
            continue
        where = f"{entry.source}/{entry.key} -> {entry.data_key}@{entry.version_id}"
        assert entry.version_id and entry.version_id != "null", f"{where}: no version id"
        assert len(entry.data_key.encode("utf-8")) <= MAX_KEY_BYTES, f"{where}: key longer than S3 allows"
        try:
            stored = _stored(s3, backend, bucket, entry.data_key, entry.version_id)
        except NotStored as exc:
            raise AssertionError(f"{where}: not stored: {exc}") from exc
        assert stored.size == entry.size, f"{where}: stored {stored.size} bytes, recorded {entry.size}"
        assert stored.etag == entry.etag, f"{where}: ETag {stored.etag} vs recorded {entry.etag}"
        if entry.checksum:
            assert stored.checksum_sha256 == entry.checksum, f"{where}: checksum {stored.checksum_sha256}"
        if expected is not None or entry.sha256:
            body = stored.read()
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


def _assert_packed_holds(
    s3: Any, backend: Any, bucket: str, entry: Entry, expected: Mapping[tuple[str, str], bytes] | None
) -> None:
    """A packed entry: its pack's version exists, and holds at the recorded offset bytes of the recorded
    length, SHA-256, checksum and ETag (and, with `expected`, exactly the source's bytes)."""
    where = f"{entry.source}/{entry.key} -> {entry.pack_key}@{entry.version_id}+{entry.pack_offset}"
    assert entry.version_id and entry.version_id != "null" and entry.pack_offset is not None, f"{where}: not placed"
    try:
        stored = _stored(s3, backend, bucket, str(entry.pack_key), entry.version_id)
    except NotStored as exc:
        raise AssertionError(f"{where}: pack not stored: {exc}") from exc
    assert stored.checksum_sha256, f"{where}: the pack was stored without its SHA-256"
    body = stored.read()
    assert hashlib.sha256(body).digest() == base64.b64decode(stored.checksum_sha256), f"{where}: pack damaged"
    data = body[entry.pack_offset : entry.pack_offset + entry.size]
    assert len(data) == entry.size, f"{where}: the pack ends before the object does"
    assert hashlib.sha256(data).hexdigest() == entry.sha256, f"{where}: bytes differ from the recorded SHA-256"
    assert base64.b64encode(hashlib.sha256(data).digest()).decode() == entry.checksum, f"{where}: checksum"
    assert hashlib.md5(data).hexdigest() == entry.etag, f"{where}: ETag"
    if expected is not None and not entry.held:
        want = expected.get((entry.source, entry.key))
        assert want is not None, f"{where}: not expected in this snapshot"
        assert data == want, f"{where}: packed bytes differ from the source's"

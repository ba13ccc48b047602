"""Snapshot manifests: what one backup of one plan holds, version by version
(`meta/snapshots/<plan>/<backup_id>.jsonl.gz`, see chalicelib/layout.py).

A manifest is gzip JSON Lines: a header line, then one entry per object sorted by (source, key). Sorting
lets a backup compare the previous snapshot with a source listing as a merge of two sorted streams, so
memory stays flat whatever the number of objects. Manifests are written last, with `IfNoneMatch="*"`:
a manifest exists only once every object it names is in the bucket.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, fields
from typing import IO, Any

from botocore.exceptions import ClientError

from chalicelib import conditional
from chalicelib.errors import NotFound
from chalicelib.layout import SNAPSHOTS_PREFIX, data_key

MANIFEST_FORMAT = "backup-snapshot/1"
MANIFEST_SUFFIX = ".jsonl.gz"


def manifest_key(plan: str, backup_id: str) -> str:
    return f"{SNAPSHOTS_PREFIX}{plan}/{backup_id}{MANIFEST_SUFFIX}"


@dataclass
class Entry:
    """One object of a snapshot."""

    source: str
    key: str
    version_id: str
    size: int
    etag: str
    # What decides "unchanged" next time: the source's ETag and size, a file's size and mtime, or a hash.
    identity: str
    # S3's own SHA-256 of the stored version (base64; composite values end in -<parts>), for verification.
    checksum: str | None = None
    # SHA-256 of the whole content (hex), where this system computed it while uploading.
    sha256: str | None = None
    item_count: int | None = None
    # A deletion at the source that the mass-deletion guard held back: the version stays current in the
    # bucket and the next backup reconsiders it, but it is not part of this snapshot's content.
    held: bool = False

    @property
    def data_key(self) -> str:
        return data_key(self.source, self.key)

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.source, self.key)

    def to_json(self) -> str:
        # Every field is a plain value, so the instance dict serves (asdict deep-copies: 3x slower, and a
        # million-entry snapshot writes a million of these).
        body = {k: v for k, v in self.__dict__.items() if v is not None and v is not False}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | bytes) -> Entry:
        data = json.loads(line)
        known = _ENTRY_FIELDS or {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The identity of a table's entry whose object holds a DynamoDB export (lines `{"Item": {...}}`) rather than a
# scan (one item a line): `export:<items>:<export id>`.
EXPORT_IDENTITY = "export:"


# Field names of Entry, computed once: parsing a manifest calls from_json once per object.
_ENTRY_FIELDS: frozenset[str] = frozenset(f.name for f in fields(Entry))


class ManifestWriter:
    """Collects entries on local disk as a backup runs, then produces the gzip manifest in one pass.

    Entries must be added in (source, key) order. Entries added with `held=True` are deletion candidates
    whose fate is decided at `finish`: dropped (the deletion happened) or kept as held-back deletions.
    """

    def __init__(self) -> None:
        self._raw: IO[bytes] = tempfile.TemporaryFile()
        self._last: tuple[str, str] | None = None
        self.objects = 0
        self.bytes = 0
        self.pending_deletions = 0

    def add(self, entry: Entry) -> None:
        if self._last is not None and entry.sort_key <= self._last:
            raise ValueError(f"manifest entries out of order: {entry.sort_key!r} after {self._last!r}")
        self._last = entry.sort_key
        if entry.held:
            self.pending_deletions += 1
        else:
            self.objects += 1
            self.bytes += entry.size
        self._raw.write(entry.to_json().encode("utf-8") + b"\n")

    def pending(self) -> Iterator[Entry]:
        """The deletion candidates added so far, read back from disk."""
        self._raw.flush()
        self._raw.seek(0)
        for line in self._raw:
            entry = Entry.from_json(line)
            if entry.held:
                yield entry
        self._raw.seek(0, 2)

    def finish(self, header: dict[str, Any], keep_held: bool, undeleted: Collection[str] = ()) -> IO[bytes]:
        """The gzip manifest, positioned at 0. Deletion candidates are kept as held entries or dropped.

        `undeleted` names data keys whose delete marker could not be placed: they stay held, so the next
        backup tries again instead of forgetting them.
        """
        out: IO[bytes] = tempfile.TemporaryFile()
        full_header = {"format": MANIFEST_FORMAT, **header, "objects": self.objects, "bytes": self.bytes}
        full_header["held_deletions"] = self.pending_deletions if keep_held else len(undeleted)
        self._raw.flush()
        self._raw.seek(0)
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(json.dumps(full_header, ensure_ascii=False).encode("utf-8") + b"\n")
            for line in self._raw:
                if not keep_held and b'"held":true' in line:
                    if not undeleted or Entry.from_json(line).data_key not in undeleted:
                        continue
                gz.write(line)
        out.seek(0)
        return out

    def close(self) -> None:
        self._raw.close()


def put_manifest(s3: Any, bucket: str, key: str, body: IO[bytes]) -> str:
    """Write a finished manifest, only if no manifest is there yet. Returns its version id."""
    response = conditional.put_new(
        s3, Bucket=bucket, Key=key, Body=body, ContentType="application/gzip", ChecksumAlgorithm="SHA256"
    )
    return str(response.get("VersionId", ""))


def list_snapshot_keys(s3: Any, bucket: str, plan: str) -> list[str]:
    """Every manifest key of a plan, oldest first (backup ids start with their UTC time)."""
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{SNAPSHOTS_PREFIX}{plan}/"):
        keys.extend(item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(MANIFEST_SUFFIX))
    return sorted(keys)


def latest_snapshot_key(s3: Any, bucket: str, plan: str) -> str | None:
    keys = list_snapshot_keys(s3, bucket, plan)
    return keys[-1] if keys else None


class Manifest:
    """A downloaded manifest, read as a stream: `header`, then `entries()`.

    The manifest is copied to local disk first so that a long backup never holds an S3 connection open
    while it works through the comparison.
    """

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._file = fileobj
        self._file.seek(0)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            first = gz.readline()
        if not first:
            raise ValueError("empty manifest")
        self.header: dict[str, Any] = json.loads(first)
        if self.header.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {self.header.get('format')!r}")

    @classmethod
    def download(cls, s3: Any, bucket: str, key: str) -> Manifest:
        spool: IO[bytes] = tempfile.TemporaryFile()
        try:
            response = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"no snapshot at s3://{bucket}/{key}") from exc
            raise
        shutil.copyfileobj(response["Body"], spool, 1024 * 1024)
        return cls(spool)

    def entries(self, include_held: bool = False) -> Iterator[Entry]:
        self._file.seek(0)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            gz.readline()
            for line in gz:
                entry = Entry.from_json(line)
                if include_held or not entry.held:
                    yield entry

    def lines(self) -> Iterator[bytes]:
        """The entries' raw JSON lines, read through a position of their own (`os.pread`), so that a pass over
        them can run while an `entries()` stream of the same manifest is half-way through."""
        with gzip.GzipFile(fileobj=io.BufferedReader(_PositionalReader(self._file.fileno()), 1 << 20), mode="rb") as gz:
            gz.readline()
            yield from gz

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PositionalReader(io.RawIOBase):
    """Reads a file from its start without moving the file's own position (shared by every handle on it)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, len(buffer), self._at)
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def read_header(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """A manifest's header line, from its first 64 KiB (a ranged GET, not the whole manifest)."""
    response = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-65535")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = inflater.decompress(response["Body"].read(), 1 << 20)
    line, newline, _ = text.partition(b"\n")
    if not newline:
        with Manifest.download(s3, bucket, key) as manifest:
            return manifest.header
    header = json.loads(line)
    if not isinstance(header, dict) or header.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"s3://{bucket}/{key} is not a snapshot manifest")
    return header


def load_snapshot(s3: Any, bucket: str, plan: str, backup_id: str) -> Manifest:
    return Manifest.download(s3, bucket, manifest_key(plan, backup_id))

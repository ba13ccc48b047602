"""Snapshot manifests: what one backup of one plan holds, version by version
(`meta/snapshots/<plan>/<backup_id>.jsonl.gz`, see chalicelib/layout.py).

A manifest is gzip JSON Lines: a header line, then one entry per object sorted by (source, key). Sorting
lets a backup compare the previous snapshot with a source listing as a merge of two sorted streams, so
memory stays flat whatever the number of objects. Manifests are written last, with `IfNoneMatch="*"`:
a manifest exists only once every object it names is in the bucket.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, fields
from typing import IO, Any

from botocore.exceptions import ClientError

from chalicelib import s3docs
from chalicelib.errors import NotFound, Tampered
from chalicelib.layout import MANIFEST_SUFFIX, SNAPSHOTS_PREFIX, data_key
from chalicelib.s3docs import is_missing

# 2: a packed entry names its pack's key, version, size and ETag only where the pack first appears in the
# manifest, with a number (`PACK_REF`) that later entries of the same pack give instead (`PackTable`).
MANIFEST_FORMAT = "backup-snapshot/2"
# Every format still read: manifests are written once and kept for years.
READABLE_FORMATS = frozenset({"backup-snapshot/1", MANIFEST_FORMAT})


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
    # A packed object (plans with small_objects 'pack'): the pack's key, and where the object's bytes start in
    # it; `version_id` is then the pack's version, `size` the object's length in it, `sha256` and `checksum`
    # (base64) the object's own SHA-256, `etag` the MD5 a single PUT of these bytes would have had.
    pack_key: str | None = None
    pack_offset: int | None = None
    # The pack version as the backup stored it (its length and ETag, both of which a HEAD and an inventory
    # report give), what verification compares with once per pack. Its SHA-256 checksum is left out: a report
    # lists none, and 44 more bytes on every packed entry of every manifest would cost more than it adds.
    pack_size: int | None = None
    pack_etag: str | None = None

    @property
    def data_key(self) -> str:
        """Where an object of its own lives (`data/<source>/<key>`); a packed object is not there."""
        return data_key(self.source, self.key)

    @property
    def packed(self) -> bool:
        return self.pack_key is not None

    @property
    def stored_key(self) -> str:
        """The key of the version that holds the object's bytes (`version_id`): its pack, or its data key."""
        return self.pack_key if self.pack_key is not None else self.data_key

    @property
    def byte_range(self) -> str | None:
        """A packed object's HTTP Range within its pack (None: not packed, or no bytes to read)."""
        if self.pack_offset is None or self.size == 0:
            return None
        return f"bytes={self.pack_offset}-{self.pack_offset + self.size - 1}"

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

# What every packed entry of one pack shares: stored once a manifest, on the pack's first entry.
PACK_FIELDS = ("pack_key", "version_id", "pack_size", "pack_etag")
# The number a manifest gives a pack, in the order the packs first appear in it (0, 1, ...).
PACK_REF = "pack"


class PackTable:
    """A manifest's packs, numbered as they first appear in its stream of entries.

    A packed entry's pack (key, version id, size and ETag: 92 of the 202 bytes a gzipped packed entry took
    when every entry repeated them) is written in full on the first entry that names it, with `"pack": n`;
    the pack's later entries give only `"pack": n`. The manifest stays one sorted stream of one line per
    entry, read from its start by every reader, and its SHA-256 covers the numbers as it covers the rest.
    Held entries are written in full and define nothing: a manifest may leave them out when it is finished.
    One table writes a manifest (`line`); another reads it (`entry`), making the `Entry` that was written,
    moved by `relocate` (catalog/relocations.py `Relocations.apply`) where its pack was repacked."""

    def __init__(self, relocate: Callable[[Entry], Entry] | None = None) -> None:
        self._numbers: dict[tuple[Any, ...], int] = {}
        self._packs: list[tuple[Any, ...]] = []
        self._relocate = relocate

    def line(self, entry: Entry) -> str:
        """The entry's line in the manifest."""
        if entry.pack_key is None or entry.held:
            return entry.to_json()
        pack = tuple(getattr(entry, name) for name in PACK_FIELDS)
        body = {k: v for k, v in entry.__dict__.items() if v is not None and v is not False}
        number = self._numbers.get(pack)
        if number is None:
            number = self._numbers[pack] = len(self._numbers)
        else:
            for name in PACK_FIELDS:
                body.pop(name, None)
        body[PACK_REF] = number
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    def entry(self, data: dict[str, Any]) -> Entry:
        """The entry a manifest line's decoded JSON stands for (the line's dict is used up)."""
        number = data.pop(PACK_REF, None)
        if number is not None:
            if "pack_key" in data:
                if number != len(self._packs):
                    raise ValueError(f"a manifest entry numbers its pack {number}, not {len(self._packs)}")
                self._packs.append(tuple(data.get(name) for name in PACK_FIELDS))
            elif isinstance(number, int) and 0 <= number < len(self._packs):
                data.update(zip(PACK_FIELDS, self._packs[number]))
            else:
                raise ValueError(f"a manifest entry names pack {number!r} before any entry gives it")
        try:
            entry = Entry(**data)
        except TypeError:
            # A field this version does not know: left out.
            entry = Entry(**{k: v for k, v in data.items() if k in _ENTRY_FIELDS})
        return entry if self._relocate is None or entry.pack_key is None else self._relocate(entry)


class ManifestWriter:
    """Collects entries on local disk as a backup runs, then produces the gzip manifest in one pass.

    Entries must be added in (source, key) order. Entries added with `held=True` are deletion candidates
    whose fate is decided at `finish`: dropped (the deletion happened) or kept as held-back deletions.
    """

    def __init__(self) -> None:
        self._raw: IO[bytes] = tempfile.TemporaryFile()
        self._packs = PackTable()
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
        self._raw.write(self._packs.line(entry).encode("utf-8") + b"\n")

    def pending(self) -> Iterator[Entry]:
        """The deletion candidates added so far, read back from disk."""
        self._raw.flush()
        self._raw.seek(0)
        for line in self._raw:
            # Held entries are written in full (PackTable.line); the others may name a pack by its number.
            if b'"held":true' in line:
                yield Entry.from_json(line)
        self._raw.seek(0, 2)

    def finish(
        self,
        header: dict[str, Any],
        keep_held: bool,
        undeleted: Collection[str] = (),
        prove: Callable[[str], str] | None = None,
    ) -> IO[bytes]:
        """The gzip manifest, positioned at 0. Deletion candidates are kept as held entries or dropped.

        `undeleted` names data keys whose delete marker could not be placed: they stay held, so the next
        backup tries again instead of forgetting them. `prove`, given the SHA-256 of the entry lines as
        written, gives the header's `run_proof` (catalog/run_keys.py).
        """
        out: IO[bytes] = tempfile.TemporaryFile()
        full_header = {"format": MANIFEST_FORMAT, **header, "objects": self.objects, "bytes": self.bytes}
        full_header["held_deletions"] = self.pending_deletions if keep_held else len(undeleted)
        if prove is not None:
            # A first pass over the local file: the proof is bound to exactly the lines that follow it.
            digest = hashlib.sha256()
            for line in self._lines(keep_held, undeleted):
                digest.update(line)
            full_header["run_proof"] = prove(digest.hexdigest())
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(json.dumps(full_header, ensure_ascii=False).encode("utf-8") + b"\n")
            for line in self._lines(keep_held, undeleted):
                gz.write(line)
        out.seek(0)
        return out

    def _lines(self, keep_held: bool, undeleted: Collection[str]) -> Iterator[bytes]:
        """The entry lines the manifest holds: held ones only when kept, or still to be deleted."""
        self._raw.flush()
        self._raw.seek(0)
        for line in self._raw:
            if not keep_held and b'"held":true' in line:
                if not undeleted or Entry.from_json(line).data_key not in undeleted:
                    continue
            yield line

    def close(self) -> None:
        self._raw.close()


@dataclass(frozen=True)
class Written:
    """Where a manifest was written: the version S3 answered, and the SHA-256 of its bytes. A backup's record
    keeps both; every later reader reads that exact version and checks the hash."""

    version_id: str
    sha256: str


def file_sha256(body: IO[bytes]) -> str:
    """The SHA-256 of a file's bytes, read from the start; the file is left at its start."""
    digest = hashlib.sha256()
    body.seek(0)
    for block in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(block)
    body.seek(0)
    return digest.hexdigest()


def put_manifest(s3: Any, bucket: str, key: str, body: IO[bytes]) -> Written:
    """Write a finished manifest, only if no manifest is there yet (`AlreadyExists` otherwise)."""
    sha256 = file_sha256(body)
    response = s3docs.put_new(
        s3, Bucket=bucket, Key=key, Body=body, ContentType="application/gzip", ChecksumAlgorithm="SHA256"
    )
    return Written(version_id=str(response.get("VersionId", "")), sha256=sha256)


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

    def __init__(
        self, fileobj: IO[bytes], version_id: str | None = None, sha256: str | None = None, etag: str | None = None
    ) -> None:
        self._file = fileobj
        # The version read, the SHA-256 of its bytes and its ETag (when downloaded).
        self.version_id = version_id
        self.sha256 = sha256
        self.etag = etag
        # Where S3 keeps it and its size (when downloaded): a manifest the plan's manifest rule has moved to
        # GLACIER_IR is billed per GB read (deploy/bucket_settings.py `manifest_rule`).
        self.storage_class = "STANDARD"
        self.size: int | None = None
        # Why this manifest may have been tampered with after it was written (None: nothing seen).
        self.tampering: str | None = None
        # What moves a packed entry whose pack was repacked (catalog/relocations.py), set by the reader that
        # loaded the bucket's relocation records; None: entries as written.
        self.relocate: Callable[[Entry], Entry] | None = None
        self._file.seek(0)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            first = gz.readline()
        if not first:
            raise ValueError("empty manifest")
        self.header: dict[str, Any] = json.loads(first)
        if self.header.get("format") not in READABLE_FORMATS:
            raise ValueError(f"unknown manifest format {self.header.get('format')!r}")

    @classmethod
    def download(
        cls, s3: Any, bucket: str, key: str, version_id: str | None = None, sha256: str | None = None
    ) -> Manifest:
        """The manifest at `key` (its exact `version_id`, when given). With `sha256`, bytes that hash to
        anything else are `Tampered`: the record that named this manifest described other bytes."""
        spool: IO[bytes] = tempfile.TemporaryFile()
        params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
        try:
            response = s3.get_object(**params)
        except ClientError as exc:
            spool.close()
            if is_missing(exc):
                where = f"s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")
                raise NotFound(f"no snapshot at {where}") from exc
            raise
        digest = hashlib.sha256()
        for block in iter(lambda: response["Body"].read(1024 * 1024), b""):
            digest.update(block)
            spool.write(block)
        if sha256 and digest.hexdigest() != sha256:
            spool.close()
            raise Tampered(
                f"s3://{bucket}/{key} version {response.get('VersionId')} hashes to {digest.hexdigest()}, not the "
                f"{sha256} its backup's record holds: the manifest was changed after it was written"
            )
        try:
            manifest = cls(
                spool, version_id=response.get("VersionId"), sha256=digest.hexdigest(), etag=response.get("ETag")
            )
        except (ValueError, OSError, EOFError) as exc:
            spool.close()
            raise Tampered(f"s3://{bucket}/{key} is not a readable snapshot manifest: {exc}") from exc
        # S3 names the class of an object outside STANDARD only.
        manifest.storage_class = response.get("StorageClass") or "STANDARD"
        manifest.size = response.get("ContentLength")
        return manifest

    @property
    def fileobj(self) -> IO[bytes]:
        """The local copy (gzip, from its start); readers that keep a position of their own read it with
        `gzip_from_start`."""
        return self._file

    def entries(self, include_held: bool = False) -> Iterator[Entry]:
        self._file.seek(0)
        packs = PackTable(self.relocate)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            gz.readline()
            for line in gz:
                entry = packs.entry(json.loads(line))
                if include_held or not entry.held:
                    yield entry

    def lines(self) -> Iterator[bytes]:
        """The entries' raw JSON lines, read through a position of their own (`os.pread`), so that a pass over
        them can run while an `entries()` stream of the same manifest is half-way through."""
        with gzip_from_start(self._file) as gz:
            gz.readline()
            yield from gz

    def lines_sha256(self) -> str:
        """The SHA-256 of the entry lines, as a run's proof covers them (`ManifestWriter.finish`)."""
        digest = hashlib.sha256()
        for line in self.lines():
            digest.update(line)
        return digest.hexdigest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gzip_from_start(file: IO[bytes]) -> gzip.GzipFile:
    """A gzip file read from `file`'s start through a position of its own (`os.pread`): several passes over a
    local copy may run side by side."""
    return gzip.GzipFile(fileobj=io.BufferedReader(_PositionalReader(file.fileno()), 1 << 20), mode="rb")


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


def read_header(s3: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
    """A manifest's header line, from its first 64 KiB (a ranged GET, not the whole manifest)."""
    version = {"VersionId": version_id} if version_id else {}
    response = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-65535", **version)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = inflater.decompress(response["Body"].read(), 1 << 20)
    line, newline, _ = text.partition(b"\n")
    if not newline:
        with Manifest.download(s3, bucket, key, version_id) as manifest:
            return manifest.header
    header = json.loads(line)
    if not isinstance(header, dict) or header.get("format") not in READABLE_FORMATS:
        raise ValueError(f"s3://{bucket}/{key} is not a snapshot manifest")
    return header


@dataclass(frozen=True)
class SnapshotVersion:
    """Which version of a snapshot's manifest is the snapshot (`version_id`, and the `sha256` its bytes must
    hash to, where known), and what is wrong around it (`tampering`: later versions, a delete marker)."""

    key: str
    version_id: str
    sha256: str | None
    tampering: str | None


def locate_snapshot(
    s3: Any,
    bucket: str,
    plan: str,
    backup_id: str,
    version_id: str | None = None,
    sha256: str | None = None,
    list_versions: bool = True,
    listed: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
) -> SnapshotVersion:
    """The version `load_snapshot` reads, without reading it: with the `version_id` its backup's record
    holds, that one; without, the key's oldest. One request (the key's versions listed) unless
    `list_versions` is False and both `version_id` and `sha256` are given, or the key's versions were
    `listed` already (`snapshot_versions`)."""
    key = manifest_key(plan, backup_id)
    if version_id and sha256 and not list_versions:
        return SnapshotVersion(key, version_id, sha256, None)
    versions, markers = listed if listed is not None else _versions_of(s3, bucket, key)
    if not versions:
        raise NotFound(f"no snapshot of plan {plan!r} for backup {backup_id} in s3://{bucket}/{key}")
    oldest = versions[-1]["VersionId"]
    notes = []
    if version_id and version_id != oldest:
        notes.append(f"the record names version {version_id}, not the key's first version {oldest}")
    if len(versions) > 1:
        notes.append(f"{len(versions)} versions of the manifest exist; it is written once")
    if markers and markers[0].get("IsLatest"):
        notes.append("a delete marker hides it")
    return SnapshotVersion(key, version_id or oldest, sha256, f"s3://{bucket}/{key}: " + "; ".join(notes) if notes else None)


def load_located(
    s3: Any, bucket: str, plan: str, backup_id: str, located: SnapshotVersion, read: Manifest | None = None
) -> Manifest:
    """The manifest `located` names, its hash checked, its header naming this plan and backup (else Tampered).
    `read`: the key's newest version, read while it was being located; used when it is that version with
    those bytes (a manifest is written once, so it nearly always is), closed otherwise."""
    if read is not None and read.version_id == located.version_id and located.sha256 in (None, read.sha256):
        manifest = read
    else:
        if read is not None:
            read.close()
        manifest = Manifest.download(s3, bucket, located.key, located.version_id, located.sha256)
    if manifest.header.get("plan") != plan or manifest.header.get("backup_id") != backup_id:
        manifest.close()
        raise Tampered(
            f"s3://{bucket}/{located.key}: its header names plan {manifest.header.get('plan')!r} and backup "
            f"{manifest.header.get('backup_id')!r}, not {plan!r} and {backup_id!r}"
        )
    manifest.tampering = located.tampering
    return manifest


def load_snapshot(
    s3: Any,
    bucket: str,
    plan: str,
    backup_id: str,
    version_id: str | None = None,
    sha256: str | None = None,
    list_versions: bool = True,
) -> Manifest:
    """A plan's snapshot of a backup, found from the plan and the backup id alone.

    With the `version_id` and `sha256` its backup's record holds, that exact version, its hash checked. Without
    (the record is unreadable, or predates sealed records), the manifest key's oldest version: manifests are
    created only if absent, so the first version is the one the backup wrote. Either way its header must name
    this plan and backup, and any later version or delete marker on the key is reported as tampering (in
    `Manifest.tampering`) while the snapshot is read from the original. A caller that knows the version and
    hash, and has its own way to see the key's current state (a listing it makes anyway), may skip the
    versions listing (`list_versions=False`)."""
    located = locate_snapshot(s3, bucket, plan, backup_id, version_id, sha256, list_versions)
    return load_located(s3, bucket, plan, backup_id, located)


def snapshot_versions(s3: Any, bucket: str, plan: str, backup_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The versions and delete markers of a snapshot's manifest key, for `locate_snapshot(listed=...)`."""
    return _versions_of(s3, bucket, manifest_key(plan, backup_id))


def _versions_of(s3: Any, bucket: str, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The versions and delete markers of exactly `key`, newest first (one request for a manifest's few)."""
    versions: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        versions += [v for v in page.get("Versions", []) if v["Key"] == key]
        markers += [m for m in page.get("DeleteMarkers", []) if m["Key"] == key]
    return versions, markers

"""Relocation records: where the objects of a repacked pack version are now.

Manifests are written once and name a packed object by its pack's key and version and its offset there, so a
pack whose live objects are copied into a new, smaller pack (a repack, chalicelib/prune/repack_rule.py says
when that pays) needs an indirection that every reader applies. A relocation record says, for one old pack
version, which pack version now holds its objects and at which offset each one starts:

    meta/relocations/<the old pack's key under data/~packs/>/<its version id>.json

    {"format": "pack-relocation/1",
     "old": {"key": "data/~packs/...", "version_id": "..."},
     "new": {"key": "data/~packs/...", "version_id": "...", "size": n, "etag": "..."},
     "objects": [[<old offset>, <length>, <new offset>], ...]}

Under `meta/`, not beside the packs: the backup role writes `data/` and cannot write here, the lifecycle
(scoped to `data/`) never archives a record every restore may need at once, and the prune's sweep of `data/`
versions never takes a record for an unreferenced version. Create-only, like manifests: the bucket policy
refuses a PutObject here without If-None-Match (deploy/bucket_settings.py), so a record, once written, is
the only one for its old version.

`Relocations.apply` is the one place a packed entry is moved: an entry naming a relocated pack version, at an
offset and length the record lists, names the new pack, its version, size and ETag and the new offset instead (again,
if that version was repacked in turn). The entry keeps its own SHA-256, which every read of its bytes checks
(catalog/packs.py `read_object`): a record pointing elsewhere makes a restore fail on that object, it never
changes the bytes restored. An entry whose place a record does not list keeps its old pack version (which the
prune then keeps).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from chalicelib import s3docs
from chalicelib.catalog.manifests import Entry
from chalicelib.errors import Tampered
from chalicelib.layout import PACKS_PREFIX, RELOCATIONS_PREFIX

logger = logging.getLogger(__name__)

RELOCATION_FORMAT = "pack-relocation/1"
RELOCATION_SUFFIX = ".json"


class BadRelocation(ValueError):
    """A relocation record that is not what the format says (or not stored where its content says)."""


def relocation_key(old_key: str, old_version: str) -> str:
    """Where the record of the pack version `old_key` `old_version` lives."""
    if not old_key.startswith(PACKS_PREFIX) or not old_version or "/" in old_version:
        raise BadRelocation(f"only a version of a pack under {PACKS_PREFIX} is relocated, not {old_key!r} version {old_version!r}")
    return f"{RELOCATIONS_PREFIX}{old_key[len(PACKS_PREFIX):]}/{old_version}{RELOCATION_SUFFIX}"


@dataclass(frozen=True)
class Relocation:
    """One old pack version's objects, now in `new_key` version `new_version` (`new_size` bytes, `new_etag`),
    each at `offsets[(old offset, length)]` (a zero-byte object shares its offset with the next one)."""

    old_key: str
    old_version: str
    new_key: str
    new_version: str
    new_size: int
    new_etag: str
    offsets: Mapping[tuple[int, int], int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return relocation_key(self.old_key, self.old_version)

    def to_json(self) -> bytes:
        body = {
            "format": RELOCATION_FORMAT,
            "old": {"key": self.old_key, "version_id": self.old_version},
            "new": {"key": self.new_key, "version_id": self.new_version, "size": self.new_size, "etag": self.new_etag},
            "objects": sorted([old, length, new] for (old, length), new in self.offsets.items()),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, key: str | None = None) -> Relocation:
        """The record `data` holds; with `key`, it must be the record of the old version it names."""
        try:
            body = json.loads(data)
            if body.get("format") != RELOCATION_FORMAT:
                raise BadRelocation(f"format {body.get('format')!r}, not {RELOCATION_FORMAT!r}")
            old, new = body["old"], body["new"]
            offsets = {(int(old), int(length)): int(new) for old, length, new in body["objects"]}
            record = cls(
                str(old["key"]), str(old["version_id"]), str(new["key"]), str(new["version_id"]),
                int(new["size"]), str(new["etag"]), offsets,
            )
        except BadRelocation as exc:
            raise BadRelocation(f"{key or 'a relocation record'}: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadRelocation(f"{key or 'a relocation record'} is not readable: {exc!r}") from exc
        if not record.new_key.startswith(PACKS_PREFIX) or (record.new_key, record.new_version) == (record.old_key, record.old_version):
            raise BadRelocation(f"{key or 'a relocation record'} moves {record.old_key} to {record.new_key} version {record.new_version}")
        if any(min(old, length, new) < 0 for (old, length), new in offsets.items()):
            raise BadRelocation(f"{key or 'a relocation record'} gives an object a negative offset")
        if key is not None and record.key != key:
            raise BadRelocation(f"{key} holds the record of {record.old_key} version {record.old_version}")
        return record


def put_relocation(s3: Any, bucket: str, record: Relocation) -> str:
    """Write a record, only if its old version has none yet (`AlreadyExists` otherwise); its version id."""
    response = s3docs.put_new(
        s3, Bucket=bucket, Key=record.key, Body=record.to_json(), ContentType="application/json", ChecksumAlgorithm="SHA256"
    )
    return str(response.get("VersionId", ""))


class Relocations:
    """The relocation records of one bucket, applied to packed entries (`apply`)."""

    def __init__(self, records: Iterable[Relocation] = (), written: Mapping[tuple[str, str], datetime] | None = None) -> None:
        self._by_old: dict[tuple[str, str], Relocation] = {}
        for record in records:
            self._by_old[(record.old_key, record.old_version)] = record
        # When each record was written (old pack key, version -> S3's LastModified), where listed.
        self.written: dict[tuple[str, str], datetime] = dict(written or {})

    def written_since(self, moment: datetime) -> list[Relocation]:
        """The records written after `moment` (or at a time not known): a reader that resolved its entries
        before such a record was there may still be reading their old pack version."""
        return [r for old, r in self._by_old.items() if old not in self.written or self.written[old] > moment]

    def __len__(self) -> int:
        return len(self._by_old)

    def __iter__(self) -> Any:
        return iter(self._by_old.values())

    def of(self, pack_key: str, version_id: str) -> Relocation | None:
        return self._by_old.get((pack_key, version_id))

    def apply(self, entry: Entry) -> Entry:
        """The entry as it reads now: naming the pack version that holds its bytes (the entry itself when
        it is not packed, or not relocated)."""
        if entry.pack_key is None or not self._by_old:
            return entry
        # A repacked pack may be repacked again; a chain is as long as the records at most (no cycle loops).
        for _ in range(len(self._by_old)):
            record = self._by_old.get((entry.pack_key, entry.version_id))
            offset = None if record is None or entry.pack_offset is None else record.offsets.get((entry.pack_offset, entry.size))
            if record is None or offset is None:
                break
            entry = replace(
                entry, pack_key=record.new_key, version_id=record.new_version, pack_offset=offset,
                pack_size=record.new_size, pack_etag=record.new_etag,
            )
        return entry

    @classmethod
    def load(cls, s3: Any, bucket: str, strict: bool = False) -> Relocations:
        """Every record in `bucket` (one listing, and a GET a record). A record that is not one is left out,
        with a warning: the entries it would move keep naming their old pack version.

        `strict` (the prune, which deletes by what the records say): the records' versions are listed, and a
        record hidden by a delete marker, rewritten, or unreadable is tampering (`Tampered`), never left out.
        Left out, the entries it moved would name the old pack version the prune already deleted, and the new
        pack, named by nothing then, would go too: both copies of a kept snapshot's objects."""
        if strict:
            return cls._load_every_version(s3, bucket)
        records: list[Relocation] = []
        written: dict[tuple[str, str], datetime] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RELOCATIONS_PREFIX):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith(RELOCATION_SUFFIX):
                    continue
                data = s3docs.get_bytes(s3, bucket, key)
                if data is None:
                    continue
                try:
                    record = Relocation.from_json(data, key)
                except BadRelocation as exc:
                    logger.warning("s3://%s: %s", bucket, exc)
                    continue
                records.append(record)
                written[(record.old_key, record.old_version)] = item["LastModified"]
        return cls(records, written)

    @classmethod
    def _load_every_version(cls, s3: Any, bucket: str) -> Relocations:
        versions: dict[str, list[dict[str, Any]]] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=RELOCATIONS_PREFIX):
            for marker in page.get("DeleteMarkers", []):
                raise Tampered(
                    f"relocation record s3://{bucket}/{marker['Key']} has a delete marker: the packs it moved are not "
                    "deleted while it is hidden (a record is written once and never removed)"
                )
            for item in page.get("Versions", []):
                versions.setdefault(item["Key"], []).append(item)
        records: list[Relocation] = []
        written: dict[tuple[str, str], datetime] = {}
        for key, found in sorted(versions.items()):
            if not key.endswith(RELOCATION_SUFFIX):
                continue
            if len(found) > 1:
                raise Tampered(f"relocation record s3://{bucket}/{key} has {len(found)} versions: a record is written once")
            (item,) = found
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=item["VersionId"])["Body"].read()
            try:
                record = Relocation.from_json(body, key)
            except BadRelocation as exc:
                raise Tampered(f"s3://{bucket}/{key} (version {item['VersionId']}): {exc}") from exc
            records.append(record)
            written[(record.old_key, record.old_version)] = item["LastModified"]
        return cls(records, written)


def relocator(s3: Any, bucket: str) -> Callable[[Entry], Entry]:
    """`Relocations.apply` over the bucket's records, loaded when the first packed entry is met: a reader of
    a plan that packs nothing sends no request for them."""
    loaded: list[Relocations] = []

    def apply(entry: Entry) -> Entry:
        if entry.pack_key is None:
            return entry
        if not loaded:
            loaded.append(Relocations.load(s3, bucket))
        return loaded[0].apply(entry)

    return apply

"""Repacking: a STANDARD pack mostly dead, past the grace period, its live objects copied into a new pack when
that pays (`repack_rule.decide_repack`), and a relocation record (catalog/relocations.py) telling every reader
where they went.

What is live comes from the delete pass's own references (`LiveObjects`, fed by `sweep.References` with each
kept entry as relocated so far): only after that pass has read every reference the prune keeps. For each
candidate, in order, and nothing deleted on the way:

1. the old pack's trailer (two ranged GETs): the dead bytes exactly, and each live object's place;
2. the live objects, one ranged GET of the old version from the first live byte to the last, each object
   checked against its SHA-256 as it passes;
3. the new pack, written create-only with its SHA-256 (a key of this invocation's own, `repacked_key`), as
   packing.py writes one; a retry that finds its key taken adopts the version there only if it holds these
   very bytes;
4. a HEAD of the new version: its size, ETag and SHA-256 as written;
5. the relocation record, create-only: from here on every reader reads the new pack.

The old version is not deleted here. A later sweep deletes it as it deletes any version no kept snapshot's
(relocated) entry names, and not while the record is younger than the grace period
(`references.keep_recently_relocated`): a reader that resolved its entries before the record was written may
still be reading it. A crash anywhere leaves the old version named and whole: before the record, the new
pack is named by nothing and goes like any unnamed version once past the grace period, and the next prune
repacks again; after it, the record names a pack already checked. A record that another run wrote first
wins (it is create-only): this run's pack is then named by nothing, and goes the same way.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import s3docs
from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.packs import FOOTER_BYTES, DamagedPack, PackedObject, PackWriter, put_pack, read_index_from_s3
from chalicelib.catalog.relocations import Relocation, Relocations, put_relocation
from chalicelib.errors import AlreadyExists, describe_error
from chalicelib.layout import PACK_SUFFIX, PACKS_PREFIX
from chalicelib.plans import Plan
from chalicelib.prices import Prices
from chalicelib.prune.repack_rule import PackState, RepackDecision, decide_repack

logger = logging.getLogger(__name__)

# Where repacked packs go: under the packs' prefix (the lifecycle moves them; the sweep walks them as packs),
# in a folder no backup id can name.
REPACKED_PREFIX = PACKS_PREFIX + "~repacked/"

PackId = tuple[str, str]
# The packs a prune's record lists one by one (it counts them all).
REPORTED_PACKS = 100


def repacked_key(prune_id: str, token: str, seq: int) -> str:
    """A pack a prune writes (`token`: its invocation's, so no two writers share a key)."""
    return f"{REPACKED_PREFIX}{prune_id}/{token}-{seq:06d}{PACK_SUFFIX}"


@dataclass(frozen=True)
class StoredPack:
    """A pack version as listed: key, version, size, ETag, storage class and when it was written."""

    key: str
    version_id: str
    size: int
    etag: str
    storage_class: str
    written: datetime

    @property
    def id(self) -> PackId:
        return (self.key, self.version_id)


def candidates(s3: Any, bucket: str, now: datetime, grace: timedelta, relocations: Relocations) -> dict[PackId, StoredPack]:
    """The pack versions a repack may take: in STANDARD, older than the grace period, not relocated yet (one
    listing request per thousand pack versions)."""
    found: dict[PackId, StoredPack] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=PACKS_PREFIX):
        for item in page.get("Versions", []):
            pack = StoredPack(
                item["Key"], item["VersionId"], int(item["Size"]), str(item.get("ETag", "")).strip('"'),
                item.get("StorageClass") or "STANDARD", item["LastModified"],
            )
            if not pack.key.endswith(PACK_SUFFIX) or pack.storage_class != "STANDARD" or now - pack.written < grace:
                continue
            if relocations.of(pack.key, pack.version_id) is None:
                found[pack.id] = pack
    return found


def live_objects(s3: Any, plan: Plan, now: datetime, grace: timedelta, relocations: Relocations) -> LiveObjects | None:
    """What a sweep of a plan that packs counts live objects into (None: the plan does not pack)."""
    if plan.lifecycle.small_objects != "pack":
        return None
    return LiveObjects(candidates(s3, plan.bucket, now, grace, relocations))


class LiveObjects:
    """The objects of candidate packs that kept references name ((offset, length): a zero-byte object
    shares its offset with the next one), gathered as the delete pass's references stream by (`add`, given
    each kept entry)."""

    def __init__(self, packs: dict[PackId, StoredPack]) -> None:
        self.packs = packs
        self.live: dict[PackId, set[tuple[int, int]]] = {}

    def add(self, entry: Entry) -> None:
        pack = (str(entry.pack_key), entry.version_id)
        if pack in self.packs and entry.pack_offset is not None:
            self.live.setdefault(pack, set()).add((entry.pack_offset, entry.size))


@dataclass
class Outcome:
    """What a repack pass found and did (the prune's report): packs repacked (or that would be, in a
    survey), the dead bytes their old versions will free, and why others were not."""

    packs: int = 0
    bytes_freed: int = 0
    repacked: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        # The record stays small whatever the number of packs: the first REPORTED_PACKS of them, each.
        return {"packs": self.packs, "bytes_freed": self.bytes_freed, "each": self.repacked[:REPORTED_PACKS]}


def worth_it(
    s3: Any, bucket: str, live: LiveObjects, plan: Plan, prices: Prices, grace: timedelta, now: datetime, problems: list[str]
) -> Iterator[tuple[StoredPack, list[PackedObject], RepackDecision]]:
    """Each candidate the rule says to repack, with its live objects from its trailer. A pack no kept
    reference names is left to the sweep (deleted whole); one that does not look mostly dead by its size is
    not read at all; one whose trailer cannot be read, or does not list what a kept entry names, is left as
    it is (in `problems`)."""
    horizon = float(plan.retention.horizon_days())
    for pack_id, named in sorted(live.live.items()):
        pack = live.packs[pack_id]
        live_bytes = sum(length for _, length in named)
        if pack.size - live_bytes <= live_bytes:
            continue  # not mostly dead, trailer and all
        try:
            objects = read_index_from_s3(s3, bucket, pack.key, pack.version_id)
        except (ClientError, BotoCoreError, DamagedPack) as exc:
            problems.append(f"pack {pack.key} version {pack.version_id} not repacked: {describe_error(exc)}")
            continue
        kept = [o for o in objects if (o.offset, o.length) in named]
        if {(o.offset, o.length) for o in kept} != named:
            problems.append(f"pack {pack.key} version {pack.version_id} not repacked: a kept entry names bytes its trailer does not list")
            continue
        dead = sum(o.length for o in objects) - live_bytes
        state = PackState(live_bytes, dead, len(kept), pack.storage_class, (now - pack.written).total_seconds() / 86400)
        decision = decide_repack(state, plan.lifecycle, prices, grace.total_seconds() / 86400, horizon)
        if decision.repack:
            yield pack, kept, decision


class Repacker:
    """Writes new packs and their relocation records for one plan's bucket (one per invocation)."""

    def __init__(self, s3: Any, bucket: str, prune_id: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prune_id = prune_id
        self.token = secrets.token_hex(4)
        self._seq = 0

    def repack(self, pack: StoredPack, kept: list[PackedObject]) -> Relocation:
        """Copy `kept` (the live objects of `pack`, in offset order) into a new pack, check it, and record the
        relocation; the record stored (ours, or one another run wrote first)."""
        writer = PackWriter()
        try:
            placed = {
                (old.offset, old.length): writer.add(old.source, old.key, io.BytesIO(data), old.identity).offset
                for old, data in self._read(pack, kept)
            }
            body = writer.finish()
            self._seq += 1
            key = repacked_key(self.prune_id, self.token, self._seq)
            version, size, etag = self._put(key, body)
        finally:
            writer.close()
        record = Relocation(pack.key, pack.version_id, key, version, size, etag, placed)
        try:
            put_relocation(self.s3, self.bucket, record)
        except AlreadyExists:
            stored = s3docs.get_bytes(self.s3, self.bucket, record.key)
            if stored is None:
                raise
            return Relocation.from_json(stored, record.key)
        return record

    def _read(self, pack: StoredPack, kept: list[PackedObject]) -> Iterator[tuple[PackedObject, bytes]]:
        """The live objects' bytes, from one ranged GET spanning them, each checked against its SHA-256."""
        with_bytes = [o for o in kept if o.length]
        if with_bytes:
            start, end = with_bytes[0].offset, with_bytes[-1].offset + with_bytes[-1].length - 1
            body = self.s3.get_object(Bucket=self.bucket, Key=pack.key, VersionId=pack.version_id, Range=f"bytes={start}-{end}")["Body"]
        at = with_bytes[0].offset if with_bytes else 0
        for packed in kept:
            if packed.length:
                _read_exactly(body, packed.offset - at)
                data = _read_exactly(body, packed.length)
                at = packed.offset + packed.length
            else:
                data = b""
            if len(data) != packed.length or hashlib.sha256(data).hexdigest() != packed.sha256:
                raise DamagedPack(f"s3://{self.bucket}/{pack.key}: {packed.source}/{packed.key} does not hash to its recorded SHA-256")
            yield packed, data
        if with_bytes:
            body.close()

    def _put(self, key: str, body: Any) -> tuple[str, int, str]:
        """The new pack written only if its key is free, with its SHA-256, then checked by a HEAD of its
        version: (version id, size, ETag)."""
        response, checksum, size = put_pack(self.s3, self.bucket, key, body)
        # None: a retry of a PUT S3 stored (the key is this invocation's): the HEAD tells whether it holds these bytes.
        version = str(response.get("VersionId") or "") if response is not None else ""
        head = self.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED", **({"VersionId": version} if version else {}))
        if head.get("ChecksumSHA256") != checksum or head.get("ContentLength") != size or not head.get("VersionId"):
            raise DamagedPack(f"s3://{self.bucket}/{key} does not hold the pack this prune wrote")
        return str(head["VersionId"]), size, str(head.get("ETag", "")).strip('"')


def _read_exactly(body: Any, count: int) -> bytes:
    """The next `count` bytes of a streamed body (a read may give fewer than asked)."""
    blocks = []
    while count > 0:
        block = body.read(min(count, 1 << 20))
        if not block:
            raise DamagedPack("the pack ended before its live objects did")
        blocks.append(block)
        count -= len(block)
    return b"".join(blocks)


def run(
    s3: Any,
    plan: Plan,
    live: LiveObjects,
    prices: Prices,
    grace: timedelta,
    now: datetime,
    prune_id: str,
    write: bool,
    out_of_time: Any = lambda: False,
) -> Outcome:
    """Repack what pays (with `write`; otherwise say what would be repacked, writing nothing). A pack that
    cannot be read or written is reported and left as it is; time running short leaves the rest for the
    next prune."""
    outcome = Outcome()
    repacker = Repacker(s3, plan.bucket, prune_id)
    try:
        for pack, kept, decision in worth_it(s3, plan.bucket, live, plan, prices, grace, now, outcome.problems):
            freed = pack.size - _new_size(kept)
            if write:
                if out_of_time():
                    outcome.problems.append("time ran short: the other packs worth repacking wait for the next prune")
                    break
                try:
                    record = repacker.repack(pack, kept)
                except (ClientError, BotoCoreError, DamagedPack) as exc:
                    outcome.problems.append(f"pack {pack.key} version {pack.version_id} not repacked: {describe_error(exc)}")
                    continue
                freed = pack.size - record.new_size
            outcome.packs += 1
            outcome.bytes_freed += max(freed, 0)
            outcome.repacked.append({"key": pack.key, "version_id": pack.version_id, "live_objects": len(kept), "reason": decision.reason})
    except (ClientError, BotoCoreError, DamagedPack) as exc:
        outcome.problems.append(f"packs not looked at for repacking: {describe_error(exc)}")
    return outcome


def _new_size(kept: Iterable[PackedObject]) -> int:
    """About what the new pack will take (its objects and footer; the trailer is a few bytes an object)."""
    return sum(o.length for o in kept) + FOOTER_BYTES

"""The pack format: many small objects in one S3 object, so that one object a few MiB large carries them into
Glacier and Deep Archive (S3 does not transition an object under 128 KB, and bills 40 KB of index beside
each archived one).

A pack is the objects' bytes one after another, then a trailer that says what is where, then a fixed footer:

    <object 0 bytes><object 1 bytes>...<object n-1 bytes>
    <trailer: gzip JSON Lines>
    <footer: 48 bytes>

- the trailer's first line is a header, `{"format": "org-backup-pack/1", "objects": n}`; each further line one
  object, in the order its bytes were written: `{"source", "key", "offset", "length", "sha256", "identity"}`
  (offset and length in bytes within the pack, sha256 the hex SHA-256 of the object's bytes, identity what
  the backup compares to call it unchanged);
- the footer is the magic `OBPACK01` (8 bytes), the trailer's length (8 bytes, unsigned big-endian), and the
  trailer's SHA-256 (32 bytes).

So a pack describes itself: a manifest lost or unreadable does not lose which object is where, and a reader
needs two ranged GETs for the index (the footer, the trailer) and one per object. `scripts/unpack.py`
unpacks a pack file with nothing but Python's standard library.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

from chalicelib import s3docs
from chalicelib.catalog.manifests import Entry
from chalicelib.errors import AlreadyExists

PACK_FORMAT = "org-backup-pack/1"
MAGIC = b"OBPACK01"
FOOTER = struct.Struct(">8sQ32s")
FOOTER_BYTES = FOOTER.size
# S3's minimum size for a lifecycle transition: a pack is never smaller, so every pack transitions.
MIN_PACK_BYTES = 128 * 1024


class DamagedPack(ValueError):
    """A pack whose footer or trailer is not what the format says (truncated, overwritten, not a pack)."""


@dataclass(frozen=True)
class PackedObject:
    """Where one object is in its pack."""

    source: str
    key: str
    offset: int
    length: int
    sha256: str
    identity: str

    def byte_range(self) -> str:
        """The HTTP Range of its bytes (a zero-byte object has none: nothing to read)."""
        return f"bytes={self.offset}-{self.offset + self.length - 1}"


class PackWriter:
    """Builds one pack in a temporary file: `add` each object, then `finish` for the whole body."""

    def __init__(self) -> None:
        self._body: IO[bytes] = tempfile.TemporaryFile()
        self._objects: list[PackedObject] = []
        self._size = 0

    @property
    def size(self) -> int:
        """The bytes of the objects so far (the trailer and footer come on top)."""
        return self._size

    @property
    def objects(self) -> list[PackedObject]:
        return list(self._objects)

    def add(self, source: str, key: str, stream: IO[bytes], identity: str) -> PackedObject:
        """Append an object's bytes, read from `stream` to its end, and say where they are."""
        digest = hashlib.sha256()
        offset, length = self._size, 0
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            self._body.write(block)
            length += len(block)
        packed = PackedObject(source, key, offset, length, digest.hexdigest(), identity)
        self._objects.append(packed)
        self._size += length
        return packed

    def finish(self) -> IO[bytes]:
        """The whole pack, positioned at its start; padded with nothing: a pack below MIN_PACK_BYTES is the
        caller's to avoid (or to accept for a plan's last, small pack)."""
        trailer = encode_trailer(self._objects)
        self._body.write(trailer)
        self._body.write(FOOTER.pack(MAGIC, len(trailer), hashlib.sha256(trailer).digest()))
        self._body.seek(0)
        return self._body

    def close(self) -> None:
        self._body.close()


def encode_trailer(objects: list[PackedObject]) -> bytes:
    lines = [json.dumps({"format": PACK_FORMAT, "objects": len(objects)})]
    lines += [json.dumps(asdict(packed), ensure_ascii=False) for packed in objects]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=6, mtime=0)


def read_footer(footer: bytes) -> tuple[int, bytes]:
    """The trailer's length and SHA-256 from a pack's last FOOTER_BYTES bytes. `DamagedPack` when they are not
    a footer."""
    if len(footer) != FOOTER_BYTES:
        raise DamagedPack(f"a pack ends in a {FOOTER_BYTES}-byte footer; {len(footer)} bytes were given")
    magic, length, digest = FOOTER.unpack(footer)
    if magic != MAGIC:
        raise DamagedPack(f"not a pack: it ends in {magic!r}, not {MAGIC!r}")
    return length, digest


def decode_trailer(trailer: bytes, digest: bytes, pack_size: int | None = None) -> list[PackedObject]:
    """The objects a trailer lists, checked: its SHA-256 as the footer says, the header's format and count,
    and each object's bytes inside the pack (before the trailer, not overlapping the one before)."""
    if hashlib.sha256(trailer).digest() != digest:
        raise DamagedPack("the pack's trailer does not hash to what its footer says")
    try:
        lines = gzip.decompress(trailer).decode("utf-8").splitlines()
        header = json.loads(lines[0])
        objects = [PackedObject(**json.loads(line)) for line in lines[1:]]
    except (OSError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise DamagedPack(f"the pack's trailer is not readable: {exc}") from exc
    if header.get("format") != PACK_FORMAT or header.get("objects") != len(objects):
        raise DamagedPack(f"the pack's trailer says {header}, and lists {len(objects)} objects")
    end = 0
    data_end = None if pack_size is None else pack_size - len(trailer) - FOOTER_BYTES
    for packed in objects:
        if packed.offset != end or packed.length < 0 or (data_end is not None and packed.offset + packed.length > data_end):
            raise DamagedPack(f"the pack's trailer places {packed.source}/{packed.key} at {packed.offset}+{packed.length}")
        end = packed.offset + packed.length
    if data_end is not None and end != data_end:
        raise DamagedPack(f"the pack's objects end at byte {end}, its trailer starts at {data_end}")
    return objects


def put_pack(s3: Any, bucket: str, key: str, body: IO[bytes]) -> tuple[dict[str, Any] | None, str, int]:
    """Write a finished pack (`body` at its start) only if its key is free, with its SHA-256 for S3 to check:
    S3's answer (None: the key is taken, e.g. by this very PUT, stored and retried), the SHA-256 (base64)
    and the size, for the caller to compare what the key holds with."""
    digest = hashlib.sha256()
    for block in iter(lambda: body.read(1 << 20), b""):
        digest.update(block)
    size = body.tell()
    body.seek(0)
    checksum = base64.b64encode(digest.digest()).decode("ascii")
    try:
        response = s3docs.put_new(
            s3, Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
            ContentType="application/octet-stream",
        )
    except AlreadyExists:
        return None, checksum, size
    return response, checksum, size


def read_index(pack: IO[bytes]) -> list[PackedObject]:
    """The objects of a pack held in a seekable file."""
    size = pack.seek(0, io.SEEK_END)
    if size < FOOTER_BYTES:
        raise DamagedPack(f"a pack is at least {FOOTER_BYTES} bytes; this one has {size}")
    pack.seek(size - FOOTER_BYTES)
    length, digest = read_footer(pack.read(FOOTER_BYTES))
    if length > size - FOOTER_BYTES:
        raise DamagedPack(f"the footer says the trailer has {length} bytes, the pack only {size}")
    pack.seek(size - FOOTER_BYTES - length)
    return decode_trailer(pack.read(length), digest, size)


def read_index_from_s3(s3: Any, bucket: str, key: str, version_id: str) -> list[PackedObject]:
    """The objects of a pack version in S3: its footer, then its trailer, two ranged GETs."""
    where = {"Bucket": bucket, "Key": key, "VersionId": version_id}
    response = s3.get_object(Range=f"bytes=-{FOOTER_BYTES}", **where)
    size = int(str(response["ContentRange"]).rsplit("/", 1)[1])
    length, digest = read_footer(response["Body"].read())
    if length > size - FOOTER_BYTES:
        raise DamagedPack(f"s3://{bucket}/{key}: the footer says the trailer has {length} bytes, the pack only {size}")
    start = size - FOOTER_BYTES - length
    trailer = s3.get_object(Range=f"bytes={start}-{size - FOOTER_BYTES - 1}", **where)["Body"].read()
    return decode_trailer(trailer, digest, size)


def read_object(s3: Any, bucket: str, key: str, version_id: str, packed: PackedObject) -> bytes:
    """One object's bytes, by a ranged GET of its pack's version, checked against its SHA-256."""
    if packed.length == 0:
        data = b""
    else:
        data = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id, Range=packed.byte_range())["Body"].read()
    if hashlib.sha256(data).hexdigest() != packed.sha256:
        raise DamagedPack(f"s3://{bucket}/{key}: {packed.source}/{packed.key} does not hash to its recorded SHA-256")
    return data


def read_packed(s3: Any, bucket: str, entry: Entry) -> bytes:
    """A packed manifest entry's bytes: one ranged GET of its pack's version, checked against its SHA-256."""
    if entry.pack_key is None or entry.pack_offset is None or entry.sha256 is None:
        raise ValueError(f"{entry.source}/{entry.key} is not a packed entry")
    packed = PackedObject(entry.source, entry.key, entry.pack_offset, entry.size, entry.sha256, entry.identity)
    return read_object(s3, bucket, entry.pack_key, entry.version_id, packed)


def objects_of(pack: IO[bytes]) -> Iterator[tuple[PackedObject, bytes]]:
    """Each object of a pack file with its bytes, each checked against its SHA-256."""
    for packed in read_index(pack):
        pack.seek(packed.offset)
        data = pack.read(packed.length)
        if hashlib.sha256(data).hexdigest() != packed.sha256:
            raise DamagedPack(f"{packed.source}/{packed.key} does not hash to its recorded SHA-256")
        yield packed, data

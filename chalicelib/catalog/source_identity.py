"""What a manifest entry's source identity proves about the version it names, checked without a request.

A snapshot's entry could be forged (a backdated backup planted with the writer's keys, naming a planted
version while keeping the source's identity): carried forward as "unchanged", it would poison every later
backup. So an entry agrees with its source only when what it says of the stored version matches what the
source listing says of the object:

- S3, copied by one `CopyObject`: a copy keeps a single-part object's ETag, so the stored ETag is the
  listed one, and the size is the listed size. Where S3 does not keep it (an SSE-KMS source or backup bucket,
  whose ETags are not MD5s; a source uploaded in parts, whose copy gets an MD5 of its own) only the size and
  a single-part form are proved. Copied in parts (above the reader's multipart threshold): the size, and an
  ETag (and the SHA-256 checksum, where S3 answered one) made of as many parts as this system's copy makes.
- A folder: the size, and with `hash_contents` the SHA-256 of the content.
- A DynamoDB table: the item count; its content is not proved by metadata.

`entry_disagreement` is the backup's check, against the entry's own fields (the backup makes no request per
unchanged object); `stored_disagreement` is the weekly verification's, against what S3 or its inventory
report says of the stored version, which an entry cannot lie about.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from chalicelib import transfer
from chalicelib.catalog.manifests import Entry


@dataclass(frozen=True)
class SourceFacts:
    """What a backup knows of an entry's source without a request: whether a single-part copy keeps the
    source's ETag (no SSE-KMS key declared for the source or the backup bucket), and from which size the
    reader copies in parts (None: it never copies, it uploads)."""

    etag_kept: bool = True
    multipart_threshold: int | None = None


def _s3_identity(identity: str) -> tuple[str, int] | None:
    """(ETag, size) of an S3 source's identity `etag:<etag>:<size>`."""
    kind, _, rest = identity.partition(":")
    etag, _, size = rest.rpartition(":")
    if kind != "etag" or not etag or not size.isdigit():
        return None
    return etag, int(size)


def _parts(etag: str | None) -> str | None:
    """The part count of a multipart ETag or checksum (`...-<parts>`); None for a single-part one."""
    if not etag or "-" not in etag:
        return None
    return etag.rsplit("-", 1)[1]


def _hex_of(checksum: str | None) -> str | None:
    """A single-part SHA-256 checksum (base64) as hex; None for a composite one or none."""
    if not checksum or _parts(checksum) is not None:
        return None
    try:
        return base64.b64decode(checksum, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


def entry_disagreement(entry: Entry, facts: SourceFacts) -> str | None:
    """Why the entry, whose identity equals the source object's as listed, cannot be carried forward; None
    when it agrees."""
    identity = entry.identity
    s3 = _s3_identity(identity)
    if s3 is not None:
        etag, size = s3
        if entry.size != size:
            return f"it names {entry.size} bytes, the source lists {size}"
        threshold = facts.multipart_threshold
        if threshold is not None and size > threshold:
            parts = str(-(-size // transfer.copy_part_size(size)))
            if _parts(entry.etag) != parts or (entry.checksum and _parts(entry.checksum) != parts):
                return f"a copy in {parts} parts has ETag {entry.etag} and checksum {entry.checksum}"
            return None
        if facts.etag_kept and "-" not in etag:
            return None if entry.etag == etag else f"its ETag {entry.etag} is not the source's {etag}"
        return None if _parts(entry.etag) is None else f"a single-part copy has the multipart ETag {entry.etag}"
    if identity.startswith(("file:", "sha256:")):
        if not entry.sha256 or _hex_of(entry.checksum) not in (None, entry.sha256):
            return f"its SHA-256 {entry.sha256} is not its checksum's {entry.checksum}"
        if identity.startswith("sha256:") and entry.sha256 != identity.removeprefix("sha256:"):
            return f"its SHA-256 {entry.sha256} is not the source's {identity.removeprefix('sha256:')}"
        if identity.startswith("file:") and identity.split(":")[1] != str(entry.size):
            return f"it names {entry.size} bytes, the source lists {identity.split(':')[1]}"
        return None
    if identity.startswith("items:") and identity.split(":")[1] != str(entry.item_count):
        return f"it names {entry.item_count} items, the source's scan counted {identity.split(':')[1]}"
    return None


def stored_disagreement(entry: Entry, size: int | None, etag: str, checksum: str | None, etag_kept: bool) -> str | None:
    """Why the stored version (its size, ETag and, where known, SHA-256 checksum, as S3 or its inventory
    report gives them) is not what the entry's source identity describes; None when nothing contradicts it.
    A multipart version proves its size only."""
    identity = entry.identity
    s3 = _s3_identity(identity)
    if s3 is not None:
        listed_etag, listed_size = s3
        if size is not None and size != listed_size:
            return f"{size} bytes, but the source listed {listed_size} when it was copied"
        if etag and etag_kept and "-" not in listed_etag and _parts(etag) is None and etag != listed_etag:
            return f"ETag {etag}, but the source's was {listed_etag} when it was copied"
        return None
    if identity.startswith("sha256:"):
        stored = _hex_of(checksum)
        if stored is not None and stored != identity.removeprefix("sha256:"):
            return f"SHA-256 {stored}, but the source's was {identity.removeprefix('sha256:')}"
    if identity.startswith("file:") and size is not None and identity.split(":")[1] != str(size):
        return f"{size} bytes, but the source's file had {identity.split(':')[1]}"
    return None

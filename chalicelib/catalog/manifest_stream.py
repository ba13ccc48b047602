"""A manifest's entries read as S3 sends them, in blocks, without a copy in /tmp: what a kept index merges in
(catalog/kept_index.py). At ten million objects a week's seven manifests are 5.8 GB; the index beside them
already fills most of what a Lambda function's /tmp may hold.

Two readers:
- `streamed_entries`: the newest version of a manifest key, held entries left out (what restores read: the
  verification's index);
- `checked_entries`: one exact version (the one the prune's index pins), held entries too, its order checked,
  and its bytes hashed as they arrive and compared, at the end of the stream, with the SHA-256 S3 stored for
  that version when it was written (`ChecksumSHA256`, asked for with `ChecksumMode`). Entries out of order,
  or bytes that hash to anything else, raise `Tampered` naming the version, at the latest when its last
  entry has been taken (a stream cut short fails in the gzip reader): the merge that reads it never ends,
  so no index is written from it and nothing is deleted on it. A version stored without a whole-object SHA-256 (written by another
  tool, or in parts) is copied to /tmp and read as before (`Manifest.download`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.entry_order import in_order
from chalicelib.catalog.manifests import READABLE_FORMATS, Entry, Manifest, PackTable, gzip_from_start
from chalicelib.errors import NotFound, Tampered
from chalicelib.s3docs import is_missing

# The C decoder, called on text directly (`json.loads` looks at each line's encoding first).
DECODER = json.JSONDecoder()
# Decompressed bytes read at once: lines are split out of a block, not read one by one from the gzip stream.
BLOCK = 1 << 20


def streamed_entries(s3: Any, bucket: str, key: str, stack: ExitStack) -> Iterator[Entry]:
    """A manifest's entries (held ones left out, as `Manifest.entries` gives them), read as S3 sends them,
    in blocks: its GET is sent now (NotFound when it is not there) and its body closed with `stack`. Each
    entry's JSON is decoded by the C scanner from the block's text, an Entry made of it directly."""
    body = _get(s3, stack, Bucket=bucket, Key=key)["Body"]
    return entries_of(gzip.GzipFile(fileobj=body, mode="rb"), key)


def checked_entries(s3: Any, bucket: str, key: str, version_id: str, stack: ExitStack, where: str) -> Iterator[Entry]:
    """Every entry (held ones too) of the manifest `key` at `version_id`, read as S3 sends it, refused
    (`Tampered`, naming `where`) if out of order or if its bytes do not hash to the SHA-256 S3 stored for
    that version. The GET is sent now; the body is closed with `stack`."""
    response = _get(s3, stack, Bucket=bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
    stored = response.get("ChecksumSHA256")
    if not stored or "-" in str(stored):
        # No whole-object SHA-256 to check the stream against: the copy in /tmp, as before streaming.
        response["Body"].close()
        return in_order(stack.enter_context(Manifest.download(s3, bucket, key, version_id)).entries(include_held=True), where)
    hashing = _Hashing(response["Body"])
    entries = entries_of(gzip.GzipFile(fileobj=hashing, mode="rb"), where, include_held=True)
    return in_order(_then_checked(entries, hashing, str(stored), where), where)


def _get(s3: Any, stack: ExitStack, **params: Any) -> dict[str, Any]:
    try:
        response: dict[str, Any] = s3.get_object(**params)
    except ClientError as exc:
        if is_missing(exc):
            where = f"s3://{params['Bucket']}/{params['Key']}" + (f" version {params['VersionId']}" if "VersionId" in params else "")
            raise NotFound(f"no snapshot at {where}") from exc
        raise
    stack.callback(response["Body"].close)
    return response


class _Hashing:
    """A body read through, its bytes hashed as they pass."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        block: bytes = self._body.read(size) if size >= 0 else self._body.read()
        self.digest.update(block)
        return block

    def seek(self, offset: int, /) -> object:
        raise io.UnsupportedOperation("a manifest read as S3 sends it is read once, from its start")

    def rest(self) -> None:
        """Whatever the gzip reader left unread (nothing, from a whole manifest), hashed too."""
        for _ in iter(lambda: self.read(BLOCK), b""):
            pass


def _then_checked(entries: Iterator[Entry], hashing: _Hashing, stored: str, where: str) -> Iterator[Entry]:
    # A stream cut short fails in the gzip reader (EOFError, zlib.error) before it gets here.
    yield from entries
    hashing.rest()
    got = base64.b64encode(hashing.digest.digest()).decode("ascii")
    if got != stored:
        raise Tampered(
            f"{where} hashes to SHA-256 {got}, not the {stored} S3 stored for that version: its bytes were not "
            "the ones written, so no index is made of it and nothing is deleted on it"
        )


def local_entries(manifest: Manifest, where: str, include_held: bool = False) -> Iterator[Entry]:
    """A downloaded manifest's entries (`Manifest.entries`'s), decoded as `entries_of` decodes a stream: the
    same entries in about half the time (moved by the manifest's `relocate`, as there), read through a
    position of their own."""
    with gzip_from_start(manifest.fileobj) as gz:
        yield from entries_of(gz, where, include_held, manifest.relocate)


def entries_of(
    gz: gzip.GzipFile, key: str, include_held: bool = False, relocate: Callable[[Entry], Entry] | None = None
) -> Iterator[Entry]:
    """The entries of a gzip manifest stream after its header (held ones only with `include_held`)."""
    header = json.loads(gz.readline() or b"{}")
    if header.get("format") not in READABLE_FORMATS:
        raise ValueError(f"{key}: unknown manifest format {header.get('format')!r}")
    yield from _made(lines_of(gz), DECODER.raw_decode, include_held, relocate)


def lines_of(gz: gzip.GzipFile) -> Iterator[str]:
    """The lines left in a gzip stream, as text, read in blocks (a manifest's entries, a kept index's
    versions). The JSON encoder escapes a newline inside a string, so every newline ends a line; not
    `splitlines`, which also splits at the Unicode line separators a key may hold."""
    rest = b""
    for block in iter(lambda: gz.read(BLOCK), b""):
        block = rest + block
        end = block.rfind(b"\n") + 1
        rest = block[end:]
        if end:
            yield from block[: end - 1].decode("utf-8").split("\n")
    if rest.strip():
        yield rest.decode("utf-8")


def _made(
    lines: Iterable[str], decode: Callable[[str], tuple[Any, int]], include_held: bool, relocate: Callable[[Entry], Entry] | None
) -> Iterator[Entry]:
    packs = PackTable(relocate)
    for line in lines:
        entry = packs.entry(decode(line)[0])
        if include_held or not entry.held:
            yield entry

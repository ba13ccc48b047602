"""A plan's kept index: the distinct versions its kept snapshots name, in one file, so that a daily pass over
them reads the index and the few manifests written since, not every kept manifest.

Every manifest names every object of its snapshot, so a plan keeping 51 snapshots of N objects has 51 x N
manifest entries for about N + (changes x retention) distinct versions. The weekly verification needs the
distinct versions of one weekday's slice every day; merging all kept manifests for it makes the day's work
grow with history. The index holds each distinct version once, with the set of snapshots that name it:

    meta/index/<plan>/<newest snapshot covered>-<digest of the covered ids>.jsonl.gz

gzip JSON Lines: a header (`format`, `plan`, `snapshots`: the backup ids it covers, in order), then one line
per version sorted by (source, key, version id): a JSON array of the manifest entry's fields in `Entry`'s
order, then a bit mask of the header's snapshots naming it. Arrays rather than objects, and gzip level 1:
each pass reads or writes every version of the plan (tens of millions at ten million objects), and this
halves the time a line takes.

Bringing it up to date is a merge of three sorted streams: the newest index (its snapshots no longer kept
drop out of every mask, and a version left with none drops out), and the manifests of kept snapshots it does
not cover. The day's work is the index plus the new manifests: it grows with change, not with history. The
index is derived data: written create-only under a name of its own, it never replaces a manifest, a
reader falls back to the manifests when it is missing or unreadable, and the daily prune (the only role that
deletes versions) deletes the indexes a newer one superseded.

Two kinds are kept (`IndexKind`), each under a prefix of its own: the verification's (`VERIFIED`: the
entries a restore reads, the newest manifest version), and the prune's (`PRUNED`, under a prefix only the
prune's role may write): held entries too, each manifest read at a pinned version (`versions`, recorded in the
header), and named by the SHA-256 of its whole body, checked on every read, so that an index changed after it
was written is not used. What decides a deletion is never an index another role could have written.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import itertools
import json
import logging
import operator
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, fields
from json.decoder import scanstring as _scanstring  # type: ignore[attr-defined]  # the C scanner, public but untyped
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import s3docs
from chalicelib.catalog.entry_order import in_order
from chalicelib.catalog.manifest_stream import DECODER as _DECODER, checked_entries, lines_of, streamed_entries
from chalicelib.catalog.manifests import Entry, Manifest, gzip_from_start, manifest_key
from chalicelib.catalog.relocations import relocator
from chalicelib.errors import AlreadyExists, NotFound, describe_error
from chalicelib.layout import INDEX_PREFIX, PRUNE_INDEX_PREFIX

logger = logging.getLogger(__name__)

# 3: entries name packs (`pack_key`, `pack_offset`); 4: and what the pack's version was when stored
# (`pack_size`, `pack_etag`). An index of an earlier format is rebuilt.
INDEX_FORMAT = "kept-index/4"
# The index's lines: Entry's fields in this order, then the mask.
_FIELDS = tuple(field.name for field in fields(Entry))
INDEX_SUFFIX = ".jsonl.gz"

# One version and the mask of the snapshots (positions in the index's snapshot list) that name it.
Named = tuple[Entry, int]
# A manifest's entries as an index takes them (`where` names the manifest in an error).
Reader = Callable[[Manifest, str], Iterable[Entry]]


def _entries(manifest: Manifest, where: str) -> Iterable[Entry]:
    return manifest.entries()


@dataclass(frozen=True)
class IndexKind:
    """Where an index lives and how it is made: `root` (its plans' folders under it); `read`, a manifest's
    entries as it takes them; `body_named`: named by its body's SHA-256, checked when read."""

    root: str
    read: Reader = _entries
    body_named: bool = False
    # Whether the manifests merged in are read as S3 sends them (catalog/manifest_stream.py: the newest
    # version, or with pinned versions each one checked against the SHA-256 S3 stored for it) rather than
    # copied to /tmp first: at ten million objects a week's seven manifests are 5.8 GB of /tmp beside the two
    # indexes.
    streamed: bool = False


# The weekly verification's index: what restores read.
VERIFIED = IndexKind(INDEX_PREFIX, streamed=True)


def _checked_entries(manifest: Manifest, where: str) -> Iterable[Entry]:
    # Held entries too (a held deletion's version is still current), each manifest refused if not sorted.
    return in_order(manifest.entries(include_held=True), where)


# The prune's index (chalicelib/prune/references.py): every entry the prune must keep, held ones too, each
# manifest checked; its own prefix, which only the prune's role may write. The cost report reads it too
# (read only: chalicelib/cost/inventory.py).
PRUNE_INDEX = IndexKind(PRUNE_INDEX_PREFIX, _checked_entries, body_named=True, streamed=True)


def index_prefix(plan: str, kind: IndexKind = VERIFIED) -> str:
    return f"{kind.root}{plan}/"


def index_key(plan: str, snapshots: Sequence[str], kind: IndexKind = VERIFIED, body_digest: str | None = None) -> str:
    # Named by the set of snapshots, whatever their order in the masks: two passes over the same snapshots
    # write one index. A body-named index: by what it holds, which the same snapshots make the same.
    digest = body_digest or hashlib.sha256("\n".join(sorted(snapshots)).encode("utf-8")).hexdigest()[:16]
    return f"{index_prefix(plan, kind)}{max(snapshots)}-{digest}{INDEX_SUFFIX}"


def _body_digest(fileobj: IO[bytes]) -> str:
    fileobj.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: fileobj.read(1 << 20), b""):
        digest.update(block)
    fileobj.seek(0)
    return digest.hexdigest()[:32]


class KeptIndex:
    """A downloaded index, on local disk: `snapshots` (and the manifest `versions` read, where pinned), then
    `versions()`."""

    def __init__(self, fileobj: IO[bytes], key: str, kind: IndexKind = VERIFIED) -> None:
        self._file = fileobj
        self.key = key
        if kind.body_named and not key.endswith(f"-{_body_digest(fileobj)}{INDEX_SUFFIX}"):
            raise ValueError(f"{key} does not hold what its name says: changed after it was written")
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            header = json.loads(gz.readline() or b"{}")
        if header.get("format") != INDEX_FORMAT:
            raise ValueError(f"{key} is not a kept index (format {header.get('format')!r})")
        self.snapshots: list[str] = list(header["snapshots"])
        self.pinned: dict[str, str] = dict(header.get("versions") or {})
        # The index holds the entries as their manifests wrote them; what its readers get names the pack
        # version holding each packed object's bytes now (catalog/relocations.py), set where it is opened.
        self.relocate: Callable[[Entry], Entry] | None = None

    @classmethod
    def download(cls, s3: Any, bucket: str, key: str, kind: IndexKind = VERIFIED) -> KeptIndex:
        spool: IO[bytes] = tempfile.TemporaryFile()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for block in iter(lambda: body.read(1024 * 1024), b""):
                spool.write(block)
            spool.seek(0)
            return cls(spool, key, kind)
        except BaseException:
            spool.close()
            raise

    def versions(self, after: tuple[str, str] | None = None) -> Iterator[Named]:
        """Every line (after the (source, key) `after`, if given), each pass through a position of its own: two
        passes may run side by side; each packed entry moved by `relocate`, where set. A job resuming from a
        checkpoint skips the lines up to `after` reading only their first two fields (`_sort_key`), without
        decoding the rest or making entries."""
        relocate = self.relocate
        if relocate is None:
            return self.stored_versions(after)
        return ((relocate(entry) if entry.pack_key is not None else entry, mask) for entry, mask in self.stored_versions(after))

    def stored_versions(self, after: tuple[str, str] | None = None) -> Iterator[Named]:
        """The lines as stored: what a newer index is merged from."""
        width = len(_FIELDS)
        decode = _DECODER.raw_decode
        make = Entry
        lines = _lines(self._file)
        if after is not None:
            # The lines are sorted by (source, key): the first past `after` ends the skipping.
            lines = itertools.dropwhile(lambda line: _sort_key(line) <= after, lines)
        for line in lines:
            values = decode(line)[0]
            if type(values) is not list or len(values) != width + 1:
                raise ValueError(f"{self.key}: a line is not {width} fields and a mask")
            mask = values.pop()
            yield make(*values), int(mask)
    def close(self) -> None:
        self._file.close()


def _sort_key(text: str) -> tuple[str, str]:
    """A line's (source, key), its first two fields, read with the JSON decoder's own string scanner: a
    quarter of the time of decoding the whole line. A line not shaped as `_write` writes it is decoded whole."""
    if text.startswith('["'):
        source, end = _scanstring(text, 2)
        if text.startswith(',"', end):
            return source, _scanstring(text, end + 2)[0]
    values = json.loads(text)
    if not isinstance(values, list) or len(values) < 2:
        raise ValueError(f"a kept index line is not a list of fields: {text[:80]!r}")
    return values[0], values[1]


# Lines written to the gzip stream at once (one compress call and one CRC per block, not per line).
_WRITE_LINES = 2000


def _lines(fileobj: IO[bytes]) -> Iterator[str]:
    """An index file's lines after its header, as text, read in blocks through a position of their own."""
    with gzip_from_start(fileobj) as gz:
        gz.readline()
        yield from lines_of(gz)


def index_keys(s3: Any, bucket: str, plan: str, kind: IndexKind = VERIFIED) -> list[str]:
    """The plan's index keys, oldest first (by when they were written, then by name)."""
    found: list[tuple[Any, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=index_prefix(plan, kind)):
        found.extend((item["LastModified"], item["Key"]) for item in page.get("Contents", []) if item["Key"].endswith(INDEX_SUFFIX))
    return [key for _, key in sorted(found)]


def merge(streams: Sequence[Iterable[Named]]) -> Iterator[Named]:
    """One line per distinct version, masks or-ed together, in (source, key, version id) order: one key's
    versions are held at a time. Each stream is sorted by (source, key): a manifest has one entry a key, an
    index one line per version of it."""
    merged = heapq.merge(*streams, key=lambda named: named[0].sort_key)
    for _, group in itertools.groupby(merged, key=lambda named: named[0].sort_key):
        versions: dict[str, Named] = {}
        for entry, mask in group:
            seen = versions.get(entry.version_id)
            versions[entry.version_id] = (seen[0] if seen else entry, (seen[1] if seen else 0) | mask)
        for version_id in sorted(versions):
            if versions[version_id][1]:
                yield versions[version_id]


def _remapped(index: KeptIndex, positions: dict[int, int]) -> Iterator[Named]:
    """The index's versions with their masks moved to the new snapshot list (snapshots not in `positions`
    dropped)."""
    # The kept positions keep their order, so they move in runs (a run ends where a dropped snapshot was):
    # a few shifts per version rather than one test per snapshot.
    runs: list[tuple[int, int, int]] = []  # (old start, new start, length)
    for old, position in sorted(positions.items()):
        if runs and old == runs[-1][0] + runs[-1][2] and position == runs[-1][1] + runs[-1][2]:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((old, position, 1))
    moves = [(old, (1 << length) - 1, new) for old, new, length in runs]
    # As the index's readers take it: as stored when it is merged into a newer index (no `relocate`).
    for entry, mask in index.versions():
        moved = 0
        for old, width, new in moves:
            moved |= (mask >> old & width) << new
        yield entry, moved


def _batched(items: Iterable[Named]) -> Iterator[list[Named]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, _WRITE_LINES)):
        yield chunk


def _write(
    s3: Any, bucket: str, plan: str, snapshots: list[str], versions: Iterable[Named], kind: IndexKind, pinned: Mapping[str, str] | None
) -> KeptIndex:
    """Write the index (create-only) and give it back, read from the local copy just written."""
    out: IO[bytes] = tempfile.TemporaryFile()
    try:
        header: dict[str, Any] = {"format": INDEX_FORMAT, "plan": plan, "snapshots": snapshots}
        if pinned is not None:
            header["versions"] = {s: pinned[s] for s in snapshots}
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=1) as gz:
            gz.write(json.dumps(header).encode("utf-8") + b"\n")
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            values_of = operator.attrgetter(*_FIELDS)
            for chunk in _batched(versions):
                text = "\n".join([dumps((*values_of(entry), mask)) for entry, mask in chunk])
                gz.write(text.encode("utf-8") + b"\n")
        key = index_key(plan, snapshots, kind, _body_digest(out) if kind.body_named else None)
        out.seek(0)
        try:
            s3docs.put_new(s3, Bucket=bucket, Key=key, Body=out, ContentType="application/gzip", ChecksumAlgorithm="SHA256")
        except AlreadyExists:
            pass  # the same snapshots give the same index: another pass wrote it first
        except (ClientError, BotoCoreError) as exc:
            # The local copy is whole: this pass uses it, and the next one merges again.
            logger.warning("kept index s3://%s/%s not written: %s", bucket, key, describe_error(exc))
        out.seek(0)
        return KeptIndex(out, key, kind)
    except BaseException:
        out.close()
        raise


def drop_superseded(s3: Any, bucket: str, plan: str, kind: IndexKind = VERIFIED) -> int:
    """Delete every version of the plan's indexes but the newest index (by version id: no delete marker).
    The prune calls this: only its role deletes versions. Only indexes the first listing found older than its
    newest go, so one written while this runs stays; a reader that loses the index it listed starts from the
    manifests. Returns how many versions went."""
    keys = index_keys(s3, bucket, plan, kind)
    # Only indexes older than the newest one listed: one written since the listing is newer and stays.
    superseded = set(keys[:-1])
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=index_prefix(plan, kind)):
        for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if version["Key"] not in superseded:
                continue
            try:
                s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
                deleted += 1
            except ClientError as exc:
                # Object Lock's default retention holds it (or S3 refused it for now): a later prune tries again.
                logger.warning("kept index s3://%s/%s stays for now: %s", bucket, version["Key"], describe_error(exc))
    return deleted


def newest_index(s3: Any, bucket: str, plan: str, kind: IndexKind, stack: ExitStack) -> KeptIndex | None:
    """The plan's newest index of `kind` that can be read, closed with `stack` (None: none can). One that
    does not read (a body-named one whose body is not what its name says, one cut short) is passed over for
    the one before it. For a reader that takes what it covers and reads the rest itself (`combined`)."""
    index = _newest_readable(s3, bucket, plan, kind)
    return stack.enter_context(closing(index)) if index is not None else None


def _newest_readable(s3: Any, bucket: str, plan: str, kind: IndexKind) -> KeptIndex | None:
    for key in reversed(index_keys(s3, bucket, plan, kind)):
        try:
            return KeptIndex.download(s3, bucket, key, kind)
        except (ClientError, BotoCoreError, ValueError, KeyError, OSError, EOFError) as exc:
            logger.warning("kept index s3://%s/%s is not used: %s", bucket, key, describe_error(exc))
    return None


def _newest(
    s3: Any, bucket: str, plan: str, kept: Sequence[str], kind: IndexKind, pinned: Mapping[str, str] | None
) -> KeptIndex | None:
    """The newest readable index sharing a snapshot with `kept` (None: start from the manifests). With
    `pinned`, one that read a shared snapshot's manifest at another version is not used either."""
    index = _newest_readable(s3, bucket, plan, kind)
    if index is None:
        return None
    shared = set(index.snapshots) & set(kept)
    if shared and (pinned is None or all(index.pinned.get(s) == pinned[s] for s in shared)):
        return index
    index.close()
    return None


def _download(s3: Any, bucket: str, plan: str, snapshot: str, stack: ExitStack, version: str | None) -> Manifest:
    return stack.enter_context(Manifest.download(s3, bucket, manifest_key(plan, snapshot), version))


def _merged_in(
    s3: Any, bucket: str, plan: str, snapshot: str, stack: ExitStack, kind: IndexKind, pinned: Mapping[str, str] | None
) -> Iterable[Entry]:
    """A manifest's entries as `kind` merges them in: streamed (at its pinned version, checked, where pinned),
    or copied to /tmp and read."""
    key, where = manifest_key(plan, snapshot), _where(plan, snapshot, pinned)
    if kind.streamed and pinned is not None:
        return checked_entries(s3, bucket, key, pinned[snapshot], stack, where)
    if kind.streamed:
        return streamed_entries(s3, bucket, key, stack)
    return kind.read(_download(s3, bucket, plan, snapshot, stack, pinned[snapshot] if pinned else None), where)


def _where(plan: str, snapshot: str, pinned: Mapping[str, str] | None) -> str:
    version = pinned[snapshot] if pinned else None
    return f"manifest {manifest_key(plan, snapshot)}" + (f" (version {version})" if version else "")


def kept_index(
    s3: Any,
    bucket: str,
    plan: str,
    kept: Sequence[str],
    stack: ExitStack,
    kind: IndexKind = VERIFIED,
    pinned: Mapping[str, str] | None = None,
    rebuild: bool = False,
) -> KeptIndex:
    """The plan's index covering exactly the snapshots `kept`: the newest one brought up to date (written,
    and older ones deleted) when it covers anything else. With `pinned` (snapshot -> manifest version id, one
    for each of `kept`), each manifest is read at that version; with `rebuild`, from the manifests alone.
    Closed with `stack`."""
    kept = sorted(set(kept))
    if not kept:
        raise NotFound(f"no kept snapshot of plan {plan} to index")
    if pinned is not None and set(pinned) != set(kept):
        raise ValueError(f"the pinned manifest versions of plan {plan} are not those of the snapshots indexed")
    try:
        newest = None if rebuild else _newest(s3, bucket, plan, kept, kind, pinned)
        index = _brought_up_to_date(s3, bucket, plan, kept, stack, newest, kind, pinned)
    except (ValueError, TypeError, KeyError, EOFError, OSError, zlib.error) as exc:
        # An index whose body cannot be read (cut short, or from another version of this code): the manifests
        # alone, once. A manifest that cannot be read fails here again, as it would without an index.
        logger.warning("kept index of plan %s in s3://%s is not used: %s", plan, bucket, describe_error(exc))
        index = _brought_up_to_date(s3, bucket, plan, kept, stack, None, kind, pinned)
    index.relocate = relocator(s3, bucket)
    return index


def _brought_up_to_date(
    s3: Any,
    bucket: str,
    plan: str,
    kept: list[str],
    stack: ExitStack,
    index: KeptIndex | None,
    kind: IndexKind,
    pinned: Mapping[str, str] | None,
) -> KeptIndex:
    with ExitStack() as reading:
        if index is not None:
            reading.callback(index.close)
            if set(index.snapshots) == set(kept):
                reading.pop_all()
                return stack.enter_context(closing(index))
        covered = [s for s in index.snapshots if s in kept] if index else []
        others = [(s, _merged_in(s3, bucket, plan, s, reading, kind, pinned)) for s in kept if s not in covered]
        order, versions = combined(index, covered, others)
        written = _write(s3, bucket, plan, order, versions, kind, pinned)
    return stack.enter_context(closing(written))


def combined(
    index: KeptIndex | None, from_index: Sequence[str], others: Sequence[tuple[str, Iterable[Entry]]]
) -> tuple[list[str], Iterator[Named]]:
    """The versions the snapshots `from_index` (each one `index` covers) and `others` (a snapshot and its
    manifest's entries, sorted) name, one line per version, its mask over the snapshot order given back
    (`from_index`, then `others`): what an index of them holds, streamed without writing anything. Memory
    holds one key's versions."""
    order = list(from_index) + [name for name, _ in others]
    streams: list[Iterable[Named]] = []
    if index is not None:
        old = {name: position for position, name in enumerate(index.snapshots)}
        streams.append(_remapped(index, {old[name]: position for position, name in enumerate(from_index)}))
    elif from_index:
        raise ValueError("snapshots to take from an index, and no index")
    streams += [_masked(entries, 1 << position) for position, (_, entries) in enumerate(others, start=len(from_index))]
    return order, merge(streams)


def _masked(entries: Iterable[Entry], mask: int) -> Iterator[Named]:
    return ((entry, mask) for entry in entries)

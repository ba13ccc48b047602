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
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import itertools
import json
import logging
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import fields
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import s3docs
from chalicelib.catalog.manifests import Entry, Manifest, manifest_key
from chalicelib.errors import AlreadyExists, NotFound, describe_error
from chalicelib.layout import INDEX_PREFIX

logger = logging.getLogger(__name__)

INDEX_FORMAT = "kept-index/2"
# The index's lines: Entry's fields in this order, then the mask.
_FIELDS = tuple(field.name for field in fields(Entry))
INDEX_SUFFIX = ".jsonl.gz"

# One version and the mask of the snapshots (positions in the index's snapshot list) that name it.
Named = tuple[Entry, int]


def index_prefix(plan: str) -> str:
    return f"{INDEX_PREFIX}{plan}/"


def index_key(plan: str, snapshots: Sequence[str]) -> str:
    # Named by the set of snapshots, whatever their order in the masks: two passes over the same snapshots
    # write one index.
    digest = hashlib.sha256("\n".join(sorted(snapshots)).encode("utf-8")).hexdigest()[:16]
    return f"{index_prefix(plan)}{max(snapshots)}-{digest}{INDEX_SUFFIX}"


class KeptIndex:
    """A downloaded index, on local disk: `snapshots`, then `versions()`."""

    def __init__(self, fileobj: IO[bytes], key: str) -> None:
        self._file = fileobj
        self.key = key
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            header = json.loads(gz.readline() or b"{}")
        if header.get("format") != INDEX_FORMAT:
            raise ValueError(f"{key} is not a kept index (format {header.get('format')!r})")
        self.snapshots: list[str] = list(header["snapshots"])

    @classmethod
    def download(cls, s3: Any, bucket: str, key: str) -> KeptIndex:
        spool: IO[bytes] = tempfile.TemporaryFile()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for block in iter(lambda: body.read(1024 * 1024), b""):
                spool.write(block)
            spool.seek(0)
            return cls(spool, key)
        except BaseException:
            spool.close()
            raise

    def versions(self) -> Iterator[Named]:
        self._file.seek(0)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as gz:
            gz.readline()
            width = len(_FIELDS)
            for line in gz:
                values = json.loads(line)
                if not isinstance(values, list) or len(values) != width + 1:
                    raise ValueError(f"{self.key}: a line is not {width} fields and a mask")
                yield Entry(*values[:width]), int(values[width])

    def close(self) -> None:
        self._file.close()


def index_keys(s3: Any, bucket: str, plan: str) -> list[str]:
    """The plan's index keys, oldest first (by when they were written, then by name)."""
    found: list[tuple[Any, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=index_prefix(plan)):
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
    for entry, mask in index.versions():
        moved = 0
        for old, width, new in moves:
            moved |= (mask >> old & width) << new
        yield entry, moved


def _write(s3: Any, bucket: str, plan: str, snapshots: list[str], versions: Iterable[Named]) -> KeptIndex:
    """Write the index (create-only) and give it back, read from the local copy just written."""
    key = index_key(plan, snapshots)
    out: IO[bytes] = tempfile.TemporaryFile()
    try:
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=1) as gz:
            gz.write(json.dumps({"format": INDEX_FORMAT, "plan": plan, "snapshots": snapshots}).encode("utf-8") + b"\n")
            dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            for entry, mask in versions:
                values = [getattr(entry, name) for name in _FIELDS]
                values.append(mask)
                gz.write(dumps(values).encode("utf-8") + b"\n")
        out.seek(0)
        try:
            s3docs.put_new(s3, Bucket=bucket, Key=key, Body=out, ContentType="application/gzip", ChecksumAlgorithm="SHA256")
        except AlreadyExists:
            pass  # the same snapshots give the same index: another pass wrote it first
        except (ClientError, BotoCoreError) as exc:
            # The local copy is whole: this pass uses it, and the next one merges again.
            logger.warning("kept index s3://%s/%s not written: %s", bucket, key, describe_error(exc))
        out.seek(0)
        return KeptIndex(out, key)
    except BaseException:
        out.close()
        raise


def drop_superseded(s3: Any, bucket: str, plan: str) -> int:
    """Delete every version of the plan's indexes but the newest index (by version id: no delete marker).
    The prune calls this: only its role deletes versions. Only indexes the first listing found older than its
    newest go, so one written while this runs stays; a reader that loses the index it listed starts from the
    manifests. Returns how many versions went."""
    keys = index_keys(s3, bucket, plan)
    # Only indexes older than the newest one listed: one written since the listing is newer and stays.
    superseded = set(keys[:-1])
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=index_prefix(plan)):
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


def _newest(s3: Any, bucket: str, plan: str, kept: Sequence[str]) -> KeptIndex | None:
    """The newest readable index sharing a snapshot with `kept` (None: start from the manifests)."""
    for key in reversed(index_keys(s3, bucket, plan)):
        try:
            index = KeptIndex.download(s3, bucket, key)
        except (ClientError, BotoCoreError, ValueError, KeyError, OSError, EOFError) as exc:
            logger.warning("kept index s3://%s/%s is not used: %s", bucket, key, describe_error(exc))
            continue
        if set(index.snapshots) & set(kept):
            return index
        index.close()
        return None
    return None


def _manifest_versions(s3: Any, bucket: str, plan: str, snapshot: str, bit: int, stack: ExitStack) -> Iterator[Named]:
    manifest = stack.enter_context(Manifest.download(s3, bucket, manifest_key(plan, snapshot)))
    return ((entry, 1 << bit) for entry in manifest.entries())


def kept_index(s3: Any, bucket: str, plan: str, kept: Sequence[str], stack: ExitStack) -> KeptIndex:
    """The plan's index covering exactly the snapshots `kept`: the newest one brought up to date (written,
    and older ones deleted) when it covers anything else. Closed with `stack`."""
    kept = sorted(set(kept))
    if not kept:
        raise NotFound(f"no kept snapshot of plan {plan} to index")
    try:
        return _brought_up_to_date(s3, bucket, plan, kept, stack, _newest(s3, bucket, plan, kept))
    except (ValueError, TypeError, KeyError, EOFError, OSError, zlib.error) as exc:
        # An index whose body cannot be read (cut short, or from another version of this code): the manifests
        # alone, once. A manifest that cannot be read fails here again, as it would without an index.
        logger.warning("kept index of plan %s in s3://%s is not used: %s", plan, bucket, describe_error(exc))
        return _brought_up_to_date(s3, bucket, plan, kept, stack, None)


def _brought_up_to_date(
    s3: Any, bucket: str, plan: str, kept: list[str], stack: ExitStack, index: KeptIndex | None
) -> KeptIndex:
    with ExitStack() as reading:
        if index is not None:
            reading.callback(index.close)
            if set(index.snapshots) == set(kept):
                reading.pop_all()
                return stack.enter_context(closing(index))
        covered = [s for s in index.snapshots if s in kept] if index else []
        order = covered + [s for s in kept if s not in covered]
        streams: list[Iterable[Named]] = []
        if index is not None:
            old = {name: position for position, name in enumerate(index.snapshots)}
            streams.append(_remapped(index, {old[name]: position for position, name in enumerate(covered)}))
        streams += [_manifest_versions(s3, bucket, plan, s, order.index(s), reading) for s in order[len(covered):]]
        written = _write(s3, bucket, plan, order, merge(streams))
    return stack.enter_context(closing(written))

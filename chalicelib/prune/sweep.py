"""The sweep: every version under a plan bucket's `data/`, walked in key order beside the versions the
referencing manifests name, each version judged: kept (a manifest names it, it is too young, a running
backup may name it, Object Lock holds it) or unreferenced (the prune deletes it).

Memory stays flat whatever the number of versions. Manifests are sorted by (source, key), and the bucket is
listed one source prefix (`data/<source>/`) at a time in the same order, so the referenced versions are a
sorted merge of the manifests (`heapq.merge`) and the listing and the merge advance together: what is held
at once is one key's versions. Keys too long for `data/<source>/<key>` live under `data/~long/` by hash, in
another order: the merge sets those entries aside in an external sort (sorted runs on local disk, merged),
and they are walked last, and so are the packs (`data/~packs/`) that packed entries name: a pack version
is kept while any kept snapshot names an object in it. The manifests themselves are on local disk while the sweep runs (compressed, as
downloaded).

A position names where the sweep is: `["short", source, key]` or `["long", data key]`, everything up to and
including it done. A sweep started at a position skips both streams past it, so a prune continued in a new
invocation picks up after the last key it finished.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from chalicelib.catalog.entry_order import in_order, tagged_in_order
from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.relocations import Relocations
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, PACKS_PREFIX

logger = logging.getLogger(__name__)

Position = list[str]
# Pairs kept in memory before a sorted run is written to disk.
RUN_SIZE = 100_000


class ExternalSort:
    """Tuples of strings (a data key first, then a version id, then anything) in any order in, sorted out:
    runs of RUN_SIZE sorted in memory and written to temporary files, then merged."""

    def __init__(self, run_size: int = RUN_SIZE) -> None:
        self.run_size = run_size
        self._buffer: list[tuple[str, ...]] = []
        self._runs: list[IO[str]] = []

    def add(self, *fields: str) -> None:
        self._buffer.append(fields)
        if len(self._buffer) >= self.run_size:
            self._spill()

    def _spill(self) -> None:
        run: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        for fields in sorted(self._buffer):
            run.write(json.dumps(fields, ensure_ascii=False) + "\n")
        run.seek(0)
        self._runs.append(run)
        self._buffer = []

    def sorted(self) -> Iterator[tuple[str, ...]]:
        if not self._runs:
            yield from sorted(self._buffer)
            return
        if self._buffer:
            self._spill()
        streams = [(tuple(fields) for fields in map(json.loads, run)) for run in self._runs]
        yield from heapq.merge(*streams)

    def close(self) -> None:
        for run in self._runs:
            run.close()
        self._runs = []


def check_order(entries: Iterable[Entry], where: str) -> None:
    """Read every entry through `in_order`: before a sweep deletes anything, since the merge meets an entry
    out of order only after judging the keys before it."""
    for _ in in_order(entries, where):
        pass


class References:
    """The versions a set of manifests names, in the sweep's order. `short()` first (all of it), then
    `long()`; both deduplicated per key. Each manifest may carry a `tag` (a string), given back with each
    entry it names by `tagged_short()` and `tagged_long()` (with the entry's size); `tagged` streams carry
    one per entry (a kept index's lines, each tagged by the snapshots naming it)."""

    def __init__(
        self,
        manifests: Sequence[Iterable[Entry]],
        tags: Sequence[str] | None = None,
        tagged: Sequence[Iterable[tuple[Entry, str]]] = (),
        relocations: Relocations | None = None,
        collect: Callable[[Entry], None] | None = None,
    ) -> None:
        # Each packed entry is taken as naming the pack version that holds its bytes now (a repack moved them):
        # that version is what a restore reads, so what the prune keeps. `collect` is given each packed one
        # (the repack's count of live objects, prune/repack.py).
        self.relocations = relocations
        self.collect = collect
        names = list(tags) if tags is not None else [""] * len(manifests)
        self._streams: list[Iterable[tuple[Entry, str]]] = [((e, tag) for e in m) for m, tag in zip(manifests, names, strict=True)]
        self._streams += tagged
        self.long_keys = ExternalSort()
        self._short_done = False

    def _divert(self, pairs: Iterable[tuple[Entry, str]]) -> Iterator[tuple[Entry, str]]:
        relocations, collect = self.relocations, self.collect
        for entry, tag in tagged_in_order(pairs, "a manifest"):
            # A packed entry names its pack's version: walked with the long keys, in key order.
            if entry.pack_key is not None:
                if relocations is not None:
                    entry = relocations.apply(entry)
                if collect is not None:
                    collect(entry)
            stored_key = entry.stored_key
            if entry.packed or stored_key.startswith(LONG_KEYS_PREFIX):
                self.long_keys.add(stored_key, entry.version_id, tag, str(entry.size))
            else:
                yield entry, tag

    def tagged_short(self) -> Iterator[tuple[str, str, str, str, int]]:
        """(source, key, version id, tag, size) of every entry stored at `data/<source>/<key>`, in (source,
        key) order."""
        streams = (self._divert(pairs) for pairs in self._streams)
        for entry, tag in heapq.merge(*streams, key=lambda pair: pair[0].sort_key):
            yield entry.source, entry.key, entry.version_id, tag, entry.size
        self._short_done = True

    def keep(self, data_key: str, version_id: str) -> None:
        """Reference a version no entry names (an old pack version a recent relocation record moved: a reader
        may still be reading it)."""
        self.long_keys.add(data_key, version_id, "", "0")

    def tagged_long(self) -> Iterator[tuple[str, str, str, int]]:
        """(data key, version id, tag, size) of every entry stored under `data/~long/`, and of every pack
        version a packed entry names (under `data/~packs/`, the entry's size), in data key order."""
        if not self._short_done:
            for _ in self.tagged_short():
                pass
        for data_key, version_id, tag, size in self.long_keys.sorted():
            yield data_key, version_id, tag, int(size)

    def short(self) -> Iterator[tuple[str, str, str]]:
        """(source, key, version id) of every entry stored at `data/<source>/<key>`, in (source, key) order."""
        for source, key, version_id, _, _ in self.tagged_short():
            yield source, key, version_id

    def long(self) -> Iterator[tuple[str, str]]:
        """(data key, version id) of every entry stored under `data/~long/`, in data key order."""
        for data_key, version_id, _, _ in self.tagged_long():
            yield data_key, version_id

    def close(self) -> None:
        self.long_keys.close()


@dataclass
class StoredKey:
    """One key under `data/`: its versions and delete markers, newest first, and the version ids the
    referencing manifests name for it."""

    data_key: str
    items: list[dict[str, Any]]
    referenced: set[str]
    position: Position = field(default_factory=list)

    def versions(self) -> Iterator[tuple[dict[str, Any], datetime | None]]:
        """Each version (not delete markers) with when it stopped being current (None: it is current)."""
        newer: datetime | None = None
        for item in self.items:
            if not item.get("marker"):
                yield item, (None if item.get("IsLatest") else newer)
            newer = item["LastModified"]

    def markers(self) -> Iterator[dict[str, Any]]:
        """Each delete marker (`IsLatest`: it is what the key shows now)."""
        return (item for item in self.items if item.get("marker"))


def _newest_first(item: dict[str, Any]) -> tuple[str, float]:
    return item["Key"], -item["LastModified"].timestamp()


def _listed(s3: Any, bucket: str, prefix: str, after: str | None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(key, versions and delete markers newest first) of every key under `prefix` after `after`."""
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if after:
        params["KeyMarker"] = after

    def items() -> Iterator[dict[str, Any]]:
        for page in s3.get_paginator("list_object_versions").paginate(**params):
            markers = [{**m, "marker": True} for m in page.get("DeleteMarkers", [])]
            # Each list is in (key, newest first) order; merged, a key's history reads in order.
            yield from heapq.merge(page.get("Versions", []), markers, key=_newest_first)

    for key, group in itertools.groupby(items(), key=lambda item: item["Key"]):
        # S3 documents a key marker as "the key to start with" (moto lists that key's versions again): the
        # key at the position is done, its references already passed, and judged again it would lose them.
        if after and key <= after:
            continue
        yield key, list(group)


def source_prefixes(s3: Any, bucket: str) -> list[str]:
    """The source names with a folder under `data/`, in the order manifests sort sources."""
    names: set[str] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=DATA_PREFIX, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(DATA_PREFIX):].rstrip("/")
            if name and not name.startswith("~"):
                names.add(name)
    return sorted(names)


def walk(
    s3: Any,
    bucket: str,
    references: References,
    position: Position | None,
    on_missing: Callable[[int], None],
) -> Iterator[StoredKey]:
    """Every key under `data/` after `position`, with the versions the manifests name for it. Referenced
    versions with no key in the bucket are counted by `on_missing` (a kept snapshot names a version that
    is gone: verification reports it in detail)."""
    phase = position[0] if position else "short"
    if phase == "short":
        after = (position[1], position[2]) if position else None
        refs = Peek(itertools.dropwhile(lambda r: after is not None and (r[0], r[1]) <= after, references.short()))
        for source in source_prefixes(s3, bucket):
            if after is not None and source < after[0]:
                continue
            prefix = f"{DATA_PREFIX}{source}/"
            marker = prefix + after[1] if after is not None and source == after[0] else None
            for data_key, items in _listed(s3, bucket, prefix, marker):
                key = data_key[len(prefix):]
                on_missing(refs.skip_below((source, key)))
                named = refs.take_equal((source, key))
                yield StoredKey(data_key, items, named, ["short", source, key])
        on_missing(refs.skip_below(None))
        position = None
    long_after = position[1] if position else None
    long_refs = Peek(pair for pair in references.long() if long_after is None or pair[0] > long_after)
    # `data/~long/` then `data/~packs/`: one key order, the one the references come in.
    for prefix in (LONG_KEYS_PREFIX, PACKS_PREFIX):
        for data_key, items in _listed(s3, bucket, prefix, long_after):
            on_missing(long_refs.skip_below((data_key,)))
            yield StoredKey(data_key, items, long_refs.take_equal((data_key,)), ["long", data_key])
    on_missing(long_refs.skip_below(None))


class Peek:
    """A sorted stream of references (the key's parts, then the version id), advanced up to a key."""

    def __init__(self, stream: Iterator[tuple[Any, ...]]) -> None:
        self._stream = stream
        self._head: tuple[Any, ...] | None = next(self._stream, None)

    def skip_below(self, key: tuple[Any, ...] | None) -> int:
        """Drop every reference before `key` (all of them for None); how many distinct versions that was."""
        seen: set[tuple[Any, ...]] = set()
        while self._head is not None and (key is None or self._head[:-1] < key):
            seen.add(self._head)
            self._head = next(self._stream, None)
        return len(seen)

    def take_equal(self, key: tuple[Any, ...]) -> set[str]:
        """The version ids of every reference to `key`, dropped from the stream."""
        found: set[str] = set()
        while self._head is not None and self._head[:-1] == key:
            found.add(self._head[-1])
            self._head = next(self._stream, None)
        return found


@dataclass(frozen=True)
class Rules:
    """What keeps an unreferenced version: youth, running backups, Object Lock."""

    now: datetime
    grace: timedelta
    # The earliest start of a running backup of the plan (None: none runs).
    running_since: datetime | None = None
    # The plan's Object Lock default retention in days (None: no Object Lock).
    lock_days: int | None = None

    def judge(self, version: dict[str, Any], referenced: set[str]) -> str:
        """`referenced`, `young`, `running`, `locked` or `delete`."""
        if version["VersionId"] in referenced:
            return "referenced"
        written: datetime = version["LastModified"]
        if written > self.now - self.grace:
            return "young"
        if self.running_since is not None and written >= self.running_since - timedelta(minutes=5):
            return "running"
        # Retention the version itself carries, where known (an inventory report's Object Lock fields).
        retain_until: datetime | None = version.get("RetainUntil")
        if version.get("LegalHold") == "ON" or (retain_until is not None and retain_until > self.now):
            return "locked"
        if self.lock_days is not None and written + timedelta(days=self.lock_days) > self.now:
            return "locked"
        return "delete"

"""Comparing a source with the previous snapshot: a merge of two sorted streams, so memory stays flat
whatever the number of objects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chalicelib.backup.listing import PageMarks, page_marks
from chalicelib.backup.source_reader import SourceObject
from chalicelib.catalog.manifests import Entry, Manifest
from chalicelib.errors import SourceError


@dataclass
class Action:
    current: SourceObject | None
    previous: Entry | None


def merge(previous: Iterator[Entry], current: Iterator[SourceObject]) -> Iterator[Action]:
    """Pair previous entries and source objects by key; both streams are sorted."""
    prev = next(previous, None)
    cur = next(current, None)
    last_key: str | None = None
    while prev is not None or cur is not None:
        if cur is not None:
            if last_key is not None and cur.key <= last_key:
                raise SourceError(f"source listed {cur.key!r} after {last_key!r}: listing is not sorted")
        if prev is None or (cur is not None and cur.key < prev.key):
            assert cur is not None
            last_key = cur.key
            yield Action(cur, None)
            cur = next(current, None)
        elif cur is None or prev.key < cur.key:
            yield Action(None, prev)
            prev = next(previous, None)
        else:
            last_key = cur.key
            yield Action(cur, prev)
            prev = next(previous, None)
            cur = next(current, None)


def last_key(batch: list[Action]) -> str:
    last = batch[-1].current or batch[-1].previous
    assert last is not None
    return last.key


class SourceEntries(Iterator[Entry]):
    """One source's entries of the previous snapshot, in key order, with where they came from: the listing
    of the source is cut into ranges at that snapshot's page marks (chalicelib/backup/listing.py)."""

    def __init__(self, entries: Iterator[Entry], snapshot: PreviousSnapshot, source: str) -> None:
        self._entries = entries
        self._snapshot = snapshot
        self.source = source

    def __next__(self) -> Entry:
        return next(self._entries)

    def page_marks(self, page_size: int) -> PageMarks | None:
        return self._snapshot.page_marks(page_size).get(self.source)


class PreviousSnapshot:
    """The previous manifest's entries, handed out source by source (the manifest is sorted by source)."""

    def __init__(self, manifest: Manifest | None) -> None:
        self._manifest = manifest
        self._entries = manifest.entries(include_held=True) if manifest else iter(())
        self._next = next(self._entries, None)
        self._marks: dict[int, dict[str, PageMarks]] = {}

    def for_source(self, name: str, up_to: str | None = None) -> SourceEntries:
        """The source's entries; with `up_to`, those with keys up to it (a range of a split plan)."""
        return SourceEntries(self._for_source(name, up_to), self, name)

    def _for_source(self, name: str, up_to: str | None) -> Iterator[Entry]:
        # Entries of sources no longer in the plan are skipped: they stay in the older snapshots.
        while self._next is not None and self._next.source < name:
            self._next = next(self._entries, None)
        while self._next is not None and self._next.source == name:
            if up_to is None or self._next.key <= up_to:
                yield self._next
            self._next = next(self._entries, None)

    def page_marks(self, page_size: int) -> dict[str, PageMarks]:
        """Every source's page marks, from one pass over the manifest (made the first time they are asked for)."""
        if self._manifest is None:
            return {}
        if page_size not in self._marks:
            self._marks[page_size] = page_marks(self._manifest.lines(), page_size)
        return self._marks[page_size]

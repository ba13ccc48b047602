"""Comparing a source with the previous snapshot: a merge of two sorted streams, so memory stays flat
whatever the number of objects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chalicelib.backup.sources import SourceObject
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


class PreviousSnapshot:
    """The previous manifest's entries, handed out source by source (the manifest is sorted by source)."""

    def __init__(self, manifest: Manifest | None) -> None:
        self._entries = manifest.entries(include_held=True) if manifest else iter(())
        self._next = next(self._entries, None)

    def for_source(self, name: str) -> Iterator[Entry]:
        # Entries of sources no longer in the plan are skipped: they stay in the older snapshots.
        while self._next is not None and self._next.source < name:
            self._next = next(self._entries, None)
        while self._next is not None and self._next.source == name:
            yield self._next
            self._next = next(self._entries, None)

"""The distinct versions of a plan's kept snapshots, one weekday's slice of them or all, streamed in
(source, key) order and cut into batches that end with a key: what the verification job checks, in flat
memory whatever the number of versions stored (only one key's versions are held to deduplicate).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, cast

from chalicelib.catalog.manifests import Entry
from chalicelib.verify.checks import weekly_slice

T = TypeVar("T")


def _itself(entry: Any) -> Entry:
    return cast(Entry, entry)


class DistinctVersions(Generic[T]):
    """The distinct versions of one weekday's slice of a plan's snapshots, in (source, key) order, after
    `after` (a (source, key) already done). The streams give entries, or items carrying one (`entry_of`
    finds it: the kept index's versions come with whether they are newer than the report).

    `largest` is the most versions the deduplication ever held at once: at most the number of distinct
    versions of one key, whatever the number of versions in all."""

    def __init__(
        self,
        manifests: Sequence[Iterable[T]],
        weekday: int | None,
        after: tuple[str, str] | None = None,
        entry_of: Callable[[T], Entry] = _itself,
    ) -> None:
        self.manifests = manifests
        self.weekday = weekday
        self.after = after
        self.entry_of = entry_of
        self.largest = 0

    def _remaining(self, items: Iterable[T]) -> Iterator[T]:
        if self.after is None:
            return iter(items)
        after, entry_of = self.after, self.entry_of
        return itertools.dropwhile(lambda item: entry_of(item).sort_key <= after, items)

    def __iter__(self) -> Iterator[T]:
        current: tuple[str, str] | None = None
        seen: set[str] = set()
        entry_of = self.entry_of
        for item in heapq.merge(*(self._remaining(m) for m in self.manifests), key=lambda item: entry_of(item).sort_key):
            entry = entry_of(item)
            if entry.sort_key != current:
                # A new key: no later entry can repeat a version of the previous one.
                current = entry.sort_key
                seen.clear()
            if entry.version_id in seen or (self.weekday is not None and weekly_slice(entry) != self.weekday):
                continue
            seen.add(entry.version_id)
            self.largest = max(self.largest, len(seen))
            yield item



def batches(items: Iterable[T], size: int, entry_of: Callable[[T], Entry] = _itself) -> Iterator[list[T]]:
    """Batches of about `size` entries (or items carrying one), cut only between two keys, so that a
    checkpoint after a batch (its last key) never leaves versions of that key unchecked."""
    batch: list[T] = []
    for item in items:
        if len(batch) >= size and entry_of(item).sort_key != entry_of(batch[-1]).sort_key:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch

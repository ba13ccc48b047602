"""Listing an S3 source in key ranges at once, read back as one sorted stream.

Listed one page after another, an unchanged source of N objects costs ceil(N/1000) round trips in a row
before the comparison can finish: minutes at millions of objects. The previous snapshot says where the keys
were: counted a page at a time, its entries give split keys that cut the listing into P ranges, listed at
once on a small pool (each from `StartAfter` its lower bound, stopping at its upper one). The ranges are
disjoint and in order, so reading them one after another is the sorted listing the comparison merges.

Split keys are page boundaries of the previous snapshot (its 1,000th key, its 2,000th, ...), so an unchanged
source lists in exactly the pages one listing would take: ceil(N/1000) requests in all, of which about
ceil(N/1000/P) run one after another. The first range has no lower bound and the last no upper one: keys
new since the previous snapshot, before its first split key or after its last, are listed all the same.

Memory stays flat: each range's lister appends its pages to a spool file on local disk, and the reader takes
lines from the range it is on. The listers run ahead of the reader only as far as it needs: at most `ahead`
listed objects not yet read (the range being read counts only its own), and `ahead` doubles each time the
reader has to wait for the listing. When copies set the pace the listing stays close to them, so what is
copied was listed moments before (its copy is pinned to the ETag listed); when nothing changed, the listing
runs as far ahead as it can, and the comparison never waits for a page that could have been asked for.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

# S3 answers at most 1,000 keys per listing page.
PAGE_SIZE = 1000
# Ranges listed at once by one plan run (each holds a connection of the client's pool while it lists).
MAX_RANGES = 16
# Objects the listers may hold listed ahead of the reader at first; doubled whenever the reader waits.
FIRST_AHEAD = 10 * PAGE_SIZE


@dataclass(frozen=True)
class PageMarks:
    """Where a source's keys were in the previous snapshot: the key ending each full page of its entries
    (those the source still listed then, so not deletions held back), and how many entries there were."""

    keys: list[str]
    count: int


def page_marks(lines: Iterable[bytes], page_size: int = PAGE_SIZE) -> dict[str, PageMarks]:
    """Page marks of every source of a snapshot, from its entries' raw JSON lines (sorted by source and key).

    Only one line in `page_size` is decoded: the rest are counted by their source, which every line begins
    with (`{"source":"<name>",` with a plain name), so a million-entry snapshot takes about a second."""
    marks: dict[str, PageMarks] = {}
    current: str | None = None
    keys: list[str] = []
    count = 0
    head = b'{"source":"'
    for line in lines:
        if not line.startswith(head) or b'"held":true' in line:
            continue
        source = line[len(head):line.index(b'"', len(head))].decode("utf-8")
        if source != current:
            if current is not None:
                marks[current] = PageMarks(keys, count)
            current, keys, count = source, [], 0
        count += 1
        if count % page_size == 0:
            keys.append(json.loads(line)["key"])
    if current is not None:
        marks[current] = PageMarks(keys, count)
    return marks


def split_keys(
    marks: PageMarks | None,
    start_after: str | None = None,
    stop_key: str | None = None,
    max_ranges: int = MAX_RANGES,
    page_size: int = PAGE_SIZE,
) -> list[str]:
    """Up to `max_ranges - 1` split keys within (start_after, stop_key), each ending a page of the previous
    snapshot, so that each range holds whole pages; none when the window holds fewer than two pages."""
    if marks is None:
        return []
    inside = [key for key in marks.keys if (start_after is None or key > start_after) and (stop_key is None or key < stop_key)]
    if start_after is None and stop_key is None:
        pages = -(-marks.count // page_size)
    else:
        # A window (a resumed run, a range of a split plan) is counted in the marks it holds.
        pages = len(inside) + 1
    ranges = min(max_ranges, pages, len(inside) + 1)
    if ranges < 2:
        return []
    return [inside[int(index * pages / ranges + 0.5) - 1] for index in range(1, ranges)]


class SequentialListing:
    """One listing, page after page as the reader asks for them (no split keys: a first backup, a small source)."""

    def __init__(self, s3: Any, bucket: str, prefix: str, start_after: str | None = None, stop_key: str | None = None,
                 page_size: int = PAGE_SIZE) -> None:
        self._s3 = s3
        self._params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
        if start_after is not None:
            self._params["StartAfter"] = prefix + start_after
        self._upper = prefix + stop_key if stop_key is not None else None
        self.pages = 0

    @property
    def depth(self) -> int:
        return self.pages

    ranges = 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for page in self._s3.get_paginator("list_objects_v2").paginate(**self._params):
            self.pages += 1
            contents = page.get("Contents", [])
            for item in contents:
                if self._upper is not None and item["Key"] > self._upper:
                    return
                yield item
            if self._upper is not None and contents and contents[-1]["Key"] >= self._upper:
                return

    def close(self) -> None:
        pass


@dataclass(eq=False)
class _Range:
    """One range, (lower, upper]: its spool on local disk, how much of it is listed and read."""

    lower: str | None
    upper: str | None
    spool: IO[bytes] = field(default_factory=tempfile.TemporaryFile)
    read_at: int = 0
    unread: int = 0
    pages: int = 0
    done: bool = False


def _encode(item: dict[str, Any]) -> bytes:
    # JSON, so that any key (a newline in it too) survives a line of the spool.
    row = [item["Key"], item["Size"], item["ETag"], item.get("StorageClass")]
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _decode(line: bytes) -> dict[str, Any]:
    key, size, etag, storage_class = json.loads(line)
    item = {"Key": key, "Size": size, "ETag": etag}
    if storage_class is not None:
        item["StorageClass"] = storage_class
    return item


class RangedListing:
    """The objects under `prefix` after `start_after` and up to `stop_key` (both relative to the prefix), in
    the ranges `split` cuts, listed at once and read in key order. Iterating gives listing items (`Key`,
    `Size`, `ETag`, `StorageClass`) as `list_objects_v2` answers them."""

    def __init__(
        self, s3: Any, bucket: str, prefix: str, split: list[str], start_after: str | None = None,
        stop_key: str | None = None, page_size: int = PAGE_SIZE, first_ahead: int = FIRST_AHEAD,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._page_size = page_size
        bounds = [start_after, *split, stop_key]
        self._ranges = [_Range(lower, upper) for lower, upper in zip(bounds, bounds[1:])]
        self._cond = threading.Condition()
        self._reading = 0
        self._unread = 0
        self._ahead = first_ahead
        self._error: BaseException | None = None
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pages(self) -> int:
        """LIST requests made so far."""
        return sum(rng.pages for rng in self._ranges)

    @property
    def ranges(self) -> int:
        return len(self._ranges)

    @property
    def depth(self) -> int:
        """LIST requests that had to run one after another: the most any one range made."""
        return max((rng.pages for rng in self._ranges), default=0)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._pool = ThreadPoolExecutor(max_workers=len(self._ranges), thread_name_prefix="listing")
        for index, rng in enumerate(self._ranges):
            self._pool.submit(self._list, index, rng)
        try:
            for index, rng in enumerate(self._ranges):
                with self._cond:
                    self._reading = index
                    self._cond.notify_all()
                while lines := self._take(rng):
                    for line in lines:
                        yield _decode(line)
        finally:
            self.close()

    def _take(self, rng: _Range) -> list[bytes]:
        """The next lines of `rng`, waiting for its lister if need be; empty once it is all read."""
        with self._cond:
            if rng.unread == 0 and not rng.done and self._error is None:
                # The comparison waits on the listing: the other ranges may run further ahead.
                self._ahead *= 2
                self._cond.notify_all()
                while rng.unread == 0 and not rng.done and self._error is None:
                    self._cond.wait()
            if self._error is not None:
                raise self._error
            count = min(rng.unread, self._page_size)
            rng.spool.seek(rng.read_at)
            lines = [rng.spool.readline() for _ in range(count)]
            rng.read_at = rng.spool.tell()
            rng.unread -= count
            self._unread -= count
            self._cond.notify_all()
            return lines

    def _held_back(self, index: int, rng: _Range) -> bool:
        if self._closed:
            return False
        if index == self._reading:
            return rng.unread >= self._ahead
        return index > self._reading and self._unread >= self._ahead

    def _list(self, index: int, rng: _Range) -> None:
        params: dict[str, Any] = {
            "Bucket": self._bucket, "Prefix": self._prefix, "PaginationConfig": {"PageSize": self._page_size},
        }
        if rng.lower is not None:
            params["StartAfter"] = self._prefix + rng.lower
        upper = self._prefix + rng.upper if rng.upper is not None else None
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(**params):
                contents = page.get("Contents", [])
                lines = [_encode(item) for item in contents if upper is None or item["Key"] <= upper]
                reached = upper is not None and bool(contents) and contents[-1]["Key"] >= upper
                with self._cond:
                    rng.pages += 1
                    rng.spool.seek(0, 2)
                    rng.spool.writelines(lines)
                    rng.unread += len(lines)
                    self._unread += len(lines)
                    self._cond.notify_all()
                    # Before asking for the next page: wait while the reader is far enough behind.
                    while not reached and self._held_back(index, rng):
                        self._cond.wait()
                    if self._closed:
                        return
                if reached:
                    return
        except BaseException as exc:  # handed to the reader, which raises it where the listing is read
            with self._cond:
                if self._error is None:
                    self._error = exc
        finally:
            with self._cond:
                rng.done = True
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the listers (each finishes the request it has in flight) and drop the spools."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for rng in self._ranges:
            rng.spool.close()

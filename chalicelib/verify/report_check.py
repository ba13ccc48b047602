"""The weekly verification's source of truth when the plans set `inventory`: the newest S3 Inventory report
of a backup bucket instead of a HeadObject per version.

Which report: the newest one delivered for the bucket (chalicelib/inventory/reports.py). A report older than
its frequency allows (chalicelib/inventory/freshness.py's `STALE_AFTER`), or none at all, or one that cannot be read, is a finding the job
records and alerts on; the job then checks by HEAD as it does without an inventory.

How versions meet their rows, in flat memory: a snapshot's entries come sorted by (source, key), and stored
keys `data/<source>/<key>` sort otherwise across sources ("a-b/..." before "a/..."). Within one source they
agree, since every stored key of it shares the prefix `data/<source>/`. So the report's rows of the plan's
sources are sorted on disk by (source, stored key, version id), the entries' order, in one external sort,
and read forward by one cursor as the entries go by; the cursor holds one key's versions at a time.

A pack's rows (`data/~packs/...`) are not in that order: they are kept aside, one per pack version of the
slice (a pack holds thousands of small objects, so these are few), and a packed object's entry meets its
pack's row there (verify/pack_check.py).

What is not in the report is asked about by HEAD: a version written after the report's scan (a day's
changes at most), a version really gone (HEAD confirms it before it is called missing), and a version
stored under `data/~long/` (a hashed key, in another order; rare).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol


from chalicelib.catalog.manifests import Entry
from chalicelib.inventory.freshness import newest_fresh_report
from chalicelib.inventory.reports import Report, Row, sorted_rows
from chalicelib.catalog.records import backup_time, is_backup_id
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, PACKS_PREFIX
from chalicelib.plans import InventoryPlan, Plan
from chalicelib.verify.checks import stored_slice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportChoice:
    """The report a plan's check uses (None when there is none to use), and what the record keeps of it."""

    report: Report | None
    summary: dict[str, Any]


def choose_report(
    s3: Any, inventory: InventoryPlan, plan: Plan, now: datetime, first_snapshot: datetime | None = None
) -> ReportChoice:
    """The newest report of the plan's bucket if it is fresh enough to rely on (chalicelib/inventory/
    freshness.py). Otherwise `summary["problem"]` says why not (no report, too old, unreadable), naming the
    bucket and the report's age.

    No report is not a problem while the first one is not due: S3 delivers the first report within 48 hours
    of the configuration, so while the plan's oldest kept snapshot (`first_snapshot`) is younger than a
    report may be old, the versions are checked by HEAD and `summary["pending"]` says so."""
    fresh = newest_fresh_report(
        s3, inventory.bucket, inventory.prefix, inventory.configuration_id, inventory.frequency, plan.bucket, now,
        first_snapshot,
    )
    return ReportChoice(fresh.report, fresh.described("its versions were checked by HEAD instead"))


def _source_of(stored_key: str) -> str | None:
    if not stored_key.startswith(DATA_PREFIX) or stored_key.startswith(LONG_KEYS_PREFIX):
        return None
    source, slash, _ = stored_key[len(DATA_PREFIX) :].partition("/")
    return source if slash else None


def _position(row: Row) -> tuple[str, str, str]:
    """Where a row of a plan's source comes in the manifests' order: by source, then stored key (within one
    source the stored keys share a prefix, so they sort as the keys do), then version id."""
    return (_source_of(row.key) or "", row.key, row.version_id)


class RowCursor:
    """Rows read forward in `_position` order. `largest`: the most rows it ever held at once (one key's
    versions). `passed` is handed every row the cursor moves past, looked up or not (`RowCounter.row`)."""

    def __init__(self, rows: Iterator[Row], passed: Callable[[Row], Any] | None = None) -> None:
        self._rows = rows
        self._passed = passed
        self._next: Row | None = next(self._rows, None)
        self._at: tuple[str, str] | None = None
        self._versions: dict[str, Row] = {}
        self.largest = 0

    def versions(self, source: str, stored_key: str) -> dict[str, Row]:
        """The rows of `stored_key` of `source` by version id. Keys must be asked for in (source, stored key)
        order (one key any number of times in a row)."""
        at = (source, stored_key)
        if at != self._at:
            self._at, self._versions = at, {}
            for row in self._upto(at):
                if row.key == stored_key:
                    self._versions[row.version_id] = row
            self.largest = max(self.largest, len(self._versions))
        return self._versions

    def advance(self, at: tuple[str, str] | None) -> None:
        """Move past every row up to (source, stored key) `at`, or (None) past every row left."""
        for _ in self._upto(at):
            pass

    def _upto(self, at: tuple[str, str] | None) -> Iterator[Row]:
        while self._next is not None and (at is None or _position(self._next)[:2] <= at):
            row = self._next
            if self._passed is not None:
                self._passed(row)
            self._next = next(self._rows, None)
            yield row


class RowCounter(Protocol):
    """What rides along the pass (cost/row_counts.py `RowCounts`): every row of the report under data/ the
    pass keeps, and every version the kept snapshots name, after the rows of its key."""

    def row(self, row: Row) -> None: ...

    def name(self, stored_key: str, version_id: str) -> None: ...


class Counter(RowCounter, Protocol):
    """What counts the cost report's figures along the pass (cost/row_counts.py `RowCounts`)."""

    def entries(self, count: int) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def finished(self, backup_id: str, snapshots: int) -> dict[str, Any]: ...


# Makes a plan's counter against a report (its manifest key, when its scan began), from what a checkpoint
# carries of it (None: from nothing).
CounterFactory = Callable[[Plan, str, datetime, dict[str, Any] | None], Counter]


class ReportRows:
    """A report's rows of some sources (of one weekday's slice, or all; after a checkpoint, or all), sorted
    on disk in the manifests' order (`_position`), so that one cursor reads them forward beside the entries
    (a context manager: the temporary files go on exit). `rows` (a test's) are sorted in memory instead of
    read with `sorted_rows(s3, report)`; `kept` counts the rows kept."""

    def __init__(
        self,
        s3: Any,
        report: Report,
        sources: Iterable[str],
        weekday: int | None = None,
        rows: Iterable[Row] | None = None,
        after: tuple[str, str] | None = None,
        counter: RowCounter | None = None,
    ) -> None:
        self.report = report
        self.kept = 0
        self.counter = counter
        # The rows of the slice's pack versions, by (key, version id): read as the report is (every row is
        # read before the cursor's first), whatever the checkpoint, since any object left may be in any pack.
        self.packs: dict[tuple[str, str], Row] = {}
        wanted = set(sources)

        def keep(row: Row) -> bool:
            if row.key.startswith(PACKS_PREFIX):
                if weekday is None or stored_slice(row.key, row.version_id) == weekday:
                    self.packs[(row.key, row.version_id)] = row
                if counter is not None:
                    counter.row(row)
                return False
            if counter is not None and row.key.startswith(LONG_KEYS_PREFIX):
                # Not looked up (checked by HEAD), but counted: every invocation hands them all over again.
                counter.row(row)
                return False
            # Only the rows of the plan's sources (of the slice, if one) after the checkpoint `after` (a
            # (source, key) whose versions are all checked) are sorted and kept: an invocation that resumes a
            # job reads the report again, but sorts and keeps only what is still to check.
            source = _source_of(row.key)
            # Counting, the rows of every source are kept (a source no longer in the plan is still billed).
            if source is None or (source not in wanted and counter is None):
                return False
            if after is not None and (source, row.key[len(DATA_PREFIX) + len(source) + 1 :]) <= after:
                return False
            if weekday is not None and stored_slice(row.key, row.version_id) != weekday:
                return False
            self.kept += 1
            return True

        if rows is not None:
            self._sorted: Iterator[Row] = iter(sorted((row for row in rows if keep(row)), key=_position))
        else:
            self._sorted = sorted_rows(s3, report, keep=keep, order=_position)
        self._cursor = RowCursor(self._sorted, counter.row if counter is not None else None)

    def row(self, entry: Entry) -> Row | None:
        """The report's row of the entry's version; None when the report does not list it (a version written
        after the scan, one that is gone) or cannot be looked up in order (a long key). A packed object's: its
        pack version's row."""
        if entry.pack_key is not None:
            found = self.packs.get((entry.pack_key, entry.version_id))
        else:
            stored = entry.data_key
            found = None if _source_of(stored) != entry.source else self._cursor.versions(entry.source, stored).get(entry.version_id)
        if self.counter is not None:
            self.counter.name(entry.stored_key, entry.version_id)
        return found

    def advance(self, after: tuple[str, str] | None) -> None:
        """Move the cursor past every row up to the checkpoint `after` (a (source, key)), or (None) past every
        row left: a counter then has every row a resumed invocation will not read again."""
        self._cursor.advance(None if after is None else (after[0], f"{DATA_PREFIX}{after[0]}/{after[1]}"))

    @property
    def largest(self) -> int:
        """The most rows the cursor held at once."""
        return self._cursor.largest

    def close(self) -> None:
        close = getattr(self._sorted, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ReportRows:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def last_before_scan(snapshots: Sequence[str], pruned: Iterable[str], scan: datetime) -> int:
    """The bit (in the kept index's masks) of the last snapshot taken before the report's scan began, when it
    tells which versions were copied after the scan: every version a later snapshot names that it does not
    was copied by a later backup. That holds only if no snapshot taken between it and the scan was pruned
    (a version such a snapshot named first, and a later one carried forward, would look new). 0: none tells."""
    before = [(backup_time(taken), position) for position, taken in enumerate(snapshots) if is_backup_id(taken) and backup_time(taken) < scan]
    if not before:
        return 0
    last, position = max(before)
    if any(is_backup_id(taken) and last < backup_time(taken) < scan for taken in pruned):
        return 0
    return 1 << position


def written_since(entry: Entry, mask: int, last_before: int) -> bool:
    """Whether a version was copied after the report's scan began, and so may be missing from it without
    being gone: the last snapshot before the scan (`last_before_scan`) does not name it. Where nothing tells,
    it is asked about by HEAD; so is a long key's version, which cannot be looked up in the report."""
    return bool(last_before) and not mask & last_before and not entry.data_key.startswith(LONG_KEYS_PREFIX)

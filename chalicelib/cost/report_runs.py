"""An inventory report's rows under a plan's `data/`, in the order the cost report's join reads them
(`inventory.py`, `PlanInventory`): each source's (by source name), then the long keys, then the packs; and
which report the cost report may rely on (`choose_report`).

The rows of one source share the prefix `data/<source>/`, but the join reads sources in the order of their
names, not of their prefixes ("a/" before "a-b/"): the rows are sorted in that order at once (`_join_order`)
and handed out a source at a time, a key at a time, in the shape S3's listing gives (`bucket_versions.py`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from chalicelib.cost.bucket_versions import Work, _newest_first
from chalicelib.inventory.freshness import newest_fresh_report
from chalicelib.inventory.reports import Report, Row, sorted_rows
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, PACKS_PREFIX
from chalicelib.plans import InventoryPlan, Plan

# How many rows or versions are read between two looks at a caller's deadline: a look costs a clock read, a
# row a few microseconds.
DEADLINE_EVERY = 10_000


class OutOfTime(Exception):
    """A plan's versions were not all read before the caller's deadline (`PlanInventory.deadline`): nothing is
    kept, the next caller computes the figures. A bucket too large to read in one invocation before the weekly
    verification has counted its report."""


def _as_listed(row: Row) -> dict[str, Any]:
    """A report's row in the shape a listing gives it (a version written before versioning is "null" there)."""
    return {
        "Key": row.key,
        "VersionId": row.version_id or "null",
        "LastModified": row.last_modified,
        "Size": row.size or 0,
        "StorageClass": row.storage_class,
        "IsLatest": row.is_latest,
        "DeleteMarker": row.is_delete_marker,
    }


def _run_prefix(stored_key: str) -> str | None:
    """`data/<source>/` or `data/~long/` of a stored key: the listing prefix its row belongs to."""
    if not stored_key.startswith(DATA_PREFIX):
        return None
    for prefix in (LONG_KEYS_PREFIX, PACKS_PREFIX):
        if stored_key.startswith(prefix):
            return prefix
    source, slash, _ = stored_key[len(DATA_PREFIX) :].partition("/")
    return f"{DATA_PREFIX}{source}/" if source and slash else None


def _join_order(row: Row) -> tuple[int, str, str, str]:
    """The order `PlanInventory._join` reads rows in: each source's (`data/<source>/`, by source name, as
    `_sources` sorts them: "a/" before "a-b/", which S3's order of keys reverses), then `data/~long/`, then the
    packs; by key and version id within each."""
    rank, source = _prefix_order(_run_prefix(row.key) or "")
    return (rank, source, row.key, row.version_id)


def _prefix_order(prefix: str) -> tuple[int, str]:
    if prefix == LONG_KEYS_PREFIX:
        return (1, "")
    if prefix == PACKS_PREFIX:
        return (2, "")
    return (0, prefix[len(DATA_PREFIX) : -1])


class ReportRuns:
    """A report's rows under data/, sorted once in the order the join reads its listing prefixes
    (`_join_order`), and handed out prefix by prefix: `listed(prefix)` gives the next prefix's keys, a key at
    a time, in the shape `_listed` gives. The join asks for every prefix the report has rows under, in that
    order (`sources()` names them); a prefix asked out of order is an error, never rows passed over. A
    context manager: the sorted runs go on exit."""

    def __init__(self, s3: Any, report: Report, work: Work, deadline: Callable[[], bool] | None = None) -> None:
        self.work = work
        work.report_files = len(report.files)
        self._prefixes: set[str] = set()

        def keep(row: Row) -> bool:
            prefix = _run_prefix(row.key)
            if prefix is None:
                return False
            self._prefixes.add(prefix)
            work.report_rows += 1
            if deadline is not None and work.report_rows % DEADLINE_EVERY == 0 and deadline():
                raise OutOfTime(f"{work.report_rows:,} rows of the inventory report {report.manifest_key} read")
            return True

        self._rows = sorted_rows(s3, report, keep=keep, order=_join_order)
        # The sort reads every row before it gives the first: the prefixes and the count are known from here.
        self._next: Row | None = next(self._rows, None)

    def sources(self) -> set[str]:
        """The sources the report has rows of."""
        return {prefix[len(DATA_PREFIX) :].rstrip("/") for prefix in self._prefixes if prefix not in (LONG_KEYS_PREFIX, PACKS_PREFIX)}

    def listed(self, prefix: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        if self._next is not None:
            behind = _run_prefix(self._next.key) or ""
            if _prefix_order(behind) < _prefix_order(prefix):
                raise ValueError(f"the report's rows under {behind} were not read before {prefix}")
        for key, rows in itertools.groupby(self._under(prefix), key=lambda row: row.key):
            yield key, _newest_first([_as_listed(row) for row in rows])

    def _under(self, prefix: str) -> Iterator[Row]:
        while self._next is not None and self._next.key.startswith(prefix) and _run_prefix(self._next.key) == prefix:
            row = self._next
            self._next = next(self._rows, None)
            yield row

    def close(self) -> None:
        self._rows.close()
        self._next = None

    def __enter__(self) -> ReportRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def choose_report(
    s3: Any, inventory: InventoryPlan, plan: Plan, now: datetime, first_snapshot: datetime | None = None
) -> tuple[Report | None, dict[str, Any]]:
    """The newest report of the plan's bucket if the cost report may rely on it, and what the report says of
    it: the report, when S3's scan began, its age, and `problem` (why the bucket is listed instead). No report
    while the first is not due (the plan's oldest kept snapshot, `first_snapshot`, younger than a report may
    be old) is no problem: the bucket is listed and `pending` says so."""
    instead = "its versions were listed instead (ListObjectVersions)"
    fresh = newest_fresh_report(
        s3, inventory.bucket, inventory.prefix, inventory.configuration_id, inventory.frequency, plan.bucket, now,
        first_snapshot,
    )
    described = fresh.described(instead)
    # The cost report's own names: when S3's scan began is `as_of`; the bucket is the plan's, named already.
    summary = {"report": described["report"], "as_of": described["created"], "age_days": described["age_days"], "problem": described["problem"]}
    if "pending" in described:
        summary["pending"] = described["pending"]
    return fresh.report, summary

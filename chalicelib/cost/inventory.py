"""What a plan's backup bucket holds, version by version, for the cost report.

Two sources, read once per report and joined key by key:
- what S3 holds under `data/`: the newest S3 Inventory report of the bucket when the plans set `inventory`
  (see below), else S3's listing of every version and delete marker under `data/` (`ListObjectVersions`, 1,000 to a request):
  each version's size, when it was written, when it stopped being current (when the next version or delete
  marker of its key was written), and the storage class S3 reports. These are the times S3's lifecycle counts
  from, exact to the second, which no manifest could give once older snapshots are pruned;
- the plan's kept snapshots (`meta/snapshots/<plan>/`), merged in (source, key) order: which versions some
  kept snapshot names (`kept_versions.py`: every manifest read the way every reader must,
  `catalog.snapshot_reader`, or, with an inventory, the prune's kept index and the manifests it does not
  cover). A version no kept snapshot names is still stored and billed until a prune deletes it.

Both streams are sorted by key (a manifest by (source, key), S3's listing of `data/<source>/` by key), so
they are merged, never loaded: memory holds one key's versions. Keys too long for `data/<source>/` live
under `data/~long/` by hash, in another order; their names are kept in memory (they are rare) and matched
after the other sources.

Work per report, for V versions in the bucket, S snapshots of N objects each:
- ceil(V / 1,000) LIST requests, plus one per source;
- S manifests downloaded (about 110 bytes per entry gzipped) and S x N entries decoded: the part that grows
  fastest, since every kept snapshot names every object. With an inventory, the prune's kept index instead
  (one line per distinct version, about N + changes x retention) and the few manifests it does not cover;
- no request per version (a fixed sample is checked with HeadObject afterwards, see `tally.py`).

With an inventory report instead of the listing: the report's folders listed once, its manifest.json and
manifest.checksum and each data file read (`chalicelib/inventory/reports.py`), no listing of data/. The report
lists each version's size, LastModifiedDate, IsLatest and storage class, which is what the listing gave: rows
are sorted (on disk) by (key, version id) within each source, so one key's rows are ordered by
LastModifiedDate to find when each version stopped being current. The rows of one source share the prefix
`data/<source>/`, but the join reads sources in the order of their names, not of their prefixes ("a/" before
"a-b/"), then the long keys, then the packs: the rows are sorted in that order at once (`_join_order`) and
handed out a source at a time, a key at a time. A report is a point in time: the versions written after its scan are not
in it, and the versions it lists are as they were then (one replaced since is still current in it), so the
report says the report's age. A missing, stale (`inventory/freshness.py`) or unreadable report: the listing, and a
warning saying so.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.records import RecordStore, backup_time, is_backup_id
from chalicelib.cost.kept_versions import KeptVersions
from chalicelib.inventory.freshness import newest_fresh_report
from chalicelib.inventory.reports import Report, Row, sorted_rows
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, MANIFEST_SUFFIX, PACKS_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import InventoryPlan, Plan
from chalicelib.times import utcnow

logger = logging.getLogger(__name__)

# How many rows or versions are read between two looks at a caller's deadline: a look costs a clock read, a
# row a few microseconds.
DEADLINE_EVERY = 10_000


class OutOfTime(Exception):
    """A plan's versions were not all read before the caller's deadline (`PlanInventory.deadline`): nothing is
    kept, the next caller computes the figures. A bucket too large to read in one invocation before the weekly
    verification has counted its report."""


@dataclass(frozen=True)
class Version:
    """One stored version under data/, as S3 lists it."""

    key: str
    version_id: str
    size: int
    written: datetime
    # When a newer version or a delete marker replaced it; None while it is current.
    noncurrent_since: datetime | None
    # The class S3 reports (ListObjectVersions).
    storage_class: str
    # Named by at least one kept snapshot.
    named: bool

    @property
    def current(self) -> bool:
        return self.noncurrent_since is None


@dataclass(frozen=True)
class SnapshotFile:
    """A kept snapshot's manifest: whose backup, and its size (billed in STANDARD, or in GLACIER_IR once the
    plan's manifest rule has moved it: `cost/manifest_tier.py`)."""

    backup_id: str
    key: str
    size: int
    taken: datetime


# Where the versions of a report came from (`Work.versions_from`).
FROM_LISTING = "ListObjectVersions"
FROM_REPORT = "inventory report"


@dataclass
class Work:
    """What computing the inventory cost: the measure of how it grows (docs/cost.md)."""

    list_requests: int = 0
    snapshots: int = 0
    manifest_entries: int = 0
    versions: int = 0
    # Versions a kept snapshot names that the listing (or the report) does not have: gone, or (a report) written
    # after its scan (verification reports the gone ones).
    missing: int = 0
    # FROM_LISTING or FROM_REPORT, and the report used or why none was (`PlanInventory.report_key`).
    versions_from: str = FROM_LISTING
    report: dict[str, Any] = field(default_factory=dict)
    # With a report: its data files read and its rows under data/.
    report_files: int = 0
    report_rows: int = 0
    # Where the named versions came from (`kept_versions.NamedFrom.describe`).
    named_from: dict[str, Any] = field(default_factory=dict)
    # With a report: the weekly verification whose pass counted its rows, or why none did (cost/row_counts.py).
    counted_by: dict[str, Any] = field(default_factory=dict)


def list_snapshots(s3: Any, plan: Plan, work: Work | None = None) -> list[SnapshotFile]:
    """The plan's manifests, oldest first. Checkpoint files beside them are not snapshots."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=plan.bucket, Prefix=f"{SNAPSHOTS_PREFIX}{plan.name}/"):
        if work is not None:
            work.list_requests += 1
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[1]
            backup_id = name.removesuffix(MANIFEST_SUFFIX)
            if name.endswith(MANIFEST_SUFFIX) and is_backup_id(backup_id):
                found.append(SnapshotFile(backup_id, item["Key"], int(item.get("Size", 0)), backup_time(backup_id)))
    return sorted(found, key=lambda snapshot: snapshot.taken)


def _listed(s3: Any, bucket: str, prefix: str, work: Work) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(key, its versions and delete markers newest first) for every key under `prefix`, in key order.

    boto3 hands a page's versions and delete markers over as two lists; a key's items may also straddle
    two pages. So each key is gathered whole before it is yielded."""
    key: str | None = None
    items: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        work.list_requests += 1
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in page.get("Versions", []):
            grouped.setdefault(item["Key"], []).append(item)
        for item in page.get("DeleteMarkers", []):
            grouped.setdefault(item["Key"], []).append({**item, "DeleteMarker": True})
        # S3 lists keys in UTF-8 byte order, which is the order of their code points, Python's string order.
        for name in sorted(grouped):
            if name != key:
                if key is not None:
                    yield key, _newest_first(items)
                key, items = name, []
            items += grouped[name]
    if key is not None:
        yield key, _newest_first(items)


def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The latest first; the others by write time. Two items of one second stay in either order: a version
    # replaced within the second it was written is noncurrent from that second whichever came first.
    return sorted(items, key=lambda item: (not item.get("IsLatest"), -item["LastModified"].timestamp()))


def _versions(key: str, items: list[dict[str, Any]], named: set[str], work: Work) -> Iterator[Version]:
    """The versions of one key, each with the moment the item above it (newer) was written."""
    newer: datetime | None = None
    listed = set()
    for item in items:
        written = item["LastModified"]
        if not item.get("DeleteMarker"):
            listed.add(item["VersionId"])
            work.versions += 1
            if item.get("IsLatest"):
                replaced = None
            else:
                # Never before the version itself was written (clocks agree to the second, not better).
                replaced = max(newer or written, written)
            yield Version(
                key=key,
                version_id=item["VersionId"],
                size=int(item.get("Size", 0)),
                written=written,
                noncurrent_since=replaced,
                storage_class=item.get("StorageClass") or "STANDARD",
                named=item["VersionId"] in named,
            )
        newer = written
    work.missing += len(named - listed)


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


class PlanInventory:
    """Every version in a plan's bucket, joined with what its kept snapshots name. `report` is told of
    tampering met while reading the snapshots; `warnings` collects what the report should say. With
    `inventory` (the plans' entry), the versions come from the bucket's newest report as of `now`."""

    def __init__(
        self,
        s3: Any,
        plan: Plan,
        records: RecordStore,
        report: Callable[[str], Any],
        warnings: list[str],
        inventory: InventoryPlan | None = None,
        now: datetime | None = None,
    ) -> None:
        self.s3 = s3
        self.plan = plan
        self.records = records
        self.report = report
        self.warnings = warnings
        self.work = Work()
        self.snapshots = list_snapshots(s3, plan, self.work)
        self._report: Report | None = None
        self._runs: ReportRuns | None = None
        # True once the caller must stop (the daily backup's invocation ending): `versions` raises OutOfTime.
        self.deadline: Callable[[], bool] | None = None
        self.kept = KeptVersions(s3, records, plan, report, warnings, use_index=inventory is not None)
        if inventory is not None:
            first = min((snapshot.taken for snapshot in self.snapshots), default=None)
            self._report, self.work.report = choose_report(s3, inventory, plan, now or utcnow(), first)
            if self._report is not None:
                self.work.versions_from = FROM_REPORT
                self.work.report["note"] = (
                    f"versions as of the report's scan ({self.work.report['as_of']}, {self.work.report['age_days']} days "
                    "before this report): those written since are not counted, those replaced since count as current"
                )
            elif self.work.report["problem"]:
                self.warnings.append(f"plan '{plan.name}': {self.work.report['problem']}")

    @property
    def report_key(self) -> str | None:
        """The inventory report the versions come from (its manifest key); None when they are listed."""
        report = self.work.report.get("report")
        return str(report) if self.work.versions_from == FROM_REPORT and report else None

    def versions(self) -> Iterator[Version]:
        with ExitStack() as stack:
            named = self.kept.entries([snapshot.backup_id for snapshot in self.snapshots], stack)
            self.work.snapshots = self.kept.snapshots_read
            if self._report is not None:
                self._runs = stack.enter_context(ReportRuns(self.s3, self._report, self.work, self.deadline))
            try:
                yield from self._join(named)
            finally:
                self._runs = None
                self.work.manifest_entries = self.kept.named_from.entries
                self.work.named_from = self.kept.named_from.describe()

    def _sources(self) -> list[str]:
        """Every source with something under data/: the plan's, and any a listing (or the report) finds (a
        source removed from the plan still has its versions billed)."""
        found = {source.name for source in self.plan.sources}
        if self._runs is not None:
            return sorted(found | self._runs.sources())
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.plan.bucket, Prefix=DATA_PREFIX, Delimiter="/"):
            self.work.list_requests += 1
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(DATA_PREFIX) :].rstrip("/")
                if name and common["Prefix"] not in (LONG_KEYS_PREFIX, PACKS_PREFIX):
                    found.add(name)
        return sorted(found)

    def _join(self, named: Iterator[Entry]) -> Iterator[Version]:
        long_named: dict[str, set[str]] = {}
        groups = itertools.groupby(named, key=lambda entry: entry.source)
        pending = next(groups, None)
        for source in self._sources():
            while pending is not None and pending[0] < source:
                self._drop(pending[1], long_named)
                pending = next(groups, None)
            entries: Iterable[Entry] = pending[1] if pending is not None and pending[0] == source else ()
            yield from self._merge(self._listed(f"{DATA_PREFIX}{source}/"), self._grouped(entries, long_named))
            if pending is not None and pending[0] == source:
                pending = next(groups, None)
        while pending is not None:
            self._drop(pending[1], long_named)
            pending = next(groups, None)
        # Then the long keys and the packs (a packed entry names its pack's version), in key order.
        for prefix in (LONG_KEYS_PREFIX, PACKS_PREFIX):
            for key, items in self._listed(prefix):
                yield from _versions(key, items, long_named.pop(key, set()), self.work)
        self.work.missing += sum(len(ids) for ids in long_named.values())

    def _listed(self, prefix: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        if self._runs is not None:
            return self._runs.listed(prefix)
        return _listed(self.s3, self.plan.bucket, prefix, self.work)

    def _drop(self, entries: Iterable[Entry], long_named: dict[str, set[str]]) -> None:
        """A source the snapshots name but nothing lists: its named versions are missing (its long keys are
        still matched with the listing of data/~long/)."""
        for _, ids in self._grouped(entries, long_named):
            self.work.missing += len(ids)

    def _grouped(self, entries: Iterable[Entry], long_named: dict[str, set[str]]) -> Iterator[tuple[str, set[str]]]:
        """(data key, the version ids kept snapshots name) in key order; long keys and the packs packed entries
        name go to `long_named`."""
        for _, same in itertools.groupby(entries, key=lambda entry: entry.sort_key):
            ids: set[str] = set()
            data_key = ""
            for entry in same:
                if entry.packed:
                    long_named.setdefault(entry.stored_key, set()).add(entry.version_id)
                    continue
                data_key = entry.data_key
                ids.add(entry.version_id)
            if data_key.startswith(LONG_KEYS_PREFIX):
                long_named.setdefault(data_key, set()).update(ids)
            elif ids:
                yield data_key, ids

    def _merge(self, listed: Iterator[tuple[str, list[dict[str, Any]]]], named: Iterator[tuple[str, set[str]]]) -> Iterator[Version]:
        """Both in key order: each listed key with the ids its snapshots name."""
        wanted = next(named, None)
        for key, items in listed:
            while wanted is not None and wanted[0] < key:
                self.work.missing += len(wanted[1])
                wanted = next(named, None)
            ids: set[str] = set()
            if wanted is not None and wanted[0] == key:
                ids = wanted[1]
                wanted = next(named, None)
            yield from _versions(key, items, ids, self.work)
        while wanted is not None:
            self.work.missing += len(wanted[1])
            wanted = next(named, None)

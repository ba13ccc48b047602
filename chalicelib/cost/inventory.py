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
"a-b/"), then the long keys, then the packs: the rows are sorted in that order at once (`report_runs.py`) and
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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.records import RecordStore, backup_time, is_backup_id
from chalicelib.cost.kept_versions import KeptVersions
from chalicelib.cost.report_runs import ReportRuns, choose_report
from chalicelib.cost.bucket_versions import FROM_REPORT, Version, Work, _listed, _versions
from chalicelib.inventory.reports import Report
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, MANIFEST_SUFFIX, PACKS_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import InventoryPlan, Plan
from chalicelib.times import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotFile:
    """A kept snapshot's manifest: whose backup, and its size (billed in STANDARD, or in GLACIER_IR once the
    plan's manifest rule has moved it: `cost/manifest_tier.py`)."""

    backup_id: str
    key: str
    size: int
    taken: datetime



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

"""The cost report's figures of a plan's bucket, counted by the weekly verification's pass over the inventory
report instead of a pass of the cost report's own.

The verification (verify/job.py, when a plan is due against a report) already reads the report, sorts the
rows of the plan's sources in (source, key, version id) order and merges them with every version the kept
snapshots name. `RowCounts` rides along: every row its cursor passes goes through `row`, every version it
looks up through `name`, and a key's rows, once whole, are turned into versions exactly as the cost report's
join turns them (`inventory._versions`, the same code) and counted by the same `tally.PlanTally`. The rows
of `data/~long/` and of the packs, which the verification keeps aside, are counted at the end, after the
sources, as the join counts them.

What has been counted is carried with the verification's checkpoint (`state`): at every save of the job's
record, the rows up to the checkpoint's key are counted and the counts saved with it, so an invocation that
resumes the job, or a delivery that repeats one, counts each row exactly once. When the plan is done the
counts are kept in the job's sealed result, with the report they came from (`finished`); the cost report
reads them there (`counted_figures`), adds the HeadObject sample, and prices them: O(1) requests, no row of
its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from chalicelib import s3docs
from chalicelib.cost.report_runs import _as_listed
from chalicelib.cost.bucket_versions import FROM_REPORT, Version, Work, _newest_first, _versions
from chalicelib.cost.tally import Check, Count, PlanTally
from chalicelib.inventory.reports import Row
from chalicelib.layout import LONG_KEYS_PREFIX, PACKS_PREFIX, SEALED_VERIFICATIONS_PREFIX
from chalicelib.plans import Plan
from chalicelib.prices import Prices
from chalicelib.times import isoformat, parse_iso, utcnow

# What a verification keeps of a plan's counts; another format is not read.
FORMAT = "cost-rows/1"
# Sealed verification results read at most to find the counts of the newest report (newest first).
LOOKBACK = 10


class RowCounts:
    """The counts of one plan against one report, from `state` (a checkpoint's) or from nothing."""

    def __init__(
        self, plan: Plan, prices: Prices, report: str, created: datetime, now: datetime, sample_size: int,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.report = report
        self.created = created
        self.work = Work(versions_from=FROM_REPORT)
        if state is not None and state.get("report") == report:
            now = parse_iso(state["now"])
        self.tally = PlanTally(plan, prices, now, sample_size, listed_by=FROM_REPORT)
        # The key whose rows are being gathered (its rows, and the version ids kept snapshots name of it).
        self._key: str | None = None
        self._rows: list[Row] = []
        self._named: set[str] = set()
        # data/~long/ and packs: their rows kept aside this invocation (every invocation reads them all
        # again), the versions named of them carried with the state.
        self._aside: dict[str, list[Row]] = {}
        self._named_aside: dict[str, set[str]] = {}
        if state is not None and state.get("report") == report:
            _restore(self.tally, self.work, state)
            self._named_aside = {key: set(ids) for key, ids in state["named_aside"].items()}

    # What the verification's pass hands over -------------------------------------------------------------

    def row(self, row: Row) -> None:
        """A row of a plan's source, in (source, key, version id) order; or of data/~long/ or a pack, any order."""
        if _aside(row.key):
            self._aside.setdefault(row.key, []).append(row)
            return
        if row.key != self._key:
            self._flush()
            self._key = row.key
        self._rows.append(row)

    def name(self, stored_key: str, version_id: str) -> None:
        """A version some kept snapshot names (a packed object's: its pack's version), after every row of
        its key that is to come before it has been handed over."""
        if _aside(stored_key):
            self._named_aside.setdefault(stored_key, set()).add(version_id)
            return
        if stored_key != self._key:
            self._flush()
            self._key = stored_key
        self._named.add(version_id)

    def entries(self, count: int) -> None:
        """Manifest entries the named versions just handed over stand for (a version three kept snapshots
        name: three), as the cost report's join counts them."""
        self.work.manifest_entries += count

    def state(self) -> dict[str, Any]:
        """What is counted so far, as the checkpoint carries it: call once every row up to the checkpoint's
        key has been handed over (the key it ends with is then complete)."""
        self._flush()
        return {
            "format": FORMAT,
            "report": self.report,
            "now": isoformat(self.tally.now),
            **_saved(self.tally, self.work),
            "named_aside": {key: sorted(ids) for key, ids in sorted(self._named_aside.items())},
        }

    def finished(self, backup_id: str, snapshots: int) -> dict[str, Any]:
        """The plan's counts when every row has been handed over: the long keys and packs counted, then all
        of it as the cost report reads it."""
        self._flush()
        self.work.report_rows += sum(len(rows) for rows in self._aside.values())
        for prefix in (LONG_KEYS_PREFIX, PACKS_PREFIX):
            for key in sorted(key for key in self._aside if key.startswith(prefix)):
                items = _newest_first([_as_listed(row) for row in sorted(self._aside[key], key=lambda row: row.version_id)])
                for version in _versions(key, items, self._named_aside.pop(key, set()), self.work):
                    self.tally.add(version)
        self.work.missing += sum(len(ids) for ids in self._named_aside.values())
        self._named_aside = {}
        state = self.state()
        del state["named_aside"]
        return {**state, "created": isoformat(self.created), "snapshots_up_to": backup_id, "snapshots": snapshots}

    def _flush(self) -> None:
        if self._key is not None:
            items = _newest_first([_as_listed(row) for row in self._rows])
            self.work.report_rows += len(self._rows)
            for version in _versions(self._key, items, self._named, self.work):
                self.tally.add(version)
        self._key, self._rows, self._named = None, [], set()


def _aside(key: str) -> bool:
    return key.startswith(LONG_KEYS_PREFIX) or key.startswith(PACKS_PREFIX)


# A tally as JSON, and back --------------------------------------------------------------------------------


def _counts(counts: dict[str, Count]) -> dict[str, list[int]]:
    return {name: [count.versions, count.bytes] for name, count in sorted(counts.items())}


def _counted(data: dict[str, list[int]]) -> dict[str, Count]:
    return {name: Count(int(versions), int(size)) for name, (versions, size) in data.items()}


def _version(version: Version) -> list[Any]:
    since = version.noncurrent_since
    return [version.key, version.version_id, version.size, isoformat(version.written), since and isoformat(since), version.storage_class, version.named]


def _unversion(data: list[Any]) -> Version:
    key, version_id, size, written, since, storage_class, named = data
    return Version(key, version_id, int(size), parse_iso(written), since and parse_iso(since), storage_class, bool(named))


_WORK = ("versions", "missing", "report_rows", "manifest_entries")


def _saved(tally: PlanTally, work: Work) -> dict[str, Any]:
    check = tally.check
    return {
        "work": {name: getattr(work, name) for name in _WORK},
        "storage": _counts(tally.storage),
        "current": _counts(tally.current),
        "noncurrent": _counts(tally.noncurrent),
        "unnamed": _counts(tally.unnamed),
        "reported": _counts(tally.reported),
        "by_choice": {choice: _counts(counts) for choice, counts in tally.by_choice.items()},
        "switch": tally.switch,
        "held_by_rule": [tally.held_by_rule.versions, tally.held_by_rule.bytes],
        "held_would_be": tally.held_would_be,
        "transitions": tally.transitions,
        "named": [tally.named.versions, tally.named.bytes],
        "aws_backup_bytes": tally.aws_backup_bytes,
        "current_groups": {str(int(small)): [c.versions, c.bytes] for small, c in tally.current_groups.items()},
        "current_cohorts": [[int(small), day.isoformat(), *totals] for (small, day), totals in sorted(tally.current_cohorts.items())],
        "noncurrent_cohorts": [
            [int(small), written.isoformat(), replaced.isoformat(), *totals]
            for (small, written, replaced), totals in sorted(tally.noncurrent_cohorts.items())
        ],
        "check": {
            "compared": check.compared, "agree": check.agree, "pending": check.pending,
            "disagreements": check.disagreements, "listed": check.listed,
        },
        "sample": [[rank, version_id, _version(version)] for rank, version_id, version in tally._sample],
    }


def _restore(tally: PlanTally, work: Work, data: dict[str, Any]) -> None:
    for name in _WORK:
        setattr(work, name, int(data["work"][name]))
    tally.storage = _counted(data["storage"])
    tally.current = _counted(data["current"])
    tally.noncurrent = _counted(data["noncurrent"])
    tally.unnamed = _counted(data["unnamed"])
    tally.reported = _counted(data["reported"])
    tally.by_choice = {choice: _counted(counts) for choice, counts in data["by_choice"].items()}
    tally.switch = {choice: dict(moves) for choice, moves in data["switch"].items()}
    tally.held_by_rule = Count(*data["held_by_rule"])
    tally.held_would_be = dict(data["held_would_be"])
    tally.transitions = dict(data["transitions"])
    tally.named = Count(*data["named"])
    tally.aws_backup_bytes = int(data["aws_backup_bytes"])
    tally.current_groups = {small == "1": Count(*counts) for small, counts in data["current_groups"].items()}
    tally.current_cohorts = {(bool(small), date.fromisoformat(day)): [v, b] for small, day, v, b in data["current_cohorts"]}
    tally.noncurrent_cohorts = {
        (bool(small), date.fromisoformat(written), date.fromisoformat(replaced)): [v, b]
        for small, written, replaced, v, b in data["noncurrent_cohorts"]
    }
    check = data["check"]
    tally.check = Check(check["compared"], check["agree"], check["pending"], check["disagreements"], list(check["listed"]))
    tally._sample = [(int(rank), version_id, _unversion(version)) for rank, version_id, version in data["sample"]]
    heapq.heapify(tally._sample)


def row_counter(prices: Prices, sample_size: int) -> Callable[[Plan, str, datetime, dict[str, Any] | None], RowCounts]:
    """What the verification job makes a plan's counter with (verify/report_check.py `CounterFactory`): counted
    as of the time the pass over the plan begins."""

    def make(plan: Plan, report: str, created: datetime, state: dict[str, Any] | None) -> RowCounts:
        return RowCounts(plan, prices, report, created, utcnow(), sample_size, state)

    return make


# The cost report's side ----------------------------------------------------------------------------------------


def counted_figures(
    s3: Any, catalog_bucket: str, plan: Plan, prices: Prices, report: str, scanned_after: datetime, sample_size: int
) -> tuple[PlanTally, Work, dict[str, Any]] | None:
    """The plan's counts from the newest sealed verification result that has them against `report` (the
    newest report's manifest key) or against a report still fresh (its scan began after `scanned_after`: the
    newest report may have arrived after the last verification), as a tally and the work they stand for, and
    what the cost report says of them (which verification, against which report, counted when); None when
    none of the newest `LOOKBACK` has them."""
    for key in s3docs.newest_keys(s3, catalog_bucket, SEALED_VERIFICATIONS_PREFIX, LOOKBACK):
        document = s3docs.read(s3, catalog_bucket, key)
        if document is None:
            continue
        counts = (document.data.get("row_counts") or {}).get(plan.name)
        if not isinstance(counts, dict) or counts.get("format") != FORMAT:
            continue
        if counts.get("report") != report and parse_iso(counts["created"]) <= scanned_after:
            continue
        now = parse_iso(counts["now"])
        tally = PlanTally(plan, prices, now, sample_size, listed_by=FROM_REPORT)
        work = Work(versions_from=FROM_REPORT, snapshots=int(counts.get("snapshots") or 0))
        _restore(tally, work, counts)
        used = {
            "verification": document.data.get("job_id"),
            "report": counts["report"],
            "newest_report": counts["report"] == report,
            "report_created": counts["created"],
            "counted_at": counts["now"],
            "snapshots_up_to": counts.get("snapshots_up_to"),
            "snapshots": counts.get("snapshots"),
        }
        return tally, work, used
    return None

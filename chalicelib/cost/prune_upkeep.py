"""The prune's day of upkeep (prune/job.py): by listing without an inventory, once per report with one
(see chalicelib/cost/upkeep.py for every job)."""

from __future__ import annotations

import math
from dataclasses import replace

from chalicelib.cost.upkeep_model import (
    BucketDay,
    CHECKED_MERGE_SECONDS,
    ENTRY_SECONDS,
    INDEX_ROW_SECONDS,
    INDEX_WRITE_SECONDS,
    INVOCATION_SECONDS,
    JOB_FUNCTIONS,
    JobDay,
    PAGE,
    REPORT_PERIOD_DAYS,
    UpkeepSettings,
    data_listing,
    page_count,
    report_reads,
    report_rows,
    report_seconds,
    sequential,
    spool_limit,
    spread,
)

# Each of the prune's five phases starts from the catalog as it stands: sealed records, backup records,
# pruned markers, snapshots and checkpoints listed, and the restore queue (what unfinished restores read);
# mark lists the pruned markers again.
PRUNE_CATALOG_LISTS = 5 * 6 + 1
# Each of its two sweeps lists the relocation records of repacked packs (catalog/relocations.py; none to read
# under the shipped plans, which never repack), and, where objects are packed, the versions under data/~packs/
# (the packs a repack may take, prune/repack.py).
SWEEP_LISTS = 2


def sweep_lists(day: BucketDay) -> float:
    return SWEEP_LISTS * (1 + (page_count(day.packs) if day.packed else 0))
# The prune's record: created, saved after each of the five phases, and concluded.
PRUNE_RECORD_PUTS = 7
# prune/job.py SWEPT_LOOKBACK: the prune records read for the policy before and the report an earlier prune swept.
PRUNE_SWEPT_LOOKBACK = 10


def prune(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The daily prune: `prune_by_inventory` when the plans set one, else `prune_by_listing`."""
    return prune_by_inventory(day, settings) if settings.inventory is not None else prune_by_listing(day, settings)


def _deletions(job: JobDay, day: BucketDay) -> None:
    """A marker per removed snapshot and the record's saves; what goes, 1,000 versions to a DeleteObjects,
    then the removed manifests. The record is saved before the delete pass's last DeleteObjects and before
    the manifests' (each batch is recorded before it is sent, prune/deleter.py)."""
    job.add("put", PRUNE_RECORD_PUTS + day.removed + (1 if day.deleted else 0) + (1 if day.removed else 0))
    job.add("post", math.ceil(day.deleted / PAGE) + (1 if day.removed else 0))
    # The kept indexes a newer one superseded: the indexes listed, their versions listed, each deleted.
    job.add("list", 2)
    job.add("delete", day.superseded_indexes)


def prune_by_listing(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The prune without an inventory (prune/job.py): the survey and the delete each read every kept manifest
    and walk data/."""
    job = JobDay(function=JOB_FUNCTIONS["prune"])
    _earlier_prunes(job, day)
    job.add("list", PRUNE_CATALOG_LISTS + 2 * data_listing(day) + sweep_lists(day))
    job.add("get", 1 + 2 * day.snapshots)
    _deletions(job, day)
    job.seconds = sequential(job, entries=2 * day.manifest_entries, pages=2 * page_count(day.versions))
    job.invocations = max(1, math.ceil(job.seconds / INVOCATION_SECONDS))
    if day.manifest_entries * ENTRY_SECONDS > INVOCATION_SECONDS:
        job.limits.append(
            f"each sweep reads about {day.manifest_entries * ENTRY_SECONDS:,.0f} s of manifest entries, more than an "
            f"invocation's {INVOCATION_SECONDS} s: a late invocation cannot reach its position, so the prune would not finish"
        )
    return job


def prune_by_inventory(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The prune with an inventory, a day on average: it works once per report (`prune_when_due`, with a
    period's deletions, snapshots and superseded indexes), spread over the report's period, and checks on the other days that it
    is not due (`prune_waiting`)."""
    period = REPORT_PERIOD_DAYS.get(settings.inventory or "", 1)
    # A period's deletions, removed snapshots and verification indexes superseded, at once.
    week = replace(day, deleted=day.deleted * period, removed=day.removed * period, superseded_indexes=day.superseded_indexes * period)
    return spread(prune_when_due(week, settings, period), prune_waiting(day, settings), period)


def _earlier_prunes(job: JobDay, day: BucketDay) -> None:
    """The newest prune records (this one's included), listed and read: the policy in force before (the
    guard's baseline, prune/guard.py) and the last sweep."""
    job.add("list", 1)
    job.add("get", min(PRUNE_SWEPT_LOOKBACK, day.prunes_in_window + 1))


def _due_check(job: JobDay, day: BucketDay) -> None:
    """Whether the prune is due (prune/cadence.py): the earlier prunes' records, the newest report's folders
    listed, its manifest.json and manifest.checksum."""
    _earlier_prunes(job, day)
    job.add("list", 1)
    job.add("get", 2)


def prune_waiting(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """A scheduled prune between two reports: its record read and written (created, after the plan, at the
    end), and the check that it is not due."""
    job = JobDay(function=JOB_FUNCTIONS["prune"])
    _due_check(job, day)
    job.add("get", 1)
    job.add("put", 3)
    job.seconds = sequential(job)
    job.invocations = 1
    return job


def prune_when_due(day: BucketDay, settings: UpkeepSettings, period: int = 1) -> JobDay:
    """The prune with an inventory when it works (prune/report_sweep.py, prune/references.py): what goes comes
    from its kept index (a line named only by snapshots removed) and from the newest report's rows no
    manifest names (after the grace period). Each pass lists the prune's indexes and reads the newest; the
    survey merges in the manifests written since it (`period` days of them; all of them without one) and
    writes the new index. Every row of the report sorted in each pass, each index line read twice (references
    and candidates); nothing lists data/. The record is saved after each full DeleteObjects too."""
    job = JobDay(function=JOB_FUNCTIONS["prune"])
    _due_check(job, day)
    new = day.prune_new_snapshots if day.prune_new_snapshots is not None else day.new_snapshots * period
    merged = min(new, day.snapshots) if day.prune_indexed else day.snapshots
    job.add("list", PRUNE_CATALOG_LISTS + 2 + sweep_lists(day))
    # Its record; the newest index in each pass; the manifests merged in.
    job.add("get", 1 + (2 if day.prune_indexed else 1) + merged)
    report_reads(job, day, times=2)
    _deletions(job, day)
    # The new index; the position saved after each full DeleteObjects (and when time runs short: not counted).
    job.add("put", 1 + math.floor(day.deleted / PAGE))
    # The prune's superseded index: listed (keys, versions) and deleted.
    job.add("list", 2)
    job.add("delete", 1 if day.prune_indexed else 0)
    per_snapshot = day.manifest_entries / day.snapshots if day.snapshots else 0.0
    lines = day.named_versions
    # The earlier index read and the new manifests merged into the new one, written; then in each pass the
    # new one read twice (references and candidates).
    index = (
        (lines * INDEX_ROW_SECONDS if day.prune_indexed else 0.0)
        + merged * per_snapshot * CHECKED_MERGE_SECONDS
        + lines * INDEX_WRITE_SECONDS
        + 4 * lines * INDEX_ROW_SECONDS
    )
    report = report_seconds(report_rows(day), report_rows(day))
    job.seconds = sequential(job) + index + 2 * report
    job.invocations = max(1, math.ceil(job.seconds / INVOCATION_SECONDS))
    reading = 2 * lines * INDEX_ROW_SECONDS + report
    if reading > INVOCATION_SECONDS:
        job.limits.append(
            f"each pass reads the kept index and sorts the report in about {reading:,.0f} s, more than an invocation's "
            f"{INVOCATION_SECONDS} s: the prune would not finish unless it can carry on between invocations"
        )
    # Its kept index brought up to date (the manifests streamed, each checked), then each pass's report runs
    # beside it.
    spool_limit(job, day, report=True, indexed=day.prune_indexed)
    return job

"""The upkeep: what the product's own recurring work costs a day, besides the backup's copies.

Each job's requests are a function of what the plan's bucket holds that day (`BucketDay`) and of the job's
own parameters (`UpkeepSettings`), written from its code path as it is today, for one plan
(tests/test_cost_upkeep_recorded.py runs the jobs on moto for a week and finds exactly these counts). When a
job changes how it works, only its function here changes (the prune's with an inventory, `prune_by_inventory`,
is written for the prune as it is to work: see there).

- `verification` (verify/job.py, started after each scheduled backup): the versions kept snapshots name whose
  slice is the day's weekday, a seventh of them (so every version once a week). In each invocation the job
  takes: its record read, the pruned markers, the snapshot keys and the kept indexes listed, and the newest
  kept index read; the first brings the index up to date (the manifests it does not cover read and merged,
  the new index written). Without an inventory, a HeadObject (billed as a GET) per version, `verify_workers` at a time. With
  one, each invocation reads the newest report (its folders listed, manifest.json, manifest.checksum, each
  data file) and keeps the slice's rows; the versions written since its scan (`REPORT_LAG_DAYS` of backups, a
  seventh of them) wait for the next report, a HeadObject only for a version an older snapshot names that
  the report does not list (gone), and a share re-read with GET
  (`verify_sample_percent`). The record written when created, after every `VERIFY_SAVE_EVERY` (against a
  report `VERIFY_SAVE_EVERY_AGAINST_REPORT`) batches of
  `BATCH_SIZE` versions, after the plan, at each hand-on and at the end.
- `prune` (prune/job.py, daily): each of its five phases lists the catalog (`PRUNE_CATALOG_LISTS`); a marker
  per removed snapshot; what goes, 1,000 versions to a DeleteObjects (a POST), then the removed manifests;
  the record written after each phase (`PRUNE_RECORD_PUTS`). Without an inventory (`prune_by_listing`) the
  survey and the delete each read every kept manifest and walk data/ (1,000 versions a page); with one
  (`prune_by_inventory`) it works once per report (`prune_when_due`: each pass reads the prune's own kept
  index, brought up to date with the manifests written since, and the newest report, no listing), and on the
  other days only checks that it is not due (`prune_waiting`); then the superseded kept indexes are listed
  and deleted (DeleteObject, not charged).
- `cost_report` (cost/reports.py, at the end of the daily backup): the window's backup and prune records
  listed and read; the snapshots listed, and for each its pruned marker, sealed record, manifest versions
  and manifest; the newest report read (or, without an inventory, data/ walked once); `cost_head_sample`
  HeadObjects; the report looked for, then written.
- `inventory` (when the plans set `inventory`): S3 lists every version once a report, daily or weekly.
- `alerts`: the daily backup's alert, one SNS publish.

Lambda time is estimated, not measured (no Lambda runs in the tests): each request waits
`REQUEST_SECONDS`, the figure AWS documents for a small request's first byte ("roughly 100-200
milliseconds", Amazon S3 performance design patterns; its low end, since all of these are small and
in-region); HeadObjects overlap `verify_workers` at a time but cost at least `REQUEST_CPU_SECONDS` of
Python each (botocore signing and parsing); a listing page of 1,000 versions adds `LIST_PAGE_PARSE_SECONDS`
(botocore parsed a 1,000-version ListObjectVersions answer in 0.2 s on this project's test machine); a
manifest entry read costs `ENTRY_SECONDS` (gzip, JSON and the entry: about 10 microseconds measured on the
manifest's own format); a kept index's line `INDEX_ROW_SECONDS` read and `INDEX_WRITE_SECONDS` written; an
inventory report's row `REPORT_ROW_SECONDS`, and `SORTED_ROW_SECONDS` more where the rows are sorted on disk
(the cost report and the prune sort every row, the verification a seventh); a version checked against its
row `ROW_CHECK_SECONDS` (scripts/bench_rows.py measures all of these beside a manifest entry). They are one
core of the machine that measured them; Lambda gives a function a whole vCPU only at 1,769 MB, so at 1,024 MB
the CPU-bound parts may take up to 1.7 times as long: a lower bound until measured on Lambda. GB-seconds are seconds times the function's memory (.chalice/config.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.jobs.runner import BATCH_SIZE
from chalicelib.prices import Prices

REQUEST_SECONDS = 0.1
REQUEST_CPU_SECONDS = 0.003
LIST_PAGE_PARSE_SECONDS = 0.2
ENTRY_SECONDS = 10e-6
# The other per-row figures are measured side by side with a manifest entry by scripts/bench_rows.py (100,000
# rows, medians of 5) and given as its ratio to one, times ENTRY_SECONDS: the ratios hold on a busy machine,
# the microseconds do not. A kept index's line read (0.64) and written (1.33: JSON arrays, gzip level 1);
# an inventory report's row read (0.55: its data file copied, MD5-checked, gunzipped, parsed into a Row) and
# what sorting it on disk adds (1.18: `sorted_rows`, rows pickled a thousand to a run, merged, read back); a
# version of the slice checked against its report row (0.34: verify/checks.py `verify_versions`, in the job's
# own thread; only versions that need a request go through its pool).
INDEX_ROW_SECONDS = 0.64 * ENTRY_SECONDS
INDEX_WRITE_SECONDS = 1.33 * ENTRY_SECONDS
REPORT_ROW_SECONDS = 0.55 * ENTRY_SECONDS
SORTED_ROW_SECONDS = 1.18 * ENTRY_SECONDS
ROW_CHECK_SECONDS = 0.34 * ENTRY_SECONDS
# Rows per data file of a report. AWS does not document how it splits a report; the count of GETs it makes
# is a few a day either way.
REPORT_FILE_ROWS = 1_000_000
# Days between two reports: the prune with an inventory works, and the cost report computes a plan's figures,
# once per report.
REPORT_PERIOD_DAYS = {"Daily": 1, "Weekly": 7}
# Days of backups a report does not show when the weekly verification runs: a daily report was scanned
# before the day's backup; a weekly one 1 to 7 days before, 4 on average.
REPORT_LAG_DAYS = {"Daily": 1.0, "Weekly": 4.0}
# verify/job.py REPORT_SAMPLE_PERCENT: the share of a slice re-read with GET when checked against a report.
VERIFY_REPORT_SAMPLE_PERCENT = 0.1
PAGE = 1000
DAYS_PER_MONTH = 30
# verify/job.py SAVE_EVERY and SAVE_EVERY_AGAINST_REPORT: batches checked between two saves of the job's
# record, by HEAD and against a report.
VERIFY_SAVE_EVERY = 10
VERIFY_SAVE_EVERY_AGAINST_REPORT = 100
# verify/checks.py SLICES: each version is checked on one weekday.
VERIFY_SLICES = 7
# The work an invocation does before it hands on (the 900 s limit less jobs/budget.py's 60 s reserve).
INVOCATION_SECONDS = 840
# .chalice/config.json lambda_memory_size of the functions that run each job (a test keeps them equal).
FUNCTION_MEMORY_MB = {"verify_worker": 1024, "prune_worker": 1024, "backup_worker": 1024}
JOB_FUNCTIONS = {"verification": "verify_worker", "prune": "prune_worker", "cost_report": "backup_worker"}
JOBS = ("verification", "prune", "cost_report", "inventory", "alerts")
# Request kinds and the price each is billed at: list, put and post (DeleteObjects) at PUT's; get and head
# at GET's; sns per publish; inventory per object listed.
# delete: a DeleteObject, which S3 does not charge for (counted, for the model to match the code).
REQUEST_KINDS = ("list", "put", "post", "get", "head", "delete", "sns", "inventory_objects")


@dataclass(frozen=True)
class BucketDay:
    """What the upkeep of one plan depends on, on one day."""

    # Every version under data/ (current and noncurrent, named by a snapshot or not).
    versions: float
    # Versions kept snapshots name (distinct): what the verification checks.
    named_versions: float
    snapshots: int
    # Entries over every kept manifest (a version named by ten snapshots is ten entries).
    manifest_entries: float
    # The versions today's slice of the weekly verification holds, where known (None: a seventh of the named
    # versions, the average the slice's hash gives).
    checked: float | None = None
    # Versions the day's prune deletes, and the snapshots it removes.
    deleted: float = 0.0
    removed: int = 0
    # The plan's sources: each is listed under data/ on its own.
    sources: int = 1
    # Backup and prune records of the cost report's window (30 days of daily ones).
    backups_in_window: int = 30
    prunes_in_window: int = 30
    # Versions the day's backup wrote: with an inventory, what the newest report cannot show yet.
    written: float = 0.0
    # Of today's slice, the versions the newest report does not list although a snapshot older than its scan
    # names them (checked by HEAD), and those re-read with GET, where known (None: none are gone, and the
    # sample's share).
    unreported: float | None = None
    sampled: float | None = None
    # The kept index (catalog/kept_index.py): whether one from an earlier day exists, the snapshots it does not
    # cover yet when the day's verification starts (the day's backup), and the index versions a newer one
    # superseded, which the day's prune deletes.
    indexed: bool = True
    new_snapshots: float = 1.0
    superseded_indexes: float = 1.0
    # With an inventory, whether the day's cost report computes the plan's figures (1) or carries the last ones
    # (0: the newest report is the one they came from), where known (None: once per report period on average).
    cost_recomputed: float | None = None
    # The prune's own kept index (with an inventory): whether an earlier prune left one, and the snapshots it
    # does not cover yet (None: those of a report's period, `new_snapshots` a day).
    prune_indexed: bool = True
    prune_new_snapshots: float | None = None


@dataclass(frozen=True)
class UpkeepSettings:
    """The parameters each job's requests depend on."""

    # S3 Inventory: None (not configured), "Daily" or "Weekly".
    inventory: str | None = None
    verify_workers: int = 16
    # The share of the weekly slice re-read with GET (percent): none by HEAD, VERIFY_REPORT_SAMPLE_PERCENT
    # against a report.
    verify_sample_percent: float = 0.0
    cost_head_sample: int = 20
    memory_mb: dict[str, int] = field(default_factory=lambda: dict(FUNCTION_MEMORY_MB))

    @classmethod
    def of_plans(cls, plans: Any) -> UpkeepSettings:
        """The settings a plan set implies (its `inventory` entry)."""
        inventory = plans.inventory
        if inventory is None:
            return cls()
        return cls(inventory=inventory.frequency, verify_sample_percent=VERIFY_REPORT_SAMPLE_PERCENT)


@dataclass
class JobDay:
    """One job's day: its requests by kind, its Lambda invocations and seconds."""

    requests: dict[str, float] = field(default_factory=dict)
    invocations: float = 0.0
    seconds: float = 0.0
    function: str | None = None
    # Why the job as it works today could not finish this day's work (empty: it can).
    limits: list[str] = field(default_factory=list)

    def add(self, kind: str, count: float) -> None:
        if count:
            self.requests[kind] = self.requests.get(kind, 0.0) + count


def _pages(count: float, page: int = PAGE) -> int:
    return math.ceil(count / page) if count > 0 else 1


def _data_listing(day: BucketDay) -> int:
    """Requests of one walk of data/: the source folders (a delimiter listing), each source's versions
    1,000 a page, and the long keys' folder."""
    return 1 + _pages(day.versions) + (day.sources - 1) + 1


def _sequential(job: JobDay, entries: float = 0.0, pages: float = 0.0) -> float:
    """Seconds of the requests counted so far that run one after another, with `pages` listing pages parsed
    and `entries` manifest entries read."""
    one_by_one = sum(count for kind, count in job.requests.items() if kind in ("list", "put", "post", "get", "delete"))
    return one_by_one * REQUEST_SECONDS + pages * LIST_PAGE_PARSE_SECONDS + entries * ENTRY_SECONDS


def _report_rows(day: BucketDay) -> float:
    """Rows of a report of the bucket: every version under data/ and the manifests beside them."""
    return day.versions + day.snapshots


def _report_reads(job: JobDay, day: BucketDay, times: float = 1) -> None:
    """Reading the newest report `times`: its folders listed, manifest.json and manifest.checksum and each
    data file read (chalicelib/inventory/reports.py)."""
    job.add("list", times)
    job.add("get", times * (2 + _pages(_report_rows(day), REPORT_FILE_ROWS)))


def _report_seconds(rows: float, sorted_rows: float) -> float:
    """Reading `rows` of a report, `sorted_rows` of them sorted on disk."""
    return rows * REPORT_ROW_SECONDS + sorted_rows * SORTED_ROW_SECONDS


def verification(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """Without an inventory, a HeadObject per version of the slice. With one, each invocation reads the newest
    report and keeps the slice's rows (a seventh, sorted); what it does not list because it was written since
    the scan waits for the next report, a HeadObject only for the rest it does not list (gone), a GET for the
    sampled share. The versions come from the kept index: brought up
    to date once (the earlier index and the new manifests merged, the new index written), then read by each
    invocation up to where the last one stopped."""
    job = JobDay(function=JOB_FUNCTIONS["verification"])
    checked = day.named_versions / VERIFY_SLICES if day.checked is None else day.checked
    against_report = settings.inventory is not None
    if against_report:
        # What the report does not list because it was written since the scan waits for the next report; a
        # HEAD only for what an older snapshot names and the report does not list (gone: none expected).
        lag = REPORT_LAG_DAYS.get(settings.inventory or "", 1.0)
        deferred = min(checked, day.written * lag / VERIFY_SLICES)
        headed = 0.0 if day.unreported is None else day.unreported
    else:
        deferred, headed = 0.0, checked
    sampled = checked * settings.verify_sample_percent / 100 if day.sampled is None else day.sampled
    # HEADs and the sample's GETs overlap in the job's pool (verify/checks.py verify_versions).
    work = max(REQUEST_SECONDS / settings.verify_workers, REQUEST_CPU_SECONDS) * (headed + sampled)
    work += max(0.0, checked - headed - deferred) * ROW_CHECK_SECONDS
    # The index brought up to date: the earlier one read, the manifests it does not cover merged in (every kept
    # one without an earlier index), the new one written.
    per_snapshot = day.manifest_entries / day.snapshots if day.snapshots else 0.0
    merged = min(day.new_snapshots, day.snapshots) if day.indexed else day.snapshots
    update = (
        (day.named_versions * INDEX_ROW_SECONDS if day.indexed else 0.0)
        + merged * per_snapshot * ENTRY_SECONDS
        + day.named_versions * INDEX_WRITE_SECONDS
    )
    # A first estimate of the time gives the invocations; each reads the index (and the report).
    reading = 2 * REQUEST_SECONDS + day.named_versions * INDEX_ROW_SECONDS
    report = _report_seconds(_report_rows(day), _report_rows(day) / VERIFY_SLICES) if against_report else 0.0
    invocations = max(1, math.ceil((work + update + reading + report) / INVOCATION_SECONDS))
    # Per invocation: its record read, the pruned markers, the snapshot keys and the indexes listed, the
    # newest index read (the first invocation finds yesterday's, if any); once: the new manifests, the index.
    job.add("list", invocations * (2 + _pages(day.snapshots)))
    job.add("get", invocations + (invocations - 1) + (1 if day.indexed else 0) + merged + sampled)
    if against_report:
        _report_reads(job, day, invocations)
    job.add("head", headed)
    # The record: created, saved every VERIFY_SAVE_EVERY batches, after the plan, at each hand-on and at the
    # end; the index.
    every = VERIFY_SAVE_EVERY_AGAINST_REPORT if against_report else VERIFY_SAVE_EVERY
    job.add("put", 3 + math.ceil(checked / BATCH_SIZE) // every + (invocations - 1) + 1)
    job.invocations = invocations
    # Invocation k of n reads the index up to where the last one stopped, k/n of it on average; every
    # invocation reads the whole report.
    one_by_one = _sequential(job) - sampled * REQUEST_SECONDS
    job.seconds = work + update + invocations * report + day.named_versions * (invocations + 1) / 2 * INDEX_ROW_SECONDS + one_by_one
    if reading + report > INVOCATION_SECONDS:
        job.limits.append(
            f"reading the kept index{' and the report' if against_report else ''} takes about {reading + report:,.0f} s, "
            f"more than an invocation's {INVOCATION_SECONDS} s: a late invocation cannot reach its checkpoint, so the job would not finish"
        )
    return job


# Each of the prune's five phases starts from the catalog as it stands: sealed records, backup records,
# pruned markers, snapshots and checkpoints listed; decide and mark list the restore queue too, mark the
# pruned markers again.
PRUNE_CATALOG_LISTS = 5 * 5 + 2 + 1
# The prune's record: created, saved after each of the five phases, and concluded.
PRUNE_RECORD_PUTS = 7
# prune/job.py SWEPT_LOOKBACK: the prune records read for the report an earlier prune swept.
PRUNE_SWEPT_LOOKBACK = 10


def prune(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The daily prune: `prune_by_inventory` when the plans set one, else `prune_by_listing`."""
    return prune_by_inventory(day, settings) if settings.inventory is not None else prune_by_listing(day, settings)


def _deletions(job: JobDay, day: BucketDay) -> None:
    """A marker per removed snapshot and the record's saves; what goes, 1,000 versions to a DeleteObjects,
    then the removed manifests."""
    job.add("put", PRUNE_RECORD_PUTS + day.removed)
    job.add("post", math.ceil(day.deleted / PAGE) + (1 if day.removed else 0))
    # The kept indexes a newer one superseded: the indexes listed, their versions listed, each deleted.
    job.add("list", 2)
    job.add("delete", day.superseded_indexes)


def prune_by_listing(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The prune without an inventory (prune/job.py): the survey and the delete each read every kept manifest
    and walk data/."""
    job = JobDay(function=JOB_FUNCTIONS["prune"])
    job.add("list", PRUNE_CATALOG_LISTS + 2 * _data_listing(day))
    job.add("get", 1 + 2 * day.snapshots)
    _deletions(job, day)
    job.seconds = _sequential(job, entries=2 * day.manifest_entries, pages=2 * _pages(day.versions))
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
    due = prune_when_due(week, settings, period)
    if period == 1:
        return due
    waiting = prune_waiting(day, settings)
    job = JobDay(function=due.function, limits=due.limits)
    for kind in set(due.requests) | set(waiting.requests):
        job.add(kind, (due.requests.get(kind, 0.0) + (period - 1) * waiting.requests.get(kind, 0.0)) / period)
    job.seconds = (due.seconds + (period - 1) * waiting.seconds) / period
    job.invocations = (due.invocations + (period - 1) * waiting.invocations) / period
    return job


def _due_check(job: JobDay, day: BucketDay) -> None:
    """Whether the prune is due (prune/cadence.py): the newest prune records (this one's included) listed and
    read for the last sweep, the newest report's folders listed, its manifest.json and manifest.checksum."""
    job.add("list", 1 + 1)
    job.add("get", min(PRUNE_SWEPT_LOOKBACK, day.prunes_in_window + 1) + 2)


def prune_waiting(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """A scheduled prune between two reports: its record read and written (created, after the plan, at the
    end), and the check that it is not due."""
    job = JobDay(function=JOB_FUNCTIONS["prune"])
    _due_check(job, day)
    job.add("get", 1)
    job.add("put", 3)
    job.seconds = _sequential(job)
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
    job.add("list", PRUNE_CATALOG_LISTS + 2)
    # Its record; the newest index in each pass; the manifests merged in.
    job.add("get", 1 + (2 if day.prune_indexed else 1) + merged)
    _report_reads(job, day, times=2)
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
        + merged * per_snapshot * ENTRY_SECONDS
        + lines * INDEX_WRITE_SECONDS
        + 4 * lines * INDEX_ROW_SECONDS
    )
    report = _report_seconds(_report_rows(day), _report_rows(day))
    job.seconds = _sequential(job) + index + 2 * report
    job.invocations = max(1, math.ceil(job.seconds / INVOCATION_SECONDS))
    reading = 2 * lines * INDEX_ROW_SECONDS + report
    if reading > INVOCATION_SECONDS:
        job.limits.append(
            f"each pass reads the kept index and sorts the report in about {reading:,.0f} s, more than an invocation's "
            f"{INVOCATION_SECONDS} s: the prune would not finish unless it can carry on between invocations"
        )
    return job


def cost_report(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The report looked for; the snapshots listed. Then the plan's figures computed: the window's backup
    records (100 keys a page) and prune records listed and read, for each snapshot its manifest's versions
    listed and its pruned marker, sealed record and manifest read, what the bucket holds from the newest report
    (every row sorted) or by walking data/, the HeadObject sample. With an inventory that is done once per
    report (`cost_recomputed`): the newest report checked, and the figures kept with the report they came
    from (a GET each day, a PUT when computed) are carried while it is the newest. Then the report written."""
    job = JobDay(function=JOB_FUNCTIONS["cost_report"])
    job.add("get", 1)
    job.add("list", _pages(day.snapshots))
    if settings.inventory is not None:
        period = REPORT_PERIOD_DAYS.get(settings.inventory, 1.0)
        share = 1.0 / period if day.cost_recomputed is None else day.cost_recomputed
        # The newest report: its folders listed, manifest.json and manifest.checksum read; the pruned markers
        # listed (a thousand a request: one, for years of them); the kept figures.
        job.add("list", 1 + 1)
        job.add("get", 2 + 1)
        job.add("put", share)
    else:
        share = 1.0
    carried = _sequential(job)
    computing = JobDay()
    computing.add("list", _pages(day.backups_in_window, 100) + 1 + day.snapshots)
    computing.add("get", day.backups_in_window + day.prunes_in_window + 3 * day.snapshots)
    if settings.inventory is not None:
        computing.add("get", _pages(_report_rows(day), REPORT_FILE_ROWS))
        report, pages = _report_seconds(_report_rows(day), _report_rows(day)), 0
        # The sample is drawn from the versions the report lists: not those written since its scan.
        listed = max(0.0, day.versions - day.written * REPORT_LAG_DAYS.get(settings.inventory, 1.0))
    else:
        computing.add("list", _data_listing(day))
        report, pages, listed = 0.0, _pages(day.versions), day.versions
    computing.add("head", min(settings.cost_head_sample, listed))
    seconds = _sequential(computing, entries=day.manifest_entries, pages=pages) + report
    seconds += min(settings.cost_head_sample, listed) * REQUEST_SECONDS
    for kind, count in computing.requests.items():
        job.add(kind, share * count)
    job.add("put", 1)
    job.seconds = carried + share * seconds + REQUEST_SECONDS
    if seconds > INVOCATION_SECONDS:
        job.limits.append(
            f"computing a plan's figures takes about {seconds:,.0f} s inside the daily backup's invocation "
            f"({INVOCATION_SECONDS} s at most): the backup leaves it to the first GET /costs, which has 29 s"
        )
    # It runs inside the daily backup's invocation: no invocation of its own.
    return job


def inventory(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay()
    if settings.inventory is not None:
        # Every version, plus the manifests: a report lists the whole bucket.
        listed = _report_rows(day)
        job.add("inventory_objects", listed if settings.inventory == "Daily" else listed / 7)
    return job


def alerts(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay()
    job.add("sns", 1)
    return job


def upkeep_day(day: BucketDay, settings: UpkeepSettings) -> dict[str, JobDay]:
    """Every job's day, by job (`JOBS`)."""
    return {name: work(day, settings) for name, work in zip(JOBS, (verification, prune, cost_report, inventory, alerts))}


def request_usd(requests: dict[str, float], prices: Prices) -> float:
    """What the requests of `requests` (by kind) cost."""
    put = sum(requests.get(kind, 0.0) for kind in ("list", "put", "post"))
    get = sum(requests.get(kind, 0.0) for kind in ("get", "head"))
    return (
        put * prices.put_copy_post_list / 1000
        + get * prices.get / 1000
        + requests.get("sns", 0.0) * prices.upkeep.sns_per_million_publishes / 1e6
        + requests.get("inventory_objects", 0.0) * prices.upkeep.inventory_per_million_objects / 1e6
    )


def gb_seconds(job: JobDay, settings: UpkeepSettings) -> float:
    if job.function is None:
        return 0.0
    return job.seconds * settings.memory_mb[job.function] / 1024


def job_usd(job: JobDay, settings: UpkeepSettings, prices: Prices) -> float:
    """The job's day in dollars: its requests and its Lambda time and invocations."""
    lambda_usd = gb_seconds(job, settings) * prices.upkeep.lambda_gb_second
    return request_usd(job.requests, prices) + lambda_usd + job.invocations * prices.upkeep.lambda_per_million_requests / 1e6


def describe(jobs: dict[str, JobDay], settings: UpkeepSettings, prices: Prices) -> dict[str, Any]:
    """Jobs' days as a report shows them: per job, requests per day by kind, Lambda seconds and GB-seconds
    per day, and a month (30 days) of it in dollars."""
    by_job: dict[str, dict[str, Any]] = {
        name: {
            "requests_per_day": {kind: round(count, 1) for kind, count in sorted(job.requests.items())},
            "lambda_function": job.function,
            "lambda_seconds_per_day": round(job.seconds, 1),
            "lambda_gb_seconds_per_day": round(gb_seconds(job, settings), 1),
            "monthly_usd": round(job_usd(job, settings, prices) * DAYS_PER_MONTH, 8),
            **({"limits": job.limits} if job.limits else {}),
        }
        for name, job in jobs.items()
    }
    return {"monthly_usd": round(sum(entry["monthly_usd"] for entry in by_job.values()), 8), "jobs": by_job}

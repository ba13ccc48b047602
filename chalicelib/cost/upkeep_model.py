"""What a day of upkeep is made of: what a plan's bucket holds that day (`BucketDay`), the jobs' parameters
(`UpkeepSettings`), one job's day (`JobDay`), and what each request and each row read costs in time.

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
from dataclasses import dataclass, field
from typing import Any

from chalicelib.deploy.template import EPHEMERAL_STORAGE_MB as CONFIGURED_TMP_MB
from chalicelib.inventory.freshness import PERIOD

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
INDEX_ROW_SECONDS = 0.21 * ENTRY_SECONDS
INDEX_WRITE_SECONDS = 0.68 * ENTRY_SECONDS
REPORT_ROW_SECONDS = 0.60 * ENTRY_SECONDS
SORTED_ROW_SECONDS = 0.93 * ENTRY_SECONDS
ROW_CHECK_SECONDS = 0.34 * ENTRY_SECONDS
# A kept index's line skipped by a job resuming from its checkpoint (0.34: gunzipped, its source and key read
# by the JSON string scanner, no entry made; index-read was 0.69 in the same run).
INDEX_SKIP_SECONDS = 0.16 * ENTRY_SECONDS
# A manifest's entry as the verification's kept index merges it (0.54: read as S3 sends it, in blocks, each
# decoded by the C scanner: catalog/manifest_stream.py `streamed_entries`).
MERGE_ENTRY_SECONDS = 0.54 * ENTRY_SECONDS
# A manifest's entry as the prune's kept index merges it: streamed too, held entries kept, its order checked and
# its bytes hashed (manifest_stream.py `checked_entries`): 1.25 times a merge-entry, the largest of three runs
# of scripts/bench_rows.py measuring the two side by side (1.08 to 1.25, on a loaded machine: the ratio is the
# figure).
CHECKED_MERGE_SECONDS = 1.25 * MERGE_ENTRY_SECONDS
# A report's row as the cost report takes it (cost/inventory.py `ReportRuns`: read, sorted in the order the join
# reads its sources, each key's rows shaped as a listing's versions) and counts it (cost/tally.py
# `PlanTally.add`: its class under the plan's lifecycle and under each bucket setting, worked out once per size
# group and days; its cohort; the HEAD sample): 2.1 times a sorted report row, measured side by side by
# scripts/bench_rows.py (cost-row 38.4 microseconds, report-sort 18.1; 2.8 when the rows were split into a file
# per source and read back, and the tally placed each version anew). The join and the tally are what it adds
# to a sorted row (`COST_VERSION_SECONDS`), which a listed version costs too.
COST_ROW_SECONDS = 2.1 * (REPORT_ROW_SECONDS + SORTED_ROW_SECONDS)
COST_VERSION_SECONDS = COST_ROW_SECONDS - (REPORT_ROW_SECONDS + SORTED_ROW_SECONDS)
# A report's row counted for the cost report along the verification's pass, which has read and sorted it
# already (cost/row_counts.py `RowCounts.row`: each key's rows shaped as a listing's versions and counted by
# `PlanTally.add`): 0.55 times a read and sorted report row, measured side by side by scripts/bench_rows.py
# (count-row 1.22 times a manifest entry; report-read and report-sort 0.70 and 1.52; cost-row 4.33).
COUNT_ROW_SECONDS = 0.55 * (REPORT_ROW_SECONDS + SORTED_ROW_SECONDS)
# What a row takes in /tmp (scripts/bench_rows.py `bytes_per_row`): a manifest's entry and a kept index's line
# (gzip), an inventory report's row in a sorted run or a source's split (pickled).
MANIFEST_ENTRY_BYTES = 83
INDEX_LINE_BYTES = 87
REPORT_RUN_ROW_BYTES = 54
# /tmp (MB) each function has: Lambda's 512 without an EphemeralStorage setting, or what the deployment sets
# (chalicelib/deploy/template.py).
EPHEMERAL_STORAGE_MB = {function: CONFIGURED_TMP_MB.get(function, 512) for function in ("verify_worker", "prune_worker", "backup_worker", "heartbeat")}
# Rows per data file of a report. AWS does not document how it splits a report; the count of GETs it makes
# is a few a day either way.
REPORT_FILE_ROWS = 1_000_000
# Days between two reports: the prune with an inventory works, and the cost report computes a plan's figures,
# once per report.
REPORT_PERIOD_DAYS = {frequency: period.days for frequency, period in PERIOD.items()}
# Days of backups a report does not show when the weekly verification runs: a daily report was scanned
# before the day's backup; a weekly one 1 to 7 days before, 4 on average.
REPORT_LAG_DAYS = {"Daily": 1.0, "Weekly": 4.0}
# verify/job.py REPORT_SAMPLE_PERCENT: the share of a slice re-read with GET when checked against a report.
VERIFY_REPORT_SAMPLE_PERCENT = 0.1
PAGE = 1000
DAYS_PER_MONTH = 30
# verify/plan_check.py SAVE_EVERY and SAVE_EVERY_AGAINST_REPORT: batches checked between two saves of the job's
# record, by HEAD and against a report.
VERIFY_SAVE_EVERY = 10
VERIFY_SAVE_EVERY_AGAINST_REPORT = 100
# verify/checks.py SLICES: each version is checked on one weekday.
VERIFY_SLICES = 7
# The work an invocation does before it hands on (the 900 s limit less jobs/budget.py's 60 s reserve).
INVOCATION_SECONDS = 840
# .chalice/config.json lambda_memory_size of the functions that run each job (a test keeps them equal).
FUNCTION_MEMORY_MB = {"verify_worker": 1024, "prune_worker": 1024, "backup_worker": 1024, "heartbeat": 128}
JOB_FUNCTIONS = {"verification": "verify_worker", "prune": "prune_worker", "cost_report": "backup_worker", "alerts": "heartbeat"}
# The heartbeat runs hourly (app.py).
HEARTBEATS_A_DAY = 24
JOBS = ("verification", "prune", "cost_report", "inventory", "alerts")
# Request kinds and the price each is billed at: list, put and post (DeleteObjects) at PUT's; get and head
# at GET's; sns per publish; inventory per object listed.
# delete: a DeleteObject, which S3 does not charge for (counted, for the model to match the code); metric: a
# CloudWatch PutMetricData.
REQUEST_KINDS = ("list", "put", "post", "get", "head", "delete", "sns", "inventory_objects", "metric")


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
    # Of the named versions, the packed objects, and the packs that hold them: the verification looks at a
    # pack once for all its objects (verify/pack_check.py), so by HEAD a slice sends one per pack of the slice
    # (a packed object's slice is its pack's) and one per version of its own.
    packed: float = 0.0
    packs: float = 0.0
    # The HEADs today's slice sends by HEAD, where known (None: as `packed` and `packs` say, or one per version
    # checked where `checked` is known).
    heads: float | None = None
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
    # The prune's newest kept index when the cost report computes a plan's figures (with an inventory): whether
    # there is one, and the kept snapshots it does not cover (None: a report period's backups, `new_snapshots`
    # a day: the prune wrote it when it last worked, after the backup of the last report's day).
    cost_indexed: bool = True
    cost_unindexed: float | None = None
    # With an inventory, whether a weekly verification has counted the rows of a fresh report for the cost
    # report (cost/row_counts.py: it does whenever it checks every kept version against one), and the sealed
    # verification results the cost report reads to find them, newest first (None: the jobs that waited since
    # the one that counted, half a report period's on average, and it).
    cost_counted: bool = True
    cost_sealed_reads: float | None = None
    # Verification records the newest VERIFY_LOOKBACK of which a scheduled verification reads (None: one per
    # backup of the window).
    verifications_in_window: int | None = None


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
    # The plans of the stage, which share its stage-wide work (the heartbeat) equally.
    plans: int = 1

    @classmethod
    def of_plans(cls, plans: Any) -> UpkeepSettings:
        """The settings a plan set implies (its `inventory` entry, how many plans share the stage's work)."""
        inventory = plans.inventory
        if inventory is None:
            return cls(plans=max(1, len(plans.plans)))
        return cls(
            inventory=inventory.frequency, verify_sample_percent=VERIFY_REPORT_SAMPLE_PERCENT, plans=max(1, len(plans.plans))
        )


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


def page_count(count: float, page: int = PAGE) -> int:
    return math.ceil(count / page) if count > 0 else 1


def data_listing(day: BucketDay) -> int:
    """Requests of one walk of data/: the source folders (a delimiter listing), each source's versions
    1,000 a page, the long keys' folder and the packs' folder."""
    return 1 + page_count(day.versions) + (day.sources - 1) + 1 + 1


def sequential(job: JobDay, entries: float = 0.0, pages: float = 0.0) -> float:
    """Seconds of the requests counted so far that run one after another, with `pages` listing pages parsed
    and `entries` manifest entries read."""
    one_by_one = sum(count for kind, count in job.requests.items() if kind in ("list", "put", "post", "get", "delete"))
    return one_by_one * REQUEST_SECONDS + pages * LIST_PAGE_PARSE_SECONDS + entries * ENTRY_SECONDS


def report_rows(day: BucketDay) -> float:
    """Rows of a report of the bucket: every version under data/ and the manifests beside them."""
    return day.versions + day.snapshots


def report_reads(job: JobDay, day: BucketDay, times: float = 1) -> None:
    """Reading the newest report `times`: its folders listed, manifest.json and manifest.checksum and each
    data file read (chalicelib/inventory/reports.py)."""
    job.add("list", times)
    job.add("get", times * (2 + page_count(report_rows(day), REPORT_FILE_ROWS)))


def report_seconds(rows: float, sorted_rows: float) -> float:
    """Reading `rows` of a report, `sorted_rows` of them sorted on disk."""
    return rows * REPORT_ROW_SECONDS + sorted_rows * SORTED_ROW_SECONDS


def spread(due: JobDay, waiting: JobDay, period: int) -> JobDay:
    """A job that works once per report (`due`) and waits the other days of the report's `period`, a day on
    average."""
    if period <= 1:
        return due
    job = JobDay(function=due.function, limits=due.limits)
    for kind in set(due.requests) | set(waiting.requests):
        job.add(kind, (due.requests.get(kind, 0.0) + (period - 1) * waiting.requests.get(kind, 0.0)) / period)
    job.seconds = (due.seconds + (period - 1) * waiting.seconds) / period
    job.invocations = (due.invocations + (period - 1) * waiting.invocations) / period
    return job


def spool_bytes(day: BucketDay, report: bool, indexed: bool | None = None) -> float:
    """The most /tmp a job that brings a kept index up to date holds at once, in the order the verification
    (verify/job.py) and the prune (prune/references.py) work: the kept index brought up to date (the earlier
    index, where `indexed` (default `day.indexed`), and the new one side by side; the manifests merged in are
    read as S3 sends them, catalog/manifest_stream.py), then, beside the new index, the report's rows of the
    plan sorted in runs."""
    index = day.named_versions * INDEX_LINE_BYTES
    update = (index if (day.indexed if indexed is None else indexed) else 0.0) + index
    runs = day.versions * REPORT_RUN_ROW_BYTES if report else 0.0
    return max(update, index + runs)


def spool_limit(job: JobDay, day: BucketDay, report: bool, indexed: bool | None = None) -> None:
    """A limit on `job` when what it spools (`spool_bytes`) is more than its function's /tmp."""
    tmp_limit(job, spool_bytes(day, report, indexed), f"{'report runs, ' if report else ''}kept index")


def tmp_limit(job: JobDay, spooled: float, what: str) -> None:
    """A limit on `job` when `spooled` bytes of `what` are more than its function's /tmp."""
    needed = spooled / 2**20
    function = job.function or ""
    has = EPHEMERAL_STORAGE_MB.get(function, 512)
    if needed > has:
        fits = "" if needed <= 10_240 else ", more than the 10,240 MB Lambda allows: it cannot run in one function"
        job.limits.append(
            f"it spools about {needed:,.0f} MB in /tmp ({what}), more than the "
            f"{has:,} MB {function} has: it would need EphemeralStorage {math.ceil(needed):,} MB{fits}"
        )

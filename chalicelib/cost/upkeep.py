"""The upkeep: what the product's own recurring work costs a day, besides the backup's copies.

Each job's requests are a function of what the plan's bucket holds that day (`BucketDay`) and of the job's
own parameters (`UpkeepSettings`), written from its code path as it is today, for one plan
(tests/test_cost_upkeep_recorded.py runs the jobs on moto for a week and finds exactly these counts). When a
job changes how it works (the verification or the prune reading an S3 Inventory report instead of asking S3
version by version), only its function here changes.

- `verification` (verify/job.py, started after each scheduled backup): a HeadObject (billed as a GET) for
  each version kept snapshots name whose slice is the day's weekday, a seventh of them (so every version
  once a week), `verify_workers` at a time; in each invocation the job takes, its record read, the pruned
  markers and the snapshot keys listed and every kept manifest downloaded again; the record written when
  created, after every batch of `BATCH_SIZE` versions, after the plan, at each hand-on and at the end; a
  share re-read with GET (`verify_sample_percent`: the weekly slice re-reads none today).
- `prune` (prune/job.py, daily): each of its five phases lists the catalog (`PRUNE_CATALOG_LISTS`); the
  survey and the delete each read every kept manifest and walk data/ (1,000 versions a page); a marker
  per removed snapshot; what goes, 1,000 versions to a DeleteObjects (a POST), then the removed manifests;
  the record written after each phase (`PRUNE_RECORD_PUTS`).
- `cost_report` (cost/reports.py, at the end of the daily backup): the window's backup and prune records
  listed and read; the snapshots listed, and for each its pruned marker, sealed record, manifest versions
  and manifest; data/ walked once; `cost_head_sample` HeadObjects; the report looked for, then written.
- `inventory` (when the plans set `inventory`): S3 lists every version once a report, daily or weekly.
- `alerts`: the daily backup's alert, one SNS publish.

Lambda time is estimated, not measured (no Lambda runs in the tests): each request waits
`REQUEST_SECONDS`, the figure AWS documents for a small request's first byte ("roughly 100-200
milliseconds", Amazon S3 performance design patterns; its low end, since all of these are small and
in-region); HeadObjects overlap `verify_workers` at a time but cost at least `REQUEST_CPU_SECONDS` of
Python each (botocore signing and parsing); a listing page of 1,000 versions adds `LIST_PAGE_PARSE_SECONDS`
(botocore parsed a 1,000-version ListObjectVersions answer in 0.2 s on this project's test machine); a
manifest entry read costs `ENTRY_SECONDS` (gzip, JSON and the entry: about 10 microseconds measured on the
manifest's own format). GB-seconds are seconds times the function's memory (.chalice/config.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from chalicelib.jobs.runner import BATCH_SIZE
from chalicelib.prices import Prices

REQUEST_SECONDS = 0.1
REQUEST_CPU_SECONDS = 0.003
LIST_PAGE_PARSE_SECONDS = 0.2
ENTRY_SECONDS = 10e-6
PAGE = 1000
DAYS_PER_MONTH = 30
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
REQUEST_KINDS = ("list", "put", "post", "get", "head", "sns", "inventory_objects")


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


@dataclass(frozen=True)
class UpkeepSettings:
    """The parameters each job's requests depend on."""

    # S3 Inventory: None (not configured), "Daily" or "Weekly".
    inventory: str | None = None
    verify_workers: int = 16
    verify_sample_percent: float = 0.0
    cost_head_sample: int = 20
    memory_mb: dict[str, int] = field(default_factory=lambda: dict(FUNCTION_MEMORY_MB))

    @classmethod
    def of_plans(cls, plans: Any) -> UpkeepSettings:
        """The settings a plan set implies (its `inventory` entry)."""
        inventory = getattr(plans, "inventory", None)
        return cls(inventory=inventory.frequency if inventory is not None else None)


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
    one_by_one = sum(count for kind, count in job.requests.items() if kind in ("list", "put", "post", "get"))
    return one_by_one * REQUEST_SECONDS + pages * LIST_PAGE_PARSE_SECONDS + entries * ENTRY_SECONDS


def verification(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay(function=JOB_FUNCTIONS["verification"])
    checked = day.named_versions / VERIFY_SLICES if day.checked is None else day.checked
    heads = max(REQUEST_SECONDS / settings.verify_workers, REQUEST_CPU_SECONDS) * checked
    sampled = checked * settings.verify_sample_percent / 100
    # A first estimate of the time gives the invocations; each downloads the manifests and reads them again.
    reading = day.snapshots * REQUEST_SECONDS + day.manifest_entries * ENTRY_SECONDS
    invocations = max(1, math.ceil((heads + reading) / INVOCATION_SECONDS))
    # Per invocation: its record read, the pruned markers and the snapshot keys listed, every manifest.
    job.add("list", invocations * (1 + _pages(day.snapshots)))
    job.add("get", invocations * (1 + day.snapshots) + sampled)
    job.add("head", checked)
    # The record: created, saved after every batch, after the plan, at each hand-on and at the end.
    job.add("put", 3 + math.ceil(checked / BATCH_SIZE) + (invocations - 1))
    job.invocations = invocations
    # Invocation k of n reads the merged manifests up to where the last one stopped, k/n of them on average.
    job.seconds = heads + _sequential(job, entries=day.manifest_entries * (invocations + 1) / 2)
    if reading > INVOCATION_SECONDS:
        job.limits.append(
            f"reading the kept manifests takes about {reading:,.0f} s, more than an invocation's {INVOCATION_SECONDS} s: "
            "a late invocation cannot reach its checkpoint, so the job would not finish"
        )
    return job


# Each of the prune's five phases starts from the catalog as it stands: sealed records, backup records,
# pruned markers, snapshots and checkpoints listed; decide and mark list the restore queue too, mark the
# pruned markers again.
PRUNE_CATALOG_LISTS = 5 * 5 + 2 + 1
# The prune's record: created, saved after each of the five phases, and concluded.
PRUNE_RECORD_PUTS = 7


def prune(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay(function=JOB_FUNCTIONS["prune"])
    # Survey and delete: every kept manifest read and data/ walked, each time.
    job.add("list", PRUNE_CATALOG_LISTS + 2 * _data_listing(day))
    job.add("get", 1 + 2 * day.snapshots)
    # A marker per removed snapshot; then its versions and its manifest's, 1,000 to a DeleteObjects.
    job.add("put", PRUNE_RECORD_PUTS + day.removed)
    job.add("post", math.ceil(day.deleted / PAGE) + (1 if day.removed else 0))
    job.seconds = _sequential(job, entries=2 * day.manifest_entries, pages=2 * _pages(day.versions))
    job.invocations = max(1, math.ceil(job.seconds / INVOCATION_SECONDS))
    if day.manifest_entries * ENTRY_SECONDS > INVOCATION_SECONDS:
        job.limits.append(
            f"each sweep reads about {day.manifest_entries * ENTRY_SECONDS:,.0f} s of manifest entries, more than an "
            f"invocation's {INVOCATION_SECONDS} s: a late invocation cannot reach its position, so the prune would not finish"
        )
    return job


def cost_report(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay(function=JOB_FUNCTIONS["cost_report"])
    # The window's backup records (100 keys a page) and prune records listed and read; the snapshots listed,
    # and for each its pruned marker, its sealed record, its manifest's versions and the manifest; data/
    # walked once; the report looked for, then written.
    job.add("list", _pages(day.backups_in_window, 100) + 1 + _pages(day.snapshots) + day.snapshots + _data_listing(day))
    job.add("get", day.backups_in_window + day.prunes_in_window + 3 * day.snapshots + 1)
    job.add("head", min(settings.cost_head_sample, day.versions))
    job.add("put", 1)
    job.seconds = _sequential(job, entries=day.manifest_entries, pages=_pages(day.versions))
    job.seconds += min(settings.cost_head_sample, day.versions) * REQUEST_SECONDS
    if job.seconds > INVOCATION_SECONDS:
        job.limits.append(
            f"it takes about {job.seconds:,.0f} s inside the daily backup's invocation ({INVOCATION_SECONDS} s at most): "
            "the backup leaves it to the first GET /costs, which has 29 s"
        )
    # It runs inside the daily backup's invocation: no invocation of its own.
    return job


def inventory(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay()
    if settings.inventory is not None:
        # Every version, plus the manifests: a report lists the whole bucket.
        listed = day.versions + day.snapshots
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

"""The upkeep: what the product's own recurring work costs a day, besides the backup's copies.

Each job's requests are a function of what the plan's bucket holds that day (`BucketDay`) and of the job's
own parameters (`UpkeepSettings`), written from its code path as it is today, for one plan
(tests/test_cost_upkeep_recorded.py runs the jobs on moto for a week and finds exactly these counts). When a
job changes how it works, only its function here changes (the prune's with an inventory, `prune_by_inventory`,
is written for the prune as it is to work: see there).

- `verification` (verify/job.py, started after each scheduled backup; chalicelib/cost/verify_upkeep.py).
  Without an inventory (`verification_by_head`): the versions kept snapshots name whose slice is the day's
  weekday, a seventh of them (so every version once a week), a HeadObject (billed as a GET) each,
  `verify_workers` at a time, from the kept index brought up to date by the first invocation. With one it
  works once per report (`verification_when_due`: every kept version against the newest report, each
  invocation reading the report and the kept index again but sorting and decoding only past its checkpoint;
  the versions written since the scan wait for the next report, a HeadObject only for a version an older
  snapshot names that the report does not list, a share re-read with GET), and on the other days only checks
  that it is not due (`verification_waiting`). The record written when created, after every
  `VERIFY_SAVE_EVERY` (against a report `VERIFY_SAVE_EVERY_AGAINST_REPORT`) batches of `BATCH_SIZE`
  versions, after the plan, at each hand-on and at the end, its result sealed once; a read of a record
  first asks for its sealed result. Its limits name what one invocation cannot do,
  and the /tmp it spools beyond Lambda's default.
- `prune` (prune/job.py, daily): each of its five phases lists the catalog (`PRUNE_CATALOG_LISTS`); a marker
  per removed snapshot; what goes, 1,000 versions to a DeleteObjects (a POST), then the removed manifests;
  the record written after each phase (`PRUNE_RECORD_PUTS`). Without an inventory (`prune_by_listing`) the
  survey and the delete each read every kept manifest and walk data/ (1,000 versions a page); with one
  (`prune_by_inventory`) it works once per report (`prune_when_due`: each pass reads the prune's own kept
  index, brought up to date with the manifests written since, and the newest report, no listing), and on the
  other days only checks that it is not due (`prune_waiting`); then the superseded kept indexes are listed
  and deleted (DeleteObject, not charged).
- `cost_report` (cost/reports.py, at the end of the daily backup): the window's backup and prune records
  listed and read; the snapshots listed, and for each its pruned marker, sealed record and manifest versions;
  every kept manifest read, or with an inventory the prune's newest kept index (its keys listed, the newest
  read) and only the manifests it does not cover (cost/kept_versions.py); the newest report read (or,
  without an inventory, data/ walked once); `cost_head_sample` HeadObjects; the report looked for, then
  written.
- `inventory` (when the plans set `inventory`): S3 lists every version once a report, daily or weekly.
- `alerts`: the daily backup's alert, one SNS publish.

The time each request and row read takes, and the types of a day, are in chalicelib/cost/upkeep_model.py; the
prune's day in chalicelib/cost/prune_upkeep.py, the verification's in chalicelib/cost/verify_upkeep.py.
"""

from __future__ import annotations

import math

from typing import Any

from chalicelib.cost.prune_upkeep import prune
from chalicelib.cost.verify_upkeep import verification
from chalicelib.cost.upkeep_model import (
    EPHEMERAL_STORAGE_MB,
    BucketDay,
    DAYS_PER_MONTH,
    COST_ROW_SECONDS,
    COST_VERSION_SECONDS,
    INDEX_LINE_BYTES,
    MANIFEST_ENTRY_BYTES,
    MERGE_ENTRY_SECONDS,
    REPORT_RUN_ROW_BYTES,
    INDEX_ROW_SECONDS,
    INVOCATION_SECONDS,
    JOBS,
    HEARTBEATS_A_DAY,
    JOB_FUNCTIONS,
    JobDay,
    REPORT_FILE_ROWS,
    REPORT_LAG_DAYS,
    REPORT_PERIOD_DAYS,
    REQUEST_SECONDS,
    UpkeepSettings,
    data_listing,
    page_count,
    report_rows,
    sequential,
    tmp_limit,
)
from chalicelib.prices import Prices


def cost_report(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The report looked for; the snapshots listed. Then the plan's figures computed: the window's backup
    records (100 keys a page) and prune records listed and read, for each snapshot its manifest's versions
    listed and its pruned marker and sealed record read, what the bucket holds from the newest report
    (every row sorted) or by walking data/, the HeadObject sample. Which versions the kept snapshots name:
    without an inventory, every kept manifest read; with one, the prune's newest kept index (its keys listed,
    it read: a line per distinct version) and the manifests of the kept snapshots it does not cover
    (`cost_unindexed`). With an inventory that is done once per report (`cost_recomputed`): the newest report
    checked, and the figures kept with the report they came from (a GET each day, a PUT when computed) are
    carried while it is the newest. Then the report written."""
    job = JobDay(function=JOB_FUNCTIONS["cost_report"])
    job.add("get", 1)
    job.add("list", page_count(day.snapshots))
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
    carried = sequential(job)
    if settings.inventory is not None and day.cost_counted:
        return _cost_counted(job, day, settings, share, carried)
    computing = JobDay()
    computing.add("list", page_count(day.backups_in_window, 100) + 1 + day.snapshots)
    computing.add("get", day.backups_in_window + day.prunes_in_window + 2 * day.snapshots)
    per_snapshot = day.manifest_entries / day.snapshots if day.snapshots else 0.0
    if settings.inventory is not None:
        # The prune's indexes listed, the newest read; the kept manifests it does not cover read.
        unindexed: float = day.snapshots
        if day.cost_indexed:
            default = day.new_snapshots * REPORT_PERIOD_DAYS.get(settings.inventory, 1.0)
            unindexed = min(day.snapshots, default if day.cost_unindexed is None else day.cost_unindexed)
        computing.add("list", 1)
        computing.add("get", (1 if day.cost_indexed else 0) + unindexed)
        named = unindexed * per_snapshot * MERGE_ENTRY_SECONDS + (day.named_versions * INDEX_ROW_SECONDS if day.cost_indexed else 0.0)
        computing.add("get", page_count(report_rows(day), REPORT_FILE_ROWS))
        report, pages = report_rows(day) * COST_ROW_SECONDS, 0
        # The sample is drawn from the versions the report lists: not those written since its scan.
        listed = max(0.0, day.versions - day.written * REPORT_LAG_DAYS.get(settings.inventory, 1.0))
    else:
        computing.add("get", day.snapshots)
        computing.add("list", data_listing(day))
        report, pages, listed = day.versions * COST_VERSION_SECONDS, page_count(day.versions), day.versions
        named = day.manifest_entries * MERGE_ENTRY_SECONDS
    computing.add("head", min(settings.cost_head_sample, listed))
    # /tmp while the figures are computed: the kept index and every manifest merged are downloaded and held
    # through the join, beside the report's sorted runs.
    if settings.inventory is not None:
        spooled = (day.named_versions * INDEX_LINE_BYTES if day.cost_indexed else 0.0) + unindexed * per_snapshot * MANIFEST_ENTRY_BYTES
        spooled += report_rows(day) * REPORT_RUN_ROW_BYTES
    else:
        spooled = day.manifest_entries * MANIFEST_ENTRY_BYTES
    seconds = sequential(computing, pages=pages) + named + report
    seconds += min(settings.cost_head_sample, listed) * REQUEST_SECONDS
    for kind, count in computing.requests.items():
        job.add(kind, share * count)
    job.add("put", 1)
    job.seconds = carried + share * seconds + REQUEST_SECONDS
    if seconds > INVOCATION_SECONDS:
        job.limits.append(
            f"computing a plan's figures takes about {seconds:,.0f} s inside the daily backup's invocation "
            f"({INVOCATION_SECONDS} s at most; {report:,.0f} s of it each row of the bucket joined and counted): "
            "the backup leaves it to the first GET /costs, which has 29 s"
        )
    tmp_limit(job, spooled, "the kept index and the manifests it reads, the report's sorted runs")
    # It runs inside the daily backup's invocation: no invocation of its own.
    return job


def _cost_counted(job: JobDay, day: BucketDay, settings: UpkeepSettings, share: float, carried: float) -> JobDay:
    """The plan's figures from what the weekly verification counted along its pass over a fresh report
    (cost/row_counts.py): the window's backup and prune records listed and read, the sealed verification
    results listed and read newest first until one has the counts (`cost_sealed_reads`), the HeadObject
    sample. No manifest, kept index or row of the report is read: the rows are counted once, in the
    verification's seconds (`verify_upkeep.verification_when_due`)."""
    computing = JobDay()
    period = REPORT_PERIOD_DAYS.get(settings.inventory or "Daily", 1.0)
    sealed = (1 + (period - 1) / 2) if day.cost_sealed_reads is None else day.cost_sealed_reads
    computing.add("list", page_count(day.backups_in_window, 100) + 1 + 1)
    computing.add("get", day.backups_in_window + day.prunes_in_window + sealed)
    listed = max(0.0, day.versions - day.written * REPORT_LAG_DAYS.get(settings.inventory or "Daily", 1.0))
    heads = min(settings.cost_head_sample, listed)
    computing.add("head", heads)
    seconds = sequential(computing) + heads * REQUEST_SECONDS
    for kind, count in computing.requests.items():
        job.add(kind, share * count)
    job.add("put", 1)
    job.seconds = carried + share * seconds + REQUEST_SECONDS
    return job


def inventory(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    job = JobDay()
    if settings.inventory is not None:
        # Every version, plus the manifests: a report lists the whole bucket.
        listed = report_rows(day)
        job.add("inventory_objects", listed if settings.inventory == "Daily" else listed / 7)
    return job


def alerts(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The day's alert, and the plan's share of the stage's hourly heartbeat (notify/metrics.py): the sealed
    records listed and the newest read (it names every plan of a whole backup), the datapoint published."""
    job = JobDay(function=JOB_FUNCTIONS["alerts"])
    share = HEARTBEATS_A_DAY / settings.plans
    job.add("list", share)
    job.add("get", share)
    job.seconds = sequential(job)
    job.add("sns", 1)
    job.add("metric", share)
    job.invocations = math.ceil(share)
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
        + requests.get("metric", 0.0) * prices.upkeep.cloudwatch_per_thousand_metric_requests / 1000
        + requests.get("inventory_objects", 0.0) * prices.upkeep.inventory_per_million_objects / 1e6
    )


def gb_seconds(job: JobDay, settings: UpkeepSettings) -> float:
    if job.function is None:
        return 0.0
    return job.seconds * settings.memory_mb[job.function] / 1024


def job_usd(job: JobDay, settings: UpkeepSettings, prices: Prices) -> float:
    """The job's day in dollars: its requests and its Lambda time and invocations."""
    lambda_usd = gb_seconds(job, settings) * prices.upkeep.lambda_gb_second
    if job.function is not None:
        # /tmp configured beyond the 512 MB included is billed for as long as the function runs.
        extra_tmp_gb = max(0, EPHEMERAL_STORAGE_MB.get(job.function, 512) - 512) / 1024
        lambda_usd += job.seconds * extra_tmp_gb * prices.upkeep.lambda_ephemeral_gb_second
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

"""The weekly verification's day of upkeep (verify/job.py): a seventh of the kept versions by HEAD each day
without an inventory; with one, every kept version against the newest report once per report, spread over
the report's period, and on the other days the check that the plan waits (see chalicelib/cost/upkeep.py for
every job)."""

from __future__ import annotations

import math
from dataclasses import replace

from chalicelib.cost.upkeep_model import (
    BucketDay,
    INDEX_ROW_SECONDS,
    INDEX_SKIP_SECONDS,
    INDEX_WRITE_SECONDS,
    MERGE_ENTRY_SECONDS,
    INVOCATION_SECONDS,
    JOB_FUNCTIONS,
    JobDay,
    REPORT_FILE_ROWS,
    REPORT_PERIOD_DAYS,
    REPORT_ROW_SECONDS,
    REQUEST_CPU_SECONDS,
    REQUEST_SECONDS,
    COUNT_ROW_SECONDS,
    ROW_CHECK_SECONDS,
    SORTED_ROW_SECONDS,
    UpkeepSettings,
    VERIFY_SAVE_EVERY,
    VERIFY_SAVE_EVERY_AGAINST_REPORT,
    VERIFY_SLICES,
    page_count,
    report_rows,
    sequential,
    spool_limit,
    spread,
)
from chalicelib.jobs.runner import BATCH_SIZE

# verify/cadence.py LOOKBACK: the newest verification records read for the report an earlier job used.
VERIFY_LOOKBACK = 10
# Days of backups the report a due job uses does not show: the job is the first after the report's delivery,
# which comes a day (up to two) after its scan.
DUE_LAG_DAYS = 1.0
# Invocations the model follows before it calls a job one that cannot finish.
MAX_INVOCATIONS = 200


def verification(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """The scheduled verification, a day on average: `verification_by_head` without an inventory; with one,
    `verification_when_due` with a report period's new snapshots, once per report, and `verification_waiting`
    on the other days."""
    if settings.inventory is None:
        return verification_by_head(day, settings)
    period = REPORT_PERIOD_DAYS.get(settings.inventory, 1)
    due = verification_when_due(replace(day, new_snapshots=day.new_snapshots * period), settings)
    return spread(due, verification_waiting(day, settings), period)


def relocation_lists(day: BucketDay) -> int:
    """Where objects are packed, a reader of the kept index lists the relocation records of repacked packs
    (catalog/relocations.py) once; none to read under the shipped plans, which never repack."""
    return 1 if day.packed else 0


def verification_by_head(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """Without an inventory: a HeadObject per version of the day's slice (a seventh of the kept versions) and
    one per pack of the slice for all its packed objects, which come from the kept index, brought up to date once (the earlier index and the new manifests merged, the new
    index written), then read by each invocation up to where the last one stopped."""
    job = JobDay(function=JOB_FUNCTIONS["verification"])
    checked = day.named_versions / VERIFY_SLICES if day.checked is None else day.checked
    heads = by_head(day, checked)
    sampled = checked * settings.verify_sample_percent / 100 if day.sampled is None else day.sampled
    # HEADs and the sample's GETs overlap in the job's pool (verify/checks.py verify_versions); a packed object
    # takes its pack's answer in the job's thread.
    work = max(REQUEST_SECONDS / settings.verify_workers, REQUEST_CPU_SECONDS) * (heads + sampled)
    work += max(0.0, checked - heads) * ROW_CHECK_SECONDS
    update = _index_update(day)
    reading = 2 * REQUEST_SECONDS + day.named_versions * INDEX_ROW_SECONDS
    invocations = max(1, math.ceil((work + update + reading) / INVOCATION_SECONDS))
    # Per invocation: its record read, the pruned markers, the snapshot keys and the indexes listed, the
    # newest index read (the first invocation finds yesterday's, if any); once: the new manifests, the index.
    job.add("list", invocations * (2 + page_count(day.snapshots) + relocation_lists(day)))
    # Each invocation asks for the sealed result before it reads its record (none while the job runs).
    job.add("get", 2 * invocations + (invocations - 1) + (1 if day.indexed else 0) + _merged(day) + sampled)
    job.add("head", heads)
    # The record: created, saved every VERIFY_SAVE_EVERY batches, after the plan, at each hand-on and at the
    # end; the index; the sealed result.
    job.add("put", 3 + math.ceil(checked / BATCH_SIZE) // VERIFY_SAVE_EVERY + (invocations - 1) + 1 + 1)
    job.invocations = invocations
    job.seconds = work + update + day.named_versions * (invocations + 1) / 2 * INDEX_ROW_SECONDS + sequential(job) - sampled * REQUEST_SECONDS
    if reading > INVOCATION_SECONDS:
        job.limits.append(
            f"reading the kept index takes about {reading:,.0f} s, more than an invocation's {INVOCATION_SECONDS} s: a late "
            "invocation cannot reach its checkpoint, so the job would not finish"
        )
    spool_limit(job, day, report=False)
    return job


def by_head(day: BucketDay, checked: float) -> float:
    """The HEADs of a slice of `checked` versions checked by HEAD: one per version stored on its own, one per
    pack for all the packed objects in it."""
    if day.heads is not None:
        return day.heads
    if day.checked is not None or not day.packed or not day.named_versions:
        return checked
    return checked * (day.named_versions - day.packed + day.packs) / day.named_versions


def _merged(day: BucketDay) -> float:
    """The manifests merged into the kept index: those it does not cover yet (every kept one without one)."""
    return min(day.new_snapshots, day.snapshots) if day.indexed else day.snapshots


def _index_update(day: BucketDay) -> float:
    """Seconds to bring the kept index up to date: the earlier one read, the manifests merged, the new one written."""
    per_snapshot = day.manifest_entries / day.snapshots if day.snapshots else 0.0
    return (
        (day.named_versions * INDEX_ROW_SECONDS if day.indexed else 0.0)
        + _merged(day) * per_snapshot * MERGE_ENTRY_SECONDS
        + day.named_versions * INDEX_WRITE_SECONDS
    )


def _records_read(day: BucketDay) -> float:
    """The verification records read for the report the last job used (this job's own among them)."""
    records = day.backups_in_window if day.verifications_in_window is None else day.verifications_in_window
    return min(VERIFY_LOOKBACK, records)


def verification_waiting(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """A scheduled job between two reports: its record created, read, saved after the plan and at the end;
    the newest report's folders listed and its manifest.json and manifest.checksum read; the newest
    verification records listed and read. Nothing else."""
    job = JobDay(function=JOB_FUNCTIONS["verification"])
    job.add("list", 1 + 1)
    # Its record and, among the newest, its own are each read after asking for a sealed result (none yet).
    job.add("get", 1 + 2 + _records_read(day) + 2)
    job.add("put", 3 + 1)
    job.seconds = sequential(job)
    job.invocations = 1
    return job


def verification_when_due(day: BucketDay, settings: UpkeepSettings) -> JobDay:
    """A scheduled job a new report makes due: every kept version (all seven slices) against the report. The
    first invocation chooses the report (folders listed, manifest read) and reads the verification records
    for the cadence, and brings the kept index up to date (`day.new_snapshots` manifests merged); every
    invocation reads its record, lists the pruned markers, the snapshot keys and the indexes, reads the report
    again (later ones by its key: manifest.json, manifest.checksum, each data file) and the kept index, but
    sorts the report rows, and makes entries of the index lines, only past its checkpoint (`INDEX_SKIP_SECONDS`
    a line before it). What the report does not list because it was written since its scan waits for the
    next report; a HeadObject only for what an older snapshot names that it does not list (gone: none
    expected; a packed object's pack is listed: the report's row answers for all its objects); a GET for the
    sampled share."""
    job = JobDay(function=JOB_FUNCTIONS["verification"])
    lines = day.named_versions
    checked = lines if day.checked is None else day.checked
    deferred = min(checked, day.written * DUE_LAG_DAYS)
    headed = 0.0 if day.unreported is None else day.unreported
    sampled = checked * settings.verify_sample_percent / 100 if day.sampled is None else day.sampled
    # HEADs and the sample's GETs overlap in the job's pool (verify/checks.py verify_versions).
    work = max(REQUEST_SECONDS / settings.verify_workers, REQUEST_CPU_SECONDS) * (headed + sampled)
    work += max(0.0, checked - headed - deferred) * ROW_CHECK_SECONDS
    update = _index_update(day)
    rows, kept_rows = report_rows(day), day.versions
    # Every row under data/ counted once for the cost report, past each checkpoint (cost/row_counts.py).
    work += kept_rows * COUNT_ROW_SECONDS
    files = page_count(rows, REPORT_FILE_ROWS)

    def seconds(invocations: int) -> float:
        # Invocation i starts (i - 1)/n of the way: it reads every row and decodes every index line, sorts the
        # rows and makes entries of the lines past that point; (n + 1)/2 of them in all, (n - 1)/2 skipped.
        before, past = (invocations - 1) / 2, (invocations + 1) / 2
        reading = invocations * rows * REPORT_ROW_SECONDS + past * (kept_rows * SORTED_ROW_SECONDS + lines * INDEX_ROW_SECONDS)
        return work + update + reading + before * lines * INDEX_SKIP_SECONDS

    invocations = 1
    while invocations < MAX_INVOCATIONS and math.ceil(seconds(invocations) / INVOCATION_SECONDS) > invocations:
        invocations += 1
    n = invocations
    job.add("list", 1 + 1 + n * (2 + page_count(day.snapshots) + relocation_lists(day)))
    # Records read by the runner; the report's manifest and checksum, and its data files, by each; the
    # verification records once; the earlier index and the merged manifests once; the new index by the later ones.
    # Each invocation asks for the sealed result before it reads its record, and so does the cadence's read of
    # the job's own record among the newest.
    job.add("get", 2 * n + 2 * n + n * files + _records_read(day) + 1 + (1 if day.indexed else 0) + _merged(day) + (n - 1) + sampled)
    job.add("head", headed)
    every = VERIFY_SAVE_EVERY_AGAINST_REPORT
    job.add("put", 3 + math.ceil(checked / BATCH_SIZE) // every + (n - 1) + 1 + 1)
    job.invocations = n
    job.seconds = seconds(n) + sequential(job) - sampled * REQUEST_SECONDS
    # The kept index is brought up to date first and written: an invocation that runs out of time after that
    # is retried by Lambda, and the retry finds it. The report is read and sorted before the first checkpoint.
    first = rows * REPORT_ROW_SECONDS + kept_rows * SORTED_ROW_SECONDS
    if update > INVOCATION_SECONDS:
        job.limits.append(
            f"bringing the kept index up to date takes about {update:,.0f} s, more than an invocation's "
            f"{INVOCATION_SECONDS} s: the job would not finish"
        )
    if first > INVOCATION_SECONDS:
        job.limits.append(
            f"each invocation reads and sorts the report before its first checkpoint, about {first:,.0f} s, more than an "
            f"invocation's {INVOCATION_SECONDS} s: the job would not finish"
        )
    if update <= INVOCATION_SECONDS and first <= INVOCATION_SECONDS and invocations >= MAX_INVOCATIONS:
        job.limits.append(
            f"each invocation re-reads the report and the kept index, about {rows * REPORT_ROW_SECONDS + lines * INDEX_SKIP_SECONDS:,.0f} s, "
            f"leaving too little of an invocation's {INVOCATION_SECONDS} s: the job would not finish"
        )
    spool_limit(job, day, report=True)
    return job

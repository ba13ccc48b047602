"""Whether the newest inventory report of a backup bucket may be relied on: one rule for every job that reads
reports (the weekly verification, the prune). S3 delivers a report within 48 hours of its scan, daily or
weekly, so a report older than its frequency allows (`STALE_AFTER`) is a sign that deliveries stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import describe_error
from chalicelib.inventory.reports import Report, ReportError, newest_report
from chalicelib.times import isoformat

# How often S3 delivers a report of each frequency.
PERIOD = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}
# How old a report may be before a job will not rely on it: its period, and the 48 hours S3 may take to deliver
# it after its scan (a report's age counts from its scan, `creationTimestamp`): 3 days Daily, 9 Weekly.
DELIVERY = timedelta(hours=48)
STALE_AFTER = {frequency: period + DELIVERY for frequency, period in PERIOD.items()}


class ReportProblem(StrEnum):
    UNREADABLE = "unreadable"
    NONE = "none"
    STALE = "stale"


def stale_after(frequency: str) -> timedelta:
    return STALE_AFTER.get(frequency, STALE_AFTER["Daily"])


def days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:.1f} days"


@dataclass(frozen=True)
class Freshness:
    """The newest report of `source_bucket` if it may be relied on (`report`), else why not: `kind` and
    `problem` (a sentence naming the bucket and the report's age). `summary` is what a job's record keeps."""

    report: Report | None
    kind: ReportProblem | None = None
    problem: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    # No report yet, and none due yet: when the first is (no problem).
    pending: str | None = None

    def described(self, instead: str) -> dict[str, Any]:
        """The summary a job's record keeps, with `pending` or `problem` ending in what the job does instead
        of reading a report (`instead`)."""
        summary = dict(self.summary)
        if self.pending is not None:
            summary["pending"] = f"{self.pending}: {instead}"
        elif self.problem is not None:
            summary["problem"] = f"{self.problem}: {instead}"
        return summary


def newest_fresh_report(
    s3: Any,
    reports_bucket: str,
    prefix: str,
    configuration_id: str,
    frequency: str,
    source_bucket: str,
    now: datetime,
    first_snapshot: datetime | None,
) -> Freshness:
    """The newest report delivered to s3://`reports_bucket`/`prefix` for `source_bucket` by the configuration
    `configuration_id`, judged by `STALE_AFTER[frequency]` at `now`.

    No report is no problem while the first is not due: S3 delivers the first report within 48 hours of the
    configuration, so while the plan's oldest kept snapshot (`first_snapshot`; None: there is none) is
    younger than a report may be old, `pending` says when it is due."""
    where = f"s3://{reports_bucket}/{prefix}"
    summary: dict[str, Any] = {"bucket": source_bucket, "report": None, "created": None, "age_days": None, "problem": None}
    try:
        report = newest_report(s3, reports_bucket, prefix, source_bucket, configuration_id)
    except (ReportError, ClientError, BotoCoreError) as exc:
        problem = f"the newest inventory report of s3://{source_bucket} in {where} cannot be used ({describe_error(exc)})"
        return Freshness(None, ReportProblem.UNREADABLE, problem, summary)
    limit = stale_after(frequency)
    if report is None and (first_snapshot is None or now - first_snapshot <= limit):
        due = isoformat((first_snapshot or now) + limit)
        pending = f"the first inventory report of s3://{source_bucket} is not due before {due}"
        return Freshness(None, None, None, summary, pending)
    if report is None:
        problem = f"no inventory report of s3://{source_bucket} has been delivered to {where}"
        return Freshness(None, ReportProblem.NONE, problem, summary)
    age = report.age(now)
    summary |= {"report": report.manifest_key, "created": isoformat(report.created), "age_days": round(age.total_seconds() / 86400, 2)}
    if age > limit:
        problem = (
            f"the newest inventory report of s3://{source_bucket} ({report.manifest_key}) is {days(age)} old, more than "
            f"the {days(limit)} a {frequency} report may be"
        )
        return Freshness(None, ReportProblem.STALE, problem, summary)
    return Freshness(report, None, None, summary)

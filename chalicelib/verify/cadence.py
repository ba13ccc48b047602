"""When the scheduled verification of a plan with S3 Inventory has work to do: once per report.

Against a report, checking a version costs a row read, not a request; what costs is reading the kept index
and the report, and a report comes once a day or once a week. So the scheduled verification of a plan works
when a report is due for it (chalicelib/inventory/cadence.py, the rule the prune follows too): the newest
fresh report has not been used by an earlier scheduled verification of the plan, or none used one for a
report's period. It then checks every distinct version of every kept snapshot (all seven slices) against that
report. Otherwise the plan's part of its record says it waits, which report was used, by which job and when,
and it reads nothing else. An on-demand check of one backup (POST /backups/{id}/verify) always runs, and
without a usable report (none, stale, unreadable: an alert) the day's slice is checked by HEAD, as without
an inventory.

So each version is checked once per report: weekly with weekly reports, daily with daily ones. A version
lost just after a report's scan shows in the next report, a period later, and is found when that report is
delivered (up to 48 hours after its scan): a loss goes unnoticed for at most a report's period plus its
delivery (9 days with weekly reports, 3 with daily ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import describe_error
from chalicelib.inventory.cadence import is_due
from chalicelib.inventory.reports import Report, ReportError, load_report
from chalicelib.plans import InventoryPlan, Plan
from chalicelib.verify.record import VerificationRecord
from chalicelib.verify.report_check import choose_report

# The newest verification records read for the report an earlier scheduled verification used (on-demand
# checks are among them).
LOOKBACK = 10


@dataclass(frozen=True)
class LastCheck:
    """The newest earlier scheduled verification that checked (or is checking) every kept version of a plan
    against a report: which job, when it started, which report."""

    job_id: str
    started_at: str
    report: str


def last_check(records: Iterable[VerificationRecord], plan: str, job_id: str) -> LastCheck | None:
    """Of `records` (newest first), the newest other scheduled verification of `plan` that checked every kept
    version against a report, or is still doing so (it will have used that report): None when none did."""
    for earlier in records:
        if earlier.job_id == job_id or earlier.kind != "slice" or earlier.trigger != "schedule":
            continue
        report = earlier.checked_against.get(plan) or (None if earlier.finished else earlier.checking.get(plan))
        if report:
            return LastCheck(earlier.job_id, earlier.started_at or "", report)
    return None


def waiting(last: LastCheck | None, newest: str, frequency: str, now: datetime) -> dict[str, Any] | None:
    """Why the plan's scheduled verification waits (what its record keeps), or None when it is due."""
    if last is None or is_due(last.started_at, last.report, newest, frequency, now):
        return None
    return {
        "report": newest,
        "used_by": last.job_id,
        "used_at": last.started_at,
        "message": (
            f"waits for the next inventory report: every kept version was checked against the newest one ({newest}) "
            f"by verification {last.job_id} (started {last.started_at})"
        ),
    }


def plan_report(
    s3: Any,
    inventory: InventoryPlan,
    plan: Plan,
    record: VerificationRecord,
    now: datetime,
    first_snapshot: Callable[[], datetime | None],
    earlier: Callable[[], Iterable[VerificationRecord]],
) -> Report | None:
    """The report a slice job checks the plan against (None: by HEAD, or the plan waits: `record.waiting`).

    The first invocation that comes to the plan chooses it (chalicelib/verify/report_check.py `choose_report`)
    and, for a scheduled job, decides whether the plan is due (`earlier`: the newest verification records) and
    keeps the choice in the record; a later invocation reads the same report again by its key (no listing),
    and a report that cannot be read then is a problem, as on the first. `first_snapshot` (when the plan's
    oldest kept snapshot was taken) is asked only when no report is usable."""
    chosen = record.inventory.get(plan.name)
    if chosen is not None:
        if chosen.get("problem") or not chosen.get("report"):
            return None
        try:
            return load_report(s3, inventory.bucket, chosen["report"])
        except (ReportError, ClientError, BotoCoreError) as exc:
            record.use_inventory(plan.name, {**chosen, "problem": unusable(plan, exc)})
            return None
    choice = choose_report(s3, inventory, plan, now)
    if choice.summary.get("pending"):
        # Whether no report is a problem yet depends on how old the plan's snapshots are.
        choice = choose_report(s3, inventory, plan, now, first_snapshot())
    report = choice.report
    if report is not None and record.trigger == "schedule":
        why = waiting(last_check(earlier(), plan.name, record.job_id), report.manifest_key, inventory.frequency, now)
        if why is not None:
            record.waiting[plan.name] = why
            report = None
        else:
            record.checking[plan.name] = report.manifest_key
    record.use_inventory(plan.name, choice.summary)
    return report


def unusable(plan: Plan, exc: BaseException) -> str:
    return f"the newest inventory report of s3://{plan.bucket} cannot be used ({describe_error(exc)}): its versions were checked by HEAD instead"

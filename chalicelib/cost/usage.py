"""What the backups themselves do, measured from their records: the requests they send each month, and how
fast each plan's data changes.

Both come from the backup records of the last 30 days (`meta/backups/`, newest first, so the listing stops
at the first older key), one GET per record, sealed copy first:
- requests: per backup, one COPY per object copied, one LIST per 1,000 objects of the source plus the fixed
  requests of `bills.backup_requests`; the window's total scaled to 30 days (the copies of a first full
  backup at the window's start are a one-off, reported apart and not scaled);
- change: between two consecutive backups of a plan, `new = objects - previous objects + deleted` (never more
  than were copied), `changed = copied - new`; per day over the days the window's backups span, and as a
  share of the plan's objects for the projection.
Dry runs, backups still running and plans that failed (no snapshot) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.catalog.records import BackupStatus, RecordStore, backup_id_of_key
from chalicelib.cost.bills import Day, backup_requests
from chalicelib.errors import NotFound, Tampered
from chalicelib.layout import RECORDS_PREFIX
from chalicelib.prices import Prices
from chalicelib.s3docs import time_of_inverted
from chalicelib.times import parse_iso

WINDOW_DAYS = 30
# Records read at most: a month of daily backups with many manual ones besides.
MAX_RECORDS = 500
DAY = timedelta(days=1)


@dataclass(frozen=True)
class PlanRun:
    """One plan's counts in one finished backup."""

    taken: datetime
    copied: int
    deleted: int
    objects: int
    bytes_copied: int


@dataclass
class History:
    """The finished backups of the window, per plan, oldest first."""

    now: datetime
    runs: dict[str, list[PlanRun]] = field(default_factory=dict)
    records: int = 0
    warnings: list[str] = field(default_factory=list)


def recent_history(records: RecordStore, now: datetime, days: int = WINDOW_DAYS, report: Any = None) -> History:
    """Read the records of the `days` before `now`. `report` is told of a record that cannot be trusted."""
    history = History(now=now)
    since = now - timedelta(days=days)
    start_after: str | None = None
    while history.records < MAX_RECORDS:
        keys, more = records.list_keys(100, start_after)
        for key in keys:
            start_after = key
            stamp = key[len(RECORDS_PREFIX) :].split("_", 1)[0]
            if not stamp.isdigit() or time_of_inverted(stamp) < since:
                more = False
                break
            if time_of_inverted(stamp) > now:
                continue
            history.records += 1
            _add(records, key, history, report)
        if not more or not keys:
            break
    for runs in history.runs.values():
        runs.sort(key=lambda run: run.taken)
    return history


def _add(records: RecordStore, key: str, history: History, report: Any) -> None:
    try:
        record = records.read_key(key)
    except Tampered as exc:
        if report is not None:
            report(str(exc))
        history.warnings.append(f"backup {backup_id_of_key(key)} left out of the measured usage: {exc}")
        return
    except NotFound:
        return
    if record.dry_run or record.status == BackupStatus.RUNNING or not record.started_at:
        return
    taken = parse_iso(record.started_at)
    for name, result in record.plans.items():
        if result.status in (BackupStatus.SUCCEEDED, BackupStatus.PARTIAL) and result.snapshot:
            history.runs.setdefault(name, []).append(
                PlanRun(taken, result.copied, result.deleted, result.objects, result.bytes_copied)
            )


@dataclass(frozen=True)
class Usage:
    """A plan's measured backups: the requests they cost a month, and its rate of change."""

    backups: int
    # The days the counts stand for: since the window's oldest backup (whole days, 1 to 30).
    days: int
    requests: dict[str, float]
    monthly_usd: float
    # Objects new, changed and deleted per day, measured between consecutive backups.
    new_per_day: float
    changed_per_day: float
    deleted_per_day: float
    bytes_copied_per_day: float
    # Between which backups change was measured (days between the first and the last; 0: not measured).
    measured_days: float
    objects: int
    # Copies of a first full backup at the window's start, left out of the monthly figures (a one-off).
    initial_copies: int = 0

    @property
    def changed_share(self) -> float:
        return self.changed_per_day / self.objects if self.objects else 0.0

    @property
    def deleted_share(self) -> float:
        return self.deleted_per_day / self.objects if self.objects else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "backups": self.backups,
            "days": self.days,
            "requests": {name: round(count) for name, count in sorted(self.requests.items())},
            "monthly_usd": round(self.monthly_usd, 8),
            "one_off_initial_copies": self.initial_copies,
            "change": {
                "measured_days": round(self.measured_days, 2),
                "objects": self.objects,
                "new_per_day": round(self.new_per_day, 2),
                "changed_per_day": round(self.changed_per_day, 2),
                "deleted_per_day": round(self.deleted_per_day, 2),
                "changed_share_per_day": round(self.changed_share, 6),
                "deleted_share_per_day": round(self.deleted_share, 6),
                "bytes_copied_per_day": round(self.bytes_copied_per_day),
            },
        }


def measure(runs: list[PlanRun], now: datetime, prices: Prices, days: int = WINDOW_DAYS) -> Usage:
    """Requests per month and rates of change from a plan's runs (oldest first)."""
    span = min(days, max(1, math.ceil((now - runs[0].taken) / DAY))) if runs else days
    # A plan's first backup copies everything once; scaled to a month it would read as a month of full
    # copies. A window that starts with a run that copied every object leaves its copies out (its listing
    # and fixed requests stay: every backup has them) and reports them apart, as a one-off.
    initial = runs[0] if runs and runs[0].objects and runs[0].copied >= runs[0].objects else None
    counts: dict[str, float] = {}
    for run in runs:
        copies = 0 if run is initial else run.copied
        day = Day(copies=copies, objects=run.objects, versions=0.0, deleted=run.deleted)
        # (Day 1: not a plan's first backup, so its delete markers count.)
        for name, amount in backup_requests(1, day).items():
            counts[name] = counts.get(name, 0.0) + amount
    monthly = {name: amount * WINDOW_DAYS / span for name, amount in counts.items()}
    priced = monthly.get("copy", 0) + monthly.get("put", 0) + monthly.get("list", 0)
    usd = priced * prices.put_copy_post_list / 1000 + monthly.get("get", 0) * prices.get / 1000
    new = changed = deleted = copied_bytes = 0.0
    for previous, run in zip(runs, runs[1:]):
        added = min(run.copied, max(0, run.objects - previous.objects + run.deleted))
        new += added
        changed += run.copied - added
        deleted += run.deleted
        copied_bytes += run.bytes_copied
    measured = (runs[-1].taken - runs[0].taken) / DAY if len(runs) > 1 else 0.0
    # Two backups an hour apart say nothing about a day: the change is spread over a day at least.
    per_day = max(measured, 1.0) if len(runs) > 1 else 1.0
    return Usage(
        backups=len(runs),
        days=span,
        requests=monthly,
        monthly_usd=usd,
        new_per_day=new / per_day,
        changed_per_day=changed / per_day,
        deleted_per_day=deleted / per_day,
        bytes_copied_per_day=copied_bytes / per_day,
        measured_days=measured,
        objects=runs[-1].objects if runs else 0,
        initial_copies=initial.copied if initial is not None else 0,
    )

"""Whether a snapshot's time can be trusted: S3's own times for its backup's record and manifest.

A snapshot's time is its backup id's time, which whoever writes backups chooses. Whoever holds the writer's
keys could plant a backup under an id dated yesterday and so make it the newest of a day, week, month or year
that has already ended, taking that period's place from the snapshot that held it (which a prune would then
remove). S3's times are not theirs to choose:

- a backup is recorded when it starts (its working record is created right after its id is made: see
  backup/service.py `start`), so the first version of that record dates its start. A scheduled backup's id
  carries its schedule's time, and its record is created when the event is delivered: EventBridge retries a
  delivery for up to 24 hours and Lambda holds an asynchronous event for up to 6 more, so a scheduled id may
  be recorded up to 30 hours after its time; any other id within the clocks' slack;
- its manifest is written when it ends, at most MAX_BACKUP_DAYS after it started (a backup still running
  then is abandoned).

A snapshot that breaks either rule is kept, counted by no rule, and reported as tampering. Checking the first
rule costs a listing of the record's versions, so it is checked only where it matters: for snapshots whose
manifest was written after their own day had ended (a backup that ran past midnight, a delayed scheduled
delivery, or a backdated one). A snapshot first recorded after its day ended yet within the delivery slack
(a scheduled event delivered late) is counted; if it then takes an ended period's place from a snapshot
written before it, that is reported too: nobody else can tell a late delivery from a planted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from chalicelib.catalog.records import backup_time, is_scheduled_id, record_key
from chalicelib.retention import MAX_BACKUP_DAYS, PERIOD_RULES, RetentionPolicy, resolve_time_zone
from chalicelib.times import isoformat

# Clocks differ a little: S3's time for a write and the time in an id taken just before it.
CLOCK_SLACK = timedelta(minutes=5)
# How late a scheduled event may reach the backup function: EventBridge's retries (24 hours) and then
# Lambda's maximum age of an asynchronous event (6 hours).
SCHEDULED_DELIVERY_SLACK = timedelta(hours=30)


def start_slack(backup_id: str) -> timedelta:
    """How long after its id's time a backup's record may be first written."""
    return SCHEDULED_DELIVERY_SLACK + CLOCK_SLACK if is_scheduled_id(backup_id) else CLOCK_SLACK


def day_end(moment: datetime, tz: str | tzinfo) -> datetime:
    """The end of the local day (in the plan's time zone) that `moment` falls in."""
    zone = resolve_time_zone(tz)
    local = moment.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)


def ended_before_written(backup_id: str, written: datetime, tz: str | tzinfo) -> bool:
    """Whether the snapshot's manifest was written after the local day its id names had ended: only then
    can the snapshot take an ended period's place, and only then is its start looked up."""
    return written > day_end(backup_time(backup_id), tz) + CLOCK_SLACK


def first_recorded(s3: Any, catalog_bucket: str, backup_id: str) -> datetime | None:
    """S3's time for the first version of the backup's working record (None: there is none)."""
    key = record_key(backup_id)
    times = [
        version["LastModified"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=catalog_bucket, Prefix=key)
        for version in page.get("Versions", []) + page.get("DeleteMarkers", [])
        if version["Key"] == key
    ]
    return min(times) if times else None


def doubt(backup_id: str, written: datetime, recorded: Mapping[str, datetime | None]) -> str | None:
    """Why S3's times contradict the snapshot's id (None: they do not). `recorded`: the first record times
    looked up (only for snapshots `ended_before_written` picks)."""
    taken = backup_time(backup_id)
    if written < taken - CLOCK_SLACK:
        return f"its manifest was written at {isoformat(written)}, before the time its id names"
    if written > taken + timedelta(days=MAX_BACKUP_DAYS):
        return (
            f"its manifest was written at {isoformat(written)}, more than {MAX_BACKUP_DAYS} days after the "
            "time its id names"
        )
    if backup_id not in recorded:
        return None
    first = recorded[backup_id]
    if first is None:
        return "no record of its start was found"
    if first > taken + start_slack(backup_id):
        return (
            f"its backup was first recorded at {isoformat(first)}, {_hours(first - taken)} after the time its id "
            "names: a backup is recorded when it starts"
        )
    return None


def takeovers(
    kept: Mapping[str, bool],
    written: Mapping[str, datetime],
    recorded: Mapping[str, datetime | None],
    policy: RetentionPolicy,
    tz: str | tzinfo,
) -> list[str]:
    """Every counted snapshot first recorded after a period it belongs to had ended, which keeps that period
    while a snapshot of the same period written before it is no longer kept: it took the period's place.
    `kept`: each governed snapshot's verdict; `written`: S3's time for its manifest."""
    zone = resolve_time_zone(tz)
    found: list[str] = []
    for backup_id, first in sorted(recorded.items()):
        if first is None or backup_id not in kept or not kept[backup_id]:
            continue
        local = backup_time(backup_id).astimezone(zone)
        late = first.astimezone(zone)
        for name, label, period_of in PERIOD_RULES:
            period = period_of(local)
            if not getattr(policy, name) or period_of(late) == period:
                continue
            # The one that held the period when it ended: the newest of it written before this one.
            held = [
                other
                for other in kept
                if other != backup_id
                and written[other] < written[backup_id]
                and period_of(backup_time(other).astimezone(zone)) == period
            ]
            holder = max(held, key=lambda other: (backup_time(other), other), default=None)
            if holder is not None and not kept[holder]:
                found.append(
                    f"TAMPERING: snapshot {backup_id}, first recorded at {isoformat(first)} after {label} "
                    f"{period} had ended, took that period's place from snapshot {holder}, written before it "
                    f"at {isoformat(written[holder])}: expected only of a scheduled backup whose event was "
                    "delivered late"
                )
    return found


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f} hours"

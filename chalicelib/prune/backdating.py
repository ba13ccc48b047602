"""Whether a snapshot's time can be trusted: S3's own times for its backup's record and manifest.

A snapshot's time is its backup id's time, which whoever writes backups chooses. Whoever holds the writer's
keys could plant a backup under an id dated yesterday and so make it the newest of a day, week, month or year
that has already ended, taking that period's place from the snapshot that held it (which a prune would then
remove). S3's times are not theirs to choose:

- a backup is recorded when it starts (its working record is created right after its id is made: see
  backup/service.py `start`), so the first version of that record dates its start. A scheduled backup's id
  carries its schedule's time (whole seconds, as EventBridge gives it), and its record is created when the
  event is delivered: EventBridge retries a delivery for up to 24 hours and Lambda holds an asynchronous
  event for up to 6 more, so a scheduled id may be recorded up to 30 hours after its time; any other id
  within the clocks' slack;
- its manifest is written when it ends, at most MAX_BACKUP_DAYS after it started (a backup still running
  then is abandoned), in one PutObject (the bucket policy refuses multipart uploads there, whose time would
  be the upload's start: deploy/bucket_settings.py);
- its sealed record names the manifest's version: a manifest planted later for a finished backup that wrote
  none for the plan (a dry run, a backup of other plans, a failed plan) names a version it does not.

A snapshot that breaks a rule is kept, counted by no rule, and reported as tampering. The first and third
rules cost a request each, so they are checked only where they matter: for snapshots whose manifest was
written at or after the end of their own day (a backup that ran past midnight, a delayed scheduled
delivery, or a backdated one). Among those, a counted snapshot that holds a day, week, month or year that
had ended when its backup was first recorded took that period's place after it was over: it is reported
too, since nobody else can tell a late delivery from a planted one. What this cannot see: whoever holds the
writer's keys while a day lasts can start a backup then (its record dated within the day) and finish it
with content of their choosing up to MAX_BACKUP_DAYS later, as a backup that ran long would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from chalicelib.catalog.records import backup_time, record_key
from chalicelib.retention import MAX_BACKUP_DAYS, PERIOD_RULES, resolve_time_zone
from chalicelib.times import isoformat

# Clocks differ a little: S3's time for a write and the time in an id taken just before it.
CLOCK_SLACK = timedelta(minutes=5)
# How late a scheduled event may reach the backup function: EventBridge's retries (24 hours) and then
# Lambda's maximum age of an asynchronous event (6 hours).
SCHEDULED_DELIVERY_SLACK = timedelta(hours=30)
# A scheduled run's id exactly as backup/service.py `run_scheduled` makes it: the event's time in whole
# seconds, and the suffix records.py `scheduled_suffix` derives from the event's id.
_SCHEDULED_ID = re.compile(r"\d{8}T\d{6}000Z-scheduled(-[0-9a-f]{16})?")


def start_slack(backup_id: str) -> timedelta:
    """How long after its id's time a backup's record may be first written."""
    return SCHEDULED_DELIVERY_SLACK + CLOCK_SLACK if _SCHEDULED_ID.fullmatch(backup_id) else CLOCK_SLACK


@dataclass(frozen=True)
class Start:
    """What S3 says of a late snapshot's backup: when its working record was first written (None: never),
    and which manifest version its sealed record names for the plan (None: none)."""

    recorded: datetime | None
    sealed_manifest: str | None


def day_end(moment: datetime, tz: str | tzinfo) -> datetime:
    """The end of the local day (in the plan's time zone) that `moment` falls in."""
    zone = resolve_time_zone(tz)
    local = moment.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)


def ended_before_written(backup_id: str, written: datetime, tz: str | tzinfo) -> bool:
    """Whether the snapshot's manifest was written after (or within the clocks' slack of) the end of the
    local day its id names: only then can the snapshot take an ended period's place, and only then is its
    start looked up."""
    return written > day_end(backup_time(backup_id), tz) - CLOCK_SLACK


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


def doubt(backup_id: str, manifest: tuple[str, datetime], starts: Mapping[str, Start]) -> str | None:
    """Why S3 contradicts the snapshot's id (None: it does not). `manifest`: the first version of its
    manifest and S3's time for it; `starts`: what was looked up (only for snapshots `ended_before_written`
    picks)."""
    version, written = manifest
    taken = backup_time(backup_id)
    if written < taken - CLOCK_SLACK:
        return f"its manifest was written at {isoformat(written)}, before the time its id names"
    if written > taken + timedelta(days=MAX_BACKUP_DAYS):
        return (
            f"its manifest was written at {isoformat(written)}, more than {MAX_BACKUP_DAYS} days after the "
            "time its id names"
        )
    start = starts.get(backup_id)
    if start is None:
        return None
    if start.sealed_manifest != version:
        return "its sealed record does not name this manifest (a manifest written for it by someone else)"
    if start.recorded is None:
        return "no record of its start was found"
    if start.recorded > taken + start_slack(backup_id):
        return (
            f"its backup was first recorded at {isoformat(start.recorded)}, {_hours(start.recorded - taken)} "
            "after the time its id names: a backup is recorded when it starts"
        )
    return None


def takeovers(
    kept: Mapping[str, bool], reasons: Mapping[str, list[str]], starts: Mapping[str, Start], tz: str | tzinfo
) -> list[str]:
    """Every counted snapshot kept as the newest of a day, week, month or year that had ended before its
    backup was first recorded: it took that period's place after the period was over. (A backup recorded
    within the period and finished after it is that period's by right: it was running when it ended.)
    `kept` and `reasons`: each governed snapshot's verdict."""
    zone = resolve_time_zone(tz)
    labels = {label: period_of for _, label, period_of in PERIOD_RULES}
    found: list[str] = []
    for backup_id, start in sorted(starts.items()):
        if start.recorded is None or not kept.get(backup_id):
            continue
        for reason in reasons[backup_id]:
            label, _, period = reason.partition(" ")
            period_of = labels.get(label)
            if period_of is None or period_of(start.recorded.astimezone(zone)) == period:
                continue  # not a period rule's reason, or recorded within the period
            dropped = sorted(
                other
                for other in kept
                if not kept[other] and period_of(backup_time(other).astimezone(zone)) == period
            )
            found.append(
                f"TAMPERING: snapshot {backup_id} holds {label} {period}, which had ended when its backup was "
                f"first recorded at {isoformat(start.recorded)}"
                + (f" (no longer kept of that period: {', '.join(dropped)})" if dropped else "")
                + ": expected only of a scheduled backup whose event was delivered late"
            )
    return found


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f} hours"

"""When the daily backup and the daily prune fire: once a day (`rate(1 day)`), or at a fixed time of day.

The plans file's top-level `schedule` entry decides, in the committed `chalicelib/plans.json`: app.py
registers both schedules from it when it is imported, as `chalice package` imports it, so the packaged
template holds what the file says. The stage's environment could not decide it: `chalice package` does not
see the stage's variables.

- No entry, or `{}`: the design's `rate(1 day)`, for the backup and the prune. EventBridge counts a rate
  from when its rule is created, so both fire at the time of day of the deployment that created their rules
  (the same deployment: about the same minute) and move when the rules are recreated. Nothing knows that
  time in advance: the next backup is a day after the last scheduled delivery, whose time is in the newest
  scheduled backup's id. The prune runs beside the backup; it keeps whatever a running backup may still
  name (chalicelib/prune/job.py), so it prunes the snapshots sealed before and leaves that day's alone.
- `{"daily_at_utc": "HH:MM"}`: the backup is `cron(M H * * ? *)`, at that time every day in UTC (EventBridge
  evaluates every schedule in UTC), which an operator can plan around and convert to the organisation's
  zone; the prune runs `PRUNE_AFTER` later, when a night's backup has finished.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from chalicelib.json_fields import FieldReader

# Both schedules fire once a day: the alarm and the dashboard's staleness flag allow a day and two hours.
INTERVAL = timedelta(days=1)
# With a fixed time, the prune follows the backup by this much: a night's backup has finished by then.
PRUNE_AFTER = timedelta(hours=3)
RATE = "rate(1 day)"
_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True)
class Schedule:
    """`daily_at`: the daily backup's fixed time of day in UTC; None: `rate(1 day)`."""

    daily_at: time | None = None

    @property
    def prune_at(self) -> time | None:
        """The daily prune's fixed time of day in UTC (`PRUNE_AFTER` after the backup's), or None."""
        if self.daily_at is None:
            return None
        return (datetime.combine(date(2000, 1, 1), self.daily_at) + PRUNE_AFTER).time()

    def backup_expression(self) -> str:
        """The EventBridge schedule expression of the daily backup, as the packaged template holds it."""
        return _expression(self.daily_at)

    def prune_expression(self) -> str:
        """The same for the daily prune."""
        return _expression(self.prune_at)

    def describe(self) -> str:
        """How the dashboard names the schedule."""
        if self.daily_at is None:
            return f"once a day ({RATE}), a day after the last scheduled run"
        return f"daily at {self.daily_at:%H:%M} UTC"

    def next_run(self, now: datetime, last_delivery: datetime | None) -> datetime | None:
        """The daily backup's first firing strictly after `now` (an aware datetime), in UTC.

        At a fixed time: the next time of day. With `rate(1 day)`: `last_delivery` (the newest scheduled
        backup's time) plus a day, and a day more for each one since missed (the rule keeps its time of day
        whether or not a delivery left a backup); None before the first scheduled backup: not known yet."""
        now = now.astimezone(timezone.utc)
        if self.daily_at is not None:
            today = datetime.combine(now.date(), self.daily_at, tzinfo=timezone.utc)
            return today if today > now else today + INTERVAL
        if last_delivery is None:
            return None
        last = last_delivery.astimezone(timezone.utc)
        return last + max(1, (now - last) // INTERVAL + 1) * INTERVAL

    def time_of_day(self, last_delivery: datetime | None) -> time | None:
        """The time of day (UTC) the daily backup runs at: the fixed one, or that of the last scheduled
        delivery under `rate(1 day)`; None when neither is known."""
        if self.daily_at is not None:
            return self.daily_at
        if last_delivery is None:
            return None
        return last_delivery.astimezone(timezone.utc).time().replace(second=0, microsecond=0)


def _expression(at: time | None) -> str:
    return RATE if at is None else f"cron({at.minute} {at.hour} * * ? *)"


def parse_schedule(data: Any, where: str) -> Schedule:
    """The plans file's `schedule` entry (None when it has none). `where` names it in errors, e.g.
    `plans file plans.json, field 'schedule', field 'daily_at_utc': '2:00' is not a time of day ...`."""
    if data is None:
        return Schedule()
    reader = FieldReader(data, where, {})
    value = reader.raw("daily_at_utc", None)
    reader.finish()
    if value is None:
        return Schedule()
    match = _HH_MM.match(value) if isinstance(value, str) else None
    if match is None:
        raise reader.fail(
            "daily_at_utc",
            f"{value!r} is not a time of day in UTC written HH:MM, from \"00:00\" to \"23:59\" (e.g. \"02:00\"); "
            f"leave the field out to back up once a day with {RATE}",
        )
    return Schedule(time(int(match.group(1)), int(match.group(2))))

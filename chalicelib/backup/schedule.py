"""When the daily backup fires: at a fixed time of day in UTC.

EventBridge evaluates every schedule in UTC. A rate expression (`rate(1 day)`) starts counting when its rule
is created, so it fires at whatever time of day the stack happened to be deployed, and moves when the rule is
recreated; a cron expression fires at the same UTC time every day, which an operator can plan around and
convert to the organisation's time zone (the dashboard and README do). 02:00 UTC is night in Europe and the
Americas and morning in Asia; the cost projection assumes the same hour.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

# app.py builds the schedule from these: Cron(DAILY_AT.minute, DAILY_AT.hour, "*", "*", "?", "*").
DAILY_AT = time(2, 0, tzinfo=timezone.utc)


def expression() -> str:
    """The EventBridge schedule expression of the daily backup, as the packaged template holds it."""
    return f"cron({DAILY_AT.minute} {DAILY_AT.hour} * * ? *)"


def next_daily_run(now: datetime) -> datetime:
    """The first firing of the daily schedule strictly after `now` (an aware datetime), in UTC."""
    now = now.astimezone(timezone.utc)
    today = datetime.combine(now.date(), DAILY_AT.replace(tzinfo=None), tzinfo=timezone.utc)
    return today if today > now else today + timedelta(days=1)


def last_daily_run(now: datetime) -> datetime:
    """The latest firing of the daily schedule at or before `now`, in UTC."""
    return next_daily_run(now) - timedelta(days=1)

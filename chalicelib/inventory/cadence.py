"""When a scheduled job that reads S3 Inventory reports has work to do: once per report.

A report comes once a day or once a week. A job that does its whole pass against the newest report (the
prune's sweep, the verification's check of every kept version) would find almost nothing new by running again
before the next report: it would read every index line and every report row again. So a scheduled run is due
when the newest fresh report has not been used by the last finished run (a new report came), or when the
last one started a report's period ago or more (reports that stopped coming do not stop the job). Each job
keeps in its own records which report its runs used (chalicelib/prune/cadence.py, chalicelib/verify/cadence.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.inventory.freshness import PERIOD
from chalicelib.times import parse_iso

# Schedules fire a little early or late: a run that many minutes short of a period after the last is due.
SLACK = timedelta(hours=1)


def is_due(last_started_at: str | None, last_report: str | None, newest: str | None, frequency: str, now: datetime) -> bool:
    """Whether a scheduled run is due at `now`: no earlier run used a report (`last_started_at` None or
    empty), the newest fresh report (`newest`; None: none is usable) is not the one the last run used
    (`last_report`), or the last one started a report's period ago."""
    if not last_started_at:
        return True
    if newest is not None and newest != last_report:
        return True
    return now - parse_iso(last_started_at) >= PERIOD.get(frequency, PERIOD["Daily"]) - SLACK

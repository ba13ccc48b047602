"""Instants as an operator reads them: in the organisation's time zone (`TIME_ZONE`, an IANA name), with the
zone's abbreviation, e.g. `2026-11-26 21:47 PST`.

Records and the API's JSON keep UTC ISO 8601 (`chalicelib/times.py`); only what people read (alerts, the
command line's tables, the dashboard) is shown in the zone. The abbreviation alone can be ambiguous
(Asia/Manila and America/Los_Angeles both say PST in winter), so `zone_caption` names the zone and its
offset once per page or message.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from chalicelib.errors import PlanError

UTC = ZoneInfo("UTC")
DEFAULT_ZONE = "UTC"


def parse_zone(name: str | None, variable: str = "TIME_ZONE") -> ZoneInfo:
    """The zone an IANA name such as `Asia/Manila` names; empty or None is UTC. A name that is not a zone is
    a PlanError naming `variable` (and the closest real name, where one is close)."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: an absolute or climbing path; OSError: a folder such as 'America'.
        pass
    close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise PlanError(
        f"environment variable {variable}: {name!r} is not an IANA time zone name such as UTC, Europe/Berlin or "
        f"Asia/Manila{hint}"
    )


def _instant(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        # Everything this system records is UTC; a naive time here is a bug upstream, read as UTC.
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def in_zone(moment: datetime | str, zone: ZoneInfo) -> datetime:
    """The instant as a wall-clock time in `zone`. A string is read as ISO 8601 (`...Z` included)."""
    return _instant(moment).astimezone(zone)


def format_instant(moment: datetime | str | None, zone: ZoneInfo, seconds: bool = False, empty: str = "-") -> str:
    """`2026-11-26 21:47 PST`: the instant in `zone`, with the zone's abbreviation; `empty` for None or a
    value that is not a time (a damaged record must not break a table)."""
    if moment is None or moment == "":
        return empty
    try:
        local = in_zone(moment, zone)
    except (ValueError, TypeError):
        return str(moment)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def utc_offset(moment: datetime, zone: ZoneInfo) -> str:
    """`UTC+08:00`, `UTC-05:00`, `UTC+05:45`, `UTC` for zero."""
    offset = in_zone(moment, zone).utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    sign = "+" if offset >= timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def zone_caption(zone: ZoneInfo, at: datetime) -> str:
    """`Asia/Manila (PST, UTC+08:00)`: the zone, its abbreviation and offset at `at`."""
    abbreviation = in_zone(at, zone).tzname() or ""
    offset = utc_offset(at, zone)
    if zone.key == "UTC":
        return "UTC"
    # Many zones have no letters, only a number ('+08'): the offset says it better.
    if not abbreviation or abbreviation[0] in "+-":
        return f"{zone.key} ({offset})"
    return f"{zone.key} ({abbreviation}, {offset})"


def format_age(delta: timedelta) -> str:
    """`3 min`, `5 h 12 min`, `2 d 4 h`: how long ago, to the precision an operator needs."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"

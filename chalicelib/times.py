"""Time as the system records it: aware datetimes in UTC, written as ISO 8601 with milliseconds and `Z`."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """The inverse of `isoformat` (and any ISO 8601 time with an offset). ValueError when it is not one."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))

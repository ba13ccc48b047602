"""A job's id: `20261126T134735123Z-9f2c4a1b`, the time it was made to the millisecond (UTC) and a suffix,
so that ids sort by time and a record's key is known from its id alone.

Restores use it as it is; a prune's id is `prune-<job id>` and an on-demand check's `check-<job id>`. Backup
ids have the same form, so a job id made here and a backup id read back the same way.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from chalicelib.errors import NotFound
from chalicelib.times import utcnow

_ID = re.compile(r"^(\d{8}T\d{9})Z-([a-z0-9-]{1,40})$")
EXAMPLE = "20261126T134735123Z-9f2c4a1b"


def new_job_id(moment: datetime | None = None, suffix: str | None = None) -> str:
    """The id of a job made at `moment` (now when not given), unique by its random suffix; a scheduled job
    passes a fixed `suffix` so that the same schedule time always gives the same id."""
    moment = (moment or utcnow()).astimezone(timezone.utc)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}"
    return f"{stamp}Z-{suffix or secrets.token_hex(4)}"


def _moment(value: str) -> datetime | None:
    match = _ID.match(value)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1) + "000", "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)
    except ValueError:  # digits of the right count that are no time (month 13, 30 February)
        return None


def is_job_id(value: str) -> bool:
    return _moment(value) is not None


def job_time(job_id: str, noun: str = "job") -> datetime:
    """The moment in a job id. NotFound, naming `noun`, when `job_id` is not one."""
    moment = _moment(job_id)
    if moment is None:
        raise NotFound(f"{job_id!r} is not a {noun} id (expected e.g. {EXAMPLE})")
    return moment

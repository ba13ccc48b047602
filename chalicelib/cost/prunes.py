"""Early-deletion charges of recent prunes, as the prune jobs recorded them.

A prune job writes one record per run in the catalog bucket (`chalicelib/prune/record.py`, `PruneRecord`),
`meta/prunes/<inverted time>_<prune_id>.json`, newest first in a listing like the backup records, holding
what it paid for deleting archived versions before their minimum storage duration:

    {"prune_id": ..., "status": ..., "dry_run": false, "finished_at": "2026-11-26T03:12:09.120Z",
     "plans": {"documents": {"early_deletion": {"usd": 0.0123, "versions": 40, "bytes": 123456}}}}

The cost report counts the runs that finished in the last 30 days and were not dry runs. No record at all
means no charge. A record that cannot be read is skipped and named in the report's warnings: a cost figure
must never fail because of one bad record.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import describe_error
from chalicelib.layout import PRUNES_PREFIX
from chalicelib.s3docs import time_of_inverted
from chalicelib.times import parse_iso

logger = logging.getLogger(__name__)

WINDOW_DAYS = 30
# The key holds when a prune started; one that started this long before the window may still have finished
# inside it. A prune that runs longer than this is counted from the next report on.
LONGEST_PRUNE = timedelta(days=1)
_KEY = re.compile(r"^" + re.escape(PRUNES_PREFIX) + r"(\d{13})_(.+)\.json$")


@dataclass
class EarlyDeletions:
    """What prunes paid for deleting versions early, for one plan."""

    usd: float = 0.0
    versions: int = 0
    bytes: int = 0
    prunes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "usd": round(self.usd, 8)}


@dataclass
class RecentPrunes:
    """The early-deletion charges of the prunes that finished in the window, per plan."""

    since: datetime
    plans: dict[str, EarlyDeletions] = field(default_factory=dict)
    prunes: int = 0
    warnings: list[str] = field(default_factory=list)

    def for_plan(self, name: str) -> EarlyDeletions:
        return self.plans.get(name, EarlyDeletions())


def _charge(record: dict[str, Any]) -> dict[str, EarlyDeletions]:
    """The per-plan charges of one record; ValueError naming the field when it is not what the seam says."""
    plans = record.get("plans")
    if not isinstance(plans, dict):
        raise ValueError("'plans' is not an object")
    charges = {}
    for name, result in plans.items():
        early = result.get("early_deletion") if isinstance(result, dict) else None
        if early is None:
            continue
        if not isinstance(early, dict):
            raise ValueError(f"plans.{name}.early_deletion is not an object")
        values = {}
        for field_name, kind in (("usd", (int, float)), ("versions", int), ("bytes", int)):
            value = early.get(field_name, 0)
            if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
                raise ValueError(f"plans.{name}.early_deletion.{field_name} is {value!r}, not a non-negative number")
            values[field_name] = value
        charges[name] = EarlyDeletions(float(values["usd"]), int(values["versions"]), int(values["bytes"]), 1)
    return charges


def recent_prunes(s3: Any, bucket: str, now: datetime, days: int = WINDOW_DAYS) -> RecentPrunes:
    """The charges of the prunes that finished in the `days` before `now` (dry runs left out)."""
    found = RecentPrunes(since=now - timedelta(days=days))
    oldest_start = found.since - LONGEST_PRUNE
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=PRUNES_PREFIX):
        for item in page.get("Contents", []):
            key = item["Key"]
            match = _KEY.match(key)
            if not match:
                found.warnings.append(f"prune record s3://{bucket}/{key} skipped: not named <inverted time>_<prune id>.json")
                continue
            if time_of_inverted(match.group(1)) < oldest_start:
                # Newest first: everything after this started earlier still.
                return found
            _count(s3, bucket, key, found)
    return found


def _count(s3: Any, bucket: str, key: str, found: RecentPrunes) -> None:
    try:
        record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if not isinstance(record.get("dry_run", False), bool):
            raise ValueError(f"'dry_run' is {record.get('dry_run')!r}, not true or false")
        if record.get("dry_run"):
            return
        if record.get("finished_at") is None:
            return  # still running: its charges are counted once it has recorded them
        finished = parse_iso(str(record["finished_at"]))
        if finished.tzinfo is None:
            raise ValueError(f"'finished_at' {record['finished_at']!r} has no time zone")
        if finished < found.since:
            return
        charges = _charge(record)
    except (ClientError, BotoCoreError) as exc:
        found.warnings.append(f"prune record s3://{bucket}/{key} skipped: {describe_error(exc)}")
        return
    except ValueError as exc:  # JSON errors are ValueErrors too
        found.warnings.append(f"prune record s3://{bucket}/{key} skipped: {exc}")
        return
    found.prunes += 1
    for name, charge in charges.items():
        total = found.plans.setdefault(name, EarlyDeletions())
        total.usd += charge.usd
        total.versions += charge.versions
        total.bytes += charge.bytes
        total.prunes += 1

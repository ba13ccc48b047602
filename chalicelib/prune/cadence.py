"""When the scheduled prune of a plan with S3 Inventory has work to do: once per report.

With an inventory the prune finds what no snapshot names in the newest report, and a report comes once a
day or once a week; a pass between two reports would read every index line and sort every report row again
to find almost nothing new (what the removed snapshots name waits a few days more, as S3's own noncurrent
expiry would make it wait). So the scheduled prune of a plan is due when the newest fresh report has not
been swept by an earlier finished prune of the plan, or when none has finished for longer than a report's
period (reports that stopped coming do not stop the prune). Otherwise the plan's part of the record says it
waits, since when and after which prune. POST /prune and the command line always run.

A snapshot therefore outlives its retention by at most about a report's period (a week with weekly reports).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.inventory.cadence import is_due
from chalicelib.prune.record import PruneRecord, PruneStatus, earlier_parts


@dataclass(frozen=True)
class Sweep:
    """The newest earlier prune of a plan that finished its work: which it was, when it started, and the
    report it swept (None: it read none)."""

    prune_id: str
    started_at: str
    report: str | None


def last_sweep(records: Iterable[PruneRecord], plan: str, prune_id: str) -> Sweep | None:
    """Of `records` (newest first), the newest other prune of `plan` that did its work and succeeded: not a
    dry run, not one that waited (None: none of them)."""
    for earlier, work in earlier_parts(records, plan, prune_id):
        if work.phase == "done" and work.status == PruneStatus.SUCCEEDED:
            return Sweep(earlier.prune_id, earlier.started_at or "", (work.inventory or {}).get("report"))
    return None


def waiting(last: Sweep | None, newest: str | None, frequency: str, now: datetime) -> dict[str, Any] | None:
    """Why the plan's scheduled prune waits (what its record keeps), or None when it is due: no earlier prune
    found, the newest fresh report (`newest`) not swept by the last one, or the last one a period ago."""
    # The rule every job that works once per report follows (chalicelib/inventory/cadence.py).
    if last is None or is_due(last.started_at, last.report, newest, frequency, now):
        return None
    swept = f"the newest inventory report ({newest}) was swept" if newest else "no inventory report is usable; the last sweep ran"
    return {
        "report": newest,
        "swept_by": last.prune_id,
        "swept_at": last.started_at,
        "message": f"waits for the next inventory report: {swept} by prune {last.prune_id} (started {last.started_at})",
    }

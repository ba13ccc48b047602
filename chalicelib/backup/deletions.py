"""Objects gone from a source: the mass-deletion guard, and the delete markers that record a deletion.

A deletion never destroys data: a delete marker hides the object from the next listing, while every version
stays in the bucket and older snapshots still restore it. Still, a source that suddenly lists far fewer
objects (a mistyped prefix, a bucket emptied by mistake, or someone deleting a little every day) should not
be mirrored without a human looking. The guard holds back every deletion of the plan's run when any of these
holds, and the backup says which:

- more than `max_delete_fraction` of the plan's objects vanished since the previous snapshot;
- more than that share of one source's objects vanished (a small source must not hide in a large plan);
- a source that held objects lists none at all;
- the deletions of the last `deletion_window_days` days, with this run's, pass `max_delete_fraction_window`
  of the objects there were before them (slow erosion).

An intended mass deletion is allowed for one run explicitly (`allow_deletions`), and the record and the alert
say so. Held deletions stay in the snapshot as held entries, and the next backup reconsiders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chalicelib.catalog.manifests import read_header
from chalicelib.catalog.records import PlanResult, backup_time
from chalicelib.plans import Plan

# DeleteObjects takes up to 1,000 keys a request.
DELETE_BATCH = 1000


def review(plan: Plan, sources: Mapping[str, Mapping[str, Any]], window_deleted: int) -> list[str]:
    """Why this run's deletions must be held back (empty: they may go ahead). `sources` holds each source's
    counts: `previous` (objects in the previous snapshot), `vanished` (gone since) and `objects` (listed now);
    `window_deleted` is what the plan's snapshots of the last `deletion_window_days` days deleted."""
    limit = plan.max_delete_fraction
    reasons: list[str] = []
    previous = sum(int(stats.get("previous", 0)) for stats in sources.values())
    vanished = sum(int(stats.get("vanished", 0)) for stats in sources.values())
    if not vanished:
        return reasons
    if vanished / previous > limit:
        reasons.append(
            f"{vanished} of {previous} objects ({vanished / previous:.0%}) disappeared from the plan's sources, "
            f"more than its limit of {limit:.0%}"
        )
    for name, stats in sorted(sources.items()):
        before, gone, listed = int(stats.get("previous", 0)), int(stats.get("vanished", 0)), int(stats.get("objects", 0))
        if before and not listed:
            reasons.append(f"source '{name}' lists no objects at all, where the previous snapshot held {before}")
        elif len(sources) > 1 and gone and gone / before > limit:
            reasons.append(
                f"{gone} of {before} objects ({gone / before:.0%}) disappeared from source '{name}', more than the "
                f"limit of {limit:.0%}"
            )
    window_limit = plan.max_delete_fraction_window
    base = previous + window_deleted
    if window_deleted and (window_deleted + vanished) / base > window_limit:
        reasons.append(
            f"with the {window_deleted} deletions of the last {plan.deletion_window_days} days, {window_deleted + vanished} "
            f"of {base} objects ({(window_deleted + vanished) / base:.0%}) would be gone, more than the limit of "
            f"{window_limit:.0%} for {plan.deletion_window_days} days"
        )
    return reasons


def decide(
    s3: Any, plan: Plan, result: PlanResult, pending: int, manifest_keys: list[str], backup_id: str, allow: bool
) -> bool:
    """True when the run's `pending` deletions must be held back, as `result` then says (an allowed run lets
    them go, and says what it let through)."""
    if not pending:
        return False
    reasons = review(plan, result.sources, deleted_in_window(s3, plan, manifest_keys, backup_id))
    if not reasons:
        return False
    if allow:
        result.warnings.append(
            f"{pending} deletion(s) beyond the guard's limits ALLOWED for this backup: " + "; ".join(reasons)
        )
        result.deletions_allowed = pending
        return False
    result.deletions_held_back = pending
    result.warnings.append(held_back_warning(reasons, pending))
    return True


def held_back_warning(reasons: list[str], pending: int) -> str:
    return (
        f"{pending} deletion(s) held back, nothing was deleted: " + "; ".join(reasons) + ". Check the source; the next "
        "backup reconsiders them, or allow them for one backup (allow_deletions)."
    )


def deleted_in_window(s3: Any, plan: Plan, manifest_keys: list[str], backup_id: str) -> int:
    """What the plan's snapshots taken in the `deletion_window_days` before this backup deleted, read from
    their headers (a ranged GET each, newest first, stopping at the first one older than the window)."""
    now = backup_time(backup_id)
    since = now - timedelta(days=plan.deletion_window_days)
    total = 0
    for key in reversed(manifest_keys):
        taken = backup_time(key.rsplit("/", 1)[1].split(".", 1)[0])
        if taken >= now:
            continue
        if taken < since:
            break
        total += int(read_header(s3, plan.bucket, key).get("deleted", 0))
    return total


@dataclass
class DeleteOutcome:
    deleted: int = 0
    # Data keys S3 refused a delete marker for, with the reason: kept held so the next backup retries them.
    refused: dict[str, str] = field(default_factory=dict)


def place_delete_markers(s3: Any, bucket: str, data_keys: Iterable[str]) -> DeleteOutcome:
    """A delete marker on each key (its versions stay), a thousand keys a request."""
    outcome = DeleteOutcome()
    batch: list[str] = []
    for key in data_keys:
        batch.append(key)
        if len(batch) == DELETE_BATCH:
            _delete(s3, bucket, batch, outcome)
            batch = []
    if batch:
        _delete(s3, bucket, batch, outcome)
    return outcome


def _delete(s3: Any, bucket: str, keys: list[str], outcome: DeleteOutcome) -> None:
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True})
    errors = response.get("Errors", [])
    outcome.deleted += len(keys) - len(errors)
    for error in errors:
        outcome.refused[error.get("Key", "")] = f"{error.get('Code')}: {error.get('Message')}"

"""Objects gone from a source: the mass-deletion guard, and the delete markers that record a deletion.

A deletion never destroys data: a delete marker hides the object from the next listing, while every version
stays in the bucket and older snapshots still restore it. Still, a source that suddenly lists far fewer
objects (a mistyped prefix, a bucket emptied by mistake) should not be mirrored without a human looking, so
past the plan's share the deletions are held back and the backup says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# DeleteObjects takes up to 1,000 keys a request.
DELETE_BATCH = 1000


def held_back_warning(pending: int, previous_objects: int, max_fraction: float) -> str | None:
    """The warning to record when `pending` of `previous_objects` vanished, more than the plan's share;
    None when the deletions may go ahead."""
    if not pending:
        return None
    share = pending / previous_objects
    if share <= max_fraction:
        return None
    return (
        f"{pending} of {previous_objects} objects ({share:.0%}) disappeared from the source, more than the plan's "
        f"limit of {max_fraction:.0%}: deletions held back, nothing was deleted. "
        "Check the source; the next backup reconsiders them."
    )


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

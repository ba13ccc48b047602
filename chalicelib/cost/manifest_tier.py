"""Where a kept manifest is stored, and what its storage class costs besides its bytes.

A plan whose lifecycle sets `manifest_glacier_ir_days` has a second lifecycle rule
(`deploy/bucket_settings.py` `manifest_rule`): each manifest under `meta/snapshots/<plan>/` larger than 128 KB
moves to GLACIER_IR that many days after it was written (rounded up to midnight UTC, as every rule's date:
`cost.model.lifecycle_date`). Manifests are written once, so they are current versions; nothing else under
`meta/` moves. What that adds to a manifest's storage, priced here:

- one lifecycle transition request when it moves;
- when the prune deletes it less than GLACIER_IR's 90-day minimum after it moved (the daily snapshots the
  retention drops at 35 days), the rest of the 90 days, pro rata (`cost.model.early_deletion_charge`);
- a read of it there, 0.03 USD per GB: none in a projection, since no job reads a manifest that old (the
  jobs read their kept indexes and the manifests of the last 9 days at most, which is why the plans file
  refuses fewer than 10 days; `tests/test_manifest_reads.py` records every read of a manifest by age). A
  restore of an old snapshot pays it, and its quote says how much (`restore/quote.py`).
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.cost.model import early_deletion_charge, lifecycle_date
from chalicelib.plans import MANIFEST_STORAGE_CLASS, MANIFEST_TRANSITION_MIN_BYTES, Lifecycle

__all__ = ["MANIFEST_STORAGE_CLASS", "early_deletion", "manifest_class", "move_day", "moves", "transition_charge"]
from chalicelib.prices import Prices


def moves(lifecycle: Lifecycle, size: float) -> bool:
    """Whether a manifest of `size` bytes ever leaves STANDARD under the plan's lifecycle."""
    return lifecycle.manifest_glacier_ir_days is not None and size > MANIFEST_TRANSITION_MIN_BYTES


def move_day(lifecycle: Lifecycle, written: datetime) -> int | None:
    """The day, counted in calendar days from the day it was written, from whose start a manifest written at
    `written` is in GLACIER_IR (None: the plan keeps its manifests in STANDARD)."""
    days = lifecycle.manifest_glacier_ir_days
    if days is None:
        return None
    return (lifecycle_date(written, days).date() - written.date()).days


def manifest_class(lifecycle: Lifecycle, size: float, written: datetime, now: datetime) -> str:
    """The storage class a manifest of `size` bytes written at `written` is in at `now`."""
    if not moves(lifecycle, size):
        return "STANDARD"
    assert lifecycle.manifest_glacier_ir_days is not None
    return MANIFEST_STORAGE_CLASS if now >= lifecycle_date(written, lifecycle.manifest_glacier_ir_days) else "STANDARD"


def transition_charge(prices: Prices) -> float:
    """One manifest's move to GLACIER_IR."""
    return prices.transition_per_request(MANIFEST_STORAGE_CLASS)


def early_deletion(size: float, days_in_class: float, prices: Prices) -> float:
    """What deleting a manifest of `size` bytes `days_in_class` days after it entered GLACIER_IR adds."""
    remaining = prices.minimum_days(MANIFEST_STORAGE_CLASS) - days_in_class
    return early_deletion_charge(size, MANIFEST_STORAGE_CLASS, remaining, prices)

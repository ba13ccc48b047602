"""When a pack mostly unreferenced is worth repacking: a pure function of the pack, the lifecycle and the prices.

A pack (catalog/packs.py) is deleted only once no kept snapshot names any object in it; until then its dead
bytes (objects no kept snapshot names) are billed with the live ones. Repacking copies the live objects into a
new pack and lets the old one go, which costs one GET of the old pack, one PUT of the new one, the
create-only relocation record that tells every reader where each object moved (a PUT, and its bytes kept as
long as the old pack would have been), the Lambda time to move the live bytes, and one thing easy to forget:
the new pack's lifecycle clock starts again, so its live bytes reach the next storage class as many days later
as the old pack is old.

What it saves is the dead bytes' storage until the pack's next transition, or, with none to come, for the
`horizon_days` the caller expects the pack to be kept otherwise (counted no further: after a transition the
pack is archived and never repacked). Only a STANDARD pack past the prune's grace period is considered:
an archived pack would have to be thawed (a retrieval) and deleted before its minimum storage duration (the
rest of it billed at once), which costs more than keeping its dead bytes.

Under the shipped retention and lifecycle a pack is never mostly dead in STANDARD: the daily snapshot of the
day a pack was written names every object in it, and daily snapshots are kept 35 days, while the lifecycle
moves the pack to GLACIER at 30. `tests/test_repack_rule.py` shows that and a plan where repacking pays.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.cost.model import DAYS_PER_MONTH, SMALL_OBJECT_BYTES
from chalicelib.plans import Lifecycle
from chalicelib.prices import Prices

# A relocation record's bytes for each object it moves (source, key, new offset; gzip), and the rest of it.
RELOCATION_BYTES_PER_OBJECT = 40
RELOCATION_BYTES = 512
# What the prune's function moves a second between two packs (read, hashed, written), and its memory
# (.chalice/config.json `prune_worker`): the Lambda time a repack is billed.
REPACK_BYTES_PER_SECOND = 50 * 1024**2
REPACK_SECONDS = 0.5
PRUNE_MEMORY_GB = 1.0


@dataclass(frozen=True)
class PackState:
    """One stored pack as the prune sees it: its live and dead bytes and objects, where S3 keeps it, and how
    many days ago it was written."""

    live_bytes: int
    dead_bytes: int
    live_objects: int
    storage_class: str
    age_days: float


@dataclass(frozen=True)
class RepackDecision:
    repack: bool
    reason: str
    # USD: keeping the dead bytes for `days`, against what repacking costs (both 0 when not weighed).
    keep: float = 0.0
    cost: float = 0.0
    days: float = 0.0


def next_move(lifecycle: Lifecycle, pack_bytes: int, age_days: float) -> tuple[float, str] | None:
    """The pack's next lifecycle transition after `age_days` (days after writing, class), if any: S3 moves a
    pack under 128 KB nowhere (its default minimum transition size)."""
    if pack_bytes < SMALL_OBJECT_BYTES:
        return None
    later = sorted((t.days, t.storage_class) for t in lifecycle.transitions if t.days > age_days)
    return (float(later[0][0]), later[0][1]) if later else None


def repack_cost(pack: PackState, lifecycle: Lifecycle, prices: Prices, horizon_days: float) -> float:
    """What repacking `pack` costs (USD): a GET, two PUTs (the new pack, the relocation record), the record's
    storage over the horizon, the Lambda time, and the live bytes' later transition."""
    requests = prices.get / 1000 + 2 * prices.put_copy_post_list / 1000
    record = RELOCATION_BYTES + RELOCATION_BYTES_PER_OBJECT * pack.live_objects
    record_storage = record * prices.storage_per_byte_month("STANDARD") * horizon_days / DAYS_PER_MONTH
    seconds = REPACK_SECONDS + pack.live_bytes / REPACK_BYTES_PER_SECOND
    compute = seconds * PRUNE_MEMORY_GB * prices.upkeep.lambda_gb_second
    delayed = 0.0
    move = next_move(lifecycle, pack.live_bytes + pack.dead_bytes, pack.age_days)
    if move is not None:
        # The new pack reaches the next class `age_days` later than the old one would have.
        colder = prices.storage_per_byte_month("STANDARD") - prices.storage_per_byte_month(move[1])
        delayed = pack.live_bytes * colder * min(pack.age_days, horizon_days) / DAYS_PER_MONTH
    return requests + record_storage + compute + delayed


def decide_repack(pack: PackState, lifecycle: Lifecycle, prices: Prices, grace_days: float, horizon_days: float) -> RepackDecision:
    """Whether to repack `pack` now. `horizon_days`: how much longer the pack would be kept otherwise, when
    no transition comes sooner (e.g. until the oldest kept snapshot naming it leaves the retention)."""
    if pack.storage_class != "STANDARD":
        return RepackDecision(False, f"in {pack.storage_class}: a thaw and an early deletion cost more than its dead bytes")
    if pack.age_days < grace_days:
        return RepackDecision(False, "younger than the grace period: a run may still name its objects")
    if pack.dead_bytes <= pack.live_bytes:
        return RepackDecision(False, "not mostly dead")
    move = next_move(lifecycle, pack.live_bytes + pack.dead_bytes, pack.age_days)
    days = min(horizon_days, move[0] - pack.age_days) if move is not None else horizon_days
    keep = pack.dead_bytes * prices.storage_per_byte_month("STANDARD") * days / DAYS_PER_MONTH
    cost = repack_cost(pack, lifecycle, prices, horizon_days)
    why = f"keeping its dead bytes {days:g} days costs {keep:.6f}, repacking {cost:.6f}"
    return RepackDecision(keep > cost, why, keep, cost, days)

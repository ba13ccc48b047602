"""The prune guard: once the survey has counted what a plan's prune would remove, a prune that would remove
more than the plan's `max_prune_fraction` of its governed snapshots, or of its stored bytes, stops before
anything is deleted (the prune's status says HELD), unless the request allowed it for that plan.

`judge` is a pure function of what the survey counted; `apply` writes its verdict into the plan's part of
the record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.prune.record import PlanPrune, PruneStatus


@dataclass(frozen=True)
class GuardVerdict:
    limit: float
    snapshots_share: float
    bytes_share: float
    # What the prune would go past the limit by; empty when it stays within it.
    reasons: list[str] = field(default_factory=list)
    # The request allowed this plan a prune past the limit.
    allowed: bool = False

    @property
    def stops(self) -> bool:
        return bool(self.reasons) and not self.allowed

    def to_dict(self) -> dict[str, Any]:
        """As the prune's record shows it (`held`: the guard stopped the prune)."""
        return {
            "limit": self.limit,
            "snapshots_share": round(self.snapshots_share, 4),
            "bytes_share": round(self.bytes_share, 4),
            "held": self.stops,
            "allowed": bool(self.reasons) and self.allowed,
            "reasons": list(self.reasons),
        }


def judge(work: PlanPrune, limit: float, allowed: bool) -> GuardVerdict:
    """The guard's verdict on the plan's prune as the survey counted it (`allowed`: the request allows this
    plan a large prune)."""
    governed = [s for s in work.snapshots if s.get("governed")]
    removing = len(work.removing)
    snapshot_share = removing / len(governed) if governed else 0.0
    bytes_share = work.would_delete["bytes"] / work.stored["bytes"] if work.stored["bytes"] else 0.0
    reasons = []
    if removing > 1 and snapshot_share > limit:
        reasons.append(f"it would remove {removing} of {len(governed)} snapshots ({snapshot_share:.0%})")
    if work.would_delete["versions"] > 1 and bytes_share > limit:
        reasons.append(
            f"it would delete {work.would_delete['bytes']} of {work.stored['bytes']} stored bytes ({bytes_share:.0%})"
        )
    return GuardVerdict(limit, snapshot_share, bytes_share, reasons, allowed)


def apply(verdict: GuardVerdict, work: PlanPrune, dry_run: bool) -> None:
    """Record the verdict; a real prune the guard stops is HELD, with what to do about it."""
    work.guard = verdict.to_dict()
    because = "; and ".join(verdict.reasons)
    if verdict.stops and not dry_run:
        work.status = PruneStatus.HELD
        work.warn(
            f"prune of plan {work.plan} held: {because}, more than max_prune_fraction {verdict.limit}. Nothing "
            f"was deleted. If the retention policy ({work.policy}) is right, allow it for one run: "
            f"POST /prune {{\"plans\": [\"{work.plan}\"], \"allow_large_prune\": [\"{work.plan}\"]}}"
        )
    elif verdict.stops:
        work.warn(f"a real prune of plan {work.plan} would be held: {because}")

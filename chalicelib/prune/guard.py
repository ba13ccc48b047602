"""The prune guard: once the survey has counted what a plan's prune would remove, a prune that would remove
more than the plan's `max_prune_fraction` of its governed snapshots, or of its stored bytes, stops before
anything is deleted (the prune's status says HELD), unless the request allowed it for that plan.

Shares miss long-term history: turning `keep_yearly` from 7 to 1 removes six snapshots out of eighty, yet
five years. So a prune is held too when it would remove snapshots that the plan's last finished prune kept
only by a monthly or yearly rule, unless the policy is the same and no more of them go than months (years)
have begun since that prune, which is how such a snapshot ages out of an unchanged policy.

`judge` is a pure function of what the survey counted; `apply` writes its verdict into the plan's part of
the record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStatus
from chalicelib.times import parse_iso

# The retention rules that keep long-term history (`retention.decide`'s reasons: "monthly 2026-11", "yearly 2026").
LONG_TERM_RULES = ("monthly", "yearly")


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


def _long_term_rule(reasons: list[str]) -> str | None:
    """The longest rule of a snapshot kept only by long-term rules (None: kept by another rule too, or not)."""
    rules = {reason.split(" ", 1)[0] for reason in reasons}
    if not rules or not rules <= set(LONG_TERM_RULES):
        return None
    return "yearly" if "yearly" in rules else "monthly"


def _periods_begun(rule: str, since: datetime, now: datetime) -> int:
    if rule == "yearly":
        return now.year - since.year
    return (now.year - since.year) * 12 + now.month - since.month


def long_term_losses(work: PlanPrune, previous: PruneRecord | None, now: datetime) -> list[str]:
    """Why removing these snapshots drops long-term history (empty: it does not): the plan's last finished
    prune (`previous`) kept them only by a monthly or yearly rule, and either the retention policy changed
    since, or more of them go than periods of that rule have begun since (an unchanged policy lets one go
    per new month or year, the oldest)."""
    last = previous.plans.get(work.plan) if previous else None
    if previous is None or last is None or not previous.started_at:
        return []
    kept_then = {row["backup_id"]: row.get("reasons") or [] for row in last.snapshots if row.get("kept")}
    going: dict[str, list[str]] = {}
    for backup_id in work.removing:
        rule = _long_term_rule(kept_then.get(backup_id, []))
        if rule is not None:
            going.setdefault(rule, []).append(backup_id)
    reasons = []
    changed = last.policy != work.policy
    for rule, ids in sorted(going.items()):
        allowance = 0 if changed else _periods_begun(rule, parse_iso(previous.started_at), now)
        if len(ids) > allowance:
            why = f"the retention policy changed since ({last.policy} -> {work.policy})" if changed else (
                f"more than the {allowance} a {rule} rule lets go since then")
            reasons.append(
                f"it would remove {len(ids)} snapshot(s) that prune {previous.prune_id} kept only by a {rule} rule "
                f"({', '.join(sorted(ids))}): {why}"
            )
    return reasons


def judge(
    work: PlanPrune, limit: float, allowed: bool, previous: PruneRecord | None = None, now: datetime | None = None
) -> GuardVerdict:
    """The guard's verdict on the plan's prune as the survey counted it (`allowed`: the request allows this
    plan a large prune; `previous`: the plan's last finished prune, whose kept snapshots the long-term check
    compares with, at `now`)."""
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
    if now is not None:
        reasons += long_term_losses(work, previous, now)
    return GuardVerdict(limit, snapshot_share, bytes_share, reasons, allowed)


def apply(verdict: GuardVerdict, work: PlanPrune, dry_run: bool) -> None:
    """Record the verdict; a real prune the guard stops is HELD, with what to do about it."""
    work.guard = verdict.to_dict()
    because = "; and ".join(verdict.reasons)
    if verdict.stops and not dry_run:
        work.status = PruneStatus.HELD
        work.warn(
            f"prune of plan {work.plan} held: {because} (max_prune_fraction {verdict.limit}). Nothing "
            f"was deleted. If the retention policy ({work.policy}) is right, allow it for one run: "
            f"POST /prune {{\"plans\": [\"{work.plan}\"], \"allow_large_prune\": [\"{work.plan}\"]}}"
        )
    elif verdict.stops:
        work.warn(f"a real prune of plan {work.plan} would be held: {because}")

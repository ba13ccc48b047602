"""The prune guard: once the survey has counted what a plan's prune would remove, a prune that would remove
more than the plan's `max_prune_fraction` of its governed snapshots, or of its stored bytes, stops before
anything is deleted (the prune's status says HELD), unless the request allowed it for that plan.

Shares miss a change of policy that drops long-term history: keep_yearly 7 -> 1 removes a few percent of
the snapshots and years of history. So the guard also holds a prune that would remove a snapshot which the
policy in force before (the `baseline`: the rules of the plan's last prune that was not held) keeps by a
monthly or yearly rule today. A snapshot that ages out of the same policy (the 25th month of keep_monthly 24)
is not held: the baseline drops it too. Without a baseline (a first prune, or none recorded in the prunes
looked at), a prune that would remove a snapshot older than LONG_TERM_DAYS is held. A held prune carries its
baseline on, so the check holds however many prunes are held in a row.

`judge` is a pure function of what the survey counted and the baseline; `apply` writes its verdict into the
plan's part of the record."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import tzinfo
from typing import Any

from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStatus, earlier_parts
from chalicelib.retention import RetentionPolicy, Snapshot, decide, described
from chalicelib.times import parse_iso

# Without a baseline, removing a snapshot older than this is held: only monthly and yearly rules keep one.
LONG_TERM_DAYS = 366
# The reasons of the rules that keep long-term history (retention.decide's labels).
LONG_TERM_RULES = ("monthly ", "yearly ")


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


def baseline(records: Iterable[PruneRecord], plan: str, prune_id: str) -> dict[str, int] | None:
    """Of `records` (newest first), the policy in force before this prune: the rules of the plan's newest
    other real prune that applied its policy (it ended SUCCEEDED, or FAILED after marking). Any other (held,
    failed before marking, still running or lost) carries on the baseline it was judged by. A prune recorded
    before prunes kept their rules gives the policy its record describes. None: no such prune among them."""
    for _, work in earlier_parts(records, plan, prune_id):
        applied = work.status == PruneStatus.SUCCEEDED or (work.status == PruneStatus.FAILED and work.marked)
        if not applied:
            if work.baseline is not None:
                return work.baseline
            continue
        if work.rules is not None:
            return work.rules
        before = described(work.policy)
        if before is not None:
            return policy_rules(before)
    return None


def long_term_losses(work: PlanPrune, previous: dict[str, int] | None, tz: str | tzinfo) -> list[str]:
    """Why removing these snapshots loses long-term history (empty: it does not): each one the baseline keeps
    by a monthly or yearly rule, or without a baseline each one older than LONG_TERM_DAYS."""
    governed = [row for row in work.snapshots if row.get("governed") and row.get("taken_at")]
    removing = set(work.removing)
    if previous is None:
        newest = max((parse_iso(row["taken_at"]) for row in governed), default=None)
        return [
            f"{row['backup_id']} (taken {row['taken_at'][:10]}, no earlier prune says which policy kept it)"
            for row in governed
            if row["backup_id"] in removing and newest is not None
            and (newest - parse_iso(row["taken_at"])).days > LONG_TERM_DAYS
        ]
    before = decide([Snapshot(row["backup_id"], parse_iso(row["taken_at"])) for row in governed], RetentionPolicy(**previous), tz)
    return [
        f"{verdict.snapshot.backup_id} ({', '.join(r for r in verdict.reasons if r.startswith(LONG_TERM_RULES))} "
        f"under the policy before: {RetentionPolicy(**previous).describe()})"
        for verdict in before.verdicts
        if verdict.snapshot.backup_id in removing and any(r.startswith(LONG_TERM_RULES) for r in verdict.reasons)
    ]


def judge(
    work: PlanPrune, limit: float, allowed: bool, tz: str | tzinfo = "UTC", previous: dict[str, int] | None = None
) -> GuardVerdict:
    """The guard's verdict on the plan's prune as the survey counted it (`allowed`: the request allows this
    plan a large prune; `previous`: the baseline, see `baseline`)."""
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
    losses = long_term_losses(work, previous, tz)
    if losses:
        shown = "; ".join(losses[:5]) + (f"; and {len(losses) - 5} more" if len(losses) > 5 else "")
        reasons.append(f"it would remove {len(losses)} snapshot(s) of long-term history: {shown}")
    return GuardVerdict(limit, snapshot_share, bytes_share, reasons, allowed)


def policy_rules(policy: RetentionPolicy) -> dict[str, int]:
    """A policy as a prune's record keeps it (the next prune's baseline)."""
    return asdict(policy)


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

"""The record of a prune, which is also its checkpoint: one JSON document per prune in the catalog bucket,
`meta/prunes/<inverted time>_<prune_id>.json`, newest first like backup records, kept by the job framework's
store (chalicelib/jobs/store.py: create-only, then ETag-guarded). The counts are complete; the errors and
warnings listed are capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.errors import NotFound
from chalicelib.jobs.ids import is_job_id, job_time, new_job_id
from chalicelib.jobs.store import JobKind, JobStore
from chalicelib.layout import PRUNES_PREFIX
from chalicelib.s3docs import inverted_key, known_fields

ID_PREFIX = "prune-"
# A plan's prune goes through these phases in order; a crash resumes the phase it was in.
PHASES = ("decide", "survey", "mark", "delete", "manifests", "done")
MAX_LISTED = 20


class PruneStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    # The prune guard stopped it before anything was deleted.
    HELD = "HELD"
    FAILED = "FAILED"


STATUSES = tuple(PruneStatus)


def new_prune_id(moment: Any = None, suffix: str | None = None) -> str:
    """`prune-20261129T050000000Z-9f2c4a1b`: sortable by time; a scheduled prune passes a fixed suffix."""
    return ID_PREFIX + new_job_id(moment, suffix)


def prune_time_id(prune_id: str) -> str:
    """The time-sortable id inside a prune id. NotFound when `prune_id` is not one."""
    inner = prune_id[len(ID_PREFIX):] if prune_id.startswith(ID_PREFIX) else ""
    if not is_job_id(inner):
        raise NotFound(f"{prune_id!r} is not a prune id (expected e.g. prune-20261129T050000000Z-9f2c4a1b)")
    return inner


def prune_key(prune_id: str) -> str:
    return inverted_key(PRUNES_PREFIX, job_time(prune_time_id(prune_id)), prune_id)


def _tally() -> dict[str, Any]:
    return {"versions": 0, "bytes": 0, "by_class": {}}


def add_to(tally: dict[str, Any], storage_class: str, size: int) -> None:
    tally["versions"] += 1
    tally["bytes"] += size
    row = tally["by_class"].setdefault(storage_class, {"versions": 0, "bytes": 0})
    row["versions"] += 1
    row["bytes"] += size


@dataclass
class PlanPrune:
    """One plan's part of a prune: the decision, where it stands, and what it found and did."""

    plan: str
    phase: str = "decide"
    # SUCCEEDED, HELD or FAILED; None while running.
    status: PruneStatus | None = None
    policy: str = ""
    # The rules this prune decided by, and the ones in force before it, that the guard compared them with
    # (guard.py: a held prune carries its baseline on to the next).
    rules: dict[str, int] | None = None
    baseline: dict[str, int] | None = None
    # Every snapshot of the plan, newest first: backup_id, taken_at, kept, reasons (empty when removed).
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    # The snapshots this prune removes (their backup ids), marked before anything of them is deleted, and
    # whether they are marked (until then, nothing is removed: the prune may stop, or decide again).
    removing: list[str] = field(default_factory=list)
    marked: bool = False
    # Backups of the plan seen running, and since when: their versions and their bases are kept.
    running: dict[str, str] = field(default_factory=dict)
    # What would go (found by the survey, before anything is deleted) and what went.
    would_delete: dict[str, Any] = field(default_factory=_tally)
    deleted: dict[str, Any] = field(default_factory=_tally)
    # Everything stored under data/ when the survey looked (the guard's measure of "a share of the bytes").
    stored: dict[str, Any] = field(default_factory=_tally)
    # Versions no kept snapshot names that stay this time, and why.
    kept_young: int = 0
    kept_running: int = 0
    object_locked: int = 0
    # Versions a kept snapshot names that are not in the bucket (verification reports them in detail).
    missing: int = 0
    manifests_deleted: int = 0
    # Delete markers under data/ that hid nothing kept (with the plans' inventory only): would go, and went.
    would_delete_markers: int = 0
    markers_deleted: int = 0
    # The inventory report the sweep read for versions no manifest names (the plans' `inventory`): bucket,
    # report, created, age_days, and `problem` when none could be used (those versions then wait).
    inventory: dict[str, Any] | None = None
    # The report an earlier, finished prune of the plan already looked in for versions no manifest names
    # (found by the survey): while it is still the newest, they are not looked for again.
    swept_report: str | None = None
    # A scheduled prune with the inventory between two reports did nothing for the plan: why (report,
    # swept_by, swept_at, message: chalicelib/prune/cadence.py).
    waiting: dict[str, Any] | None = None
    # What deleting archived versions before their minimum duration is billed (estimated by the cost model).
    would_early_deletion: dict[str, Any] = field(default_factory=lambda: {"usd": 0.0, "versions": 0, "bytes": 0})
    early_deletion: dict[str, Any] = field(default_factory=lambda: {"usd": 0.0, "versions": 0, "bytes": 0})
    # What the removed versions cost each month where they were (the saving), estimated from the prices.
    monthly_saving_usd: float = 0.0
    # Mostly dead STANDARD packs repacked when that pays (prune/repack.py): what the survey found worth it
    # (`packs`, the dead `bytes_freed` once their old versions go, each pack), and what the delete pass did.
    would_repack: dict[str, Any] = field(default_factory=lambda: {"packs": 0, "bytes_freed": 0, "each": []})
    repacked: dict[str, Any] = field(default_factory=lambda: {"packs": 0, "bytes_freed": 0, "each": []})
    guard: dict[str, Any] | None = None
    # The checkpoint inside the survey or the delete pass (see sweep.py); None: from the start.
    position: list[str] | None = None
    # The DeleteObjects batch being sent (deleter.py's rows: key, version id, kind, size, charge), recorded
    # before it is sent and cleared once S3's answer is counted: a prune resumed with one sends it again.
    sending: list[list[Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error_count: int = 0

    def add_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        if message not in self.warnings and len(self.warnings) < MAX_LISTED:
            self.warnings.append(message)

    @property
    def kept_count(self) -> int:
        return sum(1 for s in self.snapshots if s["kept"])

    def removed_count(self, dry_run: bool = False) -> int:
        """The snapshots this prune removed: those it marked (a prune stopped before marking removed none);
        a dry run's, those it would remove."""
        return len(self.removing) if dry_run or self.marked else 0

    def reset_counts(self) -> None:
        """Before a pass starts from the beginning (a resumed pass keeps what it counted so far)."""
        self.would_delete, self.stored = _tally(), _tally()
        self.kept_young = self.kept_running = self.object_locked = self.missing = 0
        self.would_delete_markers = 0
        self.would_early_deletion = {"usd": 0.0, "versions": 0, "bytes": 0}
        self.monthly_saving_usd = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanPrune:
        plan = cls(**known_fields(cls, data))
        plan.status = PruneStatus(plan.status) if plan.status is not None else None
        return plan


@dataclass
class PruneRecord:
    prune_id: str
    trigger: str
    plan_names: list[str]
    dry_run: bool = False
    # Plans whose prune may pass the guard in this run.
    allow_large: list[str] = field(default_factory=list)
    grace_hours: float = 48.0
    status: PruneStatus = PruneStatus.RUNNING
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    plans: dict[str, PlanPrune] = field(default_factory=dict)
    plan_index: int = 0
    invocations: int = 0

    @property
    def finished(self) -> bool:
        return self.status != PruneStatus.RUNNING

    def plan(self, name: str) -> PlanPrune:
        return self.plans.setdefault(name, PlanPrune(plan=name))

    def conclude(self, now: str) -> None:
        statuses = {self.plans[name].status for name in self.plan_names if name in self.plans}
        if PruneStatus.FAILED in statuses:
            self.status = PruneStatus.FAILED
        elif PruneStatus.HELD in statuses:
            self.status = PruneStatus.HELD
        else:
            self.status = PruneStatus.SUCCEEDED
        self.finished_at = now

    def totals(self) -> dict[str, Any]:
        plans = list(self.plans.values())
        key = "would_delete" if self.dry_run else "deleted"
        repack = "would_repack" if self.dry_run else "repacked"
        return {
            "snapshots_kept": sum(p.kept_count for p in plans),
            "snapshots_removed": sum(p.removed_count(self.dry_run) for p in plans),
            "versions_deleted": sum(p.deleted["versions"] for p in plans),
            "bytes_deleted": sum(p.deleted["bytes"] for p in plans),
            "versions": sum(p.__dict__[key]["versions"] for p in plans),
            "bytes": sum(p.__dict__[key]["bytes"] for p in plans),
            "object_locked": sum(p.object_locked for p in plans),
            "early_deletion_usd": round(sum(p.early_deletion["usd"] for p in plans), 6),
            "monthly_saving_usd": round(sum(p.monthly_saving_usd for p in plans), 6),
            # Packs repacked (a dry run: worth repacking) and the dead bytes their old versions free once they go.
            "packs_repacked": sum(p.__dict__[repack]["packs"] for p in plans),
            "repack_bytes_freed": sum(p.__dict__[repack]["bytes_freed"] for p in plans),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # each plan's part too (asdict goes into dicts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneRecord:
        plans = {name: PlanPrune.from_dict(plan) for name, plan in (data.get("plans") or {}).items()}
        record = cls(plans=plans, **known_fields(cls, data, without=("plans",)))
        record.status = PruneStatus(record.status)
        return record


def earlier_parts(records: Iterable[PruneRecord], plan: str, prune_id: str) -> Iterator[tuple[PruneRecord, PlanPrune]]:
    """Of `records` (newest first), the other real prunes that worked on `plan` (not dry runs, not ones that
    only waited for a report), each with its part for the plan."""
    for earlier in records:
        work = earlier.plans.get(plan)
        if earlier.prune_id != prune_id and not earlier.dry_run and work is not None and not work.waiting:
            yield earlier, work


class PruneStore(JobStore[PruneRecord]):
    """Prune records in the catalog bucket."""

    kind = JobKind("prune", "prune_id", PRUNES_PREFIX, prune_key, PruneRecord.from_dict)

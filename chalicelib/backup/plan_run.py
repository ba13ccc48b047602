"""One invocation's run of one plan of a backup, as the worker does it: a whole plan (plan_backup.py), or a
range of a plan split into key ranges (ranges.py). Whether a plan is split is decided here, and only here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from chalicelib.backup import ranges
from chalicelib.backup.base import Base
from chalicelib.backup.plan_backup import BATCH_SIZE, PlanBackup, ReaderFactory
from chalicelib.backup.sources import readers_on
from chalicelib.catalog.records import BackupStatus, PlanResult
from chalicelib.errors import Tampered
from chalicelib.jobs.budget import Budget
from chalicelib.plans import Plan


@dataclass(frozen=True)
class PlanOutcome:
    """What one invocation's run of a plan ended with."""

    result: PlanResult
    # The range of a split plan this invocation worked (None: the whole plan): stopped at a checkpoint, it is
    # that range a continuation carries on.
    segment: int | None = None

    @property
    def waiting(self) -> bool:
        """This range is done; the last range to finish writes the snapshot and carries the backup on."""
        return self.result.status == ranges.WAITING


@dataclass(frozen=True)
class PlanOptions:
    """How a plan run works: its copy threads, the time it has (None: no limit), and how it reads."""

    max_workers: int = 32
    dry_run: bool = False
    budget: Budget | None = None
    # Deletions beyond the guard's limits go ahead in this run: someone asked for exactly that.
    allow_deletions: bool = False
    batch_size: int = BATCH_SIZE
    # None: the readers on the run's clients (sources.readers_on).
    reader_factory: ReaderFactory | None = None
    # The run's key (catalog/run_keys.py): its manifest carries the run's proof, and a manifest found for
    # its backup is adopted only with that proof. None: a backup recorded before runs had keys.
    run_key: str | None = None


def run_plan(
    plan: Plan,
    clients: Any,
    backup_id: str,
    options: PlanOptions,
    segment: int | None = None,
    policy: ranges.SplitPolicy | None = None,
    base: Base | None = None,
    pruned: Collection[str] = (),
) -> PlanOutcome:
    """Run `plan` of the backup in this invocation: the range `segment` of a split plan; or the start of one
    (the plan is split when it is large enough and `policy` allows: the other ranges are invoked and this
    invocation works range 0); or the whole plan. `base` and `pruned` are what the plan compares with (see
    base.py); a range compares with the base its split recorded."""
    try:
        split = (
            ranges.load_split(clients.s3, plan.bucket, plan.name, backup_id, options.run_key)
            if segment is not None
            else ranges.start_split(clients.s3, plan, backup_id, policy, options.dry_run, base, pruned, options.run_key)
        )
    except Tampered as exc:
        # Told by the tampering alert when the backup ends (service.py), like any plan's finding.
        failed = PlanResult(plan=plan.name, status=BackupStatus.FAILED, errors=[f"TAMPERING: {exc}"])
        return PlanOutcome(failed, segment)
    if split is None:
        # Also a range whose split is gone: the plan finished (its checkpoints and split went with it), and
        # the whole plan's run reports the snapshot written.
        return PlanOutcome(back_up_plan(plan, clients, backup_id, options, base, pruned))
    worked = segment or 0
    result = ranges.run_range(
        plan, clients, backup_id, split, worked, options.reader_factory, max_workers=options.max_workers,
        dry_run=options.dry_run, budget=options.budget, allow_deletions=options.allow_deletions,
        batch_size=options.batch_size, run_key=options.run_key,
    )
    return PlanOutcome(result, worked)


def back_up_plan(
    plan: Plan,
    clients: Any,
    backup_id: str,
    options: PlanOptions | None = None,
    base: Base | None = None,
    pruned: Collection[str] = (),
) -> PlanResult:
    """Back up the whole plan in this invocation (it stops at a checkpoint when time runs short)."""
    options = options or PlanOptions()
    return PlanBackup(
        plan, clients.s3, backup_id, options.reader_factory or readers_on(clients), max_workers=options.max_workers,
        dry_run=options.dry_run, batch_size=options.batch_size, budget=options.budget,
        allow_deletions=options.allow_deletions, base=base, pruned=pruned, run_key=options.run_key,
    ).run()

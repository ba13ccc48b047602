"""`org-backup prune` and `org-backup snapshots`: apply retention here, or only see what it keeps and why."""

from __future__ import annotations

import sys

from chalicelib.api.prunes import describe
from chalicelib.cli.output import EXIT_ATTENTION, EXIT_OK, Context, emit, human, plan_named, table, when
from chalicelib.prune.job import PruneJob
from chalicelib.prune.record import PruneStatus, PruneRecord
from chalicelib.prune.service import PruneJobs


def _jobs(ctx: Context) -> PruneJobs:
    """The backup buckets' prunes, or (`--from offsite`) the vaults' own, with the vault account's credentials."""
    return ctx.system.vault_prunes if ctx.args.origin == "offsite" else ctx.system.prunes


def cmd_prune(ctx: Context) -> int:
    jobs = _jobs(ctx)
    record = jobs.start(ctx.args.plan, trigger="cli", dry_run=ctx.args.dry_run, allow_large=ctx.args.allow_large_prune)
    if not ctx.json:
        print(f"prune {record.prune_id}: {', '.join(record.plan_names)}{' (dry run)' if record.dry_run else ''}", file=sys.stderr)
    record = jobs.run(record.prune_id)
    emit(ctx, describe(record), lambda: prune_text(record))
    return EXIT_OK if record.status == PruneStatus.SUCCEEDED else EXIT_ATTENTION


def prune_text(record: PruneRecord) -> str:
    would = record.dry_run
    rows = []
    for name, plan in record.plans.items():
        tally = plan.would_delete if would else plan.deleted
        early = plan.would_early_deletion if would else plan.early_deletion
        rows.append([
            name, plan.status or plan.phase, str(plan.kept_count), str(plan.removed_count(record.dry_run)), str(tally["versions"]),
            human(tally["bytes"]), str(plan.object_locked), f"${early['usd']:.2f}", f"${plan.monthly_saving_usd:.2f}",
        ])
    verb = "WOULD DELETE" if would else "DELETED"
    lines = [
        f"prune {record.prune_id}{' (dry run)' if would else ''}: {record.status}",
        table(rows, ["PLAN", "STATUS", "KEPT", "REMOVED", f"{verb}", "BYTES", "LOCKED", "EARLY-DELETION", "SAVES/MONTH"]),
    ]
    for name, plan in record.plans.items():
        lines += [f"  {name}: {message}" for message in plan.warnings + plan.errors]
    return "\n".join(lines)


def cmd_snapshots(ctx: Context) -> int:
    """Every snapshot of a plan, newest first, with the rules that keep it (what a prune would decide now)."""
    plan = plan_named(ctx, ctx.args.plan)
    job = PruneJob(ctx.settings.plans, ctx.clients, time_zone=ctx.zone)
    work = job.decide(plan)
    data = {"plan": plan.name, "policy": work.policy, "snapshots": work.snapshots, "running": work.running, "warnings": work.warnings}

    def text() -> str:
        rows = [
            [s["backup_id"], when(ctx, s["taken_at"]), "kept" if s["kept"] else "REMOVE", ", ".join(s["reasons"]) or "-"]
            for s in work.snapshots
        ]
        lines = [f"plan {plan.name}: retention {work.policy}"]
        lines.append(table(rows, ["BACKUP", "TAKEN", "NEXT PRUNE", "KEPT BY"]) if rows else "no snapshots")
        lines += [f"  - {message}" for message in work.warnings]
        return "\n".join(lines)

    emit(ctx, data, text)
    return EXIT_OK

"""The commands about backups: plans, backup, backups, show, contents, verify, verify-slice."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from chalicelib.api.backups import describe, get_backup
from chalicelib.api.plans import describe_plans
from chalicelib.jobs.locks import PlanLocks
from chalicelib.backup.service import BackupService
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import BackupStatus, RecordStore, new_backup_id
from chalicelib.catalog.run_keys import new_run_key
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.deploy.offsite import replication_role_arn, restore_reader_arns
from chalicelib.deploy.vault_bucket import vault_drift
from chalicelib.cli.output import EXIT_ATTENTION, EXIT_OK, Context, emit, human, plan_named, table, when
from chalicelib.errors import BackupError, BadRequest
from chalicelib.stages import app_name
from chalicelib.notify.alerts import verification_line
from chalicelib.times import utcnow
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.verifier import Verifier
from chalicelib.verify.record import VerificationStatus


def cmd_plans(ctx: Context) -> int:
    data = describe_plans(ctx.settings.plans)

    def text() -> str:
        rows = []
        for plan in ctx.settings.plans.plans:
            sources = ", ".join(f"{s.name} ({s.type})" for s in plan.sources)
            tiers = ", ".join(f"{t.storage_class} after {t.days}d" for t in plan.lifecycle.transitions) or "-"
            rows.append([plan.name, plan.bucket, sources, tiers])
        return table(rows, ["PLAN", "BUCKET", "SOURCES", "LIFECYCLE"]) + f"\ncatalog bucket: {ctx.settings.plans.catalog_bucket}"

    emit(ctx, data, text)
    return EXIT_OK


def cmd_backup(ctx: Context) -> int:
    backups: BackupService = ctx.system.backups
    names = backups.check_plan_names(ctx.args.plan)
    now = utcnow()
    backup_id = new_backup_id(now)
    # The run's key stays in this process: only this run may write (and adopt) this backup's snapshots.
    run_key = new_run_key()
    locks = PlanLocks(ctx.clients.s3, ctx.settings.plans.catalog_bucket, backups.records)
    locked: list[str] = []
    try:
        # The same plan locks as POST /backup: never two backups (or dry runs, which read every source) of one
        # plan at once.
        locks.acquire(names, backup_id, now)
        locked = names
        backups.start(
            names, trigger="cli", dry_run=ctx.args.dry_run, backup_id=backup_id, allow_deletions=ctx.args.allow_deletions,
            run_key=run_key,
        )
    except BaseException:
        if locked:
            locks.release(locked, backup_id)
        raise
    if not ctx.json:
        print(f"backup {backup_id}: {', '.join(names)}{' (dry run)' if ctx.args.dry_run else ''}", file=sys.stderr)
    record = _run_with_plan_progress(ctx, backups, backup_id, len(names), run_key)
    data = describe(record)

    def text() -> str:
        rows = [
            [name, r.status, str(r.copied), human(r.bytes_copied), str(r.unchanged), str(r.deleted), str(r.failed), str(r.objects)]
            for name, r in record.plans.items()
        ]
        lines = [f"backup {record.backup_id}: {record.status}", table(rows, ["PLAN", "STATUS", "COPIED", "BYTES", "UNCHANGED", "DELETED", "FAILED", "OBJECTS"])]
        for name, r in record.plans.items():
            lines += [f"  {name}: {message}" for message in r.warnings + r.errors]
        return "\n".join(lines)

    emit(ctx, data, text)
    return EXIT_OK if record.status == BackupStatus.SUCCEEDED else EXIT_ATTENTION


def _run_with_plan_progress(ctx: Context, backups: Any, backup_id: str, plans: int, run_key: str) -> Any:
    """Run the backup here; the record is saved after each plan, which is what the bar follows."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["record"] = backups.run(backup_id, run_key=run_key)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    with ctx.progress(plans, "plans") as bar:
        worker.start()
        done = 0
        while worker.is_alive():
            worker.join(timeout=1.0)
            try:
                finished = sum(1 for r in backups.get(backup_id).plans.values() if r.status != BackupStatus.RUNNING)
            except BackupError:
                continue
            bar.update(finished - done)
            done = finished
    if "error" in outcome:
        raise outcome["error"]
    return outcome["record"]


def cmd_backups(ctx: Context) -> int:
    store = RecordStore(ctx.clients.s3, ctx.settings.plans.catalog_bucket)
    records = store.latest(ctx.args.limit)
    pruned = PrunedMarkers(store.s3, store.bucket).for_backups([r.backup_id for r in records])
    data = {"backups": [describe(r, pruned.get(r.backup_id)) for r in records]}

    def text() -> str:
        rows = [
            [r.backup_id, r.status, r.trigger + (" (dry run)" if r.dry_run else ""), ",".join(r.plans), str(r.totals()["objects"]),
             human(r.totals()["bytes"]), when(ctx, r.started_at), ",".join(sorted(pruned.get(r.backup_id, {}))) or "-"]
            for r in records
        ]
        header = ["BACKUP", "STATUS", "TRIGGER", "PLANS", "OBJECTS", "SIZE", "STARTED", "PRUNED"]
        return table(rows, header) if rows else "no backups"

    emit(ctx, data, text)
    return EXIT_OK


def cmd_show(ctx: Context) -> int:
    records = RecordStore(ctx.clients.s3, ctx.settings.plans.catalog_bucket)
    record = records.get(ctx.args.backup_id)
    # As GET /backups/{id} answers: with a scheduled backup's verification job.
    data = get_backup(records, ctx.args.backup_id)

    def text() -> str:
        lines = [
            f"backup {record.backup_id} ({record.trigger}{', dry run' if record.dry_run else ''}): {record.status}",
            f"started {when(ctx, record.started_at)}, finished {when(ctx, record.finished_at)}",
        ]
        for name, r in record.plans.items():
            lines.append(
                f"  {name}: {r.status}, copied {r.copied} ({human(r.bytes_copied)}), unchanged {r.unchanged}, "
                f"deleted {r.deleted}, failed {r.failed}; snapshot {r.snapshot or '-'} holds {r.objects} objects "
                f"({human(r.bytes)})"
            )
            lines += [f"    - {m}" for m in r.warnings + r.errors]
        if data.get("verification"):
            lines.append(verification_line(data["verification"]))
        return "\n".join(lines)

    emit(ctx, data, text)
    return EXIT_OK


def _log_tampering(finding: str) -> None:
    # The operator sees the error itself; the alert is the functions' to send (the operator may not publish).
    logging.getLogger(__name__).error("tampering suspected: %s", finding)


def cmd_contents(ctx: Context) -> int:
    plan = plan_named(ctx, ctx.args.plan)
    records = RecordStore(ctx.clients.s3, ctx.settings.plans.catalog_bucket)
    # The snapshot its record seals, read at that version (and refused if retention pruned it).
    with open_snapshot(ctx.clients.s3, records, plan, ctx.args.backup_id, _log_tampering, "listed") as manifest:
        entries = [e for e in manifest.entries() if ctx.args.prefix is None or e.key.startswith(ctx.args.prefix)]
        header = manifest.header
    data = {
        "backup_id": ctx.args.backup_id,
        "plan": plan.name,
        "objects": len(entries),
        "bytes": sum(e.size for e in entries),
        "created_at": header.get("created_at"),
        "entries": [
            {"source": e.source, "key": e.key, "version_id": e.version_id, "size": e.size, "checksum": e.checksum,
             "sha256": e.sha256, "item_count": e.item_count}
            for e in entries
        ],
    }

    def text() -> str:
        rows = [[e.source, e.key, str(e.size), e.version_id] for e in entries]
        shown = table(rows, ["SOURCE", "KEY", "SIZE", "VERSION"]) if rows else "(nothing)"
        return f"{shown}\n{len(entries)} objects, {human(data['bytes'])}"

    emit(ctx, data, text)
    return EXIT_OK


def cmd_verify(ctx: Context) -> int:
    percent = ctx.args.sample_percent
    if not 0 <= percent <= 100:
        raise BadRequest(f"--sample-percent must be from 0 to 100, got {percent}")
    offsite = ctx.args.origin == "offsite"
    plans, clients = (ctx.settings.plans.in_vaults(), ctx.system.vault_clients) if offsite else (ctx.settings.plans, ctx.clients)
    verifier = Verifier(plans, clients, ctx.settings.max_workers)
    total = sum(verifier.snapshot_sizes(ctx.args.backup_id, ctx.args.plan).values())
    with ctx.progress(total, "verifying") as bar:
        result = verifier.verify_backup(ctx.args.backup_id, ctx.args.plan, percent, progress=bar.update)
    if offsite:
        # The vault's own settings too: a vault without its lock holds copies anyone there can delete.
        account = ctx.settings.account
        readers = restore_reader_arns(account, app_name(ctx.project_dir), ctx.args.stage) if account else ()
        result["vault_drift"] = [
            line
            for plan in ctx.settings.plans.select(ctx.args.plan)
            if plan.offsite is not None
            for line in vault_drift(clients.s3, plan, replication_role_arn(plan, account) if account else None, readers)
        ]
        result["ok"] = result["ok"] and not result["vault_drift"]

    def text() -> str:
        lines = [
            f"backup {result['backup_id']}: {'OK' if result['ok'] else 'PROBLEMS FOUND'}: "
            f"{result['checked']} versions checked, {result['sampled']} re-read and re-hashed, "
            f"{result['missing_count']} missing, {result['damaged_count']} damaged"
        ]
        for finding in result["missing"] + result["damaged"]:
            lines.append(f"  {finding['problem'].upper()}: {finding['plan']} {finding['source']}/{finding['key']} "
                         f"(version {finding['version_id']}): {finding['detail']}")
        lines += [f"  error: {e}" for e in result["errors"]]
        lines += [f"  DRIFT: {line}" for line in result.get("vault_drift", [])]
        return "\n".join(lines)

    emit(ctx, result, text)
    return EXIT_OK if result["ok"] else EXIT_ATTENTION


def cmd_verify_slice(ctx: Context) -> int:
    """One weekday's slice of every stored snapshot, here and now: the job a scheduled backup starts, with
    its own record (and alert), run in the foreground without a time limit."""
    weekday = utcnow().weekday() if ctx.args.weekday is None else ctx.args.weekday
    if not 0 <= weekday <= 6:
        raise BadRequest(f"--weekday must be from 0 (Monday) to 6 (Sunday), got {weekday}")
    job = VerificationJob(
        ctx.settings.plans, ctx.clients, ctx.settings.topic_arn, ctx.settings.max_workers, time_zone=ctx.zone
    )
    started = job.start(new_backup_id(utcnow()), weekday=weekday, trigger="cli")
    if not ctx.json:
        print(f"verification {started.job_id}: slice {weekday} of every stored snapshot", file=sys.stderr)
    record = job.run(started.job_id)
    data = record.to_dict()

    def text() -> str:
        lines = [
            f"verification {record.job_id}: {record.status}: {record.snapshots} snapshots, {record.checked} versions "
            f"checked, {record.missing_count} missing, {record.damaged_count} damaged, {record.error_count} error(s)"
        ]
        for finding in record.missing + record.damaged:
            lines.append(f"  {finding['problem'].upper()}: {finding['plan']} {finding['source']}/{finding['key']} "
                         f"(version {finding['version_id']}): {finding['detail']}")
        lines += [f"  error: {e}" for e in record.errors]
        lines += [f"  INVENTORY: {problem}" for problem in record.inventory_problems]
        return "\n".join(lines)

    emit(ctx, data, text)
    return EXIT_OK if record.status == VerificationStatus.SUCCEEDED else EXIT_ATTENTION


# ---------------------------------------------------------------------------------------------- parsing

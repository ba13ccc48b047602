"""The commands about restores: restore (or its quote), restore-status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chalicelib.api.requests import restore_request_from_dict
from chalicelib.cli.output import EXIT_ATTENTION, EXIT_OK, Context, emit, human, table, when
from chalicelib.errors import BadRequest
from chalicelib.restore.record import summary
from chalicelib.restore.service import RestoreService
from chalicelib.catalog.restoring import RestoreStatus


def _restores(ctx: Context) -> RestoreService:
    # The operator's own credentials (for the vault, the vault account's): any bucket that is not a backup
    # bucket, any new table name.
    return ctx.system.restores_from(ctx.args.origin)


def cmd_restore(ctx: Context) -> int:
    args = ctx.args
    targets = [t for t in (args.to_bucket, args.to_table, args.to_dir) if t]
    if len(targets) != 1:
        raise BadRequest("give exactly one of --to-bucket, --to-table, --to-dir")
    target: dict[str, Any] = {}
    if args.to_bucket:
        target = {"bucket": args.to_bucket, "prefix": args.to_prefix or ""}
    elif args.to_table:
        target = {"table": args.to_table}
    else:
        target = {"path": str(Path(args.to_dir).expanduser().resolve())}
    body: dict[str, Any] = {
        "backup_id": args.backup_id,
        "plan": args.plan,
        "target": target,
        "overwrite": args.overwrite,
        "tier": args.tier,
        "dry_run": args.dry_run,
        "from": args.origin,
    }
    if args.prefix is not None:
        body["prefix"] = args.prefix
    if args.key:
        body["keys"] = args.key
    request = restore_request_from_dict(body, allow_path=True)
    restores = _restores(ctx)
    if request.dry_run:
        quote = restores.quote(request)
        emit(ctx, {"dry_run": True, "quote": quote}, lambda: _quote_text(quote))
        return EXIT_OK
    record = restores.start(request)
    with ctx.progress(record.total, "restoring") as bar:
        record = restores.run(record.restore_id, progress=bar.update)
    data = summary(record)
    emit(ctx, data, lambda: _restore_text(ctx, record))
    return EXIT_OK if record.status in (RestoreStatus.SUCCEEDED, RestoreStatus.WAITING_FOR_THAW) else EXIT_ATTENTION


def printable(key: str) -> str:
    """A key as a terminal can show it: a control character in a key (an escape sequence) is shown escaped,
    never sent to the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in key)


def _quote_text(quote: dict[str, Any]) -> str:
    lines = [
        f"restore of {quote['objects']} objects ({human(quote['bytes'])}) to {quote['target']}",
        f"{quote['need_thaw']} archived objects ({human(quote['need_thaw_bytes'])}) need a thaw first"
        + (f"; {quote['already_thawed']} already thawed" if quote["already_thawed"] else ""),
    ]
    if quote["missing_versions"]:
        lines.append(f"{quote['missing_versions']} versions are missing from the backup bucket")
    problems = quote.get("folder_problems")
    if problems and problems["objects"]:
        lines.append(
            f"{problems['objects']} objects cannot be written to the folder ({problems['collisions']} collide, "
            f"{problems['invalid_names']} have no valid file name, {problems['markers_with_content']} folder "
            "markers hold bytes): the restore reports them instead; a bucket target keeps every key exact"
        )
        lines += [f"  - {p['source']}/{printable(p['key'])}: {p['reason']}" for p in problems["listed"][:20]]
    rows = [
        [tier, f"${info['retrieval_cost_usd']:.4f}", f"{info['thaw_hours_at_most']:g} h", "; ".join(info["notes"])]
        for tier, info in quote["tiers"].items()
    ]
    lines.append(table(rows, ["TIER", "RETRIEVAL", "THAW AT MOST", "NOTE"]))
    lines.append(f"requests: ${quote['request_cost_usd']:.4f}")
    return "\n".join(lines)


def _restore_text(ctx: Context, record: Any) -> str:
    lines = [
        f"restore {record.restore_id} of backup {record.backup_id} ({record.plan}): {record.status}",
        f"restored {record.restored} of {record.total} ({human(record.bytes_restored)}), "
        f"waiting for thaw {record.pending_thaw}, failed {record.failed}",
    ]
    if record.expected_thaw_completion:
        lines.append(
            f"thaws expected by {when(ctx, record.expected_thaw_completion)}; the hourly check finishes the restore "
            f"(or run: org-backup restore-status {record.restore_id} --resume)"
        )
    lines += [f"  - {f['source']}/{printable(f['key'])}: {f['reason']}" for f in record.failures[:20]]
    lines += [f"  ! {w}" for w in record.warnings]
    return "\n".join(lines)


def cmd_restore_status(ctx: Context) -> int:
    restores = _restores(ctx)
    record = restores.get(ctx.args.restore_id)
    if ctx.args.resume and not record.finished:
        with ctx.progress(record.pending_thaw or record.total, "resuming") as bar:
            record = restores.run(record.restore_id, progress=bar.update)
    emit(ctx, summary(record), lambda: _restore_text(ctx, record))
    return EXIT_ATTENTION if record.status in (RestoreStatus.PARTIAL, RestoreStatus.FAILED) else EXIT_OK

"""`org-backup`: the operator's command line. It works on AWS directly with the operator's credentials
(not through the API), using a stage's settings from `.chalice/config.json`.

    org-backup plans
    org-backup backup [--plan NAME ...] [--dry-run]
    org-backup backups [--limit N]
    org-backup show BACKUP_ID
    org-backup contents BACKUP_ID --plan NAME [--prefix P]
    org-backup restore BACKUP_ID --plan NAME (--to-bucket B [--to-prefix P] | --to-table T | --to-dir D)
                       [--prefix P | --key K ...] [--overwrite] [--tier Bulk|Standard|Expedited] [--dry-run]
    org-backup restore-status RESTORE_ID [--resume]
    org-backup verify BACKUP_ID [--plan NAME ...] [--sample-percent N]

Every command takes `--stage` (default `dev`, or $ORG_BACKUP_STAGE) and `--json`. Exit status: 0 done,
1 done but something needs attention (a failed backup or restore, verification findings), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalicelib.errors import BackupError, BadRequest, Conflict, NotFound, PlanError

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_BAD_INPUT = 2


class Context:
    """What every command needs: the stage's settings, AWS clients, and how to print."""

    def __init__(self, args: argparse.Namespace) -> None:
        from chalicelib.aws import Clients
        from chalicelib.config import Settings
        from chalicelib.stages import PROJECT_DIR, stage_environment

        self.args = args
        self.json = bool(args.json)
        project_dir = Path(args.project_dir) if args.project_dir else PROJECT_DIR
        environ = {**os.environ, **stage_environment(args.stage, project_dir)}
        # The command line does the work itself, whatever the stage's worker mode says.
        environ["WORKER_MODE"] = "inline"
        self.settings = Settings.from_environ(environ)
        self.clients = Clients()

    def progress(self, total: int | None, description: str) -> Any:
        """A progress bar on stderr, shown on a terminal only (never in JSON output or in a pipe)."""
        from tqdm import tqdm

        show = self.args.progress if self.args.progress is not None else sys.stderr.isatty()
        return tqdm(total=total, desc=description, unit="obj", file=sys.stderr, disable=self.json or not show, leave=False)


def _print(ctx: Context, data: Any, text: Callable[[], str]) -> None:
    if ctx.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(text())


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    lines += ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def _bytes(count: int) -> str:
    from chalicelib.alerts import human_bytes

    return human_bytes(count)


# ---------------------------------------------------------------------------------------------- commands


def cmd_plans(ctx: Context) -> int:
    from chalicelib.api import describe_plans

    data = describe_plans(ctx.settings.plans)

    def text() -> str:
        rows = []
        for plan in ctx.settings.plans.plans:
            sources = ", ".join(f"{s.name} ({s.type})" for s in plan.sources)
            tiers = ", ".join(f"{t.storage_class} after {t.days}d" for t in plan.lifecycle.transitions) or "-"
            rows.append([plan.name, plan.bucket, sources, tiers])
        return _table(rows, ["PLAN", "BUCKET", "SOURCES", "LIFECYCLE"]) + f"\ncatalog bucket: {ctx.settings.plans.catalog_bucket}"

    _print(ctx, data, text)
    return EXIT_OK


def cmd_backup(ctx: Context) -> int:
    from chalicelib.api import describe
    from chalicelib.locks import PlanLocks
    from chalicelib.records import new_backup_id, utcnow
    from chalicelib.service import BackupService

    backups = BackupService(ctx.settings, ctx.clients)
    names = backups.check_plan_names(ctx.args.plan)
    now = utcnow()
    backup_id = new_backup_id(now)
    locks = PlanLocks(ctx.clients.s3, ctx.settings.plans.catalog_bucket, backups.records)
    locked: list[str] = []
    try:
        if not ctx.args.dry_run:
            # The same plan locks as POST /backup: never two backups of one plan at once.
            locks.acquire(names, backup_id, now)
            locked = names
        backups.start(names, trigger="cli", dry_run=ctx.args.dry_run, backup_id=backup_id)
    except BaseException:
        if locked:
            locks.release(locked, backup_id)
        raise
    if not ctx.json:
        print(f"backup {backup_id}: {', '.join(names)}{' (dry run)' if ctx.args.dry_run else ''}", file=sys.stderr)
    record = _run_with_plan_progress(ctx, backups, backup_id, len(names))
    data = describe(record)

    def text() -> str:
        rows = [
            [name, r.status, str(r.copied), _bytes(r.bytes_copied), str(r.unchanged), str(r.deleted), str(r.failed), str(r.objects)]
            for name, r in record.plans.items()
        ]
        lines = [f"backup {record.backup_id}: {record.status}", _table(rows, ["PLAN", "STATUS", "COPIED", "BYTES", "UNCHANGED", "DELETED", "FAILED", "OBJECTS"])]
        for name, r in record.plans.items():
            lines += [f"  {name}: {message}" for message in r.warnings + r.errors]
        return "\n".join(lines)

    _print(ctx, data, text)
    return EXIT_OK if record.status == "SUCCEEDED" else EXIT_ATTENTION


def _run_with_plan_progress(ctx: Context, backups: Any, backup_id: str, plans: int) -> Any:
    """Run the backup here; the record is saved after each plan, which is what the bar follows."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["record"] = backups.run(backup_id)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    with ctx.progress(plans, "plans") as bar:
        worker.start()
        done = 0
        while worker.is_alive():
            worker.join(timeout=1.0)
            try:
                finished = sum(1 for r in backups.get(backup_id).plans.values() if r.status != "RUNNING")
            except BackupError:
                continue
            bar.update(finished - done)
            done = finished
    if "error" in outcome:
        raise outcome["error"]
    return outcome["record"]


def cmd_backups(ctx: Context) -> int:
    from chalicelib.api import describe
    from chalicelib.records import RecordStore

    records = RecordStore(ctx.clients.s3, ctx.settings.plans.catalog_bucket).list(ctx.args.limit)
    data = {"backups": [describe(r) for r in records]}

    def text() -> str:
        rows = [
            [r.backup_id, r.status, r.trigger + (" (dry run)" if r.dry_run else ""), ",".join(r.plans), str(r.totals()["objects"]),
             _bytes(r.totals()["bytes"]), r.started_at or ""]
            for r in records
        ]
        return _table(rows, ["BACKUP", "STATUS", "TRIGGER", "PLANS", "OBJECTS", "SIZE", "STARTED"]) if rows else "no backups"

    _print(ctx, data, text)
    return EXIT_OK


def cmd_show(ctx: Context) -> int:
    from chalicelib.api import describe
    from chalicelib.records import RecordStore

    record = RecordStore(ctx.clients.s3, ctx.settings.plans.catalog_bucket).get(ctx.args.backup_id)
    data = describe(record)

    def text() -> str:
        lines = [
            f"backup {record.backup_id} ({record.trigger}{', dry run' if record.dry_run else ''}): {record.status}",
            f"started {record.started_at}, finished {record.finished_at}",
        ]
        for name, r in record.plans.items():
            lines.append(
                f"  {name}: {r.status}, copied {r.copied} ({_bytes(r.bytes_copied)}), unchanged {r.unchanged}, "
                f"deleted {r.deleted}, failed {r.failed}; snapshot {r.snapshot or '-'} holds {r.objects} objects "
                f"({_bytes(r.bytes)})"
            )
            lines += [f"    - {m}" for m in r.warnings + r.errors]
        if record.verification:
            from chalicelib.verify import summary_line

            lines.append(summary_line(record.verification))
        return "\n".join(lines)

    _print(ctx, data, text)
    return EXIT_OK


def cmd_contents(ctx: Context) -> int:
    from chalicelib.records import RecordStore
    from chalicelib.snapshots import load_snapshot

    plan = _plan(ctx, ctx.args.plan)
    RecordStore(ctx.clients.s3, ctx.settings.plans.catalog_bucket).get(ctx.args.backup_id)
    with load_snapshot(ctx.clients.s3, plan.bucket, plan.name, ctx.args.backup_id) as manifest:
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
        table = _table(rows, ["SOURCE", "KEY", "SIZE", "VERSION"]) if rows else "(nothing)"
        return f"{table}\n{len(entries)} objects, {_bytes(data['bytes'])}"

    _print(ctx, data, text)
    return EXIT_OK


def _plan(ctx: Context, name: str) -> Any:
    try:
        return ctx.settings.plans.get(name)
    except KeyError:
        raise BadRequest(f"unknown plan {name!r}; the known plans are {', '.join(ctx.settings.plans.names)}") from None


def _restores(ctx: Context) -> Any:
    from chalicelib.restore import RestoreService

    # The operator's own credentials: any bucket that is not a backup bucket, any new table name.
    return RestoreService(ctx.settings.plans, ctx.clients, max_workers=ctx.settings.max_workers)


def cmd_restore(ctx: Context) -> int:
    from chalicelib.restore import restore_request_from_dict, summary

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
    }
    if args.prefix is not None:
        body["prefix"] = args.prefix
    if args.key:
        body["keys"] = args.key
    request = restore_request_from_dict(body, allow_path=True)
    restores = _restores(ctx)
    if request.dry_run:
        quote = restores.quote(request)
        _print(ctx, {"dry_run": True, "quote": quote}, lambda: _quote_text(quote))
        return EXIT_OK
    record = restores.start(request)
    with ctx.progress(record.total, "restoring") as bar:
        record = restores.run(record.restore_id, progress=bar.update)
    data = summary(record)
    _print(ctx, data, lambda: _restore_text(record))
    return EXIT_OK if record.status in ("SUCCEEDED", "WAITING_FOR_THAW") else EXIT_ATTENTION


def _quote_text(quote: dict[str, Any]) -> str:
    lines = [
        f"restore of {quote['objects']} objects ({_bytes(quote['bytes'])}) to {quote['target']}",
        f"{quote['need_thaw']} archived objects ({_bytes(quote['need_thaw_bytes'])}) need a thaw first"
        + (f"; {quote['already_thawed']} already thawed" if quote["already_thawed"] else ""),
    ]
    if quote["missing_versions"]:
        lines.append(f"{quote['missing_versions']} versions are missing from the backup bucket")
    rows = [
        [tier, f"${info['retrieval_cost_usd']:.4f}", f"{info['thaw_hours_at_most']:g} h", "; ".join(info["notes"])]
        for tier, info in quote["tiers"].items()
    ]
    lines.append(_table(rows, ["TIER", "RETRIEVAL", "THAW AT MOST", "NOTE"]))
    lines.append(f"requests: ${quote['request_cost_usd']:.4f}")
    return "\n".join(lines)


def _restore_text(record: Any) -> str:
    lines = [
        f"restore {record.restore_id} of backup {record.backup_id} ({record.plan}): {record.status}",
        f"restored {record.restored} of {record.total} ({_bytes(record.bytes_restored)}), "
        f"waiting for thaw {record.pending_thaw}, failed {record.failed}",
    ]
    if record.expected_thaw_completion:
        lines.append(
            f"thaws expected by {record.expected_thaw_completion}; the hourly check finishes the restore "
            f"(or run: org-backup restore-status {record.restore_id} --resume)"
        )
    lines += [f"  - {f['source']}/{f['key']}: {f['reason']}" for f in record.failures[:20]]
    lines += [f"  ! {w}" for w in record.warnings]
    return "\n".join(lines)


def cmd_restore_status(ctx: Context) -> int:
    from chalicelib.restore import summary

    restores = _restores(ctx)
    record = restores.get(ctx.args.restore_id)
    if ctx.args.resume and not record.finished:
        with ctx.progress(record.pending_thaw or record.total, "resuming") as bar:
            record = restores.run(record.restore_id, progress=bar.update)
    _print(ctx, summary(record), lambda: _restore_text(record))
    return EXIT_ATTENTION if record.status in ("PARTIAL", "FAILED") else EXIT_OK


def cmd_verify(ctx: Context) -> int:
    from chalicelib.verify import Verifier

    percent = ctx.args.sample_percent
    if not 0 <= percent <= 100:
        raise BadRequest(f"--sample-percent must be from 0 to 100, got {percent}")
    verifier = Verifier(ctx.settings.plans, ctx.clients, ctx.settings.max_workers)
    total = sum(verifier.snapshot_sizes(ctx.args.backup_id, ctx.args.plan).values())
    with ctx.progress(total, "verifying") as bar:
        result = verifier.verify_backup(ctx.args.backup_id, ctx.args.plan, percent, progress=bar.update)

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
        return "\n".join(lines)

    _print(ctx, result, text)
    return EXIT_OK if result["ok"] else EXIT_ATTENTION


# ---------------------------------------------------------------------------------------------- parsing

COMMANDS: dict[str, Callable[[Context], int]] = {
    "plans": cmd_plans,
    "backup": cmd_backup,
    "backups": cmd_backups,
    "show": cmd_show,
    "contents": cmd_contents,
    "restore": cmd_restore,
    "restore-status": cmd_restore_status,
    "verify": cmd_verify,
}


def build_parser() -> argparse.ArgumentParser:
    # The common options are accepted before or after the command (`org-backup --json show X` or
    # `org-backup show X --json`); SUPPRESS keeps a subcommand's default from hiding the global value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stage", default=argparse.SUPPRESS, help="stage in .chalice/config.json (default: dev, or $ORG_BACKUP_STAGE)")
    common.add_argument("--project-dir", default=argparse.SUPPRESS, help="folder holding .chalice/config.json")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("--progress", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help="show progress bars (default: on a terminal)")

    parser = argparse.ArgumentParser(prog="org-backup", description="Operate the org-backup system.", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("plans", parents=[common], help="show the plans")

    backup = commands.add_parser("backup", parents=[common], help="take a backup now (runs here)")
    backup.add_argument("--plan", action="append", help="a plan to back up (repeat; default: all)")
    backup.add_argument("--dry-run", action="store_true", help="say what would be copied; write nothing")

    listing = commands.add_parser("backups", parents=[common], help="list backups, newest first")
    listing.add_argument("--limit", type=int, default=20)

    show = commands.add_parser("show", parents=[common], help="show one backup")
    show.add_argument("backup_id")

    contents = commands.add_parser("contents", parents=[common], help="list what a snapshot holds")
    contents.add_argument("backup_id")
    contents.add_argument("--plan", required=True)
    contents.add_argument("--prefix")

    restore = commands.add_parser("restore", parents=[common], help="restore a snapshot (or part of it)")
    restore.add_argument("backup_id")
    restore.add_argument("--plan", required=True)
    restore.add_argument("--to-bucket", help="target bucket (never a backup bucket)")
    restore.add_argument("--to-prefix", help="key prefix in the target bucket")
    restore.add_argument("--to-table", help="new DynamoDB table for a database export")
    restore.add_argument("--to-dir", help="local folder")
    what = restore.add_mutually_exclusive_group()
    what.add_argument("--prefix", help="only keys starting with this")
    what.add_argument("--key", action="append", help="only this key (repeat)")
    restore.add_argument("--overwrite", action="store_true", help="replace objects or a table that already exist")
    restore.add_argument("--tier", choices=("Bulk", "Standard", "Expedited"), default="Bulk", help="thaw tier for archived versions")
    restore.add_argument("--dry-run", action="store_true", help="quote objects, bytes, thaws, cost and time; write nothing")

    status = commands.add_parser("restore-status", parents=[common], help="show a restore")
    status.add_argument("restore_id")
    status.add_argument("--resume", action="store_true", help="run another pass now (copies thawed versions)")

    verify = commands.add_parser("verify", parents=[common], help="verify a backup's snapshots")
    verify.add_argument("backup_id")
    verify.add_argument("--plan", action="append", help="only this plan (repeat)")
    verify.add_argument("--sample-percent", type=float, default=0, help="also re-read and re-hash this share (0-100)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    defaults = {"stage": os.environ.get("ORG_BACKUP_STAGE", "dev"), "project_dir": None, "json": False, "progress": None}
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


@contextmanager
def _quiet_logs(json_output: bool) -> Iterator[None]:
    """The library logs to stderr for Lambda; at a terminal only warnings are worth showing."""
    root = logging.getLogger("chalicelib")
    level = root.level
    root.setLevel(logging.WARNING if not json_output else logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _quiet_logs(args.json):
            ctx = Context(args)
            return COMMANDS[args.command](ctx)
    except (BadRequest, NotFound, Conflict, PlanError) as exc:
        return _fail(args, exc)
    except BackupError as exc:
        return _fail(args, exc)


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    kind = {BadRequest: "bad request", NotFound: "not found", Conflict: "conflict", PlanError: "configuration"}.get(type(exc), "error")
    if args.json:
        print(json.dumps({"error": str(exc), "kind": kind}))
    print(f"org-backup: {kind}: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

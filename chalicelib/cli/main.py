"""`org-backup`: the operator's command line. It works on AWS directly with the operator's credentials
(not through the API), using a stage's settings from `.chalice/config.json`.

    org-backup plans
    org-backup backup [--plan NAME ...] [--dry-run]
    org-backup backups [--limit N]
    org-backup show BACKUP_ID
    org-backup contents BACKUP_ID --plan NAME [--prefix P]
    org-backup restore BACKUP_ID --plan NAME (--to-bucket B [--to-prefix P] | --to-table T | --to-dir D)
                       [--prefix P | --key K ...] [--overwrite] [--tier Bulk|Standard|Expedited] [--dry-run]
                       [--from backup|offsite]
    org-backup restore-status RESTORE_ID [--resume] [--from offsite]
    org-backup verify BACKUP_ID [--plan NAME ...] [--sample-percent N] [--from backup|offsite]
    org-backup verify-slice [--weekday N]
    org-backup prune [--plan NAME ...] [--dry-run] [--allow-large-prune NAME ...] [--from offsite]
    org-backup snapshots --plan NAME
    org-backup dashboard [--port P] [--port-file FILE]
    org-backup cost [--plan NAME] [--refresh]

Every command takes `--stage` (default `dev`, or $ORG_BACKUP_STAGE) and `--json`. Exit status: 0 done,
1 done but something needs attention (a failed backup or restore, verification findings), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from chalicelib.cli.backups import cmd_backup, cmd_backups, cmd_contents, cmd_plans, cmd_show, cmd_verify, cmd_verify_slice
from chalicelib.cli.dashboard import DEFAULT_PORT, cmd_dashboard
from chalicelib.cli.costs import cmd_cost
from chalicelib.cli.output import EXIT_BAD_INPUT, Context
from chalicelib.cli.prunes import cmd_prune, cmd_snapshots
from chalicelib.cli.restores import cmd_restore, cmd_restore_status
from chalicelib.errors import BackupError, BadRequest, Conflict, NotFound, PlanError
from chalicelib.restore.requests import ORIGINS

COMMANDS: dict[str, Callable[[Context], int]] = {
    "plans": cmd_plans,
    "backup": cmd_backup,
    "backups": cmd_backups,
    "show": cmd_show,
    "contents": cmd_contents,
    "restore": cmd_restore,
    "restore-status": cmd_restore_status,
    "verify": cmd_verify,
    "verify-slice": cmd_verify_slice,
    "prune": cmd_prune,
    "snapshots": cmd_snapshots,
    "dashboard": cmd_dashboard,
    "cost": cmd_cost,
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
    backup.add_argument("--allow-deletions", action="append", metavar="PLAN",
                        help="let this plan's deletions pass the mass-deletion guard in this backup (repeat)")

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
    restore.add_argument("--from", dest="origin", choices=ORIGINS, default="backup",
                         help="read the backup bucket (default) or the plan's vault (offsite: with the vault "
                         "account's credentials, OFFSITE_PROFILE or OFFSITE_ROLE_ARN)")

    status = commands.add_parser("restore-status", parents=[common], help="show a restore")
    status.add_argument("restore_id")
    status.add_argument("--resume", action="store_true", help="run another pass now (copies thawed versions)")
    status.add_argument("--from", dest="origin", choices=ORIGINS, default="backup",
                        help="a restore from the vault (offsite) is recorded there: look it up there")

    verify = commands.add_parser("verify", parents=[common], help="verify a backup's snapshots")
    verify.add_argument("backup_id")
    verify.add_argument("--plan", action="append", help="only this plan (repeat)")
    verify.add_argument("--from", dest="origin", choices=ORIGINS, default="backup",
                        help="check the backup buckets (default) or the vaults (offsite: the snapshot whole there, "
                        "and each vault's settings, with the vault account's credentials)")
    verify.add_argument("--sample-percent", type=float, default=0, help="also re-read and re-hash this share (0-100)")

    verify_slice = commands.add_parser(
        "verify-slice", parents=[common], help="verify one weekday's slice of every stored snapshot (the daily check)"
    )
    verify_slice.add_argument("--weekday", type=int, help="0 (Monday) to 6 (Sunday); default: today's, UTC")

    prune = commands.add_parser("prune", parents=[common], help="apply the retention policies now (runs here)")
    prune.add_argument("--plan", action="append", help="a plan to prune (repeat; default: all)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go and what it would save; delete nothing")
    prune.add_argument("--allow-large-prune", action="append", metavar="PLAN",
                       help="let this plan's prune pass the prune guard in this run (repeat)")
    prune.add_argument("--from", dest="origin", choices=ORIGINS, default="backup",
                       help="prune the backup buckets (default) or the vaults (offsite: the vault's own retention, "
                       "from its replicated manifests and records, with the vault account's credentials)")

    snapshots = commands.add_parser("snapshots", parents=[common], help="a plan's snapshots and the rules that keep each")
    snapshots.add_argument("--plan", required=True)

    dashboard = commands.add_parser("dashboard", parents=[common], help="serve the operator's dashboard on 127.0.0.1")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)")
    dashboard.add_argument("--port-file", type=Path, help="once listening, write the port into this file "
                           "(for scripts that start it with --port 0)")

    cost = commands.add_parser(
        "cost", parents=[common], help="what the backups cost: per storage class now, the next 12 months, the alternatives"
    )
    cost.add_argument("--plan", help="only this plan")
    cost.add_argument(
        "--refresh", action="store_true", help="compute the report again now instead of reading the newest backup's"
    )
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

"""What every command of the command line needs: the stage's settings, AWS clients, and how to print."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from chalicelib.errors import BadRequest
from chalicelib.localtime import format_instant
from chalicelib.notify.alerts import human_bytes

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
        self.project_dir = project_dir
        # The stage's own environment (the dashboard keeps its worker mode).
        self.stage_environ = {**os.environ, **stage_environment(args.stage, project_dir)}
        # The command line does the work itself, whatever the stage's worker mode says.
        self.settings = Settings.from_environ({**self.stage_environ, "WORKER_MODE": "inline"})
        # The operator's requests to the backup and restore buckets are pinned to the stage's account too.
        self.clients = Clients(bucket_owner=self.settings.bucket_owner)
        # Tables show times in the organisation's time zone (TIME_ZONE); --json keeps UTC.
        self.zone = self.settings.time_zone

    @cached_property
    def system(self) -> Any:
        """The services, built as the handlers' are (chalicelib/bootstrap.py), for the operator."""
        from chalicelib.bootstrap import System

        return System(self.settings, self.clients, operator=True)

    def progress(self, total: int | None, description: str) -> Any:
        """A progress bar on stderr, shown on a terminal only (never in JSON output or in a pipe)."""
        from tqdm import tqdm

        show = self.args.progress if self.args.progress is not None else sys.stderr.isatty()
        return tqdm(total=total, desc=description, unit="obj", file=sys.stderr, disable=self.json or not show, leave=False)


def emit(ctx: Context, data: Any, text: Callable[[], str]) -> None:
    if ctx.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(text())


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    lines += ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def human(count: int) -> str:
    return human_bytes(count)


def when(ctx: Context, moment: Any) -> str:
    """A recorded UTC time as the operator reads it: in TIME_ZONE, with the zone's abbreviation."""
    return format_instant(moment, ctx.zone)


def plan_named(ctx: Context, name: str) -> Any:
    try:
        return ctx.settings.plans.get(name)
    except KeyError:
        raise BadRequest(f"unknown plan {name!r}; the known plans are {', '.join(ctx.settings.plans.names)}") from None

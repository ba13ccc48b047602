"""`org-backup dashboard`: serve the operator's dashboard on 127.0.0.1 with the operator's credentials."""

from __future__ import annotations

import json
import sys

from chalicelib.cli.output import EXIT_OK, Context
from chalicelib.config import Settings
from chalicelib.dashboard.server import Dashboard, make, url

DEFAULT_PORT = 8001


def cmd_dashboard(ctx: Context) -> int:
    # "Back up now" runs the backup as the API would: in the worker Lambda where the stage deploys one, else
    # in a thread of this process. Never inline: the page must answer at once.
    stage_mode = ctx.stage_environ.get("WORKER_MODE", "inline")
    settings = Settings.from_environ({**ctx.stage_environ, "WORKER_MODE": "lambda" if stage_mode == "lambda" else "thread"})
    # The local stage runs on the emulator, where nothing fires the daily schedule.
    dashboard = Dashboard(settings, ctx.clients, stage=ctx.args.stage, local=ctx.args.stage == "local")
    server = make(dashboard, ctx.args.port)
    address = url(server)
    port_file = ctx.args.port_file
    if port_file is not None:
        # Written whole, then renamed: a reader never sees a partial number, nor (removed at exit) the port
        # of an earlier run.
        partial = port_file.with_name(port_file.name + ".part")
        partial.write_text(str(server.server_address[1]))
        partial.replace(port_file)
    if ctx.json:
        print(json.dumps({"dashboard": address, "stage": ctx.args.stage}), flush=True)
    else:
        print(f"dashboard of stage '{ctx.args.stage}': {address}  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
        if port_file is not None:
            port_file.unlink(missing_ok=True)
    return EXIT_OK

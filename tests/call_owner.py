"""Which function's role an AWS call of the system's own code is checked against, decided from the calling
frames (used by `record_calls.py`).

Deployed, each function runs with its own role (`chalicelib/deploy/roles.py`), so a call must be allowed by
the role of the function that makes it. In the tests the functions' code runs in one process, so the frames
say which function it is, walked from the outermost to the innermost:

1. A handler of `app.py` is its Lambda function: every route is `api_handler`; `daily_backup`,
   `backup_worker`, `verify_worker`, `resume_restores`, `restore_worker`, `daily_prune` and `prune_worker`
   are themselves.
2. A hand-off (`HAND_OFFS`: where work that a deployed function hands to another by an asynchronous invoke
   runs in-process instead, in the `inline` and `thread` worker modes or through a test's invoker) makes the
   work inside it the receiving function's: `POST /backup` run inline is the backup worker's work, not the
   API's. Within one engine (`GROUPS`: the daily backup running its backup, the hourly check running a
   restore's pass) the function stays what it was.
3. With no handler outside it, the chalicelib entry point a test drives directly decides (`ENTRY_POINTS`, then
   `PACKAGES` by the outermost system frame's module): `backup/` is the backup worker, `restore/` the restore
   worker, `api/` and the whole-backup `Verifier` the API, the weekly job the verify worker, `cli/` the
   operator.
4. The operator's command line (`cli/`) runs with the operator's own credentials: its calls, and those of
   internals a test drives with no entry point at all (a manifest reader, a record store), are checked
   against the union of every function's role, so nothing the system does goes unchecked.

A thread started by the system's code (copy pools, boto3's transfer threads, `thread` worker mode) starts as
the function that started it.
"""

from __future__ import annotations

import ast
import os
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Any

from chalicelib.deploy.scope import (
    API_HANDLER,
    BACKUP_WORKER,
    DAILY_BACKUP,
    DAILY_PRUNE,
    HEARTBEAT,
    NOTIFIER,
    PRUNE_WORKER,
    RESTORE_WORKER,
    RESUME_RESTORES,
    VERIFY_WORKER,
)

ROOT = Path(__file__).resolve().parent.parent
_APP_FILE = str(ROOT / "app.py")
_CHALICELIB = str(ROOT / "chalicelib") + os.sep
_FRAMEWORK = "jobs/"

OPERATOR = "operator"
UNATTRIBUTED = "unattributed"

GROUPS = {
    API_HANDLER: "api",
    DAILY_BACKUP: "backup",
    BACKUP_WORKER: "backup",
    RESTORE_WORKER: "restore",
    RESUME_RESTORES: "restore",
    VERIFY_WORKER: "verify",
    DAILY_PRUNE: "prune",
    PRUNE_WORKER: "prune",
    NOTIFIER: "notify",
    HEARTBEAT: "heartbeat",
}

# (module under chalicelib/, function) -> the function an asynchronous invoke of the work would start.
# (The same work may be reached through several of these, e.g. the verify worker's `run` and the job's own,
# which a test's invoker calls directly.)
HAND_OFFS = {
    ("backup/service.py", "run"): BACKUP_WORKER,
    ("backup/verification.py", "run"): VERIFY_WORKER,
    # A scheduled backup hands the verify worker its id; the worker records the job itself.
    ("backup/verification.py", "begin"): VERIFY_WORKER,
    ("backup/verification.py", "work"): VERIFY_WORKER,
    ("verify/job.py", "run"): VERIFY_WORKER,
    ("prune/service.py", "run"): PRUNE_WORKER,
    ("prune/job.py", "run"): PRUNE_WORKER,
    ("restore/service.py", "run"): RESTORE_WORKER,
    ("restore/passes.py", "run"): RESTORE_WORKER,
    # Every function hands the tampering it finds to the notifier.
    ("notify/tampering.py", "notify"): NOTIFIER,
}

# Entry points a test may call directly, as deployed only one function calls them.
ENTRY_POINTS = {
    ("backup/service.py", "run_scheduled"): DAILY_BACKUP,
    ("restore/service.py", "start"): API_HANDLER,
    ("restore/service.py", "submit"): API_HANDLER,
    ("backup/verification.py", "start_check"): API_HANDLER,
    ("prune/service.py", "scheduled"): DAILY_PRUNE,
    ("prune/service.py", "start"): API_HANDLER,
    ("restore/service.py", "quote"): API_HANDLER,
    ("restore/service.py", "resume_pending"): RESUME_RESTORES,
    # Restores are recorded by POST /restores (or the operator), never by the restore functions.
    ("restore/record.py", "create"): API_HANDLER,
}

# The outermost system frame's module, when nothing above decided (longest prefix first).
PACKAGES = (
    ("verify/verifier.py", API_HANDLER),
    ("verify/job.py", VERIFY_WORKER),
    ("prune/", PRUNE_WORKER),
    ("api/", API_HANDLER),
    # The cost report is computed for GET /costs (and at the end of the daily backup, inside its frames).
    ("cost/", API_HANDLER),
    ("cli/", OPERATOR),
    ("backup/", BACKUP_WORKER),
    ("restore/", RESTORE_WORKER),
    ("notify/metrics.py", HEARTBEAT),
    # Only a backup reads its buckets' settings.
    ("deploy/drift.py", BACKUP_WORKER),
)


@cache
def app_handlers() -> dict[str, str]:
    """app.py's handlers (Python function name -> Lambda function), read from its decorators, so that the
    plugin never imports the app."""
    tree = ast.parse(Path(_APP_FILE).read_text(encoding="utf-8"))
    handlers: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call is not None else decorator
            kind = target.attr if isinstance(target, ast.Attribute) else ""
            if kind == "route":
                handlers[node.name] = API_HANDLER
            elif kind == "schedule":
                handlers[node.name] = node.name
            elif kind == "lambda_function":
                named = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
                handlers[node.name] = named[0].value if named and isinstance(named[0], ast.Constant) else node.name
    return handlers


def _where(frame: Any) -> tuple[str, str]:
    """(module relative to chalicelib/ with '/' separators, or 'app.py'; function name).

    The job framework (`chalicelib/jobs/`) runs for one kind of job at a time: a frame of a method it defines
    counts as the module of the kind's class it runs as (`PruneJob.run` is prune/job.py's `run`, a
    `PruneStore`'s `create` prune/record.py's), so each kind is attributed as if it had its own copy."""
    filename = frame.f_code.co_filename
    if filename == _APP_FILE:
        return "app.py", frame.f_code.co_name
    module = filename[len(_CHALICELIB) :].replace(os.sep, "/")
    if module.startswith(_FRAMEWORK):
        module = _kind_module(frame.f_locals.get("self")) or module
    return module, frame.f_code.co_name


def _kind_module(obj: Any) -> str | None:
    """The module (relative to chalicelib/) that defines the class of `obj`, when it is a kind's, not the
    framework's."""
    if obj is None:
        return None
    filename = getattr(sys.modules.get(type(obj).__module__), "__file__", None) or ""
    module = filename[len(_CHALICELIB) :].replace(os.sep, "/") if filename.startswith(_CHALICELIB) else ""
    return module if module and not module.startswith(_FRAMEWORK) else None


def _package(module: str) -> str | None:
    return next((owner for prefix, owner in PACKAGES if module.startswith(prefix)), None)


def owner(frames_innermost_first: list[Any], inherited: str | None = None) -> str:
    """The function whose role the call under way is checked against (see the module's docstring).
    `frames_innermost_first`: the system's own frames on the stack; `inherited`: the thread's function."""
    current = inherited
    for frame in reversed(frames_innermost_first):
        module, name = _where(frame)
        if module == "app.py":
            if name in app_handlers():
                current = app_handlers()[name]
            continue
        if current == OPERATOR:
            continue
        receiver = HAND_OFFS.get((module, name))
        if receiver is not None:
            if current is None or GROUPS.get(current) != GROUPS[receiver]:
                current = receiver
            continue
        if current is None:
            current = ENTRY_POINTS.get((module, name)) or _package(module)
    return current or UNATTRIBUTED


def thread_owner() -> str | None:
    """The function the current thread was started by (None: not started by the system's code)."""
    return getattr(threading.current_thread(), "_started_for", None)

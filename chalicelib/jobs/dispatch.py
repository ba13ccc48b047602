"""How a recorded job gets a worker: the worker mode's Lambda function, a thread, or the caller itself; the
deployed workers' names; and when a job's worker is given up as lost."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.errors import PlanError
from chalicelib.times import parse_iso

logger = logging.getLogger(__name__)

BACKUP_WORKER = "backup_worker"
# The name of every thread that runs a job in-process (WORKER_MODE=thread): "org-backup backup <id>" and so
# on, so that a thread dump names the job, and whoever started jobs can wait for them to end.
WORKER_THREAD = "org-backup "


class Invoker(Protocol):
    def __call__(self, payload: dict[str, Any]) -> None: ...


class LambdaInvoker:
    """Runs a worker, asynchronously, with the job's payload (e.g. `{"backup_id": ...}`)."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name

    def __call__(self, payload: dict[str, Any]) -> None:
        self.lambda_client.invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps(payload).encode("utf-8"),
        )


def worker_invoker(mode: str, lambda_client: Any, function_name: str, override: Invoker | None = None) -> Invoker | None:
    """How a job is carried on by a new invocation: `override` (tests), the deployed `function_name` in the
    `lambda` worker mode, or None (in-process workers have no time limit: the job carries on where it is)."""
    if override is not None:
        return override
    if mode == "lambda":
        return LambdaInvoker(lambda_client, function_name)
    return None


def worker_beside(backup_worker: str | None, name: str) -> str:
    """The deployed function `name` sits beside the backup worker: `<app>-<stage>-<name>`."""
    if not backup_worker or not backup_worker.endswith(BACKUP_WORKER):
        raise PlanError(
            f"environment variable WORKER_FUNCTION_NAME: {backup_worker!r} must name the backup worker "
            f"(<app>-<stage>-{BACKUP_WORKER}) to find the {name} beside it"
        )
    return backup_worker[: -len(BACKUP_WORKER)] + name


def worker_lost(updated_at: str | None, now: datetime, after: timedelta) -> bool:
    """Whether an unfinished job's worker is given up as lost (a timeout or a crash): its record, which a
    working job writes at every checkpoint, has not been written for `after` (or never said when)."""
    return not updated_at or now - parse_iso(updated_at) >= after


@dataclass(frozen=True)
class Dispatcher:
    """Has a recorded job run: with an `invoker`, by a new asynchronous invocation of its worker; in the
    `thread` worker mode, by a background thread; otherwise (`inline`) at once, in the caller."""

    noun: str
    id_field: str
    run: Callable[..., object]
    invoker: Invoker | None
    mode: str
    # Inline, a backup's or restore's failure reaches the caller; a prune or verification records its own.
    inline_raises: bool = False

    def __call__(self, job_id: str, **extra: str) -> None:
        """Have the job run; `extra` goes with it (in the payload, or as keyword arguments of `run`)."""
        if self.invoker is not None:
            self.invoker({self.id_field: job_id, **extra})
        elif self.mode == "thread":
            threading.Thread(
                target=self.run_logged, args=(job_id,), kwargs=extra, name=f"{WORKER_THREAD}{self.noun} {job_id}", daemon=True
            ).start()
        elif self.inline_raises:
            self.run(job_id, **extra)
        else:
            self.run_logged(job_id, **extra)

    def run_logged(self, job_id: str, **extra: str) -> None:
        try:
            self.run(job_id, **extra)
        except Exception:  # the job records its own failures; this is only what it could not record
            logger.exception("%s %s failed in-process", self.noun, job_id)

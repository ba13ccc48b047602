"""Work longer than one Lambda invocation: the time budget, and continuing in a new invocation.

A long job (a backup, a verification, a prune) watches the invocation's remaining time. When less than the
reserve is left it stops at a checkpoint of its own and has its worker function invoked again,
asynchronously, with the same id; the next invocation carries on from the checkpoint.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from chalicelib.errors import PlanError

# Time kept in hand when a job stops: enough to finish the batch in flight and save the checkpoint.
DEFAULT_RESERVE_MS = 60_000
BACKUP_WORKER = "backup_worker"
# The name of every thread that runs a job in-process (WORKER_MODE=thread): "org-backup backup <id>" and so
# on, so that a thread dump names the job, and whoever started jobs can wait for them to end.
WORKER_THREAD = "org-backup "


class TimeBudget:
    """The invocation's remaining time (a Lambda context), and when to stop."""

    def __init__(self, context: Any, reserve_ms: int = DEFAULT_RESERVE_MS) -> None:
        self.context = context
        self.reserve_ms = reserve_ms

    def remaining_ms(self) -> float:
        return float(self.context.get_remaining_time_in_millis())

    def running_out(self) -> bool:
        return self.remaining_ms() < self.reserve_ms


def budget_for(context: Any, reserve_ms: int = DEFAULT_RESERVE_MS) -> TimeBudget | None:
    """No context (a test, `chalice local`'s thread worker): no limit, the run never stops early."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return TimeBudget(context, reserve_ms)


class Invoker(Protocol):
    def __call__(self, payload: dict[str, Any]) -> None: ...


class LambdaInvoker:
    """Runs a worker again, asynchronously, with the job's payload (e.g. `{"backup_id": ...}`)."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name

    def __call__(self, payload: dict[str, Any]) -> None:
        self.lambda_client.invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps(payload).encode("utf-8"),
        )




def worker_beside(backup_worker: str | None, name: str) -> str:
    """The deployed function `name` sits beside the backup worker: `<app>-<stage>-<name>`."""
    if not backup_worker or not backup_worker.endswith(BACKUP_WORKER):
        raise PlanError(
            f"environment variable WORKER_FUNCTION_NAME: {backup_worker!r} must name the backup worker "
            f"(<app>-<stage>-{BACKUP_WORKER}) to find the {name} beside it"
        )
    return backup_worker[: -len(BACKUP_WORKER)] + name

"""The invocation's remaining time, and when a job must stop at a checkpoint to carry on in a new one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# Time kept in hand when a job stops: enough to finish the batch in flight and save the checkpoint.
DEFAULT_RESERVE_MS = 60_000


class Budget(Protocol):
    """What a job asks of its time budget (a `TimeBudget`, or a test's stand-in)."""

    def running_out(self) -> bool: ...


class TimeBudget:
    """The invocation's remaining time (a Lambda context), and when to stop."""

    def __init__(self, context: Any, reserve_ms: int = DEFAULT_RESERVE_MS) -> None:
        self.context = context
        self.reserve_ms = reserve_ms

    def remaining_ms(self) -> float:
        return float(self.context.get_remaining_time_in_millis())

    def running_out(self) -> bool:
        return self.remaining_ms() < self.reserve_ms

    def short_of(self, ms: int) -> Callable[[], bool]:
        """A deadline for work that is not a job's step: true once less than `ms` is left."""
        return lambda: self.remaining_ms() < ms


def budget_for(context: Any, reserve_ms: int = DEFAULT_RESERVE_MS) -> TimeBudget | None:
    """No context (a test, `chalice local`'s thread worker): no limit, the run never stops early."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    return TimeBudget(context, reserve_ms)

"""Running the system's work from several threads released at the same moment, as a schedule delivering
one event twice at once, or a manual and a scheduled backup starting together, would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Task = tuple[Callable[[], Any], Callable[[Any], Any]]


def at_once(*tasks: Task) -> list[Any]:
    """Each task is `(prepare, act)`: every thread runs its `prepare()`, waits until all have, then runs
    `act(prepared)`. Returns what each `act` returned, in the tasks' order; an error in any thread fails the
    caller with every thread's error (a thread failing to prepare releases the others, never hangs them)."""
    barrier = threading.Barrier(len(tasks))
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(index: int, prepare: Callable[[], Any], act: Callable[[Any], Any]) -> None:
        try:
            prepared = prepare()
            barrier.wait()
            results[index] = act(prepared)
        except BaseException as exc:  # reported below, with the other threads' outcomes
            barrier.abort()
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index, *task)) for index, task in enumerate(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results

"""A kind of job as the API, the command line and the schedule see it: its records, starting a recorded
job by the worker mode, and running it in this invocation.

By the worker mode: `lambda`, an asynchronous invocation of the kind's worker function beside the backup
worker (which carries itself on past its time limit); `thread`, a background thread; `inline`, at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from chalicelib.jobs.budget import Budget, budget_for
from chalicelib.jobs.dispatch import Dispatcher, Invoker, worker_beside, worker_invoker
from chalicelib.jobs.runner import Job
from chalicelib.jobs.store import JobStore, R


class JobService(Generic[R]):
    """`settings` is a `config.Settings`, `clients` an `aws.Clients`; `invoker` replaces the Lambda
    invocation (tests); `report` is told tampering found on the way. A kind names its `worker` function and
    builds its `store` and its `job`."""

    worker = ""

    def __init__(
        self, settings: Any, clients: Any, invoker: Invoker | None = None, report: Callable[[str], Any] | None = None
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.invoker = invoker
        self.report = report

    def store(self) -> JobStore[R]:
        raise NotImplementedError

    def job(self, budget: Budget | None = None) -> Job[R]:
        raise NotImplementedError

    def dispatch(self, job_id: str) -> None:
        """Have the recorded job run by the worker mode. Inline and thread runs never raise into the caller."""
        kind = self.store().kind
        Dispatcher(kind.noun, kind.id_field, self.run, self.worker_invoker(), self.settings.worker_mode)(job_id)

    def run(self, job_id: str, context: Any = None) -> R:
        """Work the job in this invocation; with a Lambda `context`, stop short of its time limit and have the
        worker invoked again (without one, e.g. in-process, the job runs to its end)."""
        return self.job(budget_for(context, self.settings.checkpoint_reserve_ms)).run(job_id)

    def job_options(self, budget: Budget | None) -> dict[str, Any]:
        """What every kind's job is built with: the stage's alert topic, the time budget, how it is carried
        on, and where tampering is told."""
        return {
            "topic_arn": self.settings.topic_arn,
            "budget": budget,
            "invoker": self.worker_invoker(),
            "report": self.report,
        }

    def worker_invoker(self) -> Invoker | None:
        """How the job is carried on in a new invocation: the test's invoker, the deployed worker, or none
        (in-process workers have no time limit)."""
        mode = self.settings.worker_mode
        function = worker_beside(self.settings.worker_function, self.worker) if mode == "lambda" else ""
        return worker_invoker(mode, self.clients.lambda_, function, self.invoker)

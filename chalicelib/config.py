"""Settings, read from the environment when a handler runs (never at import: see README, Configuration)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.errors import PlanError
from chalicelib.plans import PlanSet, load_plans

WORKER_MODES = ("inline", "thread", "lambda")


@dataclass(frozen=True)
class Settings:
    plans: PlanSet
    # SNS topic for backup alerts; None sends no alert.
    topic_arn: str | None
    # How POST /backup runs the work: "lambda" (asynchronous invoke of the worker function, deployed),
    # "thread" (a background thread, for chalice local) or "inline" (before answering, for tests).
    worker_mode: str
    worker_function: str | None
    # Copies in flight at once, per plan.
    max_workers: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        mode = env.get("WORKER_MODE", "inline")
        if mode not in WORKER_MODES:
            raise PlanError(f"environment variable WORKER_MODE: {mode!r} is not one of {', '.join(WORKER_MODES)}")
        if mode == "lambda" and not env.get("WORKER_FUNCTION_NAME"):
            raise PlanError("environment variable WORKER_FUNCTION_NAME: required when WORKER_MODE is 'lambda'")
        try:
            max_workers = int(env.get("MAX_WORKERS", "32"))
        except ValueError:
            raise PlanError(f"environment variable MAX_WORKERS: {env.get('MAX_WORKERS')!r} is not a whole number") from None
        return cls(
            plans=load_plans(env),
            topic_arn=env.get("ALERT_TOPIC_ARN") or None,
            worker_mode=mode,
            worker_function=env.get("WORKER_FUNCTION_NAME") or None,
            max_workers=max(1, max_workers),
        )

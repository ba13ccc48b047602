"""Settings, read from the environment when a handler runs (never at import: see docs/configuration.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from chalicelib.aws import BucketOwner
from chalicelib.errors import PlanError
from chalicelib.localtime import UTC, parse_zone
from chalicelib.plans import PlanSet
from chalicelib.plans_file import check_offsite_apart, load_plans
from chalicelib.prices import Prices, load_prices

WORKER_MODES = ("inline", "thread", "lambda")

# The alert topic's ARN is the one fully qualified name in a stage's configuration: its region and account
# are the stage's (the generated policies and the S3 account pinning both read them from it).
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):(\d{12}):[A-Za-z0-9_-]+$")


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
    # Time kept in hand when a long backup stops at a checkpoint to carry on in a new invocation.
    checkpoint_reserve_ms: int = 60_000
    # A plan whose previous snapshot holds this many objects or more is split into key ranges worked by
    # parallel invocations (one range per this many objects, at most `max_parallel_ranges`); 0: never.
    split_objects: int = 1_000_000
    max_parallel_ranges: int = 8
    # Buckets a restore may write to (RESTORE_BUCKETS, comma-separated), and the name every restored table
    # must start with: the functions' policy grants writes there and nowhere else.
    restore_buckets: tuple[str, ...] = ()
    restore_table_prefix: str = "restored-"
    # List prices (chalicelib/prices.json, or the file PRICES_FILE names): quotes and cost reports use them.
    # Not part of a Settings' identity (and unhashable): two stages priced alike are the same settings.
    prices: Prices | None = field(default=None, compare=False)
    # The organisation's time zone (TIME_ZONE, an IANA name): what alerts, the command line and the dashboard
    # show times in. Records and the API's JSON stay UTC.
    time_zone: ZoneInfo = UTC

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
        settings = cls(
            plans=load_plans(env),
            topic_arn=env.get("ALERT_TOPIC_ARN") or None,
            worker_mode=mode,
            worker_function=env.get("WORKER_FUNCTION_NAME") or None,
            max_workers=max(1, max_workers),
            checkpoint_reserve_ms=_reserve_ms(env),
            split_objects=_whole(env, "SPLIT_OBJECTS", 1_000_000),
            max_parallel_ranges=max(1, _whole(env, "MAX_PARALLEL_RANGES", 8)),
            restore_buckets=tuple(sorted({b.strip() for b in env.get("RESTORE_BUCKETS", "").split(",") if b.strip()})),
            restore_table_prefix=env.get("RESTORE_TABLE_PREFIX", "restored-"),
            prices=load_prices(environ=env),
            time_zone=parse_zone(env.get("TIME_ZONE")),
        )
        if settings.account is not None and settings.region is not None:
            check_offsite_apart(settings.plans, settings.account, settings.region)
        return settings

    @property
    def region(self) -> str | None:
        """The stage's region, from ALERT_TOPIC_ARN; None without a topic."""
        match = _TOPIC_ARN.match(self.topic_arn or "")
        return match.group(1) if match else None

    @property
    def account(self) -> str | None:
        """The stage's AWS account, from ALERT_TOPIC_ARN; None without a topic."""
        match = _TOPIC_ARN.match(self.topic_arn or "")
        return match.group(2) if match else None

    @property
    def bucket_owner(self) -> BucketOwner | None:
        """The account every backup and restore bucket must belong to (S3 refuses a request to a bucket of
        that name owned by anyone else); None when the account is not known (no alert topic)."""
        if self.account is None:
            return None
        buckets = {plan.bucket for plan in self.plans.plans} | set(self.restore_buckets)
        return BucketOwner(self.account, frozenset(buckets))


def _reserve_ms(env: Mapping[str, str]) -> int:
    raw = env.get("CHECKPOINT_RESERVE_SECONDS", "60")
    try:
        seconds = float(raw)
    except ValueError:
        raise PlanError(f"environment variable CHECKPOINT_RESERVE_SECONDS: {raw!r} is not a number of seconds") from None
    if not 0 < seconds < 900:
        raise PlanError(f"environment variable CHECKPOINT_RESERVE_SECONDS: {raw!r} must be between 0 and 900 seconds")
    return int(seconds * 1000)


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise PlanError(f"environment variable {name}: {raw!r} is not a whole number") from None
    if value < 0:
        raise PlanError(f"environment variable {name}: {raw!r} must not be negative")
    return value

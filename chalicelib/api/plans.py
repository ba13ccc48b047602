"""The plans API: what is configured, as `GET /plans` shows it."""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.plans import PlanSet


def describe_plans(plans: PlanSet) -> dict[str, Any]:
    return {"catalog_bucket": plans.catalog_bucket, "plans": [dataclasses.asdict(plan) for plan in plans.plans]}

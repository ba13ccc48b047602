"""The plans API: what is configured, as `GET /plans` shows it."""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.plans import PlanSet


def describe_plans(plans: PlanSet) -> dict[str, Any]:
    described = []
    for plan in plans.plans:
        data = dataclasses.asdict(plan)
        data.setdefault(
            "retention",
            {
                "noncurrent_expiration_days": plan.lifecycle.noncurrent_expiration_days,
                "object_lock": data.get("object_lock"),
            },
        )
        described.append(data)
    return {"catalog_bucket": plans.catalog_bucket, "plans": described}

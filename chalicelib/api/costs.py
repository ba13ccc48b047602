"""The costs API: what the backups cost, as `GET /costs` and `GET /costs/{plan}` show it (the report is
chalicelib/cost/reports.py's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.api.requests import query
from chalicelib.cost.reports import CostReports, plan_view
from chalicelib.errors import NotFound
from chalicelib.plans import PlanSet


def get_costs(reports: CostReports, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every plan and the total, from the newest finished backup's report."""
    query(params, ())
    return reports.latest()


def get_plan_costs(reports: CostReports, plans: PlanSet, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """One plan's part of the same report."""
    query(params, ())
    if name not in plans.names:
        raise NotFound(f"no plan named {name!r}; the plans are {', '.join(plans.names)}")
    return plan_view(reports.latest(), name)

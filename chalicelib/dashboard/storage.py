"""Storage and cost for the main page: the cost report (`GET /costs`) of the newest finished backup where
one is stored (the daily backup computes it, or the first `GET /costs`), else what the backup buckets hold
per storage class, as S3 lists it, priced at the list prices. A page view never computes a report: that
reads every version of every bucket.

The fallback lists every version under `data/` of each backup bucket (current and noncurrent, delete markers
left out) with the class S3 reports for it: the same bytes S3 bills, not a model. A listing returns 1,000
versions per request, so it is kept for `STORAGE_TTL` in the dashboard's process: storage classes change
when lifecycle rules run, once a day, and the page stays fast however many versions there are.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.cost.model import StorageTally
from chalicelib.cost.reports import cost_report as stored_cost_report
from chalicelib.layout import DATA_PREFIX
from chalicelib.plans import PlanSet
from chalicelib.prices import Prices

logger = logging.getLogger(__name__)

STORAGE_TTL = timedelta(hours=1)


def cost_report(settings: Any, clients: Any, now: datetime) -> dict[str, Any] | None:
    """The stored cost report of the newest finished backup, or None while there is none. The shape the page
    reads:

        {"prices": {"region", "read_on", "currency"},
         "total": {"monthly_usd": float, "storage": {<class>: {"versions": int, "bytes": int, "monthly_usd": float}}},
         "plans": {<plan>: {"monthly_usd": float, "storage": {<class>: {...}},
                            "projection": [{"month": "2026-12", "monthly_usd": float,
                                            "by_class": {<class>: {"bytes": int, "monthly_usd": float}}},
                                           ... 12 entries]}}}
    """
    return stored_cost_report(settings, clients, now)


@dataclass
class ClassUsage:
    versions: int = 0
    bytes: int = 0
    monthly_usd: float = 0.0


@dataclass
class StorageByClass:
    """What the backup buckets hold per storage class, per plan and in all, priced per month at list prices
    (storage only, the archived classes' per-object overhead included)."""

    listed_at: datetime
    region: str
    currency: str
    read_on: str
    plans: dict[str, dict[str, ClassUsage]] = field(default_factory=dict)
    total: dict[str, ClassUsage] = field(default_factory=dict)

    @property
    def monthly_usd(self) -> float:
        return sum(usage.monthly_usd for usage in self.total.values())

    def plan_monthly_usd(self, plan: str) -> float:
        return sum(usage.monthly_usd for usage in self.plans.get(plan, {}).values())


def _bucket_tally(s3: Any, bucket: str, prices: Prices) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
    """(versions, bytes, monthly USD) per class of the versions under data/ in `bucket`."""
    tally = StorageTally()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=DATA_PREFIX):
        for version in page.get("Versions", []):
            tally.add(version.get("StorageClass") or "STANDARD", int(version.get("Size", 0)), 1, prices)
    cost = tally.monthly_cost(prices)
    versions = {name: int(count) for name, count in tally.objects.items()}
    sizes = {name: int(size) for name, size in tally.object_bytes.items()}
    return versions, sizes, cost


def storage_by_class(s3: Any, plans: PlanSet, prices: Prices, now: datetime) -> StorageByClass:
    """List every plan's bucket once (plans sharing a bucket share its figures: each shows the bucket)."""
    found = StorageByClass(listed_at=now, region=prices.region, currency=prices.currency, read_on=str(prices.read_on))
    by_bucket: dict[str, dict[str, ClassUsage]] = {}
    for plan in plans.plans:
        if plan.bucket not in by_bucket:
            versions, sizes, cost = _bucket_tally(s3, plan.bucket, prices)
            # Overhead billed at STANDARD's price for archived versions shows under STANDARD's cost.
            classes = sorted(set(versions) | set(cost))
            by_bucket[plan.bucket] = {
                name: ClassUsage(versions.get(name, 0), sizes.get(name, 0), round(cost.get(name, 0.0), 6)) for name in classes
            }
            for name, usage in by_bucket[plan.bucket].items():
                total = found.total.setdefault(name, ClassUsage())
                total.versions += usage.versions
                total.bytes += usage.bytes
                total.monthly_usd += usage.monthly_usd
        found.plans[plan.name] = by_bucket[plan.bucket]
    return found


class StorageCache:
    """`storage_by_class`, listed at most once per `ttl` per dashboard (one listing at a time)."""

    def __init__(self, ttl: timedelta = STORAGE_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: StorageByClass | None = None

    def get(self, s3: Any, plans: PlanSet, prices: Prices, now: datetime) -> StorageByClass:
        with self._lock:
            if self._value is None or not (self._value.listed_at <= now < self._value.listed_at + self.ttl):
                self._value = storage_by_class(s3, plans, prices, now)
            return self._value

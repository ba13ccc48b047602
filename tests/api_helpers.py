"""Helpers shared by the API tests: plain versioned backup buckets, seeded backup records, S3 call counts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

JSON = {"Content-Type": "application/json"}


def make_buckets(s3: Any, plans: Any) -> None:
    """Versioned backup buckets, nothing else: the API's behaviour does not depend on bucket hardening."""
    for plan in plans.plans:
        s3.create_bucket(Bucket=plan.bucket)
        s3.put_bucket_versioning(Bucket=plan.bucket, VersioningConfiguration={"Status": "Enabled"})


def seed_record(s3: Any, bucket: str, moment: datetime, status: str = "SUCCEEDED", plans: tuple[str, ...] = ("photos",), suffix: str | None = None) -> str:
    """A finished (or running) backup record started at `moment`, as the service writes them."""
    from chalicelib.catalog.records import BackupRecord, PlanResult, RecordStore, new_backup_id
    from chalicelib.times import isoformat

    backup_id = new_backup_id(moment, suffix=suffix)
    record = BackupRecord(
        backup_id=backup_id,
        trigger="api",
        plans={name: PlanResult(plan=name, status=status) for name in plans},
        status=status,
        started_at=isoformat(moment),
        finished_at=None if status == "RUNNING" else isoformat(moment),
    )
    store = RecordStore(s3, bucket)
    store.create(record)
    if status != "RUNNING":
        store.seal(record)  # as the service seals every finished backup
    return backup_id


def all_keys(s3: Any, bucket: str) -> list[tuple[str, str]]:
    """Every version and delete marker in a bucket: to show a request wrote nothing."""
    found: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            found.append((item["Key"], item["VersionId"]))
    return sorted(found)


class S3Calls:
    """Counts the S3 operations a client makes (a botocore event hook)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **kwargs: Any) -> None:
        self.counts[model.name] += 1

    def reset(self) -> None:
        self.counts.clear()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def post(client: Any, body: Any = None, headers: dict[str, str] | None = None, path: str = "/backup") -> Any:
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    return client.http.post(path, headers={**JSON, **(headers or {})}, body=data or "")

"""Restore records: one JSON document per restore in the catalog bucket
(`meta/restores/<inverted time>_<restore_id>.json`), and the queue of restores not finished yet
(`meta/restore-queue/<restore_id>`, one empty object each: the hourly check lists only these)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


from chalicelib import conditional
from chalicelib.catalog.restoring import FINISHED, restore_record_key
from chalicelib.errors import AlreadyExists, NotFound
from chalicelib.layout import RESTORE_QUEUE_PREFIX, RESTORES_PREFIX
from chalicelib.restore.requests import DEFAULT_TIER, Target
from chalicelib.s3docs import get_json, known_fields
from chalicelib.times import isoformat, utcnow

__all__ = ["FINISHED", "RestoreRecord", "RestoreStore", "restore_record_key", "summary"]

# PREPARING: recorded by the API, not yet checked (the worker selects, checks and quotes); QUOTED: a dry
# run's quote is ready.
STATUSES = ("PREPARING", "RUNNING", "WAITING_FOR_THAW", "SUCCEEDED", "PARTIAL", "FAILED", "QUOTED")


@dataclass
class RestoreRecord:
    restore_id: str
    backup_id: str
    plan: str
    target: dict[str, Any]
    prefix: str | None = None
    keys: list[str] | None = None
    overwrite: bool = False
    tier: str = DEFAULT_TIER
    status: str = "RUNNING"
    total: int = 0
    bytes_total: int = 0
    restored: int = 0
    bytes_restored: int = 0
    pending_thaw: int = 0
    failed: int = 0
    expected_thaw_completion: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    # The first pass over the selection is done; later passes only look at `pending`.
    scanned: bool = False
    passes: int = 0
    tables_created: list[str] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A dry run answers with a quote instead of restoring.
    dry_run: bool = False
    quote: dict[str, Any] | None = None
    # Why the worker refused the request (a conflict at the target, keys not in the snapshot, ...).
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestoreRecord:
        return cls(**known_fields(cls, data))

    @property
    def target_spec(self) -> Target:
        return Target(**known_fields(Target, self.target))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class RestoreStore:
    """Restore records and the queue of unfinished restores, in the catalog bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def _put(self, record: RestoreRecord, create: bool) -> None:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": restore_record_key(record.restore_id),
            "Body": json.dumps(record.to_dict(), ensure_ascii=False).encode("utf-8"),
            "ContentType": "application/json",
        }
        if not create:
            self.s3.put_object(**params)
            return
        try:
            conditional.put_new(self.s3, **params)
        except AlreadyExists as exc:
            raise AlreadyExists(f"restore {record.restore_id} already exists") from exc

    def create(self, record: RestoreRecord) -> None:
        self._put(record, create=True)
        self.s3.put_object(Bucket=self.bucket, Key=RESTORE_QUEUE_PREFIX + record.restore_id, Body=b"")

    def save(self, record: RestoreRecord) -> None:
        record.updated_at = isoformat(utcnow())
        self._put(record, create=False)
        if record.finished:
            self.s3.delete_object(Bucket=self.bucket, Key=RESTORE_QUEUE_PREFIX + record.restore_id)

    def get(self, restore_id: str) -> RestoreRecord:
        data = get_json(self.s3, self.bucket, restore_record_key(restore_id))
        if data is None:
            raise NotFound(f"no restore with id {restore_id!r}")
        return RestoreRecord.from_dict(data)

    def list(self, limit: int = 20) -> list[RestoreRecord]:
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=RESTORES_PREFIX, MaxKeys=limit)
        records = []
        for item in response.get("Contents", []):
            body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            records.append(RestoreRecord.from_dict(json.loads(body)))
        return records

    def unfinished(self) -> list[str]:
        ids: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=RESTORE_QUEUE_PREFIX):
            ids.extend(item["Key"][len(RESTORE_QUEUE_PREFIX):] for item in page.get("Contents", []))
        return ids


def summary(record: RestoreRecord) -> dict[str, Any]:
    """A record as the API shows it (pending entries summarised, not listed version by version)."""
    data = record.to_dict()
    data.pop("pending")
    data["pending"] = [
        {"source": p["entry"]["source"], "key": p["entry"]["key"], "storage_class": p["storage_class"],
         "tier": p["tier"], "ready_by": p["ready_by"]}
        for p in record.pending[:100]
    ]
    return data

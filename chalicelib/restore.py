"""Restoring a snapshot: the exact versions its manifest names go back to a bucket, a new table or a folder.

A restore is recorded in the catalog bucket (`meta/restores/<inverted time>_<restore_id>.json`) and runs in
passes. The first pass walks the selected manifest entries: a version in a warm storage class is copied
server-side (`CopySource` with `VersionId`), an archived one (GLACIER, DEEP_ARCHIVE) gets a thaw request and is
listed as pending. Later passes, started by the hourly check, copy the pending versions once S3 has thawed
them. Every pass is idempotent: a target that already holds the same content counts as restored, and a
target that holds something else is never replaced unless the restore asked for `overwrite`.

Restores only ever write to their target: a target bucket that is one of the backup buckets is refused.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import conditional
from chalicelib.errors import AlreadyExists, BadRequest, Conflict, NotFound
from chalicelib.plans import DynamoDBSource, Plan, PlanSet
from chalicelib.records import RecordStore, backup_time, isoformat, new_backup_id, utcnow
from chalicelib.requests import parse_json_object, reject_unknown_fields
from chalicelib.snapshots import META_PREFIX, Entry, Manifest, load_snapshot
from chalicelib.sources import COPY_OBJECT_LIMIT, _copy_part_size, describe_error

logger = logging.getLogger(__name__)

RESTORES_PREFIX = META_PREFIX + "restores/"
# Restores that are not finished yet, one empty object each: the hourly check lists only these.
QUEUE_PREFIX = META_PREFIX + "restore-queue/"
STATUSES = ("RUNNING", "WAITING_FOR_THAW", "SUCCEEDED", "PARTIAL", "FAILED")
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
TIERS = ("Bulk", "Standard", "Expedited")
DEFAULT_TIER = "Bulk"
# How long S3 keeps a thawed copy readable: long enough for a few hourly checks to pick it up.
THAW_DAYS = 3
# Expedited retrievals are for Glacier Flexible Retrieval objects under 250 MB only.
EXPEDITED_MAX_BYTES = 250 * 1000**2
# A RUNNING restore not updated for this long has lost its worker (a timeout or a crash): resume it.
STALE_AFTER = timedelta(minutes=20)
# Upper bounds of S3's documented retrieval times, in hours.
THAW_HOURS = {
    ("GLACIER", "Expedited"): 5 / 60,
    ("GLACIER", "Standard"): 5.0,
    ("GLACIER", "Bulk"): 12.0,
    ("DEEP_ARCHIVE", "Standard"): 12.0,
    ("DEEP_ARCHIVE", "Bulk"): 48.0,
}
# List prices, us-east-1 (USD): retrieval per GB and per 1,000 requests.
RETRIEVAL_PRICES = {
    ("GLACIER", "Expedited"): (0.03, 10.0),
    ("GLACIER", "Standard"): (0.01, 0.05),
    ("GLACIER", "Bulk"): (0.0, 0.0),
    ("DEEP_ARCHIVE", "Standard"): (0.02, 0.10),
    ("DEEP_ARCHIVE", "Bulk"): (0.0025, 0.025),
}
# Per 1,000 requests: COPY (each restored object) and GET (reading an export or downloading to a folder).
COPY_PRICE_PER_1000 = 0.005
GET_PRICE_PER_1000 = 0.0004
_GB = 1000**3
_ID = re.compile(r"^\d{8}T\d{9}Z-[a-z0-9-]{1,40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
# DynamoDB accepts at most 25 items per BatchWriteItem request.
WRITE_BATCH = 25
MAX_FAILURES_LISTED = 100


def effective_tier(storage_class: str, tier: str, size: int) -> str:
    """The tier S3 will accept for this object: Expedited only exists for small Glacier Flexible Retrieval
    objects; anything else asked for as Expedited is thawed at Standard."""
    if tier == "Expedited" and (storage_class != "GLACIER" or size > EXPEDITED_MAX_BYTES):
        return "Standard"
    return tier


def check_key_text(value: str, name: str) -> str:
    """A key or prefix that cannot climb out of where it is put: no '..' segment, no control character."""
    if _CONTROL.search(value):
        raise BadRequest(f"{name} {value!r} contains a control character")
    if ".." in value.replace("\\", "/").split("/"):
        raise BadRequest(f"{name} {value!r} contains a '..' segment")
    if value.startswith("/"):
        raise BadRequest(f"{name} {value!r} must be relative (no leading '/')")
    return value


# ---------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Target:
    """Where restored data goes: a bucket and key prefix, a new DynamoDB table, or a local folder."""

    bucket: str | None = None
    prefix: str = ""
    table: str | None = None
    path: str | None = None

    def describe(self) -> str:
        parts = []
        if self.bucket:
            parts.append(f"s3://{self.bucket}/{self.prefix}")
        if self.table:
            parts.append(f"table {self.table}")
        if self.path:
            parts.append(f"folder {self.path}")
        return ", ".join(parts)


@dataclass(frozen=True)
class RestoreRequest:
    backup_id: str
    plan: str
    target: Target
    prefix: str | None = None
    keys: tuple[str, ...] | None = None
    overwrite: bool = False
    tier: str = DEFAULT_TIER
    dry_run: bool = False


_REQUEST_FIELDS = {"backup_id", "plan", "prefix", "keys", "target", "overwrite", "tier", "dry_run"}
_TARGET_FIELDS = {"bucket", "prefix", "table"}


def parse_restore_request(raw_body: bytes | None, allow_path: bool = False) -> RestoreRequest:
    """Validate a `POST /restores` body. `allow_path` admits a local folder target (the command line only)."""
    data = parse_json_object(raw_body)
    return restore_request_from_dict(data, allow_path=allow_path)


def restore_request_from_dict(data: dict[str, Any], allow_path: bool = False) -> RestoreRequest:
    reject_unknown_fields(data, _REQUEST_FIELDS)
    backup_id = data.get("backup_id")
    if not isinstance(backup_id, str) or not backup_id:
        raise BadRequest("'backup_id' is required, e.g. \"20261126T134735123Z-9f2c4a1b\"")
    plan = data.get("plan")
    if not isinstance(plan, str) or not plan:
        raise BadRequest("'plan' is required: the name of the plan whose snapshot to restore")
    prefix = data.get("prefix")
    keys = data.get("keys")
    if prefix is not None and keys is not None:
        raise BadRequest("give either 'prefix' or 'keys', not both")
    if prefix is not None:
        if not isinstance(prefix, str):
            raise BadRequest("'prefix' must be a string")
        check_key_text(prefix, "'prefix'")
    if keys is not None:
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise BadRequest("'keys' must be a non-empty list of object keys")
        for key in keys:
            check_key_text(key, "key")
    target = _parse_target(data.get("target"), allow_path)
    overwrite = data.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise BadRequest("'overwrite' must be true or false")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dry_run' must be true or false")
    tier = data.get("tier", DEFAULT_TIER)
    if tier not in TIERS:
        raise BadRequest(f"'tier' must be one of {', '.join(TIERS)}, got {tier!r}")
    return RestoreRequest(
        backup_id=backup_id,
        plan=plan,
        target=target,
        prefix=prefix,
        keys=tuple(keys) if keys is not None else None,
        overwrite=overwrite,
        tier=tier,
        dry_run=dry_run,
    )


def _parse_target(raw: Any, allow_path: bool) -> Target:
    allowed = _TARGET_FIELDS | ({"path"} if allow_path else set())
    example = '{"bucket": "restore-bucket", "prefix": "restored/"} or {"table": "orders-restored"}'
    if not isinstance(raw, dict) or not raw:
        raise BadRequest(f"'target' is required: an object such as {example}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise BadRequest(f"unknown target field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")
    bucket = raw.get("bucket")
    table = raw.get("table")
    path = raw.get("path")
    prefix = raw.get("prefix", "")
    if bucket is None and table is None and path is None:
        raise BadRequest(f"'target' needs a bucket or a table, e.g. {example}")
    if bucket is not None and (not isinstance(bucket, str) or not _BUCKET_NAME.match(bucket) or ".." in bucket):
        raise BadRequest(f"target bucket {bucket!r} is not a valid S3 bucket name")
    if table is not None and (not isinstance(table, str) or not _TABLE_NAME.match(table)):
        raise BadRequest(f"target table {table!r} is not a valid DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
    if not isinstance(prefix, str):
        raise BadRequest("target 'prefix' must be a string")
    check_key_text(prefix, "target prefix")
    if path is not None and (not isinstance(path, str) or not path or _CONTROL.search(path)):
        raise BadRequest(f"target path {path!r} is not a usable folder path")
    if bucket is not None and path is not None:
        raise BadRequest("target takes a bucket or a local path, not both")
    return Target(bucket=bucket, prefix=prefix, table=table, path=path)


# ---------------------------------------------------------------------------------------------- records


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestoreRecord:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def target_spec(self) -> Target:
        return Target(**{k: v for k, v in self.target.items() if k in Target.__dataclass_fields__})

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCEEDED", "PARTIAL", "FAILED")


def restore_record_key(restore_id: str) -> str:
    if not _ID.match(restore_id):
        raise NotFound(f"{restore_id!r} is not a restore id (expected e.g. 20261126T134735123Z-9f2c4a1b)")
    millis = int(backup_time(restore_id).timestamp() * 1000)
    return f"{RESTORES_PREFIX}{10**13 - millis:013d}_{restore_id}.json"


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
        self.s3.put_object(Bucket=self.bucket, Key=QUEUE_PREFIX + record.restore_id, Body=b"")

    def save(self, record: RestoreRecord) -> None:
        record.updated_at = isoformat(utcnow())
        self._put(record, create=False)
        if record.finished:
            self.s3.delete_object(Bucket=self.bucket, Key=QUEUE_PREFIX + record.restore_id)

    def get(self, restore_id: str) -> RestoreRecord:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=restore_record_key(restore_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"no restore with id {restore_id!r}") from exc
            raise
        return RestoreRecord.from_dict(json.loads(response["Body"].read()))

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
        for page in paginator.paginate(Bucket=self.bucket, Prefix=QUEUE_PREFIX):
            ids.extend(item["Key"][len(QUEUE_PREFIX):] for item in page.get("Contents", []))
        return ids


# ---------------------------------------------------------------------------------------------- selection


def select_entries(manifest: Manifest, prefix: str | None, keys: tuple[str, ...] | list[str] | None) -> Iterator[Entry]:
    """The snapshot's entries the restore asked for (held-back deletions are not part of a snapshot)."""
    wanted = set(keys) if keys is not None else None
    for entry in manifest.entries():
        if prefix is not None and not entry.key.startswith(prefix):
            continue
        if wanted is not None and entry.key not in wanted:
            continue
        yield entry


def _sources_by_name(plan: Plan) -> dict[str, Any]:
    return {source.name: source for source in plan.sources}


def target_key(plan: Plan, target: Target, entry: Entry) -> str:
    """A plan with one source restores its keys as they were; with several, each under its source's name."""
    if len(plan.sources) == 1:
        return target.prefix + entry.key
    return f"{target.prefix}{entry.source}/{entry.key}"


def target_table(plan: Plan, target: Target, entry: Entry) -> str | None:
    """The table a database export restores into (None: the export is restored as a file)."""
    if not target.table or not isinstance(_sources_by_name(plan).get(entry.source), DynamoDBSource):
        return None
    tables = [s for s in plan.sources if isinstance(s, DynamoDBSource)]
    return target.table if len(tables) == 1 else f"{target.table}-{entry.source}"


def _is_archived(head: dict[str, Any]) -> bool:
    """Archived and not readable now: no finished thaw (`Restore: ongoing-request="false", ...`)."""
    if head.get("StorageClass") not in ARCHIVE_CLASSES:
        return False
    return 'ongoing-request="false"' not in (head.get("Restore") or "")


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _same_content(entry: Entry, head: dict[str, Any]) -> bool:
    """Does an existing target object already hold this entry's bytes? (An interrupted pass did the copy.)"""
    if head.get("ContentLength") != entry.size:
        return False
    checksum = head.get("ChecksumSHA256")
    if entry.checksum and checksum and "-" not in entry.checksum and "-" not in checksum:
        return checksum == entry.checksum
    etag = head.get("ETag", "").strip('"')
    return bool(entry.etag) and etag == entry.etag


# ---------------------------------------------------------------------------------------------- service


@dataclass
class Outcome:
    """What one pass did to one entry."""

    state: str  # "restored", "pending" or "failed"
    entry: Entry
    bytes: int = 0
    reason: str = ""
    pending: dict[str, Any] | None = None


ProgressCallback = Callable[[int], None]


class RestoreService:
    """Start, run and look up restores. `clients` is an `aws.Clients`."""

    def __init__(
        self,
        plans: PlanSet,
        clients: Any,
        max_workers: int = 16,
        worker_mode: str = "inline",
        worker_function: str | None = None,
        allowed_buckets: tuple[str, ...] | None = None,
        table_prefix: str | None = None,
    ) -> None:
        """`allowed_buckets` None: any bucket that is not a backup bucket (an operator's own credentials);
        `table_prefix`: restored tables must be named with it (the functions may only create such tables)."""
        self.plans = plans
        self.settings: Any = None
        self.allowed_buckets = allowed_buckets
        self.table_prefix = table_prefix
        self.clients = clients
        self.max_workers = max_workers
        self.worker_mode = worker_mode
        self.worker_function = worker_function
        self.store = RestoreStore(clients.s3, plans.catalog_bucket)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, clients: Any) -> RestoreService:
        """From a `config.Settings`: the same plans, worker mode and concurrency as backups."""
        service = cls(
            settings.plans,
            clients,
            max_workers=settings.max_workers,
            worker_mode=settings.worker_mode,
            worker_function=settings.worker_function,
            allowed_buckets=settings.restore_buckets,
            table_prefix=settings.restore_table_prefix,
        )
        service.settings = settings
        return service

    # ------------------------------------------------------------------ checks before anything is written

    def _plan(self, name: str) -> Plan:
        try:
            return self.plans.get(name)
        except KeyError:
            raise BadRequest(f"unknown plan {name!r}; the known plans are {', '.join(self.plans.names)}") from None

    def _manifest(self, plan: Plan, backup_id: str) -> Manifest:
        records = RecordStore(self.clients.s3, self.plans.catalog_bucket)
        record = records.get(backup_id)  # NotFound names an unknown backup
        if plan.name not in record.plans:
            raise NotFound(f"backup {backup_id} did not back up plan {plan.name!r} (it has {', '.join(record.plans)})")
        try:
            return load_snapshot(self.clients.s3, plan.bucket, plan.name, backup_id)
        except NotFound:
            raise NotFound(
                f"backup {backup_id} has no snapshot of plan {plan.name!r} (status {record.plans[plan.name].status}"
                f"{', dry run' if record.dry_run else ''})"
            ) from None

    def _check_target(self, plan: Plan, target: Target) -> None:
        backup_buckets = {p.bucket for p in self.plans.plans}
        if target.bucket and target.bucket in backup_buckets:
            raise BadRequest(
                f"target bucket {target.bucket!r} is a backup bucket; restores never write into backup buckets, "
                "choose another bucket"
            )
        if target.bucket and self.allowed_buckets is not None and target.bucket not in self.allowed_buckets:
            allowed = ", ".join(self.allowed_buckets) or "none are configured"
            raise BadRequest(
                f"target bucket {target.bucket!r} is not one of this stage's restore buckets ({allowed}; "
                "set RESTORE_BUCKETS to add one)"
            )
        if target.table and self.table_prefix and not target.table.startswith(self.table_prefix):
            raise BadRequest(f"target table {target.table!r} must be named {self.table_prefix}... (RESTORE_TABLE_PREFIX)")
        if target.bucket:
            try:
                self.clients.s3.head_bucket(Bucket=target.bucket)
            except ClientError as exc:
                raise BadRequest(f"target bucket {target.bucket!r} cannot be used: {describe_error(exc)}") from exc
        has_table_source = any(isinstance(s, DynamoDBSource) for s in plan.sources)
        if target.table and not has_table_source:
            raise BadRequest(f"plan {plan.name!r} has no database source; give a target bucket instead of a table")
        if not target.bucket and not target.path and any(not isinstance(s, DynamoDBSource) for s in plan.sources):
            raise BadRequest(f"plan {plan.name!r} backs up objects: the target needs a 'bucket'")

    def _selection(self, plan: Plan, manifest: Manifest, request: RestoreRequest) -> list[Entry]:
        selected = list(select_entries(manifest, request.prefix, request.keys))
        if request.keys is not None:
            found = {entry.key for entry in selected}
            missing = [key for key in request.keys if key not in found]
            if missing:
                shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
                raise BadRequest(f"{len(missing)} key(s) are not in the snapshot of backup {request.backup_id}: {shown}")
        if not selected:
            what = f"under prefix {request.prefix!r}" if request.prefix else "at all"
            raise BadRequest(f"the snapshot of plan {plan.name!r} in backup {request.backup_id} has no objects {what}")
        return selected

    def _conflicts(self, plan: Plan, target: Target, selected: list[Entry]) -> list[str]:
        """Targets that already exist (with overwrite false, the restore must not start)."""
        conflicts: list[str] = []
        s3 = self.clients.s3
        tables = {t for t in (target_table(plan, target, e) for e in selected) if t}
        for table in sorted(tables):
            try:
                self.clients.dynamodb.describe_table(TableName=table)
                conflicts.append(f"table {table}")
            except ClientError as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
        files = [e for e in selected if not target_table(plan, target, e)]
        if target.bucket and files:
            existing: set[str] = set()
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=target.bucket, Prefix=target.prefix):
                existing.update(item["Key"] for item in page.get("Contents", []))
            conflicts.extend(
                f"s3://{target.bucket}/{key}" for key in (target_key(plan, target, e) for e in files) if key in existing
            )
        if target.path and files:
            root = Path(target.path)
            conflicts.extend(
                str(root / key) for key in (target_key(plan, target, e) for e in files) if (root / key).exists()
            )
        return conflicts

    def prepare(self, request: RestoreRequest) -> tuple[Plan, list[Entry]]:
        """Everything that can be checked before a byte is written. Raises BadRequest, NotFound or Conflict."""
        plan = self._plan(request.plan)
        self._check_target(plan, request.target)
        with self._manifest(plan, request.backup_id) as manifest:
            selected = self._selection(plan, manifest, request)
        if any(target_table(plan, request.target, e) is None and isinstance(_sources_by_name(plan).get(e.source), DynamoDBSource)
               for e in selected) and not (request.target.bucket or request.target.path):
            raise BadRequest("a database export needs a target 'table'")
        if not request.overwrite:
            conflicts = self._conflicts(plan, request.target, selected)
            if conflicts:
                shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
                raise Conflict(f"{len(conflicts)} target(s) already exist: {shown}; set overwrite to replace them")
        return plan, selected

    # ------------------------------------------------------------------ quote

    def quote(self, request: RestoreRequest) -> dict[str, Any]:
        """What a restore would cost and how long its thaws would take, per tier. Writes nothing."""
        plan, selected = self.prepare(request)
        heads = self._heads(plan, selected)
        archived: dict[str, dict[str, int]] = {c: {"objects": 0, "bytes": 0} for c in ARCHIVE_CLASSES}
        thawed = missing = 0
        for entry, head in zip(selected, heads):
            if head is None:
                missing += 1
            elif head.get("StorageClass") in ARCHIVE_CLASSES:
                if _is_archived(head):
                    archived[head["StorageClass"]]["objects"] += 1
                    archived[head["StorageClass"]]["bytes"] += entry.size
                else:
                    thawed += 1
        tiers: dict[str, Any] = {}
        for tier in TIERS:
            cost = 0.0
            hours = 0.0
            notes = []
            for storage_class in ARCHIVE_CLASSES:
                objects = [(e, h) for e, h in zip(selected, heads) if h is not None and h.get("StorageClass") == storage_class and _is_archived(h)]
                for entry, _ in objects:
                    used = effective_tier(storage_class, tier, entry.size)
                    per_gb, per_1000 = RETRIEVAL_PRICES[(storage_class, used)]
                    cost += entry.size / _GB * per_gb + per_1000 / 1000
                    hours = max(hours, THAW_HOURS[(storage_class, used)])
                    if used != tier:
                        notes.append(f"{storage_class} objects{' over 250 MB' if storage_class == 'GLACIER' else ''} use Standard")
            tiers[tier] = {
                "retrieval_cost_usd": round(cost, 6),
                "thaw_hours_at_most": round(hours, 3),
                "notes": sorted(set(notes)),
            }
        requests_cost = len(selected) * (COPY_PRICE_PER_1000 + GET_PRICE_PER_1000) / 1000
        return {
            "backup_id": request.backup_id,
            "plan": plan.name,
            "target": request.target.describe(),
            "objects": len(selected),
            "bytes": sum(e.size for e in selected),
            "need_thaw": sum(v["objects"] for v in archived.values()),
            "need_thaw_bytes": sum(v["bytes"] for v in archived.values()),
            "archived": archived,
            "already_thawed": thawed,
            "missing_versions": missing,
            "request_cost_usd": round(requests_cost, 6),
            "tiers": tiers,
        }

    def _heads(self, plan: Plan, entries: list[Entry]) -> list[dict[str, Any] | None]:
        def head(entry: Entry) -> dict[str, Any] | None:
            try:
                return self.clients.s3.head_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)
            except ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "405"):
                    return None
                raise

        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(head, entries))

    # ------------------------------------------------------------------ start, run, look up

    def start(self, request: RestoreRequest) -> RestoreRecord:
        """Check everything, then record a RUNNING restore (it has not written anything yet)."""
        plan, selected = self.prepare(request)
        now = isoformat(utcnow())
        target = {k: v for k, v in asdict(request.target).items() if v not in (None, "") or k == "prefix"}
        record = RestoreRecord(
            restore_id=new_backup_id(),
            backup_id=request.backup_id,
            plan=plan.name,
            target=target,
            prefix=request.prefix,
            keys=list(request.keys) if request.keys is not None else None,
            overwrite=request.overwrite,
            tier=request.tier,
            total=len(selected),
            bytes_total=sum(e.size for e in selected),
            created_at=now,
            updated_at=now,
        )
        self.store.create(record)
        return record

    def get(self, restore_id: str) -> RestoreRecord:
        return self.store.get(restore_id)

    def list(self, limit: int = 20) -> list[RestoreRecord]:
        return self.store.list(limit)

    def dispatch(self, record: RestoreRecord) -> None:
        """Run the first pass by the configured worker mode (as backups do)."""
        if self.worker_mode == "inline":
            self.run(record.restore_id)
        elif self.worker_mode == "thread":
            threading.Thread(target=self._run_logged, args=(record.restore_id,), daemon=True).start()
        else:
            self.clients.lambda_.invoke(
                FunctionName=restore_worker_name(self.worker_function),
                InvocationType="Event",
                Payload=json.dumps({"restore_id": record.restore_id}).encode("utf-8"),
            )

    def _run_logged(self, restore_id: str) -> None:
        try:
            self.run(restore_id)
        except Exception:
            logger.exception("restore %s failed in its worker thread", restore_id)

    def run(self, restore_id: str, progress: ProgressCallback | None = None) -> RestoreRecord:
        """One pass. The first pass covers the whole selection; later ones the versions waiting for a thaw."""
        record = self.store.get(restore_id)
        if record.finished:
            return record
        plan = self._plan(record.plan)
        try:
            if not record.scanned:
                with self._manifest(plan, record.backup_id) as manifest:
                    entries = list(select_entries(manifest, record.prefix, record.keys))
                self._first_pass(plan, record, entries, progress)
            else:
                self._pending_pass(plan, record, progress)
        except (ClientError, BotoCoreError) as exc:
            # The pass stopped (e.g. access denied on the target); what it did is kept, the rest is retried
            # by the hourly check while the record says RUNNING.
            record.warnings = (record.warnings + [f"pass {record.passes + 1} stopped: {describe_error(exc)}"])[-20:]
            self.store.save(record)
            raise
        record.passes += 1
        self._settle(record)
        self.store.save(record)
        logger.info("restore %s pass %d: %s", restore_id, record.passes, record.status)
        return record

    def resume_pending(self, now: datetime | None = None) -> list[RestoreRecord]:
        """The hourly check: run another pass of each restore waiting for a thaw or left RUNNING by a lost worker."""
        now = now or utcnow()
        done: list[RestoreRecord] = []
        for restore_id in self.store.unfinished():
            try:
                record = self.store.get(restore_id)
            except NotFound:
                continue
            if record.status == "RUNNING" and record.updated_at:
                updated = datetime.fromisoformat(record.updated_at.replace("Z", "+00:00"))
                if now - updated < STALE_AFTER:
                    continue  # its worker is probably still at it
            if record.finished:
                self.store.save(record)  # drops the queue entry
                continue
            try:
                done.append(self.run(restore_id))
            except Exception:
                logger.exception("restore %s: resuming failed; the next check tries again", restore_id)
        return done

    # ------------------------------------------------------------------ passes

    def _first_pass(self, plan: Plan, record: RestoreRecord, entries: list[Entry], progress: ProgressCallback | None) -> None:
        record.restored = record.bytes_restored = record.failed = 0
        record.pending, record.failures = [], []
        outcomes = self._process(plan, record, entries, progress)
        self._apply(record, outcomes)
        record.scanned = True

    def _pending_pass(self, plan: Plan, record: RestoreRecord, progress: ProgressCallback | None) -> None:
        entries = [Entry.from_json(json.dumps(item["entry"])) for item in record.pending]
        # `record.pending` stays as it was while the pass runs: a thaw keeps its first request time.
        outcomes = self._process(plan, record, entries, progress)
        record.pending = []
        self._apply(record, outcomes)

    def _apply(self, record: RestoreRecord, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.state == "restored":
                record.restored += 1
                record.bytes_restored += outcome.bytes
            elif outcome.state == "pending":
                assert outcome.pending is not None
                record.pending.append(outcome.pending)
            else:
                record.failed += 1
                if len(record.failures) < MAX_FAILURES_LISTED:
                    record.failures.append(
                        {"source": outcome.entry.source, "key": outcome.entry.key, "reason": outcome.reason}
                    )

    def _settle(self, record: RestoreRecord) -> None:
        record.pending_thaw = len(record.pending)
        if record.pending:
            record.status = "WAITING_FOR_THAW"
            record.expected_thaw_completion = max(item["ready_by"] for item in record.pending)
            return
        record.expected_thaw_completion = None
        if record.failed == 0:
            record.status = "SUCCEEDED"
        elif record.restored:
            record.status = "PARTIAL"
        else:
            record.status = "FAILED"
        record.finished_at = isoformat(utcnow())

    def _process(
        self, plan: Plan, record: RestoreRecord, entries: list[Entry], progress: ProgressCallback | None
    ) -> list[Outcome]:
        target = record.target_spec

        def one(entry: Entry) -> Outcome:
            try:
                return self._restore_entry(plan, record, target, entry)
            except (ClientError, BotoCoreError, OSError, ValueError) as exc:
                return Outcome("failed", entry, reason=describe_error(exc))
            finally:
                if progress is not None:
                    progress(1)

        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(one, entries))

    def _restore_entry(self, plan: Plan, record: RestoreRecord, target: Target, entry: Entry) -> Outcome:
        s3 = self.clients.s3
        try:
            head = s3.head_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "405"):
                return Outcome("failed", entry, reason=f"version {entry.version_id} of {entry.data_key} is missing from {plan.bucket}")
            raise
        if head.get("ContentLength") != entry.size:
            return Outcome("failed", entry, reason=f"stored size {head.get('ContentLength')} differs from the snapshot's {entry.size}")
        if _is_archived(head):
            return self._thaw(plan, record, entry, head)
        try:
            table = target_table(plan, target, entry)
            if table:
                return self._restore_table(plan, record, entry, table)
            if target.path:
                return self._download(plan, record, target, entry)
            return self._copy(plan, record, target, entry)
        except ClientError as exc:
            # The version moved to an archive class after we looked (a lifecycle transition), or its thaw
            # expired: thaw it again rather than fail the object.
            if _error_code(exc) not in ("InvalidObjectState", "ObjectNotInActiveTierError"):
                raise
            head = self.clients.s3.head_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)
            if not _is_archived(head):
                raise
            return self._thaw(plan, record, entry, head)

    def _thaw(self, plan: Plan, record: RestoreRecord, entry: Entry, head: dict[str, Any]) -> Outcome:
        storage_class = head["StorageClass"]
        tier = effective_tier(storage_class, record.tier, entry.size)
        now = utcnow()
        if not head.get("Restore"):
            try:
                self.clients.s3.restore_object(
                    Bucket=plan.bucket,
                    Key=entry.data_key,
                    VersionId=entry.version_id,
                    RestoreRequest={"Days": THAW_DAYS, "GlacierJobParameters": {"Tier": tier}},
                )
            except ClientError as exc:
                code = _error_code(exc)
                if code == "GlacierExpeditedRetrievalNotAvailable":
                    # No Expedited capacity right now (S3 answers 503): Standard is the next fastest.
                    tier = "Standard"
                    self.clients.s3.restore_object(
                        Bucket=plan.bucket,
                        Key=entry.data_key,
                        VersionId=entry.version_id,
                        RestoreRequest={"Days": THAW_DAYS, "GlacierJobParameters": {"Tier": tier}},
                    )
                elif code != "RestoreAlreadyInProgress":
                    # A thaw already under way (another pass asked) is what we want anyway.
                    raise
        previous = next((p for p in record.pending if p["entry"]["key"] == entry.key and p["entry"]["source"] == entry.source), None)
        requested_at = previous["requested_at"] if previous else isoformat(now)
        requested = datetime.fromisoformat(requested_at.replace("Z", "+00:00"))
        ready_by = requested + timedelta(hours=THAW_HOURS[(storage_class, tier)])
        return Outcome(
            "pending",
            entry,
            pending={
                "entry": json.loads(entry.to_json()),
                "storage_class": storage_class,
                "tier": tier,
                "requested_at": requested_at,
                "ready_by": isoformat(ready_by),
            },
        )

    def _copy(self, plan: Plan, record: RestoreRecord, target: Target, entry: Entry) -> Outcome:
        s3 = self.clients.s3
        assert target.bucket
        key = target_key(plan, target, entry)
        try:
            existing = s3.head_object(Bucket=target.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchKey"):
                raise
            existing = None
        if existing is not None:
            if _same_content(entry, existing):
                return Outcome("restored", entry, bytes=entry.size)
            if not record.overwrite:
                return Outcome("failed", entry, reason=f"s3://{target.bucket}/{key} already exists (overwrite is off)")
        source = {"Bucket": plan.bucket, "Key": entry.data_key, "VersionId": entry.version_id}
        extra: dict[str, Any] = {"StorageClass": "STANDARD", "ChecksumAlgorithm": "SHA256"}
        if not record.overwrite:
            # Closes the gap between the check above and the write. (moto ignores IfNoneMatch on CopyObject.)
            extra["IfNoneMatch"] = "*"
        if entry.size <= COPY_OBJECT_LIMIT:
            try:
                response = s3.copy_object(Bucket=target.bucket, Key=key, CopySource=source, **extra)
            except ClientError as exc:
                if conditional.lost_race(exc):
                    return Outcome("failed", entry, reason=f"s3://{target.bucket}/{key} appeared during the restore")
                raise
            checksum = response.get("CopyObjectResult", {}).get("ChecksumSHA256")
        else:
            # Above 5 GiB: boto3's managed multipart copy, each part copied server-side from the same version.
            # (The existence check above stands in for IfNoneMatch, which a multipart copy cannot carry.)
            extra.pop("IfNoneMatch", None)
            s3.copy(CopySource=source, Bucket=target.bucket, Key=key, ExtraArgs=extra,
                    Config=TransferConfig(multipart_threshold=COPY_OBJECT_LIMIT, multipart_chunksize=_copy_part_size(entry.size)))
            checksum = None
            size = s3.head_object(Bucket=target.bucket, Key=key)["ContentLength"]
            if size != entry.size:
                return Outcome("failed", entry, reason=f"the copy has {size} bytes, the snapshot {entry.size}")
        if checksum and entry.checksum and "-" not in entry.checksum and checksum != entry.checksum:
            return Outcome("failed", entry, reason=f"the copy's SHA-256 {checksum} differs from the snapshot's {entry.checksum}")
        return Outcome("restored", entry, bytes=entry.size)

    def _download(self, plan: Plan, record: RestoreRecord, target: Target, entry: Entry) -> Outcome:
        assert target.path
        root = Path(target.path).resolve()
        path = (root / target_key(plan, target, entry)).resolve()
        if root not in path.parents:
            return Outcome("failed", entry, reason=f"{entry.key!r} would land outside {root}")
        if path.exists() and not record.overwrite:
            if path.stat().st_size == entry.size and entry.sha256 and _file_sha256(path) == entry.sha256:
                return Outcome("restored", entry, bytes=entry.size)
            return Outcome("failed", entry, reason=f"{path} already exists (overwrite is off)")
        path.parent.mkdir(parents=True, exist_ok=True)
        response = self.clients.s3.get_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id)
        digest = hashlib.sha256()
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".restore-")
        try:
            with os.fdopen(handle, "wb") as out:
                for block in response["Body"].iter_chunks(1024 * 1024):
                    digest.update(block)
                    out.write(block)
            problem = _digest_mismatch(entry, digest.digest())
            if problem:
                return Outcome("failed", entry, reason=problem)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return Outcome("restored", entry, bytes=entry.size)

    def _restore_table(self, plan: Plan, record: RestoreRecord, entry: Entry, table: str) -> Outcome:
        dynamodb = self.clients.dynamodb
        if table not in record.tables_created:
            try:
                dynamodb.describe_table(TableName=table)
                exists = True
            except ClientError as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
                exists = False
            if exists and not record.overwrite:
                return Outcome("failed", entry, reason=f"table {table} already exists (overwrite is off)")
            if not exists:
                schema = self._table_schema(plan, record, entry)
                dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **schema)
                # Saved at once: a pass that resumes after a crash knows this table is ours to fill.
                with self._lock:
                    record.tables_created.append(table)
                    self.store.save(record)
            dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        response = self.clients.s3.get_object(Bucket=self.plans.get(record.plan).bucket, Key=entry.data_key, VersionId=entry.version_id)
        written = 0
        batch: list[dict[str, Any]] = []
        with gzip.GzipFile(fileobj=response["Body"], mode="rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                batch.append({"PutRequest": {"Item": item_from_export(json.loads(line))}})
                if len(batch) == WRITE_BATCH:
                    written += _write_batch(dynamodb, table, batch)
                    batch = []
        if batch:
            written += _write_batch(dynamodb, table, batch)
        if entry.item_count is not None and written != entry.item_count:
            return Outcome("failed", entry, reason=f"wrote {written} items, the snapshot recorded {entry.item_count}")
        return Outcome("restored", entry, bytes=entry.size)

    def _table_schema(self, plan: Plan, record: RestoreRecord, entry: Entry) -> dict[str, Any]:
        """The key schema recorded with the snapshot; for older snapshots, the source table's current one."""
        with self._manifest(plan, record.backup_id) as manifest:
            stats = manifest.header.get("sources", {}).get(entry.source, {})
        schema = stats.get("table_schema")
        if schema:
            return {"KeySchema": schema["KeySchema"], "AttributeDefinitions": schema["AttributeDefinitions"]}
        source = _sources_by_name(plan)[entry.source]
        description = self.clients.dynamodb.describe_table(TableName=source.table)["Table"]
        return table_schema(description)


def table_schema(description: dict[str, Any]) -> dict[str, Any]:
    """The parts of a `describe_table` answer a restore needs to create an equivalent table."""
    key_names = {item["AttributeName"] for item in description["KeySchema"]}
    return {
        "KeySchema": description["KeySchema"],
        "AttributeDefinitions": [a for a in description["AttributeDefinitions"] if a["AttributeName"] in key_names],
    }


def item_from_export(value: Any) -> Any:
    """An export line back into what the client sends: binary values are base64 text in the export, and the
    client wants bytes (it encodes them itself)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, inner in value.items():
            if name == "B" and isinstance(inner, str):
                out[name] = base64.b64decode(inner)
            elif name == "BS" and isinstance(inner, list):
                out[name] = [base64.b64decode(v) if isinstance(v, str) else v for v in inner]
            else:
                out[name] = item_from_export(inner)
        return out
    if isinstance(value, list):
        return [item_from_export(v) for v in value]
    return value


def _write_batch(dynamodb: Any, table: str, batch: list[dict[str, Any]]) -> int:
    """Write up to 25 items. Unprocessed items are part of BatchWriteItem's protocol (capacity), not an error:
    they are sent again, a bounded number of times, after botocore's own retries of failed requests."""
    pending = {table: batch}
    for _ in range(20):
        response = dynamodb.batch_write_item(RequestItems=pending)
        pending = response.get("UnprocessedItems") or {}
        if not pending:
            return len(batch)
    raise ValueError(f"table {table}: {len(pending.get(table, []))} items still unprocessed after 20 attempts")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest_mismatch(entry: Entry, digest: bytes) -> str | None:
    """Compare a downloaded version's SHA-256 with what the snapshot recorded; None when they agree."""
    if entry.sha256:
        if digest.hex() != entry.sha256:
            return f"content SHA-256 {digest.hex()} differs from the snapshot's {entry.sha256}"
    elif entry.checksum and "-" not in entry.checksum:
        if base64.b64encode(digest).decode("ascii") != entry.checksum:
            return f"content SHA-256 differs from the snapshot's checksum {entry.checksum}"
    return None


def restore_worker_name(backup_worker: str | None) -> str:
    """The deployed restore worker sits beside the backup worker: `<app>-<stage>-restore_worker`."""
    if not backup_worker or not backup_worker.endswith("backup_worker"):
        raise BadRequest("WORKER_FUNCTION_NAME must name the backup worker to find the restore worker beside it")
    return backup_worker[: -len("backup_worker")] + "restore_worker"


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

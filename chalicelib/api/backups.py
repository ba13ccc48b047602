"""The backups API: listing backups page by page, describing one backup and what its snapshots hold
(starting one: `start_backup.py`).

Every client mistake becomes a typed error (chalicelib/errors.py) with a message saying what was wrong and
how to fix it; `app.py` maps those to HTTP. Nothing here is written before a request has been fully checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.api.requests import CONTROL_CHARACTERS, MAX_LIMIT, parse_limit, parse_time, query
from chalicelib.catalog import pagetokens
from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.catalog.records import (
    BackupStatus,
    STATUSES,
    BackupRecord,
    RecordStore,
    backup_id_of_key,
    is_backup_id,
    record_key,
    records_listed_from,
)
from chalicelib.errors import BadRequest, Conflict, NotFound, Tampered
from chalicelib.plans import PlanSet
from chalicelib.verify.record import backup_verification

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
DEFAULT_OBJECTS_LIMIT = 100
# Records read at most for one page of a filtered listing: a page may come back short (even empty) with a
# next_token, so that a rare status never makes one request read the whole catalog.
SCAN_BUDGET = 500
# Parallel GETs of the records (or HEADs of the objects) on one page.
READ_THREADS = 16
MAX_PREFIX_LENGTH = 1024

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

T = TypeVar("T")
R = TypeVar("R")


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _parallel(func: Callable[[T], R], items: list[T]) -> list[R]:
    if len(items) <= 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(items))) as pool:
        return list(pool.map(func, items))


# --------------------------------------------------------------------------------- record representation


def _duration(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    try:
        begin = datetime.fromisoformat(started.replace("Z", "+00:00"))
        end = datetime.fromisoformat(finished.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((end - begin).total_seconds(), 3)


def describe(record: BackupRecord, pruned: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A backup as the API shows it: the record, plus durations, totals and the findings spelled out;
    `pruned`: plan -> when retention removed that plan's snapshot."""
    data = record.public_dict()
    pruned = pruned or {}
    with_snapshot = [name for name, result in record.plans.items() if result.snapshot]
    # Pruned as a whole once every snapshot it had is gone; each plan says so on its own too.
    data["pruned"] = dict(pruned)
    data["pruned_at"] = max(pruned.values()) if with_snapshot and all(n in pruned for n in with_snapshot) else None
    data["duration_seconds"] = _duration(record.started_at, record.finished_at)
    data["totals"] = record.totals()
    for name, result in record.plans.items():
        plan = data["plans"][name]
        plan["duration_seconds"] = _duration(result.started_at, result.finished_at)
        plan["pruned_at"] = pruned.get(name)
        held = result.deletions_held_back
        plan["findings"] = {
            "mass_deletion": {
                "deletions_held_back": held,
                "message": next((w for w in result.warnings if "held back" in w), f"{held} deletions held back"),
            }
            if held
            else None,
            # Bucket settings that differ from the plan, where the backup checked them.
            "drift": list(getattr(result, "drift", None) or []),
        }
        if record.dry_run:
            plan["would"] = {
                "copy": result.copied,
                "copy_bytes": result.bytes_copied,
                "delete": result.deleted,
                "hold_back": held,
            }
    if record.dry_run:
        data["note"] = (
            "dry run: nothing was copied, deleted or recorded as a snapshot; each plan's 'would' says what a "
            "backup would copy, delete and hold back"
        )
    return data


# -------------------------------------------------------------------------------------------- GET /backups

_LIST_PARAMS = ("plan", "status", "since", "until", "limit", "next_token")


def list_backups(
    records: RecordStore,
    plans: PlanSet,
    params: Mapping[str, Any] | None,
    report: Callable[[str], Any] = lambda finding: None,
) -> dict[str, Any]:
    """One page of backups, newest first.

    Record keys start with the inverted start time, so S3 lists them newest first and `since`/`until` map
    to a key range: `until` becomes StartAfter and listing stops at the first key older than `since`. A
    page costs one LIST of `limit` keys and one GET per record returned (more with plan/status filters,
    bounded by SCAN_BUDGET), whatever the size of the catalog.

    A record that cannot be trusted (`Tampered`) is listed as `UNREADABLE` with the reason, whatever the
    filters, never left out; and `report` (the tampering alert) is told.
    """
    values = query(params, _LIST_PARAMS)
    plan = values.get("plan")
    if plan is not None and plan not in plans.names:
        raise BadRequest(f"unknown plan {plan!r} in 'plan'; the known plans are {', '.join(plans.names)}")
    status = values.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    since = parse_time("since", values.get("since"))
    until = parse_time("until", values.get("until"), end_of_day=True)
    if since and until and since > until:
        raise BadRequest("since is later than until: nothing can match; swap them")
    limit = parse_limit(values.get("limit"), DEFAULT_LIMIT)
    filters = {"plan": plan, "status": status, "since": values.get("since"), "until": values.get("until")}

    start_after: str | None = None
    if until is not None:
        until_ms = max(0, _micros(until) // 1000)
        start_after = records_listed_from(until_ms)
    if values.get("next_token") is not None:
        position = pagetokens.decode(values["next_token"], "backups", filters)
        if not isinstance(position, str) or not _valid_record_key(position):
            raise BadRequest("next_token is not a token this API issued; leave it out to start from the first page")
        start_after = max(start_after or "", position)
    # Keys sort newest first: the records started at or after `since` are those listed before the records
    # started by the millisecond before it.
    listed_before: str | None = None
    if since is not None:
        since_ms = -(-_micros(since) // 1000)
        if since_ms > 0:
            listed_before = records_listed_from(since_ms - 1)

    filtered = plan is not None or status is not None
    # A record that cannot be trusted is listed too, as UNREADABLE: never dropped silently.
    found: list[BackupRecord | Tampered] = []
    last_key: str | None = None  # the last key looked at: the next page starts after it
    exhausted = False
    scanned = 0
    rounds = 0
    while len(found) < limit and scanned < SCAN_BUDGET:
        want = limit - len(found)
        if filtered:
            # Filters skip records: read more per round the fewer seem to match, within the budget.
            want = min(MAX_LIMIT, SCAN_BUDGET - scanned, want * 2**rounds)
        rounds += 1
        keys, truncated = records.list_keys(want, start_after)
        in_range = [k for k in keys if listed_before is None or k < listed_before]
        loaded = _parallel(lambda k: _read_record(records, k), in_range)
        for key, record in zip(in_range, loaded):
            last_key = key
            scanned += 1
            if isinstance(record, Tampered):
                report(str(record))
                found.append(record)
            elif record is not None and _matches(record, plan, status):
                found.append(record)
                if len(found) == limit:
                    break
        looked_at_all = not in_range or last_key == in_range[-1]
        if looked_at_all and (len(in_range) < len(keys) or not truncated):
            exhausted = True  # reached the end of the catalog, or the first record older than `since`
            break
        start_after = last_key
    # The pruned markers of the page: one listing of one key range.
    marked = PrunedMarkers(records.s3, records.bucket).for_backups(
        [r.backup_id for r in found if isinstance(r, BackupRecord)]
    )
    body: dict[str, Any] = {
        "backups": [
            _unreadable(r) if isinstance(r, Tampered) else describe(r, marked.get(r.backup_id)) for r in found
        ]
    }
    body["next_token"] = pagetokens.encode("backups", last_key, filters) if not exhausted and last_key else None
    return body


def _valid_record_key(key: str) -> bool:
    """Whether `key` is the record key of a backup (a page token's position must be one)."""
    try:
        backup_id = backup_id_of_key(key)
    except IndexError:
        return False
    return is_backup_id(backup_id) and record_key(backup_id) == key


def _read_record(records: RecordStore, key: str) -> BackupRecord | Tampered | None:
    try:
        return records.read_key(key)
    except NotFound:
        return None  # removed between the listing and the read
    except Tampered as exc:
        exc.backup_id = backup_id_of_key(key)  # type: ignore[attr-defined]
        return exc


def _unreadable(exc: Tampered) -> dict[str, Any]:
    """A listed backup whose record cannot be trusted: shown, with why, never dropped from the list."""
    return {"backup_id": getattr(exc, "backup_id", None), "status": "UNREADABLE", "error": str(exc), "plans": {}}


def _matches(record: BackupRecord, plan: str | None, status: str | None) -> bool:
    return (plan is None or plan in record.plans) and (status is None or record.status == status)


# ------------------------------------------------------------------------------------ GET /backups/{id}


def get_backup(records: RecordStore, backup_id: str) -> dict[str, Any]:
    if not is_backup_id(backup_id):
        raise NotFound(f"no backup with id {backup_id!r}: backup ids look like 20261126T134735123Z-9f2c4a1b")
    record = records.get(backup_id)
    data = describe(record, PrunedMarkers(records.s3, records.bucket).for_backups([backup_id]).get(backup_id))
    if record.trigger == "schedule" and not record.dry_run:
        # Its weekly verification job, found by the id it derives from the backup's: one GET, no listing.
        data["verification"] = backup_verification(records.s3, records.bucket, backup_id) or record.verification
    return data


# ---------------------------------------------------------------------------- GET /backups/{id}/objects

_OBJECT_PARAMS = ("plan", "prefix", "limit", "next_token")


def list_objects(
    s3: Any,
    records: RecordStore,
    plans: PlanSet,
    backup_id: str,
    params: Mapping[str, Any] | None,
    report: Callable[[str], Any] = lambda finding: None,
) -> dict[str, Any]:
    """One page of what a plan's snapshot holds, in (source, key) order, read from its manifest at the version
    the backup's record names (its hash checked)."""
    values = query(params, _OBJECT_PARAMS)
    limit = parse_limit(values.get("limit"), DEFAULT_OBJECTS_LIMIT)
    prefix = values.get("prefix") or ""
    if len(prefix) > MAX_PREFIX_LENGTH or CONTROL_CHARACTERS.search(prefix):
        raise BadRequest(f"prefix must be at most {MAX_PREFIX_LENGTH} characters with no control characters")
    if not is_backup_id(backup_id):
        raise NotFound(f"no backup with id {backup_id!r}: backup ids look like 20261126T134735123Z-9f2c4a1b")
    record = records.get(backup_id)
    plan = values.get("plan")
    if plan is None:
        if len(record.plans) != 1:
            raise BadRequest(
                f"name the plan whose snapshot to list, e.g. ?plan={next(iter(record.plans), 'documents')}; "
                f"backup {backup_id} has plans {', '.join(record.plans)}"
            )
        plan = next(iter(record.plans))
    if plan not in record.plans:
        raise BadRequest(f"backup {backup_id} has no plan {plan!r}; its plans are {', '.join(record.plans)}")
    result = record.plans[plan]
    if record.dry_run:
        raise NotFound(f"backup {backup_id} was a dry run: it wrote no snapshot to list")
    if not result.snapshot:
        if result.status == BackupStatus.RUNNING:
            raise Conflict(f"plan {plan!r} of backup {backup_id} is still running; its snapshot is written when it ends")
        raise NotFound(f"plan {plan!r} of backup {backup_id} has no snapshot (status {result.status}); see its errors")
    bucket, _, manifest_key = result.snapshot.removeprefix("s3://").partition("/")
    after: tuple[str, str] | None = None
    token_query = {"backup_id": backup_id, "plan": plan, "prefix": prefix}
    if values.get("next_token") is not None:
        position = pagetokens.decode(values["next_token"], "objects", token_query)
        if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, str) for p in position)):
            raise BadRequest("next_token is not a token this API issued; leave it out to start from the first page")
        after = (position[0], position[1])

    page: list[Entry] = []
    more = False
    with open_snapshot(s3, records, plans.get(plan), backup_id, report) as manifest:
        for entry in manifest.entries():
            if after is not None and entry.sort_key <= after:
                continue
            if not entry.key.startswith(prefix):
                continue
            if len(page) == limit:
                more = True
                break
            page.append(entry)
    classes = _parallel(lambda e: _storage_class(s3, bucket, e), page)
    objects = []
    for entry, storage_class in zip(page, classes):
        item: dict[str, Any] = {
            "source": entry.source,
            "key": entry.key,
            "size": entry.size,
            "version_id": entry.version_id or None,
            "etag": entry.etag or None,
            "backup_key": entry.stored_key,
            "storage_class": storage_class,
        }
        if entry.sha256:
            item["sha256"] = entry.sha256
        if entry.checksum:
            item["checksum_sha256"] = entry.checksum
        if entry.item_count is not None:
            item["item_count"] = entry.item_count
        if entry.pack_offset is not None:
            item["pack_offset"] = entry.pack_offset
        objects.append(item)
    last = page[-1] if page else None
    return {
        "backup_id": backup_id,
        "plan": plan,
        "snapshot": result.snapshot,
        "objects": objects,
        "next_token": pagetokens.encode("objects", [last.source, last.key], token_query) if more and last else None,
    }


def _storage_class(s3: Any, bucket: str, entry: Entry) -> str | None:
    """The stored version's storage class (S3 leaves it out for STANDARD), or None when it can't be read."""
    params = {"Bucket": bucket, "Key": entry.stored_key}
    if entry.version_id:
        params["VersionId"] = entry.version_id
    try:
        response = s3.head_object(**params)
    except (ClientError, BotoCoreError) as exc:
        logger.info("no storage class for %s: %s", entry.stored_key, exc)
        return None
    return str(response.get("StorageClass") or "STANDARD")

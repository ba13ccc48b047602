"""What each page and button does, as the API's routes do it: the same chalicelib functions with the same
validation, so the dashboard can neither show nor start anything the API would not.

    index        overview.build + charts                (GET /backups, verifications, prunes, restores)
    backup       api.backups.get_backup + list_objects  (GET /backups/{id}, .../objects)
    quote        RestoreService.quote                   (a restore dry run's quote, computed here: writes nothing)
    start        api.start_backup.start_backup          (POST /backup)
    verify       VerificationJobs.start_check           (POST /backups/{id}/verify: recorded, run by the worker)
    verification verification_record.describe          (GET /verifications/{id})
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.api import backups as api
from chalicelib.api import start_backup as start_api
from chalicelib.api.requests import parse_verify_request, restore_request_from_dict
from chalicelib.bootstrap import System
from chalicelib.restore.service import RestoreService
from chalicelib.dashboard import charts, overview
from chalicelib.dashboard.storage import StorageCache
from chalicelib.errors import BadRequest, Conflict, NotFound, Pruned
from chalicelib.plans import DynamoDBSource
from chalicelib.verify import record as verification_record
from chalicelib.catalog.records import BackupStatus

OBJECTS_PER_PAGE = 50
RECENT_BACKUPS = 12


def index(settings: Any, clients: Any, now: datetime, storage: StorageCache | None = None) -> dict[str, Any]:
    """The main page's data and charts."""
    seen = overview.build(settings, clients, now, storage)
    names = settings.plans.names
    zone = settings.time_zone
    window = (seen.window_start, now)
    drawn = {
        "timeline": charts.timeline(seen.backups, names, *window, zone),
        "bytes_copied": charts.bytes_copied(seen.backups, *window, zone),
        "stored": charts.stored(seen.backups, names, *window, zone),
    }
    if seen.costs is not None:
        drawn["projection"] = charts.projection(seen.costs)
    latest = next((b for b in seen.backups if not b.get("dry_run") and b["status"] != BackupStatus.RUNNING), None)
    return {
        "o": seen,
        "charts": drawn,
        "recent": seen.backups[:RECENT_BACKUPS],
        "latest_id": latest["backup_id"] if latest else None,
        "class_css": charts.class_css,
    }


@dataclass
class Contents:
    """One page of a plan's snapshot, or why there is none to show."""

    plan: str | None
    prefix: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    next_token: str | None = None
    problem: str | None = None


def backup(settings: Any, clients: Any, backup_id: str, query: dict[str, str]) -> dict[str, Any]:
    """A backup as `GET /backups/{id}` describes it, and one page of a plan's snapshot."""
    records = System(settings, clients).backups.records
    described = api.get_backup(records, backup_id)
    plans = list(described["plans"])
    with_snapshot = [name for name in plans if described["plans"][name].get("snapshot")]
    plan = query.get("plan") or (with_snapshot[0] if with_snapshot else (plans[0] if plans else None))
    if plan is not None and plan not in plans:
        raise BadRequest(f"backup {backup_id} has no plan {plan!r}; its plans are {', '.join(plans)}")
    contents = Contents(plan=plan, prefix=query.get("prefix", ""))
    if plan is not None:
        params = {"plan": plan, "limit": str(OBJECTS_PER_PAGE)}
        params.update({k: query[k] for k in ("prefix", "next_token") if query.get(k)})
        try:
            page = api.list_objects(clients.s3, records, settings.plans, backup_id, params)
        except (NotFound, Conflict, Pruned) as exc:
            # A pruned snapshot is gone for good: the page says when and by which prune, and offers no
            # restore (the template leaves the quote out for a plan with `pruned_at`).
            contents.problem = str(exc)
        else:
            contents.objects, contents.next_token = page["objects"], page["next_token"]
    return {"b": described, "plans": plans, "contents": contents}


def start(settings: Any, clients: Any, plans: list[str]) -> str:
    """Start a backup exactly as `POST /backup` does (locks, record, dispatch); returns its id."""
    body = json.dumps({"plans": plans}).encode("utf-8") if plans else b""
    started = start_api.start_backup(
        System(settings, clients).backups, body, "application/json" if body else None, idempotency_key=None
    )
    return started.record.backup_id


def verify(settings: Any, clients: Any, backup_id: str, form: dict[str, str]) -> str:
    """`POST /backups/{id}/verify`: every version of the backup's snapshots checked, with the same body
    validation as the API; recorded and handed to the verify worker. Returns the verification's id."""
    body: dict[str, Any] = {}
    percent = (form.get("sample_percent") or "").strip()
    if percent:
        try:
            body["sample_percent"] = float(percent)
        except ValueError:
            raise BadRequest(f"'sample_percent' must be a number from 0 to 100, got {percent!r}") from None
    request = parse_verify_request(json.dumps(body).encode("utf-8"))
    job = System(settings, clients).verifications.start_check(backup_id, request.plans, request.sample_percent)
    return job.job_id


def verification(settings: Any, clients: Any, verification_id: str) -> dict[str, Any]:
    """`GET /verifications/{id}`: the job's status, counts and findings."""
    return verification_record.describe(System(settings, clients).verifications.store(), verification_id)


def quote(settings: Any, clients: Any, backup_id: str, query: dict[str, str], stage: str) -> dict[str, Any]:
    """A restore dry run for a prefix: what it would cost and how long thaws would take. Writes nothing."""
    plan_name = query.get("plan") or ""
    try:
        plan = settings.plans.get(plan_name)
    except KeyError:
        raise BadRequest(f"unknown plan {plan_name!r}; the known plans are {', '.join(settings.plans.names)}") from None
    prefix = query.get("prefix") or ""
    is_table = any(isinstance(source, DynamoDBSource) for source in plan.sources)
    target: dict[str, Any]
    if is_table:
        table = query.get("table") or f"{settings.restore_table_prefix}{plan.name}-{backup_id[:8]}"
        target = {"table": table}
    else:
        bucket = query.get("bucket") or (settings.restore_buckets[0] if settings.restore_buckets else "")
        if not bucket:
            raise BadRequest("name a target bucket: this stage lists no restore buckets (RESTORE_BUCKETS)")
        target = {"bucket": bucket, "prefix": query.get("target_prefix", f"restored/{backup_id}/")}
    body: dict[str, Any] = {"backup_id": backup_id, "plan": plan.name, "target": target, "dry_run": True}
    if prefix:
        body["prefix"] = prefix
    request = restore_request_from_dict(body)
    # The stage's restore rules (its restore buckets and table prefix); tampering met is shown on the page.
    quoted = RestoreService.from_settings(settings, clients).quote(request)
    command = ["org-backup", "--stage", stage, "restore", backup_id, "--plan", plan.name]
    if prefix:
        command += ["--prefix", prefix]
    if "table" in target:
        command += ["--to-table", target["table"]]
    else:
        command += ["--to-bucket", target["bucket"], "--to-prefix", target["prefix"]]
    return {"q": quoted, "target": target, "plan": plan.name, "prefix": prefix, "is_table": is_table,
            "command": shlex.join(command)}

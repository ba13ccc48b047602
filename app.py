"""The backup system's API and schedule. Each handler parses, calls chalicelib, and maps errors."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, time
from typing import Any

from chalice import BadRequestError, Chalice, ConflictError, Cron, IAMAuthorizer, NotFoundError, Rate, Response

from chalicelib.api import backups as api
from chalicelib.api import start_backup as start_api
from chalicelib.api import costs as costs_api
from chalicelib.api import prunes as prune_api
from chalicelib.api.plans import describe_plans
from chalicelib.api.requests import check_body, parse_restore_request, parse_verify_request, restore_origin
from chalicelib.aws import Clients
from chalicelib.bootstrap import System
from chalicelib.backup.service import BackupService
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
from chalicelib.notify import metrics
from chalicelib.times import isoformat, utcnow
from chalicelib.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    Pruned,
    Tampered,
    Unprocessable,
    UnsupportedMediaType,
)
from chalicelib.plans_file import check_plans_file
from chalicelib.prune.service import PruneJobs
from chalicelib.restore import record as restore_record
from chalicelib.restore.service import RestoreService
from chalicelib.verify import record as verifications

app = Chalice(app_name="org-backup")
app.log.setLevel(logging.INFO)
logging.getLogger("chalicelib").setLevel(logging.INFO)

# A broken plans file must stop a deploy, not the first backup: validate its shape on import. Its `schedule`
# entry decides the daily schedules below, as `chalice package` imports this file (chalicelib/schedule.py).
SCHEDULE = check_plans_file().schedule


def daily(at: time | None) -> Rate | Cron:
    """`rate(1 day)`, the default; every day at `at` (UTC) where the plans file sets a time."""
    return Rate(1, unit=Rate.DAYS) if at is None else Cron(at.minute, at.hour, "*", "*", "?", "*")


# Every route requires SigV4-signed requests from an IAM principal allowed execute-api:Invoke.
# (chalice local and the test client do not enforce authorizers; tests check each route carries it.)
iam = IAMAuthorizer()

_clients: Clients | None = None


def system() -> System:
    """Settings come from the environment of the running handler; clients are made once per process, with
    S3 requests to the stage's backup and restore buckets pinned to its account."""
    global _clients
    settings = Settings.from_environ()
    if _clients is None:
        _clients = Clients(bucket_owner=settings.bucket_owner)
    return System(settings, _clients)


def service() -> BackupService:
    return system().backups


def _client_errors(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadRequest as exc:
            raise BadRequestError(str(exc)) from exc
        except NotFound as exc:
            raise NotFoundError(str(exc)) from exc
        except Conflict as exc:
            if not exc.ids:
                raise ConflictError(str(exc)) from exc
            return _error(409, "ConflictError", str(exc), **exc.ids)
        except Unprocessable as exc:
            return _error(422, "UnprocessableEntityError", str(exc))
        except Pruned as exc:
            # Retention removed the snapshot: gone for good, and the answer says when and by which prune.
            return _error(410, "SnapshotPruned", str(exc))
        except PayloadTooLarge as exc:
            return _error(413, "PayloadTooLarge", str(exc))
        except UnsupportedMediaType as exc:
            return _error(415, "UnsupportedMediaType", str(exc))
        except Tampered as exc:
            # Stored metadata that cannot be trusted: never a 500, never used; the operators are told.
            system().tampering.report(str(exc))
            return _error(409, "TamperingDetected", str(exc))

    return wrapper


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    """An error in Chalice's own shape ({"Code", "Message"}), with extra fields where they help."""
    return Response(status_code=status, body={"Code": code, "Message": message, **extra})


# content_types="*/*": the body's type is checked by check_body, which explains a 415 and allows any
# type (or none) on an empty body.
@app.route("/backup", methods=["POST"], authorizer=iam, content_types=["*/*"])
@_client_errors
def start_backup() -> Response:
    """Start a backup of every plan, or of the plans named in the body."""
    request = app.current_request
    started = start_api.start_backup(
        service(), request.raw_body, request.headers.get("content-type"), request.headers.get("idempotency-key")
    )
    record = started.record
    return Response(
        status_code=202,
        body={
            "backup_id": record.backup_id,
            "status": record.status,
            "plans": list(record.plans),
            "dry_run": record.dry_run,
            "replayed": started.replayed,
        },
        headers={"Location": f"/backups/{record.backup_id}"},
    )


@app.route("/backups", methods=["GET"], authorizer=iam)
@_client_errors
def list_backups() -> dict[str, Any]:
    """Backups, newest first, filtered by plan, status and time, a page at a time."""
    backups = service()
    return api.list_backups(
        backups.records, backups.settings.plans, app.current_request.query_params, backups.tampering.report
    )


@app.route("/backups/{backup_id}", methods=["GET"], authorizer=iam)
@_client_errors
def get_backup(backup_id: str) -> dict[str, Any]:
    """One backup, with per-plan results and findings."""
    return api.get_backup(service().records, backup_id)


@app.route("/backups/{backup_id}/objects", methods=["GET"], authorizer=iam)
@_client_errors
def list_backup_objects(backup_id: str) -> dict[str, Any]:
    """What one plan's snapshot of a backup holds, a page at a time."""
    backups = service()
    return api.list_objects(
        backups.clients.s3, backups.records, backups.settings.plans, backup_id, app.current_request.query_params,
        backups.tampering.report,
    )


@app.route("/plans", methods=["GET"], authorizer=iam)
@_client_errors
def list_plans() -> dict[str, Any]:
    """The configured plans: buckets, sources, lifecycle and retention."""
    return describe_plans(service().settings.plans)


def cost_reports() -> CostReports:
    return system().costs


@app.route("/costs", methods=["GET"], authorizer=iam)
@_client_errors
def get_costs() -> dict[str, Any]:
    """What the backups cost a month, where the bytes are, the next 12 months and the alternatives, from the
    newest finished backup (computed once per backup, then kept)."""
    return costs_api.get_costs(cost_reports(), app.current_request.query_params)


@app.route("/costs/{plan}", methods=["GET"], authorizer=iam)
@_client_errors
def get_plan_costs(plan: str) -> dict[str, Any]:
    """One plan's part of the same report."""
    reports = cost_reports()
    return costs_api.get_plan_costs(reports, reports.plans, plan, app.current_request.query_params)


@app.schedule(daily(SCHEDULE.daily_at))
def daily_backup(event: Any) -> dict[str, Any]:
    """Back up every plan once a day (chalicelib/schedule.py)."""
    scheduled_at = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    # The Lambda context tells a long backup when to stop at a checkpoint and carry on in a new invocation.
    record = service().run_scheduled(scheduled_at, context=event.context, event_id=event.event_id)
    return {"backup_id": record.backup_id, "status": record.status}


@app.lambda_function(name="backup_worker")
def backup_worker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs a backup that POST /backup recorded (invoked asynchronously)."""
    record = service().run(
        event["backup_id"], context=context, plan_name=event.get("plan"), segment=event.get("segment"),
        run_key=event.get("run_key"),
    )
    return {"backup_id": record.backup_id, "status": record.status}


@app.lambda_function(name="verify_worker")
def verify_worker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Records and runs the weekly verification job of a scheduled backup (given the backup's id), or runs a
    recorded job (a check, or a job carried on past the time limit); invoked asynchronously."""
    record = system().verifications.work(event, context=context)
    if record is None:
        return {"backup_id": event.get("backup_id"), "status": None}
    return {"job_id": record.job_id, "status": record.status}


def restores() -> RestoreService:
    return system().restores


@app.route("/restores", methods=["POST"], authorizer=iam, content_types=["*/*"])
@_client_errors
def start_restore() -> Response:
    """Restore a snapshot (or part of it) to a bucket or a new table; `dry_run` quotes it instead. The
    restore worker selects, checks and quotes; GET /restores/{id} shows where it is."""
    current = app.current_request
    request = parse_restore_request(check_body(current.raw_body, current.headers.get("content-type")))
    service_ = system().restores_from(request.origin)
    record = service_.submit(request)
    service_.dispatch(record)
    return Response(
        status_code=202,
        body={"restore_id": record.restore_id, "status": record.status, "dry_run": record.dry_run},
        headers={"Location": f"/restores/{record.restore_id}"},
    )


@app.route("/restores/{restore_id}", methods=["GET"], authorizer=iam)
@_client_errors
def get_restore(restore_id: str) -> dict[str, Any]:
    """A restore's status, counts and expected thaw completion (`?from=offsite`: a restore from the vault)."""
    origin = restore_origin(app.current_request.query_params)
    return restore_record.summary(system().restores_from(origin).get(restore_id))


@app.route("/backups/{backup_id}/verify", methods=["POST"], authorizer=iam, content_types=["*/*"])
@_client_errors
def verify_backup(backup_id: str) -> Response:
    """Check every version of a backup's snapshots (`sample_percent` also re-reads and re-hashes a share):
    a job for the verify worker; the answer (202) names it, GET /verifications/{id} shows it."""
    current = app.current_request
    request = parse_verify_request(check_body(current.raw_body, current.headers.get("content-type")))
    job = system().verifications.start_check(backup_id, request.plans, request.sample_percent)
    return Response(
        status_code=202,
        body={"verification_id": job.job_id, "backup_id": backup_id, "status": job.status},
        headers={"Location": f"/verifications/{job.job_id}"},
    )


@app.route("/verifications/{verification_id}", methods=["GET"], authorizer=iam)
@_client_errors
def get_verification(verification_id: str) -> dict[str, Any]:
    """A verification job (the weekly one of a scheduled backup, or a check of one backup): status, counts
    and findings."""
    return verifications.describe(system().verifications.store(), verification_id)


@app.schedule(Rate(1, unit=Rate.HOURS))
def resume_restores(event: Any) -> dict[str, Any]:
    """Continue restores that wait for archived versions to thaw (or lost their worker)."""
    records = system().resume_restores(context=event.context)
    return {"resumed": [{"restore_id": r.restore_id, "status": r.status} for r in records]}


@app.lambda_function(name="restore_worker")
def restore_worker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs the first pass of a restore that POST /restores recorded (invoked asynchronously); `"from":
    "offsite"` in the event: a restore from the vault."""
    record = system().restores_from(event.get("from", "backup")).run(event["restore_id"], context=context)
    return {"restore_id": record.restore_id, "status": record.status}


def prunes() -> PruneJobs:
    return system().prunes


@app.route("/prune", methods=["POST"], authorizer=iam, content_types=["*/*"])
@_client_errors
def start_prune() -> Response:
    """Apply the plans' retention policies (`dry_run`: only say what would go and what it would save): a job
    for the prune worker; the answer (202) names it, GET /prunes/{id} shows it."""
    current = app.current_request
    record = prune_api.start_prune(prunes(), current.raw_body, current.headers.get("content-type"))
    return Response(
        status_code=202,
        body={"prune_id": record.prune_id, "status": record.status, "dry_run": record.dry_run},
        headers={"Location": f"/prunes/{record.prune_id}"},
    )


@app.route("/prunes", methods=["GET"], authorizer=iam)
@_client_errors
def list_prunes() -> dict[str, Any]:
    """The latest prunes, newest first."""
    return prune_api.list_prunes(prunes(), app.current_request.query_params)


@app.route("/prunes/{prune_id}", methods=["GET"], authorizer=iam)
@_client_errors
def get_prune(prune_id: str) -> dict[str, Any]:
    """A prune: every snapshot with the rules that keep it, what was removed, what stayed and why."""
    return prune_api.get_prune(prunes(), prune_id)


# On the backup's schedule: beside it under `rate(1 day)`, three hours after it at a fixed time.
@app.schedule(daily(SCHEDULE.prune_at))
def daily_prune(event: Any) -> dict[str, Any]:
    """Apply every plan's retention policy; a repeated delivery finds the same prune."""
    scheduled_at = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    record = prunes().scheduled(scheduled_at, event.event_id, context=event.context)
    return {"prune_id": record.prune_id, "status": record.status}


@app.lambda_function(name="prune_worker")
def prune_worker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs a prune that POST /prune or the schedule recorded, carrying itself on past the time limit."""
    record = prunes().run(event["prune_id"], context=context)
    return {"prune_id": record.prune_id, "status": record.status}


@app.lambda_function(name="notifier")
def notifier(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Alerts a tampering finding once (invoked asynchronously by whichever function finds it): the one role
    that may write the findings' markers. A failure to publish fails the invocation, which Lambda retries."""
    finding = event.get("finding")
    if not isinstance(finding, str) or not finding:
        raise ValueError("the notifier's payload must be {\"finding\": \"<what was found>\"}")
    return {"alerted": system().tampering.notify(finding)}


@app.schedule(Rate(1, unit=Rate.HOURS))
def heartbeat(event: Any) -> dict[str, Any]:
    """Publish the metric the 26-hour alarm watches, from the sealed records of the backups that succeeded."""
    current = system()
    moment = metrics.beat(current.clients.cloudwatch, current.clients.s3, current.settings.plans, utcnow())
    return {"last_success": isoformat(moment) if moment else None}

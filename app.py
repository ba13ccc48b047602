"""The backup system's API and schedule. Each handler parses, calls chalicelib, and maps errors."""

from __future__ import annotations

import functools
import logging
from typing import Any

from chalice import BadRequestError, Chalice, ConflictError, NotFoundError, Rate, Response

from chalicelib.aws import Clients
from chalicelib.config import Settings
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.plans import check_plans_file
from chalicelib.requests import parse_backup_request
from chalicelib.service import BackupService, summary

app = Chalice(app_name="org-backup")
app.log.setLevel(logging.INFO)
logging.getLogger("chalicelib").setLevel(logging.INFO)

# A broken plans file must stop a deploy, not the first backup: validate its shape on import.
check_plans_file()

_clients: Clients | None = None


def service() -> BackupService:
    """Settings come from the environment of the running handler; clients are made once per process."""
    global _clients
    if _clients is None:
        _clients = Clients()
    return BackupService(Settings.from_environ(), _clients)


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
            raise ConflictError(str(exc)) from exc

    return wrapper


@app.route("/backup", methods=["POST"])
@_client_errors
def start_backup() -> Response:
    """Start a backup of every plan, or of the plans named in the body."""
    request = parse_backup_request(app.current_request.raw_body)
    backups = service()
    record = backups.start(request.plans, trigger="api", dry_run=request.dry_run)
    backups.dispatch(record)
    return Response(
        status_code=202,
        body={"backup_id": record.backup_id, "status": record.status, "plans": list(record.plans)},
        headers={"Location": f"/backups/{record.backup_id}"},
    )


@app.route("/backups", methods=["GET"])
@_client_errors
def list_backups() -> dict[str, Any]:
    """Backups, newest first."""
    return {"backups": [summary(record) for record in service().list()]}


@app.route("/backups/{backup_id}", methods=["GET"])
@_client_errors
def get_backup(backup_id: str) -> dict[str, Any]:
    """One backup, with per-plan results."""
    return summary(service().get(backup_id))


@app.schedule(Rate(1, unit=Rate.DAYS))
def daily_backup(event: Any) -> dict[str, Any]:
    """Back up every plan once a day."""
    from datetime import datetime

    scheduled_at = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    record = service().run_scheduled(scheduled_at)
    return {"backup_id": record.backup_id, "status": record.status}


@app.lambda_function(name="backup_worker")
def backup_worker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs a backup that POST /backup recorded (invoked asynchronously)."""
    record = service().run(event["backup_id"])
    return {"backup_id": record.backup_id, "status": record.status}

"""`POST /prune`, `GET /prunes` and `GET /prunes/{id}`: start a prune, and read what it decided and did."""

from __future__ import annotations

from typing import Any

from chalicelib.api.requests import check_body, parse_limit, parse_prune_request, query
from chalicelib.prune.record import PruneRecord, prune_time_id
from chalicelib.prune.service import PruneJobs

DEFAULT_LIMIT = 20
MAX_PRUNES_LISTED = 100


def start_prune(jobs: PruneJobs, raw_body: bytes | None, content_type: str | None) -> PruneRecord:
    """Check the request, record the prune and hand it to the prune worker; the caller answers 202."""
    request = parse_prune_request(check_body(raw_body, content_type))
    record = jobs.start(request.plans, trigger="api", dry_run=request.dry_run, allow_large=request.allow_large_prune)
    jobs.dispatch(record.prune_id)
    return record


def describe(record: PruneRecord) -> dict[str, Any]:
    """A prune as the API shows it: the record (every snapshot with the rules that keep it, what went, what
    stayed and why), with totals."""
    data = record.to_dict()
    data["totals"] = record.totals()
    for name, plan in record.plans.items():
        shown = data["plans"][name]
        shown["snapshots_kept"] = plan.kept_count
        shown["snapshots_removed"] = plan.removed_count(record.dry_run)
    if record.dry_run:
        data["note"] = (
            "dry run: nothing was marked or deleted; each plan's 'removing' and 'would_delete' say what a prune "
            "would remove, 'monthly_saving_usd' what it would save and 'would_early_deletion' what it would cost"
        )
    return data


def get_prune(jobs: PruneJobs, prune_id: str) -> dict[str, Any]:
    prune_time_id(prune_id)  # NotFound, naming the expected shape, for anything that is not a prune id
    return describe(jobs.store().get(prune_id))


def list_prunes(jobs: PruneJobs, params: Any) -> dict[str, Any]:
    """The newest prunes first, without their snapshot lists."""
    values = query(params, ("limit",))
    limit = parse_limit(values.get("limit"), DEFAULT_LIMIT, MAX_PRUNES_LISTED)
    prunes = []
    for record in jobs.store().latest(limit):
        summary = {k: v for k, v in record.to_dict().items() if k != "plans"}
        summary["totals"] = record.totals()
        summary["plans"] = {
            name: {"status": plan.status, "phase": plan.phase, "snapshots_kept": plan.kept_count, "snapshots_removed": plan.removed_count(record.dry_run)}
            for name, plan in record.plans.items()
        }
        prunes.append(summary)
    return {"prunes": prunes}

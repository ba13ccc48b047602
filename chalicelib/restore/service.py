"""Restores as the API, the command line and the hourly check see them: quote, start, run, look up.

Restores only ever write to their target: a target bucket that is one of the backup buckets is refused.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from chalicelib.catalog.records import new_backup_id
from chalicelib.errors import BadRequest, NotFound, Tampered
from chalicelib.plans import Plan, PlanSet
from chalicelib.prices import Prices, load_prices
from chalicelib.restore.outcome import ProgressCallback
from chalicelib.restore.passes import RestorePass
from chalicelib.restore.prepare import RestoreChecks
from chalicelib.restore.quote import quote, version_heads
from chalicelib.restore.records import RestoreRecord, RestoreStore
from chalicelib.restore.requests import RestoreRequest
from chalicelib.times import isoformat, parse_iso, utcnow
from chalicelib.workers import WORKER_THREAD

logger = logging.getLogger(__name__)

# A RUNNING restore not updated for this long has lost its worker (a timeout or a crash): resume it.
STALE_AFTER = timedelta(minutes=20)


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
        prices: Prices | None = None,
        report: Callable[[str], Any] = lambda finding: None,
    ) -> None:
        """`allowed_buckets` None: any bucket that is not a backup bucket (an operator's own credentials);
        `table_prefix`: restored tables must be named with it (the functions may only create such tables);
        `prices`: for quotes and thaw times (the shipped prices file when not given)."""
        self.plans = plans
        self.clients = clients
        self.max_workers = max_workers
        self.worker_mode = worker_mode
        self.worker_function = worker_function
        self.store = RestoreStore(clients.s3, plans.catalog_bucket)
        self.prices = prices or load_prices()
        self.checks = RestoreChecks(plans, clients, allowed_buckets, table_prefix, report)
        self.passes = RestorePass(self.checks, clients, self.store, max_workers, self.prices)

    @classmethod
    def from_settings(
        cls, settings: Any, clients: Any, report: Callable[[str], Any] = lambda finding: None
    ) -> RestoreService:
        """From a `config.Settings`: the same plans, worker mode and concurrency as backups; `report` tells
        of tampering found on the way."""
        return cls(
            settings.plans,
            clients,
            max_workers=settings.max_workers,
            worker_mode=settings.worker_mode,
            worker_function=settings.worker_function,
            allowed_buckets=settings.restore_buckets,
            table_prefix=settings.restore_table_prefix,
            prices=settings.prices,
            report=report,
        )

    def quote(self, request: RestoreRequest) -> dict[str, Any]:
        """What a restore would cost and how long its thaws would take, per tier. Writes nothing."""
        plan, selected, layout = self.checks.prepare(request)
        heads = version_heads(self.clients.s3, plan, selected, self.max_workers)
        return quote(request, plan, selected, heads, self.prices, layout)

    def start(self, request: RestoreRequest) -> RestoreRecord:
        """Check everything, then record a RUNNING restore (it has not written anything yet)."""
        plan, selected, _ = self.checks.prepare(request)
        return self._record(request, plan, total=len(selected), bytes_total=sum(e.size for e in selected))

    def submit(self, request: RestoreRequest) -> RestoreRecord:
        """`POST /restores`: only what is cheap is checked here (the plan, the target, that the backup
        exists); the record is PREPARING and the worker does the rest (selecting the entries, the conflict
        check at the target, the quote of a dry run), which reads whole manifests and heads versions: more
        than a request's 29 seconds and 256 MB allow for a large snapshot."""
        plan = self.checks.plan(request.plan)
        self.checks.target(plan, request.target)
        # A snapshot retention removed is refused at once (410), not by the worker.
        self.checks.not_pruned(plan, request.backup_id)
        try:
            self.checks.records.get(request.backup_id)
        except Tampered:
            pass  # reported by the worker, which finds the snapshot from the plan and the backup id alone
        return self._record(request, plan, status="PREPARING", dry_run=request.dry_run)

    def _record(self, request: RestoreRequest, plan: Plan, **fields: Any) -> RestoreRecord:
        """Record a new restore of `request` (create-only), with `fields` set."""
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
            created_at=now,
            updated_at=now,
            **fields,
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
            threading.Thread(target=self._run_logged, args=(record.restore_id,), name=f"{WORKER_THREAD}restore {record.restore_id}", daemon=True).start()
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
        return self.passes.run(restore_id, progress)

    def resume_pending(self, now: datetime | None = None) -> list[RestoreRecord]:
        """The hourly check: run another pass of each restore waiting for a thaw or left RUNNING by a lost worker."""
        now = now or utcnow()
        done: list[RestoreRecord] = []
        for restore_id in self.store.unfinished():
            try:
                record = self.store.get(restore_id)
            except NotFound:
                continue
            if record.status in ("RUNNING", "PREPARING") and record.updated_at:
                if now - parse_iso(record.updated_at) < STALE_AFTER:
                    continue  # its worker is probably still at it
            if record.finished:
                self.store.save(record)  # drops the queue entry
                continue
            try:
                done.append(self.run(restore_id))
            except Exception:
                logger.exception("restore %s: resuming failed; the next check tries again", restore_id)
        return done


def restore_worker_name(backup_worker: str | None) -> str:
    """The deployed restore worker sits beside the backup worker: `<app>-<stage>-restore_worker`."""
    if not backup_worker or not backup_worker.endswith("backup_worker"):
        raise BadRequest("WORKER_FUNCTION_NAME must name the backup worker to find the restore worker beside it")
    return backup_worker[: -len("backup_worker")] + "restore_worker"

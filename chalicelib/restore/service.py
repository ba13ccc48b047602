"""Restores as the API, the command line and the hourly check see them: quote, start, run, look up.

Restores only ever write to their target: a target bucket that is one of the backup buckets is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from chalicelib.errors import NotFound, Pruned, Tampered
from chalicelib.jobs.budget import budget_for
from chalicelib.jobs.dispatch import Dispatcher, Invoker, worker_beside, worker_invoker, worker_lost
from chalicelib.jobs.ids import new_job_id
from chalicelib.jobs.runner import Checkpoint
from chalicelib.plans import Plan, PlanSet
from chalicelib.prices import Prices, load_prices
from chalicelib.restore.outcome import ProgressCallback
from chalicelib.restore.passes import RestorePass
from chalicelib.restore.prepare import RestoreChecks
from chalicelib.restore.quote import quote
from chalicelib.restore.record import RestoreRecord, RestoreStatus, RestoreStore
from chalicelib.restore.requests import RestoreRequest
from chalicelib.restore.versions import listing_prefixes, version_heads
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

RESTORE_WORKER = "restore_worker"
# A pass writes the restore's record when it starts (restore/passes.py) and runs within one invocation, which
# Lambda ends after at most 15 minutes: a RUNNING restore whose record is older than that has lost its worker.
PASS_TIME_LIMIT = timedelta(minutes=15)


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
        split: tuple[int, int] = (0, 1),
        invoker: Invoker | None = None,
        store: RestoreStore | None = None,
        origin: str = "backup",
    ) -> None:
        """`allowed_buckets` None: any bucket that is not a backup bucket (an operator's own credentials);
        `table_prefix`: restored tables must be named with it (the functions may only create such tables);
        `prices`: for quotes and thaw times (the shipped prices file when not given); `split`:
        (split_objects, max_parallel) for a first pass cut into parts (restore/parts.py), which only a worker
        that can have new invocations does; `invoker`: how it has them (tests; by default the worker mode's);
        `store`: where the restores are recorded (the catalog bucket's when not given); `origin`: where they
        read ("backup" or "offsite"), sent with every invocation of a worker so that it reads there too."""
        self.plans = plans
        self.clients = clients
        self.max_workers = max_workers
        self.worker_mode = worker_mode
        self.worker_function = worker_function
        self.invoker = invoker
        self.origin = origin
        self.store = store or RestoreStore(clients.s3, plans.catalog_bucket)
        self.prices = prices or load_prices()
        self.checks = RestoreChecks(plans, clients, allowed_buckets, table_prefix, report)
        self.passes = RestorePass(self.checks, clients, self.store, max_workers, self.prices, split)

    @classmethod
    def from_settings(
        cls, settings: Any, clients: Any, report: Callable[[str], Any] = lambda finding: None,
        store: RestoreStore | None = None, origin: str = "backup",
    ) -> RestoreService:
        """From a `config.Settings`: the same plans, worker mode and concurrency as backups; `report` tells
        of tampering found on the way; `store` and `origin` as for the constructor."""
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
            split=(settings.split_objects, settings.max_parallel_ranges),
            store=store,
            origin=origin,
        )

    def quote(self, request: RestoreRequest) -> dict[str, Any]:
        """What a restore would cost and how long its thaws would take, per tier. Writes nothing."""
        prepared = self.checks.prepare(request)
        plan, selected = prepared.plan, prepared.selected
        prefixes = listing_prefixes(plan, request.prefix, request.keys)
        heads = version_heads(self.clients.s3, plan, selected, prefixes, self.max_workers)
        return quote(request, plan, selected, heads, self.prices, prepared.layout, prepared.manifest)

    def start(self, request: RestoreRequest) -> RestoreRecord:
        """Record a RUNNING restore while everything is checked, then look at its snapshot's pruned marker
        (catalog/restoring.py: only a look after the record exists holds the snapshot): two round trips before
        the first copy. A request the checks refuse raises, and its record ends refused (FAILED, naming why).
        What the checks read (the selection, the archived versions) is kept for its first pass in this
        process (`run`)."""
        plan = self.checks.plan(request.plan)
        self.checks.target_allowed(request.target)
        with ThreadPoolExecutor(max_workers=1) as pool:
            created = pool.submit(self._created, request, plan)
            try:
                prepared = self.checks.prepare(request, list_archived=True)
            except Exception as exc:
                # Whatever stopped the checks (a refusal, or S3 failing): the record must not stay queued, or the
                # hourly check would carry out a restore its caller was told had not started.
                record, etag = created.result()
                self.passes.refuse(Checkpoint(self.store, record, etag, None), exc)
                raise
            record, etag = created.result()
        self._refused_if_pruned(record, etag, plan)
        # Saved with the record's next write, by the first pass.
        record.total, record.bytes_total = len(prepared.selected), sum(e.size for e in prepared.selected)
        record.snapshot_held = True
        self.passes.carry(record, etag, prepared)
        return record

    def submit(self, request: RestoreRequest) -> RestoreRecord:
        """`POST /restores`: only what is cheap is checked here (the plan, the target, that the backup
        exists); the record is PREPARING and the worker does the rest (selecting the entries, the conflict
        check at the target, the quote of a dry run), which reads whole manifests and heads versions: more
        than a request's 29 seconds and 256 MB allow for a large snapshot."""
        plan = self.checks.plan(request.plan)
        self.checks.target(plan, request.target)
        # A snapshot retention removed is refused at once (410), not by the worker, and without a record.
        self.checks.not_pruned(plan, request.backup_id)
        try:
            self.checks.records.get(request.backup_id)
        except Tampered:
            pass  # reported by the worker, which finds the snapshot from the plan and the backup id alone
        record, etag = self._created(request, plan, status=RestoreStatus.PREPARING, dry_run=request.dry_run)
        # Marked since the look above (the worker looks again before it reads anything): refused at once too.
        self._refused_if_pruned(record, etag, plan)
        return record

    def _refused_if_pruned(self, record: RestoreRecord, etag: str, plan: Plan) -> None:
        """The restore's look at its snapshot's pruned marker once its record exists (catalog/restoring.py):
        with none, every prune keeps the snapshot whole until the restore ends; with one, the record ends
        refused and `Pruned` is raised (HTTP 410)."""
        try:
            self.checks.not_pruned(plan, record.backup_id)
        except Pruned as exc:
            self.passes.refuse(Checkpoint(self.store, record, etag, None), exc)
            raise

    def _created(self, request: RestoreRequest, plan: Plan, **fields: Any) -> tuple[RestoreRecord, str]:
        """Record a new restore of `request` (create-only), with `fields` set; the record and its ETag."""
        now = isoformat(utcnow())
        target = {k: v for k, v in asdict(request.target).items() if v not in (None, "") or k == "prefix"}
        record = RestoreRecord(
            restore_id=new_job_id(),
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
        return record, self.store.create(record)

    def get(self, restore_id: str) -> RestoreRecord:
        return self.store.get(restore_id)

    def latest(self, limit: int = 20) -> list[RestoreRecord]:
        """The newest restores; the parts of one cut into parts are in the whole one's counts."""
        return [record for record in self.store.latest(limit) if not record.part_of]

    def dispatch(self, record: RestoreRecord) -> None:
        """Run the first pass by the configured worker mode (as backups do)."""
        if self.worker_mode != "inline":
            self.passes.drop(record.restore_id)
        Dispatcher("restore", "restore_id", self.run, self._invoker(), self.worker_mode, inline_raises=True)(record.restore_id)

    def _invoker(self) -> Invoker | None:
        """How a new invocation of the restore worker is had; it is told where the restore reads (`origin`)."""
        function = worker_beside(self.worker_function, RESTORE_WORKER) if self.worker_mode == "lambda" else ""
        invoker = worker_invoker(self.worker_mode, self.clients.lambda_, function, self.invoker)
        if invoker is None or self.origin == "backup":
            return invoker
        to = invoker
        return lambda payload: to({**payload, "from": self.origin})

    def run(self, restore_id: str, progress: ProgressCallback | None = None, context: Any = None) -> RestoreRecord:
        """One pass. The first pass covers the whole selection; later ones the versions waiting for a thaw.
        `context`: the Lambda invocation's (its remaining time); a first pass that needs more stops at a
        checkpoint and the restore worker carries it on."""
        budget = budget_for(context)
        invoker = self._invoker() if budget is not None else None
        return self.passes.run(restore_id, progress, budget, invoker)

    def resume_pending(self, now: datetime | None = None, context: Any = None) -> list[RestoreRecord]:
        """The hourly check: run another pass of each restore waiting for a thaw or left RUNNING by a lost
        worker. A worker that is not lost after all (or is retried meanwhile) and this check work from the same
        version of the record: the first to write it carries the pass on, the other stops (restore/passes.py).
        `context`: the invocation's (its remaining time): a pass too long for it is carried on by the restore
        worker, and restores not reached when time runs short wait for the next check."""
        now = now or utcnow()
        # Only a deployed check has a time limit (and a worker to hand a long pass to).
        budget = budget_for(context) if self.worker_mode == "lambda" else None
        done: list[RestoreRecord] = []
        for restore_id in self.store.unfinished():
            if budget is not None and budget.running_out():
                logger.warning("the hourly check ran short of time; the next one resumes the restores left")
                break
            try:
                record = self.store.get(restore_id)
            except (NotFound, ValueError) as exc:
                logger.warning("queued restore %r not read: %s", restore_id, exc)
                continue
            working = record.status in (RestoreStatus.RUNNING, RestoreStatus.PREPARING)
            if working and not worker_lost(record.updated_at, now, PASS_TIME_LIMIT):
                continue  # its worker may still be at it
            if record.finished:
                self.store.dequeue(restore_id)  # the only way out of the queue (restore/record.py)
                continue
            try:
                done.append(self.run(restore_id, context=context))
            except Exception:
                logger.exception("restore %s: resuming failed; the next check tries again", restore_id)
        return done

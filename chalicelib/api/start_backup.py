"""POST /backup: starting a backup safely. The request is checked, its Idempotency-Key claimed and its plans
locked before it is recorded and handed to a worker; a refusal gives back what was taken.

Every client mistake becomes a typed error (chalicelib/errors.py) with a message saying what was wrong and
how to fix it; `app.py` maps those to HTTP. Nothing is written before a request has been fully checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.api.idempotency import Claim, IdempotencyKeys, check_key, fingerprint
from chalicelib.api.requests import check_body, parse_backup_request
from chalicelib.jobs.locks import DEFAULT_LOCK_LIFETIME, PlanLocks
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import BackupRecord, RecordStore, new_backup_id
from chalicelib.catalog.run_keys import new_run_key
from chalicelib.errors import NotFound
from chalicelib.times import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    record: BackupRecord
    # True when an Idempotency-Key found an earlier request's backup: nothing new was started.
    replayed: bool


def start_backup(
    backups: BackupService,
    raw_body: bytes | None,
    content_type: str | None,
    idempotency_key: str | None,
    now: datetime | None = None,
    lock_lifetime: timedelta = DEFAULT_LOCK_LIFETIME,
) -> Started:
    """Check the request, then claim its idempotency key, lock its plans, record it and hand it to a worker.

    Any refusal gives back what was taken, so a rejected request leaves nothing behind. A dry run writes no
    backup data, but it reads every source: it takes the plan locks like a backup.
    """
    request = parse_backup_request(check_body(raw_body, content_type))
    key = check_key(idempotency_key)
    names = backups.check_plan_names(request.plans)
    now = now or utcnow()
    backup_id = new_backup_id(now)
    s3 = backups.clients.s3
    catalog = backups.settings.plans.catalog_bucket
    keys = IdempotencyKeys(s3, catalog)
    locks = PlanLocks(s3, catalog, backups.records, lifetime=lock_lifetime)
    allowed = backups.check_plan_names(request.allow_deletions) if request.allow_deletions else []
    # (allow_deletions only when given, so the fingerprint of a plain request is what it always was)
    request_print = fingerprint(
        {"plans": names, "dry_run": request.dry_run} | ({"allow_deletions": allowed} if allowed else {})
    )

    def is_recorded(first: str) -> bool:
        return _exists(backups.records, first)

    # Read-only checks first: a repeated key is answered, a held plan refused, before anything is written.
    if key is not None:
        first = keys.lookup(key, request_print, now, is_recorded)
        if first is not None:
            logger.info("Idempotency-Key repeated: answering with backup %s", first)
            return Started(backups.get(first), replayed=True)
    # A dry run takes the locks too: it lists every source and scans the production table, work that must not
    # pile up beside a running backup of the same plan or another dry run.
    locks.check(names, now)
    # Then the conditional writes, which settle races between requests arriving together.
    claim: Claim | None = None
    if key is not None:
        claim = keys.claim(key, request_print, backup_id, now, is_recorded)
        if claim.existing is not None:
            return Started(backups.get(claim.existing), replayed=True)
    locked: list[str] = []
    try:
        locks.acquire(names, backup_id, now)
        locked = names
        run_key = new_run_key()
        record = backups.start(
            names, trigger="api", dry_run=request.dry_run, backup_id=backup_id, allow_deletions=allowed,
            run_key=run_key,
        )
    except BaseException:
        if locked:
            locks.release(locked, backup_id)
        if claim is not None and key is not None:
            keys.release(key, claim, backup_id)
        raise
    backups.dispatch(record, run_key)
    return Started(record, replayed=False)


def _exists(records: RecordStore, backup_id: str) -> bool:
    try:
        records.get(backup_id)
    except NotFound:
        return False
    return True

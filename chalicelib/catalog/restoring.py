"""Where restore records are kept, and which snapshots unfinished restores are reading: retention keeps
those (a thaw from Deep Archive takes up to two days, and a restore must not lose its versions halfway).

Restores write their records (`restore/record.py`); the prune only reads them, through this module, so
that neither imports the other. A restore's statuses are here for the same reason.

Neither side can miss the other, whatever the interleaving, because each writes before it reads the
other's writes (S3 is strongly consistent after a write): a restore creates its record, then reads the
snapshot's pruned marker and is refused if there is one; a prune writes its markers, then lists the
unfinished restores and keeps every version their snapshots name, marked or not, until a later prune. So
a restore either saw the marker (refused before it wrote anything), or its record was there when the prune
listed restores after marking (its snapshot held whole while it runs)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import NotFound
from chalicelib.jobs.ids import job_time
from chalicelib.layout import RESTORE_QUEUE_PREFIX, RESTORES_PREFIX
from chalicelib.s3docs import get_json, inverted_key

logger = logging.getLogger(__name__)


class RestoreStatus(StrEnum):
    # Recorded by the API, not yet checked (the worker selects, checks and quotes).
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    WAITING_FOR_THAW = "WAITING_FOR_THAW"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    # A dry run's quote is ready.
    QUOTED = "QUOTED"


FINISHED = frozenset({RestoreStatus.SUCCEEDED, RestoreStatus.PARTIAL, RestoreStatus.FAILED, RestoreStatus.QUOTED})


def restore_record_key(restore_id: str) -> str:
    """`meta/restores/<inverted time>_<restore_id>.json`. NotFound when `restore_id` is not a restore id."""
    return inverted_key(RESTORES_PREFIX, job_time(restore_id, "restore"), restore_id)


def snapshots_being_restored(s3: Any, catalog_bucket: str) -> dict[tuple[str, str], str]:
    """(plan, backup id) -> restore id, for every restore in the queue of unfinished ones. A queue entry
    whose record cannot be read keeps nothing (the restore worker refuses it too)."""
    found: dict[tuple[str, str], str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=catalog_bucket, Prefix=RESTORE_QUEUE_PREFIX):
        for item in page.get("Contents", []):
            restore_id = item["Key"][len(RESTORE_QUEUE_PREFIX):]
            try:
                record = get_json(s3, catalog_bucket, restore_record_key(restore_id))
            except (NotFound, ClientError, BotoCoreError, ValueError) as exc:
                logger.warning("queued restore %r not read: %s", restore_id, exc)
                continue
            if not isinstance(record, dict) or record.get("status") in FINISHED:
                continue
            plan, backup_id = record.get("plan"), record.get("backup_id")
            if isinstance(plan, str) and isinstance(backup_id, str):
                found[(plan, backup_id)] = restore_id
    return found

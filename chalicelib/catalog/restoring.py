"""Where restore records are kept, and which snapshots unfinished restores are reading: retention keeps
those (a thaw from Deep Archive takes up to two days, and a restore must not lose its versions halfway).

Restores write their records (`restore/records.py`); the prune only reads them, through this module, so
that neither imports the other."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import backup_time
from chalicelib.errors import NotFound
from chalicelib.layout import RESTORE_QUEUE_PREFIX, RESTORES_PREFIX
from chalicelib.s3docs import inverted_key

logger = logging.getLogger(__name__)

RESTORE_ID = re.compile(r"^\d{8}T\d{9}Z-[a-z0-9-]{1,40}$")
FINISHED = ("SUCCEEDED", "PARTIAL", "FAILED", "QUOTED")


def restore_record_key(restore_id: str) -> str:
    if not RESTORE_ID.match(restore_id):
        raise NotFound(f"{restore_id!r} is not a restore id (expected e.g. 20261126T134735123Z-9f2c4a1b)")
    return inverted_key(RESTORES_PREFIX, backup_time(restore_id), restore_id)


def snapshots_being_restored(s3: Any, catalog_bucket: str) -> dict[tuple[str, str], str]:
    """(plan, backup id) -> restore id, for every restore in the queue of unfinished ones. A queue entry
    whose record cannot be read keeps nothing (the restore worker refuses it too)."""
    found: dict[tuple[str, str], str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=catalog_bucket, Prefix=RESTORE_QUEUE_PREFIX):
        for item in page.get("Contents", []):
            restore_id = item["Key"][len(RESTORE_QUEUE_PREFIX):]
            try:
                body = s3.get_object(Bucket=catalog_bucket, Key=restore_record_key(restore_id))["Body"].read()
                record = json.loads(body)
            except (NotFound, ClientError, BotoCoreError, ValueError) as exc:
                logger.warning("queued restore %r not read: %s", restore_id, exc)
                continue
            if not isinstance(record, dict) or record.get("status") in FINISHED:
                continue
            plan, backup_id = record.get("plan"), record.get("backup_id")
            if isinstance(plan, str) and isinstance(backup_id, str):
                found[(plan, backup_id)] = restore_id
    return found

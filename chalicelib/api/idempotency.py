"""`Idempotency-Key` for POST /backup: the same key within 24 hours answers with the first backup and starts
nothing.

A key is claimed by a conditional create of `meta/idempotency/<sha256(key)>.json` in the catalog bucket, so
two requests with the same key racing each other cannot both start a backup: S3 lets one create win. The
claim names the backup id and a fingerprint of the request (plans, dry_run); the same key with a different
request is refused rather than silently answered with an unrelated backup.

The key itself is never stored, only its SHA-256: keys may be chosen by callers and need not be secret-safe.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib import s3docs
from chalicelib.errors import AlreadyExists, BadRequest, Conflict, Unprocessable
from chalicelib.layout import IDEMPOTENCY_PREFIX
from chalicelib.times import isoformat

WINDOW = timedelta(hours=24)
# A claim whose backup was never recorded belongs to a request still being answered (API Gateway gives up
# after 29 s); after this long the request is known to have failed and the key may be used again.
UNRECORDED_GRACE = timedelta(seconds=60)
FUTURE_SLACK = timedelta(minutes=5)
_KEY = re.compile(r"^[!-~]{1,255}$")
_ROUNDS = 3


@dataclass(frozen=True)
class Claim:
    """The outcome of presenting a key: `existing` is the first request's backup id, or None if this
    request now owns the key (and `etag` identifies the claim, to give it back)."""

    existing: str | None
    etag: str | None = None
    claimed_at: datetime | None = None


def check_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY.match(value):
        raise BadRequest(
            "the Idempotency-Key header must be 1 to 255 printable ASCII characters without spaces, "
            "e.g. a UUID such as 4f0c9e9e-5d6b-4c89-9c3e-2f1d8e7a6b5c"
        )
    return value


def document_key(key: str) -> str:
    return f"{IDEMPOTENCY_PREFIX}{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode("utf-8")).hexdigest()


def _created_at(data: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(data["created_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None


class IdempotencyKeys:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def lookup(self, key: str, request_fingerprint: str, now: datetime, is_recorded: Callable[[str], bool]) -> str | None:
        """The backup an earlier request with this key started, or None when the key is free. Reads only.

        `is_recorded(backup_id)` tells whether a backup exists: a claim whose backup is missing belongs to
        an earlier request still in progress (`Conflict`) or to one that failed (the key is free again).
        """
        current = s3docs.read(self.s3, self.bucket, document_key(key))
        return None if current is None else self._first(current, request_fingerprint, now, is_recorded)

    def claim(
        self, key: str, request_fingerprint: str, backup_id: str, now: datetime, is_recorded: Callable[[str], bool]
    ) -> Claim:
        """Claim `key` for `backup_id`, or find the backup an earlier request with this key started."""
        doc_key = document_key(key)
        body = {"backup_id": backup_id, "created_at": isoformat(now), "request": request_fingerprint}
        for _ in range(_ROUNDS):
            current = s3docs.read(self.s3, self.bucket, doc_key)
            try:
                if current is None:
                    return Claim(None, s3docs.create(self.s3, self.bucket, doc_key, body), now)
                first = self._first(current, request_fingerprint, now, is_recorded)
                if first is not None:
                    return Claim(first)
                # Expired, unreadable, or left by a request that failed before recording its backup.
                return Claim(None, s3docs.replace(self.s3, self.bucket, doc_key, body, current.etag), now)
            except AlreadyExists:
                continue
        raise Conflict("requests with this Idempotency-Key are being processed right now; retry in a few seconds")

    @staticmethod
    def _first(
        current: s3docs.Document, request_fingerprint: str, now: datetime, is_recorded: Callable[[str], bool]
    ) -> str | None:
        created = _created_at(current.data)
        first = current.data.get("backup_id")
        # A claim dated in the future was not made by a request of ours: the key is free.
        if created is None or not isinstance(first, str) or now - created > WINDOW or created > now + FUTURE_SLACK:
            return None
        if current.data.get("request") != request_fingerprint:
            raise Unprocessable(
                "this Idempotency-Key was already used in the last 24 hours for a different request "
                f"(backup {first}); use a new key for a new request"
            )
        if is_recorded(first):
            return first
        if now - created < UNRECORDED_GRACE:
            raise Conflict(
                "a request with this Idempotency-Key is still being processed; retry in a few seconds",
                backup_id=first,
            )
        return None

    def release(self, key: str, claim: Claim, backup_id: str) -> None:
        """Give the key back when the request it was claimed for is refused, so a retry can use it."""
        current = s3docs.read(self.s3, self.bucket, document_key(key))
        if current is not None and current.data.get("backup_id") == backup_id:
            s3docs.remove(self.s3, self.bucket, document_key(key))

"""Archived versions: a version in GLACIER or DEEP_ARCHIVE cannot be read or copied until S3 thaws it
(`RestoreObject`). A restore asks for the thaw, lists the version as pending with the time it should be
ready, and copies it in a later pass. A pack is thawed once for all of its objects a restore needs
(`PackThaws`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import Entry
from chalicelib.errors import error_code
from chalicelib.prices import Prices
from chalicelib.restore.outcome import Outcome
from chalicelib.times import isoformat, parse_iso, utcnow

ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# How long S3 keeps a thawed copy readable: long enough for a few hourly checks to pick it up.
THAW_DAYS = 3
# Expedited retrievals are for Glacier Flexible Retrieval objects under 250 MB only.
EXPEDITED_MAX_BYTES = 250 * 1000**2


def effective_tier(storage_class: str, tier: str, size: int) -> str:
    """The tier S3 will accept for this object: Expedited only exists for small Glacier Flexible Retrieval
    objects; anything else asked for as Expedited is thawed at Standard."""
    if tier == "Expedited" and (storage_class != "GLACIER" or size > EXPEDITED_MAX_BYTES):
        return "Standard"
    return tier


def is_archived(head: dict[str, Any]) -> bool:
    """Archived and not readable now: no finished thaw (`Restore: ongoing-request="false", ...`)."""
    if head.get("StorageClass") not in ARCHIVE_CLASSES:
        return False
    return 'ongoing-request="false"' not in (head.get("Restore") or "")


def request_thaw(
    s3: Any, bucket: str, entry: Entry, head: dict[str, Any], tier: str, pending: list[dict[str, Any]], prices: Prices
) -> Outcome:
    """Ask S3 to thaw the entry's version (unless a thaw is already under way) and describe it as pending,
    ready by the documented upper bound of the tier's wait (in the prices file, beside its price).
    `pending` is the restore's list of versions already waiting: a thaw keeps its first request time."""
    storage_class = head["StorageClass"]
    tier = effective_tier(storage_class, tier, entry.size)
    if not head.get("Restore"):
        try:
            _restore_object(s3, bucket, entry, tier)
        except ClientError as exc:
            code = error_code(exc)
            if code == "GlacierExpeditedRetrievalNotAvailable":
                # No Expedited capacity right now (S3 answers 503): Standard is the next fastest.
                tier = "Standard"
                _restore_object(s3, bucket, entry, tier)
            elif code != "RestoreAlreadyInProgress":
                # A thaw already under way (another pass asked) is what we want anyway.
                raise
    previous = next((p for p in pending if p["entry"]["key"] == entry.key and p["entry"]["source"] == entry.source), None)
    requested_at = previous["requested_at"] if previous else isoformat(utcnow())
    ready_by = parse_iso(requested_at) + timedelta(hours=prices.retrieval[(storage_class, tier)].thaw_hours)
    return Outcome(
        "pending",
        entry,
        pending={
            "entry": json.loads(entry.to_json()),
            "storage_class": storage_class,
            "tier": tier,
            "requested_at": requested_at,
            "ready_by": isoformat(ready_by),
        },
    )


def _restore_object(s3: Any, bucket: str, entry: Entry, tier: str) -> None:
    s3.restore_object(
        Bucket=bucket,
        Key=entry.stored_key,
        VersionId=entry.version_id,
        RestoreRequest={"Days": THAW_DAYS, "GlacierJobParameters": {"Tier": tier}},
    )


class PackThaws:
    """What the entries of one batch of a pass learnt of their packs: each pack version is headed once and
    thawed once, for all of its objects the batch restores (the first of them asks, the others wait with it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: dict[tuple[str, str], Future[dict[str, Any] | None]] = {}
        self._asked: set[tuple[str, str]] = set()

    def head(self, entry: Entry, look: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """The entry's stored version as `look` describes it; a pack's, looked at once per batch: the first of
        its objects looks, the others (on other threads) wait for that answer."""
        if not entry.packed:
            return look()
        ident = (entry.stored_key, entry.version_id)
        with self._lock:
            answer = self._heads.get(ident)
            first = answer is None
            if answer is None:
                answer = self._heads[ident] = Future()
        if first:
            try:
                answer.set_result(look())
            except BaseException as exc:
                answer.set_exception(exc)
                raise
        return answer.result()

    def asked(self, entry: Entry, head: dict[str, Any]) -> dict[str, Any]:
        """`head`, as `request_thaw` should take it: for an object of a pack whose thaw another object of the
        batch asked for already, with that thaw under way (so no second RestoreObject is sent)."""
        if not entry.packed:
            return head
        ident = (entry.stored_key, entry.version_id)
        with self._lock:
            if ident not in self._asked:
                self._asked.add(ident)
                return head
        return {**head, "Restore": head.get("Restore") or 'ongoing-request="true"'}

"""Pruned markers: the statement, written before a prune deletes anything of a snapshot, that the snapshot
is being removed. One small create-only document per plan snapshot in the catalog bucket:

    meta/pruned/<inverted time>_<backup_id>/<plan>.json

Once a marker exists the snapshot is gone for every reader, whatever is still stored of it: restores and
verifications refuse it (`Pruned`, HTTP 410), no backup takes it as its base, the listing shows it pruned
with the time, and the next prune treats its versions as unreferenced. A marker is never removed (the bucket
policy refuses overwrites and deletes under `meta/pruned/`), so a snapshot half deleted by a crashed prune
can never be mistaken for a whole one.

The name shares its inverted-time stem with the backup's record (`meta/backups/<stem>.json`), so the markers
of a page of `GET /backups` are one contiguous range: one listing request reads them all.

In a vault (`PlanSet.in_vaults`) the markers under `meta/pruned/` are replicas of the backup bucket's, written
by whoever may write there in the backup account. The vault's own prune writes and honours only its own, under
`meta/vault-pruned/`, which replication never writes (`marker_prefix`); a reader of the vault refuses a snapshot
marked under either (`refusing`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from chalicelib import s3docs
from chalicelib.catalog.records import is_backup_id, record_key
from chalicelib.errors import AlreadyExists, Pruned
from chalicelib.layout import PRUNED_PREFIX, RECORDS_PREFIX, VAULT_PRUNED_PREFIX
from chalicelib.plans import Plan, PlanSet
from chalicelib.times import isoformat

_SUFFIX = ".json"


def _stem(backup_id: str) -> str:
    """`<inverted time>_<backup_id>`: the record key's name without its prefix and suffix."""
    return record_key(backup_id)[len(RECORDS_PREFIX):].removesuffix(_SUFFIX)


def marker_key(plan: str, backup_id: str, prefix: str = PRUNED_PREFIX) -> str:
    return f"{prefix}{_stem(backup_id)}/{plan}{_SUFFIX}"


def marker_prefix(plans: PlanSet) -> str:
    """Where the prune of `plans` writes its markers, and the only markers it honours: a vault's prune its own,
    never the replicas of the backup bucket's prune's."""
    return VAULT_PRUNED_PREFIX if plans.in_vault else PRUNED_PREFIX


def refusing(s3: Any, bucket: str, plan: Plan) -> list[PrunedMarkers]:
    """The markers that make a reader of `plan` refuse a snapshot: the prune's; in a vault, the replicated ones
    and the vault prune's own (one more GET, on the vault's reads alone)."""
    prefixes = (PRUNED_PREFIX, VAULT_PRUNED_PREFIX) if plan.in_vault else (PRUNED_PREFIX,)
    return [PrunedMarkers(s3, bucket, prefix) for prefix in prefixes]


def refusal(s3: Any, bucket: str, plan: Plan, backup_id: str) -> Marker | None:
    """The first marker (`refusing`) of the plan's snapshot of the backup, or None when none marks it."""
    for markers in refusing(s3, bucket, plan):
        marker = markers.get(plan.name, backup_id)
        if marker is not None:
            return marker
    return None


def check_readable(s3: Any, bucket: str, plan: Plan, backup_id: str, action: str) -> None:
    """`Pruned` when a marker (`refusing`) names the snapshot; `action` completes "it cannot be ..."."""
    marker = refusal(s3, bucket, plan, backup_id)
    if marker is not None:
        raise marker.refusal(action)


@dataclass(frozen=True)
class Marker:
    plan: str
    backup_id: str
    # When the marker was written (S3's own time for it), and by which prune.
    marked_at: str
    prune_id: str | None = None

    def refusal(self, action: str) -> Pruned:
        by = f" by prune {self.prune_id}" if self.prune_id else ""
        return Pruned(
            f"backup {self.backup_id}'s snapshot of plan {self.plan!r} was pruned at {self.marked_at}{by} "
            f"(the plan's retention policy no longer keeps it): it cannot be {action}"
        )


def _parse_key(key: str, prefix: str) -> tuple[str, str] | None:
    """(plan, backup id) of a marker key, or None for anything else under the prefix."""
    stem, _, name = key[len(prefix):].partition("/")
    if not name.endswith(_SUFFIX) or "/" in name:
        return None
    backup_id = stem.partition("_")[2]
    if not is_backup_id(backup_id) or _stem(backup_id) != stem:
        return None
    return name.removesuffix(_SUFFIX), backup_id


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        return isoformat(value.astimezone(timezone.utc))
    return str(value)


class PrunedMarkers:
    """Reads and writes pruned markers in the catalog bucket, under `prefix` (`marker_prefix`)."""

    def __init__(self, s3: Any, bucket: str, prefix: str = PRUNED_PREFIX) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def mark(self, plan: str, backup_id: str, prune_id: str, now: datetime) -> bool:
        """Mark the plan's snapshot of the backup as pruned; False when it already was (by this prune's
        earlier invocation or another prune: the first marker stands)."""
        body = {"plan": plan, "backup_id": backup_id, "prune_id": prune_id, "marked_at": isoformat(now)}
        try:
            s3docs.put_new(
                self.s3,
                Bucket=self.bucket,
                Key=marker_key(plan, backup_id, self.prefix),
                Body=json.dumps(body).encode("utf-8"),
                ContentType="application/json",
            )
        except AlreadyExists:
            return False
        return True

    def get(self, plan: str, backup_id: str) -> Marker | None:
        """The marker of one snapshot, or None when it is not pruned (one GET)."""
        document = s3docs.read(self.s3, self.bucket, marker_key(plan, backup_id, self.prefix))
        if document is None:
            return None
        data = document.data
        return Marker(plan, backup_id, str(data.get("marked_at") or "unknown time"), data.get("prune_id"))

    def check(self, plan: str, backup_id: str, action: str) -> None:
        """`Pruned` when the snapshot was pruned; `action` completes "it cannot be ..."."""
        marker = self.get(plan, backup_id)
        if marker is not None:
            raise marker.refusal(action)

    def all(self) -> dict[tuple[str, str], str]:
        """Every pruned snapshot: (plan, backup id) -> when it was marked (one request per thousand markers)."""
        return self._listed(self.prefix, None)

    def for_backups(self, backup_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """For each of the backups that has any pruned snapshot: plan -> when it was marked. The backups'
        markers sit in one key range (newest first, like records): usually one listing request."""
        stems = sorted(_stem(backup_id) for backup_id in backup_ids)
        if not stems:
            return {}
        found: dict[str, dict[str, str]] = {}
        wanted = set(backup_ids)
        for (plan, backup_id), when in self._listed(f"{self.prefix}{stems[0]}", f"{self.prefix}{stems[-1]}/~").items():
            if backup_id in wanted:
                found.setdefault(backup_id, {})[plan] = when
        return found

    def _listed(self, start: str, stop: str | None) -> dict[tuple[str, str], str]:
        """Markers from `start` (inclusive prefix) up to `stop`, with S3's time of each."""
        found: dict[tuple[str, str], str] = {}
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if start > self.prefix:
            # StartAfter is exclusive: the stem itself sorts just before its own markers.
            params["StartAfter"] = start
        for page in self.s3.get_paginator("list_objects_v2").paginate(**params):
            for item in page.get("Contents", []):
                if stop is not None and item["Key"] > stop:
                    return found
                parsed = _parse_key(item["Key"], self.prefix)
                if parsed is not None:
                    found[parsed] = _time(item.get("LastModified"))
        return found

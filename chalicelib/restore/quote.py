"""What a restore would cost and how long its thaws would take, per retrieval tier. Writes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import Entry
from chalicelib.errors import error_code
from chalicelib.plans import Plan
from chalicelib.restore.folder_layout import FolderLayout
from chalicelib.restore.requests import TIERS, RestoreRequest
from chalicelib.restore.thaw import ARCHIVE_CLASSES, THAW_HOURS, effective_tier, is_archived

# List prices, us-east-1 (USD): retrieval per GB and per 1,000 requests.
RETRIEVAL_PRICES = {
    ("GLACIER", "Expedited"): (0.03, 10.0),
    ("GLACIER", "Standard"): (0.01, 0.05),
    ("GLACIER", "Bulk"): (0.0, 0.0),
    ("DEEP_ARCHIVE", "Standard"): (0.02, 0.10),
    ("DEEP_ARCHIVE", "Bulk"): (0.0025, 0.025),
}
# Per 1,000 requests: COPY (each restored object) and GET (reading an export or downloading to a folder).
COPY_PRICE_PER_1000 = 0.005
GET_PRICE_PER_1000 = 0.0004
_GB = 1000**3


def version_heads(s3: Any, plan: Plan, entries: list[Entry], max_workers: int) -> list[dict[str, Any] | None]:
    """S3's answer about each entry's version (storage class, thaw state); None for a version that is gone."""

    def head(entry: Entry) -> dict[str, Any] | None:
        try:
            return dict(s3.head_object(Bucket=plan.bucket, Key=entry.data_key, VersionId=entry.version_id))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion", "405"):
                return None
            raise

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(head, entries))


def quote(
    request: RestoreRequest,
    plan: Plan,
    selected: list[Entry],
    heads: list[dict[str, Any] | None],
    layout: FolderLayout | None = None,
) -> dict[str, Any]:
    """The quote of the whole selection; for a folder target (`layout`), also the keys the restore would
    report instead of writing (collisions, invalid names, folder markers with content)."""
    archived: dict[str, dict[str, int]] = {c: {"objects": 0, "bytes": 0} for c in ARCHIVE_CLASSES}
    thawed = missing = 0
    for entry, head in zip(selected, heads):
        if head is None:
            missing += 1
        elif head.get("StorageClass") in ARCHIVE_CLASSES:
            if is_archived(head):
                archived[head["StorageClass"]]["objects"] += 1
                archived[head["StorageClass"]]["bytes"] += entry.size
            else:
                thawed += 1
    tiers: dict[str, Any] = {}
    for tier in TIERS:
        cost = 0.0
        hours = 0.0
        notes = []
        for storage_class in ARCHIVE_CLASSES:
            objects = [
                (e, h) for e, h in zip(selected, heads)
                if h is not None and h.get("StorageClass") == storage_class and is_archived(h)
            ]
            for entry, _ in objects:
                used = effective_tier(storage_class, tier, entry.size)
                per_gb, per_1000 = RETRIEVAL_PRICES[(storage_class, used)]
                cost += entry.size / _GB * per_gb + per_1000 / 1000
                hours = max(hours, THAW_HOURS[(storage_class, used)])
                if used != tier:
                    notes.append(f"{storage_class} objects{' over 250 MB' if storage_class == 'GLACIER' else ''} use Standard")
        tiers[tier] = {
            "retrieval_cost_usd": round(cost, 6),
            "thaw_hours_at_most": round(hours, 3),
            "notes": sorted(set(notes)),
        }
    requests_cost = len(selected) * (COPY_PRICE_PER_1000 + GET_PRICE_PER_1000) / 1000
    return {
        "backup_id": request.backup_id,
        "plan": plan.name,
        "target": request.target.describe(),
        "objects": len(selected),
        "bytes": sum(e.size for e in selected),
        "need_thaw": sum(v["objects"] for v in archived.values()),
        "need_thaw_bytes": sum(v["bytes"] for v in archived.values()),
        "archived": archived,
        "already_thawed": thawed,
        "missing_versions": missing,
        "request_cost_usd": round(requests_cost, 6),
        "tiers": tiers,
        **({"folder_problems": layout.report()} if layout is not None else {}),
    }

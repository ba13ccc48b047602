"""What a restore would cost and how long its thaws would take, per retrieval tier. Writes nothing."""

from __future__ import annotations

from typing import Any

from chalicelib.catalog.manifests import Entry
from chalicelib.plans import Plan
from chalicelib.prices import GB, INSTANT_TIER, Prices
from chalicelib.restore.folder_layout import FolderLayout
from chalicelib.restore.requests import TIERS, RestoreRequest
from chalicelib.restore.thaw import ARCHIVE_CLASSES, effective_tier, is_archived


def quote(
    request: RestoreRequest,
    plan: Plan,
    selected: list[Entry],
    heads: list[dict[str, Any] | None],
    prices: Prices,
    layout: FolderLayout | None = None,
    manifest: tuple[str, int] = ("STANDARD", 0),
) -> dict[str, Any]:
    """Retrieval cost and the longest thaw per tier, from the prices file (its region and date are quoted),
    and the requests a restore makes: a COPY (or GET, to a folder) per object. `need_thaw` counts thaws: an
    archived pack once (and its whole size), however many of its objects are selected. For a folder target
    (`layout`), also the keys the restore would report instead of writing (collisions, invalid names,
    folder markers with content). `manifest`: the snapshot's manifest's storage class and size, as read: one
    the plan's manifest rule has moved to GLACIER_IR is billed per GB each time it is read (by the quote
    itself, and again by the restore's passes)."""
    archived: dict[str, dict[str, int]] = {c: {"objects": 0, "bytes": 0} for c in ARCHIVE_CLASSES}
    thawed = missing = 0
    # What is thawed: each archived version once, a pack once for all of its objects, and the whole pack.
    thaws: list[tuple[int, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for entry, head in zip(selected, heads):
        if head is None:
            missing += 1
        elif head.get("StorageClass") in ARCHIVE_CLASSES:
            if not is_archived(head):
                thawed += 1
            elif not entry.packed:
                thaws.append((entry.size, head))
            elif (entry.stored_key, entry.version_id) not in seen:
                seen.add((entry.stored_key, entry.version_id))
                thaws.append((int(head.get("ContentLength") or entry.size), head))
    for size, head in thaws:
        archived[head["StorageClass"]]["objects"] += 1
        archived[head["StorageClass"]]["bytes"] += size
    tiers: dict[str, Any] = {}
    for tier in TIERS:
        cost = 0.0
        hours = 0.0
        notes = []
        for storage_class in ARCHIVE_CLASSES:
            for size, _ in [(size, h) for size, h in thaws if h["StorageClass"] == storage_class]:
                used = effective_tier(storage_class, tier, size)
                option = prices.retrieval[(storage_class, used)]
                cost += size / GB * option.per_gb + option.per_1000_requests / 1000
                hours = max(hours, option.thaw_hours)
                if used != tier:
                    notes.append(f"{storage_class} objects{' over 250 MB' if storage_class == 'GLACIER' else ''} use Standard")
        tiers[tier] = {
            "retrieval_cost_usd": round(cost, 6),
            "thaw_hours_at_most": round(hours, 3),
            "notes": sorted(set(notes)),
        }
    requests_cost = len(selected) * (prices.put_copy_post_list + prices.get) / 1000
    manifest_class, manifest_bytes = manifest
    instant = prices.retrieval.get((manifest_class, INSTANT_TIER))
    manifest_read = manifest_bytes / GB * instant.per_gb + instant.per_1000_requests / 1000 if instant else 0.0
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
        # The snapshot's manifest, and what each read of it costs: the quote's own, and each pass of the restore.
        "manifest_storage_class": manifest_class,
        "manifest_bytes": manifest_bytes,
        "manifest_retrieval_usd_per_read": round(manifest_read, 6),
        "tiers": tiers,
        "prices": {"region": prices.region, "read_on": prices.read_on.isoformat(), "currency": prices.currency},
        **({"folder_problems": layout.report()} if layout is not None else {}),
    }

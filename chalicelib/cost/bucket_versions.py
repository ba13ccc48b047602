"""The versions S3 holds under a plan's `data/`, key by key, as the cost report reads them (`inventory.py`):
from S3's listing (`ListObjectVersions`), or from an inventory report's rows in the listing's shape
(`report_runs.py`). Each version carries when it stopped being current (when the next version or delete
marker of its key was written), which is the time S3's lifecycle counts from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Version:
    """One stored version under data/, as S3 lists it."""

    key: str
    version_id: str
    size: int
    written: datetime
    # When a newer version or a delete marker replaced it; None while it is current.
    noncurrent_since: datetime | None
    # The class S3 reports (ListObjectVersions).
    storage_class: str
    # Named by at least one kept snapshot.
    named: bool

    @property
    def current(self) -> bool:
        return self.noncurrent_since is None


# Where the versions of a report came from (`Work.versions_from`).
FROM_LISTING = "ListObjectVersions"
FROM_REPORT = "inventory report"


@dataclass
class Work:
    """What computing the inventory cost: the measure of how it grows (docs/cost.md)."""

    list_requests: int = 0
    snapshots: int = 0
    manifest_entries: int = 0
    versions: int = 0
    # Versions a kept snapshot names that the listing (or the report) does not have: gone, or (a report) written
    # after its scan (verification reports the gone ones).
    missing: int = 0
    # FROM_LISTING or FROM_REPORT, and the report used or why none was (`PlanInventory.report_key`).
    versions_from: str = FROM_LISTING
    report: dict[str, Any] = field(default_factory=dict)
    # With a report: its data files read and its rows under data/.
    report_files: int = 0
    report_rows: int = 0
    # Where the named versions came from (`kept_versions.NamedFrom.describe`).
    named_from: dict[str, Any] = field(default_factory=dict)
    # With a report: the weekly verification whose pass counted its rows, or why none did (cost/row_counts.py).
    counted_by: dict[str, Any] = field(default_factory=dict)



def _listed(s3: Any, bucket: str, prefix: str, work: Work) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(key, its versions and delete markers newest first) for every key under `prefix`, in key order.

    boto3 hands a page's versions and delete markers over as two lists; a key's items may also straddle
    two pages. So each key is gathered whole before it is yielded."""
    key: str | None = None
    items: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        work.list_requests += 1
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in page.get("Versions", []):
            grouped.setdefault(item["Key"], []).append(item)
        for item in page.get("DeleteMarkers", []):
            grouped.setdefault(item["Key"], []).append({**item, "DeleteMarker": True})
        # S3 lists keys in UTF-8 byte order, which is the order of their code points, Python's string order.
        for name in sorted(grouped):
            if name != key:
                if key is not None:
                    yield key, _newest_first(items)
                key, items = name, []
            items += grouped[name]
    if key is not None:
        yield key, _newest_first(items)


def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The latest first; the others by write time. Two items of one second stay in either order: a version
    # replaced within the second it was written is noncurrent from that second whichever came first.
    return sorted(items, key=lambda item: (not item.get("IsLatest"), -item["LastModified"].timestamp()))


def _versions(key: str, items: list[dict[str, Any]], named: set[str], work: Work) -> Iterator[Version]:
    """The versions of one key, each with the moment the item above it (newer) was written."""
    newer: datetime | None = None
    listed = set()
    for item in items:
        written = item["LastModified"]
        if not item.get("DeleteMarker"):
            listed.add(item["VersionId"])
            work.versions += 1
            if item.get("IsLatest"):
                replaced = None
            else:
                # Never before the version itself was written (clocks agree to the second, not better).
                replaced = max(newer or written, written)
            yield Version(
                key=key,
                version_id=item["VersionId"],
                size=int(item.get("Size", 0)),
                written=written,
                noncurrent_since=replaced,
                storage_class=item.get("StorageClass") or "STANDARD",
                named=item["VersionId"] in named,
            )
        newer = written
    work.missing += len(named - listed)

"""What S3 says of a snapshot's versions (storage class, thaw state), from listings: `ListObjectVersions`
answers for 1,000 versions a request, where a `HeadObject` answers for one. A restore never heads every
version it copies: the listing says which ones are archived, and the copy itself says the rest (an archived
version's copy fails with `InvalidObjectState`, a missing one with `NoSuchVersion`).

The listing covers the selection's key range in the backup bucket, `data/<source>/<prefix>` for each
source; a key stored under its short name (`data/~long/...`, a key too long for S3 under `data/`) and a
selection of named keys are outside it. For those the copy tells, and a version whose copy fails as archived
is headed then, one by one (never more than the archived ones)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import Entry
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, MAX_KEY_BYTES, PACKS_PREFIX, data_key
from chalicelib.plans import Plan
from chalicelib.restore.thaw import ARCHIVE_CLASSES
from chalicelib.s3docs import is_missing

logger = logging.getLogger(__name__)

VersionId = tuple[str, str]  # (data key, version id)
# A bound of a part of a restore (parts.py): (source, key), None for the start or the end.
Bound = tuple[str, str] | None


def listing_prefixes(plan: Plan, prefix: str | None, keys: Iterable[str] | None) -> list[str]:
    """The key ranges of the backup bucket that hold a selection's versions: one per source. none for a
    selection of named keys (a handful of keys is not worth listing a whole source for)."""
    if keys is not None:
        return []
    prefixes = {data_key(source.name, prefix or "") for source in plan.sources}
    listed = sorted(p for p in prefixes if not p.startswith(LONG_KEYS_PREFIX))
    # A plan that packs: its packs too (a few listings of large objects), so that an archived pack is known
    # before any of its objects is read.
    return listed + ([PACKS_PREFIX] if plan.lifecycle.small_objects == "pack" else [])


def as_head(version: dict[str, Any]) -> dict[str, Any]:
    """A listed version as `HeadObject` would describe its storage: `StorageClass`, and `Restore` in the
    header's form when a thaw is under way or done (`RestoreStatus`, which S3 lists when asked)."""
    head: dict[str, Any] = {"StorageClass": version.get("StorageClass", "STANDARD"), "ContentLength": version.get("Size")}
    status = version.get("RestoreStatus")
    if status:
        if status.get("IsRestoreInProgress"):
            head["Restore"] = 'ongoing-request="true"'
        else:
            expiry = status.get("RestoreExpiryDate")
            head["Restore"] = 'ongoing-request="false"' + (f', expiry-date="{expiry}"' if expiry else "")
    return head


def listed_versions(
    s3: Any, bucket: str, prefixes: Iterable[str], after: Bound = None, through: Bound = None
) -> Iterable[dict[str, Any]]:
    """Every version under `prefixes` (delete markers left out), with its thaw state where S3 has one. With
    `after` / `through` (a part of a restore, parts.py: (source, key) bounds) only that window is listed: a
    source's listing starts after `after`'s key (`KeyMarker`) and stops past `through`'s."""
    paginator = s3.get_paginator("list_object_versions")
    for prefix in prefixes:
        window = _window(prefix, after, through)
        if window is None:
            continue
        start, stop = window
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "OptionalObjectAttributes": ["RestoreStatus"]}
        if start is not None:
            params["KeyMarker"] = start
        for page in paginator.paginate(**params):
            versions = page.get("Versions", [])
            yield from (v for v in versions if stop is None or v["Key"] <= stop)
            if stop is not None and versions and versions[-1]["Key"] > stop:
                break


def _window(prefix: str, after: Bound, through: Bound) -> tuple[str | None, str | None] | None:
    """Where a listing of `prefix` (`data/<source>/...`) starts and stops for the (after, through] range of
    the selection; None when no key of the range is under it. A bound key too long to be an S3 key (it is
    stored under a short name) bounds nothing: the listing is wider, never narrower."""
    source = prefix[len(DATA_PREFIX):].split("/", 1)[0]
    if prefix == PACKS_PREFIX:
        # The packs hold objects of every key: listed whole, whatever part of the selection is restored.
        return None, None
    if (after is not None and source < after[0]) or (through is not None and source > through[0]):
        return None

    def marker(bound: Bound) -> str | None:
        if bound is None or bound[0] != source:
            return None
        full = f"{DATA_PREFIX}{source}/{bound[1]}"
        return full if len(full.encode("utf-8")) <= MAX_KEY_BYTES else None

    return marker(after), marker(through)


def archived_versions(
    s3: Any, bucket: str, prefixes: Iterable[str], after: Bound = None, through: Bound = None
) -> dict[VersionId, dict[str, Any]]:
    """The versions under `prefixes` (within `after`, `through`) in an archive class, each as `as_head`
    describes it. Only those are kept: the rest are copied as they are, so memory grows with what is
    archived, not with the bucket. The listing only spares requests: when it cannot be had, nothing is known
    archived and each copy tells."""
    try:
        return {
            (version["Key"], version["VersionId"]): as_head(version)
            for version in listed_versions(s3, bucket, prefixes, after, through)
            if version.get("StorageClass") in ARCHIVE_CLASSES
        }
    except ClientError as exc:
        logger.warning("s3://%s: versions not listed (%s); each copy tells whether its version is archived", bucket, exc)
        return {}


def version_heads(
    s3: Any, plan: Plan, entries: list[Entry], prefixes: list[str], max_workers: int
) -> list[dict[str, Any] | None]:
    """Each entry's version as `as_head` describes it, None for a version that is gone: from the listing of
    `prefixes` for the entries inside them, from `HeadObject` for the others (named keys, long keys)."""
    listed: dict[VersionId, dict[str, Any]] = {}
    wanted = {(e.stored_key, e.version_id) for e in entries}
    try:
        for version in listed_versions(s3, plan.bucket, prefixes):
            ident = (version["Key"], version["VersionId"])
            if ident in wanted:
                listed[ident] = as_head(version)
    except ClientError as exc:
        logger.warning("s3://%s: versions not listed (%s); each version is headed", plan.bucket, exc)
        listed, prefixes = {}, []

    def head(entry: Entry) -> dict[str, Any] | None:
        ident = (entry.stored_key, entry.version_id)
        if ident in listed or any(entry.stored_key.startswith(p) for p in prefixes):
            return listed.get(ident)
        try:
            return dict(s3.head_object(Bucket=plan.bucket, Key=entry.stored_key, VersionId=entry.version_id))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(head, entries))

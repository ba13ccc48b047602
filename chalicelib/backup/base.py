"""The snapshot a backup compares with (its base): what decides which objects are copied and which keep the
version a snapshot already names.

A base could be forged: a manifest planted under an id sorting after every real one once became the base of
every later backup, so they copied nothing. So:

- the base is the newest snapshot of the plan named by a *sealed* record (a finished backup's create-only
  copy) of a backup older than this one, read at the exact manifest version the record holds, its SHA-256
  checked; ids later than this backup's own time are never looked at, nor snapshots a prune has marked;
- only when no sealed record names the plan (snapshots taken before records were sealed) is the base taken
  from the plan bucket's manifests: the newest one older than this backup whose header names its own plan
  and backup.

The base's entries are also checked as they are used (`copying.py`, with catalog/source_identity.py): an
entry whose recorded version contradicts the source as listed (an S3 object's ETag or size, a file's size or
SHA-256) is copied again and reported as tampering rather than trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.catalog.manifests import Manifest, load_snapshot, manifest_key
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore, backup_id_of_key, backup_time, record_key
from chalicelib.errors import NotFound, Tampered

logger = logging.getLogger(__name__)

# Records read at most while looking for the plans' bases: past this, the bucket's manifests decide.
MAX_RECORDS_READ = 60
# Older manifests tried, where no sealed record names a base, before backing up everything.
MAX_LEGACY_TRIES = 5


@dataclass(frozen=True)
class Base:
    """A snapshot to compare with: the backup, and the manifest's exact version and SHA-256."""

    backup_id: str
    version_id: str | None = None
    sha256: str | None = None

    def open(self, s3: Any, bucket: str, plan: str, list_versions: bool = True) -> Manifest:
        return load_snapshot(s3, bucket, plan, self.backup_id, self.version_id, self.sha256, list_versions)


def sealed_bases(
    records: RecordStore, plans: list[str], backup_id: str, markers: PrunedMarkers | None = None
) -> dict[str, Base]:
    """For each plan, the newest sealed snapshot older than `backup_id` that no prune has marked, from the
    catalog: one listing page from this backup's place on (records are listed newest first), and the sealed
    records read until every plan has its base (usually one or two). A marked snapshot may be half deleted:
    it is never a base (`markers`: one GET per candidate)."""
    found: dict[str, Base] = {}
    wanted = set(plans)
    position = record_key(backup_id)
    read = 0
    while wanted and read < MAX_RECORDS_READ:
        keys, more = records.list_keys(min(100, MAX_RECORDS_READ - read), start_after=position)
        for key in keys:
            position = key
            older = backup_id_of_key(key)
            read += 1
            try:
                record = records.get_sealed(older)
            except Tampered as exc:
                logger.warning("not a base: %s", exc)
                continue
            if record is None:
                continue  # unfinished, or finished before records were sealed
            for name in sorted(wanted):
                result = record.plans.get(name)
                if result is not None and result.snapshot and result.manifest_version:
                    if markers is not None and markers.get(name, older) is not None:
                        continue
                    found[name] = Base(older, result.manifest_version, result.manifest_sha256)
                    wanted.discard(name)
            if not wanted or read >= MAX_RECORDS_READ:
                break
        if not more:
            break
    return found


def bases_from_manifests(
    plan: str, manifest_keys: list[str], backup_id: str, pruned: Collection[str] = ()
) -> Iterator[Base]:
    """Where no sealed record names a base: the plan's manifests older than this backup, newest first (the
    caller takes the first whose header checks out). Keys come sorted, as ids start with their time; later
    ones, this backup's own, names that are not backup ids and snapshots a prune marked (`pruned`) are never
    taken."""
    now = backup_time(backup_id)
    for key in reversed(manifest_keys):
        other = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz")
        try:
            if backup_time(other) >= now or key != manifest_key(plan, other):
                continue
        except NotFound:
            continue  # not a backup id at all: planted, or litter
        if other not in pruned:
            yield Base(other)


def open_base(
    s3: Any,
    bucket: str,
    plan: str,
    backup_id: str,
    base: Base | None,
    current: dict[str, str],
    pruned: Collection[str] = (),
) -> tuple[Manifest | None, list[str]]:
    """The base manifest, opened and checked, and what was seen on the way (warnings for the record and the
    alert). `current` maps the plan's manifest keys to their current ETags (the run's own listing of them):
    a sealed base is read at its recorded version without another listing, and a current ETag that differs
    from that version's (the key was written again) or a key missing from the listing (hidden by a delete
    marker) is reported as tampering. A sealed base that fails its checks is not replaced by a guess: the
    backup copies everything."""
    manifest_keys = sorted(current)
    warnings: list[str] = []
    candidates: Iterator[Base] = (
        iter([base]) if base is not None else bases_from_manifests(plan, manifest_keys, backup_id, pruned)
    )
    for tried, candidate in enumerate(candidates):
        if tried >= MAX_LEGACY_TRIES:
            break
        try:
            manifest = candidate.open(s3, bucket, plan, list_versions=base is None)
        except (Tampered, NotFound) as exc:
            warnings.append(f"TAMPERING: the snapshot of backup {candidate.backup_id} is not used as a base: {exc}")
            if base is not None:
                break
            continue
        key = manifest_key(plan, candidate.backup_id)
        if base is not None and current.get(key) != manifest.etag:
            seen = "is hidden by a delete marker" if key not in current else "was written again after the backup"
            manifest.tampering = f"s3://{bucket}/{key} {seen}"
        if manifest.tampering:
            warnings.append(f"TAMPERING: {manifest.tampering} (the version its backup wrote is the one used)")
        return manifest, warnings
    return None, warnings

"""Opening a backup's snapshot of a plan the way every reader must: from the backup's record, at the exact
manifest version the record holds, its SHA-256 checked.

Restore, verify, the objects listing and the command line all come through here. Where the record cannot be
trusted (`Tampered`), the snapshot is still found from the plan and the backup id alone (the manifest key's
first version: manifests are written once) and the finding is reported; where the manifest itself was
changed after it was written, the original version is read and that is reported too. A manifest whose bytes
do not hash to what its record holds is never read (`Tampered`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.catalog.manifests import Manifest, SnapshotVersion, load_located, locate_snapshot
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore
from chalicelib.errors import NotFound, Tampered
from chalicelib.plans import Plan

Report = Callable[[str], Any]


def locate(
    s3: Any, records: RecordStore, plan: Plan, backup_id: str, report: Report, action: str = "read"
) -> SnapshotVersion:
    """Which manifest version `open_snapshot` reads, with every check it makes before reading it (the
    snapshot not pruned, the record's plan and snapshot, the key's versions); tampering found is reported."""
    # A pruned snapshot may be half deleted already: it is refused before anything of it is read.
    PrunedMarkers(s3, records.bucket).check(plan.name, backup_id, action)
    version = sha256 = None
    try:
        record = records.get(backup_id)
    except Tampered as exc:
        report(str(exc))
    else:
        if plan.name not in record.plans:
            raise NotFound(f"backup {backup_id} did not back up plan {plan.name!r} (it has {', '.join(record.plans)})")
        result = record.plans[plan.name]
        if not result.snapshot:
            raise NotFound(
                f"backup {backup_id} has no snapshot of plan {plan.name!r} (status {result.status}"
                f"{', dry run' if record.dry_run else ''})"
            )
        version, sha256 = result.manifest_version, result.manifest_sha256
    located = locate_snapshot(s3, plan.bucket, plan.name, backup_id, version, sha256)
    if located.tampering:
        report(f"{located.tampering} (the version backup {backup_id} wrote is the one read)")
    return located


def open_snapshot(
    s3: Any, records: RecordStore, plan: Plan, backup_id: str, report: Report, action: str = "read"
) -> Manifest:
    """The plan's snapshot of the backup. NotFound for an unknown backup, a plan it did not back up, or a
    plan that wrote no snapshot; `Pruned` for a snapshot retention removed (`action` completes "it cannot
    be ..."); `Tampered` for a manifest that is not what its record says."""
    return read_located(s3, plan, backup_id, locate(s3, records, plan, backup_id, report, action), report)


def read_located(s3: Any, plan: Plan, backup_id: str, located: SnapshotVersion, report: Report) -> Manifest:
    """The manifest `locate` found, read (Tampered, and reported, if it is not what its record says)."""
    try:
        return load_located(s3, plan.bucket, plan.name, backup_id, located)
    except Tampered as exc:
        report(str(exc))
        raise

"""Opening a backup's snapshot of a plan the way every reader must: from the backup's record, at the exact
manifest version the record holds, its SHA-256 checked.

Restore, verify, the objects listing and the command line all come through here, and each packed entry they
read names the pack version that holds its bytes now (catalog/relocations.py). Where the record cannot be
trusted (`Tampered`), the snapshot is still found from the plan and the backup id alone (the manifest key's
first version: manifests are written once) and the finding is reported; where the manifest itself was
changed after it was written, the original version is read and that is reported too. A manifest whose bytes
do not hash to what its record holds is never read (`Tampered`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import (
    Entry,
    Manifest,
    SnapshotVersion,
    load_located,
    locate_snapshot,
    manifest_key,
    snapshot_versions,
)
from chalicelib.catalog.pruned import check_readable
from chalicelib.catalog.records import BackupRecord, RecordStore
from chalicelib.catalog.relocations import relocator
from chalicelib.errors import NotFound, Tampered
from chalicelib.plans import Plan

Report = Callable[[str], Any]


def locate(
    s3: Any, records: RecordStore, plan: Plan, backup_id: str, report: Report, action: str = "read", held: bool = False
) -> SnapshotVersion:
    """Which manifest version `open_snapshot` reads, with every check it makes before reading it (the
    snapshot not pruned, the record's plan and snapshot, the key's versions); tampering found is reported.
    The three reads are independent and go at once: one round trip, not three. `held`: the reader is a
    restore that found the snapshot unpruned once it was recorded, which every prune keeps whole while it
    runs (catalog/restoring.py): a marker written since does not stop it."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        pruned = pool.submit(_not_pruned, s3, records.bucket, plan, backup_id, action, held)
        listed = pool.submit(snapshot_versions, s3, plan.bucket, plan.name, backup_id)
        tampered: Tampered | None = None
        try:
            record: BackupRecord | None = records.get(backup_id)
        except Tampered as exc:
            record, tampered = None, exc
        except Exception:
            # A pruned snapshot is refused as such, whatever else is wrong with it.
            pruned.result()
            raise
        # A pruned snapshot may be half deleted already: it is refused before anything of it is read.
        pruned.result()
    if tampered is not None:
        report(str(tampered))
    version = sha256 = None
    if record is not None:
        if plan.name not in record.plans:
            raise NotFound(f"backup {backup_id} did not back up plan {plan.name!r} (it has {', '.join(record.plans)})")
        result = record.plans[plan.name]
        if not result.snapshot:
            raise NotFound(
                f"backup {backup_id} has no snapshot of plan {plan.name!r} (status {result.status}"
                f"{', dry run' if record.dry_run else ''})"
            )
        version, sha256 = result.manifest_version, result.manifest_sha256
    located = locate_snapshot(s3, plan.bucket, plan.name, backup_id, version, sha256, listed=listed.result())
    if located.tampering:
        report(f"{located.tampering} (the version backup {backup_id} wrote is the one read)")
    return located


def _not_pruned(s3: Any, bucket: str, plan: Plan, backup_id: str, action: str, held: bool) -> None:
    if not held:
        check_readable(s3, bucket, plan, backup_id, action)


def open_snapshot(
    s3: Any, records: RecordStore, plan: Plan, backup_id: str, report: Report, action: str = "read", held: bool = False
) -> Manifest:
    """The plan's snapshot of the backup. NotFound for an unknown backup, a plan it did not back up, or a
    plan that wrote no snapshot; `Pruned` for a snapshot retention removed (`action` completes "it cannot
    be ..."; never with `held`, as `locate` says); `Tampered` for a manifest that is not what its record says.

    The manifest key's newest version is read while the record is: written once, it is nearly always the
    version the record names, and then it is used (its bytes still hashed against the record's); otherwise,
    or when the snapshot is refused, it is dropped unused."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        newest = pool.submit(_newest, s3, plan, backup_id)
        try:
            located = locate(s3, records, plan, backup_id, report, action, held)
        except BaseException:
            _drop(newest)
            raise
        return read_located(s3, plan, backup_id, located, report, newest.result())


def _newest(s3: Any, plan: Plan, backup_id: str) -> Manifest | None:
    try:
        return Manifest.download(s3, plan.bucket, manifest_key(plan.name, backup_id))
    except (ClientError, NotFound, Tampered):
        return None  # no use reading it early: `read_located` reads the located version, and says what is wrong


def _drop(newest: Future[Manifest | None]) -> None:
    manifest = newest.result()
    if manifest is not None:
        manifest.close()


def read_located(
    s3: Any,
    plan: Plan,
    backup_id: str,
    located: SnapshotVersion,
    report: Report,
    read: Manifest | None = None,
    relocate: Callable[[Entry], Entry] | None = None,
) -> Manifest:
    """The manifest `locate` found, read (Tampered, and reported, if it is not what its record says); `read`:
    the key's newest version, read already (`load_located`). `relocate`: the bucket's relocation records as a
    caller reading several of its manifests loaded them once (`relocations.relocator`); else loaded here."""
    try:
        manifest = load_located(s3, plan.bucket, plan.name, backup_id, located, read)
    except Tampered as exc:
        report(str(exc))
        raise
    try:
        # Its packed entries name the pack versions that hold their bytes now (a repack moves them).
        manifest.relocate = relocate if relocate is not None else relocator(s3, plan.bucket)
    except BaseException:
        manifest.close()
        raise
    return manifest

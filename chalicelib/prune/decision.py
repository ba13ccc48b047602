"""What a prune knows about a plan before it deletes anything: every manifest in the plan's bucket (all their
versions), which backups are sealed, which snapshots are already pruned, which backups are still running,
and from that the decision: which snapshots are kept and why, and which are removed.

Only snapshots that retention governs can be removed: a sealed backup's snapshot (a finished backup, its
record written once), not yet pruned, whose time S3 itself vouches for. Everything else found under
`meta/snapshots/` is kept and read as a reference: manifests of unfinished or unsealed backups, of other
plans that once used this bucket, extra versions of a manifest (tampering), names that are not backup ids.
A manifest never makes the prune delete more; at worst it keeps more.

A snapshot's time is its backup id's time, which whoever writes backups chooses; S3's own times for its
record and manifest are not theirs to choose (backdating.py): a snapshot they contradict is kept, counted by
no rule and reported, so a forged backup cannot take the place of an older period's snapshot.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from chalicelib.catalog.manifests import MANIFEST_SUFFIX
from chalicelib.catalog.records import BackupStatus, RecordStore, backup_id_of_key, backup_time, is_backup_id
from chalicelib.errors import NotFound, Tampered
from chalicelib.layout import CHECKPOINTS_PREFIX, PARTIAL_MANIFEST_START, SEALED_RECORDS_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import Plan
from chalicelib.prune import backdating
from chalicelib.retention import MAX_BACKUP_DAYS, Snapshot, decide
from chalicelib.times import isoformat

CHECKPOINT_SUFFIX = ".checkpoint.json"
# How far back the prune reads backup records for running backups: every backup that may still write a
# snapshot started less than MAX_BACKUP_DAYS ago.
RUNNING_LOOKBACK = timedelta(days=MAX_BACKUP_DAYS + 1)


@dataclass
class StoredManifest:
    """One manifest key and every version of it, oldest first (version id, S3's time of the write)."""

    key: str
    versions: list[tuple[str, datetime]] = field(default_factory=list)

    @property
    def plan(self) -> str:
        return self.key[len(SNAPSHOTS_PREFIX):].split("/", 1)[0]

    @property
    def backup_id(self) -> str:
        return self.key.rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX)

    @property
    def written(self) -> datetime:
        return self.versions[0][1]


@dataclass
class BucketMeta:
    """One listing of a plan bucket's `meta/snapshots/` (every version) and `meta/checkpoints/`."""

    manifests: dict[str, StoredManifest]
    # Backup ids with a saved checkpoint, per plan: unfinished runs.
    checkpoints: dict[str, set[str]]
    # Partial manifests of unfinished runs: key -> (plan, backup id).
    partials: dict[str, tuple[str, str]]


def scan_bucket(s3: Any, bucket: str) -> BucketMeta:
    meta = BucketMeta({}, {}, {})
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=SNAPSHOTS_PREFIX):
        for version in page.get("Versions", []):
            key = version["Key"]
            rest = key[len(SNAPSHOTS_PREFIX):]
            if key.endswith(MANIFEST_SUFFIX) and rest.count("/") == 1:
                meta.manifests.setdefault(key, StoredManifest(key)).versions.append((version["VersionId"], version["LastModified"]))
            elif key.endswith(CHECKPOINT_SUFFIX) and version.get("IsLatest") and rest.count("/") == 1:
                plan, name = rest.split("/")
                meta.checkpoints.setdefault(plan, set()).add(name.removesuffix(CHECKPOINT_SUFFIX))
    for stored in meta.manifests.values():
        stored.versions.sort(key=lambda item: item[1])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=CHECKPOINTS_PREFIX):
        for item in page.get("Contents", []):
            parts = item["Key"][len(CHECKPOINTS_PREFIX):].split("/")
            # <plan>/<backup id>/[segment-NNN/]partial-...: a table scan's state files lie beside them, gzip
            # too, and are not manifests.
            if len(parts) >= 3 and parts[-1].startswith(PARTIAL_MANIFEST_START) and parts[-1].endswith(MANIFEST_SUFFIX):
                meta.partials[item["Key"]] = (parts[0], parts[1])
    return meta


def sealed_backups(s3: Any, catalog_bucket: str) -> dict[str, datetime]:
    """Every sealed (finished) backup, and when its record was sealed (S3's date of the sealed record): one
    listing request per thousand."""
    found: dict[str, datetime] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=catalog_bucket, Prefix=SEALED_RECORDS_PREFIX):
        for item in page.get("Contents", []):
            backup_id = backup_id_of_key(item["Key"])
            if is_backup_id(backup_id):
                found[backup_id] = item["LastModified"]
    return found


def running_backups(records: RecordStore, sealed: Collection[str], now: datetime) -> dict[str, dict[str, datetime]]:
    """plan -> {backup id: started} of the backups that may still write a snapshot: recent records (newest
    first, back to RUNNING_LOOKBACK) neither sealed nor finished nor dry runs. A record that cannot be read
    counts as running for every plan: it can only make the prune keep more."""
    running: dict[str, dict[str, datetime]] = {}
    since = now - RUNNING_LOOKBACK
    position = None
    while True:
        keys, more = records.list_keys(100, start_after=position)
        for key in keys:
            position = key
            backup_id = backup_id_of_key(key)
            try:
                started = backup_time(backup_id)
            except NotFound:
                continue
            if started < since:
                return running
            if backup_id in sealed:
                continue
            try:
                record = records.get(backup_id)
            except Tampered:
                running.setdefault("*", {})[backup_id] = started
                continue
            except NotFound:
                continue
            if record.status == BackupStatus.RUNNING and not record.dry_run:
                for plan in record.plans:
                    running.setdefault(plan, {})[backup_id] = started
        if not more or not keys:
            return running


@dataclass
class PlanDecision:
    """A plan's snapshots, newest first, as the report shows them (`governed`: retention decides its fate),
    and the ones this prune removes."""

    snapshots: list[dict[str, Any]]
    removing: list[str]
    warnings: list[str]


def late_snapshots(meta: BucketMeta, plan: str, sealed: Collection[str], tz: str | tzinfo) -> list[str]:
    """The plan's sealed snapshots whose manifest was written after their own day had ended: the ones whose
    start `backdating.first_recorded` looks up."""
    return sorted(
        stored.backup_id
        for stored in meta.manifests.values()
        if stored.plan == plan
        and stored.backup_id in sealed
        and is_backup_id(stored.backup_id)
        and backdating.ended_before_written(stored.backup_id, stored.written, tz)
    )


def possible_bases(
    backup_id: str,
    started: datetime,
    sealed: Mapping[str, datetime],
    candidates: Iterable[str],
    marked: Collection[str] = (),
) -> set[str]:
    """Every snapshot a running backup may be comparing with, or may have compared with since it started.

    A backup takes as its base the newest snapshot older than itself whose record was sealed when it looked,
    skipping marked ones, and looks again each time it resumes (see backup/base.py). So at a time T of its
    run its base is the newest unmarked candidate sealed by T: a candidate is that for some T from its start
    on if it was sealed no later than every newer candidate (or than the start). A marked candidate may
    have been marked before the backup looked, or after: it is counted as a possible base, and as not
    hiding the older ones."""
    moment = (backup_time(backup_id), backup_id)
    older = sorted(
        (other for other in candidates if other in sealed and (backup_time(other), other) < moment),
        key=lambda other: (backup_time(other), other),
        reverse=True,
    )
    found: set[str] = set()
    hidden_from: datetime | None = None  # from then on a newer unmarked candidate is sealed
    for other in older:
        if hidden_from is None or max(sealed[other], started) <= hidden_from:
            found.add(other)
        if other not in marked:
            hidden_from = sealed[other] if hidden_from is None else min(hidden_from, sealed[other])
            if hidden_from <= started:
                break  # sealed before the run began: nothing older was ever this backup's base
    return found


def decide_plan(
    plan: Plan,
    meta: BucketMeta,
    sealed: Mapping[str, datetime],
    pruned: set[str],
    running: dict[str, datetime],
    tz: str | tzinfo,
    restoring: Mapping[str, str] | None = None,
    starts: Mapping[str, backdating.Start] | None = None,
) -> PlanDecision:
    """Which of the plan's snapshots stay, and why; `pruned`: its snapshots already marked; `restoring`:
    backup id -> the unfinished restore reading its snapshot (kept until that restore ends); `starts`: what
    S3 says of each snapshot `late_snapshots` names (backdating.py)."""
    starts = starts or {}
    snapshots: list[Snapshot] = []
    extra: list[dict[str, Any]] = []
    warnings: list[str] = []
    for stored in meta.manifests.values():
        if stored.plan != plan.name or stored.backup_id in pruned:
            continue
        backup_id = stored.backup_id
        if not is_backup_id(backup_id):
            extra.append(_kept(backup_id, None, "not a backup id: read as a reference, never removed"))
            continue
        taken = isoformat(backup_time(backup_id))
        if backup_id not in sealed:
            extra.append(_kept(backup_id, taken, "not sealed (unfinished, or taken before records were sealed)"))
            continue
        doubt = backdating.doubt(backup_id, stored.versions[0], starts)
        if doubt is not None:
            warnings.append(f"TAMPERING: the snapshot of backup {backup_id} is kept and counted by no rule: {doubt}")
            extra.append(_kept(backup_id, taken, f"time not trusted: {doubt}"))
            continue
        snapshots.append(Snapshot(backup_id, backup_time(backup_id)))
    decision = decide(snapshots, plan.retention, tz)
    rows: list[dict[str, Any]] = [
        {
            "backup_id": v.snapshot.backup_id,
            "taken_at": isoformat(v.snapshot.taken_at),
            "kept": v.kept,
            "reasons": list(v.reasons),
            "governed": True,
        }
        for v in decision.verdicts
    ]
    by_id = {row["backup_id"]: row for row in rows}
    for running_id, started in sorted(running.items()):
        for base in sorted(possible_bases(running_id, started, sealed, by_id)):
            by_id[base]["reasons"].append(f"base of running backup {running_id}")
            by_id[base]["kept"] = True
    for backup_id, restore_id in sorted((restoring or {}).items()):
        if backup_id in by_id:
            by_id[backup_id]["reasons"].append(f"being restored (restore {restore_id})")
            by_id[backup_id]["kept"] = True
    kept = {row["backup_id"]: row["kept"] for row in rows}
    warnings += backdating.takeovers(kept, {row["backup_id"]: row["reasons"] for row in rows}, starts, tz)
    rows += extra
    rows.sort(key=lambda row: (row["taken_at"] or "", row["backup_id"]), reverse=True)
    removing = sorted(row["backup_id"] for row in rows if not row["kept"])
    return PlanDecision(snapshots=rows, removing=removing, warnings=warnings)


def _kept(backup_id: str, taken_at: str | None, reason: str) -> dict[str, Any]:
    return {"backup_id": backup_id, "taken_at": taken_at, "kept": True, "reasons": [reason], "governed": False}

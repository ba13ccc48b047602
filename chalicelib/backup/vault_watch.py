"""Watching the second copy from the backup account: which snapshot is complete in the vault, how far it lags
behind the newest sealed one, and which versions S3 failed to replicate.

The functions have no credentials of the vault account, so they never read the vault. They read what S3
Replication records on each source version instead: `ReplicationStatus` (HeadObject's
`x-amz-replication-status`), COMPLETED once the replica is written, FAILED when S3 gave up (the same status
the inventory's ReplicationStatus column reports, and the event `s3:Replication:OperationFailedReplication`
announces), PENDING until then, absent for a version no rule replicates (written before the rule).

A snapshot is complete in the vault when its manifest, its sealed record and every version it names are
COMPLETED. Reading that for every version every day would cost a HEAD per stored version a day, so the watch
looks at the newest `WINDOW` sealed snapshots only, oldest first, and HEADs what each names that the one before
it does not (the manifests are sorted, so two are compared as they stream), with the manifest and the sealed
record: what a snapshot shares with the one before it was checked with that one. The newest complete snapshot
is the last of an unbroken run of complete ones from the window's start; the versions older than the window
were checked by the runs of the days they were new (a FAILED one was reported then). The first snapshot a
plan's window holds is checked whole while the plan has no older one.

After each plan's backup (`check_plan`), a FAILED version, or a newest complete snapshot more than the vault's
`max_lag_hours` behind the newest sealed one, is recorded as the plan's drift: the plan is PARTIAL and the
backup's alert names it. The summary is kept in the plan's result (`vault`), for the dashboard.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.backup.base import MAX_RECORDS_READ, Base
from chalicelib.catalog.manifests import Entry, manifest_key
from chalicelib.catalog.records import BackupStatus, PlanResult, RecordStore, backup_id_of_key, backup_time, sealed_key
from chalicelib.errors import BackupError
from chalicelib.plans import Plan

logger = logging.getLogger(__name__)

# The sealed snapshots looked at after each backup: a week of daily ones.
WINDOW = 7
# How many FAILED versions a finding names; the count is always whole.
NAMED_FAILURES = 5

COMPLETED, FAILED = "COMPLETED", "FAILED"


@dataclass
class VaultWatch:
    """What the backup account can see of a plan's vault (see the module's docstring)."""

    plan: str
    newest_sealed: str | None = None
    newest_in_vault: str | None = None
    # Hours between the two snapshots' times; None while nothing is sealed, or nothing complete in the window.
    lag_hours: float | None = None
    # "key (version id)" of each version whose replication FAILED.
    failed: list[str] = field(default_factory=list)
    pending: int = 0
    checked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def findings(self, max_lag_hours: int) -> list[str]:
        """One line per problem, for the plan's drift and the alert."""
        found = []
        if self.failed:
            named = ", ".join(self.failed[:NAMED_FAILURES]) + (", ..." if len(self.failed) > NAMED_FAILURES else "")
            found.append(f"vault: S3 failed to replicate {len(self.failed)} version(s) into the vault: {named}")
        if self.newest_sealed is not None and self.newest_in_vault is None:
            found.append(f"vault: none of the newest {WINDOW} sealed snapshots is complete in the vault "
                         f"(newest sealed {self.newest_sealed}; {self.pending} version(s) not replicated yet)")
        elif self.lag_hours is not None and self.lag_hours > max_lag_hours:
            found.append(f"vault: the newest snapshot complete in the vault, {self.newest_in_vault}, is "
                         f"{self.lag_hours:.0f} hours behind the newest sealed one, {self.newest_sealed} "
                         f"(more than {max_lag_hours}; {self.pending} version(s) not replicated yet)")
        return found


def sealed_snapshots(records: RecordStore, plan: str, limit: int) -> list[Base]:
    """The plan's newest `limit` sealed snapshots, newest first, from the catalog."""
    found: list[Base] = []
    position: str | None = None
    read = 0
    while len(found) < limit and read < MAX_RECORDS_READ:
        keys, more = records.list_keys(min(100, MAX_RECORDS_READ - read), start_after=position)
        for key in keys:
            position, read = key, read + 1
            record = records.get_sealed(backup_id_of_key(key))
            result = None if record is None else record.plans.get(plan)
            if record is not None and result is not None and result.snapshot and result.manifest_version:
                found.append(Base(record.backup_id, result.manifest_version, result.manifest_sha256))
                if len(found) == limit:
                    break
        if not more:
            break
    return found


def _new_versions(older: Iterable[Entry] | None, newer: Iterable[Entry]) -> Iterator[tuple[str, str]]:
    """(stored key, version id) of each version `newer` names that `older` does not name the same: the object's
    own version, or for a packed object its pack's, once per pack. Both are sorted by (source, key), as
    manifests are. `older` None: every entry of `newer`."""
    previous: Iterator[Entry] = iter(older or ())
    current = next(previous, None)
    packs: set[tuple[str, str]] = set()
    for entry in newer:
        if entry.held:
            continue
        while current is not None and (current.source, current.key) < (entry.source, entry.key):
            current = next(previous, None)
        if current is None or (current.source, current.key, current.version_id) != (entry.source, entry.key, entry.version_id):
            if entry.packed:
                if (entry.stored_key, entry.version_id) in packs:
                    continue
                packs.add((entry.stored_key, entry.version_id))
            yield entry.stored_key, entry.version_id


class _Statuses:
    """ReplicationStatus of source versions, each read once (HeadObject)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.read = 0

    def of(self, bucket: str, key: str, version_id: str | None) -> str | None:
        params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
        self.read += 1
        return self.s3.head_object(**params).get("ReplicationStatus")


def watch_plan(s3: Any, records: RecordStore, plan: Plan, catalog_bucket: str, window: int = WINDOW) -> VaultWatch:
    """The plan's vault as the backup account sees it (read with ListObjectsV2, GetObject and HeadObject)."""
    snapshots = list(reversed(sealed_snapshots(records, plan.name, window + 1)))  # oldest first
    watch = VaultWatch(plan.name, newest_sealed=snapshots[-1].backup_id if snapshots else None)
    # Each snapshot with the one before it; with a full window, the oldest is only compared with.
    pairs: list[tuple[Base | None, Base]] = list(zip([None, *snapshots], snapshots))  # noqa: B905 (the first is one longer)
    statuses = _Statuses(s3)
    unbroken = True
    compared = pairs[1:] if len(snapshots) > window else pairs
    # Each manifest is read once: the newer of one pair stays open to be the older of the next.
    previous = contextlib.ExitStack()
    try:
        older = previous.enter_context(_opened(s3, plan, compared[0][0])) if compared else None
        for _, snapshot in compared:
            current = contextlib.ExitStack()
            with current:
                newer = current.enter_context(_opened(s3, plan, snapshot))
                new = list(_new_versions(older.entries() if older is not None else None, newer.entries()))
                previous.close()
                previous, older = current.pop_all(), newer
            unbroken = _check_pair(statuses, watch, plan, catalog_bucket, snapshot, new) and unbroken
            if unbroken:
                watch.newest_in_vault = snapshot.backup_id
    finally:
        previous.close()
    watch.checked = statuses.read
    if watch.newest_sealed is not None and watch.newest_in_vault is not None:
        behind = backup_time(watch.newest_sealed) - backup_time(watch.newest_in_vault)
        watch.lag_hours = round(behind.total_seconds() / 3600, 1)
    return watch


def _check_pair(
    statuses: _Statuses, watch: VaultWatch, plan: Plan, catalog_bucket: str, snapshot: Base,
    new: list[tuple[str, str]],
) -> bool:
    """Whether the snapshot's manifest, sealed record and the versions it names anew are all in the vault;
    failures and pending ones counted in `watch`."""
    wanted: list[tuple[str, str, str | None]] = [
        (plan.bucket, manifest_key(plan.name, snapshot.backup_id), snapshot.version_id),
        (catalog_bucket, sealed_key(snapshot.backup_id), None),
    ]
    wanted += [(plan.bucket, key, version) for key, version in new]
    complete = True
    for bucket, key, version in wanted:
        status = statuses.of(bucket, key, version)
        if status == FAILED:
            watch.failed.append(f"{key} ({version or 'current'})")
        elif status != COMPLETED:
            watch.pending += 1
        complete = complete and status == COMPLETED
    return complete


def _opened(s3: Any, plan: Plan, snapshot: Base | None) -> contextlib.AbstractContextManager[Any]:
    """The snapshot's manifest, its version and hash checked; nothing for None (the first has none before it)."""
    return contextlib.nullcontext() if snapshot is None else snapshot.open(s3, plan.bucket, plan.name, list_versions=False)


def check_plan(s3: Any, records: RecordStore, plan: Plan, catalog_bucket: str, result: PlanResult) -> PlanResult:
    """After the plan's backup: its vault's progress in `result.vault`, and a failure or a lag beyond the
    vault's `max_lag_hours` in its drift (a plan that otherwise succeeded is then PARTIAL). A watch that cannot
    read what it needs is said in the drift too: nobody would otherwise see that the vault is unwatched."""
    if plan.offsite is None:
        return result
    try:
        watch = watch_plan(s3, records, plan, catalog_bucket)
    except (ClientError, BotoCoreError, BackupError) as exc:
        result.drift.append(f"vault: its replication could not be checked: {exc}")
    else:
        result.vault = watch.to_dict()
        result.drift += watch.findings(plan.offsite.max_lag_hours)
    if result.drift and result.status == BackupStatus.SUCCEEDED:
        logger.warning("plan %s: %s", plan.name, "; ".join(result.drift))
        result.status = BackupStatus.PARTIAL
    return result

"""Everything a restore checks before a byte is written: the plan, the snapshot, the target, the selection
and the conflicts at the target. Any problem is a BadRequest, NotFound or Conflict naming it.

For a folder target the selection is also laid out (`folder_layout`): keys that collide or have no valid
file name are not refused as a whole restore; they are reported one by one (in the quote, and as failures by
the pass, which never writes them) while the rest is restored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import Entry, Manifest
from chalicelib.catalog.pruned import check_readable
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.catalog.records import RecordStore
from chalicelib.errors import BadRequest, Conflict, describe_error, error_code
from chalicelib.layout import RESTORE_BUCKET_RESERVED_PREFIX
from chalicelib.plans import DynamoDBSource, Plan, PlanSet
from chalicelib.restore.bucket import existing_keys
from chalicelib.restore.folder_layout import FolderLayout, lay_out
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.selection import select_entries, sources_by_name, target_key, target_table
from chalicelib.restore.versions import Bound, VersionId, archived_versions, listing_prefixes


class Prepared(NamedTuple):
    """A checked restore: its plan, the entries it takes, for a folder target where each one lands, and
    the versions of the selection's key range that are archived (`versions.archived_versions`)."""

    plan: Plan
    selected: list[Entry]
    layout: FolderLayout | None
    archived: dict[VersionId, dict[str, Any]]
    # The snapshot's manifest as read: its storage class and size (a quote prices reading it from GLACIER_IR).
    manifest: tuple[str, int] = ("STANDARD", 0)


class RestoreChecks:
    """`allowed_buckets` None: any bucket that is not a backup bucket (an operator's own credentials);
    `table_prefix`: restored tables must be named with it (the functions may only create such tables)."""

    def __init__(
        self,
        plans: PlanSet,
        clients: Any,
        allowed_buckets: tuple[str, ...] | None,
        table_prefix: str | None,
        report: Callable[[str], Any] = lambda finding: None,
    ) -> None:
        self.plans = plans
        self.clients = clients
        self.records = RecordStore(clients.s3, plans.catalog_bucket)
        # Where tampering found on the way is told (notify/tampering.py).
        self.report = report
        self.allowed_buckets = allowed_buckets
        self.table_prefix = table_prefix

    def plan(self, name: str) -> Plan:
        try:
            return self.plans.get(name)
        except KeyError:
            raise BadRequest(f"unknown plan {name!r}; the known plans are {', '.join(self.plans.names)}") from None

    def not_pruned(self, plan: Plan, backup_id: str) -> None:
        """`Pruned` when retention has marked the snapshot (it may be half deleted): in a vault, its own prune
        or the backup bucket's (catalog/pruned.py `refusing`)."""
        check_readable(self.clients.s3, self.records.bucket, plan, backup_id, "restored")

    def manifest(self, plan: Plan, backup_id: str, held: bool = False) -> Manifest:
        """The snapshot as its record names it (catalog/snapshot_reader.py): NotFound, `Pruned` (not with
        `held`: the restore's `snapshot_held`), or `Tampered`, otherwise."""
        return open_snapshot(self.clients.s3, self.records, plan, backup_id, self.report, action="restored", held=held)

    def target_allowed(self, target: Target) -> None:
        """Whether this stage lets a restore write where `target` says: never into a backup bucket; in the
        functions, only into the allowed buckets or new tables named with the prefix, never a folder. Needs no
        request: a pass checks it again for every recorded restore, whatever wrote the record."""
        backup_buckets = {p.bucket for p in self.plans.plans}
        if target.bucket and target.bucket in backup_buckets:
            raise BadRequest(
                f"target bucket {target.bucket!r} is a backup bucket; restores never write into backup buckets, "
                "choose another bucket"
            )
        if target.bucket and self.allowed_buckets is not None and target.bucket not in self.allowed_buckets:
            allowed = ", ".join(self.allowed_buckets) or "none are configured"
            raise BadRequest(
                f"target bucket {target.bucket!r} is not one of this stage's restore buckets ({allowed}; "
                "set RESTORE_BUCKETS to add one)"
            )
        if target.table and self.table_prefix and not target.table.startswith(self.table_prefix):
            raise BadRequest(f"target table {target.table!r} must be named {self.table_prefix}... (RESTORE_TABLE_PREFIX)")
        if target.path and self.allowed_buckets is not None:
            raise BadRequest(f"target folder {target.path!r}: only the command line restores into a folder")
        if self._reserved(target) and target.prefix.startswith(RESTORE_BUCKET_RESERVED_PREFIX):
            raise BadRequest(self._reserved_refusal(target, target.prefix))

    def keys_allowed(self, plan: Plan, target: Target, selected: Iterable[Entry]) -> None:
        """No restored key under the reserved prefix of the bucket holding the restores from the vault
        (`target_allowed` checks the target prefix; a key can reach it from a shorter one)."""
        if not self._reserved(target):
            return
        for entry in selected:
            key = target_key(plan, target, entry)
            if key.startswith(RESTORE_BUCKET_RESERVED_PREFIX):
                raise BadRequest(self._reserved_refusal(target, key))

    def _reserved(self, target: Target) -> bool:
        """Whether `target` is the stage's first restore bucket, whose `org-backup/` holds the records of the
        restores from the vault (`VaultRestoreStore`)."""
        return bool(target.bucket and self.allowed_buckets and target.bucket == self.allowed_buckets[0])

    @staticmethod
    def _reserved_refusal(target: Target, key: str) -> str:
        return (
            f"s3://{target.bucket}/{key} is under {RESTORE_BUCKET_RESERVED_PREFIX}, reserved in this bucket for the "
            "records of restores from the vault; choose another target prefix"
        )

    def target(self, plan: Plan, target: Target) -> None:
        self.target_allowed(target)
        if target.bucket:
            try:
                self.clients.s3.head_bucket(Bucket=target.bucket)
            except ClientError as exc:
                raise BadRequest(f"target bucket {target.bucket!r} cannot be used: {describe_error(exc)}") from exc
        has_table_source = any(isinstance(s, DynamoDBSource) for s in plan.sources)
        if target.table and not has_table_source:
            raise BadRequest(f"plan {plan.name!r} has no database source; give a target bucket instead of a table")
        if not target.bucket and not target.path and any(not isinstance(s, DynamoDBSource) for s in plan.sources):
            raise BadRequest(f"plan {plan.name!r} backs up objects: the target needs a 'bucket'")

    def selection(self, plan: Plan, manifest: Manifest, request: RestoreRequest) -> list[Entry]:
        selected = list(select_entries(manifest, request.prefix, request.keys))
        if request.keys is not None:
            found = {entry.key for entry in selected}
            missing = [key for key in request.keys if key not in found]
            if missing:
                shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
                raise BadRequest(f"{len(missing)} key(s) are not in the snapshot of backup {request.backup_id}: {shown}")
        if not selected:
            what = f"under prefix {request.prefix!r}" if request.prefix else "at all"
            raise BadRequest(f"the snapshot of plan {plan.name!r} in backup {request.backup_id} has no objects {what}")
        return selected

    def conflicts(
        self, plan: Plan, target: Target, selected: list[Entry], layout: FolderLayout | None, existing: set[str]
    ) -> list[str]:
        """Targets that already exist (with overwrite false, the restore must not start): `existing` is the
        target bucket's keys under the prefix. A folder target is looked at only where `layout` places
        something: a key with no valid name is not a path to test."""
        conflicts: list[str] = []
        tables = {t for t in (target_table(plan, target, e) for e in selected) if t}
        for table in sorted(tables):
            try:
                self.clients.dynamodb.describe_table(TableName=table)
                conflicts.append(f"table {table}")
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        files = [e for e in selected if not target_table(plan, target, e)]
        if target.bucket and files:
            conflicts.extend(
                f"s3://{target.bucket}/{key}" for key in (target_key(plan, target, e) for e in files) if key in existing
            )
        if layout is not None:
            for entry in files:
                if layout.problem(entry) is not None:
                    continue
                path = layout.root / layout.path(entry)
                # A folder that exists already is what a folder marker asks for.
                if path.exists() and not (layout.is_folder(entry) and path.is_dir()):
                    conflicts.append(str(path))
        return conflicts

    def prepare(self, request: RestoreRequest, list_archived: bool = False) -> Prepared:
        """Everything that can be checked before a byte is written. Raises BadRequest, NotFound or Conflict.

        The reads are independent, so they run at once: the target bucket's check and its listing (for the
        conflicts), the snapshot, and with `list_archived` the listing of the selection's versions in the
        backup bucket. A refusal is the one the checks would give one after another (the target first)."""
        plan = self.plan(request.plan)
        target = request.target
        self.target_allowed(target)
        s3 = self.clients.s3
        with ThreadPoolExecutor(max_workers=4) as pool:
            target_checked = pool.submit(self.target, plan, target)
            existing: Future[set[str]] | None = None
            if target.bucket and not request.overwrite:
                existing = pool.submit(existing_keys, s3, target.bucket, target.prefix)
            prefixes = listing_prefixes(plan, request.prefix, request.keys) if list_archived else []
            archived = pool.submit(archived_versions, s3, plan.bucket, prefixes)
            selection = pool.submit(self._selection, plan, request)
            target_checked.result()
            selected, manifest_read = selection.result()
            self.keys_allowed(plan, target, selected)
            sources = sources_by_name(plan)
            exports_as_files = any(
                target_table(plan, target, e) is None and isinstance(sources.get(e.source), DynamoDBSource)
                for e in selected
            )
            if exports_as_files and not (target.bucket or target.path):
                raise BadRequest("a database export needs a target 'table'")
            layout = lay_out(plan, target, selected) if target.path else None
            if not request.overwrite:
                conflicts = self.conflicts(plan, target, selected, layout, existing.result() if existing else set())
                if conflicts:
                    shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
                    raise Conflict(f"{len(conflicts)} target(s) already exist: {shown}; set overwrite to replace them")
            return Prepared(plan, selected, layout, archived.result(), manifest_read)

    def recorded_selection(
        self, plan: Plan, backup_id: str, prefix: str | None, keys: list[str] | None,
        after: Bound = None, through: Bound = None, held: bool = False,
    ) -> Prepared:
        """A recorded restore's first pass, in another process than its checks: the selection read again from
        the snapshot (which checks it is not pruned, unless `held`) while the backup bucket's versions are
        listed (only within (`after`, `through`] for a part of a restore)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            prefixes = listing_prefixes(plan, prefix, keys)
            archived = pool.submit(archived_versions, self.clients.s3, plan.bucket, prefixes, after, through)
            with self.manifest(plan, backup_id, held) as manifest:
                selected = list(select_entries(manifest, prefix, keys))
            return Prepared(plan, selected, None, archived.result())

    def _selection(self, plan: Plan, request: RestoreRequest) -> tuple[list[Entry], tuple[str, int]]:
        with self.manifest(plan, request.backup_id) as manifest:
            return self.selection(plan, manifest, request), (manifest.storage_class, manifest.size or 0)

"""Which versions a plan's kept snapshots name, for the cost report: each distinct version once, in (source,
key, version id) order, whichever snapshots name it.

Without an inventory, every kept manifest is read (`catalog.snapshot_reader`, as every reader must) and
merged. With one, the prune keeps once per report an index of exactly this (catalog/kept_index.py
`PRUNE_INDEX`: each distinct version its snapshots name, with a bit mask of the snapshots naming it), and the
cost report reads it instead of every manifest: at ten million objects, one line per distinct version (about
42 million) rather than one entry per object per kept snapshot (510 million).

What is taken from the index is what the manifests would have given:
- only an index whose body hashes to its name (`KeptIndex` refuses any other: changed after the prune wrote
  it), and never written here: the cost report's role may read the prune's prefix, not write it;
- a snapshot is taken from it only when the cost report would read the very manifest version the index
  read (the version its sealed record pins, found with every check `open_snapshot` makes: not pruned, the
  record's plan and snapshot, the manifest key's versions, tampering reported); S3 never changes a version's
  bytes, so the entries are the same;
- its bits of snapshots no longer kept (pruned since it was written) are dropped, and a version left with
  none is not named;
- the kept snapshots it does not cover (taken since the prune wrote it, a manifest with another version)
  are read as without an index and merged in memory, streaming (`kept_index.combined`): nothing is written,
  and `NamedFrom` says which, in the report's `figures`.
The index holds held entries too, as this reader does (a held deletion keeps its version), so the figures are
the same either way (tests/test_cost_kept_index.py computes them both ways on the same bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from chalicelib.catalog.kept_index import PRUNE_INDEX, KeptIndex, Named, combined, newest_index
from chalicelib.catalog.manifest_stream import local_entries
from chalicelib.catalog.manifests import Entry, SnapshotVersion
from chalicelib.catalog.records import RecordStore
from chalicelib.catalog.relocations import relocator
from chalicelib.catalog.snapshot_reader import locate, read_located
from chalicelib.errors import NotFound, Pruned, Tampered
from chalicelib.plans import Plan


@dataclass
class NamedFrom:
    """Where the named versions came from: the prune's index used (None: none), the kept snapshots taken
    from it, and those whose manifests were read and merged in."""

    use_index: bool
    kept_index: str | None = None
    from_index: list[str] = field(default_factory=list)
    manifests_read: list[str] = field(default_factory=list)
    entries: int = 0

    def describe(self) -> dict[str, Any]:
        if not self.use_index:
            return {"kept_index": None, "manifests_read": len(self.manifests_read)}
        if self.kept_index is None:
            note = "no readable kept index of the prune's: every kept manifest was read"
        elif self.manifests_read:
            note = (
                f"the prune's kept index covers {len(self.from_index)} of the kept snapshots; the manifests of the "
                f"{len(self.manifests_read)} it does not cover were read and merged in"
            )
        else:
            note = f"the prune's kept index covers every kept snapshot ({len(self.from_index)}): no manifest was read"
        return {
            "kept_index": self.kept_index,
            "snapshots_from_index": len(self.from_index),
            "manifests_read": sorted(self.manifests_read),
            "note": note,
        }


class KeptVersions:
    """The versions a plan's kept snapshots name. `report` is told of tampering met; `warnings` collects the
    snapshots that could not be read. With `use_index` (the plans set an inventory), from the prune's index
    where it covers them."""

    def __init__(
        self, s3: Any, records: RecordStore, plan: Plan, report: Callable[[str], Any], warnings: list[str], use_index: bool
    ) -> None:
        self.s3 = s3
        self.records = records
        self.plan = plan
        self.report = report
        self.warnings = warnings
        self.named_from = NamedFrom(use_index)

    def entries(self, snapshots: Sequence[str], stack: ExitStack) -> Iterator[Entry]:
        """Each distinct version the kept ones of `snapshots` (backup ids) name, once, in (source, key,
        version id) order; closed with `stack`. `named_from.entries` counts the manifest entries they stand
        for (a version named by three snapshots, three)."""
        found = self.named_from
        index = newest_index(self.s3, self.plan.bucket, self.plan.name, PRUNE_INDEX, stack) if found.use_index else None
        found.kept_index = index.key if index is not None else None
        # Each packed entry named where its bytes are now, in the index and the manifests read below alike
        # (the records loaded once for all of them), before the versions are merged: an object repacked counts
        # once, in its new pack.
        relocate = relocator(self.s3, self.plan.bucket)
        if index is not None:
            index.relocate = relocate
        others: list[tuple[str, Iterable[Entry]]] = []
        for backup_id in snapshots:
            located = self._locate(backup_id)
            if located is None:
                continue
            if index is not None and index.pinned.get(backup_id) == located.version_id:
                found.from_index.append(backup_id)
                continue
            try:
                manifest = stack.enter_context(read_located(self.s3, self.plan, backup_id, located, self.report, relocate=relocate))
            except (NotFound, Tampered) as exc:
                self._not_read(backup_id, exc)
                continue
            found.manifests_read.append(backup_id)
            # Decoded as the kept index decodes a manifest it merges: the same entries, in about half the time.
            others.append((backup_id, local_entries(manifest, f"manifest of backup {backup_id}", include_held=True)))
        used: KeptIndex | None = index if found.from_index else None
        _, versions = combined(used, found.from_index, others)
        return self._counted(versions)

    @property
    def snapshots_read(self) -> int:
        return len(self.named_from.from_index) + len(self.named_from.manifests_read)

    def _counted(self, versions: Iterator[Named]) -> Iterator[Entry]:
        for entry, mask in versions:
            self.named_from.entries += mask.bit_count()
            yield entry

    def _locate(self, backup_id: str) -> SnapshotVersion | None:
        try:
            return locate(self.s3, self.records, self.plan, backup_id, self.report)
        except Pruned:
            # Marked by a prune that has not deleted its manifest yet: what only it names is going.
            return None
        except (NotFound, Tampered) as exc:
            self._not_read(backup_id, exc)
            return None

    def _not_read(self, backup_id: str, exc: Exception) -> None:
        self.warnings.append(
            f"plan '{self.plan.name}': snapshot of backup {backup_id} not read ({exc}); the versions only it names "
            "count as named by no snapshot"
        )

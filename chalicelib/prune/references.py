"""What a sweep reads to know which versions stay (referenced) and, with an inventory, which are candidates
(named by a snapshot being removed).

Without an inventory, every manifest is read whole (`manifest_references`). With one, the plan's own
snapshots come from the prune's kept index (catalog/kept_index.py, `PRUNE_INDEX`): each version the plan's
snapshots name, once, with a bit mask of the snapshots naming it. A line whose mask names a snapshot that
stays is a reference; a line whose mask names a snapshot being removed is a candidate, tagged with when the
earliest such manifest was written (the same as reading each manifest on its own: `report_sweep.walk_report`
takes the earliest). So a day's pass reads the index and the manifests written since it, not every manifest.

The index covers each snapshot of the plan whose manifest key has one version: that version is the one its
backup wrote and its sealed record pins (manifests are written create-only and only the prune deletes
versions), recorded in the index's header and checked against the bucket on every read. Read directly, as
without an index: every version of a manifest key with more than one (rare, and never trusted to be the
pinned one), other plans' manifests in the same bucket, and the partial manifests of unfinished backups.

Trust: the prune deletes what the index does not protect, so it reads only its own index (a prefix only its
role may write), named by the SHA-256 of its body (an index changed after it was written is not used), whose
header must name exactly the snapshots and manifest versions expected; anything else is rebuilt from the
manifests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.catalog.kept_index import PRUNE_INDEX, KeptIndex, kept_index
from chalicelib.catalog.manifests import Entry, Manifest
from chalicelib.catalog.records import backup_time, is_backup_id
from chalicelib.catalog.relocations import Relocations
from chalicelib.prune.decision import RUNNING_LOOKBACK, BucketMeta, StoredManifest
from chalicelib.prune.report_sweep import removed_references, removed_tag
from chalicelib.prune.sweep import References, check_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sweeping:
    """What a sweep of a plan's bucket stands on: the bucket's manifests (`meta`), the sealed backups, the
    plan's snapshots whose versions are not references (`excluded`: marked, or being removed), and when."""

    s3: Any
    bucket: str
    plan: str
    meta: BucketMeta
    sealed: Mapping[str, datetime]
    excluded: set[str]
    now: datetime
    # The bucket's relocation records (catalog/relocations.py): every reference is taken as relocated.
    relocations: Relocations | None = None
    # Given each packed entry the sweep keeps (the repack's count of live objects, prune/repack.py).
    collect: Callable[[Entry], None] | None = None


def manifest_references(
    at: Sweeping, stack: ExitStack, check: bool = False, indexed: Iterable[str] = ()
) -> list[Iterator[Entry]]:
    """Every manifest that names versions the sweep must keep, downloaded: all versions of every manifest in
    the bucket but the plan's excluded snapshots and those `indexed`, and the partial manifests of unfinished
    backups. With `check`, each is read through once first and refused (Tampered) if not sorted by key."""
    s3, bucket, plan, meta, sealed, now = at.s3, at.bucket, at.plan, at.meta, at.sealed, at.now
    skipped = set(at.excluded) | set(indexed)
    opened: list[Iterator[Entry]] = []

    def add(manifest: Manifest, where: str) -> None:
        if check:
            check_order(manifest.entries(include_held=True), where)
        opened.append(manifest.entries(include_held=True))

    for stored in meta.manifests.values():
        if stored.plan == plan and stored.backup_id in skipped:
            continue
        for version_id, _ in stored.versions:
            manifest = stack.enter_context(Manifest.download(s3, bucket, stored.key, version_id))
            add(manifest, f"manifest {stored.key} (version {version_id})")
    since = now - RUNNING_LOOKBACK
    for key, (_, backup_id) in sorted(meta.partials.items()):
        if backup_id in sealed or (is_backup_id(backup_id) and backup_time(backup_id) < since):
            continue  # left behind by a run that finished, or was abandoned long ago
        manifest = stack.enter_context(Manifest.download(s3, bucket, key))
        add(manifest, f"partial manifest {key}")
    return opened


def indexed_snapshots(plan: str, meta: BucketMeta) -> dict[str, StoredManifest]:
    """The plan's snapshots the index covers: each whose manifest key has one version."""
    return {m.backup_id: m for m in meta.manifests.values() if m.plan == plan and len(m.versions) == 1}


def prune_index(s3: Any, bucket: str, plan: str, pinned: Mapping[str, str], stack: ExitStack) -> KeptIndex:
    """The prune's index of exactly the snapshots (and manifest versions) `pinned`, brought up to date; one
    whose header says otherwise is not used: rebuilt from the manifests."""
    index = kept_index(s3, bucket, plan, list(pinned), stack, PRUNE_INDEX, pinned)
    if set(index.snapshots) != set(pinned) or index.pinned != dict(pinned):
        logger.warning("the prune's kept index %s of plan %s does not cover what it should: rebuilt", index.key, plan)
        index = kept_index(s3, bucket, plan, list(pinned), stack, PRUNE_INDEX, pinned, rebuild=True)
    # Its lines as stored: the sweep's references relocate them with the records the sweep read (`Sweeping`).
    index.relocate = None
    return index


def _split(index: KeptIndex, excluded: set[str], covered: Mapping[str, StoredManifest]) -> tuple[Iterator[tuple[Entry, str]], Iterator[tuple[Entry, str]]]:
    """The index's lines as references (a snapshot that stays names them) and as candidates (a snapshot
    excluded names them), each candidate tagged with the earliest excluded manifest naming it."""
    removed_bits = {position: covered[name].written for position, name in enumerate(index.snapshots) if name in excluded}
    removed_mask = sum(1 << position for position in removed_bits)
    tags: dict[int, str] = {}

    def tag(mask: int) -> str:
        if mask not in tags:
            tags[mask] = removed_tag(min(written for position, written in removed_bits.items() if mask >> position & 1))
        return tags[mask]

    kept = ((entry, "") for entry, mask in index.versions() if mask & ~removed_mask)
    removed = ((entry, tag(mask & removed_mask)) for entry, mask in index.versions() if mask & removed_mask)
    return kept, removed


def indexed_references(at: Sweeping, stack: ExitStack, check: bool = False) -> tuple[References, References, str | None]:
    """(kept, removed, index key): the references the sweep keeps, and the candidates the snapshots
    `excluded` name, from the prune's kept index (None: no snapshot to index) and the manifests it does not
    cover. With `check`, each manifest read directly is read through once first (Tampered if not sorted);
    the index's own were when it was merged."""
    s3, bucket, plan, meta, excluded = at.s3, at.bucket, at.plan, at.meta, at.excluded
    covered = indexed_snapshots(plan, meta)
    opened = manifest_references(at, stack, check, indexed=covered)
    direct = [m for m in meta.manifests.values() if m.plan == plan and m.backup_id in excluded and m.backup_id not in covered]
    kept_lines: list[Iterable[tuple[Entry, str]]] = []
    removed_lines: list[Iterable[tuple[Entry, str]]] = []
    key = None
    if covered:
        index = prune_index(s3, bucket, plan, {name: stored.versions[0][0] for name, stored in covered.items()}, stack)
        key = index.key
        kept_part, removed_part = _split(index, excluded, covered)
        kept_lines.append(kept_part)
        removed_lines.append(removed_part)
    kept = References(opened, tagged=kept_lines, relocations=at.relocations, collect=at.collect)
    stack.callback(kept.close)
    removed = removed_references(s3, bucket, direct, stack, check, tagged=removed_lines, relocations=at.relocations)
    return kept, removed, key


def keep_recently_relocated(references: References, relocations: Relocations, since: datetime) -> None:
    """Keep the old pack version of every relocation record written after `since` (the grace period's
    start): a restore or verification that read its entries before the record was there may still be
    reading that version. Older ones go once no kept snapshot's relocated entry names them."""
    for record in relocations.written_since(since):
        references.keep(record.old_key, record.old_version)

"""Which entries of a snapshot a restore takes, and where each one goes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chalicelib.catalog.manifests import Entry, Manifest
from chalicelib.plans import DynamoDBSource, Plan
from chalicelib.restore.requests import Target


def select_entries(manifest: Manifest, prefix: str | None, keys: tuple[str, ...] | list[str] | None) -> Iterator[Entry]:
    """The snapshot's entries the restore asked for (held-back deletions are not part of a snapshot)."""
    wanted = set(keys) if keys is not None else None
    for entry in manifest.entries():
        if prefix is not None and not entry.key.startswith(prefix):
            continue
        if wanted is not None and entry.key not in wanted:
            continue
        yield entry


def sources_by_name(plan: Plan) -> dict[str, Any]:
    return {source.name: source for source in plan.sources}


def target_key(plan: Plan, target: Target, entry: Entry) -> str:
    """A plan with one source restores its keys as they were; with several, each under its source's name."""
    if len(plan.sources) == 1:
        return target.prefix + entry.key
    return f"{target.prefix}{entry.source}/{entry.key}"


def target_table(plan: Plan, target: Target, entry: Entry) -> str | None:
    """The table a database export restores into (None: the export is restored as a file)."""
    if not target.table or not isinstance(sources_by_name(plan).get(entry.source), DynamoDBSource):
        return None
    tables = [s for s in plan.sources if isinstance(s, DynamoDBSource)]
    return target.table if len(tables) == 1 else f"{target.table}-{entry.source}"

"""The sweep when the plans set `inventory`: what may be deleted comes from the manifests and from the newest
S3 Inventory report of the plan's bucket, and nothing lists `data/`.

The candidates, key by key:

- every version a snapshot being removed names (its manifest, and those of snapshots an interrupted prune
  marked already): `removed`, each tagged with when that manifest version was written;
- every version and delete marker the report lists under `data/` (`data/~exports/` and `data/~long/`
  included): the ones a manifest names are candidates anyway, the rest are versions no manifest names
  (interrupted runs, duplicate deliveries, DynamoDB's export files).

Each candidate is judged as the listing sweep judges a version (`Rules`, `judge_versions`): named by a kept
manifest or a partial one -> kept; younger than the grace period, written since a running backup started,
or under Object Lock -> kept. Its time is the report's LastModifiedDate. A removed snapshot's version the
report does not list (written after the report's scan, or gone) is judged by the time its manifest was
written, which it cannot be younger than (a backup writes its manifest after every version it names): an
upper bound, so it can only keep more. A version no manifest names and the report does not list (written
after the scan) is no candidate: a later report lists it.

Order, and so flat memory: the listing sweep's order, in three phases (`short`: `data/<source>/<key>` by
(source, key), as manifests sort; `long`: `data/~long/...` and the packs, `data/~packs/...`, by data key
(packed entries name their pack's version there); `other`: the rest of `data/`, by
key). The report's rows come in that order from an external sort (`sorted_rows` with `row_order`), the
manifests' entries from their sorted merge (`References`), and the three streams advance together: what is
held at once is one key's rows. A position is the listing sweep's (`["short", source, key]`, `["long", data
key]`) or `["other", data key]`, everything up to and including it done.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.manifests import Entry, Manifest
from chalicelib.catalog.relocations import Relocations
from chalicelib.errors import describe_error
from chalicelib.inventory.freshness import newest_fresh_report
from chalicelib.inventory.reports import ReportError, Row, sorted_rows
from chalicelib.layout import DATA_PREFIX, LONG_KEYS_PREFIX, PACKS_PREFIX
from chalicelib.plans import InventoryPlan
from chalicelib.prune.decision import StoredManifest
from chalicelib.prune.sweep import Peek, Position, References, StoredKey, check_order
from chalicelib.times import isoformat, parse_iso

# What a prune does without a usable report, said after the report's problem.
WAITING = "versions no manifest names were not looked for this time (they wait for a usable report)"

PHASES = ("short", "long", "other")
Order = tuple[Any, ...]


def key_order(data_key: str) -> Order:
    """Where a stored key comes in the sweep: (0, source, key), (1, data key) or (2, data key)."""
    if data_key.startswith((LONG_KEYS_PREFIX, PACKS_PREFIX)):
        return (1, data_key)
    source, slash, key = data_key[len(DATA_PREFIX) :].partition("/")
    if data_key.startswith(DATA_PREFIX) and slash and source and not source.startswith("~"):
        return (0, source, key)
    return (2, data_key)


def row_order(row: Row) -> Order:
    """`sorted_rows`'s order for the sweep: the key's place, then the version id."""
    return (*key_order(row.key), row.version_id)


def in_data(row: Row) -> bool:
    return row.key.startswith(DATA_PREFIX)


def position_of(order: Order) -> Position:
    return [PHASES[order[0]], *order[1:]]


def order_of(position: Position) -> Order:
    return (PHASES.index(position[0]), *position[1:])


def _stored_key(order: Order) -> str:
    return f"{DATA_PREFIX}{order[1]}/{order[2]}" if order[0] == 0 else str(order[1])


def removed_tag(written: datetime) -> str:
    """The tag of a removed snapshot's manifest version: when S3 wrote it."""
    return isoformat(written)


def _item(row: Row, now: datetime) -> dict[str, Any]:
    """A row as the listing sweep sees a version (ListObjectVersions' fields)."""
    return {
        "Key": row.key,
        "VersionId": row.version_id or "null",
        # A row without a time (no value in the report) is judged as written now: kept.
        "LastModified": row.last_modified or now,
        "Size": row.size or 0,
        "StorageClass": row.storage_class or "STANDARD",
        "IsLatest": row.is_latest,
        "marker": row.is_delete_marker,
        "RetainUntil": row.object_lock_retain_until,
        "LegalHold": row.object_lock_legal_hold,
    }


def _newest_first(item: dict[str, Any]) -> tuple[float, bool]:
    return (-item["LastModified"].timestamp(), not item.get("IsLatest"))


def walk_report(
    rows: Iterable[Row],
    removed: References,
    kept: References,
    position: Position | None,
    now: datetime,
    unnamed: bool = True,
) -> Iterator[StoredKey]:
    """Every key after `position` with a candidate: its candidates (the report's rows, and the removed
    snapshots' versions the report does not list), newest first, and the versions the kept manifests name of
    them. `rows`: the report's rows under `data/` in `row_order`.

    Without `unnamed`, rows no manifest names are left out: an earlier prune looked for them in this same
    report already, and what it deleted since the scan still has its row (sent again, it would be counted
    again, and the guard would see deletions that are not)."""
    after = order_of(position) if position else None

    def listed() -> Iterator[tuple[Order, Any]]:
        for row in rows:
            order = key_order(row.key)
            if after is None or order > after:
                yield order, row

    def named() -> Iterator[tuple[Order, Any]]:
        short = (((0, s, k), (v, tag, size)) for s, k, v, tag, size in removed.tagged_short())
        long = (((1, d), (v, tag, size)) for d, v, tag, size in removed.tagged_long())
        for order, entry in itertools.chain(short, long):
            if after is None or order > after:
                yield order, entry

    references = Peek(
        itertools.chain(((0, s, k, v) for s, k, v in kept.short()), ((1, d, v) for d, v in kept.long()))
    )
    merged = heapq.merge(listed(), named(), key=lambda pair: pair[0])
    for order, group in itertools.groupby(merged, key=lambda pair: pair[0]):
        data_key = _stored_key(order)
        items: dict[str, dict[str, Any]] = {}
        bounds: dict[str, tuple[datetime, int]] = {}
        for _, found in group:
            if isinstance(found, Row):
                item = _item(found, now)
                items[item["VersionId"]] = item
            else:
                version_id, tag, size = found
                written = parse_iso(tag)
                if version_id not in bounds or written < bounds[version_id][0]:
                    bounds[version_id] = (written, size)
        for version_id, (written, size) in bounds.items():
            if version_id not in items:
                # Not in the report: written after its scan (or gone). IsLatest unknown: counted noncurrent.
                items[version_id] = {"Key": data_key, "VersionId": version_id, "LastModified": written, "Size": size}
        references.skip_below(order)
        named_by_kept = references.take_equal(order)
        if not unnamed:
            items = {v: item for v, item in items.items() if v in bounds or v in named_by_kept}
            if not items:
                continue
        referenced = named_by_kept & set(items)
        ordered = sorted(items.values(), key=_newest_first)
        yield StoredKey(data_key, ordered, referenced, position_of(order))


def report_rows(
    s3: Any, inventory: InventoryPlan, bucket: str, now: datetime, stack: ExitStack, first_snapshot: datetime | None
) -> tuple[Iterable[Row], dict[str, Any]]:
    """The rows under `data/` of the newest report of `bucket`, in `row_order`, and what the prune's record
    keeps of the report (bucket, report, created, age_days, problem). A missing, stale or unreadable report
    gives no rows and says why in `problem`: versions no manifest names then wait for a later prune.

    No report is no problem while the first is not due (the plan's oldest snapshot, `first_snapshot`, is
    younger than a report may be old, as the weekly verification has it): `pending` says when it is.

    Every data file is read and checked before the first row is given (the external sort reads them all),
    so a corrupt file is found here, before anything is judged."""
    fresh = newest_fresh_report(
        s3, inventory.bucket, inventory.prefix, inventory.configuration_id, inventory.frequency, bucket, now,
        first_snapshot,
    )
    summary = fresh.described(WAITING)
    if fresh.report is None:
        return (), summary
    rows = sorted_rows(s3, fresh.report, keep=in_data, order=row_order)
    stack.callback(rows.close)
    try:
        first = next(rows, None)
    except (ReportError, ClientError, BotoCoreError) as exc:
        summary["problem"] = (
            f"the newest inventory report of s3://{bucket} ({fresh.report.manifest_key}) cannot be used "
            f"({describe_error(exc)}): {WAITING}"
        )
        return (), summary
    return (itertools.chain([first], rows) if first is not None else ()), summary


def removed_references(
    s3: Any,
    bucket: str,
    manifests: Iterable[StoredManifest],
    stack: ExitStack,
    check: bool,
    tagged: Sequence[Iterable[tuple[Entry, str]]] = (),
    relocations: Relocations | None = None,
) -> References:
    """The versions the given manifests (every version of each) name, each tagged with when that manifest
    version was written (`removed_tag`), and the `tagged` streams' (a kept index's lines). With `check`, each
    manifest is read through once first and refused (Tampered) if not sorted by key."""
    opened = []
    tags = []
    for stored in manifests:
        for version_id, written in stored.versions:
            manifest = stack.enter_context(Manifest.download(s3, bucket, stored.key, version_id))
            if check:
                check_order(manifest.entries(include_held=True), f"manifest {stored.key} (version {version_id})")
            opened.append(manifest.entries(include_held=True))
            tags.append(removed_tag(written))
    references = References(opened, tags, tagged, relocations)
    stack.callback(references.close)
    return references

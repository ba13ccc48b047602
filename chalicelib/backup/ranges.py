"""One large plan, split into key ranges worked by parallel invocations, merged into one snapshot.

A plan whose previous snapshot holds at least `split_objects` objects is cut into K ranges of about equal
size (K = ceil(objects / split_objects), at most `max_parallel`), at keys taken from that snapshot. The
invocation that decides the split records it (`meta/checkpoints/<plan>/<backup id>/split.json`, created
with `IfNoneMatch="*"`, so a duplicate delivery adopts the first split instead of making another), invokes
the worker once per other range (`{"backup_id", "plan", "segment"}`) and works range 0 itself.

Each range is a plan run bounded to its keys, with its own checkpoints
(`.../segment-<i>/`): short of time it stops and continues in a new invocation like any plan run. When it
reaches its end it saves its partial manifest marked done, and looks at the others. The one that finds every
range done merges the partial manifests (a sorted merge: ranges are disjoint and each is sorted), decides
deletions on the whole plan, and writes the one manifest, conditionally as always: if two ranges finish at
the same moment both may merge, and exactly one manifest is written.

Every range compares against the same previous snapshot, the one named in the split record, whatever
backups finish meanwhile.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any


from chalicelib import s3docs
from chalicelib.backup import checkpoints
from chalicelib.catalog import run_keys
from chalicelib.backup.compare import PreviousSnapshot
from chalicelib.backup.plan_backup import PlanBackup, ReaderFactory
from chalicelib.backup.sources import readers_on
from chalicelib.backup.base import Base, bases_from_manifests
from chalicelib.catalog.manifests import ManifestWriter, load_snapshot, manifest_key, read_header
from chalicelib.catalog.records import BackupStatus, PlanResult
from chalicelib.jobs.dispatch import Invoker
from chalicelib.errors import AlreadyExists, NotFound, Tampered
from chalicelib.layout import CHECKPOINTS_PREFIX
from chalicelib.plans import Plan
from chalicelib.s3docs import get_json

logger = logging.getLogger(__name__)

# A range's end: (source index in the plan, last key). None: the start or the end of the plan.
Bound = tuple[int, str] | None
# A plan run that finished its range while others still work: no continuation, no record update.
WAITING = "WAITING"


@dataclass
class Split:
    # The base every range compares with: {"backup_id", "version_id", "sha256"} (see base.py), or None.
    previous: dict[str, Any] | None
    # K-1 inner boundaries; range i covers (bounds[i-1], bounds[i]].
    bounds: list[tuple[int, str]]

    @property
    def count(self) -> int:
        return len(self.bounds) + 1

    def range(self, index: int) -> tuple[Bound, Bound]:
        start = self.bounds[index - 1] if index > 0 else None
        stop = self.bounds[index] if index < len(self.bounds) else None
        return (_bound(start), _bound(stop))


def _bound(value: Any) -> Bound:
    """A boundary as stored (JSON gives a list) or as computed (a tuple)."""
    return None if not value else (int(value[0]), str(value[1]))


@dataclass(frozen=True)
class SplitPolicy:
    split_objects: int
    max_parallel: int
    invoker: Invoker


def split_key(plan: str, backup_id: str) -> str:
    return f"{CHECKPOINTS_PREFIX}{plan}/{backup_id}/split.json"


class SegmentCheckpoints(checkpoints.CheckpointStore):
    """The checkpoints of one range: `meta/checkpoints/<plan>/<backup id>/segment-<i>/`."""

    def __init__(self, s3: Any, bucket: str, plan: str, backup_id: str, segment: int, run_key: str | None = None) -> None:
        super().__init__(s3, bucket, plan, backup_id, run_key)
        self.prefix = f"{self.prefix}segment-{segment:03d}/"

    @property
    def state_key(self) -> str:
        return self.prefix + "state.json"


class RangeBackup(PlanBackup):
    """One range of a split plan."""

    def __init__(self, *args: Any, split: Split, segment: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.split = split
        self.segment = segment
        self._checkpoints = SegmentCheckpoints(self.s3, self.plan.bucket, self.plan.name, self.backup_id, segment, self.run_key)

    def _run(self) -> None:
        key = manifest_key(self.plan.name, self.backup_id)
        # Like a whole plan's run: nothing is written before the bucket is known to keep every version.
        meta = checkpoints.read_plan_meta(self.s3, self.plan, self.max_workers)
        if key in meta.manifests:
            with load_snapshot(self.s3, self.plan.bucket, self.plan.name, self.backup_id) as done:
                self._report_existing(done, key)
            return
        start, stop = self.split.range(self.segment)
        state = self._checkpoints.load()
        if state is None or not state.done:
            self._work(state, start, stop)
        self._finalize_if_last(meta)

    def _work(self, state: checkpoints.Checkpoint | None, start: Bound, stop: Bound) -> None:
        previous = (
            Base(**self.split.previous).open(self.s3, self.plan.bucket, self.plan.name) if self.split.previous else None
        )
        if state is not None:
            writer, start_index, start_after = self._resume()
        else:
            writer = ManifestWriter()
            start_index, start_after = start if start else (0, None)
        stop_index, stop_key = stop if stop else (len(self.plan.sources) - 1, None)
        try:
            with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
                prev_entries = PreviousSnapshot(previous)
                for index, source in enumerate(self.plan.sources):
                    if index < start_index or index > stop_index:
                        continue
                    after = start_after if index == start_index else None
                    bound = stop_key if index == stop_index else None
                    entries = prev_entries.for_source(source.name, up_to=bound)
                    self._back_up_source(source, entries, writer, pool, index, after, stop_key=bound)
                    self._maybe_suspend(writer, index + 1, None)
            # The range is done: its partial manifest, marked so (its last pack stored first).
            self._save_checkpoint(writer, stop_index + 1, None, done=True)
        finally:
            self.copier.close()
            writer.close()
            if previous is not None:
                previous.close()

    def _finalize_if_last(self, meta: checkpoints.PlanMeta) -> None:
        stores = [
            SegmentCheckpoints(self.s3, self.plan.bucket, self.plan.name, self.backup_id, index, self.run_key)
            for index in range(self.split.count)
        ]
        states = [store.load() for store in stores]
        if not all(state is not None and state.done for state in states):
            self.result.status = WAITING
            return
        result = self.result
        result.copied = result.unchanged = result.failed = result.bytes_copied = 0
        result.errors, result.warnings, result.sources = [], [], {}
        manifests = []
        for state, store in zip(states, stores):
            assert state is not None
            result.copied += state.counters.get("copied", 0)
            result.unchanged += state.counters.get("unchanged", 0)
            result.failed += state.counters.get("failed", 0)
            result.bytes_copied += state.counters.get("bytes_copied", 0)
            result.errors.extend(state.errors)
            for name, stats in state.sources.items():
                merge_source_stats(result.sources.setdefault(name, {}), stats)
            manifests.append(store.partial(state))
        for name, stats in result.sources.items():
            self.copier.warn_not_copied(name, stats)
        writer = ManifestWriter()
        try:
            for entry in heapq.merge(*(m.entries(include_held=True) for m in manifests), key=lambda e: e.sort_key):
                writer.add(entry)
            self._write_snapshot(writer, meta)
        finally:
            writer.close()
            for manifest in manifests:
                manifest.close()

    def _write_snapshot(self, writer: ManifestWriter, meta: checkpoints.PlanMeta) -> None:
        result = self.result
        with ThreadPoolExecutor(max_workers=2) as pool:
            hold = self._decide_deletions(writer.pending_deletions, meta)
            if not hold and not self.dry_run:
                self._apply_deletions(writer, pool)
        result.objects = writer.objects
        result.bytes = writer.bytes
        if not self.dry_run:
            self._put_snapshot(writer, hold, ranges=self.split.count)
        # Every range's checkpoints and the split record go with the plan's own.
        checkpoints.CheckpointStore(self.s3, self.plan.bucket, self.plan.name, self.backup_id).clear()
        self._checkpoints.saved = False
        self._finish_run(meta)
        result.status = BackupStatus.PARTIAL if (result.failed or result.deletions_held_back or result.errors) else BackupStatus.SUCCEEDED


def merge_source_stats(merged: dict[str, Any], stats: dict[str, Any]) -> None:
    """Add one range's counts of a source to the plan's: numbers add up, everything else (the type, a
    table's schema and item count, which only the range holding the export has) is taken as it is."""
    for name, value in stats.items():
        if isinstance(value, int) and not isinstance(value, bool) and name != "items":
            merged[name] = merged.get(name, 0) + value
        else:
            merged[name] = value


def load_split(s3: Any, bucket: str, plan: str, backup_id: str, run_key: str | None = None) -> Split | None:
    """The plan's split, as its run recorded it: with the run's key, one without the run's proof is
    `Tampered` (its bounds or base would decide what the snapshot holds)."""
    data = get_json(s3, bucket, split_key(plan, backup_id))
    if data is None:
        return None
    proven = run_keys.state_proven(run_key, split_key(plan, backup_id), data)
    if proven is None:
        # Recorded by a version before splits carried the run's proof (a run under way at an upgrade): not
        # worked; the plan runs whole instead (ranges already under way adopt its snapshot, proven by the key).
        logger.warning("the split of plan %s for backup %s carries no proof (an earlier version's): the plan runs whole", plan, backup_id)
        return None
    if not proven:
        raise Tampered(
            f"the split of plan {plan} for backup {backup_id} (s3://{bucket}/{split_key(plan, backup_id)}) was not "
            "recorded by the backup's run: its ranges are not worked, and the plan fails"
        )
    return Split(previous=data.get("previous"), bounds=[(int(b[0]), str(b[1])) for b in data["bounds"]])


def start_split(
    s3: Any,
    plan: Plan,
    backup_id: str,
    policy: SplitPolicy | None,
    dry_run: bool = False,
    base: Base | None = None,
    pruned: Collection[str] = (),
    run_key: str | None = None,
) -> Split | None:
    """At the start of a plan run: the plan's split if it is (or is now) split, else None (a single run).
    A new or adopted split has the other ranges invoked (with the run's key); the caller works range 0. Deciding costs a listing
    and a ranged GET of the base manifest's header (`base`: as the catalog names it; None: from the bucket's
    manifests, see base.py)."""
    if policy is None or dry_run or not policy.split_objects:
        return None
    meta = checkpoints.scan_plan_meta(s3, plan.bucket, plan.name)
    if manifest_key(plan.name, backup_id) in meta.manifests:
        return None
    base = base or next(bases_from_manifests(plan.name, meta.manifests, backup_id, pruned), None)
    if base is None:
        return None
    latest = manifest_key(plan.name, base.backup_id)
    header = read_header(s3, plan.bucket, latest, base.version_id)
    objects = int(header.get("objects", 0)) + int(header.get("held_deletions", 0))
    count = min(policy.max_parallel, math.ceil(objects / policy.split_objects))
    if count < 2:
        return None
    split = load_split(s3, plan.bucket, plan.name, backup_id, run_key) or _record_split(
        s3, plan, backup_id, base, objects, count, run_key
    )
    if split is not None:
        # A repeated delivery invokes the ranges again: a range that is done, or running, costs little.
        for index in range(1, split.count):
            payload: dict[str, Any] = {"backup_id": backup_id, "plan": plan.name, "segment": index}
            policy.invoker(payload | ({"run_key": run_key} if run_key else {}))
    return split


def _record_split(
    s3: Any, plan: Plan, backup_id: str, base: Base, objects: int, count: int, run_key: str | None
) -> Split | None:
    order = {source.name: index for index, source in enumerate(plan.sources)}
    marks = {math.floor(objects * i / count) for i in range(1, count)}
    bounds: list[tuple[int, str]] = []
    try:
        previous = base.open(s3, plan.bucket, plan.name)
    except (Tampered, NotFound) as exc:
        logger.warning("plan %s of backup %s is not split: its base cannot be used: %s", plan.name, backup_id, exc)
        return None
    with previous:
        for position, entry in enumerate(previous.entries(include_held=True)):
            if position in marks and entry.source in order:
                bounds.append((order[entry.source], entry.key))
    bounds = sorted(set(bounds))
    if not bounds:
        return None
    split = Split(previous=asdict(base), bounds=bounds)
    # As JSON reads it back (bounds as lists): the proof is over what a later invocation loads.
    document = run_keys.prove_state(run_key, split_key(plan.name, backup_id), json.loads(json.dumps(asdict(split))))
    try:
        s3docs.put_new(
            s3,
            Bucket=plan.bucket,
            Key=split_key(plan.name, backup_id),
            Body=json.dumps(document).encode("utf-8"),
            ContentType="application/json",
        )
    except AlreadyExists:
        # Another delivery of this backup split the plan first: work its split.
        return load_split(s3, plan.bucket, plan.name, backup_id, run_key)
    logger.info("plan %s of backup %s: %d objects, split into %d ranges", plan.name, backup_id, objects, split.count)
    return split


def run_range(
    plan: Plan, clients: Any, backup_id: str, split: Split, segment: int, reader_factory: ReaderFactory | None = None,
    **options: Any,
) -> PlanResult:
    """Work one range. Status `WAITING`: this range is done and others still work."""
    factory = reader_factory or readers_on(clients)
    return RangeBackup(plan, clients.s3, backup_id, factory, split=split, segment=segment, **options).run()

"""A restore too large for one worker, cut into parts that parallel invocations work at once.

The first pass of a restore into a bucket whose selection holds at least `split_objects` entries (the
setting that splits a backup into ranges, SPLIT_OBJECTS), run where new invocations can be had (the restore
worker function), is cut into K parts of about equal size (K = ceil(entries / split_objects), at most
`max_parallel`) at entries of the selection, which is in the snapshot's order. Each part is a restore of its
own: a record `<restore id>-p<i>` naming its range of the selection, (after, through] in (source, key)
order, created only if absent, and queued like any restore. So a part has all that a restore has: its
checkpoints and continuations, its thaw passes, the hourly check when its worker is lost, and the prune's
protection of the snapshot it reads (the prune keeps every snapshot a queued restore reads).

The whole restore's record names its parts and, once every part has ended its first pass, holds their sum:
the part that ends a pass writes it, and so does the hourly check, from the parts' records alone (a sum, not
an increment: writing it twice writes the same thing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from chalicelib.catalog.manifests import Entry
from chalicelib.errors import AlreadyExists, NotFound
from chalicelib.jobs.runner import Checkpoint
from chalicelib.restore.record import MAX_FAILURES_LISTED, RestoreRecord, RestoreStatus, RestoreStore, settle
from chalicelib.times import isoformat, utcnow

# A range's end, (source, key) of the selection's entry it ends at; None: the start or the end.
Bound = tuple[str, str] | None


def cut(entries: Sequence[Entry], split_objects: int, max_parallel: int) -> list[tuple[Bound, Bound]]:
    """The parts of a selection in the snapshot's order: [] when it is not worth cutting (fewer than
    `split_objects` entries, or one part). Each part is (after, through]: it takes the entries whose
    (source, key) is above `after` and at most `through`."""
    if split_objects <= 0 or len(entries) < split_objects:
        return []
    count = min(max_parallel, math.ceil(len(entries) / split_objects))
    if count < 2:
        return []
    size = math.ceil(len(entries) / count)
    ends: list[Bound] = [entries[i - 1].sort_key for i in range(size, len(entries), size)]
    starts: list[Bound] = [None, *ends]
    return list(zip(starts, [*ends, None]))


def in_part(entries: Iterable[Entry], after: Bound, through: Bound) -> list[Entry]:
    return [e for e in entries if (after is None or e.sort_key > after) and (through is None or e.sort_key <= through)]


def part_id(restore_id: str, index: int) -> str:
    return f"{restore_id}-p{index}"


def part_records(whole: RestoreRecord, parts: list[tuple[Bound, Bound]], entries: Sequence[Entry]) -> list[RestoreRecord]:
    """The parts' records as they are created: RUNNING, each with its share of the totals."""
    now = isoformat(utcnow())
    records = []
    for index, (after, through) in enumerate(parts):
        share = in_part(entries, after, through)
        records.append(
            replace(
                whole, restore_id=part_id(whole.restore_id, index), status=RestoreStatus.RUNNING,
                total=len(share), bytes_total=sum(e.size for e in share), created_at=now, updated_at=now,
                part_of=whole.restore_id, part_range=[list(after) if after else None, list(through) if through else None],
                parts=[], passes=0, warnings=[], failures=[], pending=[], scanned=False, done_through=None,
            )
        )
    return records


def create_parts(store: RestoreStore, records: list[RestoreRecord]) -> list[RestoreRecord]:
    """Create the parts' records that are not there yet (another invocation of the first pass, or the hourly
    check after a crash, may have made some); the ones created here, to be invoked."""
    created = []
    for record in records:
        try:
            store.create(record)
        except AlreadyExists:
            continue
        created.append(record)
    return created


def add_up(whole: RestoreRecord, parts: list[RestoreRecord | None]) -> bool:
    """The whole restore as its parts' records say (True), once each has ended its first pass; False (and
    nothing changed) while one still runs. Whatever of the selection no readable part covers (a part whose
    record is missing, parts cut again under other settings) counts as failed, with the reason."""
    if any(p is not None and p.status in (RestoreStatus.RUNNING, RestoreStatus.PREPARING) for p in parts):
        return False
    whole.restored = whole.bytes_restored = whole.failed = 0
    whole.pending, whole.failures = [], []
    for index, part in enumerate(parts):
        if part is None:
            # Its share is counted failed below, with whatever else no part covers.
            whole.failures.append({"source": "", "key": "", "reason": f"part {part_id(whole.restore_id, index)} has no readable record"})
            continue
        whole.restored += part.restored
        whole.bytes_restored += part.bytes_restored
        whole.failed += part.failed
        whole.failures.extend(part.failures[: max(0, MAX_FAILURES_LISTED - len(whole.failures))])
        if part.refused:
            # Refused (its snapshot pruned, its target no longer allowed): the rest of its range was not restored.
            whole.failed += max(0, part.total - part.restored - part.failed)
            whole.failures.append({"source": "", "key": "", "reason": f"part {part.restore_id} refused: {part.refused}"})
    # Parts that do not cover the selection (cut again after a crash under other settings, keeping the first
    # cut's parts): what no part took was not restored.
    covered = sum(part.total for part in parts if part is not None)
    if covered < whole.total:
        whole.failed += whole.total - covered
        whole.failures.append({"source": "", "key": "", "reason": f"{whole.total - covered} object(s) of the selection are in no readable part"})
    # The versions waiting for a thaw stay in the parts' records (each part's next pass takes its own);
    # the whole restore counts them and says when the last is due.
    waiting = [p for p in parts if p is not None and p.status == RestoreStatus.WAITING_FOR_THAW]
    settle(whole, pending=sum(p.pending_thaw for p in waiting), ready_by=max((p.expected_thaw_completion or "" for p in waiting), default=None))
    return True


def read_parts(store: RestoreStore, whole: RestoreRecord) -> list[RestoreRecord | None]:
    found: list[RestoreRecord | None] = []
    for restore_id in whole.parts:
        try:
            found.append(store.get(restore_id))
        except (NotFound, ValueError, TypeError):
            found.append(None)
    return found


def bring_up_to_date(store: RestoreStore, restore_id: str) -> None:
    """Write the whole restore's record from its parts' (a part that ended a pass calls it). Another writer
    at the same moment writes the same sum: whichever comes second finds the record changed and stops."""
    read = store.read(restore_id)
    if read is None:
        return
    whole, etag = read
    if whole.finished or not add_up(whole, read_parts(store, whole)):
        return
    checkpoint = Checkpoint(store, whole, etag, None)
    try:
        checkpoint.save()
    except AlreadyExists:
        pass


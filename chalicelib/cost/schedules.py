"""A version's storage-class schedule in whole days, as the day-by-day simulation (`chalicelib.cost.simulation`)
and its pack books (`chalicelib.cost.packs_model`) use it: from the model (`chalicelib.cost.model`), relative
to the day the version was written."""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.cost.model import SMALL_OBJECT_BYTES, StoredVersion, timeline
from chalicelib.plans import Lifecycle


class Schedules:
    """The storage-class schedule of a (written day, replaced day) pair, from the model, in whole days and
    relative to the written day. Cached: it depends only on the gap between the two days."""

    def __init__(self, lifecycle: Lifecycle, start: datetime) -> None:
        self.lifecycle = lifecycle
        self.start = start
        self._cache: dict[tuple[bool, int | None], list[tuple[int, str]]] = {}

    def __call__(self, small: bool, replaced_after: int | None) -> list[tuple[int, str]]:
        key = (small, replaced_after)
        if key not in self._cache:
            size = SMALL_OBJECT_BYTES - 1 if small else SMALL_OBJECT_BYTES
            noncurrent = None if replaced_after is None else self.start + timedelta(days=replaced_after)
            version = StoredVersion(size, self.start, noncurrent)
            self._cache[key] = [
                (0 if p.since == self.start else (p.since.date() - self.start.date()).days, p.storage_class)
                for p in timeline(version, self.lifecycle)
            ]
        return self._cache[key]


def class_on(schedule: list[tuple[int, str]], age: int) -> tuple[str, int]:
    """The class on the day `age` days after writing, and the day (after writing) it entered it."""
    found = schedule[0]
    for entry in schedule:
        if entry[0] <= age:
            found = entry
    return found[1], found[0]


def later_moves(schedule: list[tuple[int, str]], after: int) -> list[tuple[int, str, str]]:
    """The moves of a schedule after `after` days, as (days after writing, from, to)."""
    moves, previous = [], class_on(schedule, after)[0]
    for since, target in schedule:
        if since > after:
            moves.append((since, previous, target))
            previous = target
    return moves

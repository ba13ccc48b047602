"""The pack books of a projection: what a plan with `small_objects: pack` stores for its small objects, and
what that costs (`chalicelib.cost.simulation` keeps them beside its size groups).

What the code does (chalicelib/backup/packing.py, chalicelib/prune/, chalicelib/verify/), and so the model:
- each day's new and changed objects below `pack_threshold_bytes` are read from their source by GET (billed
  at the GET rate, to the account that owns the source) and written into packs of `pack_target_bytes`, one
  PUT each: `ceil(bytes / target)` packs a day, all full but the last (one partial pack a run: a plan split
  into ranges, or a run that saves checkpoints, writes one more per range or checkpoint, left out). A pack's
  bytes are its objects' plus its index (`PACK_INDEX_BYTES_PER_OBJECT` a packed object, and the footer);
- a pack has a key of its own and is never overwritten: it stays the current version of its key, so the
  lifecycle's `Transitions` move it, counted from when it was written, and S3's 128 KB rule applies to the
  pack's size, not to its objects' (only a last, partial pack under 128 KB stays in STANDARD). A transition
  request, the 40 KB overhead and the early-deletion charge are per pack;
- the prune deletes a pack only when no kept snapshot names any object in it. Nothing repacks: a pack mostly
  unreferenced stays whole (no rule of the prune on this branch rewrites packs);
- deleting a packed object at the source needs no delete marker: the snapshot leaving it out is its deletion.

A pack's lifetime, from the cohort it holds (one day's objects, all written that day): an object written on
day w and replaced (changed or deleted) on day r is named by the snapshots of days w .. r-1, so some kept
snapshot names it exactly when the first kept snapshot on or after day w, s(w), comes before r: it was still
current at s(w). Changes strike every object alike, so each object of the cohort is current at s(w) with
probability (1 - q)^(s(w) - w) (q: the share changed or deleted a day), independently of the others; a pack
of n objects is unreferenced when none of them is, with probability (1 - (1 - q)^(s(w) - w))^n. The books
hold the expected number of live packs, and s(w) moves only when the prune removes the snapshot it was, so
packs die only on those days. A day's full packs share one n, its partial pack has its own.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chalicelib.catalog.packs import FOOTER_BYTES
from chalicelib.cost.model import SMALL_OBJECT_BYTES, early_deletion_charge
from chalicelib.cost.schedules import class_on, later_moves
from chalicelib.prices import Prices

# A packed object's manifest entry gzipped: measured with the manifest's own serialisation
# (tests/test_cost_packs.py measures it again), with S3-like version ids and random ETags and SHA-256
# values, its neighbours in key order in other packs, as by month 12 nearly all are (fewer than 2% of the
# objects are still in the first day's packs): 26.4 bytes more than an object stored on its own (its offset,
# its own SHA-256 and its pack's number; the pack's key, version, size and ETag are written once a manifest,
# catalog/manifests.py `PackTable`), plus a byte for the five-digit pack numbers of a 10M-object snapshot,
# added to the 110 measured for those (simulation.py).
PACKED_MANIFEST_BYTES_PER_ENTRY = 137
# A packed object's line in its pack's trailer (catalog/packs.py `encode_trailer`, gzip): measured on 1,638
# objects of 10 KiB with their keys, SHA-256 values and identities.
PACK_INDEX_BYTES_PER_OBJECT = 76

# A schedule as the simulation gives it: (days after writing, storage class) for a version never replaced.
Schedule = list[tuple[int, str]]


@dataclass
class _Packs:
    """Packs written on one day that hold the same number of objects: `count` of them (expected, so a real
    number), each of `size` bytes holding `objects` objects; `live` of them are still stored."""

    written: int
    count: float
    objects: float
    size: float
    schedule: Schedule
    live: float = 0.0

    def __post_init__(self) -> None:
        self.live = self.count


@dataclass
class PackDay:
    """What the day's backup did with the small objects: objects packed (each read by GET), packs written
    (a PUT each), packed objects deleted at the source (no delete marker)."""

    packed: float
    packs: float
    deleted: float


@dataclass
class PackBooks:
    """The packs of one plan's small objects, day by day. `share` of the workload's objects (and of its new
    ones) are packed, of `size` bytes on average; `changed` and `deleted` are the workload's daily shares."""

    share: float
    size: float
    target: int
    changed: float
    deleted: float
    schedule: Callable[[bool], Schedule]
    prices: Prices
    days: int
    # Current packed objects by the day they were packed.
    current: list[float] = field(default_factory=list)
    cohorts: dict[int, list[_Packs]] = field(default_factory=dict)
    # The first kept snapshot on or after each cohort's day, and the objects of the cohort some kept snapshot
    # names (current at that snapshot).
    first_kept: dict[int, int] = field(default_factory=dict)
    named_by_day: dict[int, float] = field(default_factory=dict)
    # Stored packs and their bytes by storage class, and transitions booked by the day they happen.
    held: dict[str, list[float]] = field(default_factory=dict)
    moves: dict[int, list[tuple[_Packs, str, str]]] = field(default_factory=dict)
    # The day's dead packs, and their early-deletion charge.
    died: float = 0.0
    early_deletions: float = 0.0

    def __post_init__(self) -> None:
        self.current = [0.0] * self.days

    @property
    def objects(self) -> float:
        """Current packed objects: what the source holds below the threshold."""
        return sum(self.current)

    @property
    def named(self) -> float:
        """Distinct packed object versions kept snapshots name: a kept index line, a verification check each
        (against its pack's report row, or its pack's one HEAD)."""
        return sum(self.named_by_day.values())

    @property
    def packs(self) -> float:
        return sum(totals[0] for totals in self.held.values())

    def _hold(self, name: str, packs: float, size: float) -> None:
        totals = self.held.setdefault(name, [0.0, 0.0])
        totals[0] += packs
        totals[1] += packs * size

    def midnight(self, day: int) -> float:
        """Transitions due today (live packs reaching a colder class): their requests' cost."""
        cost = 0.0
        for packs, source, target in self.moves.pop(day, []):
            if packs.live > 0:
                self._hold(source, -packs.live, packs.size)
                self._hold(target, packs.live, packs.size)
                cost += packs.live * self.prices.transition_per_request(target)
        return cost

    def back_up(self, day: int, new_objects: float) -> PackDay:
        """The day's backup: a share of the current packed objects changed (packed anew) or deleted, the
        new ones packed; on day 0 every object."""
        if day == 0:
            deleted, packed = 0.0, new_objects * self.share
        else:
            before = self.objects
            deleted = before * self.deleted
            self.current[:day] = [count * (1 - self.changed - self.deleted) for count in self.current[:day]]
            packed = before * self.changed + new_objects * self.share
        self.current[day] = packed
        written = self._write(day, packed)
        self.first_kept[day] = day
        self.named_by_day[day] = packed
        return PackDay(packed=packed, packs=written, deleted=deleted)

    def _write(self, day: int, objects: float) -> float:
        if objects <= 0:
            return 0.0
        total = objects * self.size
        full = math.floor(total / self.target)
        rest = total - full * self.target
        made = []
        if full:
            per_pack = objects * self.target / total
            made.append(_Packs(day, full, per_pack, self._bytes(self.target, per_pack), self.schedule(False)))
        if rest > 0:
            per_pack = objects * rest / total
            size = self._bytes(rest, per_pack)
            made.append(_Packs(day, 1.0, per_pack, size, self.schedule(size < SMALL_OBJECT_BYTES)))
        for packs in made:
            self._hold(packs.schedule[0][1], packs.count, packs.size)
            for since, source, target in later_moves(packs.schedule, 0):
                if day + since < self.days:
                    self.moves.setdefault(day + since, []).append((packs, source, target))
        self.cohorts[day] = made
        return full + (1.0 if rest > 0 else 0.0)

    @staticmethod
    def _bytes(data: float, objects: float) -> float:
        return data + objects * PACK_INDEX_BYTES_PER_OBJECT + FOOTER_BYTES

    def prune(self, day: int, kept: Sequence[int], removed: bool, hours: float) -> None:
        """After the day's prune (`kept`: the kept snapshots' days, sorted): the packs of every cohort whose
        first kept snapshot was removed lose the objects only it named; those left with none die."""
        self.died = self.early_deletions = 0.0
        if not removed or not kept:
            return
        for written in list(self.cohorts):
            first = self.first_kept[written]
            position = bisect.bisect_left(kept, written)
            now = kept[position] if position < len(kept) else day
            if now == first:
                continue
            self.first_kept[written] = now
            current = (1 - self.changed - self.deleted) ** (now - written)
            self.named_by_day[written] = self.current_at_first(written) * current
            for packs in self.cohorts[written]:
                self._age(packs, current, day, hours)

    def current_at_first(self, written: int) -> float:
        """The objects the cohort of day `written` was written with."""
        return sum(packs.count * packs.objects for packs in self.cohorts[written])

    def _age(self, packs: _Packs, current: float, day: int, hours: float) -> None:
        """Live packs after the cohort's objects current at its first kept snapshot fell to `current`."""
        live = packs.count * (1 - (1 - current) ** packs.objects)
        dead = packs.live - live
        if dead <= 0:
            return
        packs.live = live
        self.died += dead
        age = day - packs.written
        name, since = class_on(packs.schedule, age)
        self._hold(name, -dead, packs.size)
        remaining = self.prices.minimum_days(name) - (age - since + hours / 24)
        self.early_deletions += early_deletion_charge(packs.size, name, remaining, self.prices) * dead

    def stored(self) -> dict[str, tuple[float, float]]:
        """Live packs and their bytes by storage class."""
        return {name: (totals[0], totals[1]) for name, totals in self.held.items() if totals[0] > 1e-9}

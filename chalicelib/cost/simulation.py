"""The day-by-day simulation behind a projection (`chalicelib.cost.projection`): one plan's daily backups,
prunes and lifecycle moves, booked month by month.

Every day the simulation backs up (copying what changed and what is new), prunes the
snapshots the plan's retention policy no longer keeps, deletes the versions no kept snapshot names, and
lets the lifecycle move versions between storage classes (`chalicelib.cost.model`). It reports per month
and per storage class the versions, bytes and cost: storage (with the 40 KB per archived object), requests,
lifecycle transitions and early-deletion charges.

Memory stays bounded by counting objects in cohorts instead of one by one, so 10,000,000 objects cost the
same as 100:
- counts are expected values (real numbers): 1% of 1,000,000 objects changed is 10,000 every day, not a
  random draw. Every object is equally likely to change or be deleted, whatever its size or age;
- all versions written on the same day are one cohort of current versions; the versions of that cohort
  replaced (or deleted at the source) on a later day are one cohort of noncurrent versions. A version's
  storage class, its deletion and its early-deletion charge depend only on those two days, so a cohort
  behaves exactly like each of its members;
- sizes enter as two groups, under 128 KB and the rest, each with its own books: changes and deletions
  strike every size alike and new objects follow the workload's mix, so within a group a cohort keeps its
  mean size.
The work grows with the square of the days (a year makes about 67,000 cohorts and takes about a second),
not with the number of objects.
Other simplifications: backups run at the same time every day (`project_from`: the time the plan's daily
backups run at, `Holdings.backup_at`; `project`: `at`, 02:00 UTC unless told) and never fail; a day is
billed whole in the class a version holds that day; delete markers and noncurrent expiration are left out (a
valid plan's `noncurrent_expiration_days` is longer than anything retention keeps, so it never acts).
A simulation starts from an empty bucket, or from what a bucket holds now (`Holdings`). A plan with
`small_objects: pack` keeps its packed objects in pack books of their own (`chalicelib.cost.packs_model`).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from chalicelib.cost import manifest_tier
from chalicelib.cost.bills import Day, backup_requests, new_months
from chalicelib.cost.model import early_deletion_charge
from chalicelib.cost.packs_model import PACKED_MANIFEST_BYTES_PER_ENTRY, PackBooks, PackDay
from chalicelib.cost.schedules import Schedules, class_on, later_moves
from chalicelib.cost.upkeep import upkeep_day
from chalicelib.cost.upkeep_model import BucketDay, UpkeepSettings
from chalicelib.cost.workload import Workload
from chalicelib.plans import Lifecycle
from chalicelib.prices import Prices
from chalicelib.retention import RetentionPolicy, Snapshot, decide

# The time of day (UTC) of the backups of a projection told no other: the reference workloads'.
REFERENCE_BACKUP_TIME = time(2, 0)
# A manifest entry gzipped: measured on the manifest's own format with random version ids, ETags and
# SHA-256 checksums, which do not compress (a 295-byte JSON line becomes about 110 bytes).
MANIFEST_BYTES_PER_ENTRY = 110


class _Cohort:
    """Versions of one size group written on one day and replaced on a later one: they share their whole
    fate. `size` is their mean size in bytes."""

    __slots__ = ("written", "replaced", "count", "size", "alive")

    def __init__(self, written: int, replaced: int, count: float, size: float) -> None:
        self.written, self.replaced, self.count, self.size, self.alive = written, replaced, count, size, True


class _Group:
    """The objects of one size group (under 128 KB, or the rest): current versions counted per day written
    (a list, so that a storage class's share is one slice), with their bytes beside them; noncurrent cohorts
    by the day they were replaced (written day ascending); the noncurrent totals per storage class; and the
    cohorts' later transitions, booked on the days they happen."""

    def __init__(self, small: bool, share: float, size: float, days: int) -> None:
        # `share` of the new objects belongs to this group; `size` is a new object's mean size.
        self.small, self.share, self.size = small, share, size
        self.current = [0.0] * days
        self.current_bytes = [0.0] * days
        self.noncurrent: dict[int, list[_Cohort]] = {}
        self.held: dict[str, list[float]] = {}
        self.held_versions = 0.0
        self.moves: dict[int, list[tuple[_Cohort, str, str]]] = {}

    def hold(self, name: str, objects: float, size: float) -> None:
        totals = self.held.setdefault(name, [0.0, 0.0])
        totals[0] += objects
        totals[1] += size


@dataclass(frozen=True)
class Holdings:
    """What a plan's bucket holds after the backup of day `today`, for a projection that starts from it.
    Days are counted from `start` (day 0); nothing was written before it.

    Per size group (True: under 128 KB), current versions by the day they were written and noncurrent ones
    by (day written, day replaced), each as (versions, bytes); the days that have a kept snapshot, and the
    bytes of their manifests."""

    start: date
    today: int
    current: Mapping[bool, Mapping[int, tuple[float, float]]]
    noncurrent: Mapping[bool, Mapping[tuple[int, int], tuple[float, float]]]
    snapshot_days: tuple[int, ...]
    manifest_bytes: Mapping[int, float]
    # The time of day (UTC) the plan's daily backups run at (chalicelib/schedule.py).
    backup_at: time = REFERENCE_BACKUP_TIME


class Simulation:
    """The day-by-day bookkeeping behind `project` and `project_from`; one instance per run. Size groups are
    independent (changes strike every size alike), so each keeps its own books; snapshots, manifests and
    the bill are shared."""

    def __init__(
        self,
        workload: Workload,
        lifecycle: Lifecycle,
        retention: RetentionPolicy | None,
        prices: Prices,
        days: int,
        start: date,
        holdings: Holdings | None = None,
        at: time = REFERENCE_BACKUP_TIME,
        upkeep: UpkeepSettings | None = None,
    ) -> None:
        # None: the upkeep's jobs are not counted (a bill of storage, backups and lifecycle only).
        self.upkeep = upkeep
        self.deleted_today = 0.0
        self.workload, self.retention, self.prices, self.days, self.start = workload, retention, prices, days, start
        self.at = holdings.backup_at if holdings is not None else at
        self.lifecycle = lifecycle
        # The day (after its own) from which a kept manifest is in GLACIER_IR; None: manifests stay in STANDARD.
        self.manifest_move = manifest_tier.move_day(lifecycle, datetime.combine(start, self.at, tzinfo=timezone.utc))
        self.schedules = Schedules(lifecycle, datetime.combine(start, self.at, tzinfo=timezone.utc))
        self.groups: list[_Group] = []
        packed_below = lifecycle.pack_threshold_bytes if lifecycle.small_objects == "pack" else 0
        for small in (True, False):
            share, mean_bytes = workload.group(small, packed_below)
            held = holdings is not None and bool(holdings.current.get(small) or holdings.noncurrent.get(small))
            if share > 0 or held:
                self.groups.append(_Group(small, share, mean_bytes / share if share else 0.0, days))
        self.packs: PackBooks | None = None
        share, mean_bytes = workload.packed(packed_below)
        if share > 0:
            self.packs = PackBooks(
                share, mean_bytes / share, lifecycle.pack_target_bytes, workload.changed_per_day, workload.deleted_per_day,
                lambda small: self.schedules(small, None), prices, days,
            )
        self.pack_day = PackDay(0.0, 0.0, 0.0)
        self.months, self.month_of = new_months(start, days)
        self._plans: dict[tuple[bool, int], tuple[str, list[tuple[int, str, str]]]] = {}
        self.snapshot_days: list[int] = []
        self.manifest_bytes: dict[int, float] = {}
        self.manifest_entries: dict[int, float] = {}
        self.records: list[Day] = []
        if holdings is not None:
            self._seed(holdings)

    def _seed(self, holdings: Holdings) -> None:
        """Start from what the bucket holds: each noncurrent cohort in the class it has reached by today,
        with its later moves booked."""
        for group in self.groups:
            for written, (count, size) in holdings.current.get(group.small, {}).items():
                group.current[written] += count
                group.current_bytes[written] += size
            for (written, replaced), (count, size) in sorted(holdings.noncurrent.get(group.small, {}).items()):
                if count <= 0:
                    continue
                cohort = _Cohort(written, replaced, count, size / count)
                group.noncurrent.setdefault(replaced, []).append(cohort)
                group.held_versions += count
                age = holdings.today - written
                schedule = self.schedules(group.small, replaced - written)
                group.hold(class_on(schedule, age)[0], count, size)
                for since, source, target in later_moves(schedule, age):
                    if written + since < self.days:
                        group.moves.setdefault(written + since, []).append((cohort, source, target))
            for cohorts in group.noncurrent.values():
                cohorts.sort(key=lambda cohort: cohort.written)
        self.snapshot_days = sorted(set(holdings.snapshot_days))
        self.manifest_bytes = dict(holdings.manifest_bytes)
        self.manifest_entries = {day: size / MANIFEST_BYTES_PER_ENTRY for day, size in holdings.manifest_bytes.items()}

    def _plan(self, small: bool, gap: int) -> tuple[str, list[tuple[int, str, str]]]:
        """For versions of a size group replaced `gap` days after writing: their class then, and each later
        move as (days after writing, from, to)."""
        key = (small, gap)
        if key not in self._plans:
            schedule = self.schedules(small, gap)
            self._plans[key] = (class_on(schedule, gap)[0], later_moves(schedule, gap))
        return self._plans[key]

    def _replaced(self, group: _Group, day: int, share: float) -> list[_Cohort]:
        """The cohorts `share` of each earlier day's current versions make at `day`'s backup: each becomes
        noncurrent, counted in its class, with its later transitions booked.

        This is the simulation's innermost loop (one cohort per earlier day, every day: days squared over a
        year), so the bookkeeping is written out here rather than called per cohort."""
        replaced: list[_Cohort] = []
        current, current_bytes, moves_on, last_day = group.current, group.current_bytes, group.moves, self.days
        for written in range(day):
            count = current[written]
            if not count > 0:
                continue
            cohort = _Cohort(written, day, count * share, current_bytes[written] / count)
            replaced.append(cohort)
            group.held_versions += cohort.count
            name, moves = self._plan(group.small, day - written)
            totals = group.held.get(name)
            if totals is None:
                totals = group.held[name] = [0.0, 0.0]
            totals[0] += cohort.count
            totals[1] += cohort.count * cohort.size
            for since, source, target in moves:
                if written + since < last_day:
                    booked = moves_on.get(written + since)
                    if booked is None:
                        booked = moves_on[written + since] = []
                    booked.append((cohort, source, target))
        return replaced

    def _midnight(self, day: int) -> None:
        """Transitions due today, before the backup: noncurrent cohorts' booked ones, and current versions'."""
        month = self.months[self.month_of[day]]
        for group in self.groups:
            for cohort, source, target in group.moves.pop(day, []):
                if cohort.alive:
                    group.hold(source, -cohort.count, -cohort.count * cohort.size)
                    group.hold(target, cohort.count, cohort.count * cohort.size)
                    month.transitions += cohort.count * self.prices.transition_per_request(target)
            for since, name in self.schedules(group.small, None)[1:]:
                if 0 < since <= day:
                    month.transitions += group.current[day - since] * self.prices.transition_per_request(name)
        if self.packs is not None:
            month.transitions += self.packs.midnight(day)
        if self.manifest_move is not None:
            for written, size in self.manifest_bytes.items():
                if written + self.manifest_move == day and manifest_tier.moves(self.lifecycle, size):
                    month.add_manifest_charge("transitions", manifest_tier.transition_charge(self.prices))

    def _die(self, group: _Group, cohort: _Cohort, day: int) -> None:
        """Versions deleted at `day`'s backup: out of the totals, with any early-deletion charge."""
        cohort.alive = False
        group.held_versions -= cohort.count
        self.deleted_today += cohort.count
        name, since = class_on(self.schedules(group.small, cohort.replaced - cohort.written), day - cohort.written)
        group.hold(name, -cohort.count, -cohort.count * cohort.size)
        hours = self.at.hour + self.at.minute / 60
        remaining = self.prices.minimum_days(name) - (day - cohort.written - since + hours / 24)
        charge = early_deletion_charge(cohort.size, name, remaining, self.prices) * cohort.count
        self.months[self.month_of[day]].early_deletions += charge

    def _prune(self, day: int) -> None:
        """Drop the snapshots retention no longer keeps, then the versions no kept snapshot names."""
        if self.retention is None:
            return
        kept = set(_kept_days(self.start, tuple(self.snapshot_days), self.retention, self.at))
        removed = set(self.snapshot_days) - kept
        for gone in removed:
            self._manifest_gone(gone, day)
            self.manifest_bytes.pop(gone, None)
            self.manifest_entries.pop(gone, None)
        self.snapshot_days = sorted(kept)
        for group in self.groups:
            # With no snapshot removed today, the latest snapshot before an earlier day is what it was when that
            # day's cohorts were last trimmed: only today's cohorts can have lost every snapshot naming them.
            days = list(group.noncurrent) if removed else [day] if day in group.noncurrent else []
            for replaced in days:
                cohorts = group.noncurrent[replaced]
                # A version replaced on day `replaced` is named by the snapshots of the days it was current; the
                # latest surviving snapshot before that day says which cohorts some snapshot still names.
                position = bisect.bisect_left(self.snapshot_days, replaced)
                latest = self.snapshot_days[position - 1] if position else -1
                while cohorts and cohorts[-1].written > latest:
                    self._die(group, cohorts.pop(), day)
                if not cohorts:
                    del group.noncurrent[replaced]
        if self.packs is not None:
            self.packs.prune(day, self.snapshot_days, bool(removed), self.at.hour + self.at.minute / 60)
            self.deleted_today += self.packs.died
            self.months[self.month_of[day]].early_deletions += self.packs.early_deletions

    def _manifest_gone(self, written: int, day: int) -> None:
        """A kept manifest the prune deletes at `day`'s backup: the rest of GLACIER_IR's minimum if it moved."""
        size = self.manifest_bytes.get(written, 0.0)
        if self.manifest_move is None or day < written + self.manifest_move or not manifest_tier.moves(self.lifecycle, size):
            return
        stayed = day - written - self.manifest_move + (self.at.hour + self.at.minute / 60) / 24
        self.months[self.month_of[day]].add_manifest_charge("early_deletions", manifest_tier.early_deletion(size, stayed, self.prices))

    def _back_up(self, day: int) -> Day:
        """The day's backup: versions replaced or deleted become noncurrent, changes and new objects are copied
        (or packed: `copies` counts both, `pack_day` the packed ones)."""
        packed = self.packs.objects if self.packs is not None else 0.0
        if self.packs is not None:
            self.pack_day = self.packs.back_up(day, self.workload.objects if day == 0 else self.workload.new_per_day)
        if day == 0:
            for group in self.groups:
                group.current[0] = self.workload.objects * group.share
                group.current_bytes[0] = group.current[0] * group.size
            return Day(copies=float(self.workload.objects), objects=float(self.workload.objects), versions=0.0, deleted=0.0)
        changed, deleted = self.workload.changed_per_day, self.workload.deleted_per_day
        copies, before = self.pack_day.packed, packed
        for group in self.groups:
            already = sum(group.current[:day])
            before += already
            if changed + deleted > 0:
                replaced = self._replaced(group, day, changed + deleted)
                if replaced:
                    group.noncurrent[day] = replaced
            kept = 1 - changed - deleted
            group.current[:day] = [count * kept for count in group.current[:day]]
            group.current_bytes[:day] = [size * kept for size in group.current_bytes[:day]]
            group.current[day] = already * changed + self.workload.new_per_day * group.share
            group.current_bytes[day] = group.current[day] * group.size
            copies += group.current[day]
        objects = sum(sum(group.current[: day + 1]) for group in self.groups) + (self.packs.objects if self.packs else 0.0)
        return Day(copies=copies, objects=objects, versions=0.0, deleted=before * deleted)

    def _bill(self, day: int) -> None:
        """Storage for the whole of `day`: current versions by class, noncurrent totals, manifests."""
        month = self.months[self.month_of[day]]
        stored: dict[str, list[float]] = {}
        for group in self.groups:
            for name, (objects, size) in group.held.items():
                totals = stored.setdefault(name, [0.0, 0.0])
                totals[0] += objects
                totals[1] += size
            schedule = self.schedules(group.small, None)
            for index, (since, name) in enumerate(schedule):
                # Current versions of age [since, next since) were written on days (day - next, day - since].
                oldest = max(0, day - schedule[index + 1][0] + 1) if index + 1 < len(schedule) else 0
                totals = stored.setdefault(name, [0.0, 0.0])
                if since <= day:
                    totals[0] += sum(group.current[oldest : day - since + 1])
                    totals[1] += sum(group.current_bytes[oldest : day - since + 1])
        for name, (packs, size) in (self.packs.stored() if self.packs is not None else {}).items():
            totals = stored.setdefault(name, [0.0, 0.0])
            totals[0] += packs
            totals[1] += size
        # Adding and removing cohorts leaves rounding dust where a class has emptied: far below one object.
        stored = {name: totals for name, totals in stored.items() if totals[0] > 1e-6}
        for name, (objects, size) in stored.items():
            month.add_storage(name, size, objects, 1, self.prices)
        manifests = sum(self.manifest_bytes.values())
        moved = 0.0
        if self.manifest_move is not None:
            last = day - self.manifest_move
            moved = sum(size for written, size in self.manifest_bytes.items() if written <= last and manifest_tier.moves(self.lifecycle, size))
        month.add_manifests(manifests - moved, 1, self.prices)
        if moved:
            month.add_manifests(moved, 1, self.prices, manifest_tier.MANIFEST_STORAGE_CLASS)
        if day + 1 == self.days or self.month_of[day + 1] != self.month_of[day]:
            month.versions = {name: objects for name, (objects, _) in stored.items()}
            month.bytes = {name: size for name, (_, size) in stored.items()}
            month.manifest_bytes = manifests
            month.manifest_bytes_by_class = {name: size for name, size in (("STANDARD", manifests - moved), (manifest_tier.MANIFEST_STORAGE_CLASS, moved)) if size}

    def run(self, first_day: int = 0) -> list[Day]:
        for day in range(first_day, self.days):
            self._midnight(day)
            record = self._back_up(day)
            self.months[self.month_of[day]].add_requests(backup_requests(day, record, self.pack_day if self.packs is not None else None), self.prices)
            self.snapshot_days.append(day)
            packed = self.packs.objects if self.packs is not None else 0.0
            self.manifest_bytes[day] = (record.objects - packed) * MANIFEST_BYTES_PER_ENTRY + packed * PACKED_MANIFEST_BYTES_PER_ENTRY
            self.manifest_entries[day] = record.objects
            self.deleted_today = 0.0
            self._prune(day)
            self._bill(day)
            held = sum(group.held_versions for group in self.groups)
            # Object versions kept snapshots name (a packed object's counted as the object it is: what AWS
            # Backup would keep), and the S3 versions stored (a pack is one).
            named = record.objects + held + (self.packs.named - packed if self.packs is not None else 0.0)
            self.records.append(Day(record.copies, record.objects, named, record.deleted))
            if self.upkeep is not None:
                stored = record.objects - packed + held + (self.packs.packs if self.packs is not None else 0.0)
                self._upkeep(day, stored, named, record.copies)
        return self.records


    def _upkeep(self, day: int, stored: float, named: float, written: float) -> None:
        """The day's upkeep (chalicelib/cost/upkeep.py) from what the bucket holds after the prune: every
        version left is named by a kept snapshot (the simulation writes nothing else). `stored`: S3 versions
        (what a listing or a report shows: a pack is one); `named`: the object versions kept snapshots name
        (what the kept index holds and the verification checks: a packed object is one)."""
        assert self.upkeep is not None
        state = BucketDay(
            versions=stored + self.deleted_today,
            named_versions=named,
            snapshots=len(self.snapshot_days),
            manifest_entries=sum(self.manifest_entries.values()),
            deleted=self.deleted_today,
            written=written,
            packed=self.packs.named if self.packs is not None else 0.0,
            packs=self.packs.packs if self.packs is not None else 0.0,
        )
        self.months[self.month_of[day]].add_upkeep(upkeep_day(state, self.upkeep), self.upkeep, self.prices)


@functools.lru_cache(maxsize=4096)
def _kept_days(start: date, days: tuple[int, ...], retention: RetentionPolicy, at: time) -> tuple[int, ...]:
    """The days (after `start`) of the daily snapshots `retention` keeps. Cached: the decision depends on the
    days alone, so every projection of one report (both `small_objects` choices, plans sharing a policy)
    makes the same decisions; deciding was most of a projection's time."""
    taken = [datetime.combine(start + timedelta(days=d), at, tzinfo=timezone.utc) for d in days]
    decision = decide([Snapshot(f"{d:06d}", t) for d, t in zip(days, taken)], retention)
    return tuple(int(s.backup_id) for s in decision.kept)

"""A year (or any number of days) of daily backups of one plan, priced month by month.

A workload says how many objects the source holds, their sizes, and what share changes, disappears and
appears each day. Every day the simulation backs up (copying what changed and what is new), prunes the
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
- every cohort holds the workload's size mix in the same proportions (changes and deletions strike every
  size alike, new objects follow the mix), so sizes enter only as two groups: under 128 KB and the rest.
The work grows with the square of the days (a year makes about 67,000 cohorts and takes about a second),
not with the number of objects.
Other simplifications: backups run at 02:00 UTC every day and never fail; a day is billed whole in the
class a version holds that day; delete markers and noncurrent expiration are left out (a valid plan's
`noncurrent_expiration_days` is longer than anything retention keeps, so it never acts).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from chalicelib.cost.bills import Bill, Day, alternatives, backup_requests, new_months
from chalicelib.cost.model import SMALL_OBJECT_BYTES, StoredVersion, early_deletion_charge, timeline
from chalicelib.plans import Lifecycle
from chalicelib.prices import Prices
from chalicelib.retention import RetentionPolicy, Snapshot, decide

BACKUP_TIME = time(2, 0)
# A manifest entry gzipped: measured on the manifest's own format with random version ids, ETags and
# SHA-256 checksums, which do not compress (a 295-byte JSON line becomes about 110 bytes).
MANIFEST_BYTES_PER_ENTRY = 110


@dataclass(frozen=True)
class SizeClass:
    label: str
    size: int
    # The share of the objects this size holds (the shares of a workload add up to 1).
    share: float


@dataclass(frozen=True)
class Workload:
    name: str
    objects: int
    sizes: tuple[SizeClass, ...]
    # Shares of the current objects changed and deleted at the source each day; new objects each day.
    changed_per_day: float
    deleted_per_day: float
    new_per_day: float
    description: str = ""

    def __post_init__(self) -> None:
        if abs(sum(s.share for s in self.sizes) - 1) > 1e-9:
            raise ValueError(f"workload {self.name}: the size shares add up to {sum(s.share for s in self.sizes)}, not 1")
        if self.objects < 1 or any(s.size < 0 or s.share < 0 for s in self.sizes):
            raise ValueError(f"workload {self.name}: needs at least one object and no negative size or share")
        if not (0 <= self.changed_per_day and 0 <= self.deleted_per_day and self.changed_per_day + self.deleted_per_day <= 1):
            raise ValueError(f"workload {self.name}: changed and deleted shares must be between 0 and 1 together")
        if self.new_per_day < 0:
            raise ValueError(f"workload {self.name}: new_per_day must be at least 0")

    def group(self, small: bool) -> tuple[float, float]:
        """(share of objects, mean bytes per object of the whole mix) of the objects under 128 KB, or the rest."""
        members = [s for s in self.sizes if (s.size < SMALL_OBJECT_BYTES) == small]
        return sum(s.share for s in members), sum(s.share * s.size for s in members)

    @property
    def mean_size(self) -> float:
        return sum(s.share * s.size for s in self.sizes)

    def total_bytes(self) -> float:
        return self.objects * self.mean_size


@dataclass(frozen=True)
class Projection:
    workload: Workload
    lifecycle: Lifecycle
    retention: RetentionPolicy | None
    days: int
    # This system, then the alternatives it is compared with, by name.
    ours: Bill
    others: dict[str, Bill] = field(default_factory=dict)

    def bills(self) -> dict[str, Bill]:
        return {"ours": self.ours, **self.others}


class _Schedules:
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


class _Cohort:
    """Versions written on one day and replaced on a later one: they share their whole fate."""

    __slots__ = ("written", "replaced", "count", "alive")

    def __init__(self, written: int, replaced: int, count: float) -> None:
        self.written, self.replaced, self.count, self.alive = written, replaced, count, True


class _Simulation:
    """The day-by-day bookkeeping behind `project`; one instance per run.

    Current versions are counted per day written (a list, so that a storage class's share is one slice).
    Noncurrent versions are running totals per storage class; a cohort's later transitions are booked on
    the days they happen and skipped once the cohort has been deleted.
    """

    def __init__(
        self, workload: Workload, lifecycle: Lifecycle, retention: RetentionPolicy | None, prices: Prices, days: int, start: date
    ) -> None:
        self.workload, self.retention, self.prices, self.days, self.start = workload, retention, prices, days, start
        self.schedules = _Schedules(lifecycle, datetime.combine(start, BACKUP_TIME, tzinfo=timezone.utc))
        self.groups = [(small, *workload.group(small)) for small in (True, False) if workload.group(small)[0] > 0]
        self.months, self.month_of = new_months(start, days)
        # Current versions: objects written on each day that are still current.
        self.current = [0.0] * days
        # Noncurrent cohorts by the day they were replaced, written day ascending.
        self.noncurrent: dict[int, list[_Cohort]] = {}
        # Noncurrent objects and bytes by storage class.
        self.held: dict[str, list[float]] = {}
        self.held_versions = 0.0
        self.moves: dict[int, list[tuple[_Cohort, int, str, str]]] = {}
        self._plans: dict[tuple[int, int], tuple[str, list[tuple[int, str, str]]]] = {}
        self.snapshot_days: list[int] = []
        self.manifest_bytes: dict[int, float] = {}
        self.records: list[Day] = []

    def _hold(self, name: str, objects: float, size: float) -> None:
        totals = self.held.setdefault(name, [0.0, 0.0])
        totals[0] += objects
        totals[1] += size

    def _plan(self, group: int, gap: int) -> tuple[str, list[tuple[int, str, str]]]:
        """For versions of a size group replaced `gap` days after writing: their class then, and each later
        move as (days after writing, from, to)."""
        key = (group, gap)
        if key not in self._plans:
            schedule = self.schedules(self.groups[group][0], gap)
            name, _ = class_on(schedule, gap)
            moves, previous = [], name
            for since, target in schedule:
                if since > gap:
                    moves.append((since, previous, target))
                    previous = target
            self._plans[key] = (name, moves)
        return self._plans[key]

    def _replace(self, cohort: _Cohort) -> None:
        """A cohort becomes noncurrent: count it in its class and book its later transitions."""
        self.held_versions += cohort.count
        for index, (_, share, mean_bytes) in enumerate(self.groups):
            name, moves = self._plan(index, cohort.replaced - cohort.written)
            self._hold(name, cohort.count * share, cohort.count * mean_bytes)
            for since, source, target in moves:
                if cohort.written + since < self.days:
                    self.moves.setdefault(cohort.written + since, []).append((cohort, index, source, target))

    def _midnight(self, day: int) -> None:
        """Transitions due today, before the backup: noncurrent cohorts' booked ones, and current versions'."""
        month = self.months[self.month_of[day]]
        for cohort, index, source, target in self.moves.pop(day, []):
            if cohort.alive:
                _, share, mean_bytes = self.groups[index]
                self._hold(source, -cohort.count * share, -cohort.count * mean_bytes)
                self._hold(target, cohort.count * share, cohort.count * mean_bytes)
                month.transitions += cohort.count * share * self.prices.transition_per_request(target)
        for small, share, _ in self.groups:
            for since, name in self.schedules(small, None)[1:]:
                if 0 < since <= day:
                    month.transitions += self.current[day - since] * share * self.prices.transition_per_request(name)

    def _die(self, cohort: _Cohort, day: int) -> None:
        """Versions deleted at `day`'s backup: out of the totals, with any early-deletion charge."""
        cohort.alive = False
        self.held_versions -= cohort.count
        for small, share, mean_bytes in self.groups:
            name, since = class_on(self.schedules(small, cohort.replaced - cohort.written), day - cohort.written)
            self._hold(name, -cohort.count * share, -cohort.count * mean_bytes)
            remaining = self.prices.minimum_days(name) - (day - cohort.written - since + BACKUP_TIME.hour / 24)
            charge = early_deletion_charge(mean_bytes / share, name, remaining, self.prices) * cohort.count * share
            self.months[self.month_of[day]].early_deletions += charge

    def _prune(self, day: int) -> None:
        """Drop the snapshots retention no longer keeps, then the versions no kept snapshot names."""
        if self.retention is None:
            return
        taken = [datetime.combine(self.start + timedelta(days=d), BACKUP_TIME, tzinfo=timezone.utc) for d in self.snapshot_days]
        decision = decide([Snapshot(f"{d:06d}", t) for d, t in zip(self.snapshot_days, taken)], self.retention)
        kept = {int(s.backup_id) for s in decision.kept}
        for gone in set(self.snapshot_days) - kept:
            del self.manifest_bytes[gone]
        self.snapshot_days = sorted(kept)
        for replaced in list(self.noncurrent):
            cohorts = self.noncurrent[replaced]
            # A version replaced on day `replaced` is named by the snapshots of the days it was current; the
            # latest surviving snapshot before that day says which cohorts some snapshot still names.
            position = bisect.bisect_left(self.snapshot_days, replaced)
            latest = self.snapshot_days[position - 1] if position else -1
            while cohorts and cohorts[-1].written > latest:
                self._die(cohorts.pop(), day)
            if not cohorts:
                del self.noncurrent[replaced]

    def _back_up(self, day: int) -> Day:
        """The day's backup: versions replaced or deleted become noncurrent, changes and new objects are copied."""
        if day == 0:
            self.current[0] = float(self.workload.objects)
            return Day(copies=self.current[0], objects=self.current[0], versions=0.0, deleted=0.0)
        changed, deleted = self.workload.changed_per_day, self.workload.deleted_per_day
        before = sum(self.current[:day])
        if changed + deleted > 0:
            replaced = [_Cohort(written, day, count * (changed + deleted)) for written, count in enumerate(self.current[:day]) if count > 0]
            for cohort in replaced:
                self._replace(cohort)
            if replaced:
                self.noncurrent[day] = replaced
        self.current[:day] = [count * (1 - changed - deleted) for count in self.current[:day]]
        copies = before * changed + self.workload.new_per_day
        self.current[day] = copies
        return Day(copies=copies, objects=sum(self.current[: day + 1]), versions=0.0, deleted=before * deleted)

    def _bill(self, day: int) -> None:
        """Storage for the whole of `day`: current versions by class, noncurrent totals, manifests."""
        month = self.months[self.month_of[day]]
        stored = {name: list(totals) for name, totals in self.held.items()}
        for small, share, mean_bytes in self.groups:
            schedule = self.schedules(small, None)
            for index, (since, name) in enumerate(schedule):
                # Current versions of age [since, next since) were written on days (day - next, day - since].
                oldest = max(0, day - schedule[index + 1][0] + 1) if index + 1 < len(schedule) else 0
                count = sum(self.current[oldest : day - since + 1]) if since <= day else 0.0
                totals = stored.setdefault(name, [0.0, 0.0])
                totals[0] += count * share
                totals[1] += count * mean_bytes
        # Adding and removing cohorts leaves rounding dust where a class has emptied: far below one object.
        stored = {name: totals for name, totals in stored.items() if totals[0] > 1e-6}
        for name, (objects, size) in stored.items():
            month.add_storage(name, size, objects, 1, self.prices)
        manifests = sum(self.manifest_bytes.values())
        month.add_manifests(manifests, 1, self.prices)
        if day + 1 == self.days or self.month_of[day + 1] != self.month_of[day]:
            month.versions = {name: objects for name, (objects, _) in stored.items()}
            month.bytes = {name: size for name, (_, size) in stored.items()}
            month.manifest_bytes = manifests

    def run(self) -> list[Day]:
        for day in range(self.days):
            self._midnight(day)
            record = self._back_up(day)
            self.months[self.month_of[day]].add_requests(backup_requests(day, record), self.prices)
            self.snapshot_days.append(day)
            self.manifest_bytes[day] = record.objects * MANIFEST_BYTES_PER_ENTRY
            self._prune(day)
            self._bill(day)
            self.records.append(Day(record.copies, record.objects, record.objects + self.held_versions, record.deleted))
        return self.records


def project(
    workload: Workload,
    lifecycle: Lifecycle,
    retention: RetentionPolicy | None,
    prices: Prices,
    days: int = 365,
    start: date = date(2026, 1, 1),
) -> Projection:
    """Simulate `days` daily backups of `workload` under a plan's lifecycle and retention (None: every
    snapshot kept), and price the same days under the alternatives of `chalicelib.cost.bills`."""
    if days < 1:
        raise ValueError("a projection needs at least one day")
    simulation = _Simulation(workload, lifecycle, retention, prices, days, start)
    records = simulation.run()
    kept = retention.describe() if retention else "none (every snapshot kept)"
    ours = Bill(
        "ours",
        f"this system: lifecycle {describe_lifecycle(lifecycle)}; retention {kept}; S3 list prices, {prices.region}, "
        f"read on {prices.read_on}; manifests in STANDARD, {MANIFEST_BYTES_PER_ENTRY} bytes an object",
        simulation.months,
    )
    others = alternatives(workload, prices, start, records, MANIFEST_BYTES_PER_ENTRY)
    return Projection(workload=workload, lifecycle=lifecycle, retention=retention, days=days, ours=ours, others=others)


def describe_lifecycle(lifecycle: Lifecycle) -> str:
    moves = ", ".join(f"{t.storage_class} after {t.days} days" for t in lifecycle.transitions) or "no transitions"
    return f"{moves}, small objects {lifecycle.small_objects}"

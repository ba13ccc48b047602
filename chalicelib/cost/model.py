"""Where a stored version sits in S3 at any moment, and what that costs.

The lifecycle rule `buckets.lifecycle_rules` provisions applies a plan's transitions twice: as
`Transitions` to the current version, counted from when it was written, and as
`NoncurrentVersionTransitions` to older versions, counted from when each stopped being current. So a
version overwritten on day 100 does not reach DEEP_ARCHIVE on day 180 of its life but 180 days after day
100. Transitions only ever go colder.

S3's rules this model follows (AWS documentation, lifecycle transition considerations):
- a rule's date is the start time plus the days, rounded up to the next midnight UTC (a version written on
  Jan 15 at 10:30 with "30 days" moves on Feb 15 at 00:00);
- objects *smaller than* 128 KB (131,072 bytes) never transition under the bucket default
  `all_storage_classes_128K` (small_objects "standard"); under `varies_by_storage_class` ("archive") they
  transition to GLACIER and DEEP_ARCHIVE, but still never to the IA classes or GLACIER_IR;
- every object in GLACIER or DEEP_ARCHIVE is billed 40 KB more than its size: 8 KB at STANDARD's price and
  32 KB at its own class's;
- a version that leaves GLACIER (DEEP_ARCHIVE, ...) before its minimum duration, counted from when it
  entered that class, is billed for the remaining days as if it had stayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from chalicelib.plans import SMALL_OBJECT_ARCHIVE_CLASSES, STORAGE_CLASS_ORDER, Lifecycle
from chalicelib.prices import Prices

SMALL_OBJECT_BYTES = 128 * 1024
# Early deletion is billed pro rata, a day being 1/30 of a GB-month.
DAYS_PER_MONTH = 30
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class StoredVersion:
    """One version in a backup bucket: its size, when it was written, and when a newer version (or a delete
    marker) replaced it, None while it is current."""

    size: int
    written: datetime
    noncurrent_since: datetime | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"a version's size must be at least 0, got {self.size}")
        for moment in (self.written, self.noncurrent_since):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{moment.isoformat()} has no time zone")
        if self.noncurrent_since is not None and self.noncurrent_since < self.written:
            raise ValueError("a version cannot become noncurrent before it was written")


@dataclass(frozen=True)
class Placement:
    """A storage class, since when the version has been in it, and which rule put it there."""

    storage_class: str
    since: datetime
    reason: str


def lifecycle_date(start: datetime, days: int) -> datetime:
    """When a rule of `days` days acts on something that started at `start`: S3 adds the days and rounds up
    to midnight UTC. (A sum that is exactly midnight is taken as is; AWS does not document that case.)"""
    moment = start.astimezone(timezone.utc) + timedelta(days=days)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if moment == midnight else midnight + _DAY


def may_transition(size: int, storage_class: str, small_objects: str) -> bool:
    """Whether S3 moves a version of `size` bytes into `storage_class` under the plan's small-object choice."""
    if size >= SMALL_OBJECT_BYTES:
        return True
    return small_objects == "archive" and storage_class in SMALL_OBJECT_ARCHIVE_CLASSES


def _colder(storage_class: str, than: str) -> bool:
    rank = {"STANDARD": -1, **{name: index for index, name in enumerate(STORAGE_CLASS_ORDER)}}
    return rank[storage_class] > rank[than]


def _first_reason(version: StoredVersion, lifecycle: Lifecycle) -> str:
    if not lifecycle.transitions:
        return "in STANDARD: the lifecycle has no transitions"
    if any(may_transition(version.size, t.storage_class, lifecycle.small_objects) for t in lifecycle.transitions):
        return "in STANDARD since it was written"
    if lifecycle.small_objects == "archive":
        return (
            "stays in STANDARD: under 128 KB, and varies_by_storage_class moves small objects only to "
            "GLACIER or DEEP_ARCHIVE"
        )
    return "stays in STANDARD: under 128 KB (all_storage_classes_128K)"


def timeline(version: StoredVersion, lifecycle: Lifecycle) -> list[Placement]:
    """Every storage class the version passes through, in order, each with the moment it arrives."""
    placements = [Placement("STANDARD", version.written, _first_reason(version, lifecycle))]
    current = "STANDARD"
    eligible = [t for t in lifecycle.transitions if may_transition(version.size, t.storage_class, lifecycle.small_objects)]
    for transition in eligible:
        at = lifecycle_date(version.written, transition.days)
        if version.noncurrent_since is not None and at > version.noncurrent_since:
            # Replaced before this date: from then on only the noncurrent schedule applies.
            break
        if _colder(transition.storage_class, current):
            placements.append(Placement(transition.storage_class, at, f"{transition.storage_class} since day {transition.days}"))
            current = transition.storage_class
    if version.noncurrent_since is not None:
        for transition in eligible:
            at = lifecycle_date(version.noncurrent_since, transition.days)
            if _colder(transition.storage_class, current) and at >= placements[-1].since:
                placements.append(
                    Placement(
                        transition.storage_class,
                        at,
                        f"{transition.storage_class} since day {transition.days} after it became noncurrent",
                    )
                )
                current = transition.storage_class
    return placements


def placement_at(version: StoredVersion, lifecycle: Lifecycle, when: datetime) -> Placement:
    """The storage class the version is in at `when`, since when, and why."""
    if when < version.written:
        raise ValueError(f"the version was written at {version.written.isoformat()}, after {when.isoformat()}")
    found = None
    for placement in timeline(version, lifecycle):
        if placement.since <= when:
            found = placement
    assert found is not None
    return found


def transition_cost(version: StoredVersion, lifecycle: Lifecycle, prices: Prices, until: datetime | None = None) -> float:
    """The lifecycle transition requests the version costs (before `until`, if given): one per class it enters."""
    moves = timeline(version, lifecycle)[1:]
    return sum(prices.transition_per_request(p.storage_class) for p in moves if until is None or p.since < until)


@dataclass(frozen=True)
class EarlyDeletion:
    storage_class: str
    days_in_class: float
    remaining_days: float
    charge: float


def early_deletion(version: StoredVersion, lifecycle: Lifecycle, deleted_at: datetime, prices: Prices) -> EarlyDeletion:
    """What deleting the version at `deleted_at` costs on top of its storage so far: the days left of its
    class's minimum duration, counted from when it entered that class, billed pro rata."""
    placement = placement_at(version, lifecycle, deleted_at)
    stayed = (deleted_at - placement.since) / _DAY
    remaining = max(0.0, prices.minimum_days(placement.storage_class) - stayed)
    return EarlyDeletion(
        storage_class=placement.storage_class,
        days_in_class=stayed,
        remaining_days=remaining,
        charge=early_deletion_charge(version.size, placement.storage_class, remaining, prices),
    )


def early_deletion_charge(size: float, storage_class: str, remaining_days: float, prices: Prices) -> float:
    """The pro rata charge for `remaining_days` of an object of `size` bytes in `storage_class`. The 32 KB
    an archived object is billed at its class count: they are part of its storage in that class."""
    if remaining_days <= 0:
        return 0.0
    billed = size + (prices.overhead_archive_bytes if storage_class in prices.archive_classes else 0)
    return billed * prices.storage_per_byte_month(storage_class) * remaining_days / DAYS_PER_MONTH


@dataclass
class StorageTally:
    """Versions held for a whole month, by class: the bytes billed and what they cost.

    An archived object's 8 KB STANDARD overhead is billed at STANDARD's price but kept apart here
    (`overhead_bytes`), so a report can show what per-object overhead costs.
    """

    objects: dict[str, float] = field(default_factory=dict)
    object_bytes: dict[str, float] = field(default_factory=dict)
    # Overhead bytes by the class whose price they are billed at.
    overhead_bytes: dict[str, float] = field(default_factory=dict)

    def add(self, storage_class: str, size: float, count: float, prices: Prices) -> None:
        self.objects[storage_class] = self.objects.get(storage_class, 0.0) + count
        self.object_bytes[storage_class] = self.object_bytes.get(storage_class, 0.0) + size * count
        if storage_class in prices.archive_classes:
            for billed_as, extra in (("STANDARD", prices.overhead_standard_bytes), (storage_class, prices.overhead_archive_bytes)):
                self.overhead_bytes[billed_as] = self.overhead_bytes.get(billed_as, 0.0) + extra * count

    def storage_cost(self, prices: Prices) -> dict[str, float]:
        """Per class, the object bytes only."""
        return {name: amount * prices.storage_per_byte_month(name) for name, amount in self.object_bytes.items()}

    def overhead_cost(self, prices: Prices) -> float:
        return sum(amount * prices.storage_per_byte_month(name) for name, amount in self.overhead_bytes.items())

    def monthly_cost(self, prices: Prices) -> dict[str, float]:
        """Per class, everything billed at that class's price: object bytes and overhead."""
        cost = self.storage_cost(prices)
        for name, amount in self.overhead_bytes.items():
            cost[name] = cost.get(name, 0.0) + amount * prices.storage_per_byte_month(name)
        return cost


def monthly_storage_cost(holdings: Iterable[tuple[str, int]], prices: Prices) -> dict[str, float]:
    """What a set of versions costs per class for one whole month: (storage class, size) pairs in, USD per
    class out, 40 KB overhead per archived object included."""
    tally = StorageTally()
    for storage_class, size in holdings:
        tally.add(storage_class, size, 1, prices)
    return tally.monthly_cost(prices)


def early_deletion_as_stored(
    version: StoredVersion, lifecycle: Lifecycle, storage_class: str, deleted_at: datetime, prices: Prices
) -> EarlyDeletion:
    """`early_deletion` for a version S3 reports in `storage_class` (a listing's StorageClass): the time it
    entered that class is the model's where the model agrees on the class, else the version's write time
    (an object written straight into the class, or moved by rules the model does not know)."""
    placement = placement_at(version, lifecycle, deleted_at)
    since = placement.since if placement.storage_class == storage_class else version.written
    stayed = (deleted_at - since) / _DAY
    remaining = max(0.0, prices.minimum_days(storage_class) - stayed)
    return EarlyDeletion(
        storage_class=storage_class,
        days_in_class=stayed,
        remaining_days=remaining,
        charge=early_deletion_charge(version.size, storage_class, remaining, prices),
    )

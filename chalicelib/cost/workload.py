"""The data a projection simulates: how many objects a source holds, their sizes, and what share of them
changes, disappears and appears each day (`chalicelib.cost.projection`, `chalicelib.cost.bills`)."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.cost.model import SMALL_OBJECT_BYTES


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

    def group(self, small: bool, packed_below: int = 0) -> tuple[float, float]:
        """(share of objects, mean bytes per object of the whole mix) of the objects under 128 KB, or the rest,
        leaving out those a plan packs (smaller than `packed_below`)."""
        members = [s for s in self.sizes if (s.size < SMALL_OBJECT_BYTES) == small and s.size >= packed_below]
        return sum(s.share for s in members), sum(s.share * s.size for s in members)

    def packed(self, threshold: int) -> tuple[float, float]:
        """`group`'s figures for the objects a plan with `small_objects: pack` packs: smaller than `threshold`."""
        members = [s for s in self.sizes if s.size < threshold]
        return sum(s.share for s in members), sum(s.share * s.size for s in members)

    @property
    def mean_size(self) -> float:
        return sum(s.share * s.size for s in self.sizes)

    def total_bytes(self) -> float:
        return self.objects * self.mean_size

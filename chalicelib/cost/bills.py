"""Monthly bills, and what the same data would cost kept another way.

The projection (`chalicelib.cost.projection`) fills one `Bill` for this system, and one for this system
with the same retention and no lifecycle transitions (`same_retention_no_lifecycle`). The alternatives
priced here from the same simulated days are:
- `aws_backup`: AWS Backup for S3, keeping the same restore points (its backup plans have daily, weekly,
  monthly and yearly rules, each with its own retention, so the same policy can be written there) and so the
  same versions; billed at its warm storage price, every object as at least 128 KB, with no cold tier for
  S3. Left out: delete markers, its source-side requests and the versioning it requires on the source
  bucket, which would add to its bill, and its one-way low-cost warm tier after 60 days, which would lower
  it (its price is not in the prices file);
- `versioned_sync`: a plain versioned bucket fed daily by `aws s3 sync --delete`, with no manifests and no
  retention beyond a noncurrent expiry of the same horizon as the plan's retention: every version in
  STANDARD until it has been noncurrent that long; the simplest thing that keeps history;
- `sync_copy`: `aws s3 sync --delete` into a plain bucket: one current copy, no history (not a backup:
  shown as a floor); each run lists the source and the destination and copies what changed or is new.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from chalicelib.cost.packs_model import PackDay
from chalicelib.cost.upkeep import describe, job_usd
from chalicelib.cost.upkeep_model import JobDay, UpkeepSettings
from chalicelib.cost.workload import Workload
from chalicelib.prices import GB, Prices

# Requests every backup makes besides copies and the source listing: the previous manifest (GET), the new
# manifest and the backup records (PUT), the listing of the plan's metadata (LIST).
FIXED_GETS_PER_BACKUP = 1
FIXED_PUTS_PER_BACKUP = 3
FIXED_LISTS_PER_BACKUP = 1


@dataclass
class Month:
    """One calendar month of a bill. Counts and bytes are at the month's last simulated day; costs are the
    month's total. Storage is billed by the day: a GB kept d days of a 30-day month is d/30 GB-month."""

    label: str
    days: int
    versions: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, float] = field(default_factory=dict)
    # USD per storage class for the object bytes; the 40 KB per archived object is `overhead`.
    storage: dict[str, float] = field(default_factory=dict)
    overhead: float = 0.0
    # The same overhead by the class of the objects that carry it (the 8 KB billed at STANDARD included).
    overhead_by_class: dict[str, float] = field(default_factory=dict)
    manifest_bytes: float = 0.0
    # Everything the kept manifests cost: their storage by class, and their moves to GLACIER_IR and early
    # deletions there (`manifest_parts` says which; chalicelib/cost/manifest_tier.py).
    manifests: float = 0.0
    manifest_parts: dict[str, float] = field(default_factory=dict)
    manifest_bytes_by_class: dict[str, float] = field(default_factory=dict)
    request_counts: dict[str, float] = field(default_factory=dict)
    requests: float = 0.0
    transitions: float = 0.0
    early_deletions: float = 0.0
    # The product's own recurring work (chalicelib/cost/upkeep.py), and the month's last day of it by job.
    upkeep: float = 0.0
    upkeep_by_job: dict[str, float] = field(default_factory=dict)
    upkeep_day: dict[str, Any] = field(default_factory=dict)

    def add_storage(self, storage_class: str, size: float, objects: float, days: float, prices: Prices) -> None:
        """`objects` objects of `size` bytes in all held `days` days of this month in `storage_class`."""
        share = days / self.days
        self.storage[storage_class] = self.storage.get(storage_class, 0.0) + size * share * prices.storage_per_byte_month(storage_class)
        if storage_class in prices.archive_classes:
            per_object = prices.overhead_standard_bytes * prices.storage_per_byte_month("STANDARD")
            per_object += prices.overhead_archive_bytes * prices.storage_per_byte_month(storage_class)
            self.overhead += objects * share * per_object
            self.overhead_by_class[storage_class] = self.overhead_by_class.get(storage_class, 0.0) + objects * share * per_object

    def add_manifests(self, size: float, days: float, prices: Prices, storage_class: str = "STANDARD") -> None:
        """`size` bytes of manifests held `days` days of this month in `storage_class`."""
        self.add_manifest_charge(storage_class, size * days / self.days * prices.storage_per_byte_month(storage_class))

    def add_manifest_charge(self, part: str, amount: float) -> None:
        """`amount` USD of the manifests' bill: a storage class's, or `transitions` or `early_deletions`."""
        self.manifests += amount
        self.manifest_parts[part] = self.manifest_parts.get(part, 0.0) + amount

    def add_requests(self, counts: dict[str, float], prices: Prices) -> None:
        for name, amount in counts.items():
            self.request_counts[name] = self.request_counts.get(name, 0.0) + amount
        # A pack's PUT is a PUT; a packed object read from its source a GET.
        priced = counts.get("copy", 0) + counts.get("put", 0) + counts.get("pack_put", 0) + counts.get("list", 0)
        read = counts.get("get", 0) + counts.get("pack_get", 0)
        self.requests += priced * prices.put_copy_post_list / 1000 + read * prices.get / 1000

    def add_upkeep(self, jobs: dict[str, JobDay], settings: UpkeepSettings, prices: Prices) -> None:
        """One day of the upkeep's jobs."""
        for name, job in jobs.items():
            amount = job_usd(job, settings, prices)
            self.upkeep += amount
            self.upkeep_by_job[name] = self.upkeep_by_job.get(name, 0.0) + amount
        self.upkeep_day = describe(jobs, settings, prices)

    @property
    def storage_total(self) -> float:
        """Everything billed for keeping bytes: objects, their overhead and the manifests."""
        return sum(self.storage.values()) + self.overhead + self.manifests

    @property
    def total(self) -> float:
        return self.storage_total + self.requests + self.transitions + self.early_deletions + self.upkeep

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.label,
            "versions": {k: round(v) for k, v in sorted(self.versions.items())},
            "bytes": {k: round(v) for k, v in sorted(self.bytes.items())},
            "manifest_bytes": round(self.manifest_bytes),
            "storage": {k: round(v, 4) for k, v in sorted(self.storage.items())},
            "overhead": round(self.overhead, 4),
            "manifests": round(self.manifests, 4),
            "manifest_parts": {k: round(v, 4) for k, v in sorted(self.manifest_parts.items())},
            "manifest_bytes_by_class": {k: round(v) for k, v in sorted(self.manifest_bytes_by_class.items())},
            "requests": round(self.requests, 4),
            "request_counts": {k: round(v) for k, v in sorted(self.request_counts.items())},
            "transitions": round(self.transitions, 4),
            "early_deletions": round(self.early_deletions, 4),
            **({"upkeep": round(self.upkeep, 4), "upkeep_by_job": {k: round(v, 4) for k, v in self.upkeep_by_job.items()}} if self.upkeep_day else {}),
            "total": round(self.total, 4),
        }


@dataclass(frozen=True)
class Bill:
    name: str
    # Which prices and rules the bill uses.
    notes: str
    months: list[Month]


@dataclass(frozen=True)
class Day:
    """What one simulated day did, as the alternatives need it."""

    copies: float
    # Current objects after the backup (the source's objects), and every version the backup bucket holds.
    objects: float
    versions: float
    deleted: float


def month_spans(start: date, days: int) -> list[tuple[str, int, int]]:
    """(label, first day index, length in simulated days) of each calendar month the days touch."""
    spans: list[tuple[str, int, int]] = []
    for index in range(days):
        label = (start + timedelta(days=index)).strftime("%Y-%m")
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1], spans[-1][2] + 1)
        else:
            spans.append((label, index, 1))
    return spans


def new_months(start: date, days: int) -> tuple[list[Month], list[int]]:
    """Empty months, each as long as the calendar month (a partial month is billed for its days only),
    and the month index of every simulated day."""
    months, month_of = [], []
    for index, (label, _, length) in enumerate(month_spans(start, days)):
        first = date.fromisoformat(label + "-01")
        following = (first + timedelta(days=32)).replace(day=1)
        months.append(Month(label, (following - first).days))
        month_of.extend([index] * length)
    return months, month_of


def backup_requests(day: int, day_record: Day, packing: PackDay | None = None) -> dict[str, float]:
    """The requests of one backup: a copy per changed or new object, the source listing (1,000 keys a page)
    and the fixed ones; delete markers go 1,000 keys to a DeleteObjects request. With `packing` (a plan that
    packs), its packed objects are each read by a GET instead of copied, each of its packs is a PUT, and its
    packed objects deleted at the source need no delete marker."""
    packed = packing or PackDay(0.0, 0.0, 0.0)
    counts = {
        "copy": day_record.copies - packed.packed,
        "list": math.ceil(day_record.objects / 1000) + FIXED_LISTS_PER_BACKUP,
        "get": FIXED_GETS_PER_BACKUP,
        "put": FIXED_PUTS_PER_BACKUP + (page_count(day_record.deleted - packed.deleted) if day else 0),
    }
    if packing is not None:
        counts.update({"pack_get": packed.packed, "pack_put": packed.packs})
    return counts


def page_count(count: float, page: int = 1000) -> int:
    """Requests of `page` keys each for `count` keys (none for less than a millionth of one: rounding dust)."""
    return math.ceil(count / page) if count > 1e-6 else 0


def noncurrent_per_day(days: Sequence[Day]) -> list[float]:
    """Versions each day's backup made noncurrent: the objects changed (copied but not new) and deleted.
    New objects are what the count grew by plus what was deleted."""
    made = []
    for index, record in enumerate(days):
        before = days[index - 1].objects if index else 0.0
        new = record.objects - before + record.deleted
        made.append(max(0.0, record.copies - new) + record.deleted if index else 0.0)
    return made


def alternatives(
    workload: Workload,
    prices: Prices,
    start: date,
    days: Sequence[Day],
    manifest_bytes_per_entry: float,
    horizon_days: int | None = None,
) -> dict[str, Bill]:
    """The same simulated days priced as AWS Backup for S3, a plain versioned bucket fed daily by `aws s3
    sync` whose noncurrent versions expire after `horizon_days` (None: never), and a plain sync copy.
    (`projection.project` adds this system with the same retention and no lifecycle transitions.)"""
    del manifest_bytes_per_entry  # no alternative keeps manifests
    mean_size = workload.mean_size
    minimum = prices.aws_backup.minimum_billable_bytes
    billed_by_aws_backup = sum(s.share * max(s.size, minimum) for s in workload.sizes)
    backup_months, month_of = new_months(start, len(days))
    versioned_months, _ = new_months(start, len(days))
    sync_months, _ = new_months(start, len(days))
    made = noncurrent_per_day(days)
    for index, record in enumerate(days):
        backup, versioned, sync = backup_months[month_of[index]], versioned_months[month_of[index]], sync_months[month_of[index]]
        backup.storage["AWS_BACKUP_WARM"] = backup.storage.get("AWS_BACKUP_WARM", 0.0) + (
            record.versions * billed_by_aws_backup / backup.days * prices.aws_backup.warm_storage / GB
        )
        # NoncurrentVersionExpiration: a version noncurrent for more than the horizon is gone (free).
        oldest = 0 if horizon_days is None else max(0, index - horizon_days + 1)
        held = record.objects + sum(made[oldest : index + 1])
        # Deleting vanished objects is free (DELETE requests cost nothing); each run lists both sides.
        sync_requests = {"copy": record.copies, "list": 2 * math.ceil(record.objects / 1000)}
        versioned.add_storage("STANDARD", held * mean_size, held, 1, prices)
        versioned.add_requests(sync_requests, prices)
        sync.add_storage("STANDARD", record.objects * mean_size, record.objects, 1, prices)
        sync.add_requests(sync_requests, prices)
        last_of_month = index + 1 == len(days) or month_of[index + 1] != month_of[index]
        if last_of_month:
            backup.versions, backup.bytes = {"AWS_BACKUP_WARM": record.versions}, {"AWS_BACKUP_WARM": record.versions * mean_size}
            versioned.versions, versioned.bytes = {"STANDARD": held}, {"STANDARD": held * mean_size}
            sync.versions, sync.bytes = {"STANDARD": record.objects}, {"STANDARD": record.objects * mean_size}
    expiry = "never" if horizon_days is None else f"after {horizon_days} days noncurrent"
    return {
        "aws_backup": Bill("aws_backup", aws_backup_notes(prices), backup_months),
        "versioned_sync": Bill(
            "versioned_sync",
            f"a plain versioned bucket fed daily by aws s3 sync --delete: every version in STANDARD at "
            f"{prices.storage['STANDARD']} per GB-month, noncurrent versions expiring {expiry} (the same horizon "
            "as the retention), no manifests, no snapshots to restore from (a restore picks versions by date), no "
            "verification or prune; each run lists both buckets and copies what changed; delete markers left out",
            versioned_months,
        ),
        "sync_copy": Bill(
            "sync_copy",
            f"aws s3 sync --delete into a plain bucket: one current copy in STANDARD at {prices.storage['STANDARD']} per "
            "GB-month, no history, so not a backup (a deletion or an overwrite is copied over the only copy): a floor",
            sync_months,
        ),
    }


def aws_backup_notes(prices: Prices) -> str:
    return (
        f"AWS Backup for S3 keeping the same restore points and so the same versions as this system: warm storage "
        f"at {prices.aws_backup.warm_storage} per GB-month, each object billed as at least "
        f"{prices.aws_backup.minimum_billable_bytes // 1024} KB, no cold tier for S3. Left out: delete markers, its "
        "source-side requests and the source versioning it needs (more), its low-cost warm tier after 60 days (less)"
    )

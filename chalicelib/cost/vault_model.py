"""What a plan's vault (`plans.Offsite`) costs: S3 Replication of every new version into it, the replicas kept
there, and a full restore from it on the day the backup account or region is gone.

S3 Replication bills, per replicated version, one PUT at the replica class's PUT price, and per GB replicated
the inter-region transfer (a vault in the same region: none) and Replication Time Control when it is on; the
replicas are stored in their class, 40 KB more each in GLACIER or DEEP_ARCHIVE, for at least the class's
minimum duration (`prices.ReplicationPrices`).

What the vault holds follows from how it is kept (chalicelib/deploy/vault_bucket.py), not from the backup
bucket's retention: deletions and delete markers are never replicated, so every key ever backed up keeps a
current version there, and every manifest, sealed record and pruned marker stays; a version replaced by a
newer replica expires once it has been noncurrent `vault_expiration_days`. The model counts, day by day from
a simulation's `Day` records (`chalicelib.cost.simulation`): the versions written (each day's copies), the
versions they replace (the copies that are not new objects), the new keys, and each day's manifest. Sizes are
the workload's mean: changes strike every size alike and new objects follow the mix. An object of a plan that
packs is counted as replicated alone (an upper bound: a pack is one replica). Pruned markers (a few a day)
are left out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from chalicelib.cost.bills import Day, new_months
from chalicelib.cost.workload import Workload
from chalicelib.prices import GB, Prices

# Replicated with each backup besides its data: its manifest and its sealed record (both in STANDARD).
METADATA_REPLICAS_PER_BACKUP = 2
# What the vault's replicas of metadata are written in (chalicelib/deploy/offsite.py's REPLICATED_PREFIXES).
METADATA_CLASS = "STANDARD"


@dataclass(frozen=True)
class VaultSettings:
    """The vault as the model needs it: the replicas' class, how long a replaced version stays, whether the
    vault is in another region than the backup bucket and whether Replication Time Control is on."""

    storage_class: str
    expire_after_days: int
    cross_region: bool = True
    rtc: bool = False

    def describe(self) -> str:
        where = "another region" if self.cross_region else "the same region (another account)"
        return (
            f"replicas in {self.storage_class}, in {where}; a replaced version expires {self.expire_after_days} days "
            f"after; Replication Time Control {'on' if self.rtc else 'off'}"
        )


@dataclass
class VaultMonth:
    """One calendar month of the vault's bill. Counts and bytes at the month's last simulated day."""

    label: str
    days: int
    current_versions: float = 0.0
    noncurrent_versions: float = 0.0
    bytes: float = 0.0
    metadata_bytes: float = 0.0
    replicated_versions: float = 0.0
    replicated_bytes: float = 0.0
    storage: float = 0.0
    overhead: float = 0.0
    metadata: float = 0.0
    puts: float = 0.0
    transfer: float = 0.0
    rtc: float = 0.0
    early_deletions: float = 0.0

    @property
    def total(self) -> float:
        return self.storage + self.overhead + self.metadata + self.puts + self.transfer + self.rtc + self.early_deletions

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.label,
            "versions": {"current": round(self.current_versions), "noncurrent": round(self.noncurrent_versions)},
            "bytes": round(self.bytes),
            "metadata_bytes": round(self.metadata_bytes),
            "replicated": {"versions": round(self.replicated_versions), "bytes": round(self.replicated_bytes)},
            **{name: round(getattr(self, name), 4) for name in self.parts()},
            "total": round(self.total, 4),
        }

    @staticmethod
    def parts() -> tuple[str, ...]:
        return ("storage", "overhead", "metadata", "puts", "transfer", "rtc", "early_deletions")


@dataclass
class _Books:
    """The vault's holdings between days: current keys, and noncurrent cohorts by the day they were replaced."""

    current: float = 0.0
    noncurrent: deque[tuple[int, float]] = field(default_factory=deque)
    metadata_bytes: float = 0.0

    @property
    def noncurrent_total(self) -> float:
        return sum(count for _, count in self.noncurrent)


def replication_day(versions: float, size: float, vault: VaultSettings, prices: Prices, storage_class: str) -> dict[str, float]:
    """What replicating `versions` versions of `size` bytes in all into `storage_class` costs: PUTs, transfer,
    RTC (USD)."""
    rates = prices.replication
    gigabytes = size / GB
    return {
        "puts": versions * rates.put_per_1000[storage_class] / 1000,
        "transfer": gigabytes * rates.inter_region_transfer_per_gb if vault.cross_region else 0.0,
        "rtc": gigabytes * rates.rtc_per_gb if vault.rtc else 0.0,
    }


def vault_months(
    records: Sequence[Day], workload: Workload, vault: VaultSettings, prices: Prices, start: date, manifest_bytes_per_entry: float
) -> list[VaultMonth]:
    """The vault's bill month by month for the days `records` describe (one backup a day from `start`)."""
    calendar, month_of = new_months(start, len(records))
    months = [VaultMonth(month.label, month.days) for month in calendar]
    books = _Books()
    size = workload.mean_size
    cls = vault.storage_class
    archived = cls in prices.archive_classes
    minimum = prices.minimum_days(cls)
    per_object_overhead = (
        prices.overhead_standard_bytes * prices.storage_per_byte_month("STANDARD")
        + prices.overhead_archive_bytes * prices.storage_per_byte_month(cls)
    ) if archived else 0.0
    for day, record in enumerate(records):
        month = months[month_of[day]]
        share = 1 / month.days
        new = record.objects - (records[day - 1].objects if day else 0.0) + record.deleted
        replaced = max(0.0, record.copies - new) if day else 0.0
        books.current += new
        if replaced > 1e-9:
            books.noncurrent.append((day, replaced))
        expired = 0.0
        while books.noncurrent and day - books.noncurrent[0][0] >= vault.expire_after_days:
            expired += books.noncurrent.popleft()[1]
        if expired and minimum > vault.expire_after_days:
            # Billed up to the class's minimum, counted from the replica's age at expiry (at least the days it
            # was noncurrent: an upper bound of the charge).
            remaining = minimum - vault.expire_after_days
            month.early_deletions += expired * (size + prices.overhead_archive_bytes * archived) * remaining / 30 * prices.storage_per_byte_month(cls)
        manifest = record.objects * manifest_bytes_per_entry
        books.metadata_bytes += manifest
        for name, amount in replication_day(record.copies, record.copies * size, vault, prices, cls).items():
            setattr(month, name, getattr(month, name) + amount)
        for name, amount in replication_day(METADATA_REPLICAS_PER_BACKUP, manifest, vault, prices, METADATA_CLASS).items():
            setattr(month, name, getattr(month, name) + amount)
        month.replicated_versions += record.copies + METADATA_REPLICAS_PER_BACKUP
        month.replicated_bytes += record.copies * size + manifest
        held = books.current + books.noncurrent_total
        month.storage += held * size * share * prices.storage_per_byte_month(cls)
        month.overhead += held * share * per_object_overhead
        month.metadata += books.metadata_bytes * share * prices.storage_per_byte_month(METADATA_CLASS)
        month.current_versions, month.noncurrent_versions = books.current, books.noncurrent_total
        month.bytes, month.metadata_bytes = held * size, books.metadata_bytes
    return months


@dataclass(frozen=True)
class VaultRestore:
    """A full restore of one snapshot from the vault: what it costs and how long its thaws take, per tier."""

    objects: float
    bytes: float
    storage_class: str
    tiers: dict[str, dict[str, float]]
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": round(self.objects),
            "bytes": round(self.bytes),
            "storage_class": self.storage_class,
            "tiers": {tier: {k: round(v, 4) for k, v in figures.items()} for tier, figures in self.tiers.items()},
            "note": self.note,
        }


def vault_restore(
    objects: float, size: float, storage_class: str, prices: Prices, cross_region: bool, thawed_days: int
) -> VaultRestore:
    """Restoring `objects` objects of `size` bytes in all from replicas in `storage_class` into a bucket: each
    replica thawed (GLACIER, DEEP_ARCHIVE: retrieval per GB and per request, the thawed copy billed in STANDARD
    for `thawed_days`), then copied (a COPY request each at the target), across regions when the target is in
    another region than the vault (transfer per GB)."""
    gigabytes = size / GB
    copies = objects * prices.put_copy_post_list / 1000
    transfer = gigabytes * prices.replication.inter_region_transfer_per_gb if cross_region else 0.0
    options = sorted({tier for cls, tier in prices.retrieval if cls == storage_class})
    tiers: dict[str, dict[str, float]] = {}
    for tier in options or ["none"]:
        option = prices.retrieval.get((storage_class, tier))
        retrieval = gigabytes * option.per_gb + objects * option.per_1000_requests / 1000 if option else 0.0
        # A class read at once (GLACIER_IR: retrieval per GB, no thaw) leaves no thawed copy to pay for.
        thawed = gigabytes * prices.storage["STANDARD"] * thawed_days / 30 if option and option.thaw_hours else 0.0
        figures = {
            "retrieval_usd": retrieval,
            "thawed_copies_usd": thawed,
            "copy_requests_usd": copies,
            "transfer_usd": transfer,
            "thaw_hours_at_most": option.thaw_hours if option else 0.0,
        }
        figures["total_usd"] = retrieval + thawed + copies + transfer
        tiers[tier] = figures
    instant = bool(options) and all(not prices.retrieval[(storage_class, tier)].thaw_hours for tier in options)
    note = (
        f"replicas in {storage_class} are read at once ({', '.join(options)} retrieval per GB), each copied by one COPY request"
        if instant else f"each replica thawed ({', '.join(options)}), then copied by one COPY request"
        if options else f"replicas in {storage_class} are read at once (its retrieval fee per GB, if any, is not in the prices file)"
    ) + ("; across regions: inter-region transfer per GB" if cross_region else "; in the vault's region: no transfer")
    return VaultRestore(objects=objects, bytes=size, storage_class=storage_class, tiers=tiers, note=note)


def vault_estimate(
    vault: VaultSettings,
    stored: tuple[float, float],
    manifest_bytes: float,
    written_per_day: tuple[float, float],
    newest_manifest_bytes: float,
    prices: Prices,
    days: int = 30,
) -> dict[str, Any]:
    """A month of a plan's vault as `GET /costs` reports it, from what the backup account can see: the versions
    it stores (`stored`: versions, bytes) held as replicas in the vault's class with their overhead, every
    kept manifest in STANDARD, and a month of replicating what its backups write a day (`written_per_day`:
    versions, bytes) and a manifest and sealed record a backup. A floor for storage: the vault also keeps
    what the backup bucket pruned and the last version of what the source deleted, which this account
    cannot see."""
    versions, size = stored
    archived = vault.storage_class in prices.archive_classes
    overhead = versions * (
        prices.overhead_standard_bytes * prices.storage_per_byte_month("STANDARD")
        + prices.overhead_archive_bytes * prices.storage_per_byte_month(vault.storage_class)
    ) if archived else 0.0
    parts = {
        "storage_at_least": size * prices.storage_per_byte_month(vault.storage_class) + overhead,
        "metadata_at_least": manifest_bytes * prices.storage_per_byte_month(METADATA_CLASS),
        "puts": 0.0,
        "transfer": 0.0,
        "rtc": 0.0,
    }
    replicated = (
        (written_per_day[0] * days, written_per_day[1] * days, vault.storage_class),
        (METADATA_REPLICAS_PER_BACKUP * days, newest_manifest_bytes * days, METADATA_CLASS),
    )
    for count, amount, storage_class in replicated:
        for name, usd in replication_day(count, amount, vault, prices, storage_class).items():
            parts[name] += usd
    return {
        "settings": vault.describe(),
        "monthly_usd": round(sum(parts.values()), 6),
        "parts": {name: round(value, 6) for name, value in parts.items()},
        "replicated_per_month": {
            "versions": round(sum(count for count, _, _ in replicated)), "bytes": round(sum(amount for _, amount, _ in replicated)),
        },
        "note": "billed beside this plan's monthly_usd, not in it; storage is a floor: the vault also keeps the "
        "versions this bucket pruned and the last version of each key the source deleted (deletions are not "
        "replicated), which the backup account cannot see; transfer counted when the vault's region is not the "
        "prices file's",
    }

"""A year (or any number of days) of daily backups of one plan, priced month by month.

A workload (`chalicelib.cost.workload`) says how many objects the source holds, their sizes, and what share
changes, disappears and appears each day. The simulation (`chalicelib.cost.simulation`) backs up, prunes
what the plan's retention policy no longer keeps and lets the lifecycle move versions between storage
classes; this module prices it per month and per storage class, beside the alternatives of
`chalicelib.cost.bills`.

`project` starts from an empty bucket (day 0 copies every object); `project_from` starts from what a bucket
holds now (`Holdings`, measured by the cost report) and carries it forward month by month.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta

from chalicelib.cost.bills import Bill, Day, Month, alternatives
from chalicelib.cost.packs_model import PACKED_MANIFEST_BYTES_PER_ENTRY
from chalicelib.cost.upkeep_model import UpkeepSettings
from chalicelib.cost.simulation import MANIFEST_BYTES_PER_ENTRY, REFERENCE_BACKUP_TIME, Holdings, Simulation
from chalicelib.cost.workload import Workload
from chalicelib.plans import Lifecycle
from chalicelib.prices import Prices
from chalicelib.retention import RetentionPolicy


@dataclass(frozen=True)
class Projection:
    workload: Workload
    lifecycle: Lifecycle
    retention: RetentionPolicy | None
    days: int
    # This system, then the alternatives it is compared with, by name.
    ours: Bill
    others: dict[str, Bill] = field(default_factory=dict)
    # What each simulated day did (what the vault's model replicates: chalicelib/cost/vault_model.py).
    records: tuple[Day, ...] = ()

    def bills(self) -> dict[str, Bill]:
        return {"ours": self.ours, **self.others}


def project(
    workload: Workload,
    lifecycle: Lifecycle,
    retention: RetentionPolicy | None,
    prices: Prices,
    days: int = 365,
    start: date = date(2026, 1, 1),
    at: time = REFERENCE_BACKUP_TIME,
    upkeep: UpkeepSettings | None = None,
    baselines: bool = True,
) -> Projection:
    """Simulate `days` daily backups of `workload`, at `at` (UTC) each day, under a plan's lifecycle and
    retention (None: every snapshot kept), with the upkeep's jobs counted when `upkeep` is given, and (with
    `baselines`) price the same days under the alternatives of `chalicelib.cost.bills` and as this system
    with the same retention and no transitions."""
    if days < 1:
        raise ValueError("a projection needs at least one day")
    simulation = Simulation(workload, lifecycle, retention, prices, days, start, at=at, upkeep=upkeep)
    records = simulation.run()
    kept = retention.describe() if retention else "none (every snapshot kept)"
    ours = Bill(
        "ours",
        f"this system: lifecycle {describe_lifecycle(lifecycle)}; retention {kept}; S3 list prices, {prices.region}, "
        f"read on {prices.read_on}; {_manifest_notes(lifecycle)}, {MANIFEST_BYTES_PER_ENTRY} bytes an object" + _packing_notes(lifecycle),
        simulation.months,
    )
    if not baselines:
        return Projection(workload=workload, lifecycle=lifecycle, retention=retention, days=days, ours=ours, records=tuple(records))
    horizon = retention.horizon_days() if retention is not None else None
    others = alternatives(workload, prices, start, records, MANIFEST_BYTES_PER_ENTRY, horizon)
    flat = without_lifecycle(lifecycle)
    unmoved = Simulation(workload, flat, retention, prices, days, start, at=at, upkeep=upkeep)
    unmoved.run()
    same = Bill(
        "same_retention_no_lifecycle",
        f"this system with the same retention ({kept}) and no lifecycle transitions: every kept version and "
        "manifest in STANDARD, the same backups" + (" and the same upkeep" if upkeep is not None else ""),
        unmoved.months,
    )
    others = {"aws_backup": others["aws_backup"], "same_retention_no_lifecycle": same, **{k: v for k, v in others.items() if k != "aws_backup"}}
    return Projection(
        workload=workload, lifecycle=lifecycle, retention=retention, days=days, ours=ours, others=others, records=tuple(records)
    )


def project_from(
    holdings: Holdings,
    workload: Workload,
    lifecycle: Lifecycle,
    retention: RetentionPolicy | None,
    prices: Prices,
    months: int = 12,
) -> list[Month]:
    """The `months` calendar months after the one holding `holdings.today`, from what the bucket holds then:
    the workload's rates of change and its size mix (for what is written from tomorrow on), the lifecycle
    and the retention policy. The rest of the current month is simulated but not returned."""
    if months < 1:
        raise ValueError("a projection needs at least one month")
    today = holdings.start + timedelta(days=holdings.today)
    last = today.replace(day=1)
    for _ in range(months + 1):
        last = (last + timedelta(days=32)).replace(day=1)
    days = (last - holdings.start).days
    simulation = Simulation(workload, lifecycle, retention, prices, days, holdings.start, holdings)
    simulation.run(first_day=holdings.today + 1)
    label = today.strftime("%Y-%m")
    return [month for month in simulation.months if month.label > label][:months]


def without_lifecycle(lifecycle: Lifecycle) -> Lifecycle:
    """What `same_retention_no_lifecycle` prices: the plan with no transitions and its manifests in STANDARD."""
    return replace(lifecycle, transitions=(), manifest_glacier_ir_days=None)


def describe_lifecycle(lifecycle: Lifecycle) -> str:
    moves = ", ".join(f"{t.storage_class} after {t.days} days" for t in lifecycle.transitions) or "no transitions"
    manifests = "" if lifecycle.manifest_glacier_ir_days is None else f", manifests GLACIER_IR after {lifecycle.manifest_glacier_ir_days} days"
    if lifecycle.small_objects == "pack":
        return (
            f"{moves}, small objects pack (under {lifecycle.pack_threshold_bytes:,} bytes, into packs of "
            f"{lifecycle.pack_target_bytes:,} bytes){manifests}"
        )
    return f"{moves}, small objects {lifecycle.small_objects}{manifests}"


def _manifest_notes(lifecycle: Lifecycle) -> str:
    if lifecycle.manifest_glacier_ir_days is None:
        return "manifests in STANDARD"
    return (
        f"manifests over 128 KB in GLACIER_IR from {lifecycle.manifest_glacier_ir_days} days after they were written "
        "(a transition request each, the rest of its 90-day minimum for one deleted sooner; no job reads one that old)"
    )


def _packing_notes(lifecycle: Lifecycle) -> str:
    if lifecycle.small_objects != "pack":
        return ""
    return (
        f"; a packed object {PACKED_MANIFEST_BYTES_PER_ENTRY} bytes of manifest, read from its source by a GET (billed "
        "at the GET rate, pack_get), each pack written by a PUT (pack_put) and moved, billed the 40 KB overhead and "
        "deleted as the one object it is, once no kept snapshot names any object in it (nothing repacks); the "
        "verification looks at each pack once for all its objects: its report row, or one HEAD of a slice's pack"
    )

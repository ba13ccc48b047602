"""The cost report of one plan, and the total over the plans: the JSON `GET /costs` answers.

From what `tally.PlanTally` counted, the plan's kept snapshots (`inventory`), its measured backups
(`usage`) and its prunes' early-deletion charges (`prunes`), priced with one prices file:

- `monthly_usd` and `parts`: storage (objects and their archive overhead), manifests, requests, lifecycle
  transitions (those of the last 30 days), early deletions (prunes of the last 30 days) and the upkeep (the
  product's own verification, prune, cost report, inventory and alerts, `upkeep.py`), a month's worth;
- `upkeep`: per job, its requests a day by kind, its Lambda seconds and GB-seconds a day, and a month of it;
- `storage`, `current`, `noncurrent`: versions, bytes and monthly cost per storage class, as the lifecycle
  model places them now (what S3 bills: billing follows the rule's date even before S3 moves a version);
- `small_objects`: the bytes the 128 KB rule keeps in STANDARD and why, and each `small_objects` choice
  priced for this data, now and over the next 12 months;
- `projection`: the next 12 calendar months, per class, from the plan's measured rate of change, its
  lifecycle and its retention (`projection.project_from`);
- `alternatives`: the same data kept by AWS Backup for S3, by this system with the same retention and no
  lifecycle, by a plain versioned bucket fed by `aws s3 sync`, and as a plain `aws s3 sync` copy (no
  history: a floor), each with the prices and rules it uses;
- `check`: the model against the storage classes S3 reports, disagreements named.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, time, timezone
from typing import Any

from chalicelib.catalog.records import is_scheduled_id
from chalicelib.cost.bills import Month
from chalicelib.cost.inventory import SnapshotFile
from chalicelib.cost.bucket_versions import Work
from chalicelib.cost.manifest_tier import manifest_class
from chalicelib.cost.model import SMALL_OBJECT_BYTES
from chalicelib.cost.projection import describe_lifecycle, project_from
from chalicelib.cost.prunes import EarlyDeletions
from chalicelib.cost.simulation import Holdings
from chalicelib.cost.tally import Count, PlanTally, by_class, storage_usd, usd
from chalicelib.cost.upkeep import describe, upkeep_day
from chalicelib.cost.upkeep_model import BucketDay, UpkeepSettings
from chalicelib.cost.usage import Usage
from chalicelib.cost.vault_model import VaultSettings, vault_estimate
from chalicelib.deploy.vault_bucket import vault_expiration_days
from chalicelib.cost.workload import SizeClass, Workload
from chalicelib.plans import BUCKET_SETTING_CHOICES, SMALL_OBJECT_SETTINGS, Lifecycle, Plan
from chalicelib.prices import GB, Prices
from chalicelib.schedule import Schedule

PARTS = ("storage", "manifests", "requests", "transitions", "early_deletion", "upkeep")


def _summary(counts: dict[str, Count], prices: Prices) -> dict[str, Any]:
    classes = by_class(counts, prices)
    return {
        "versions": sum(c.versions for c in counts.values()),
        "bytes": sum(c.bytes for c in counts.values()),
        "monthly_usd": usd(sum(entry["monthly_usd"] for entry in classes.values())),
        "storage": classes,
    }


def _workload(plan: Plan, tally: PlanTally, usage: Usage) -> Workload:
    """The plan's data as the projection sees it: today's current versions (their count and size mix) and
    the measured rates of change."""
    groups = tally.current_groups
    objects = groups[True].versions + groups[False].versions
    sizes = tuple(
        SizeClass(label, round(count.bytes / count.versions), count.versions / objects)
        for label, count in (("under 128 KB", groups[True]), ("128 KB or more", groups[False]))
        if count.versions
    ) or (SizeClass("nothing stored", 0, 1.0),)
    changed = min(1.0, usage.changed_share)
    return Workload(
        name=plan.name,
        objects=max(1, objects),
        sizes=sizes,
        changed_per_day=changed,
        deleted_per_day=min(1.0 - changed, usage.deleted_share),
        new_per_day=usage.new_per_day,
        description=f"{objects} current objects; rates measured over {usage.measured_days:.1f} days",
    )


def backup_time_of_day(schedule: Schedule, snapshots: list[SnapshotFile], now: datetime) -> time:
    """The time of day (UTC) the plan's daily backups run at: the schedule's fixed time, or under
    `rate(1 day)` that of the newest scheduled snapshot (the rule fires at the same time every day); before
    there is one, the newest snapshot's, or now's."""
    scheduled = max((s.taken for s in snapshots if is_scheduled_id(s.backup_id)), default=None)
    known = schedule.time_of_day(scheduled)
    if known is not None:
        return known
    newest = max((s.taken for s in snapshots), default=now)
    return newest.astimezone(timezone.utc).time().replace(second=0, microsecond=0)


def holdings(tally: PlanTally, snapshots: Iterable[SnapshotFile], now: datetime, schedule: Schedule) -> Holdings:
    """What the bucket holds today, in the projection's whole days, and when its daily backups run."""
    snapshots = list(snapshots)
    today = now.astimezone(timezone.utc).date()
    dates = [key[1] for key in tally.current_cohorts] + [key[1] for key in tally.noncurrent_cohorts]
    dates += [s.taken.date() for s in snapshots]
    start = min(dates + [today])
    # A version or snapshot dated after the clock's day (clocks disagree by a little) moves today up to it:
    # the projection simulates only days after everything the bucket holds.
    today = max(dates + [today])

    def day(moment: date) -> int:
        return (moment - start).days

    current: dict[bool, dict[int, tuple[float, float]]] = {True: {}, False: {}}
    for (small, written), (count, size) in tally.current_cohorts.items():
        current[small][day(written)] = (count, size)
    noncurrent: dict[bool, dict[tuple[int, int], tuple[float, float]]] = {True: {}, False: {}}
    for (small, written, replaced), (count, size) in tally.noncurrent_cohorts.items():
        noncurrent[small][(day(written), day(replaced))] = (count, size)
    manifest_bytes: dict[int, float] = {}
    for snapshot in snapshots:
        manifest_bytes[day(snapshot.taken.date())] = manifest_bytes.get(day(snapshot.taken.date()), 0.0) + snapshot.size
    return Holdings(
        start, day(today), current, noncurrent, tuple(sorted(manifest_bytes)), manifest_bytes,
        backup_time_of_day(schedule, snapshots, now),
    )


def month_view(month: Month) -> dict[str, Any]:
    classes = sorted(set(month.bytes) | set(month.storage))
    return {
        "month": month.label,
        "monthly_usd": usd(month.total),
        "by_class": {
            name: {
                "versions": round(month.versions.get(name, 0)),
                "bytes": round(month.bytes.get(name, 0)),
                "monthly_usd": usd(month.storage.get(name, 0.0) + month.overhead_by_class.get(name, 0.0)),
            }
            for name in classes
        },
        "manifests_usd": usd(month.manifests),
        "requests_usd": usd(month.requests),
        "transitions_usd": usd(month.transitions),
        "early_deletion_usd": usd(month.early_deletions),
    }


def _rule(plan: Plan, tally: PlanTally, prices: Prices) -> dict[str, Any]:
    held = tally.held_by_rule
    setting = plan.lifecycle.transition_default_minimum_object_size
    if plan.lifecycle.small_objects != "archive":
        why = (
            f"under 128 KB ({SMALL_OBJECT_BYTES:,} bytes) and old enough for "
            f"{' or '.join(sorted(tally.held_would_be)) or 'a colder class'}, yet in STANDARD: the bucket's "
            f"TransitionDefaultMinimumObjectSize is {setting} (small_objects {plan.lifecycle.small_objects!r}), so S3 moves nothing "
            "smaller than 128 KB. Archived, each would be billed 40 KB more and cost a transition request; "
            "'choices' prices the other setting for this data"
        )
    else:
        why = (
            f"under 128 KB and due for {' or '.join(sorted(tally.held_would_be)) or 'a colder class'}: under {setting} "
            "small objects move to GLACIER and DEEP_ARCHIVE only, never to the infrequent-access classes or GLACIER_IR"
        )
    return {
        "versions": held.versions,
        "bytes": held.bytes,
        "monthly_usd": usd(storage_usd("STANDARD", held, prices)),
        "would_be_in": dict(sorted(tally.held_would_be.items())),
        "why": why,
    }


def _choices(plan: Plan, tally: PlanTally, prices: Prices, projected: dict[str, list[Month]]) -> dict[str, Any]:
    choices = {}
    for choice in BUCKET_SETTING_CHOICES:
        setting = SMALL_OBJECT_SETTINGS[choice]
        moves = tally.switch[choice]
        classes = by_class(tally.by_choice[choice], prices)
        choices[choice] = {
            "bucket_setting": setting,
            "chosen": choice == plan.lifecycle.small_objects,
            "storage": classes,
            "storage_usd": usd(sum(entry["monthly_usd"] for entry in classes.values())),
            "switch_transitions": dict(sorted(moves.items())),
            "switch_usd": usd(sum(count * prices.transition_per_request(name) for name, count in moves.items())),
            "next_12_months_usd": usd(sum(month.total for month in projected[choice])),
        }
    return choices


def _alternatives(
    plan: Plan, tally: PlanTally, usage: Usage, manifests: Count, requests_usd: float, ours: float, upkeep_usd: float, prices: Prices
) -> dict[str, Any]:
    """The same data now, kept other ways (the rules of `bills.alternatives`, applied to what is stored)."""
    standard = prices.storage_per_byte_month("STANDARD")
    every = sum(count.bytes for count in tally.storage.values())
    current = tally.current_groups[True].bytes + tally.current_groups[False].bytes
    objects = tally.current_groups[True].versions + tally.current_groups[False].versions
    # As many runs as the measured backups, listing both buckets each time.
    backups_a_month = usage.backups * 30 / usage.days if usage.backups else 0
    sync_requests = usage.requests.get("copy", 0) + 2 * math.ceil(objects / 1000) * backups_a_month
    sync_usd = sync_requests * prices.put_copy_post_list / 1000
    # Versions made noncurrent a day (changed or deleted), each kept until noncurrent for the horizon.
    horizon = plan.retention.horizon_days()
    mean_size = current / objects if objects else 0.0
    noncurrent = (usage.changed_per_day + usage.deleted_per_day) * horizon * mean_size
    figures = {
        "aws_backup": (
            tally.aws_backup_bytes / GB * prices.aws_backup.warm_storage,
            f"AWS Backup for S3 keeping the same restore points: the {tally.named.versions} versions kept snapshots "
            f"name, each billed as at least {prices.aws_backup.minimum_billable_bytes // 1024} KB, at "
            f"{prices.aws_backup.warm_storage} per GB-month warm storage; no cold tier for S3. Not counted: delete "
            "markers, its source-side requests and the source versioning it needs (more), its low-cost warm tier "
            "after 60 days (less)",
        ),
        "same_retention_no_lifecycle": (
            (every + manifests.bytes) * standard + requests_usd + upkeep_usd,
            f"this system with the same retention and no lifecycle transitions: every stored version and manifest "
            f"in STANDARD at {prices.storage['STANDARD']} per GB-month, the same requests and upkeep",
        ),
        "versioned_sync": (
            (current + noncurrent) * standard + sync_usd,
            f"a plain versioned bucket fed daily by aws s3 sync --delete: the current objects and the versions "
            f"changed or deleted in the last {horizon} days (a noncurrent expiry of the retention's horizon) in "
            f"STANDARD at {prices.storage['STANDARD']} per GB-month, at the measured rate of change; no manifests, "
            "verification or prune",
        ),
        "sync_copy": (
            current * standard + sync_usd,
            f"aws s3 sync --delete into a plain bucket: the {objects} current objects in STANDARD at "
            f"{prices.storage['STANDARD']} per GB-month, no history, so not a backup: a floor",
        ),
    }
    return {
        "ours": {"monthly_usd": usd(ours)},
        **{
            name: {"monthly_usd": usd(amount), "times_ours": round(amount / ours, 2) if ours else None, "notes": notes}
            for name, (amount, notes) in figures.items()
        },
    }


def upkeep_of(
    tally: PlanTally, snapshots: list[SnapshotFile], work: Work, settings: UpkeepSettings, prices: Prices, written: float = 0.0
) -> dict[str, Any]:
    """The plan's upkeep a month (`chalicelib.cost.upkeep`) from what its bucket holds now and the versions
    a backup writes a day (`written`, measured). What the next prune deletes is not known here: its
    DeleteObjects requests are left out (a few a day)."""
    day = BucketDay(
        versions=sum(count.versions for count in tally.storage.values()),
        named_versions=tally.named.versions,
        snapshots=len(snapshots),
        manifest_entries=work.manifest_entries,
        written=written,
    )
    return describe(upkeep_day(day, settings), settings, prices)


def plan_report(
    plan: Plan,
    tally: PlanTally,
    snapshots: list[SnapshotFile],
    work: Work,
    usage: Usage,
    early: EarlyDeletions,
    prices: Prices,
    now: datetime,
    schedule: Schedule,
    upkeep_settings: UpkeepSettings | None = None,
) -> dict[str, Any]:
    storage = by_class(tally.storage, prices)
    upkeep = upkeep_of(
        tally, snapshots, work, upkeep_settings or UpkeepSettings(), prices, usage.new_per_day + usage.changed_per_day
    )
    manifests = Count(len(snapshots), sum(snapshot.size for snapshot in snapshots))
    # Each manifest in the class the plan's manifest rule has put it in by now (dated from its backup's start,
    # a few minutes before it was written).
    manifest_classes: dict[str, float] = {}
    for snapshot in snapshots:
        name = manifest_class(plan.lifecycle, snapshot.size, snapshot.taken, now)
        manifest_classes[name] = manifest_classes.get(name, 0.0) + snapshot.size
    transitions_usd = sum(count * prices.transition_per_request(name) for name, count in tally.transitions.items())
    parts = {
        "storage": sum(entry["monthly_usd"] for entry in storage.values()),
        "manifests": sum(size * prices.storage_per_byte_month(name) for name, size in manifest_classes.items()),
        "requests": usage.monthly_usd,
        "transitions": transitions_usd,
        "early_deletion": early.usd,
        "upkeep": upkeep["monthly_usd"],
    }
    monthly = sum(parts.values())
    start = holdings(tally, snapshots, now, schedule)
    workload = _workload(plan, tally, usage)
    projected = {}
    for choice in BUCKET_SETTING_CHOICES:
        lifecycle = Lifecycle(
            plan.lifecycle.transitions, plan.lifecycle.noncurrent_expiration_days, choice,
            manifest_glacier_ir_days=plan.lifecycle.manifest_glacier_ir_days,
        )
        projected[choice] = project_from(start, workload, lifecycle, plan.retention, prices)
    unnamed = _summary(tally.unnamed, prices)
    return {
        "monthly_usd": usd(monthly),
        "parts": {name: usd(value) for name, value in parts.items()},
        "versions": sum(count.versions for count in tally.storage.values()),
        "bytes": sum(count.bytes for count in tally.storage.values()),
        "storage": storage,
        "current": _summary(tally.current, prices),
        "noncurrent": _summary(tally.noncurrent, prices),
        "named_by_no_snapshot": {
            **unnamed,
            "note": "stored and billed, but named by no kept snapshot (a concurrent run's copies, or versions of "
            "pruned snapshots): the next prune deletes them",
        },
        "reported_by_s3": {name: {"versions": c.versions, "bytes": c.bytes} for name, c in sorted(tally.reported.items())},
        "manifests": {
            "snapshots": manifests.versions,
            "bytes": manifests.bytes,
            "bytes_by_class": {name: round(size) for name, size in sorted(manifest_classes.items())},
            "monthly_usd": usd(parts["manifests"]),
        },
        "requests": usage.to_dict(),
        "transitions": {
            "last_30_days": dict(sorted(tally.transitions.items())),
            "monthly_usd": usd(transitions_usd),
        },
        "early_deletion": {**early.to_dict(), "monthly_usd": usd(early.usd), "window_days": 30},
        "lifecycle": describe_lifecycle(plan.lifecycle),
        "retention": plan.retention.describe(),
        "small_objects": {
            "setting": plan.lifecycle.small_objects,
            "bucket_setting": plan.lifecycle.transition_default_minimum_object_size,
            "kept_in_standard_by_128k_rule": _rule(plan, tally, prices),
            "choices": _choices(plan, tally, prices, projected),
        },
        "projection": [month_view(month) for month in projected[plan.lifecycle.bucket_setting_choice]],
        "upkeep": upkeep,
        "alternatives": _alternatives(plan, tally, usage, manifests, usage.monthly_usd, monthly, upkeep["monthly_usd"], prices),
        **({"vault": _vault(plan, tally, usage, snapshots, manifests, prices)} if plan.offsite is not None else {}),
        "check": tally.check.to_dict(),
        "work": {
            "versions_from": work.versions_from,
            **({"inventory_report": work.report} if work.report else {}),
            "list_requests": work.list_requests,
            "report_files": work.report_files,
            "report_rows": work.report_rows,
            "snapshots_read": work.snapshots,
            "manifest_entries": work.manifest_entries,
            "versions": work.versions,
            "missing_versions": work.missing,
            "head_requests": tally.check.head_sampled + len(tally.check.errors),
        },
    }


def _vault(plan: Plan, tally: PlanTally, usage: Usage, snapshots: list[SnapshotFile], manifests: Count, prices: Prices) -> dict[str, Any]:
    """The plan's vault (`vault_model.vault_estimate`) from this bucket's versions and its measured backups."""
    assert plan.offsite is not None
    vault = VaultSettings(plan.offsite.storage_class, vault_expiration_days(plan), cross_region=plan.offsite.region != prices.region,
                          rtc=plan.offsite.rtc)
    newest = max(snapshots, key=lambda s: s.taken).size if snapshots else 0
    stored = (sum(c.versions for c in tally.storage.values()), sum(c.bytes for c in tally.storage.values()))
    written = (usage.new_per_day + usage.changed_per_day, usage.bytes_copied_per_day)
    return vault_estimate(vault, stored, manifests.bytes, written, newest, prices)


def combine(plans: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The total over the plans that could be reported."""
    reported = [plan for plan in plans.values() if plan.get("monthly_usd") is not None]
    storage: dict[str, dict[str, Any]] = {}
    for plan in reported:
        for name, entry in plan["storage"].items():
            total = storage.setdefault(name, {"versions": 0, "bytes": 0, "monthly_usd": 0.0})
            total["versions"] += entry["versions"]
            total["bytes"] += entry["bytes"]
            total["monthly_usd"] = usd(total["monthly_usd"] + entry["monthly_usd"])
    months: dict[str, dict[str, Any]] = {}
    for plan in reported:
        for month in plan["projection"]:
            total = months.setdefault(month["month"], {"month": month["month"], "monthly_usd": 0.0, "by_class": {}})
            total["monthly_usd"] = usd(total["monthly_usd"] + month["monthly_usd"])
            for name, entry in month["by_class"].items():
                into = total["by_class"].setdefault(name, {"versions": 0, "bytes": 0, "monthly_usd": 0.0})
                into["versions"] += entry["versions"]
                into["bytes"] += entry["bytes"]
                into["monthly_usd"] = usd(into["monthly_usd"] + entry["monthly_usd"])
    alternatives: dict[str, float] = {}
    for plan in reported:
        for name, entry in plan["alternatives"].items():
            alternatives[name] = usd(alternatives.get(name, 0.0) + entry["monthly_usd"])
    ours = alternatives.get("ours", 0.0)
    upkeep: dict[str, Any] = {"monthly_usd": usd(sum(plan["upkeep"]["monthly_usd"] for plan in reported)), "jobs": {}}
    for plan in reported:
        for job, entry in plan["upkeep"]["jobs"].items():
            into = upkeep["jobs"].setdefault(job, {"monthly_usd": 0.0, "requests_per_day": {}, "lambda_seconds_per_day": 0.0})
            into["monthly_usd"] = usd(into["monthly_usd"] + entry["monthly_usd"])
            into["lambda_seconds_per_day"] = round(into["lambda_seconds_per_day"] + entry["lambda_seconds_per_day"], 1)
            for kind, count in entry["requests_per_day"].items():
                into["requests_per_day"][kind] = round(into["requests_per_day"].get(kind, 0.0) + count, 1)
    return {
        "monthly_usd": usd(sum(plan["monthly_usd"] for plan in reported)),
        "parts": {name: usd(sum(plan["parts"][name] for plan in reported)) for name in PARTS},
        "versions": sum(plan["versions"] for plan in reported),
        "bytes": sum(plan["bytes"] for plan in reported),
        "storage": dict(sorted(storage.items())),
        "upkeep": upkeep,
        "projection": [months[label] for label in sorted(months)],
        "alternatives": {
            name: {"monthly_usd": amount, **({"times_ours": round(amount / ours, 2) if ours else None} if name != "ours" else {})}
            for name, amount in alternatives.items()
        },
    }

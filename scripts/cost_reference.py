"""`make cost-reference`: what a year of daily backups costs, upkeep included, beside AWS Backup, the same
retention without lifecycle, a plain versioned bucket fed by sync, and a sync copy.

Two workloads, each backed up daily for 365 days (from 2026-01-01) under the shipped `documents` plan's
lifecycle and retention, priced with `chalicelib/prices.json` (or PRICES_FILE):

- office: 100 GiB in 100,000 objects. 70% are documents under 128 KB (40,000 of 16 KiB, 20,000 of 64 KiB,
  10,000 of 112 KiB: 2.9 GiB in all), 5,000 are large documents of about 4.8 MiB, and 25,000 are photos of 1
  to 5 MiB (5,000 of each whole size). Each day 1% of the objects change, 0.1% are deleted and 150 new ones
  appear (slow growth: 0.05% a day, about 20% a year).
- many small files: 10,000,000 objects of 10 KiB (95 GiB; all under 128 KB, so only the average matters:
  every price is linear in bytes or in objects). Each day 1% change, 0.1% are deleted and 10,000 new ones
  appear (a steady count).

Ours counts its own upkeep (chalicelib/cost/upkeep.py: the weekly verification, the daily prune, the daily
cost report, S3 Inventory when the plans set it, the alerts; requests and Lambda time), as the shipped
plans file configures it. For each workload it prints month 12's bill for each way of keeping the data and
the ratios, where this system's money goes, the upkeep's requests per day per job and Lambda seconds, and
what each small_objects and lifecycle choice would cost; then the targets (at least 5 x below AWS Backup;
office at least 2.9 x below the same retention without lifecycle; many small files no dearer than the
versioned bucket fed by sync; upkeep at most 5% of the bill), each figure, met or not, and where a target is
not met the cost that dominates, with each job's requests a day and Lambda seconds. A report, not a test: it
never fails on a number. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib.cost.projection import describe_lifecycle, project, without_lifecycle  # noqa: E402
from chalicelib.cost.simulation import MANIFEST_BYTES_PER_ENTRY  # noqa: E402
from chalicelib.cost.vault_model import VaultSettings, vault_months, vault_restore  # noqa: E402
from chalicelib.deploy.vault_bucket import vault_expiration_days  # noqa: E402
from chalicelib.cost.upkeep_model import UpkeepSettings  # noqa: E402
from chalicelib.cost.workload import SizeClass, Workload  # noqa: E402
from chalicelib.plans import Lifecycle, Offsite, Transition  # noqa: E402
from chalicelib.plans_file import check_plans_file  # noqa: E402
from chalicelib.prices import Prices, load_prices  # noqa: E402
from chalicelib.restore.thaw import THAW_DAYS  # noqa: E402

KIB = 1024
MIB = 1024**2
GIB = 1024**3
# The photos take 75,000 MiB and the small documents 2,968.75 MiB; the large documents make up the rest
# of 100 GiB (102,400 MiB).
LARGE_DOCUMENT = round((102400 - 75000 - 2968.75) * MIB / 5000)
# At least this many times cheaper than each baseline (1.0: no dearer), per workload.
TARGETS = {
    "office": {"aws_backup": 5.0, "same_retention_no_lifecycle": 2.9},
    "many_small_files": {"aws_backup": 5.0, "versioned_sync": 1.0},
}
# The upkeep's share of our bill, at most.
UPKEEP_SHARE = 0.05
# With small_objects pack (the shipped lifecycle otherwise): at least this many times cheaper than each baseline.
PACK_TARGETS = {"many_small_files": {"versioned_sync": 5.0, "aws_backup": 20.0}}
# A day's backup with pack: at most changed/1000 pack writes, ceil(objects/1000) listings and this many more
# requests of each kind (the fixed ones: the previous manifest, the new one and the records, the catalog).
PACK_FIXED_REQUESTS = 5
SMALL_OBJECT_CHOICES = ("standard", "archive", "pack")
# The workloads shown with an off-site copy: a vault in another account and region, replicas in this class,
# locked for the retention horizon (the shortest lock a plan may set).
VAULT_WORKLOADS = ("office",)
VAULT_CLASS = "DEEP_ARCHIVE"
# The plans-file settings compared on each workload: these lifecycles, each with both small_objects choices.
LIFECYCLES = {
    "shipped": (Transition(30, "GLACIER"), Transition(180, "DEEP_ARCHIVE")),
    "GLACIER 30": (Transition(30, "GLACIER"),),
    "DEEP_ARCHIVE 30": (Transition(30, "DEEP_ARCHIVE"),),
    "no transitions": (),
}


def office(scale: float = 1.0) -> Workload:
    count = round(100_000 * scale)
    return Workload(
        name="office",
        objects=count,
        sizes=(
            SizeClass("small documents", 16 * KIB, 0.40),
            SizeClass("documents", 64 * KIB, 0.20),
            SizeClass("documents", 112 * KIB, 0.10),
            SizeClass("large documents", LARGE_DOCUMENT, 0.05),
            *(SizeClass(f"photos of {n} MiB", n * MIB, 0.05) for n in range(1, 6)),
        ),
        changed_per_day=0.01,
        deleted_per_day=0.001,
        new_per_day=150 * scale,
        description="100 GiB in 100,000 objects, 70% under 128 KB; 1% changed, 0.1% deleted, 150 new a day",
    )


def many_small_files(scale: float = 1.0) -> Workload:
    count = round(10_000_000 * scale)
    return Workload(
        name="many_small_files",
        objects=count,
        sizes=(SizeClass("small files", 10 * KIB, 1.0),),
        changed_per_day=0.01,
        deleted_per_day=0.001,
        new_per_day=count * 0.001,
        description="10,000,000 objects of 10 KiB; 1% changed, 0.1% deleted, 0.1% new a day",
    )


def _where_the_money_goes(month: Any) -> dict[str, float]:
    parts = {
        "storage": sum(month.storage.values()),
        "archive_overhead": month.overhead,
        "manifests": month.manifests,
        "requests": month.requests,
        "transitions": month.transitions,
        "early_deletions": month.early_deletions,
        "upkeep": month.upkeep,
    }
    return {name: round(value, 4) for name, value in parts.items()}


def _manifests(month: Any) -> dict[str, Any]:
    """What the kept manifests cost, by part (their storage per class, their moves to GLACIER_IR, the early
    deletions there), and their bytes per class on the month's last day."""
    return {
        "monthly_usd": round(month.manifests, 4),
        "parts": {name: round(amount, 4) for name, amount in sorted(month.manifest_parts.items())},
        "bytes_by_class": {name: round(size) for name, size in sorted(month.manifest_bytes_by_class.items())},
    }


def _manifest_line(manifests: dict[str, Any]) -> str:
    parts = ", ".join(f"{name} {amount:.4f}" for name, amount in manifests["parts"].items())
    stored = ", ".join(f"{name} {size / GIB:,.1f} GiB" for name, size in manifests["bytes_by_class"].items())
    return f"manifests {manifests['monthly_usd']:.4f} ({parts}); kept manifests: {stored}"


def run(
    scale: float = 1.0, days: int = 365, prices: Prices | None = None, lifecycles: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every figure of the report, as one dictionary (also what the test checks at a small scale, comparing
    fewer `lifecycles` than LIFECYCLES: each costs a simulated year per small_objects choice)."""
    prices = prices or load_prices()
    plans = check_plans_file()
    plan = plans.get("documents")
    upkeep = UpkeepSettings.of_plans(plans)
    report: dict[str, Any] = {
        "prices": {"file": prices.origin, "region": prices.region, "read_on": prices.read_on.isoformat(), "currency": prices.currency},
        "days": days,
        "plan": {"name": plan.name, "lifecycle": describe_lifecycle(plan.lifecycle), "retention": plan.retention.describe()},
        "inventory": upkeep.inventory,
        "workloads": {},
    }
    for workload in (office(scale), many_small_files(scale)):
        projection = project(workload, plan.lifecycle, plan.retention, prices, days=days, upkeep=upkeep)
        bills = projection.bills()
        last = {name: bill.months[-1] for name, bill in bills.items()}
        ours = last["ours"].total
        entry: dict[str, Any] = {
            "description": workload.description,
            "objects": workload.objects,
            "bytes": round(workload.total_bytes()),
            "month": last["ours"].label,
            "totals": {name: round(month.total, 4) for name, month in last.items()},
            "ratios": {name: round(month.total / ours, 2) for name, month in last.items() if name != "ours"},
            "notes": {name: bill.notes for name, bill in bills.items()},
            "bills": {name: month.as_dict() for name, month in last.items()},
            "monthly_totals": {name: [round(m.total, 4) for m in bill.months] for name, bill in bills.items()},
            "monthly_bytes": {name: [round(sum(m.bytes.values())) for m in bill.months] for name, bill in bills.items()},
            "where_the_money_goes": _where_the_money_goes(last["ours"]),
            "manifests": _manifests(last["ours"]),
            "upkeep": {"share": round(last["ours"].upkeep / ours, 4), **last["ours"].upkeep_day},
        }
        entry["targets"] = {
            f"{name}_at_least_{target:g}x": entry["ratios"][name] >= target for name, target in TARGETS[workload.name].items()
        }
        entry["targets"][f"upkeep_at_most_{UPKEEP_SHARE:.0%}"] = entry["upkeep"]["share"] <= UPKEEP_SHARE
        entry["dominant"] = _dominant(entry)
        # Month 12 of each lifecycle already simulated, so that the settings compared do not simulate it again.
        # (The baseline without lifecycle keeps its manifests in STANDARD too: no setting compared below is it.)
        known = {plan.lifecycle: last["ours"], without_lifecycle(plan.lifecycle): last["same_retention_no_lifecycle"]}
        entry["pack"] = _pack_figures(workload, plan.lifecycle, plan.retention, prices, days, upkeep, known)
        entry["settings"] = _compare_settings(workload, lifecycles or LIFECYCLES, plan, prices, days, upkeep, known)
        if workload.name in VAULT_WORKLOADS:
            entry["vault"] = _vault_figures(workload, projection.records, plan, prices, ours)
        cheapest = min(s["total"] for s in entry["settings"])
        entry["cheapest_settings"] = [s for s in entry["settings"] if s["total"] <= cheapest * (1 + 1e-9)]
        report["workloads"][workload.name] = entry
    return report


def _pack_figures(
    workload: Workload, lifecycle: Lifecycle, retention: Any, prices: Prices, days: int, upkeep: UpkeepSettings, known: dict[Lifecycle, Any]
) -> dict[str, Any]:
    """The workload under the plan's lifecycle with `small_objects: pack` (default threshold and target): month
    12's bills beside the same baselines, where the money goes, the upkeep, the backup's requests a day, and the
    issue's targets where it sets them."""
    packed = replace(lifecycle, small_objects="pack")
    projection = project(workload, packed, retention, prices, days=days, upkeep=upkeep)
    last = {name: bill.months[-1] for name, bill in projection.bills().items()}
    ours = last["ours"]
    known.update({packed: ours, without_lifecycle(packed): last["same_retention_no_lifecycle"]})
    per_day = {kind: count / ours.days for kind, count in sorted(ours.request_counts.items())}
    changed = workload.objects * workload.changed_per_day
    allowed = {
        "pack_put": changed / 1000,
        "list": math.ceil(workload.objects / 1000) + PACK_FIXED_REQUESTS,
        "put": PACK_FIXED_REQUESTS,
        "get": PACK_FIXED_REQUESTS,
    }
    heads = ours.upkeep_day["jobs"]["verification"]["requests_per_day"].get("head", 0.0)
    figures: dict[str, Any] = {
        "lifecycle": describe_lifecycle(packed),
        "note": projection.ours.notes,
        "totals": {name: round(month.total, 4) for name, month in last.items()},
        "ratios": {name: round(month.total / ours.total, 2) for name, month in last.items() if name != "ours"},
        "where_the_money_goes": _where_the_money_goes(ours),
        "manifests": _manifests(ours),
        "upkeep": {"share": round(ours.upkeep / ours.total, 4), **ours.upkeep_day},
        "versions": {name: round(count) for name, count in sorted(ours.versions.items())},
        "requests_per_day": {kind: round(count, 1) for kind, count in per_day.items()},
        "request_allowance": {kind: round(count, 1) for kind, count in allowed.items()},
        "requests_target_met": {kind: per_day.get(kind, 0.0) <= limit + 1e-9 for kind, limit in allowed.items()},
        # Not in the target's formula: one GET of its source per packed object, and the verification's HEADs.
        "source_reads_per_day": round(per_day.get("pack_get", 0.0), 1),
        "verification_heads_per_day": round(heads, 1),
        "verification_heads_monthly_usd": round(heads * 30 * prices.get / 1000, 4),
    }
    figures["targets"] = {
        f"{name}_at_least_{target:g}x": figures["ratios"][name] >= target for name, target in PACK_TARGETS.get(workload.name, {}).items()
    }
    return figures


def _vault_figures(workload: Workload, records: Any, plan: Any, prices: Prices, ours: float) -> dict[str, Any]:
    """The workload with an off-site copy in VAULT_CLASS: the vault's bill (month 12, and month 1 with the first
    full copy), ours with it, the same with Replication Time Control on, and a full restore of the newest
    snapshot from the vault per retrieval tier (into a bucket in another region than the vault's)."""
    horizon = plan.retention.horizon_days()
    offsite = Offsite(account="000000000000", region="elsewhere", bucket="vault", object_lock_days=horizon, storage_class=VAULT_CLASS)
    vault = VaultSettings(VAULT_CLASS, vault_expiration_days(replace(plan, offsite=offsite)))
    months = vault_months(records, workload, vault, prices, date(2026, 1, 1), MANIFEST_BYTES_PER_ENTRY)
    with_rtc = vault_months(records, workload, replace(vault, rtc=True), prices, date(2026, 1, 1), MANIFEST_BYTES_PER_ENTRY)
    newest = records[-1].objects
    restore = vault_restore(newest, newest * workload.mean_size, VAULT_CLASS, prices, cross_region=True, thawed_days=THAW_DAYS)
    last = months[-1]
    return {
        "settings": vault.describe(),
        "month": last.as_dict(),
        "first_month": months[0].as_dict(),
        "monthly_totals": [round(month.total, 4) for month in months],
        "year_usd": round(sum(month.total for month in months), 2),
        "with_rtc_month": round(with_rtc[-1].total, 4),
        "ours_with_vault": round(ours + last.total, 4),
        "vault_share": round(last.total / (ours + last.total), 4),
        "restore": restore.as_dict(),
    }


def _print_vault(vault: dict[str, Any], currency: str) -> None:
    month, first = vault["month"], vault["first_month"]
    print(f"  with an off-site copy ({vault['settings']}), monthly cost ({currency}):")
    print(
        f"    vault, month {month['month']}: {month['total']:.4f} (" + ", ".join(f"{k} {month[k]:.4f}" for k in
        ("storage", "overhead", "metadata", "puts", "transfer", "rtc", "early_deletions")) + ")"
    )
    print(
        f"    holds {month['versions']['current']:,} current and {month['versions']['noncurrent']:,} replaced versions, "
        f"{month['bytes'] / 1024**3:,.1f} GiB; replicated this month {month['replicated']['versions']:,} versions, "
        f"{month['replicated']['bytes'] / 1024**3:,.1f} GiB"
    )
    print(f"    vault, month {first['month']} (the first full copy): {first['total']:.4f}; the year: {vault['year_usd']:.2f}")
    print(f"    with Replication Time Control on, month {month['month']}: {vault['with_rtc_month']:.4f}")
    print(f"    ours with the vault: {vault['ours_with_vault']:.4f} (the vault {vault['vault_share']:.1%} of it)")
    restore = vault["restore"]
    print(
        f"    a full restore of the newest snapshot from the vault ({restore['objects']:,} objects, "
        f"{restore['bytes'] / 1024**3:,.1f} GiB; {restore['note']}):"
    )
    for tier, figures in restore["tiers"].items():
        print(
            f"      {tier:<9} {figures['total_usd']:>8.2f} (retrieval {figures['retrieval_usd']:.2f}, thawed copies "
            f"{figures['thawed_copies_usd']:.2f}, copies {figures['copy_requests_usd']:.2f}, transfer "
            f"{figures['transfer_usd']:.2f}); thaws take up to {figures['thaw_hours_at_most']:g} hours"
        )


def _dominant(entry: dict[str, Any]) -> dict[str, str]:
    """Where the money goes first: the largest part of our bill, and the upkeep's largest job with its
    requests a day and Lambda seconds (what a target not met is up against)."""
    part, amount = max(entry["where_the_money_goes"].items(), key=lambda item: item[1])
    job, figures = max(entry["upkeep"]["jobs"].items(), key=lambda item: item[1]["monthly_usd"])
    return {"bill": f"{part} {amount:.2f}", "upkeep": f"{job} {figures['monthly_usd']:.2f} ({_job_line(figures)})"}


def _job_line(figures: dict[str, Any]) -> str:
    requests = ", ".join(f"{kind} {count:,.0f}" for kind, count in figures["requests_per_day"].items()) or "no requests"
    seconds = f"; Lambda {figures['lambda_seconds_per_day']:,.0f} s a day" if figures["lambda_function"] else ""
    return f"{requests} a day{seconds}"


def _target_table(report: dict[str, Any]) -> None:
    """The targets, month 12, everything counted: each figure, met or not, and what dominates where not."""
    currency = report["prices"]["currency"]
    print(f"\nTargets, month {next(iter(report['workloads'].values()))['month']}, everything counted ({currency} a month):")
    for name, entry in report["workloads"].items():
        ours = entry["totals"]["ours"]
        print(f"  {name}: ours {ours:.2f}, of which upkeep {entry['upkeep']['monthly_usd']:.2f}")
        for baseline, target in TARGETS[name].items():
            met = entry["targets"][f"{baseline}_at_least_{target:g}x"]
            print(
                f"    {baseline:<29} {entry['totals'][baseline]:>9.2f}  {entry['ratios'][baseline]:>5.2f} x ours "
                f"(target at least {target:g} x): {'met' if met else 'NOT met, ours is mostly ' + entry['dominant']['bill']}"
            )
        share = entry["upkeep"]["share"]
        met = entry["targets"][f"upkeep_at_most_{UPKEEP_SHARE:.0%}"]
        print(
            f"    {'upkeep share':<29} {share:>15.1%} (target at most {UPKEEP_SHARE:.0%}): "
            + ("met" if met else f"NOT met, largest: {entry['dominant']['upkeep']}")
        )
        for job, figures in entry["upkeep"]["jobs"].items():
            print(f"      {job:<14}{figures['monthly_usd']:>8.2f}  {_job_line(figures)}")
        _pack_targets(name, entry["pack"])


def _pack_targets(name: str, pack: dict[str, Any]) -> None:
    """The targets with small_objects pack: the ratios, and the requests a day for the day's changes."""
    print(
        f"  {name} with small_objects pack: ours {pack['totals']['ours']:.2f}, of which upkeep "
        f"{pack['upkeep']['monthly_usd']:.2f}, {_manifest_line(pack['manifests'])}"
    )
    for baseline, target in PACK_TARGETS.get(name, {}).items():
        met = pack["targets"][f"{baseline}_at_least_{target:g}x"]
        largest = max(pack["where_the_money_goes"].items(), key=lambda item: item[1])
        print(
            f"    {baseline:<29} {pack['totals'][baseline]:>9.2f}  {pack['ratios'][baseline]:>5.2f} x ours "
            f"(target at least {target:g} x): {'met' if met else f'NOT met, ours is mostly {largest[0]} {largest[1]:.2f}'}"
        )
    if name not in PACK_TARGETS:
        return
    requests = pack["requests_per_day"]
    for kind, limit in pack["request_allowance"].items():
        met = pack["requests_target_met"][kind]
        print(f"    requests a day, {kind:<9} {requests.get(kind, 0.0):>12,.1f}  (target at most {limit:,.1f}): {'met' if met else 'NOT met'}")
    print(
        f"    beyond the target's formula: {pack['source_reads_per_day']:,.0f} GETs a day reading the packed objects from "
        f"their source (pack_get), and the verification's {pack['verification_heads_per_day']:,.0f} HEADs a day (one per "
        f"pack of a slice by HEAD, none against a report: {pack['verification_heads_monthly_usd']:.2f} a month in requests)"
    )


def _compare_settings(
    workload: Workload, lifecycles: dict[str, Any], plan: Any, prices: Prices, days: int, upkeep: UpkeepSettings, known: dict[Lifecycle, Any]
) -> list[dict[str, Any]]:
    """Month 12 under each lifecycle and small_objects choice (the plan's other lifecycle settings kept)."""
    settings = []
    for label, transitions in lifecycles.items():
        for small_objects in SMALL_OBJECT_CHOICES:
            lifecycle = replace(plan.lifecycle, transitions=transitions, small_objects=small_objects)
            month = known.get(lifecycle)
            if month is None:
                month = project(workload, lifecycle, plan.retention, prices, days=days, upkeep=upkeep, baselines=False).ours.months[-1]
            settings.append(
                {"lifecycle": label, "small_objects": small_objects, "total": round(month.total, 4), **_where_the_money_goes(month)}
            )
    return settings


def _print_pack(pack: dict[str, Any], currency: str) -> None:
    print(f"  with small_objects pack ({pack['lifecycle']}), monthly cost ({currency}):")
    for bill, total in pack["totals"].items():
        ratio = "" if bill == "ours" else f"  ({pack['ratios'][bill]:.2f} x ours)"
        print(f"    {bill:<24}{total:>12.4f}{ratio}")
    print("    ours, where the money goes: " + ", ".join(f"{k} {v:.4f}" for k, v in pack["where_the_money_goes"].items()))
    print("    " + _manifest_line(pack["manifests"]))
    print("    stored versions by class: " + ", ".join(f"{k} {v:,}" for k, v in pack["versions"].items()))
    print(f"    upkeep {pack['upkeep']['monthly_usd']:.4f} a month ({pack['upkeep']['share']:.1%} of ours):")
    for job, figures in pack["upkeep"]["jobs"].items():
        print(f"      {job:<14}{figures['monthly_usd']:>10.4f} a month; {_job_line(figures)}")
    print("    backup requests a day: " + ", ".join(f"{kind} {count:,.1f}" for kind, count in pack["requests_per_day"].items()))


def _print(report: dict[str, Any]) -> None:
    plan = report["plan"]
    print(f"Prices: {report['prices']['file']} ({report['prices']['region']}, read {report['prices']['read_on']})")
    print(f"Plan '{plan['name']}': lifecycle {plan['lifecycle']}; retention {plan['retention']}; {report['days']} daily backups")
    print(f"S3 Inventory: {report['inventory'] or 'not configured (the verification, prune and cost report list and HEAD)'}")
    for name, entry in report["workloads"].items():
        print(f"\n{name}: {entry['description']}")
        print(f"  month {entry['month']}, monthly cost ({report['prices']['currency']}):")
        for bill, total in entry["totals"].items():
            ratio = "" if bill == "ours" else f"  ({entry['ratios'][bill]:.2f} x ours)"
            print(f"    {bill:<24}{total:>12.4f}{ratio}")
        print("  ours, where the money goes: " + ", ".join(f"{k} {v:.4f}" for k, v in entry["where_the_money_goes"].items()))
        print("  " + _manifest_line(entry["manifests"]))
        upkeep = entry["upkeep"]
        print(f"  upkeep {upkeep['monthly_usd']:.4f} a month ({upkeep['share']:.1%} of ours); on the month's last day, per job:")
        for job, figures in upkeep["jobs"].items():
            requests = ", ".join(f"{kind} {count:,.0f}" for kind, count in figures["requests_per_day"].items()) or "none"
            seconds = f"; Lambda {figures['lambda_seconds_per_day']:,.0f} s ({figures['lambda_function']})" if figures["lambda_function"] else ""
            print(f"    {job:<14}{figures['monthly_usd']:>10.4f} a month; requests a day: {requests}{seconds}")
            for limit in figures.get("limits", []):
                print(f"      cannot finish as it works today: {limit}")
        for target, met in entry["targets"].items():
            print(f"  target {target}: {'met' if met else 'NOT met'}")
        _print_pack(entry["pack"], report["prices"]["currency"])
        if "vault" in entry:
            _print_vault(entry["vault"], report["prices"]["currency"])
        print("  ours under each setting:")
        for setting in entry["settings"]:
            print(f"    small_objects {setting['small_objects']:<9} lifecycle {setting['lifecycle']:<40}{setting['total']:>12.4f}")
        cheapest = "; ".join(f"small_objects {s['small_objects']}, lifecycle {s['lifecycle']}" for s in entry["cheapest_settings"])
        print(f"  cheapest: {cheapest}")
    _target_table(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload's object counts (default 1)")
    parser.add_argument("--days", type=int, default=365, help="days of daily backups (default 365)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = run(args.scale, args.days)
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    _print(report)
    print(f"\n({report['elapsed_seconds']} s)")
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

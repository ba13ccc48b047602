"""`org-backup cost`: what the backups cost, as a table (or the report's JSON with --json)."""

from __future__ import annotations

from typing import Any

from chalicelib.cli.output import EXIT_ATTENTION, EXIT_OK, Context, emit, human, plan_named, table
from chalicelib.cost.reports import CostReports, plan_view


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _plan_rows(name: str, plan: dict[str, Any]) -> list[list[str]]:
    if plan.get("monthly_usd") is None:
        return [[name, "(not read)", "", "", "-"]]
    rows = [
        [name, storage_class, f"{entry['versions']:,}", human(entry["bytes"]), _usd(entry["monthly_usd"])]
        for storage_class, entry in plan["storage"].items()
    ]
    manifests = plan["manifests"]
    rows.append([name, f"manifests ({manifests['snapshots']})", "", human(manifests["bytes"]), _usd(manifests["monthly_usd"])])
    for part in ("requests", "transitions", "early_deletion", "upkeep"):
        rows.append([name, part.replace("_", " "), "", "", _usd(plan["parts"][part])])
    rows.append([name, "TOTAL", f"{plan['versions']:,}", human(plan["bytes"]), _usd(plan["monthly_usd"])])
    return rows


def _plan_notes(name: str, plan: dict[str, Any]) -> list[str]:
    if plan.get("monthly_usd") is None:
        return [f"{name}: {plan.get('error')}"]
    current, noncurrent = plan["current"], plan["noncurrent"]
    rule = plan["small_objects"]["kept_in_standard_by_128k_rule"]
    check = plan["check"]
    choices = plan["small_objects"]["choices"]
    alternatives = plan["alternatives"]
    lines = [
        f"{name}: {plan['lifecycle']}; retention {plan['retention']}",
        f"  current {current['versions']:,} versions ({human(current['bytes'])}, {_usd(current['monthly_usd'])}), "
        f"noncurrent {noncurrent['versions']:,} ({human(noncurrent['bytes'])}, {_usd(noncurrent['monthly_usd'])}); "
        f"named by no kept snapshot {plan['named_by_no_snapshot']['versions']:,}",
    ]
    if rule["versions"]:
        lines.append(f"  kept in STANDARD by the 128 KB rule: {rule['versions']:,} versions ({human(rule['bytes'])}): {rule['why']}")
    lines.append(
        "  small_objects: "
        + "; ".join(
            f"{choice}{' (chosen)' if entry['chosen'] else ''} {_usd(entry['storage_usd'])} storage a month, "
            f"next 12 months {_usd(entry['next_12_months_usd'])}"
            + (f", switching now {_usd(entry['switch_usd'])}" if entry["switch_usd"] else "")
            for choice, entry in choices.items()
        )
    )
    lines.append(
        "  the same data kept otherwise, a month: "
        + ", ".join(
            f"{other} {_usd(entry['monthly_usd'])}" + (f" ({entry['times_ours']} x)" if entry.get("times_ours") else "")
            for other, entry in alternatives.items()
            if other != "ours"
        )
    )
    lines += upkeep_lines(plan["upkeep"])
    lines.append(
        f"  check against S3: {check['compared']:,} versions compared, {check['agree']:,} agree, {check['pending']:,} "
        f"transitions pending, {check['disagreements_count']:,} disagree; {check['head_sampled']} asked again with "
        f"HeadObject, {check['head_disagreements_count']} disagree"
    )
    lines += [f"    - {item['key']} ({item['version_id']}): {item['why']}" for item in check["disagreements"]]
    return lines


def upkeep_lines(upkeep: dict[str, Any]) -> list[str]:
    """The upkeep, a line per job: a month of it, its requests a day and its Lambda seconds a day."""
    lines = [f"  upkeep (the product's own recurring work) {_usd(upkeep['monthly_usd'])} a month:"]
    for job, entry in upkeep["jobs"].items():
        requests = ", ".join(f"{kind} {count:,.0f}" for kind, count in entry["requests_per_day"].items()) or "none"
        seconds = f"; Lambda {entry['lambda_seconds_per_day']:,.0f} s a day" if entry.get("lambda_seconds_per_day") else ""
        lines.append(f"    {job.replace('_', ' ')}: {_usd(entry['monthly_usd'])}; requests a day: {requests}{seconds}")
    return lines


def _projection(report: dict[str, Any], names: list[str]) -> str:
    months: dict[str, dict[str, float]] = {}
    for name in names:
        for month in report["plans"][name].get("projection", []):
            months.setdefault(month["month"], {})[name] = month["monthly_usd"]
    rows = [[label, *(_usd(months[label].get(name)) for name in names), _usd(sum(months[label].values()))] for label in sorted(months)]
    return table(rows, ["MONTH", *[name.upper() for name in names], "TOTAL"])


def text(report: dict[str, Any], names: list[str]) -> str:
    prices = report["prices"]
    lines = [
        f"Cost report of backup {report['backup_id']}, computed {report['computed_at']}; "
        f"{prices['currency']} at {prices['region']} list prices read {prices['read_on']} ({prices.get('file')})",
        "",
        "Now, a month:",
        table([row for name in names for row in _plan_rows(name, report["plans"][name])], ["PLAN", "WHAT", "VERSIONS", "BYTES", "USD"]),
    ]
    if len(names) > 1:
        lines.append(f"all plans: {_usd(report['total']['monthly_usd'])} a month")
    lines += ["", *[line for name in names for line in _plan_notes(name, report["plans"][name])]]
    lines += ["", "The next 12 months (USD a month):", _projection(report, names)]
    lines += [f"warning: {message}" for message in report.get("warnings", [])]
    return "\n".join(lines)


def cmd_cost(ctx: Context) -> int:
    reports: CostReports = ctx.system.costs
    names = [plan_named(ctx, ctx.args.plan).name] if ctx.args.plan else ctx.settings.plans.names
    if ctx.args.refresh:
        backup_id = reports.newest_finished()
        report = reports.compute(backup_id, fresh=True)
        if backup_id is not None:
            reports.store(report)
    else:
        report = reports.latest()
    data = plan_view(report, names[0]) if ctx.args.plan else report
    emit(ctx, data, lambda: text(report, names))
    disagree = any(report["plans"][name].get("check", {}).get("disagreements_count") for name in names)
    return EXIT_ATTENTION if disagree else EXIT_OK

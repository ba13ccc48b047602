"""One SNS message per backup, and one per weekly verification job: a subject with the status and totals, a
line per plan, a `status` attribute so subscribers can filter (e.g. an email subscription that only wants
failures). Times in the body are in the organisation's time zone (TIME_ZONE), named once with its offset."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import BackupRecord, backup_time
from chalicelib.errors import NotFound
from chalicelib.localtime import UTC, format_instant, zone_caption
from chalicelib.times import utcnow

logger = logging.getLogger(__name__)

SUBJECT_LIMIT = 100  # SNS rejects longer subjects


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} B"


def subject(record: BackupRecord) -> str:
    totals = record.totals()
    text = (
        f"Backup {record.status}: {len(record.plans)} plan(s), {totals['copied']} copied "
        f"({human_bytes(totals['bytes_copied'])}), {totals['failed']} failed"
    )
    return _subject_text(text)


def _subject_text(text: str) -> str:
    # SNS subjects must be printable ASCII on one line.
    text = text.encode("ascii", "replace").decode("ascii")
    return text[:SUBJECT_LIMIT]


def _money(amount: float) -> str:
    # Cents for real bills; small test and trial buckets would otherwise read 0.00 throughout.
    return f"{amount:.2f}" if amount >= 1 else f"{amount:.4f}"


def cost_line(total: Mapping[str, Any], currency: str = "USD") -> str:
    """One line for the daily alert from a cost report's `total`: bytes and monthly cost per storage class."""
    classes = ", ".join(
        f"{name} {human_bytes(entry['bytes'])} {_money(entry['monthly_usd'])}"
        for name, entry in sorted(total.get("storage", {}).items(), key=lambda item: -item[1]["bytes"])
    )
    return (
        f"Cost ({currency} a month): {classes or 'nothing stored'}; {_money(total.get('monthly_usd', 0))} in all "
        "with manifests, requests and transitions (GET /costs)"
    )


def _times(started: Any, finished: Any, zone: ZoneInfo) -> str:
    """`Started 2026-11-26 21:47:05 PST, finished ... (times in Asia/Manila (PST, UTC+08:00))`."""
    return (
        f"Started {format_instant(started, zone, seconds=True)}, finished {format_instant(finished, zone, seconds=True)} "
        f"(times in {zone_caption(zone, utcnow())})"
    )


def body(record: BackupRecord, zone: ZoneInfo = UTC, cost: str | None = None) -> str:
    lines = [
        f"Backup {record.backup_id} ({record.trigger}{', dry run' if record.dry_run else ''}): {record.status}",
        *([f"Mass deletions allowed for: {', '.join(record.allow_deletions)}"] if record.allow_deletions else []),
        _times(record.started_at, record.finished_at, zone),
        "",
    ]
    width = max((len(name) for name in record.plans), default=0)
    for name, result in record.plans.items():
        line = (
            f"{name.ljust(width)}  {result.status:<9}  copied {result.copied} ({human_bytes(result.bytes_copied)}), "
            f"unchanged {result.unchanged}, deleted {result.deleted}, failed {result.failed}; "
            f"snapshot holds {result.objects} objects"
        )
        if result.deletions_held_back:
            line += f"; {result.deletions_held_back} DELETIONS HELD BACK"
        if result.deletions_allowed:
            line += f"; {result.deletions_allowed} DELETIONS ALLOWED BEYOND THE GUARD (allow_deletions)"
        lines.append(line)
        for message in [f"DRIFT: {finding}" for finding in result.drift] + result.warnings + result.errors:
            lines.append(f"{' ' * width}    - {message}")
    if cost:
        lines += ["", cost]
    return "\n".join(lines) + "\n"


def verification_line(verification: dict[str, Any]) -> str:
    """One line for an alert: what the weekly slice found."""
    if verification.get("status") == "RUNNING":
        return f"Verification: running, {verification.get('checked', 0)} stored versions checked so far"
    if verification.get("ok"):
        return f"Verification: {verification.get('checked', 0)} stored versions checked, all intact"
    parts = [
        f"Verification: {verification.get('checked', 0)} stored versions checked, "
        f"{verification.get('missing_count', 0)} MISSING, {verification.get('damaged_count', 0)} DAMAGED"
    ]
    errors = verification.get("error_count", len(verification.get("errors", [])))
    if errors:
        parts.append(f"{errors} error(s)")
    if verification.get("inventory_problems"):
        parts.append("NO USABLE INVENTORY REPORT (checked by HEAD)")
    return "; ".join(parts)


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _weekday(verification: dict[str, Any]) -> str:
    day = verification.get("weekday")
    return f"weekly slice {day} ({WEEKDAYS[day]})" if isinstance(day, int) and 0 <= day < 7 else "weekly slice"


def _taken_until(verification: dict[str, Any], zone: ZoneInfo) -> str:
    try:
        return format_instant(backup_time(str(verification.get("backup_id"))), zone)
    except NotFound:
        return str(verification.get("backup_id"))


def verification_subject(verification: dict[str, Any]) -> str:
    """`VERIFY FAILED: ...` when anything is missing or damaged, or the job could not check everything."""
    checked = verification.get("checked", 0)
    if verification.get("ok"):
        return _subject_text(f"Verification SUCCEEDED: {checked} stored versions intact, {_weekday(verification)}")
    errors = verification.get("error_count", len(verification.get("errors", [])))
    stale = ", no usable inventory report" if verification.get("inventory_problems") else ""
    return _subject_text(
        f"VERIFY FAILED{stale}: {verification.get('missing_count', 0)} missing, {verification.get('damaged_count', 0)} damaged, "
        f"{errors} error(s); {checked} versions checked, {_weekday(verification)}"
    )


def verification_body(verification: dict[str, Any], zone: ZoneInfo = UTC) -> str:
    """A line per plan, then each missing or damaged version (the first 20 of each) and the errors."""
    lines = [
        f"Verification {verification.get('job_id')} ({verification.get('trigger')}), {_weekday(verification)} of "
        f"the snapshots taken up to {_taken_until(verification, zone)}: {verification.get('status')}",
        f"{_times(verification.get('started_at'), verification.get('finished_at'), zone)}; "
        f"{verification.get('snapshots', 0)} snapshot(s) read",
        "",
    ]
    plans = verification.get("plans") or {}
    width = max((len(name) for name in plans), default=0)
    for name, stats in plans.items():
        lines.append(
            f"{name.ljust(width)}  checked {stats.get('checked', 0)}, missing {stats.get('missing', 0)}, "
            f"damaged {stats.get('damaged', 0)} ({stats.get('snapshots', 0)} snapshots)"
        )
    lines.append("")
    lines.append(verification_line(verification))
    for finding in verification.get("missing", [])[:20] + verification.get("damaged", [])[:20]:
        lines.append(f"    - {finding['problem'].upper()}: {finding['plan']} {finding['source']}/{finding['key']} "
                     f"version {finding['version_id']}: {finding['detail']}")
    for message in verification.get("errors", [])[:5]:
        lines.append(f"    - error: {message}")
    for name, used in (verification.get("inventory") or {}).items():
        if used.get("problem"):
            lines.append(f"    - INVENTORY: {name}: {used['problem']}")
        elif name in (verification.get("waiting") or {}):
            lines.append(f"    - inventory: {name}: {verification['waiting'][name]['message']}")
        else:
            lines.append(f"    - inventory: {name}: checked against {used.get('report')} of {used.get('created')} ({used.get('age_days')} days old)")
    return "\n".join(lines) + "\n"


def publish(sns: Any, topic_arn: str | None, record: BackupRecord, zone: ZoneInfo = UTC, cost: str | None = None) -> bool:
    """Send the alert (`cost`: a last line, the daily backup's `cost_line`). A failure is logged and
    swallowed: an alert must never change a backup's result."""
    if not topic_arn:
        return False
    try:
        sns.publish(
            TopicArn=topic_arn,
            Subject=subject(record),
            Message=body(record, zone, cost),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": record.status},
                "kind": {"DataType": "String", "StringValue": "backup"},
                "backup_id": {"DataType": "String", "StringValue": record.backup_id},
                "trigger": {"DataType": "String", "StringValue": record.trigger},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        logger.error("could not publish the alert for backup %s to %s: %s", record.backup_id, topic_arn, exc)
        return False
    return True


def publish_verification(sns: Any, topic_arn: str | None, verification: dict[str, Any], zone: ZoneInfo = UTC) -> bool:
    """Send the alert of a finished verification job (its record as a dict). A failure is logged and
    swallowed, as for backups; the `kind` attribute tells the two kinds of message apart."""
    if not topic_arn:
        return False
    try:
        sns.publish(
            TopicArn=topic_arn,
            Subject=verification_subject(verification),
            Message=verification_body(verification, zone),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": str(verification.get("status"))},
                "kind": {"DataType": "String", "StringValue": "verification"},
                "job_id": {"DataType": "String", "StringValue": str(verification.get("job_id"))},
                "backup_id": {"DataType": "String", "StringValue": str(verification.get("backup_id"))},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        logger.error("could not publish the alert for verification %s to %s: %s", verification.get("job_id"), topic_arn, exc)
        return False
    return True


def prune_subject(prune: dict[str, Any]) -> str:
    """`Prune SUCCEEDED: 3 snapshots, 120 versions (1.2 GB) removed`; a held prune says so first."""
    plans = prune.get("plans", {})
    removed = sum(len(p.get("removing", [])) for p in plans.values() if p.get("status") != "HELD")
    key = "would_delete" if prune.get("dry_run") else "deleted"
    versions = sum(p.get(key, {}).get("versions", 0) for p in plans.values())
    size = sum(p.get(key, {}).get("bytes", 0) for p in plans.values())
    held = [name for name, p in plans.items() if p.get("status") == "HELD"]
    verb = "would be removed (dry run)" if prune.get("dry_run") else "removed"
    text = f"Prune {prune.get('status')}: {removed} snapshots, {versions} versions ({human_bytes(size)}) {verb}"
    if held:
        text = f"Prune HELD for {', '.join(held)}: " + text.split(": ", 1)[1]
    return _subject_text(text)


def prune_body(prune: dict[str, Any]) -> str:
    lines = [
        f"Prune {prune.get('prune_id')} ({prune.get('trigger')}{', dry run' if prune.get('dry_run') else ''}): {prune.get('status')}",
        *([f"Allowed past the prune guard: {', '.join(prune['allow_large'])}"] if prune.get("allow_large") else []),
        f"Started {prune.get('started_at')}, finished {prune.get('finished_at')}",
        "",
    ]
    key = "would_delete" if prune.get("dry_run") else "deleted"
    for name, plan in prune.get("plans", {}).items():
        kept = sum(1 for s in plan.get("snapshots", []) if s.get("kept"))
        tally = plan.get(key, {})
        early = plan.get("would_early_deletion" if prune.get("dry_run") else "early_deletion", {})
        dry = bool(prune.get("dry_run"))
        line = (
            f"{name}  {plan.get('status')}: {kept} snapshots kept ({plan.get('policy')}), {len(plan.get('removing', []))} "
            f"{'to remove' if dry else 'removed'}; {tally.get('versions', 0)} versions ({human_bytes(tally.get('bytes', 0))}) "
            f"{'would be deleted' if dry else 'deleted'}"
        )
        if plan.get("kept_young"):
            # Versions only removed snapshots name, younger than the grace period: a later prune takes them.
            line += f"; {plan['kept_young']} kept until the grace period has passed"
        if plan.get("object_locked"):
            line += f"; {plan['object_locked']} held by Object Lock"
        if early.get("usd"):
            line += f"; early-deletion charge ${early['usd']:.2f}"
        lines.append(line)
        for message in plan.get("warnings", []) + plan.get("errors", []):
            lines.append(f"    - {message}")
    return "\n".join(lines) + "\n"


def publish_prune(sns: Any, topic_arn: str | None, prune: dict[str, Any]) -> bool:
    """Send the alert of a finished prune (its record as a dict); a held prune has the status HELD, which a
    subscription filtering on failures and warnings can take. Failures to publish are logged, as for backups."""
    if not topic_arn:
        return False
    try:
        sns.publish(
            TopicArn=topic_arn,
            Subject=prune_subject(prune),
            Message=prune_body(prune),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": str(prune.get("status"))},
                "kind": {"DataType": "String", "StringValue": "prune"},
                "prune_id": {"DataType": "String", "StringValue": str(prune.get("prune_id"))},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        logger.error("could not publish the alert for prune %s to %s: %s", prune.get("prune_id"), topic_arn, exc)
        return False
    return True

"""One SNS message per backup: a subject with the status and totals, a line per plan, a `status` attribute
so subscribers can filter (e.g. an email subscription that only wants failures)."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import BackupRecord

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
    if record.verification is not None and not record.verification.get("ok", True):
        text = "VERIFY FAILED. " + text
    # SNS subjects must be printable ASCII on one line.
    text = text.encode("ascii", "replace").decode("ascii")
    return text[:SUBJECT_LIMIT]


def body(record: BackupRecord) -> str:
    lines = [
        f"Backup {record.backup_id} ({record.trigger}{', dry run' if record.dry_run else ''}): {record.status}",
        *([f"Mass deletions allowed for: {', '.join(record.allow_deletions)}"] if record.allow_deletions else []),
        f"Started {record.started_at}, finished {record.finished_at}",
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
    if record.verification is not None:
        lines.append("")
        lines.append(verification_line(record.verification))
        for finding in record.verification.get("missing", [])[:20] + record.verification.get("damaged", [])[:20]:
            lines.append(f"    - {finding['problem'].upper()}: {finding['plan']} {finding['source']}/{finding['key']} "
                         f"version {finding['version_id']}: {finding['detail']}")
        for message in record.verification.get("errors", [])[:5]:
            lines.append(f"    - error: {message}")
    return "\n".join(lines) + "\n"


def verification_line(verification: dict[str, Any]) -> str:
    """One line for an alert: what the weekly slice found."""
    if verification.get("ok"):
        return f"Verification: {verification.get('checked', 0)} stored versions checked, all intact"
    parts = [
        f"Verification: {verification.get('checked', 0)} stored versions checked, "
        f"{verification.get('missing_count', 0)} MISSING, {verification.get('damaged_count', 0)} DAMAGED"
    ]
    if verification.get("errors"):
        parts.append(f"{len(verification['errors'])} error(s)")
    return "; ".join(parts)


def publish(sns: Any, topic_arn: str | None, record: BackupRecord) -> bool:
    """Send the alert. A failure is logged and swallowed: an alert must never change a backup's result."""
    if not topic_arn:
        return False
    try:
        sns.publish(
            TopicArn=topic_arn,
            Subject=subject(record),
            Message=body(record),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": record.status},
                "backup_id": {"DataType": "String", "StringValue": record.backup_id},
                "trigger": {"DataType": "String", "StringValue": record.trigger},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        logger.error("could not publish the alert for backup %s to %s: %s", record.backup_id, topic_arn, exc)
        return False
    return True

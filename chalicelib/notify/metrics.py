"""The heartbeat of the backups: a CloudWatch metric saying when every plan last had a successful backup.

A CloudWatch alarm (see the deploy template) fires when no such datapoint has arrived for 26 hours, with
missing data treated as breaching: a schedule that silently stops, a function that can't start, backups that
keep failing, or a heartbeat that stops, all look the same to it, and all get reported.

The heartbeat is its own function (`heartbeat` in app.py, hourly, its own role), never a backup's: the roles
that write backups cannot publish the metric, so whoever holds their keys cannot keep the alarm quiet by
publishing it. It reads only sealed records (`meta/sealed/backups/`, create-only, written once when a backup
ends), never the working copies anyone with the writer's keys may rewrite, and for each plan takes the newest
real (not dry-run) backup in which the plan SUCCEEDED; the datapoint is dated when the oldest of those ended,
so that the alarm counts its 26 hours from there, whenever the hourly heartbeat runs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from chalicelib.catalog.records import BackupStatus, RecordStore, backup_id_of_key, backup_time, sealed_key
from chalicelib.errors import NotFound, Tampered
from chalicelib.layout import SEALED_RECORDS_PREFIX
from chalicelib.plans import PlanSet
from chalicelib.times import parse_iso

logger = logging.getLogger(__name__)

NAMESPACE_PREFIX = "OrgBackup"
METRIC = "BackupsSucceeded"
# The catalog bucket is unique to a deployment, so it tells the stages' metrics apart without extra config.
DIMENSION = "CatalogBucket"
# How far back the heartbeat reads sealed records: beyond the alarm's 26 hours a success no longer counts.
LOOKBACK = timedelta(hours=48)


def namespace(catalog_bucket: str) -> str:
    """The stage's own namespace, `OrgBackup/<catalog bucket>`.

    PutMetricData has no resource-level permissions: the `cloudwatch:namespace` condition is the only scope
    a policy can give it. In a namespace shared by every stage, any role allowed to publish it (another
    stage's, or another application's) could keep this stage's 26-hour alarm quiet; in this one, only the
    stage's heartbeat function is allowed to.
    """
    return f"{NAMESPACE_PREFIX}/{catalog_bucket}"


def last_successes(s3: Any, plans: PlanSet, now: datetime) -> dict[str, datetime]:
    """Per plan, when the newest sealed, real backup in which it SUCCEEDED ended (plans without one in the
    lookback are absent). One listing of the sealed records, newest first, and a GET for each read."""
    records = RecordStore(s3, plans.catalog_bucket)
    wanted = {plan.name for plan in plans.plans}
    found: dict[str, datetime] = {}
    listed = s3.list_objects_v2(Bucket=plans.catalog_bucket, Prefix=SEALED_RECORDS_PREFIX, MaxKeys=1000)
    for item in listed.get("Contents", []):
        try:
            backup_id = backup_id_of_key(item["Key"])
            if sealed_key(backup_id) != item["Key"]:
                continue  # not where a sealed record is written: its place in the listing means nothing
            if now - backup_time(backup_id) > LOOKBACK:
                break
            record = records.get_sealed(backup_id)
        except (IndexError, NotFound):
            continue  # not a record's key
        except Tampered as exc:
            # Told where the record is read for the operators (GET /backups); here it only does not count.
            logger.warning("the heartbeat does not count backup %s: %s", item["Key"], exc)
            continue
        if record is None or record.dry_run or not record.finished_at:
            continue
        for name, result in record.plans.items():
            if name in wanted and name not in found and result.status == BackupStatus.SUCCEEDED:
                found[name] = parse_iso(record.finished_at)
        if len(found) == len(wanted):
            break
    return found


def beat(cloudwatch: Any, s3: Any, plans: PlanSet, now: datetime) -> datetime | None:
    """Publish the heartbeat when every plan has a success in the lookback, dated when the oldest of the
    plans' newest successes ended; returns that moment (None: nothing published)."""
    found = last_successes(s3, plans, now)
    if not plans.plans or len(found) < len(plans.plans):
        missing = sorted({plan.name for plan in plans.plans} - set(found))
        logger.warning("no heartbeat: no successful backup in the last %s of %s", LOOKBACK, ", ".join(missing))
        return None
    moment = min(found.values())
    cloudwatch.put_metric_data(
        Namespace=namespace(plans.catalog_bucket),
        MetricData=[
            {
                "MetricName": METRIC,
                "Dimensions": [{"Name": DIMENSION, "Value": plans.catalog_bucket}],
                "Timestamp": moment,
                "Value": 1.0,
                "Unit": "Count",
            }
        ],
    )
    return moment

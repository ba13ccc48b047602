"""The heartbeat of the backups: a CloudWatch metric published when a backup fully succeeds.

A CloudWatch alarm (see the deploy template) fires when no such datapoint has arrived for 26 hours, with
missing data treated as breaching: a schedule that silently stops, a function that can't start, or
backups that keep failing all look the same to it, and all get reported.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.catalog.records import BackupStatus, BackupRecord

logger = logging.getLogger(__name__)

NAMESPACE_PREFIX = "OrgBackup"
METRIC = "BackupsSucceeded"
# The catalog bucket is unique to a deployment, so it tells the stages' metrics apart without extra config.
DIMENSION = "CatalogBucket"


def namespace(catalog_bucket: str) -> str:
    """The stage's own namespace, `OrgBackup/<catalog bucket>`.

    PutMetricData has no resource-level permissions: the `cloudwatch:namespace` condition is the only scope
    a policy can give it. In a namespace shared by every stage, any role allowed to publish it (another
    stage's, or another application's) could keep this stage's 26-hour alarm quiet; in this one, only the
    stage's backup functions are allowed to.
    """
    return f"{NAMESPACE_PREFIX}/{catalog_bucket}"


def report(cloudwatch: Any, catalog_bucket: str, record: BackupRecord) -> bool:
    """Count a fully successful, real backup. A failure to publish is logged and never changes the backup."""
    if record.status != BackupStatus.SUCCEEDED or record.dry_run:
        return False
    try:
        cloudwatch.put_metric_data(
            Namespace=namespace(catalog_bucket),
            MetricData=[
                {
                    "MetricName": METRIC,
                    "Dimensions": [{"Name": DIMENSION, "Value": catalog_bucket}],
                    "Value": 1.0,
                    "Unit": "Count",
                }
            ],
        )
    except (ClientError, BotoCoreError) as exc:
        logger.error("could not publish the %s metric for backup %s: %s", METRIC, record.backup_id, exc)
        return False
    return True

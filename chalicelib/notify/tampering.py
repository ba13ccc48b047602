"""Tampering, told once: when stored metadata turns out unreadable, inconsistent, or changed after it was
written (a backup record, a manifest), the operators hear of it by SNS, once per finding, however many
requests meet it.

Each finding is remembered by a create-only marker, `meta/tampering/<sha256 of the finding>.json` in the
catalog bucket: the request that creates the marker publishes the alert; every later one finds it there.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import s3docs
from chalicelib.errors import AlreadyExists
from chalicelib.layout import TAMPERING_PREFIX
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

SUBJECT = "TAMPERING SUSPECTED in the backups"


class TamperingAlerts:
    def __init__(self, s3: Any, catalog_bucket: str, sns: Any, topic_arn: str | None) -> None:
        self.s3 = s3
        self.catalog_bucket = catalog_bucket
        self.sns = sns
        self.topic_arn = topic_arn

    def report(self, finding: str) -> bool:
        """Log the finding and alert on its first sighting. Never raises: reporting must not turn a clear
        answer (a 409) into a 500. Returns whether an alert went out."""
        logger.error("tampering suspected: %s", finding)
        digest = hashlib.sha256(finding.encode("utf-8")).hexdigest()
        try:
            s3docs.put_new(
                self.s3,
                Bucket=self.catalog_bucket,
                Key=f"{TAMPERING_PREFIX}{digest}.json",
                Body=json.dumps({"finding": finding, "seen_at": isoformat(utcnow())}).encode("utf-8"),
                ContentType="application/json",
            )
        except AlreadyExists:
            return False
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not remember the finding (alerting anyway): %s", exc)
        if not self.topic_arn:
            return False
        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=SUBJECT,
                Message=f"{finding}\n\nNothing was changed or trusted because of it. See the audit trail of the "
                "backup buckets' meta/ prefixes for who wrote what, and the security model (docs/security.md, Tampering).\n",
                MessageAttributes={
                    "status": {"DataType": "String", "StringValue": "TAMPERING"},
                    "kind": {"DataType": "String", "StringValue": "tampering"},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not publish the tampering alert: %s", exc)
            return False
        return True

"""Tampering, told once: when stored metadata turns out unreadable, inconsistent, or changed after it was
written (a backup record, a manifest), the operators hear of it by SNS, once per finding, however many
requests meet it.

The functions that find tampering are the ones an attacker may hold the keys of, so none of them decides
whether an alert goes out. Each hands the finding to the notifier (`notifier` in app.py: an asynchronous
invocation, its own role), the one function that may write the findings' markers,
`meta/tampering/<sha256 of the finding>.json` in the catalog bucket. The notifier publishes the alert first
and writes the marker only once SNS took it, create-only; a finding whose marker is there was alerted before.
So a marker exists only for an alert that went out: whoever holds another role's keys can invoke the notifier
with findings of their own (more alerts), never keep one from going out (fewer). In-process (the `inline` and
`thread` worker modes, the command line) the same steps run where the finding is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import s3docs
from chalicelib.errors import AlreadyExists
from chalicelib.jobs.dispatch import Invoker, worker_beside, worker_invoker
from chalicelib.layout import TAMPERING_PREFIX
from chalicelib.times import isoformat, utcnow

logger = logging.getLogger(__name__)

SUBJECT = "TAMPERING SUSPECTED in the backups"
NOTIFIER = "notifier"
# The longest finding the notifier takes (a finding names a backup, a plan and a key: well under this);
# longer ones are cut, so that an invocation with noise cannot make the message too long for SNS.
MAX_FINDING = 8_000


def marker_key(finding: str) -> str:
    return f"{TAMPERING_PREFIX}{hashlib.sha256(finding.encode('utf-8')).hexdigest()}.json"


class TamperingAlerts:
    """`notifier`: how a finding reaches the notifier function (None: its steps run here, `notify`)."""

    def __init__(self, s3: Any, catalog_bucket: str, sns: Any, topic_arn: str | None, notifier: Invoker | None = None) -> None:
        self.s3 = s3
        self.catalog_bucket = catalog_bucket
        self.sns = sns
        self.topic_arn = topic_arn
        self.notifier = notifier

    @classmethod
    def from_settings(cls, settings: Any, clients: Any) -> TamperingAlerts:
        """By the worker mode: in `lambda`, the deployed notifier beside the backup worker; else in-process."""
        mode = settings.worker_mode
        function = worker_beside(settings.worker_function, NOTIFIER) if mode == "lambda" else ""
        return cls(
            clients.s3, settings.plans.catalog_bucket, clients.sns, settings.topic_arn,
            worker_invoker(mode, clients.lambda_, function),
        )

    def report(self, finding: str) -> bool:
        """Log the finding and have it alerted on its first sighting. Never raises: reporting must not turn a
        clear answer (a 409) into a 500. Returns whether it was handed on (or, in-process, alerted)."""
        logger.error("tampering suspected: %s", finding)
        try:
            if self.notifier is not None:
                self.notifier({"finding": finding})
                return True
            return self.notify(finding)
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not have the tampering finding alerted: %s", exc)
            return False

    def notify(self, finding: str) -> bool:
        """The notifier's work: alert the finding unless its marker says it was alerted before, then write the
        marker. True when an alert went out. A failure to publish raises (the notifier's invocation is then
        retried by Lambda) and leaves no marker, so the next sighting alerts."""
        finding = finding[:MAX_FINDING]
        key = marker_key(finding)
        if not self.topic_arn or s3docs.get_bytes(self.s3, self.catalog_bucket, key) is not None:
            return False
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
        try:
            s3docs.put_new(
                self.s3,
                Bucket=self.catalog_bucket,
                Key=key,
                Body=json.dumps({"finding": finding, "seen_at": isoformat(utcnow())}).encode("utf-8"),
                ContentType="application/json",
            )
        except AlreadyExists:
            pass  # a sighting at the same moment alerted too: one alert more, none fewer
        except (ClientError, BotoCoreError) as exc:
            logger.error("the tampering alert went out, but its marker could not be written: %s", exc)
        return True

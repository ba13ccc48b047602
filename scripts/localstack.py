#!/usr/bin/env python3
"""The whole backup system on one machine, with no AWS account: `make run`.

Starts moto's server (the AWS emulator) in this process, creates the three backup buckets exactly as
`chalicelib.deploy.provision` would in AWS, seeds sources that look like production (a documents bucket,
a photos bucket of real PNG images, an orders table, the alert topic with a queue subscribed), then serves
the API with `chalice local` and the operator's dashboard (`org-backup dashboard`), and prints every backup
alert as it arrives. Ctrl-C stops everything.

When the plans (PLANS_FILE, e.g. `make run PLANS_FILE=scripts/plans-with-vault.json`) give a plan an `offsite`
vault, the emulator holds it in a second account and region, provisioned as `make provision` would with a role
assumed there (VAULT_ADMIN_ROLE), and S3 Replication from the backup buckets runs in the emulator: moto's server
stores replication configurations but never replicates, so the replication double of the tests
(tests/s3_replication.py) replicates each new version as the request that wrote it returns. It departs from S3
as its docstring says: synchronous (S3: most within 15 minutes), no IAM evaluated, no event notifications.

Ports come from API_PORT (default 8000), EMULATOR_PORT (default 5000) and DASHBOARD_PORT (default 8001), or
--api-port/--emulator-port/--dashboard-port. Port 0 lets each server bind any free port; the banner names the
ports they got (scripts and tests use it: a port picked by one process and bound later by another can be
taken in between).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from moto.server import ThreadedMotoServer
except ImportError as exc:  # run outside the project's virtualenv
    sys.exit(f"localstack: {exc.name} is not installed here; start the local stack with `make run`")

from chalicelib.plans import PlanSet  # noqa: E402
from chalicelib.plans_file import load_plans  # noqa: E402

logger = logging.getLogger("localstack")

HOST = "127.0.0.1"
REGION = "us-east-1"
# The emulator accepts any credentials; fixed dummy ones make sure nothing can reach a real account.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
ALERT_QUEUE = "org-backup-alerts-terminal"
# The role of a vault's account an administrator assumes (OFFSITE_ROLE_ARN): the emulator lets any caller
# assume any role, and knows the account from the credentials it hands out.
VAULT_ADMIN_ROLE = "vault-admin"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class StackError(Exception):
    """Something the user can fix; printed without a traceback."""


# --- configuration -------------------------------------------------------------------------------------


def stage_environment(stage: str, project_dir: Path = ROOT) -> dict[str, str]:
    """The stage's environment exactly as `chalice local` builds it: global variables, then the stage's."""
    config_path = project_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    stages = config.get("stages", {})
    if stage not in stages:
        raise StackError(f"{config_path}: no stage {stage!r} (stages: {', '.join(stages)})")
    env = dict(config.get("environment_variables", {}))
    env.update(stages[stage].get("environment_variables", {}))
    return env


def chosen_plans_file(env: dict[str, str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The stage's environment with the plans file PLANS_FILE names (`make run PLANS_FILE=...`), as an absolute
    path: `chalice local`, the dashboard and the operator's commands read it from their environment, which the
    stage leaves alone (it sets no PLANS_FILE)."""
    chosen = environ.get("PLANS_FILE")
    if not chosen or "PLANS_FILE" in env:
        return env
    path = Path(chosen).resolve()
    if not path.is_file():
        raise StackError(f"PLANS_FILE={chosen!r}: no such file")
    return {**env, "PLANS_FILE": str(path)}


def port_from(value: str | None, variable: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        port = int(value)
    except ValueError:
        raise StackError(f"{variable}={value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise StackError(f"{variable}={port} is not a port number (1-65535, or 0 for any free port)")
    return port


def check_port_free(port: int, variable: str) -> None:
    """Fail early and clearly: moto's server would otherwise wait forever for a socket it cannot bind."""
    if port == 0:
        return  # the server binds whatever port is free
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        listening = probe.connect_ex((HOST, port)) == 0
    if not listening:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Both servers set SO_REUSEADDR, so a port in TIME_WAIT after the last run is still usable.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
                return
            except OSError:
                pass
    raise StackError(
        f"port {port} on {HOST} is already in use, so the local stack cannot use it for {variable}. "
        f"Stop whatever is listening there, or pick another port: make run {variable}={port + 1}"
    )


# --- emulator fidelity ---------------------------------------------------------------------------------


def hold_the_emulator_to_s3() -> None:
    """Make the emulator answer as S3 does where moto does not by itself, with the tests' patches:

    - the backup buckets' TLS-only policy statement (tests/moto_tls.py): moto cannot evaluate `Deny ... Bool
      aws:SecureTransport false` and would deny every object request. The emulator stands in for S3's HTTPS
      endpoint (it listens on loopback only), so its requests are evaluated as TLS requests; the statement
      itself stays in the bucket, where drift checks look for it;
    - the rest of tests/moto_strict.py: among them, a replication configuration read back as it was written,
      without which every backup of a plan with a vault would report its rules missing.
    """
    import tests.moto_strict  # noqa: F401  (patches moto's S3 responses on import)
    import tests.moto_tls  # noqa: F401  (patches moto's bucket policy evaluation on import)


def replicating(plans: PlanSet) -> contextlib.AbstractContextManager[Any]:
    """S3 Replication in this process's emulator while entered, when a plan has a vault (see the docstring)."""
    if not any(plan.offsite for plan in plans.plans):
        return contextlib.nullcontext()
    from tests.s3_replication import Replication

    return Replication()


# --- seed data -----------------------------------------------------------------------------------------


def png(width: int, height: int, pixel: Any) -> bytes:
    """A valid RGB PNG; `pixel(x, y)` returns (r, g, b)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows.extend(pixel(x, y))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _gradient(index: int, width: int, height: int) -> Any:
    start = ((index * 53) % 256, (index * 97 + 40) % 256, (index * 151 + 90) % 256)
    end = (255 - start[0], (start[1] + 128) % 256, 255 - start[2])

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        t = (x / max(1, width - 1) + y / max(1, height - 1)) / 2
        return tuple(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))  # type: ignore[return-value]

    return pixel


PHOTO_KEYS = [
    "2025/12/IMG_0001.png",
    "2025/12/IMG_0002.png",
    "2025/12/IMG_0003.png",
    "2026/01/New Year party/IMG_0104.png",
    "2026/01/New Year party/IMG_0105.png",
    "2026/01/New Year party/IMG_0106.png",
    "2026/03/Team offsite – Lisbon/DSC_0042.png",
    "2026/03/Team offsite – Lisbon/DSC_0043.png",
    "2026/03/Team offsite – Lisbon/DSC_0044 (edited).png",
    "2026/05/Été au bureau/photo 1.png",
    "2026/05/Été au bureau/photo 2.png",
    "2026/06/product shots/widget+case.png",
    "2026/06/product shots/widget+stand.png",
    "2026/06/product shots/50% off banner.png",
    "2026/07/東京/IMG_7001.png",
    "2026/07/東京/IMG_7002.png",
    "headshots/anna.png",
    "headshots/bjørn.png",
    "headshots/chloé.png",
    "logo.png",
]


def photos() -> dict[str, bytes]:
    images = {}
    for index, key in enumerate(PHOTO_KEYS):
        width, height = 48 + (index % 5) * 16, 32 + (index % 4) * 16
        images[key] = png(width, height, _gradient(index, width, height))
    return images


_PEOPLE = ["Anna Schmidt", "Bjørn Larsen", "Chloé Martin", "Diego Fernández", "Emeka Okafor", "Fatima Zahra",
           "Grace O'Neill", "Hiro Tanaka", "Ines Costa", "Jonas Weber"]
_PRODUCTS = [("WID-100", "Widget", "19.90"), ("WID-200", "Widget Pro", "49.00"), ("CAS-010", "Widget case", "9.50"),
             ("STD-001", "Desk stand", "24.00"), ("CAB-USB", "USB-C cable 2 m", "7.99"),
             ("SVC-1Y", "Extended warranty, 1 year", "29.00")]
_CITIES = [("Berlin", "DE", "10115"), ("Lisboa", "PT", "1100-148"), ("Paris", "FR", "75011"),
           ("Oslo", "NO", "0150"), ("Dublin", "IE", "D02 X285"), ("Kraków", "PL", "31-042")]
_STATUSES = ["placed", "paid", "paid", "shipped", "shipped", "delivered", "delivered", "delivered", "cancelled",
             "refunded"]


def documents() -> dict[str, bytes]:
    """A few dozen office files: notes, policies, CSV exports, JSON configs, in folders, with awkward names."""
    rng = random.Random(2026)
    files: dict[str, str] = {
        "README.txt": "Shared drive of Acme Widgets GmbH.\nEverything here is backed up every night.\n",
        "handbook/Employee Handbook.md": "# Employee handbook\n\n## Working hours\n\nCore hours are 10:00-15:00.\n"
        "\n## Holidays\n\n30 days a year, plus public holidays.\n",
        "handbook/Travel policy.md": "# Travel policy\n\nBook trains for trips under 6 hours.\n",
        "handbook/Code of conduct.md": "# Code of conduct\n\nBe kind. Assume good intent.\n",
        "legal/contracts/Müller GmbH – Rahmenvertrag.txt": "Rahmenvertrag zwischen Acme Widgets GmbH und "
        "Müller GmbH.\n§1 Gegenstand: Lieferung von Widgets.\n",
        "legal/contracts/Smith & Sons - supply agreement.txt": "Supply agreement, effective 2026-01-01.\n",
        "legal/NDA template.md": "# Mutual non-disclosure agreement\n\nThe parties agree...\n",
        "engineering/C++ + Rust interop notes.md": "# C++ + Rust\n\nUse cxx for the bridge; keep ABI at the edge.\n",
        "engineering/design/backup-plan v2.md": "# Backup plan v2\n\nDaily, incremental, versioned.\n",
        "engineering/config/app.json": json.dumps({"feature_flags": {"new_checkout": True, "dark_mode": False},
                                                    "max_upload_mb": 25}, indent=2) + "\n",
        "engineering/config/regions.json": json.dumps(["eu-central-1", "eu-west-1", "us-east-1"], indent=2) + "\n",
        "marketing/100% satisfaction campaign.md": "# 100% satisfaction\n\nMoney back within 30 days.\n",
        "marketing/Q3 launch – plan.md": "# Q3 launch\n\n- teaser\n- launch event\n- follow-up\n",
        "marketing/slogans.txt": "Widgets that work.\nWork that widgets.\n",
        "minutes/2026-01-12 board meeting.md": "# Board meeting\n\nAttendees: all.\nDecisions: budget approved.\n",
        "minutes/2026-02-09 board meeting.md": "# Board meeting\n\nAttendees: all but one.\n",
        "minutes/2026-03-16 all-hands.md": "# All-hands\n\nNew office opens in May.\n",
        "minutes/議事録 2026-04.txt": "東京オフィス開設について。\n",
        "hr/org chart.csv": "name,team,manager\n" + "".join(
            f"{person},{team},{_PEOPLE[0] if i else ''}\n"
            for i, (person, team) in enumerate(zip(_PEOPLE, ["exec", "sales", "ops", "eng", "eng", "finance",
                                                               "support", "eng", "sales", "ops"], strict=True))),
        "hr/empty-placeholder.txt": "",  # zero bytes on purpose: empty files must survive a backup too
        "tmp/~lock.Budget 2026.xlsx#": "locked by Anna\n",
    }
    for month in range(1, 7):
        lines = ["date,category,description,amount_eur"]
        for day in range(1, 21):
            category = rng.choice(["travel", "software", "office", "hardware", "training"])
            lines.append(f"2026-{month:02d}-{day:02d},{category},{category} expense #{day},{rng.randint(5, 900)}.{rng.randint(0, 99):02d}")
        files[f"finance/2026/expenses {month:02d}.csv"] = "\n".join(lines) + "\n"
    for number in range(1, 11):
        person = _PEOPLE[number % len(_PEOPLE)]
        sku, name, price = _PRODUCTS[number % len(_PRODUCTS)]
        invoice = {"invoice": f"INV-2026-{number:04d}", "customer": person, "currency": "EUR",
                   "lines": [{"sku": sku, "description": name, "quantity": number % 3 + 1, "unit_price": price}]}
        files[f"finance/2026/invoices/INV-2026-{number:04d}.json"] = json.dumps(invoice, ensure_ascii=False, indent=2) + "\n"
    files["finance/2026/budget+forecast.csv"] = "quarter,budget,forecast\nQ1,120000,118500\nQ2,125000,131200\n"
    return {key: text.encode("utf-8") for key, text in files.items()}


def orders(count: int = 300) -> Iterator[dict[str, Any]]:
    """Order items in DynamoDB JSON, deterministic so seeding twice writes the same items."""
    rng = random.Random(42)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for number in range(1, count + 1):
        person = rng.choice(_PEOPLE)
        city, country, postcode = rng.choice(_CITIES)
        lines = []
        total = Decimal("0")
        for sku, name, price in rng.sample(_PRODUCTS, rng.randint(1, 3)):
            quantity = rng.randint(1, 4)
            total += Decimal(price) * quantity
            lines.append({"M": {"sku": {"S": sku}, "name": {"S": name}, "quantity": {"N": str(quantity)},
                                "unit_price": {"N": price}}})
        created = start + timedelta(minutes=rng.randint(0, 60 * 24 * 180))
        item: dict[str, Any] = {
            "order_id": {"S": f"ORD-2026-{number:06d}"},
            "customer_id": {"S": f"CUST-{_PEOPLE.index(person) + 1:04d}"},
            "customer_name": {"S": person},
            "email": {"S": person.split()[0].lower().encode("ascii", "ignore").decode() + "@example.com"},
            "status": {"S": rng.choice(_STATUSES)},
            "created_at": {"S": created.isoformat().replace("+00:00", "Z")},
            "currency": {"S": "EUR"},
            "total": {"N": str(total)},
            "lines": {"L": lines},
            "shipping_address": {"M": {"street": {"S": f"{rng.randint(1, 120)} Hauptstraße"},
                                       "city": {"S": city}, "postcode": {"S": postcode},
                                       "country": {"S": country}}},
            "gift": {"BOOL": rng.random() < 0.1},
        }
        if rng.random() < 0.3:
            item["tags"] = {"SS": sorted(rng.sample(["express", "b2b", "repeat", "fragile"], 2))}
        yield item


# --- provisioning and seeding --------------------------------------------------------------------------


@dataclass
class Emulator:
    """Clients for the emulator, all with dummy credentials."""

    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=REGION,
        ).client(service, endpoint_url=self.endpoint)

    def assumed_client(self, service: str, role_arn: str, region: str) -> Any:
        """A client of the account `role_arn` belongs to, in `region`: the emulator's STS hands out credentials
        that it maps to that account, as it keeps each account's state apart."""
        credentials = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="local-stack")["Credentials"]
        return boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], region_name=region,
        ).client(service, endpoint_url=self.endpoint)


def vault_role_arn(plans: PlanSet) -> str | None:
    """The role of the vaults' account that the local stack (and an operator's OFFSITE_ROLE_ARN) assumes."""
    vaults = [plan.offsite for plan in plans.plans if plan.offsite is not None]
    return f"arn:aws:iam::{vaults[0].account}:role/{VAULT_ADMIN_ROLE}" if vaults else None


def provision_vaults(emulator: Emulator, plans: PlanSet, account: str, stage: str = "local") -> None:
    """Each plan's vault with its account's credentials, then the replication into it with the stage's: what
    `make provision` does in AWS (`chalicelib.deploy.provision.provision_offsite`). Idempotent."""
    from chalicelib.deploy.offsite import provision_replication, replication_role_arn, restore_reader_arns
    from chalicelib.stages import app_name
    from chalicelib.deploy.vault_bucket import provision_vault
    from chalicelib.plans_file import check_offsite_apart

    role_arn = vault_role_arn(plans)
    if role_arn is None:
        return
    check_offsite_apart(plans, account, REGION)
    iam, s3 = emulator.client("iam"), emulator.client("s3")
    vault_s3: Any = None
    for plan in plans.plans:
        if plan.offsite is None:
            continue
        vault_s3 = vault_s3 or emulator.assumed_client("s3", role_arn, plan.offsite.region)
        changes = provision_vault(vault_s3, plan, replication_role_arn(plan, account), restore_reader_arns(account, app_name(), stage))
        changes += provision_replication(iam, s3, plan, account)
        logger.debug("vault %s: %s", plan.offsite.bucket, ", ".join(changes) or "already provisioned")
        logger.info("vault         %-32s account %s, %s: replicas in %s, locked %d days", plan.offsite.bucket,
                    plan.offsite.account, plan.offsite.region, plan.offsite.storage_class, plan.offsite.object_lock_days)


def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=bucket)


def put_objects(s3: Any, bucket: str, objects: Mapping[str, bytes], content_type: str | None = None) -> None:
    types = {".md": "text/markdown; charset=utf-8", ".csv": "text/csv; charset=utf-8",
             ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".png": "image/png"}
    for key, body in objects.items():
        kind = content_type or types.get(Path(key).suffix, "application/octet-stream")
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)


def ensure_table(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    try:
        dynamodb.describe_table(TableName=table)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    for start in range(0, len(items), 25):  # BatchWriteItem takes at most 25 items
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def ensure_alert_queue(sns: Any, sqs: Any, topic_arn: str) -> str:
    """The stage's topic, with one queue subscribed (once, however often this runs). Returns the queue URL."""
    created = sns.create_topic(Name=topic_arn.rsplit(":", 1)[-1])["TopicArn"]
    if created != topic_arn:
        raise StackError(
            f"ALERT_TOPIC_ARN is {topic_arn} but the emulator made {created}; the local stage's topic must be in "
            f"region {REGION}, account 123456789012 (the emulator's)"
        )
    queue_url = sqs.create_queue(QueueName=ALERT_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # In AWS a queue accepts SNS messages only if its policy allows the topic; the emulator doesn't check.
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]}
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    subscribed = any(
        subscription["Endpoint"] == queue_arn
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
        for subscription in page["Subscriptions"]
    )
    if not subscribed:
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return queue_url


@dataclass
class Seeded:
    plans: PlanSet
    queue_url: str
    documents: int
    photos: int
    orders: int


def seed(s3: Any, dynamodb: Any, sns: Any, sqs: Any, env: Mapping[str, str]) -> Seeded:
    """Backup buckets as an administrator provisions them, and production-like sources. Idempotent."""
    from chalicelib.deploy.inventory_bucket import REPORT_EXPIRATION_DAYS, provision_inventory
    from chalicelib.deploy.provision import provision

    plans = load_plans(env)
    for plan in plans.plans:
        changes = provision(s3, plan)
        logger.debug("bucket %s: %s", plan.bucket, ", ".join(changes) or "already provisioned")
        tiers = ", ".join(f"{t.storage_class} after {t.days} d" for t in plan.lifecycle.transitions) or "none"
        logger.info("backup bucket %-32s versioned; data/ moves to %s", plan.bucket, tiers)
    if plans.inventory is not None:
        # The emulator's account, which the stage's alert topic names.
        changes = provision_inventory(s3, plans, env["ALERT_TOPIC_ARN"].split(":")[4])
        logger.debug("inventory bucket %s: %s", plans.inventory.bucket, ", ".join(changes) or "already provisioned")
        logger.info("inventory bucket %-29s %s reports of every version, kept %d days", plans.inventory.bucket, plans.inventory.frequency, REPORT_EXPIRATION_DAYS)

    docs, images, items = documents(), photos(), list(orders())
    ensure_bucket(s3, env["DOCUMENTS_SOURCE_BUCKET"])
    put_objects(s3, env["DOCUMENTS_SOURCE_BUCKET"], docs)
    ensure_bucket(s3, env["PHOTOS_SOURCE_BUCKET"])
    put_objects(s3, env["PHOTOS_SOURCE_BUCKET"], images)
    ensure_table(dynamodb, env["DATABASE_TABLE"], items)
    queue_url = ensure_alert_queue(sns, sqs, env["ALERT_TOPIC_ARN"])
    # Restores write only to the buckets the stage allows; they exist beforehand, as in AWS, and are versioned
    # as the deploy template makes them (a restore that overwrites a key leaves what was there).
    restore_buckets = sorted({name.strip() for name in env.get("RESTORE_BUCKETS", "").split(",") if name.strip()})
    for bucket in restore_buckets:
        ensure_bucket(s3, bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    logger.info("source bucket %-32s %d documents", env["DOCUMENTS_SOURCE_BUCKET"], len(docs))
    logger.info("source bucket %-32s %d PNG photos", env["PHOTOS_SOURCE_BUCKET"], len(images))
    logger.info("table         %-32s %d orders", env["DATABASE_TABLE"], len(items))
    for bucket in restore_buckets:
        logger.info("restore bucket %-31s empty, versioned, for restores", bucket)
    logger.info("alert topic   %s -> queue %s", env["ALERT_TOPIC_ARN"], ALERT_QUEUE)
    return Seeded(plans=plans, queue_url=queue_url, documents=len(docs), photos=len(images), orders=len(items))


# --- alerts --------------------------------------------------------------------------------------------


def format_alert(message_body: str) -> str:
    """An SNS notification as delivered to SQS (an envelope around subject and message) as terminal text."""
    try:
        envelope = json.loads(message_body)
        subject, text = envelope.get("Subject") or "(no subject)", envelope.get("Message", "")
    except (ValueError, AttributeError):
        subject, text = "(raw message)", message_body
    rule = "=" * 78
    return f"\n{rule}\nALERT  {subject}\n{rule}\n{text.rstrip()}\n{rule}\n"


def watch_alerts(sqs: Any, queue_url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        except (ClientError, BotoCoreError) as exc:  # e.g. the emulator going away at shutdown
            if not stop.is_set():
                logger.warning("could not read alerts: %s", exc)
                stop.wait(1)
            continue
        for message in messages.get("Messages", []):
            print(format_alert(message["Body"]), flush=True)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


# --- chalice local -------------------------------------------------------------------------------------

# Runs in the fresh child before chalice: on Linux, die with the parent even if it is killed outright, so a
# crashed stack never leaves a server holding the API port.
_CHALICE_BOOT = """
import sys
if sys.platform.startswith("linux"):
    try:
        import ctypes, signal
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
import logging
# chalice local logs at INFO to the terminal; botocore's INFO lines (credentials found, endpoints) are noise.
logging.getLogger("botocore").setLevel(logging.WARNING)
import os
_port_file = os.environ.pop("ORG_BACKUP_PORT_FILE", None)
if _port_file:
    # The server has bound its socket when it starts serving: report the port it got (the one asked for,
    # or the free one the system chose for port 0), so that its "Serving on" line and the parent agree.
    import chalice.local
    _serve_forever = chalice.local.LocalDevServer.serve_forever
    def _serve_and_report(self):
        self.port = self.server.server_address[1]
        with open(_port_file + ".part", "w") as f:
            f.write(str(self.port))
        os.replace(_port_file + ".part", _port_file)
        _serve_forever(self)
    chalice.local.LocalDevServer.serve_forever = _serve_and_report
from chalice.cli import main
sys.argv[0] = "chalice"
sys.exit(main())
"""


def chalice_environment(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DUMMY_CREDENTIALS)
    env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def start_chalice(
    stage: str, api_port: int, endpoint: str, port_file: Path, project_dir: Path = ROOT, **output: Any
) -> subprocess.Popen[bytes]:
    """`chalice local` in a child; it writes the port it serves on into `port_file` (see `read_port`)."""
    command = [sys.executable, "-c", _CHALICE_BOOT, "--project-dir", str(project_dir), "local", "--no-autoreload",
               "--stage", stage, "--host", HOST, "--port", str(api_port)]
    env = dict(chalice_environment(endpoint), ORG_BACKUP_PORT_FILE=str(port_file))
    # Its own session: Ctrl-C reaches only this script, which then stops chalice in order (no traceback).
    return subprocess.Popen(command, cwd=project_dir, env=env, start_new_session=True, **output)


# The dashboard is the operator's command (`org-backup dashboard`), in a child that dies with this script.
_DASHBOARD_BOOT = _CHALICE_BOOT.split("from chalice.cli import main")[0] + """
from chalicelib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_dashboard(stage: str, port: int, endpoint: str, port_file: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", _DASHBOARD_BOOT, "--stage", stage, "dashboard", "--port", str(port),
               "--port-file", str(port_file)]
    return subprocess.Popen(command, cwd=ROOT, env=chalice_environment(endpoint), start_new_session=True)


def read_port(port_file: Path, process: subprocess.Popen[bytes], timeout: float, name: str = "chalice local") -> int:
    """The port a child server is listening on, once it has written it (it writes only after binding)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(port_file.read_text())
        except FileNotFoundError:
            pass
        if process.poll() is not None:
            raise StackError(f"{name} exited with code {process.returncode} before serving (see above)")
        time.sleep(0.1)
    raise StackError(f"{name} did not start serving within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


# --- main ----------------------------------------------------------------------------------------------


def banner(stage: str, api_port: int, emulator_port: int, seeded: Seeded, dashboard_port: int) -> str:
    api = f"localhost:{api_port}"
    buckets = "\n".join(f"    {plan.name:<9} s3://{plan.bucket}" for plan in seeded.plans.plans)
    first = seeded.plans.plans[0].bucket
    vaults, role_arn = [plan for plan in seeded.plans.plans if plan.offsite], vault_role_arn(seeded.plans)
    if vaults and role_arn:
        region = vaults[0].offsite.region if vaults[0].offsite else REGION
        buckets += f"\n  Vaults (account {role_arn.split(':')[4]}, {region}; replicated from the backup buckets):\n" + "\n".join(
            f"    {plan.name:<9} s3://{plan.offsite.bucket}" for plan in vaults if plan.offsite)
        buckets += f"""

  Restore from the vault alone (once a backup has run), with the vault account's credentials:
    AWS_ENDPOINT_URL=http://{HOST}:{emulator_port} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\
    OFFSITE_ROLE_ARN={role_arn} PLANS_FILE={os.environ.get("PLANS_FILE", "")} \\
    .venv/bin/org-backup --stage {stage} restore <backup_id> --plan {vaults[0].name} --to-bucket <bucket> --from offsite"""
    return f"""
The backup system is running on this machine (no AWS account involved).

  Dashboard  http://{HOST}:{dashboard_port}/   (open it in a browser: every plan, its backups, what needs attention)
  API        http://{HOST}:{api_port}   (chalice local, stage '{stage}')
  Emulator   http://{HOST}:{emulator_port}   (moto; every AWS call of the API goes here)
  Backup buckets:
{buckets}

Try it:
  curl -X POST {api}/backup      # start a backup of every plan
  curl {api}/backups             # backups, newest first: RUNNING, then SUCCEEDED
  curl -X POST -H 'Content-Type: application/json' -d '{{"dry_run": true}}' {api}/prune
                                 # what retention would remove (after two backups: the older one)
  curl -X POST {api}/prune       # apply it; curl {api}/prunes shows the report
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={REGION} \\
    aws --endpoint-url http://{HOST}:{emulator_port} s3api list-object-versions --bucket {first} --prefix data/

Alerts are printed here as they arrive. Press Ctrl-C to stop the dashboard, the API and the emulator.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="local", help="chalice stage to serve (default: local)")
    parser.add_argument("--api-port", help="port of the API (default: $API_PORT or 8000; 0: any free port)")
    parser.add_argument("--emulator-port", help="port of the AWS emulator (default: $EMULATOR_PORT or 5000; 0: any free port)")
    parser.add_argument("--dashboard-port", help="port of the dashboard (default: $DASHBOARD_PORT or 8001; 0: any free port)")
    parser.add_argument("--seed-only", action="store_true",
                        help="seed an emulator that is already running on the emulator port, then exit")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    api_port = port_from(args.api_port or os.environ.get("API_PORT"), "API_PORT", 8000)
    emulator_port = port_from(args.emulator_port or os.environ.get("EMULATOR_PORT"), "EMULATOR_PORT", 5000)
    dashboard_port = port_from(args.dashboard_port or os.environ.get("DASHBOARD_PORT"), "DASHBOARD_PORT", 8001)
    fixed = [port for port in (api_port, emulator_port, dashboard_port) if port != 0]
    if len(set(fixed)) < len(fixed):
        raise StackError(
            f"API_PORT ({api_port}), EMULATOR_PORT ({emulator_port}) and DASHBOARD_PORT ({dashboard_port}) must differ"
        )
    env = chosen_plans_file(stage_environment(args.stage))
    if "PLANS_FILE" in env:
        os.environ["PLANS_FILE"] = env["PLANS_FILE"]  # for the children, which inherit this environment
    account = env["ALERT_TOPIC_ARN"].split(":")[4]  # the emulator's account, which the stage's topic names

    if args.seed_only:
        if emulator_port == 0:
            raise StackError("--seed-only seeds an emulator that is already running: name its port (EMULATOR_PORT)")
        emulator = Emulator(f"http://{HOST}:{emulator_port}")
        seeded = seed(emulator.client("s3"), emulator.client("dynamodb"), emulator.client("sns"), emulator.client("sqs"), env)
        provision_vaults(emulator, seeded.plans, account, args.stage)
        if vault_role_arn(seeded.plans):
            logger.warning("nothing replicates into the vaults: replication runs only in an emulator `make run` started")
        return 0

    check_port_free(emulator_port, "EMULATOR_PORT")
    check_port_free(api_port, "API_PORT")
    check_port_free(dashboard_port, "DASHBOARD_PORT")

    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    hold_the_emulator_to_s3()
    replication = replicating(load_plans(env))
    replication.__enter__()
    server = ThreadedMotoServer(ip_address=HOST, port=emulator_port, verbose=False)
    server.start()
    emulator_port = server.get_host_and_port()[1]
    endpoint = f"http://{HOST}:{emulator_port}"
    emulator = Emulator(endpoint)
    logger.info("AWS emulator on %s", endpoint)
    chalice: subprocess.Popen[bytes] | None = None
    dashboard: subprocess.Popen[bytes] | None = None
    watcher: threading.Thread | None = None
    ports = tempfile.TemporaryDirectory(prefix="org-backup-ports-")
    try:
        sqs = emulator.client("sqs")
        seeded = seed(emulator.client("s3"), emulator.client("dynamodb"), emulator.client("sns"), sqs, env)
        provision_vaults(emulator, seeded.plans, account, args.stage)
        watcher = threading.Thread(target=watch_alerts, args=(sqs, seeded.queue_url, stop), daemon=True)
        watcher.start()
        if stop.is_set():
            return 0
        logger.info("starting chalice local on %s", HOST)
        api_file, dashboard_file = Path(ports.name) / "api", Path(ports.name) / "dashboard"
        chalice = start_chalice(args.stage, api_port, endpoint, api_file)
        dashboard = start_dashboard(args.stage, dashboard_port, endpoint, dashboard_file)
        api_port = read_port(api_file, chalice, STARTUP_TIMEOUT)
        dashboard_port = read_port(dashboard_file, dashboard, STARTUP_TIMEOUT, name="the dashboard")
        print(banner(args.stage, api_port, emulator_port, seeded, dashboard_port), flush=True)
        while not stop.wait(0.5):
            if chalice.poll() is not None:
                raise StackError(f"chalice local stopped unexpectedly with code {chalice.returncode}")
            if dashboard.poll() is not None:
                raise StackError(f"the dashboard stopped unexpectedly with code {dashboard.returncode}")
        logger.info("stopping")
        return 0
    finally:
        stop.set()
        if chalice is not None:
            stop_process(chalice)
        if dashboard is not None:
            stop_process(dashboard)
        if watcher is not None:
            watcher.join(STOP_TIMEOUT)
        server.stop()
        replication.__exit__(None, None, None)
        ports.cleanup()
        logger.info("dashboard, API and emulator stopped")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[local stack] %(message)s", stream=sys.stdout)
    # One line per emulator request would bury the alerts and chalice's own request log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Provisioning logs every setting it applies; the summary per bucket is enough here.
    logging.getLogger("chalicelib").setLevel(logging.WARNING)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    try:
        return run(parse_args(argv))
    except StackError as exc:
        logger.error("error: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())

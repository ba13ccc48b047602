"""Point in time, proven: random histories of writes, overwrites and deletions at two S3 sources (one under a
prefix), a folder and a DynamoDB table, with awkward keys (unicode, spaces, '+', '%', doubled slashes, a key
that is another's prefix, a key too long for its backup key), and backups in between: single, delivered twice
in a row, and delivered twice at once. Restoring any earlier backup gives back exactly what each source held
when that backup ran, whatever happened afterwards; and every entry of every snapshot names, by version id, a
version that holds the source's bytes of that time.

The mass-deletion guard is always on (its share is strictly below 1): deletions it holds back stay in the
bucket but are not part of the snapshot's content, so the property holds for them too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from tests.concurrency import at_once
from tests.stored import assert_versions_hold, entries_of
from chalicelib.catalog.records import new_backup_id
from chalicelib.config import Settings
from chalicelib.deploy.provision import provision
from chalicelib.plans import DirectorySource, DynamoDBSource, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService

SOURCE_BUCKET = "pit-source"
SECOND_BUCKET = "pit-second"
SECOND_PREFIX = "shared/"
BACKUP_BUCKET = "pit-backup"
RESTORE_BUCKET = "pit-restore"
TABLE = "pit-orders"
KINDS = ("bucket", "second", "files", "table")  # the sources' names: two S3 sources, a folder, a table
# Keys S3 and DynamoDB take as they are; the folder takes the ones that are valid paths of one file each.
OBJECT_KEYS = (
    "a.txt", "b/c.txt", "b//d.bin", "été/ça va+bien %20.txt", "e", "e/f", "日本語/ファイル.txt",
    "long/" + "x" * 1012,
)
FILE_KEYS = ("a.txt", "b/c.txt", "été/ça va+bien %20.txt", "日本語/ファイル.txt", "g")
KEYS = {"bucket": OBJECT_KEYS, "second": OBJECT_KEYS, "files": FILE_KEYS, "table": OBJECT_KEYS}

writes = st.sampled_from(KINDS).flatmap(
    lambda kind: st.tuples(st.just("put"), st.just(kind), st.sampled_from(KEYS[kind]), st.binary(min_size=1, max_size=24))
)
deletions = st.sampled_from(KINDS).flatmap(
    lambda kind: st.tuples(st.just("delete"), st.just(kind), st.sampled_from(KEYS[kind]))
)
backups = st.sampled_from([("backup",), ("backup", "twice"), ("backup", "at once")])
histories = st.lists(st.one_of(writes, writes, deletions, backups), min_size=1, max_size=12)


def fingerprint(contents: dict[str, bytes]) -> dict[str, str]:
    return {key: hashlib.sha256(value).hexdigest() for key, value in contents.items()}


class Sources:
    """The three sources, and a model of what each holds."""

    def __init__(self, s3: Any, dynamodb: Any, folder: Path) -> None:
        self.s3 = s3
        self.dynamodb = dynamodb
        self.folder = folder
        self.model: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        # Each write moves a file's mtime forward, as time passing would (the folder source compares mtimes).
        self.clock = 1_700_000_000_000_000_000

    def put(self, kind: str, key: str, data: bytes) -> None:
        if kind == "bucket":
            self.s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=data)
        elif kind == "second":
            self.s3.put_object(Bucket=SECOND_BUCKET, Key=SECOND_PREFIX + key, Body=data)
        elif kind == "files":
            path = self.folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.clock += 1_000_000_000
            os.utime(path, ns=(self.clock, self.clock))
        else:
            self.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": key}, "data": {"B": data}})
        self.model[kind][key] = data

    def delete(self, kind: str, key: str) -> None:
        if kind == "bucket":
            self.s3.delete_object(Bucket=SOURCE_BUCKET, Key=key)
        elif kind == "second":
            self.s3.delete_object(Bucket=SECOND_BUCKET, Key=SECOND_PREFIX + key)
        elif kind == "files":
            (self.folder / key).unlink(missing_ok=True)
        else:
            self.dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": key}})
        self.model[kind].pop(key, None)

    def snapshot(self) -> dict[str, dict[str, str]]:
        return {kind: fingerprint(contents) for kind, contents in self.model.items()}

    def stored_bytes(self) -> dict[tuple[str, str], bytes]:
        """What each object entry must hold, by (source, key); the table is one export, checked by restoring."""
        return {(kind, key): data for kind in ("bucket", "second", "files") for key, data in self.model[kind].items()}


def restored(s3: Any, dynamodb: Any, bucket: str, table: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            kind, key = item["Key"].split("/", 1)
            found[kind][key] = hashlib.sha256(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()).hexdigest()
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            found["table"][item["pk"]["S"]] = hashlib.sha256(item["data"]["B"]).hexdigest()
    return found


def make_settings(folder: Path, max_delete_fraction: float, restore_buckets: tuple[str, ...]) -> Settings:
    plan = Plan(
        name="pit",
        bucket=BACKUP_BUCKET,
        sources=(
            S3Source(name="bucket", bucket=SOURCE_BUCKET),
            S3Source(name="second", bucket=SECOND_BUCKET, prefix=SECOND_PREFIX),
            DirectorySource(name="files", path=str(folder)),
            DynamoDBSource(name="table", table=TABLE, segments=2),
        ),
        lifecycle=Lifecycle(transitions=()),
        max_delete_fraction=max_delete_fraction,
    )
    return Settings(
        plans=PlanSet(plans=(plan,), catalog_bucket=BACKUP_BUCKET),
        topic_arn=None,
        worker_mode="inline",
        worker_function=None,
        max_workers=4,
        restore_buckets=restore_buckets,
    )


def run_backup(config: Settings, clients: Clients, backup_id: str, how: str) -> None:
    """One backup id run once, twice in a row (a redelivery), or twice at once (a duplicate delivery).
    (Deliveries share the clients, which are thread-safe: making clients is most of a test's time.)"""
    BackupService(config, clients).start(["pit"], trigger="api", backup_id=backup_id)
    deliveries = 2 if how in ("twice", "at once") else 1
    if how != "at once":
        for _ in range(deliveries):
            BackupService(config, clients).run(backup_id)
        return
    delivery = (lambda: BackupService(config, clients), lambda service: service.run(backup_id))
    at_once(*[delivery] * deliveries)


# Histories per run: a few in `make test`, more under `make test-full` (--exhaustive).
EXAMPLES, EXHAUSTIVE_EXAMPLES = 5, 40


def test_restoring_any_backup_gives_back_what_the_sources_held_then(aws_credentials: None, exhaustive: bool) -> None:
    settings(
        max_examples=EXHAUSTIVE_EXAMPLES if exhaustive else EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(given(history=histories, max_delete_fraction=st.sampled_from([0.2, 0.5, 0.9]))(restore_any_backup))()


def restore_any_backup(history: list[tuple[Any, ...]], max_delete_fraction: float) -> None:
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        for name in (SOURCE_BUCKET, SECOND_BUCKET):
            s3.create_bucket(Bucket=name)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        backups_taken = 1 + sum(1 for step in history if step[0] == "backup")
        # One restore bucket per backup, restored without a prefix: the longest keys just fit, as in the source.
        restore_buckets = tuple(f"{RESTORE_BUCKET}-{index}" for index in range(backups_taken))
        for name in restore_buckets:
            s3.create_bucket(Bucket=name)
        config = make_settings(folder, max_delete_fraction, restore_buckets)
        provision(s3, config.plans.plans[0])
        sources = Sources(s3, dynamodb, folder)
        clients = Clients()
        # Made once, before any thread uses them (a boto3 session is not thread-safe while it makes clients).
        for _client in (clients.s3, clients.dynamodb, clients.sns):
            pass

        taken: list[tuple[str, dict[str, dict[str, str]]]] = []
        # An hour ago: a backup must finish within MAX_BACKUP_DAYS of its id's time, or it is abandoned.
        start = datetime.now(timezone.utc) - timedelta(hours=1)
        for step in [*history, ("backup",)]:
            if step[0] == "put":
                sources.put(step[1], step[2], step[3])
            elif step[0] == "delete":
                sources.delete(step[1], step[2])
            else:
                # Ids a second apart: snapshots sort by id, as backups taken over time do.
                backup_id = new_backup_id(start + timedelta(seconds=len(taken)), suffix=f"pit{len(taken)}")
                run_backup(config, clients, backup_id, step[1] if len(step) > 1 else "once")
                record = BackupService(config, clients).get(backup_id)
                assert record.plans["pit"].snapshot, record.plans["pit"].errors
                # Every entry names, by version id, a version holding the bytes the source held now.
                entries = entries_of(s3, BACKUP_BUCKET, "pit", backup_id, include_held=False)
                held = {(e.source, e.key) for e in entries_of(s3, BACKUP_BUCKET, "pit", backup_id) if e.held}
                wanted = sources.stored_bytes()
                objects = [e for e in entries if e.source != "table"]
                assert {(e.source, e.key) for e in objects} == set(wanted) - held
                assert_versions_hold(s3, BACKUP_BUCKET, objects, wanted)
                assert_versions_hold(s3, BACKUP_BUCKET, [e for e in entries if e.source == "table"])
                taken.append((backup_id, sources.snapshot()))

        restores = RestoreService.from_settings(config, clients)
        for index, (backup_id, expected) in enumerate(taken):
            request = RestoreRequest(
                backup_id=backup_id,
                plan="pit",
                target=Target(bucket=restore_buckets[index], table=f"restored-{index}"),
            )
            done = restores.run(restores.start(request).restore_id)
            assert done.status == "SUCCEEDED", done.failures
            got = restored(s3, dynamodb, restore_buckets[index], f"restored-{index}")
            assert got == expected, f"backup {index} of {len(taken)}"

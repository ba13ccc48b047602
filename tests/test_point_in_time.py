"""Point in time, proven: random histories of writes, overwrites and deletions at an S3 bucket, a folder and a
DynamoDB table, with backups in between. Restoring any earlier backup gives back exactly what each source held
when that backup ran (compared by content fingerprint), whatever happened afterwards.

Deletions held back by the mass-deletion guard stay in the bucket but are not part of the snapshot's content,
so the property holds for them too.
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
from chalicelib.catalog.records import new_backup_id
from chalicelib.config import Settings
from chalicelib.deploy.provision import provision
from chalicelib.plans import DirectorySource, DynamoDBSource, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService

SOURCE_BUCKET = "pit-source"
BACKUP_BUCKET = "pit-backup"
RESTORE_BUCKET = "pit-restore"
TABLE = "pit-orders"
KINDS = ("bucket", "files", "table")  # the sources' names, one of each type
KEYS = ("a.txt", "b/c.txt", "b/d.bin", "e")

writes = st.tuples(st.just("put"), st.sampled_from(KINDS), st.sampled_from(KEYS), st.binary(min_size=1, max_size=24))
deletions = st.tuples(st.just("delete"), st.sampled_from(KINDS), st.sampled_from(KEYS))
backups = st.just(("backup",))
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
        elif kind == "files":
            (self.folder / key).unlink(missing_ok=True)
        else:
            self.dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": key}})
        self.model[kind].pop(key, None)

    def snapshot(self) -> dict[str, dict[str, str]]:
        return {kind: fingerprint(contents) for kind, contents in self.model.items()}


def restored(s3: Any, dynamodb: Any, prefix: str, table: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=RESTORE_BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            kind, key = item["Key"][len(prefix):].split("/", 1)
            found[kind][key] = hashlib.sha256(s3.get_object(Bucket=RESTORE_BUCKET, Key=item["Key"])["Body"].read()).hexdigest()
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            found["table"][item["pk"]["S"]] = hashlib.sha256(item["data"]["B"]).hexdigest()
    return found


def make_settings(folder: Path, max_delete_fraction: float) -> Settings:
    plan = Plan(
        name="pit",
        bucket=BACKUP_BUCKET,
        sources=(
            S3Source(name="bucket", bucket=SOURCE_BUCKET),
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
        restore_buckets=(RESTORE_BUCKET,),
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories, max_delete_fraction=st.sampled_from([0.2, 1.0]))
def test_restoring_any_backup_gives_back_what_the_sources_held_then(
    aws_credentials: None, history: list[tuple[Any, ...]], max_delete_fraction: float
) -> None:
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket=SOURCE_BUCKET)
        s3.create_bucket(Bucket=RESTORE_BUCKET)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        config = make_settings(folder, max_delete_fraction)
        provision(s3, config.plans.plans[0])
        clients = Clients()
        service = BackupService(config, clients)
        sources = Sources(s3, dynamodb, folder)

        taken: list[tuple[str, dict[str, dict[str, str]]]] = []
        start = datetime(2026, 11, 1, tzinfo=timezone.utc)
        for step in [*history, ("backup",)]:
            if step[0] == "put":
                sources.put(step[1], step[2], step[3])
            elif step[0] == "delete":
                sources.delete(step[1], step[2])
            else:
                # Ids a second apart: snapshots sort by id, as backups taken over time do.
                backup_id = new_backup_id(start + timedelta(seconds=len(taken)), suffix=f"pit{len(taken)}")
                service.start(["pit"], trigger="api", backup_id=backup_id)
                record = service.run(backup_id)
                assert record.plans["pit"].snapshot, record.plans["pit"].errors
                taken.append((backup_id, sources.snapshot()))

        restores = RestoreService.from_settings(config, clients)
        for index, (backup_id, expected) in enumerate(taken):
            request = RestoreRequest(
                backup_id=backup_id,
                plan="pit",
                target=Target(bucket=RESTORE_BUCKET, prefix=f"{index}/", table=f"restored-{index}"),
            )
            done = restores.run(restores.start(request).restore_id)
            assert done.status == "SUCCEEDED", done.failures
            assert restored(s3, dynamodb, f"{index}/", f"restored-{index}") == expected, f"backup {index} of {len(taken)}"

"""S3 requests to the backup and restore buckets name the account that must own them (ExpectedBucketOwner,
and ExpectedSourceBucketOwner when copying out of one), added where the clients are made: a bucket name taken
over by another account gets a 403 instead of our data. Sources, which may live in other accounts, are not
pinned. (moto ignores the header; that S3 refuses a mismatch is AWS's documented behaviour, and what the
policies' s3:ResourceAccount conditions enforce on our side is in tests/test_roles.py.)"""

from __future__ import annotations

import json
from typing import Any

import boto3

from chalicelib.aws import BucketOwner, Clients
from chalicelib.config import Settings
from tests.conftest import REGION

ACCOUNT = "123456789012"


def sent_headers(client: Any) -> list[tuple[str, dict[str, str]]]:
    """(operation, headers) of every request `client` sends from now on."""
    sent: list[tuple[str, dict[str, str]]] = []

    def record(request: Any, event_name: str, **kwargs: Any) -> None:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        sent.append((event_name.rsplit(".", 1)[-1], headers))

    client.meta.events.register("before-send.s3", record)
    return sent


def test_requests_to_our_buckets_carry_the_expected_owner_and_to_sources_not(aws: None) -> None:
    s3 = Clients(bucket_owner=BucketOwner(ACCOUNT, frozenset({"ours", "restores"}))).s3
    seeding = boto3.client("s3", region_name=REGION)
    for bucket in ("ours", "restores", "theirs"):
        seeding.create_bucket(Bucket=bucket)
    seeding.put_object(Bucket="theirs", Key="a.txt", Body=b"a")
    sent = sent_headers(s3)
    s3.put_object(Bucket="ours", Key="data/a.txt", Body=b"a")
    s3.copy_object(Bucket="ours", Key="data/b.txt", CopySource={"Bucket": "theirs", "Key": "a.txt"})
    s3.copy_object(Bucket="restores", Key="b.txt", CopySource={"Bucket": "ours", "Key": "data/b.txt"})
    s3.list_objects_v2(Bucket="ours", Prefix="data/")
    s3.delete_objects(Bucket="ours", Delete={"Objects": [{"Key": "data/a.txt"}]})
    s3.get_object(Bucket="theirs", Key="a.txt")
    owners = [(op, h.get("x-amz-expected-bucket-owner"), h.get("x-amz-source-expected-bucket-owner")) for op, h in sent]
    assert owners == [
        ("PutObject", ACCOUNT, None),
        ("CopyObject", ACCOUNT, None),  # from a source: only the destination is pinned
        ("CopyObject", ACCOUNT, ACCOUNT),  # out of a backup bucket into a restore bucket: both
        ("ListObjectsV2", ACCOUNT, None),
        ("DeleteObjects", ACCOUNT, None),
        ("GetObject", None, None),
    ]


def test_a_value_the_caller_gives_is_kept(aws: None) -> None:
    s3 = Clients(bucket_owner=BucketOwner(ACCOUNT, frozenset({"ours"}))).s3
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="ours")
    sent = sent_headers(s3)
    s3.list_objects_v2(Bucket="ours", ExpectedBucketOwner="111111111111")
    assert sent[0][1]["x-amz-expected-bucket-owner"] == "111111111111"


def test_the_settings_pin_the_plans_and_restore_buckets_to_the_topics_account(stage_env: dict[str, str]) -> None:
    settings = Settings.from_environ(stage_env)
    owner = settings.bucket_owner
    assert owner is not None and owner.account == ACCOUNT == settings.account
    assert owner.buckets == {"test-backup-documents", "test-backup-photos", "test-backup-database", "restore-target"}
    assert stage_env["DOCUMENTS_SOURCE_BUCKET"] not in owner.buckets


def test_every_call_of_a_backup_and_a_restore_through_the_app_is_pinned(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, s3: Any, stage_env: dict[str, str], recorded_calls: Any
) -> None:
    s3.create_bucket(Bucket="restore-target")
    response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=b"{}")
    assert response.status_code == 202, response.body
    backup_id = json.loads(response.body)["backup_id"]
    body = {"backup_id": backup_id, "plan": "documents", "target": {"bucket": "restore-target", "prefix": "back/"}}
    response = app_client.http.post("/restores", headers={"Content-Type": "application/json"}, body=json.dumps(body))
    assert response.status_code == 202, response.body
    owned = Settings.from_environ(stage_env).bucket_owner
    assert owned is not None
    calls = [call for call in recorded_calls.calls() if call.service == "s3"]
    ours = [call for call in calls if call.params.get("Bucket") in owned.buckets]
    assert {call.operation for call in ours} >= {"CopyObject", "PutObject", "GetObject", "ListObjectsV2", "GetBucketVersioning"}
    assert [call for call in ours if call.params.get("ExpectedBucketOwner") != ACCOUNT] == []
    out_of_backups = [call for call in ours if call.operation == "CopyObject" and call.params["Bucket"] == "restore-target"]
    assert out_of_backups and all(call.params["ExpectedSourceBucketOwner"] == ACCOUNT for call in out_of_backups)
    from_sources = [call for call in calls if call.params.get("Bucket") in (stage_env["DOCUMENTS_SOURCE_BUCKET"], stage_env["PHOTOS_SOURCE_BUCKET"])]
    assert from_sources and all("ExpectedBucketOwner" not in call.params for call in from_sources)

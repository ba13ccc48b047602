"""Drift: each backup reads its buckets' settings, reports what no longer matches the plan in the record and
the alert, and never rewrites a setting itself. Plus the heartbeat metric the 26-hour alarm watches."""

from __future__ import annotations

import json
from typing import Any

import boto3

from chalicelib.catalog.records import PlanResult
from chalicelib.deploy.bucket_settings import PUBLIC_ACCESS_BLOCK
from chalicelib.deploy.drift import check_plan, find_drift
from chalicelib.notify.metrics import DIMENSION, METRIC, namespace
from tests.conftest import REGION, read_alerts, scheduled_event


def start_backup(app_client: Any) -> dict[str, Any]:
    response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=b"{}")
    assert response.status_code == 202, response.body
    backup_id = json.loads(response.body)["backup_id"]
    return json.loads(app_client.http.get(f"/backups/{backup_id}").body)


def heartbeat_count(app_client: Any, catalog_bucket: str) -> float:
    """What the alarm's metric holds for the last hour once the hourly heartbeat has run."""
    app_client.lambda_.invoke("heartbeat", scheduled_event(app_client))
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    stats = cloudwatch.get_metric_statistics(
        Namespace=namespace(catalog_bucket),
        MetricName=METRIC,
        Dimensions=[{"Name": DIMENSION, "Value": catalog_bucket}],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum"],
    )
    return sum(point["Sum"] for point in stats["Datapoints"])


def test_provisioned_buckets_show_no_drift(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, sqs: Any
) -> None:
    record = start_backup(app_client)
    assert record["status"] == "SUCCEEDED"
    assert all(result["drift"] == [] for result in record["plans"].values())
    (alert,) = read_alerts(sqs, topic_queue)
    assert "DRIFT" not in alert["Message"]
    assert heartbeat_count(app_client, backup_buckets.catalog_bucket) == 1


def test_drifted_buckets_are_reported_and_left_alone(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, sqs: Any, s3: Any, recorded_calls: Any
) -> None:
    documents = backup_buckets.get("documents").bucket
    photos = backup_buckets.get("photos").bucket
    database = backup_buckets.get("database").bucket
    s3.put_bucket_versioning(Bucket=documents, VersioningConfiguration={"Status": "Suspended"})
    s3.delete_bucket_policy(Bucket=documents)
    s3.delete_bucket_lifecycle(Bucket=photos)
    s3.delete_bucket_encryption(Bucket=photos)
    s3.put_public_access_block(Bucket=database, PublicAccessBlockConfiguration={**PUBLIC_ACCESS_BLOCK, "RestrictPublicBuckets": False})
    s3.put_bucket_ownership_controls(Bucket=database, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})

    record = start_backup(app_client)

    plans = record["plans"]
    assert record["status"] == "PARTIAL"
    # A bucket that stopped keeping versions gets nothing written (see test_history.py); the others still
    # back up, and are PARTIAL for their drift.
    assert {name: result["status"] for name, result in plans.items()} == {
        "documents": "FAILED",
        "photos": "PARTIAL",
        "database": "PARTIAL",
    }
    assert "versioning is Suspended" in plans["documents"]["errors"][0]
    assert plans["documents"]["drift"] == [
        f"bucket {documents}: versioning is suspended",
        f"bucket {documents}: TLS-only and create-only bucket policy is gone (no bucket policy)",
    ]
    assert plans["photos"]["drift"] == [
        f"bucket {photos}: lifecycle rules removed (none configured)",
        f"bucket {photos}: default encryption removed",
    ]
    assert plans["database"]["drift"] == [
        f"bucket {database}: public access opened: RestrictPublicBuckets off",
        f"bucket {database}: object ownership is ObjectWriter, plan wants BucketOwnerEnforced (ACLs disabled)",
    ]
    # The backups themselves still happened, where history is kept.
    assert plans["photos"]["copied"] == 10 and plans["database"]["copied"] == 1
    assert plans["documents"]["copied"] == 0

    (alert,) = read_alerts(sqs, topic_queue)
    body = alert["Message"]
    assert f"DRIFT: bucket {documents}: versioning is suspended" in body
    assert f"DRIFT: bucket {photos}: lifecycle rules removed" in body
    assert "public access opened" in body
    assert alert["MessageAttributes"]["status"]["Value"] == "PARTIAL"

    # Reported, not repaired: the running system only reads bucket settings.
    assert s3.get_bucket_versioning(Bucket=documents)["Status"] == "Suspended"
    operations = {call.operation for call in recorded_calls.calls()}
    assert "GetBucketVersioning" in operations and "GetBucketPolicy" in operations
    writes = {op for op in operations if op.startswith(("PutBucket", "DeleteBucket", "PutPublicAccessBlock", "PutObjectLock"))}
    assert writes == set()
    # A partial backup is not a heartbeat: the alarm keeps counting towards 26 hours.
    assert heartbeat_count(app_client, backup_buckets.catalog_bucket) == 0


def test_changed_lifecycle_days_are_drift(s3: Any, backup_buckets: Any) -> None:
    plan = backup_buckets.get("database")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]
    rules[0]["Transitions"] = [{"Days": 1, "StorageClass": "GLACIER"}]
    rules.append({"ID": "cleanup", "Filter": {"Prefix": "data/"}, "Status": "Enabled", "Expiration": {"Days": 1}})
    s3.put_bucket_lifecycle_configuration(Bucket=plan.bucket, LifecycleConfiguration={"Rules": rules})
    found = find_drift(s3, plan)
    assert len(found) == 2
    assert "lifecycle rule 'database-data-tiering' changed" in found[0] and "GLACIER after 1 days" in found[0]
    assert "unexpected lifecycle rule 'cleanup'" in found[1] and "expires current versions" in found[1]


def test_what_happens_to_small_objects_is_read_back_and_a_difference_is_drift(s3: Any, backup_buckets: Any) -> None:
    plan = backup_buckets.get("documents")
    assert plan.lifecycle.small_objects == "standard"
    assert s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    assert find_drift(s3, plan) == []
    # The same rules, written by someone who lets objects under 128 KB go to the archive classes.
    rules = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=plan.bucket, LifecycleConfiguration={"Rules": rules}, TransitionDefaultMinimumObjectSize="varies_by_storage_class"
    )
    (found,) = find_drift(s3, plan)
    assert "TransitionDefaultMinimumObjectSize is varies_by_storage_class, plan wants all_storage_classes_128K" in found
    assert "small_objects 'standard'" in found and plan.bucket in found


def test_a_policy_without_the_tls_statement_is_drift(s3: Any, backup_buckets: Any) -> None:
    plan = backup_buckets.get("photos")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "Other", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": f"arn:aws:s3:::{plan.bucket}"}],
    }
    s3.put_bucket_policy(Bucket=plan.bucket, Policy=json.dumps(policy))
    assert find_drift(s3, plan) == [
        f"bucket {plan.bucket}: the bucket policy no longer denies requests without TLS",
        f"bucket {plan.bucket}: the bucket policy no longer makes manifests and sealed records create-only "
        "(statements CreateOnlyMetadata and NoDeleteMarkersOnMetadata)",
    ]


def test_a_weakened_create_only_statement_is_drift(s3: Any, backup_buckets: Any) -> None:
    """Someone drops the condition's header key (making any write pass): drift, named."""
    from chalicelib.deploy.bucket_settings import bucket_policy

    plan = backup_buckets.get("documents")
    policy = bucket_policy(plan.bucket)
    weakened = next(s for s in policy["Statement"] if s["Sid"] == "CreateOnlyMetadata")
    weakened["Condition"] = {"Bool": {"s3:ObjectCreationOperation": "false"}}
    s3.put_bucket_policy(Bucket=plan.bucket, Policy=json.dumps(policy))
    assert find_drift(s3, plan) == [
        f"bucket {plan.bucket}: the bucket policy no longer makes manifests and sealed records create-only "
        "(statements CreateOnlyMetadata and NoDeleteMarkersOnMetadata)",
    ]


def test_drift_keeps_a_failed_plan_failed(s3: Any, plans: Any) -> None:
    plan = plans.get("photos")  # its bucket was never created
    result = check_plan(s3, plan, PlanResult(plan="photos", status="FAILED"))
    assert result.status == "FAILED"
    assert result.drift == [f"bucket {plan.bucket}: bucket {plan.bucket} does not exist"]


def test_unreadable_settings_are_reported(s3: Any, backup_buckets: Any) -> None:
    plan = backup_buckets.get("documents")
    from botocore.exceptions import ClientError

    def deny(**kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetBucketPolicy")

    s3.meta.events.register("before-call.s3.GetBucketPolicy", deny)
    result = check_plan(s3, plan, PlanResult(plan="documents", status="SUCCEEDED"))
    assert result.status == "PARTIAL"
    assert result.drift == [f"bucket {plan.bucket}: bucket policy could not be read: AccessDenied: Access Denied"]


def test_dry_run_sends_no_heartbeat(app_client: Any, backup_buckets: Any, sources: Any) -> None:
    response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=b'{"dry_run": true}')
    assert response.status_code == 202
    assert heartbeat_count(app_client, backup_buckets.catalog_bucket) == 0


def test_against_the_emulator_server(monkeypatch: Any, stage_env: dict[str, str]) -> None:
    """The emulator (moto's server, over HTTP, as in the local stack): provisioned buckets show every setting,
    and a bucket drifted after provisioning is reported by the next backup."""
    from moto.server import ThreadedMotoServer

    from chalicelib.aws import Clients
    from chalicelib.backup.service import BackupService
    from chalicelib.config import Settings
    from chalicelib.deploy.bucket_differences import differences
    from chalicelib.deploy.bucket_state import read_state
    from chalicelib.deploy.inventory_bucket import provision_inventory
    from chalicelib.deploy.provision import provision
    from tests.conftest import ACCOUNT, create_table

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        clients = Clients(session=boto3.session.Session())
        settings = Settings.from_environ({**stage_env, "ALERT_TOPIC_ARN": ""})
        for plan in settings.plans.plans:
            assert provision(clients.s3, plan)
            assert differences(plan, read_state(clients.s3, plan.bucket)) == []
            assert provision(clients.s3, plan) == []
        # Without an alert topic the stage's account is unknown: drift takes the one provisioning stated.
        assert provision_inventory(clients.s3, settings.plans, ACCOUNT)
        assert provision_inventory(clients.s3, settings.plans, ACCOUNT) == []
        for name in ("DOCUMENTS_SOURCE_BUCKET", "PHOTOS_SOURCE_BUCKET"):
            clients.s3.create_bucket(Bucket=stage_env[name])
            clients.s3.put_object(Bucket=stage_env[name], Key="a.txt", Body=b"a")
        create_table(clients.dynamodb, stage_env["DATABASE_TABLE"], items=3)
        photos = settings.plans.get("photos").bucket
        clients.s3.delete_public_access_block(Bucket=photos)

        service = BackupService(settings, clients)
        record = service.run(service.start(None, trigger="api").backup_id)

        assert {name: result.status for name, result in record.plans.items()} == {
            "documents": "SUCCEEDED",
            "photos": "PARTIAL",
            "database": "SUCCEEDED",
        }
        assert record.plans["photos"].drift == [f"bucket {photos}: public access block removed: the bucket can be made public"]
        assert record.plans["photos"].copied == 1
    finally:
        server.stop()

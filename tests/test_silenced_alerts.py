"""The backup writer cannot silence an alert about what it did, nor keep the 26-hour alarm quiet.

The attacks, with the writer's permissions as the generated policy grants them (each request checked with the
project's policy evaluator and the bucket's policy before it is sent): create, ahead of a predictable finding,
the create-only marker that says it was alerted; publish the heartbeat metric; or rewrite a backup's working
record to SUCCEEDED so that the heartbeat counts it. Findings now go to the notifier, the one role that may
write the markers, which writes one only for an alert that went out; the heartbeat is its own function, which
reads sealed records only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import RecordStore, new_backup_id, record_key
from chalicelib.catalog.run_keys import new_run_key
from chalicelib.config import Settings
from chalicelib.deploy.bucket_settings import bucket_policy
from chalicelib.deploy.permissions import allows, denies, required_permissions
from chalicelib.deploy.policy import generate, settings_scope
from chalicelib.notify import metrics
from chalicelib.notify.tampering import TamperingAlerts, marker_key
from chalicelib.times import utcnow
from tests.conftest import ACCOUNT, REGION, read_alerts, scheduled_event
from tests.test_scale import FakeContext, Invocations

WRITERS = ("daily_backup", "backup_worker")


def deployed(stage_env: dict[str, str]) -> Settings:
    """The test stage as deployed: functions invoked by Lambda, so the policies name the notifier."""
    return Settings.from_environ({**stage_env, "WORKER_MODE": "lambda", "WORKER_FUNCTION_NAME": "org-backup-test-backup_worker"})


class Attacker:
    """Requests a function's role may send (`function`'s generated policy and the bucket's own policy)."""

    def __init__(self, s3: Any, settings: Settings, function: str) -> None:
        self.s3 = s3
        self.policy = generate(settings_scope("org-backup", "test", settings), function)

    def may(self, service: str, operation: str, **params: Any) -> bool:
        permissions = required_permissions(service, operation, params, REGION, ACCOUNT)
        return all(
            allows(self.policy, p) and (service != "s3" or denies(bucket_policy(params["Bucket"]), p) is None)
            for p in permissions
        )

    def put(self, **params: Any) -> Any:
        assert self.may("s3", "PutObject", **params), f"the role may not put {params['Key']}"
        return self.s3.put_object(**params)


def tampering_alerts(sqs: Any, queue: str) -> list[dict[str, Any]]:
    return [a for a in read_alerts(sqs, queue) if a["Subject"].startswith("TAMPERING")]


@pytest.mark.parametrize("function", WRITERS)
def test_the_writer_can_neither_pre_create_a_findings_marker_nor_publish_the_heartbeat(
    function: str, stage_env: dict[str, str], s3: Any
) -> None:
    settings = deployed(stage_env)
    writer = Attacker(s3, settings, function)
    finding = "backup 20261126T020000000Z-scheduled's sealed record is not JSON"
    catalog = settings.plans.catalog_bucket
    assert not writer.may("s3", "PutObject", Bucket=catalog, Key=marker_key(finding), IfNoneMatch="*", Body=b"{}")
    assert not writer.may("cloudwatch", "PutMetricData", Namespace=metrics.namespace(catalog), MetricData=[])
    # What it may do is hand findings to the notifier: more alerts, never fewer.
    assert writer.may("lambda", "Invoke", FunctionName="org-backup-test-notifier")
    notifier = Attacker(s3, settings, "notifier")
    assert notifier.may("s3", "PutObject", Bucket=catalog, Key=marker_key(finding), IfNoneMatch="*", Body=b"{}")


def test_every_function_hands_findings_to_the_notifier_when_deployed(stage_env: dict[str, str]) -> None:
    invoked: list[dict[str, Any]] = []

    class Lambda:
        def invoke(self, **params: Any) -> None:
            invoked.append(params)

    class Deployed:
        s3 = sns = None
        lambda_ = Lambda()

    assert TamperingAlerts.from_settings(deployed(stage_env), Deployed()).report("a finding")
    ((call),) = invoked
    assert call["FunctionName"] == "org-backup-test-notifier" and call["InvocationType"] == "Event"
    assert json.loads(call["Payload"]) == {"finding": "a finding"}


def test_a_finding_pre_reported_still_alerts(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, stage_env: dict[str, str], s3: Any, sqs: Any
) -> None:
    settings = deployed(stage_env)
    catalog = settings.plans.catalog_bucket
    writer = Attacker(s3, settings, "backup_worker")
    # The writer plants a sealed record it cannot make readable, and knows the finding it will cause.
    planted = new_backup_id(utcnow() - timedelta(minutes=5))
    writer.put(Bucket=catalog, Key=record_key(planted).replace("meta/backups/", "meta/sealed/backups/"), Body=b"not json", IfNoneMatch="*")
    finding = f"backup {planted}'s sealed record is not JSON"
    # Its only way to the marker is the notifier, which alerts when it remembers the finding.
    assert app_client.lambda_.invoke("notifier", {"finding": finding}).payload == {"alerted": True}
    (early,) = tampering_alerts(sqs, topic_queue)
    assert early["Message"].startswith(finding)
    assert s3.get_object(Bucket=catalog, Key=marker_key(finding))["Body"].read()
    # The operators' own look finds it again: answered as tampering, and not alerted twice.
    response = app_client.http.get(f"/backups/{planted}")
    assert response.status_code == 409 and response.json_body["Code"] == "TamperingDetected"
    assert tampering_alerts(sqs, topic_queue) == []


def test_an_alert_that_did_not_go_out_leaves_no_marker_and_the_next_sighting_alerts(
    backup_buckets: Any, topic_queue: str, stage_env: dict[str, str], s3: Any, sqs: Any
) -> None:
    settings = Settings.from_environ(stage_env)
    clients = Clients()
    alerts = TamperingAlerts.from_settings(settings, clients)
    failing = {"left": 1}

    def refuse(**kwargs: Any) -> None:
        if failing["left"]:
            failing["left"] -= 1
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://sns")

    clients.sns.meta.events.register("before-call.sns.Publish", refuse)
    assert not alerts.report("a manifest was replaced")
    assert tampering_alerts(sqs, topic_queue) == []
    assert alerts.report("a manifest was replaced")
    assert len(tampering_alerts(sqs, topic_queue)) == 1
    assert not alerts.report("a manifest was replaced")
    assert tampering_alerts(sqs, topic_queue) == []


def heartbeats(catalog: str) -> list[dict[str, Any]]:
    now = utcnow()
    points = boto3.client("cloudwatch", region_name=REGION).get_metric_statistics(
        Namespace=metrics.namespace(catalog),
        MetricName=metrics.METRIC,
        Dimensions=[{"Name": metrics.DIMENSION, "Value": catalog}],
        StartTime=now - timedelta(days=3),
        EndTime=now + timedelta(hours=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return list(points)


def test_the_heartbeat_is_not_sent_for_a_forged_working_record(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, stage_env: dict[str, str], s3: Any
) -> None:
    settings = Settings.from_environ(stage_env)
    catalog = settings.plans.catalog_bucket
    writer = Attacker(s3, deployed(stage_env), "backup_worker")
    # A backup stopped at its first checkpoint: its working record is RUNNING.
    service = BackupService(settings, Clients(), invoker=Invocations(), batch_size=1)
    key = new_run_key()
    running = service.start(None, trigger="api", backup_id=new_backup_id(), run_key=key).backup_id
    assert service.run(running, context=FakeContext(1), run_key=key).status == "RUNNING"
    # The writer rewrites it as a success of every plan, and adds a working record of a backup that never ran.
    working = json.loads(s3.get_object(Bucket=catalog, Key=record_key(running))["Body"].read())
    for backup_id, record in ((running, working), (new_backup_id(), {**working, "backup_id": "x"})):
        record = {
            **record,
            "backup_id": backup_id,
            "status": "SUCCEEDED",
            "finished_at": working["started_at"],
            "plans": {name: {**result, "status": "SUCCEEDED"} for name, result in working["plans"].items()},
        }
        writer.put(Bucket=catalog, Key=record_key(backup_id), Body=json.dumps(record).encode())

    assert app_client.lambda_.invoke("heartbeat", scheduled_event(app_client)).payload == {"last_success": None}
    assert heartbeats(catalog) == []

    # A real backup of every plan, sealed when it ends: the heartbeat is dated when it finished.
    response = app_client.http.post("/backup", headers={"Content-Type": "application/json"}, body=b"{}")
    done = RecordStore(s3, catalog).get(response.json_body["backup_id"])
    assert done.status == "SUCCEEDED"
    assert app_client.lambda_.invoke("heartbeat", scheduled_event(app_client)).payload == {"last_success": done.finished_at}
    assert sum(point["Sum"] for point in heartbeats(catalog)) == 1

"""The daily schedule and the worker function, invoked as Lambda would, and the SNS alert each backup sends."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chalicelib.backup.service import scheduled_suffix
from chalicelib.notify import alerts
from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import list_snapshot_keys
from chalicelib.catalog.records import BackupRecord, PlanResult
from chalicelib.config import Settings
from chalicelib.errors import NotFound
from chalicelib.layout import RECORDS_PREFIX, VERIFICATIONS_PREFIX
from tests.conftest import read_alerts, scheduled_event
from tests.test_backup_engine import Crash, client_calls

PLANS = ("documents", "photos", "database")



@pytest.fixture
def stack(app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, clients: Any) -> Any:
    """The app under the test client, sharing this test's clients so that hooks see its calls."""
    import app as app_module

    app_module._clients = clients
    return app_client


def records(s3: Any, prefix: str = RECORDS_PREFIX) -> list[str]:
    listing = s3.list_objects_v2(Bucket="test-backup-documents", Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def kind(alert: dict[str, Any]) -> str:
    return str(alert["MessageAttributes"]["kind"]["Value"])


def backup_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """The backups' alerts; a scheduled backup's verification job sends one of its own."""
    return [alert for alert in read_alerts(sqs, queue_url) if kind(alert) == "backup"]


def test_the_schedule_backs_up_every_plan_once_per_event(
    stack: Any, s3: Any, sqs: Any, topic_queue: str, backup_buckets: Any
) -> None:
    from tests.test_verify_job import stored_versions
    event = scheduled_event(stack)
    first = stack.lambda_.invoke("daily_backup", event).payload
    # EventBridge delivers at least once: the same event again finds the same backup and does nothing more.
    second = stack.lambda_.invoke("daily_backup", event).payload
    # The id: the schedule time, and a part derived from the event's own id (never known in advance).
    fired = event["time"].replace("-", "").replace(":", "").replace("Z", "000Z")  # 2026-11-29T08:49:36Z
    assert first["backup_id"] == second["backup_id"] == f"{fired}-{scheduled_suffix(event['id'])}"
    assert scheduled_suffix(event["id"]).startswith("scheduled-")
    assert second["status"] == "SUCCEEDED"
    assert len(records(s3)) == 1
    for plan in PLANS:
        assert len(list_snapshot_keys(s3, f"test-backup-{plan}", plan)) == 1
    record = stack.http.get(f"/backups/{first['backup_id']}").json_body
    assert record["trigger"] == "schedule" and set(record["plans"]) == set(PLANS)
    # One alert for the backup and one for its verification job: the second delivery sent none.
    assert sorted(kind(alert) for alert in read_alerts(sqs, topic_queue)) == ["backup", "verification"]
    assert len(records(s3, VERIFICATIONS_PREFIX)) == 1
    # Its job checks the day's slice, a hash of the (random) version ids: worked out, as it may be empty.
    in_slice = [v for v in stored_versions(s3, backup_buckets) if v[2] == record["verification"]["weekday"]]
    assert record["verification"]["status"] == "SUCCEEDED" and record["verification"]["checked"] == len(in_slice)


def test_a_scheduled_run_that_died_is_finished_by_the_redelivery(stack: Any, s3: Any, clients: Any) -> None:
    event = scheduled_event(stack)
    with client_calls(clients.s3) as calls:
        # Killed while copying the photos: documents are done, photos are half copied.
        calls.fail("CopyObject", when=lambda p: p["Key"].endswith("img-5.png"), raise_=Crash())
        with pytest.raises(Crash):
            stack.lambda_.invoke("daily_backup", event)
    assert len(list_snapshot_keys(s3, "test-backup-documents", "documents")) == 1
    assert list_snapshot_keys(s3, "test-backup-photos", "photos") == []
    with client_calls(clients.s3) as calls:
        result = stack.lambda_.invoke("daily_backup", event).payload
    assert stack.http.get(f"/backups/{result['backup_id']}").json_body["status"] == "SUCCEEDED"
    # The documents were not copied again; the photos were.
    assert not any(key.startswith("data/documents/") for key in calls.keys("CopyObject"))
    assert any(key.startswith("data/photos/") for key in calls.keys("CopyObject"))
    for plan in PLANS:
        assert len(list_snapshot_keys(s3, f"test-backup-{plan}", plan)) == 1


def test_the_worker_function_runs_a_recorded_backup(stack: Any, clients: Any, stage_env: dict[str, str], s3: Any) -> None:
    backups = BackupService(Settings.from_environ(stage_env), clients)
    record = backups.start(["photos"], trigger="api")
    assert stack.http.get(f"/backups/{record.backup_id}").json_body["status"] == "RUNNING"
    response = stack.lambda_.invoke("backup_worker", {"backup_id": record.backup_id})
    assert response.payload["backup_id"] == record.backup_id
    shown = stack.http.get(f"/backups/{record.backup_id}").json_body
    assert shown["status"] == "SUCCEEDED" and shown["plans"]["photos"]["copied"] == 10
    assert list(shown["plans"]) == ["photos"]
    # A second invocation (Lambda's retry of an asynchronous event) copies nothing.
    with client_calls(clients.s3) as calls:
        again = stack.lambda_.invoke("backup_worker", {"backup_id": record.backup_id}).payload
    assert again["status"] == "SUCCEEDED" and calls.data_writes() == []


def test_the_worker_refuses_an_unknown_backup(stack: Any) -> None:
    with pytest.raises(NotFound):
        stack.lambda_.invoke("backup_worker", {"backup_id": "20261126T000000000Z-unknown"})


# --------------------------------------------------------------------------------------------------------
# Alerts


def test_the_alert_has_status_totals_and_a_line_per_plan(stack: Any, sqs: Any, topic_queue: str) -> None:
    event = scheduled_event(stack)
    payload = stack.lambda_.invoke("daily_backup", event).payload
    [alert] = backup_alerts(sqs, topic_queue)
    # 10 documents + 10 photos + 1 table export.
    assert alert["Subject"].startswith("Backup SUCCEEDED: 3 plan(s), 21 copied (")
    assert alert["Subject"].endswith(", 0 failed")
    assert alert["MessageAttributes"]["status"] == {"Type": "String", "Value": "SUCCEEDED"}
    assert alert["MessageAttributes"]["backup_id"]["Value"] == payload["backup_id"]
    lines = alert["Message"].splitlines()
    assert lines[0] == f"Backup {payload['backup_id']} (schedule): SUCCEEDED"
    plan_lines = [line for line in lines if line.split(" ", 1)[0] in PLANS]
    assert [line.split()[0] for line in plan_lines] == list(PLANS)
    assert all(line.split()[1] == "SUCCEEDED" for line in plan_lines)
    assert "copied 10 (" in plan_lines[0] and "snapshot holds 10 objects" in plan_lines[0]


def test_a_partial_backup_alert_names_the_failed_source(
    stack: Any, clients: Any, sqs: Any, topic_queue: str
) -> None:
    with client_calls(clients.s3, ("ListObjectsV2",)) as calls:
        calls.fail("ListObjectsV2", when=lambda p: p.get("Bucket") == "test-src-photos")
        response = stack.http.post("/backup", body=b"")
    assert response.status_code == 202
    [alert] = read_alerts(sqs, topic_queue)
    assert alert["Subject"].startswith("Backup PARTIAL:")
    assert alert["MessageAttributes"]["status"]["Value"] == "PARTIAL"
    message = alert["Message"]
    photos = next(line for line in message.splitlines() if line.startswith("photos"))
    assert photos.split()[1] == "FAILED"
    assert "s3 source 'photos'" in message and "AccessDenied" in message


def test_a_failing_publish_is_logged_and_changes_nothing(
    app_client: Any, backup_buckets: Any, sources: Any, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # No topic exists: SNS answers NotFound.
    import app as app_module

    app_module._clients = clients
    with caplog.at_level(logging.ERROR, logger="chalicelib.notify.alerts"):
        response = app_client.http.post("/backup", body=b'{"plans": ["photos"]}')
    backup_id = response.json_body["backup_id"]
    assert app_client.http.get(f"/backups/{backup_id}").json_body["status"] == "SUCCEEDED"
    assert any("could not publish" in r.getMessage() and backup_id in r.getMessage() for r in caplog.records)


def test_publish_errors_of_every_kind_are_swallowed(sns: Any, caplog: pytest.LogCaptureFixture) -> None:
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    record = BackupRecord(backup_id="20261126T000000000Z-x", trigger="api", plans={"p": PlanResult(plan="p", status="SUCCEEDED")})
    record.status = "SUCCEEDED"
    with client_calls(sns, ("Publish",)) as calls:
        calls.fail("Publish", code="Throttling", status=400)
        with caplog.at_level(logging.ERROR):
            assert alerts.publish(sns, topic, record) is False
    assert "Throttling" in caplog.text
    assert alerts.publish(sns, None, record) is False  # no topic configured: nothing sent
    assert alerts.publish(sns, topic, record) is True


def test_subject_stays_within_what_sns_accepts() -> None:
    plans = {f"plan-{i}-\u00e9": PlanResult(plan=f"plan-{i}", status="FAILED", failed=10**9, copied=10**12) for i in range(50)}
    record = BackupRecord(backup_id="20261126T000000000Z-x", trigger="api", plans=plans, status="FAILED")
    subject = alerts.subject(record)
    assert len(subject) <= 100 and subject.isascii() and "\n" not in subject


class _Clock:
    """A Lambda context whose remaining time is what the test sets."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_cost_report_still_reading_when_the_time_runs_short_is_cut_and_the_alert_still_goes(
    backup_buckets: Any, sources: Any, topic_queue: str, sqs: Any, clients: Any, stage_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib.cost import report_runs as inventory
    from chalicelib.cost import reports
    from chalicelib.cost.tally import PlanTally
    from chalicelib.times import utcnow

    context = _Clock(900_000)
    add = PlanTally.add
    tallied: list[int] = []

    def slow_add(tally: PlanTally, version: Any) -> None:
        # The bucket's rows take the invocation's time: two minutes left once the first is read.
        tallied.append(1)
        context.remaining_ms = 59_000
        add(tally, version)

    monkeypatch.setattr(PlanTally, "add", slow_add)
    monkeypatch.setattr(inventory, "DEADLINE_EVERY", 2)
    service = BackupService(Settings.from_environ(stage_env), clients)
    record = service.run_scheduled(utcnow(), context=context)
    assert record.status == "SUCCEEDED"
    # Cut at the first look at the deadline: two versions read, not the bucket's every version.
    assert len(tallied) == 2
    [alert] = backup_alerts(sqs, topic_queue)
    last = alert["Message"].splitlines()[-1]
    assert last.startswith("Cost: not computed in this run (plan 'documents': 2 versions tallied when the time ran out")
    assert last.endswith("GET /costs computes it")
    # Nothing half-read was kept: the next caller computes the figures.
    assert reports.CostReports.from_settings(Settings.from_environ(stage_env), clients).stored(record.backup_id) is None

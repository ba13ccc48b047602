"""Shared fixtures: an in-process AWS double (moto), the three plans' buckets and seeded sources, and a
chalice test client whose stage runs backups inline."""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

# moto must be imported before anything creates a boto3 client, or that client talks to real AWS.
import moto  # noqa: F401
import pytest
from hypothesis import settings as hypothesis_settings
from moto import mock_aws

# Share the parsed service models between sessions, and read moto's timestamps without dateutil; record every AWS call the system makes and check it
# against the generated policy; let moto honour the
# TLS-only bucket policy as S3 does, and enforce the S3 rules moto lets pass (key length, copy conditions);
# let moto's version listings copy only what a page can name, and find each request's handler from URL
# patterns built once, and whether a host names the bucket once per host; name the credentials without
# computing signatures no emulator checks (see each plugin).
pytest_plugins = [
    "tests.shared_models", "tests.botocore_timestamps", "tests.fast_signing", "tests.record_calls", "tests.moto_tls", "tests.moto_strict",
    "tests.moto_listing", "tests.moto_dispatch", "tests.moto_hosts", "tests.faults",
]

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# moto's account, which the alert topic's ARN names too.
ACCOUNT = "123456789012"

STAGE_ENV = {
    "BACKUP_BUCKET_PREFIX": "test-backup",
    "DOCUMENTS_SOURCE_BUCKET": "test-src-documents",
    "PHOTOS_SOURCE_BUCKET": "test-src-photos",
    "DATABASE_TABLE": "test-orders",
    "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:test-backup-alerts",
    "WORKER_MODE": "inline",
    "MAX_WORKERS": "8",
    "RESTORE_BUCKETS": "restore-target",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--exhaustive",
        action="store_true",
        help="run every case of the exhaustive sweeps (make test-full); without it, a fixed seeded subset",
    )


# Property tests: `make test` draws the same examples on every run, so a failure there is never chance and
# replays by running the test again; `make test-full` (--exhaustive) draws new ones each run and prints the
# blob that replays a failure (@reproduce_failure). No example database: a fresh clone has none, and a
# database kept between runs would make the examples depend on what ran before.
hypothesis_settings.register_profile("replayable", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("exploring", database=None, print_blob=True)


def pytest_configure(config: pytest.Config) -> None:
    hypothesis_settings.load_profile("exploring" if config.getoption("--exhaustive") else "replayable")
    # The suite makes millions of short-lived objects (every request is a werkzeug request, an XML answer and a
    # botocore response): with the interpreter's default thresholds the cyclic collector ran about fifty times
    # a test and took a tenth of the CPU time. What the imports made is frozen out of the collections, and a
    # collection starts after 100,000 new objects instead of 700 (a few tens of MB more per worker).
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)


@pytest.fixture
def exhaustive(request: pytest.FixtureRequest) -> bool:
    """True under `make test-full`: sweeps take every case instead of their seeded subset."""
    return bool(request.config.getoption("--exhaustive"))


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials so nothing can ever reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def sns(aws: None) -> Any:
    return boto3.client("sns", region_name=REGION)


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def without_projection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily backup's cost report without its 12-month projection: arithmetic that sends no request,
    tested on its own (tests/test_cost_projection.py), and most of the time of a test that runs scheduled
    backups for something else."""
    from chalicelib.cost import plan_costs

    monkeypatch.setattr(plan_costs, "project_from", lambda *args, **kwargs: [])


@pytest.fixture
def without_daily_cost_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scheduled backups whose alert ends without the cost report's line: the report (a walk of the report or
    the buckets, then a tally) is tested on its own, and is a second or so of every scheduled backup that a
    test of something else only waits for."""
    from chalicelib.backup.service import BackupService

    monkeypatch.setattr(BackupService, "_cost_line", lambda *args, **kwargs: None)


# Modules whose tests read the projection a cost report carries (or show it): every other test's backups
# report their costs without it (`without_projection`).
PROJECTING_MODULES = ("test_cost_", "test_dashboard", "test_docs_examples", "test_local_stack")
# Modules whose tests read the daily backup's cost report, its alert line or the requests it sends: every
# other test's scheduled backups make none (`without_daily_cost_report`). A test elsewhere that needs it fails
# loudly (no report, or no cost line in the alert), and its module belongs here.
COSTING_MODULES = PROJECTING_MODULES + (
    "test_call_owner", "test_manifest_reads", "test_pack_backup", "test_policy", "test_schedule_and_alerts",
)


@pytest.fixture(autouse=True)
def _projection_only_where_read(request: pytest.FixtureRequest) -> None:
    module = request.module.__name__.rsplit(".", 1)[-1]
    if not module.startswith(PROJECTING_MODULES):
        request.getfixturevalue("without_projection")
    if not module.startswith(COSTING_MODULES):
        request.getfixturevalue("without_daily_cost_report")


@pytest.fixture
def without_drift_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backups that find their buckets as provisioned without reading the buckets' settings back: seven to ten
    reads a plan after every backup (chalicelib/deploy/drift.py), an eighth of the requests the whole suite
    sends, which a test of something else only waits for."""
    from chalicelib.deploy import drift

    monkeypatch.setattr(drift, "find_drift", lambda *args, **kwargs: [])


# Modules whose tests read what the drift check finds, or make buckets the check would find drifted: every
# other test's backups take their buckets as provisioned (`without_drift_checks`). A test elsewhere that
# needs the check fails loudly (a drifted bucket reported as whole), and its module belongs here.
DRIFT_MODULES = (
    "test_api_", "test_backup_engine", "test_cost_", "test_dashboard", "test_docs_", "test_drift", "test_inventory",
    "test_local_stack", "test_offsite_",
)


@pytest.fixture(autouse=True)
def _drift_checked_only_where_read(request: pytest.FixtureRequest) -> None:
    if not request.module.__name__.rsplit(".", 1)[-1].startswith(DRIFT_MODULES):
        request.getfixturevalue("without_drift_checks")


@pytest.fixture
def stage_env() -> dict[str, str]:
    return dict(STAGE_ENV)


@pytest.fixture
def plans(stage_env: dict[str, str]) -> Any:
    from chalicelib.plans_file import load_plans

    return load_plans(stage_env)


@pytest.fixture
def clients(aws: None) -> Any:
    from chalicelib.aws import Clients

    return Clients()


@pytest.fixture
def backup_buckets(s3: Any, plans: Any) -> Any:
    """The stage's backup buckets and inventory bucket, as provisioning leaves them (tests/provisioned.py)."""
    from tests.provisioned import provision_buckets

    provision_buckets(s3, plans, ACCOUNT)
    return plans


def create_table(dynamodb: Any, name: str, items: int = 0) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    rows = [
        {"PutRequest": {"Item": {"pk": {"S": f"order-{index:04d}"}, "total": {"N": str(index * 3)}, "note": {"S": f"été #{index}"}}}}
        for index in range(items)
    ]
    for start in range(0, len(rows), 25):  # BatchWriteItem's limit: 25 puts a request
        answer = dynamodb.batch_write_item(RequestItems={name: rows[start : start + 25]})
        assert not answer.get("UnprocessedItems"), answer["UnprocessedItems"]


# (source bucket names, region) -> the seeded source buckets, frozen the first time a worker seeds them.
_SEEDED_SOURCES: dict[tuple[tuple[str, ...], str], list[bytes]] = {}


def _seed_source_buckets(s3: Any, seeded: dict[str, dict[str, bytes]]) -> None:
    """The source buckets holding `seeded` (bucket -> key -> bytes): written the first time in a worker, put
    back as copies after that (tests/moto_state.py), as tests/provisioned.py does for the backup buckets."""
    from moto.s3.models import s3_backends

    from tests.moto_state import freeze, in_process, put_back

    names = tuple(seeded)
    cached = in_process(s3) and not any(name in s3_backends.bucket_accounts for name in names)
    key = (names, s3.meta.region_name)
    if cached and key in _SEEDED_SOURCES:
        for frozen in _SEEDED_SOURCES[key]:
            put_back(frozen)
        return
    for bucket, objects in seeded.items():
        s3.create_bucket(Bucket=bucket)
        for name, body in objects.items():
            s3.put_object(Bucket=bucket, Key=name, Body=body)
    if cached:
        _SEEDED_SOURCES[key] = [
            freeze(s3_backends[account][partition].buckets[name])
            for name in names
            for partition, account in [s3_backends.bucket_accounts[name]]
        ]


@pytest.fixture
def sources(s3: Any, dynamodb: Any, stage_env: dict[str, str]) -> dict[str, Any]:
    """Source buckets with a handful of objects each and a table of 50 items."""
    documents = {f"reports/report-{i}.txt": f"report {i}\n".encode() * (i + 1) for i in range(10)}
    photos = {f"2026/img-{i}.png": bytes([i]) * (100 + i) for i in range(10)}
    _seed_source_buckets(s3, {stage_env["DOCUMENTS_SOURCE_BUCKET"]: documents, stage_env["PHOTOS_SOURCE_BUCKET"]: photos})
    create_table(dynamodb, stage_env["DATABASE_TABLE"], items=50)
    return {"documents": documents, "photos": photos}


@pytest.fixture
def topic_queue(sns: Any, sqs: Any, stage_env: dict[str, str]) -> str:
    """The alert topic, with an SQS queue subscribed so tests can read what was published."""
    topic = sns.create_topic(Name=stage_env["ALERT_TOPIC_ARN"].rsplit(":", 1)[1])["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    return queue_url


def read_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Up to 10 alerts not read before, as a subscriber takes them: each is deleted once read. A message
    received and left in the queue comes back after SQS's visibility timeout (30 s of real time, whatever
    clock the test travels on), so a slow test would otherwise read an alert twice."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    if messages:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]} for index, message in enumerate(messages)])
    return [json.loads(message["Body"]) for message in messages]


@pytest.fixture
def project_dir(tmp_path: Path, stage_env: dict[str, str]) -> Path:
    """A copy of the project whose `local` stage runs backups inline against the test's buckets."""
    project = tmp_path / "project"
    (project / ".chalice").mkdir(parents=True)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["local"]["environment_variables"] = stage_env
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    shutil.copy(ROOT / "app.py", project / "app.py")
    return project


@pytest.fixture
def app_client(aws: None, project_dir: Path) -> Iterator[Any]:
    from chalice.test import Client

    import app as app_module

    app_module._clients = None  # clients must be made inside this test's mock
    with Client(app_module.app, stage_name="local", project_dir=str(project_dir)) as client:
        yield client
    app_module._clients = None


def snapshot_entries(s3: Any, bucket: str, plan: str, backup_id: str) -> list[Any]:
    from chalicelib.catalog.manifests import load_snapshot

    with load_snapshot(s3, bucket, plan, backup_id) as manifest:
        return list(manifest.entries())


def scheduled_event(client: Any, at: Any = None) -> dict[str, Any]:
    """A scheduled event as EventBridge delivers it: its time is when the rule fired (now, unless `at`).
    Chalice's generator dates it 2015, and a backup older than retention's horizon refuses to finish."""
    from chalicelib.times import utcnow

    event: dict[str, Any] = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=["arn:aws:events:us-east-1:123456789012:rule/x"]
    )
    event["time"] = (at or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event

"""The recorded-calls check knows which function made each call (tests/call_owner.py) and checks it against
that function's own policy; a session whose system code makes a call its function's role does not allow
fails, naming the function, also under pytest-xdist (the workers hand their findings to the controller)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from chalicelib.deploy.scope import (
    API_HANDLER,
    BACKUP_WORKER,
    DAILY_BACKUP,
    RESTORE_WORKER,
    RESUME_RESTORES,
    VERIFY_WORKER,
)
from tests.call_owner import OPERATOR, app_handlers
from tests.conftest import ROOT, STAGE_ENV
from tests.conftest import scheduled_event as scheduled
from tests.record_calls import violations



def test_the_handlers_are_read_from_app_py() -> None:
    import app as app_module

    chalice_app = app_module.app
    routes = {entry.view_name for methods in chalice_app.routes.values() for entry in methods.values()}
    expected = {name: API_HANDLER for name in routes}
    expected.update({f.name: f.name for f in chalice_app.pure_lambda_functions})
    expected.update({source.name: source.name for source in chalice_app.event_sources})
    assert app_handlers() == expected


def test_each_call_belongs_to_the_function_that_makes_it_when_deployed(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, s3: Any, recorded_calls: Any
) -> None:
    s3.create_bucket(Bucket="restore-target")
    backup_id = app_client.lambda_.invoke("daily_backup", scheduled(app_client)).payload["backup_id"]
    described = app_client.http.get(f"/backups/{backup_id}").json_body
    assert described["status"] == "SUCCEEDED"
    # The weekly job checks the day's slice of the stored versions, chosen by a hash of their (random) version
    # ids: some days' slice is empty, and then the verify worker reads nothing under data/.
    slice_checked = described["verification"]["checked"] > 0
    daily = recorded_calls.calls()
    body = {"backup_id": backup_id, "plan": "photos", "target": {"bucket": "restore-target", "prefix": "back/"}}
    response = app_client.http.post("/restores", headers={"Content-Type": "application/json"}, body=json.dumps(body))
    assert response.status_code == 202, response.body
    app_client.lambda_.invoke("resume_restores", scheduled(app_client))
    app_client.lambda_.invoke("heartbeat", scheduled(app_client))
    calls = recorded_calls.calls()

    def functions(operation: str, key_prefix: str = "", bucket: str = "") -> set[str]:
        return {
            c.function for c in calls
            if c.operation == operation
            and c.params.get("Key", c.params.get("Prefix", "")).startswith(key_prefix)
            and c.params.get("Bucket", "").startswith(bucket)
        }

    # The schedule's invocation backs up, records and alerts itself; the heartbeat is its own function's...
    assert functions("CopyObject", "data/") == {DAILY_BACKUP}
    assert functions("Scan") == {DAILY_BACKUP}
    assert functions("PutMetricData") == {"heartbeat"}
    # ... and hands the verify worker its id: the worker (inline here) records the weekly job, runs it and seals
    # its result.
    verifications = {c.function for c in daily if c.operation == "PutObject" and "verifications/" in c.params["Key"]}
    assert verifications == {VERIFY_WORKER}
    sealed = [c.params["Key"] for c in daily if c.operation == "PutObject" and c.params["Key"].startswith("meta/sealed/verifications/")]
    assert len(sealed) == 1
    # The daily backup's cost report (the alert's last line) asks S3 again about a sample of versions. A restore
    # heads none: it lists the selection's versions (archive state) and copies.
    assert functions("HeadObject", "data/", "test-backup") == {DAILY_BACKUP} | (
        {VERIFY_WORKER} if slice_checked else set()
    )
    assert RESTORE_WORKER in functions("ListObjectVersions", "data/", "test-backup")
    assert functions("PutObject", "meta/costs/") == {DAILY_BACKUP}
    # POST /restores records the restore; the copies are the restore worker's; the hourly check reads the queue.
    assert functions("PutObject", "meta/restores/") >= {API_HANDLER, RESTORE_WORKER}
    assert {c.function for c in calls if c.operation == "PutObject" and c.params["Key"].startswith("meta/restore-queue/")} == {API_HANDLER}
    assert functions("CopyObject", "back/") == {RESTORE_WORKER}
    assert functions("ListObjectsV2", "meta/restore-queue/") == {RESUME_RESTORES}
    assert BACKUP_WORKER not in {c.function for c in calls}
    assert violations(calls) == []


def test_the_operators_command_line_is_the_operator(
    project_dir: Path, backup_buckets: Any, sources: Any, recorded_calls: Any, capsys: Any
) -> None:
    from chalicelib import cli

    assert cli.main(["--stage", "local", "--project-dir", str(project_dir), "backup", "--plan", "photos", "--json"]) == 0
    capsys.readouterr()
    calls = recorded_calls.calls()
    assert calls and {c.function for c in calls} == {OPERATOR}


def test_a_session_whose_api_writes_backup_data_fails_naming_the_function(tmp_path: Path) -> None:
    # A session of its own, under xdist: the worker-to-controller hand-over is part of what is tested. The
    # same write is the backup writer's job; made from the API's code it must fail the run.
    (tmp_path / "test_api_writes.py").write_text(textwrap.dedent(f"""
        import boto3
        from moto import mock_aws

        from chalicelib import s3docs
        from chalicelib.api.backups import _parallel
        from chalicelib.plans_file import load_plans

        ENV = {STAGE_ENV!r}

        def test_the_api_writes_into_data():
            with mock_aws():
                s3 = boto3.client("s3", region_name="us-east-1")
                for bucket in ("test-backup-photos", "test-backup-documents"):
                    s3.create_bucket(Bucket=bucket)
                load_plans(ENV)  # the configuration whose policies the check generates
                # Two items: the API's read pool runs them on threads it starts.
                _parallel(lambda key: s3docs.put_new(s3, Bucket="test-backup-photos", Key=key, Body=b""),
                          ["data/photos/a.png", "data/photos/b.png"])
                _parallel(lambda key: s3docs.put_new(s3, Bucket="test-backup-documents", Key=key, Body=b"{{}}"),
                          ["meta/backups/1_a.json", "meta/backups/2_b.json"])
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "1", "-p", "tests.record_calls", "-p", "no:cacheprovider", "test_api_writes.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1, result.stdout
    report = result.stdout.split("AWS calls the generated policy does not allow", 1)[1]
    assert "api_handler: not allowed by its generated policy: s3:PutObject on arn:aws:s3:::test-backup-photos/data/*" in report
    # The records the API does write are not reported.
    assert "meta/" not in report

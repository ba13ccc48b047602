"""The local stack (`make run`): its seed data in-process, then the real thing end to end on random ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.catalog.manifests import manifest_key
from chalicelib.layout import data_key
from tests.conftest import ROOT, snapshot_entries
from tests.localstack_script import SCRIPT, localstack
from tests.offsite_world import delete_bucket
# How the script prints an alert: the subject between rules, then the body, then a closing rule.
ALERT = re.compile(r"^ALERT  .*\n=+\n.*?\n=+$", re.MULTILINE | re.DOTALL)
# The banner's addresses, each with the port its server bound.
BANNER = re.compile(r"Dashboard  (?P<dashboard>http://127\.0\.0\.1:\d+/) .*\n"
                    r"  API        (?P<api>http://127\.0\.0\.1:\d+) .*\n"
                    r"  Emulator   (?P<emulator>http://127\.0\.0\.1:\d+) ")


def nothing_listens_on(port: int) -> bool:
    """True once a connection to the port is refused. (Binding it would not do: another process's outgoing
    connection may have been given the same ephemeral port since.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and raw scanlines of an 8-bit RGB PNG, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        position += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour) == (8, 2)
    return width, height, zlib.decompress(chunks[1][1])


# --- seed data, in-process against moto -----------------------------------------------------------------


def test_photos_are_valid_png_images() -> None:
    images = localstack.photos()
    assert len(images) == 20
    for key, data in images.items():
        width, height, pixels = decode_png(data)
        assert len(pixels) == height * (1 + 3 * width), key
        assert len(set(pixels[1:1 + 3 * width])) > 3, f"{key} should be a gradient, not one colour"


def test_documents_have_awkward_names_and_an_empty_file() -> None:
    docs = localstack.documents()
    assert len(docs) >= 30
    assert {Path(key).suffix for key in docs} >= {".txt", ".md", ".csv", ".json"}
    assert any(" " in key for key in docs) and any("+" in key for key in docs) and any("%" in key for key in docs)
    assert any(not key.isascii() for key in docs)
    assert any("/" in key for key in docs)
    assert [key for key, body in docs.items() if not body] == ["hr/empty-placeholder.txt"]
    for key, body in docs.items():
        if key.endswith(".json"):
            json.loads(body)


def test_seeding_twice_changes_nothing(s3: Any, dynamodb: Any, sns: Any, sqs: Any) -> None:
    env = localstack.stage_environment("local")
    first = localstack.seed(s3, dynamodb, sns, sqs, env)
    second = localstack.seed(s3, dynamodb, sns, sqs, env)

    assert (second.documents, second.photos, second.orders) == (first.documents, first.photos, first.orders)
    assert second.queue_url == first.queue_url
    documents = s3.list_objects_v2(Bucket=env["DOCUMENTS_SOURCE_BUCKET"])["Contents"]
    assert len(documents) == first.documents
    photos = s3.list_objects_v2(Bucket=env["PHOTOS_SOURCE_BUCKET"])["Contents"]
    assert len(photos) == first.photos == 20
    assert dynamodb.scan(TableName=env["DATABASE_TABLE"], Select="COUNT")["Count"] == first.orders >= 200
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=env["ALERT_TOPIC_ARN"])["Subscriptions"]
    assert len(subscriptions) == 1
    restore_buckets = [name.strip() for name in env.get("RESTORE_BUCKETS", "").split(",") if name.strip()]
    assert restore_buckets
    for bucket in restore_buckets:
        # Versioned, as the deploy template makes them.
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    for plan in first.plans.plans:
        assert s3.get_bucket_versioning(Bucket=plan.bucket)["Status"] == "Enabled"
        rules = s3.get_bucket_lifecycle_configuration(Bucket=plan.bucket)["Rules"]
        # The data's rule, and the manifests' own where the plan moves them (a prefix and a size, under And).
        prefixes = [rule["Filter"].get("Prefix", rule["Filter"].get("And", {}).get("Prefix")) for rule in rules]
        manifests = [f"meta/snapshots/{plan.name}/"] if plan.lifecycle.manifest_glacier_ir_days is not None else []
        assert prefixes == ["data/", *manifests]


def test_alert_is_printed_with_subject_and_body() -> None:
    envelope = json.dumps({"Type": "Notification", "Subject": "Backup PARTIAL: 3 plan(s)", "Message": "photos  FAILED\n"})
    text = localstack.format_alert(envelope)
    assert "Backup PARTIAL: 3 plan(s)" in text and "photos  FAILED" in text


def test_a_busy_port_is_named_with_its_variable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = dict(os.environ, API_PORT="0", EMULATOR_PORT=str(port), DASHBOARD_PORT="0")
        result = subprocess.run(
            [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
        )
    assert result.returncode == 1
    assert f"port {port}" in result.stdout and "EMULATOR_PORT" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- the whole stack, as `make run` starts it ------------------------------------------------------------


class Stack:
    """scripts/localstack.py in a subprocess, its output collected line by line."""

    def __init__(self, **environ: str) -> None:
        # Every server binds a free port of its own choosing and the banner names it: a port picked here and
        # bound later by the script could be taken in between.
        self.api = self.endpoint = self.dashboard = ""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL") and k != "PLANS_FILE"}
        env.update(API_PORT="0", EMULATOR_PORT="0", DASHBOARD_PORT="0", PYTHONUNBUFFERED="1", **environ)
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        # Without a body no Content-Type, like the front page's `curl -X POST localhost:8000/backup`.
        data, headers = (None, {}) if body is None else (json.dumps(body).encode(), {"Content-Type": "application/json"})
        request = urllib.request.Request(self.api + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_until_serving(self, timeout: float) -> None:
        """Until the banner names the servers' addresses and the API answers."""
        deadline = time.monotonic() + timeout
        while not BANNER.search(self.output):
            if self.process.poll() is not None:
                pytest.fail(f"the local stack exited with {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no banner within {timeout} s:\n{self.output}")
            time.sleep(0.1)
        found = BANNER.search(self.output)
        assert found is not None
        self.dashboard, self.api, self.endpoint = found.group("dashboard"), found.group("api"), found.group("emulator")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the local stack exited with {self.process.returncode}:\n{self.output}")
            try:
                if self.request("GET", "/backups")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        pytest.fail(f"the API did not answer within {timeout} s:\n{self.output}")

    def wait_for_text(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} never appeared in the output:\n{self.output}")
            time.sleep(0.1)

    def wait_for_alert(self, backup_id: str, timeout: float) -> str:
        """The printed alert (subject line and body) about `backup_id`."""
        deadline = time.monotonic() + timeout
        while True:
            for match in ALERT.finditer(self.output):
                if backup_id in match.group(0):
                    return match.group(0)
            if time.monotonic() > deadline:
                pytest.fail(f"no alert about {backup_id} in the output:\n{self.output}")
            time.sleep(0.2)

    def client(self, service: str) -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def finished_backup(self, body: dict[str, Any] | None = None, timeout: float = 120) -> dict[str, Any]:
        """POST /backup, then its record once it is no longer RUNNING."""
        status, started = self.request("POST", "/backup", body)
        assert status == 202, started
        deadline = time.monotonic() + timeout
        while True:
            status, record = self.request("GET", f"/backups/{started['backup_id']}")
            assert status == 200, record
            if record["status"] != "RUNNING":
                return record
            assert time.monotonic() < deadline, f"backup still RUNNING:\n{self.output}"
            time.sleep(0.3)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the script's own clean shutdown also stops chalice local
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self._reader.join(5)


@pytest.fixture
def stack() -> Iterator[Stack]:
    running = Stack()
    try:
        yield running
    finally:
        running.close()


def test_make_run_serves_a_backup_of_all_three_plans_and_stops_on_ctrl_c(stack: Stack) -> None:
    stack.wait_until_serving(timeout=150)

    record = stack.finished_backup()
    backup_id = record["backup_id"]
    assert record["status"] == "SUCCEEDED", record
    assert set(record["plans"]) == {"documents", "photos", "database"}
    for name, result in record["plans"].items():
        assert result["status"] == "SUCCEEDED", (name, result)
        assert result["copied"] > 0 and result["failed"] == 0, (name, result)

    listed = stack.request("GET", "/backups")[1]["backups"]
    assert listed[0]["backup_id"] == backup_id

    env = localstack.stage_environment("local")
    plans = {plan.name: plan for plan in localstack.load_plans(env).plans}
    s3 = stack.client("s3")
    for name, plan in plans.items():
        assert s3.get_bucket_versioning(Bucket=plan.bucket)["Status"] == "Enabled"
        versions = s3.list_object_versions(Bucket=plan.bucket, Prefix="data/").get("Versions", [])
        assert len(versions) == record["plans"][name]["objects"] > 0
        assert all(version["VersionId"] not in (None, "", "null") for version in versions)
        s3.head_object(Bucket=plan.bucket, Key=manifest_key(name, backup_id))

    for source_bucket, plan_name, source_name in (
        (env["PHOTOS_SOURCE_BUCKET"], "photos", "photos"),
        (env["DOCUMENTS_SOURCE_BUCKET"], "documents", "documents"),
    ):
        keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source_bucket)
                for item in page.get("Contents", [])]
        assert keys
        for key in keys:
            original = s3.get_object(Bucket=source_bucket, Key=key)["Body"].read()
            copy = s3.get_object(Bucket=plans[plan_name].bucket, Key=data_key(source_name, key))["Body"].read()
            assert copy == original, key
            if plan_name == "photos":
                decode_png(copy)

    alert = stack.wait_for_alert(backup_id, timeout=60)
    assert "SUCCEEDED" in alert.splitlines()[0], alert
    assert all(name in alert for name in ("documents", "photos", "database")), alert

    # The dashboard: its address printed, and the backup on its page.
    assert f"Dashboard  {stack.dashboard}" in stack.output
    with urllib.request.urlopen(stack.dashboard, timeout=10) as response:
        page = response.read().decode("utf-8")
    assert response.status == 200 and backup_id in page and 'data-plan="photos"' in page

    api_port = int(stack.api.rsplit(":", 1)[1])
    emulator_port = int(stack.endpoint.rsplit(":", 1)[1])
    dashboard_port = int(stack.dashboard.rstrip("/").rsplit(":", 1)[1])
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(20) == 0, stack.output
    deadline = time.monotonic() + 10
    while not (nothing_listens_on(api_port) and nothing_listens_on(emulator_port) and nothing_listens_on(dashboard_port)):
        assert time.monotonic() < deadline, "a server still listens after Ctrl-C"
        time.sleep(0.2)
    assert "Traceback" not in stack.output, stack.output


# --- the local stack with a vault: the second copy in another emulated account and region ---------------

VAULT_PLANS = ROOT / "scripts" / "plans-with-vault.json"


def test_with_a_vault_the_newest_snapshot_is_restored_from_it_once_every_backup_bucket_is_gone() -> None:
    running = Stack(PLANS_FILE=str(VAULT_PLANS))
    try:
        running.wait_until_serving(timeout=150)
        vault_lines = [line for line in running.lines if line.lstrip().startswith("documents s3://") and "-vault" in line]
        assert vault_lines, running.output
        s3 = running.client("s3")
        env = localstack.stage_environment("local")
        documents = env["DOCUMENTS_SOURCE_BUCKET"]
        plans = localstack.load_plans({**env, "PLANS_FILE": str(VAULT_PLANS)})
        plan = plans.get("documents")
        assert plan.offsite is not None and plan.offsite.account != "123456789012"

        first = running.finished_backup({"plans": ["documents"]})
        assert first["status"] == "SUCCEEDED", first  # the replication rules are in place: no drift
        # Between the two backups: a changed document, a new one and a deleted one.
        s3.put_object(Bucket=documents, Key="README.txt", Body=b"Changed after the first backup.\n")
        s3.put_object(Bucket=documents, Key="minutes/2026-12-07 offsite.md", Body=b"# The vault\n\nIt works.\n")
        s3.delete_object(Bucket=documents, Key="marketing/slogans.txt")
        newest = running.finished_backup({"plans": ["documents"]})
        assert newest["status"] == "SUCCEEDED", newest
        backup_id = newest["backup_id"]
        expected = {key: s3.get_object(Bucket=documents, Key=key)["Body"].read()
                    for key in (item["Key"] for item in s3.list_objects_v2(Bucket=documents)["Contents"])}
        # The version each key has in the newest snapshot, as the backup bucket holds it.
        named = {entry.key: entry.version_id for entry in snapshot_entries(s3, plan.bucket, "documents", backup_id)}
        assert set(named) == set(expected)

        for each in plans.plans:
            delete_bucket(s3, each.bucket)
        assert not {each.bucket for each in plans.plans} & {b["Name"] for b in s3.list_buckets()["Buckets"]}

        role_arn = f"arn:aws:iam::{plan.offsite.account}:role/{localstack.VAULT_ADMIN_ROLE}"
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        cli_env.update(AWS_ENDPOINT_URL=running.endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_DEFAULT_REGION="us-east-1", OFFSITE_ROLE_ARN=role_arn, PLANS_FILE=str(VAULT_PLANS))
        target = env["RESTORE_BUCKETS"].split(",")[0]
        result = subprocess.run(
            [sys.executable, "-m", "chalicelib.cli", "restore", backup_id, "--plan", "documents", "--to-bucket", target,
             "--to-prefix", "from-vault/", "--from", "offsite", "--stage", "local", "--json", "--no-progress"],
            cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["status"] == "SUCCEEDED", result.stdout

        restored = {item["Key"].removeprefix("from-vault/"): s3.get_object(Bucket=target, Key=item["Key"])["Body"].read()
                    for item in s3.list_objects_v2(Bucket=target, Prefix="from-vault/")["Contents"]}
        assert restored == expected
        # Each object is the version the snapshot names, as the vault (in its own account) holds it.
        sts = running.client("sts")
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="test-vault")["Credentials"]
        vault = boto3.client("s3", endpoint_url=running.endpoint, region_name=plan.offsite.region,
                             aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                             aws_session_token=credentials["SessionToken"])
        for key, version_id in named.items():
            kept = vault.get_object(Bucket=plan.offsite.bucket, Key=data_key("documents", key), VersionId=version_id)
            assert kept["VersionId"] == version_id and kept["Body"].read() == expected[key] == restored[key], key
    finally:
        running.close()
    assert "Traceback" not in running.output, running.output

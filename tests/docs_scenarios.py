"""The scenarios whose answers the documentation shows. Each story runs on the local stage as `make run` seeds
it (scripts/localstack.py: 38 documents, 20 photos, 300 orders, the stage's buckets and alert topic), with the
API called through chalice.test.Client and the work done inline, on a clock set to 26 November 2026, 14:03
UTC; it captures what the product answered under the name of the page's example (tests/docs_examples.py).

STORIES names what each story captures, so that a page's example without a story is found without running any.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tests.docs_examples import ROOT, Answer
from tests.faults import damage_reads

JSON = {"Content-Type": "application/json"}
PLANS_FILE = ROOT / "chalicelib" / "plans.json"


@dataclass(frozen=True)
class Reply:
    """An answer of the API, with the request that got it."""

    method: str
    path: str
    status_code: int
    headers: dict[str, str]
    json_body: Any


@dataclass
class World:
    """The seeded local stage: the API's test client, the AWS double's clients (the app's own among them),
    the alert queue and the clock."""

    client: Any
    s3: Any
    sqs: Any
    queue: str
    clients: Any
    clock: Any
    env: dict[str, str]
    monkeypatch: Any

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        data = "" if body is None else json.dumps(body)
        return self._reply("POST", path, self.client.http.post(path, headers={**JSON, **(headers or {})}, body=data))

    def get(self, path: str) -> Reply:
        return self._reply("GET", path, self.client.http.get(path))

    @staticmethod
    def _reply(method: str, path: str, response: Any) -> Reply:
        return Reply(method, path, response.status_code, dict(response.headers), response.json_body)

    def hold_workers(self) -> None:
        """Backups stay RUNNING: the worker never picks them up."""
        from chalicelib.backup.service import BackupService

        self.monkeypatch.setattr(BackupService, "dispatch", lambda service, record, run_key=None: None)

    def alerts(self) -> list[str]:
        """The alerts published since the last call, as `make run` prints them in its terminal."""
        from tests.localstack_script import localstack

        printed = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return printed
            for message in messages:
                printed.append(localstack.format_alert(message["Body"]).strip("\n"))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    def bucket(self, plan: str) -> str:
        return f"{self.env['BACKUP_BUCKET_PREFIX']}-{plan}"


@dataclass
class Captured:
    answers: dict[str, Answer] = field(default_factory=dict)

    def http(self, name: str, reply: Reply) -> Any:
        """An answer shown with its status and Location header."""
        location = reply.headers.get("Location")
        headers = (("Location", location),) if location else ()
        self.answers[name] = Answer(reply.json_body, reply.status_code, headers, (reply.method, reply.path))
        return reply.json_body

    def body(self, name: str, reply: Reply) -> Any:
        self.answers[name] = Answer(reply.json_body, reply.status_code, (), (reply.method, reply.path))
        return reply.json_body

    def text(self, name: str, text: str) -> None:
        self.answers[name] = Answer(text)


def _ok(reply: Reply, status: int = 200) -> Reply:
    assert reply.status_code == status, (reply.method, reply.path, reply.status_code, reply.json_body)
    return reply


def tour(world: World, captured: Captured) -> None:
    """The quick start: a backup, its alert, the listings, a second backup, a prune, what it costs."""
    started = captured.http("backup-start", _ok(world.post("/backup"), 202))
    first = started["backup_id"]
    (alert,) = world.alerts()
    captured.text("backup-alert", alert)
    captured.body("backups-list", _ok(world.get("/backups")))
    captured.body("backup-objects", _ok(world.get(f"/backups/{first}/objects?plan=documents&prefix=finance/2026/&limit=2")))
    captured.body("plans", _ok(world.get("/plans")))
    captured.body("error-unknown-plan", world.post("/backup", {"plans": ["photo"]}))

    world.clock.shift(timedelta(minutes=11))
    second = _ok(world.post("/backup"), 202).json_body["backup_id"]
    (alert,) = world.alerts()
    captured.text("backup-alert-unchanged", alert)
    captured.body("backups-page", _ok(world.get(
        "/backups?plan=photos&status=SUCCEEDED&since=2026-11-01&until=2026-11-26T23:59:59Z&limit=1"
    )))
    captured.body("costs", _ok(world.get("/costs")))

    dry = captured.http("prune-start", _ok(world.post("/prune", {"dry_run": True}), 202))
    captured.body("prune-report", _ok(world.get(f"/prunes/{dry['prune_id']}")))
    world.alerts()
    _ok(world.post("/prune"), 202)
    (alert,) = world.alerts()
    captured.text("prune-alert", alert)
    listed = _ok(world.get("/backups")).json_body["backups"]
    assert [b["backup_id"] for b in listed] == [second, first] and listed[1]["pruned_at"], listed
    captured.body("restore-pruned", world.post("/restores", {
        "backup_id": first, "plan": "documents", "target": {"bucket": world.env["RESTORE_BUCKETS"]},
    }))


def partial(world: World, captured: Captured) -> None:
    """A backup that holds deletions back and finds its bucket changed."""
    _ok(world.post("/backup", {"plans": ["photos"]}), 202)
    source = world.env["PHOTOS_SOURCE_BUCKET"]
    keys = sorted(item["Key"] for item in world.s3.list_objects_v2(Bucket=source)["Contents"])
    for key in keys[:12]:
        world.s3.delete_object(Bucket=source, Key=key)
    world.s3.delete_bucket_encryption(Bucket=world.bucket("photos"))
    world.clock.shift(timedelta(minutes=5))
    backup_id = _ok(world.post("/backup", {"plans": ["photos"]}), 202).json_body["backup_id"]
    captured.body("backup-partial", _ok(world.get(f"/backups/{backup_id}")))


def conflict(world: World, captured: Captured) -> None:
    """A dry run with an Idempotency-Key, then a backup of the plan it still holds (the worker is held)."""
    world.hold_workers()
    key = {"Idempotency-Key": "4f0c9e9e-5d6b-4c89-9c3e-2f1d8e7a6b5c"}
    captured.http("backup-start-dry-run", _ok(world.post("/backup", {"plans": ["photos"], "dry_run": True}, key), 202))
    captured.http("backup-replayed", _ok(world.post("/backup", {"plans": ["photos"], "dry_run": True}, key), 202))
    captured.http("backup-conflict", world.post("/backup", {"plans": ["photos"]}))


def restore(world: World, captured: Captured) -> None:
    """A restore that waits for two archived versions to thaw, and the quote of the same restore."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_api import state_manager
    from moto.s3.models import s3_backends

    backup_id = _ok(world.post("/backup", {"plans": ["documents"]}), 202).json_body["backup_id"]
    bucket = world.bucket("documents")
    # What the lifecycle rule does to old versions (the emulator stores the rules but never runs them).
    for key, storage_class in (("INV-2026-0001.json", "GLACIER"), ("INV-2026-0002.json", "DEEP_ARCHIVE")):
        data_key = f"data/documents/finance/2026/invoices/{key}"
        version = world.s3.head_object(Bucket=bucket, Key=data_key)["VersionId"]
        s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, data_key, version_id=version).set_storage_class(storage_class)
    state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": 5})
    try:
        world.clock.shift(timedelta(minutes=11))
        request = {"backup_id": backup_id, "plan": "documents", "prefix": "finance/",
                   "target": {"bucket": world.env["RESTORE_BUCKETS"], "prefix": "restored/2026-11-26/"}}
        # The quote first: a restore checks its targets, and after the restore they exist.
        quoted = _ok(world.post("/restores", {**request, "dry_run": True}), 202).json_body
        captured.body("restore-quote", _ok(world.get(f"/restores/{quoted['restore_id']}")))
        started = captured.http("restore-start", _ok(world.post("/restores", request), 202))
        captured.body("restore-waiting", _ok(world.get(f"/restores/{started['restore_id']}")))
    finally:
        state_manager.unset_transition("s3::keyrestore")


def verify(world: World, captured: Captured) -> None:
    """A check of a backup answered at once (202), then its findings: a version deleted, bytes damaged."""
    backup_id = _ok(world.post("/backup", {"plans": ["documents"]}), 202).json_body["backup_id"]
    started = captured.http("verify-start", _ok(world.post(f"/backups/{backup_id}/verify", {"sample_percent": 5}), 202))
    assert _ok(world.get(f"/verifications/{started['verification_id']}")).json_body["ok"] is True
    bucket = world.bucket("documents")
    gone = "data/documents/handbook/Travel policy.md"
    world.s3.delete_object(Bucket=bucket, Key=gone, VersionId=world.s3.head_object(Bucket=bucket, Key=gone)["VersionId"])
    damage_reads(world.clients.s3, "data/documents/legal/NDA template.md")
    world.clock.shift(timedelta(minutes=2))
    started = _ok(world.post(f"/backups/{backup_id}/verify", {"sample_percent": 100}), 202).json_body
    captured.body("verification", _ok(world.get(f"/verifications/{started['verification_id']}")))


def files(world: World | None, captured: Captured) -> None:
    """What the shipped plans file holds, and how a plan that would expire kept versions is refused."""
    from chalicelib.errors import PlanError
    from chalicelib.plans_file import parse_plans

    document = json.loads(PLANS_FILE.read_text(encoding="utf-8"))
    captured.answers["plans-file"] = Answer(document)
    changed = copy.deepcopy(document)
    changed["plans"][0]["lifecycle"]["noncurrent_expiration_days"] = 400
    from tests.localstack_script import localstack

    environ = localstack.stage_environment("local")
    try:
        parse_plans(changed, environ)
    except PlanError as exc:
        captured.text("plans-error-noncurrent", str(exc))
    # The opt-in fixed time of day, as the docs show it: accepted as written, and a time not written HH:MM
    # refused with the field named.
    scheduled = copy.deepcopy(document)
    scheduled["schedule"] = {"daily_at_utc": "02:00"}
    assert parse_plans(scheduled, environ).schedule.backup_expression() == "cron(0 2 * * ? *)"
    captured.answers["plans-file-schedule"] = Answer(scheduled)
    misspelt = copy.deepcopy(scheduled)
    misspelt["schedule"]["daily_at_utc"] = "2:00"
    try:
        parse_plans(misspelt, environ, origin="plans file plans.json")
    except PlanError as exc:
        captured.text("plans-error-schedule", str(exc))


Story = Callable[[Any, Captured], None]

# Each story, with the examples it captures; `files` needs no AWS.
STORIES: dict[str, tuple[Story, tuple[str, ...]]] = {
    "tour": (tour, ("backup-start", "backup-alert", "backups-list", "backup-objects", "plans", "error-unknown-plan",
                    "backup-alert-unchanged", "backups-page", "costs", "prune-start", "prune-report", "prune-alert",
                    "restore-pruned")),
    "partial": (partial, ("backup-partial",)),
    "conflict": (conflict, ("backup-start-dry-run", "backup-replayed", "backup-conflict")),
    "restore": (restore, ("restore-start", "restore-waiting", "restore-quote")),
    "verify": (verify, ("verify-start", "verification")),
    "files": (files, ("plans-file", "plans-error-noncurrent", "plans-file-schedule", "plans-error-schedule")),
}
OFFLINE_STORIES = {"files"}

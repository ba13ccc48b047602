"""Helpers for the dashboard's tests: calling the WSGI application in-process, reading the HTML it answers as
a small tree (the standard library's parser; no browser needed), and seeding a catalog that has what the
pages must show: a failed plan with its reason, held deletions, a verification finding, a restore waiting
for a thaw and a month of history."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Any] = field(default_factory=list)  # Node or str

    def text(self) -> str:
        """The text as a browser joins it (text nodes as written), whitespace collapsed."""
        return " ".join(self._raw().split())

    def _raw(self) -> str:
        # Block-level ends separate words the way a browser's rendering does.
        inner = "".join(c._raw() if isinstance(c, Node) else c for c in self.children)
        return inner + (" " if self.tag in ("div", "li", "p", "td", "th", "tr", "dd", "dt", "br", "h1", "h2", "h3") else "")

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
                if (tag is None or child.tag == tag) and all(child.attrs.get(k) == v for k, v in wanted.items()):
                    found.append(child)
                found.extend(child.find_all(tag, **attrs))
        return found

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag or '*'} {attrs}> in the page"
        return found[0]

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def page(self) -> Node:
        return parse(self.body)


def call(app: Any, method: str, path: str, form: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
         host: str | None = None) -> Answer:
    """One request to the WSGI application, as a browser on this machine would send it."""
    body = urlencode(form or {}, doseq=True).encode("utf-8") if form is not None else b""
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": host or sorted(app.hosts)[0],
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-www-form-urlencoded" if form is not None else "",
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(response_headers)

    text = b"".join(app(environ, start_response)).decode("utf-8")
    return Answer(answer["status"], answer["headers"], text)


# --- seeding ---------------------------------------------------------------------------------------------


def history(store: Any, buckets: dict[str, str], now: datetime, days: int = 29) -> list[str]:
    """Synthetic records of daily backups over the past `days` days (one failed, two partial), for the
    charts: written as the service writes them, naming snapshots that were never written. `buckets`: each
    plan's bucket, by plan name."""
    from chalicelib.catalog.manifests import manifest_key
    from chalicelib.catalog.records import BackupRecord, PlanResult, new_backup_id
    from chalicelib.times import isoformat

    plans = list(buckets)
    ids = []
    for day in range(days, 0, -1):
        moment = (now - timedelta(days=day)).replace(hour=2, minute=0, second=0, microsecond=0, tzinfo=timezone.utc)
        status = "FAILED" if day == 12 else "PARTIAL" if day in (5, 20) else "SUCCEEDED"
        results = {}
        backup_id = new_backup_id(moment, suffix="scheduled")
        for index, name in enumerate(plans):
            plan_status = status if (status != "PARTIAL" or index == 0) else "SUCCEEDED"
            results[name] = PlanResult(
                plan=name, status=plan_status, copied=1 + day % 3, bytes_copied=(60 + 25 * (day % 7)) * (index + 1),
                unchanged=8, objects=(7, 9, 1)[index % 3] + (29 - day) // 10,
                bytes=(300, 800, 250)[index % 3] + (8, 6, 3)[index % 3] * (29 - day),
                started_at=isoformat(moment), finished_at=isoformat(moment + timedelta(minutes=4)),
                errors=["s3 source 'x': AccessDenied: Access Denied"] if plan_status == "FAILED" else [],
                snapshot=None if plan_status == "FAILED" else f"s3://{buckets[name]}/{manifest_key(name, backup_id)}",
            )
        record = BackupRecord(
            backup_id=backup_id, trigger="schedule", plans=results, status=status,
            started_at=isoformat(moment), finished_at=isoformat(moment + timedelta(minutes=4)),
        )
        store.create(record)
        ids.append(record.backup_id)
    return ids


def waiting_restore(s3: Any, catalog: str, backup_id: str, plan: str, now: datetime) -> str:
    """A restore recorded as waiting for two archived versions to thaw."""
    from chalicelib.catalog.records import new_backup_id
    from chalicelib.restore.record import RestoreRecord, RestoreStore
    from chalicelib.times import isoformat, utcnow

    store = RestoreStore(s3, catalog)
    record = RestoreRecord(
        restore_id=new_backup_id(now - timedelta(hours=1)), backup_id=backup_id, plan=plan,
        target={"bucket": "restore-target", "prefix": "r/"}, total=12, restored=10, pending_thaw=2,
        status="WAITING_FOR_THAW", expected_thaw_completion=isoformat(now + timedelta(hours=4)),
        created_at=isoformat(now - timedelta(hours=1)),
    )
    etag = store.create(record)
    record.updated_at = isoformat(utcnow())
    store.replace(record, etag)
    return record.restore_id


@dataclass
class World:
    """What `seed` made: the ids the pages must show."""

    history: list[str]
    first: str  # every plan succeeded
    latest: str  # documents PARTIAL (deletions held back), photos FAILED (its source is gone), database SUCCEEDED
    held_back: int
    missing_key: str  # a stored version deleted behind the system's back, found by the verification job
    verification: str
    restore: str
    held_prune: str  # the database plan's latest prune, held by the prune guard


def seed(settings: Any, clients: Any, env: dict[str, str], now: datetime) -> World:
    """Buckets as provisioned, sources, a month of history, two real backups, a verification that found a
    missing version, and a restore waiting for a thaw."""
    from chalicelib.backup.service import BackupService
    from chalicelib.catalog.manifests import load_snapshot
    from chalicelib.catalog.records import RecordStore, new_backup_id
    from tests.conftest import ACCOUNT
    from tests.provisioned import provision_buckets
    from chalicelib.times import utcnow
    from chalicelib.verify.checks import weekly_slice
    from chalicelib.verify.job import VerificationJob

    s3, plans = clients.s3, settings.plans
    provision_buckets(s3, plans, ACCOUNT)
    documents, photos = env["DOCUMENTS_SOURCE_BUCKET"], env["PHOTOS_SOURCE_BUCKET"]
    for bucket in (documents, photos, "restore-target"):
        s3.create_bucket(Bucket=bucket)
    for index in range(10):
        s3.put_object(Bucket=documents, Key=f"reports/report-{index}.txt", Body=f"report {index}\n".encode() * (index + 1))
        s3.put_object(Bucket=photos, Key=f"2026/img-{index}.png", Body=bytes([index]) * (100 + index))
    table = env["DATABASE_TABLE"]
    clients.dynamodb.create_table(
        TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )
    for index in range(20):
        clients.dynamodb.put_item(TableName=table, Item={"pk": {"S": f"order-{index:03d}"}, "total": {"N": str(index)}})

    records = RecordStore(s3, plans.catalog_bucket)
    past = history(records, {plan.name: plan.bucket for plan in plans.plans}, now)
    service = BackupService(settings, clients)
    first = service.start(None, trigger="api")
    service.run(first.backup_id)
    # 4 of 10 documents vanish (past the 20% guard: held back), and the photos' source bucket is gone.
    for index in range(4):
        s3.delete_object(Bucket=documents, Key=f"reports/report-{index}.txt")
    for index in range(10):
        s3.delete_object(Bucket=photos, Key=f"2026/img-{index}.png")
    s3.delete_bucket(Bucket=photos)
    latest = service.start(None, trigger="api")
    service.run(latest.backup_id)

    # A stored version of the newest snapshot is deleted behind the system's back; the weekly job of its
    # slice finds it missing.
    plan = plans.get("documents")
    with load_snapshot(s3, plan.bucket, plan.name, latest.backup_id) as manifest:
        victim = next(entry for entry in manifest.entries() if entry.key == "reports/report-7.txt")
    s3.delete_object(Bucket=plan.bucket, Key=victim.data_key, VersionId=victim.version_id)
    job = VerificationJob(plans, clients, None, 4)
    # (its id's time, after the newest snapshot, says which snapshots it covers)
    started = job.start(new_backup_id(utcnow()), weekday=weekly_slice(victim), trigger="cli")
    job.run(started.job_id)

    restore = waiting_restore(s3, plans.catalog_bucket, first.backup_id, "photos", now)
    return World(past, first.backup_id, latest.backup_id, 4, victim.key, started.job_id, restore,
                 held_prune(s3, plans.catalog_bucket, "database", now))


def held_prune(s3: Any, catalog: str, plan: str, now: datetime) -> str:
    """A prune of `plan` the prune guard held back an hour ago, recorded as the prune job records it."""
    from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStore, new_prune_id
    from chalicelib.times import isoformat

    at = now - timedelta(hours=1)
    reason = "it would remove 5 of 6 snapshots (83%)"
    result = PlanPrune(plan=plan, phase="done", status="HELD", guard={"held": True, "reasons": [reason], "limit": 0.3},
                       warnings=[f"prune of plan {plan} held: {reason}, more than max_prune_fraction 0.3. Nothing was deleted."])
    record = PruneRecord(prune_id=new_prune_id(at), trigger="schedule", plan_names=[plan], status="HELD",
                         started_at=isoformat(at), finished_at=isoformat(at), plans={plan: result})
    PruneStore(s3, catalog).create(record)
    return record.prune_id

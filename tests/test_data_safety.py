"""Ways a kept snapshot could stop being restorable, each closed and shown closed by version id.

Every test here reads what a snapshot names by its version id and checks that version holds the source's
bytes: comparing contents alone hides the bugs that lose data (another run's version, a `null` version, a
superseded one that a rule may one day expire).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from botocore.awsrequest import AWSResponse

from chalicelib import transfer
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.service import BackupService
from chalicelib.backup.sources import S3SourceReader, make_reader
from chalicelib.catalog.manifests import list_snapshot_keys
from chalicelib.config import Settings
from chalicelib.errors import PlanError
from chalicelib.layout import MAX_KEY_BYTES, data_key
from chalicelib.plans import DirectorySource, Lifecycle, ObjectLock, Plan, S3Source
from chalicelib.plans_file import load_plans, parse_plans
from tests.conftest import read_alerts
from tests.record_calls import the_tests_own_calls
from tests.stored import assert_versions_hold, entries_of, versions_written

MiB = 1024**2
BACKUP = "safety-backup"


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The backup ids these tests name (26 and 27 November 2026) stay within MAX_BACKUP_DAYS of the clock."""
    with time_machine.travel(datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=BACKUP)
    s3.put_bucket_versioning(Bucket=BACKUP, VersioningConfiguration={"Status": "Enabled"})
    return BACKUP


def plan_of(*sources: Any, **options: Any) -> Plan:
    return Plan(name="safety", bucket=BACKUP, sources=tuple(sources), lifecycle=Lifecycle(transitions=()), **options)


def run(plan: Plan, s3: Any, backup_id: str, threshold: int | None = None, **options: Any) -> Any:
    def factory(source: Any) -> Any:
        if threshold is not None and isinstance(source, S3Source):
            return S3SourceReader(s3, source, multipart_threshold=threshold)
        reader = make_reader(source, s3, None)
        if threshold is not None:
            reader.multipart_threshold = threshold
        return reader

    return PlanBackup(plan, s3, backup_id, factory, max_workers=4, **options).run()


def fill(s3: Any, name: str, objects: dict[str, bytes]) -> None:
    s3.create_bucket(Bucket=name)
    for key, body in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=body)


def after_call(client: Any, operation: str, action: Any) -> None:
    """Run `action(params, parsed)` once the client has S3's answer to `operation`."""

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["safety_params"] = dict(params)

    def handler(parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        action(context.get("safety_params", {}), parsed)

    client.meta.events.register(f"provide-client-params.s3.{operation}", remember)
    client.meta.events.register(f"after-call.s3.{operation}", handler)


# --------------------------------------------------------------------------------------------------------
# Version identity


def test_a_multipart_copy_records_the_version_its_own_write_made(
    s3: Any, clients: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run writes the same key right after this run's multipart copy completes: the entry names this
    run's version (the one CompleteMultipartUpload answered), not the newer one."""
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    body = b"A" * (11 * MiB)
    fill(s3, "safety-src", {"big.bin": body})
    completed: list[str] = []

    def concurrent_write(params: dict[str, Any], parsed: dict[str, Any]) -> None:
        completed.append(parsed["VersionId"])
        with the_tests_own_calls():
            s3.put_object(Bucket=BACKUP, Key=params["Key"], Body=b"another run's bytes")

    after_call(clients.s3, "CompleteMultipartUpload", concurrent_write)
    result = run(plan_of(S3Source(name="src", bucket="safety-src")), clients.s3, "20261126T000000000Z-a", 5 * MiB)
    assert result.status == "SUCCEEDED", result
    (entry,) = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")
    newest = versions_written(s3, BACKUP, entry.data_key)[0]
    assert entry.version_id == completed[0] != newest
    assert_versions_hold(s3, BACKUP, [entry], {("src", "big.bin"): body})


def test_a_multipart_upload_records_the_version_its_own_write_made(
    tmp_path: Path, s3: Any, clients: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run writes the key right after this run's multipart upload completes: the entry names this
    upload's version, with the size and SHA-256 of the bytes it stored."""
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    (tmp_path / "big.bin").write_bytes(b"1" * (12 * MiB))
    completed: list[str] = []

    def concurrent_write(params: dict[str, Any], parsed: dict[str, Any]) -> None:
        completed.append(parsed["VersionId"])
        with the_tests_own_calls():
            s3.put_object(Bucket=BACKUP, Key=params["Key"], Body=b"another run's bytes")

    after_call(clients.s3, "CompleteMultipartUpload", concurrent_write)
    plan = plan_of(DirectorySource(name="files", path=str(tmp_path)))
    assert run(plan, clients.s3, "20261126T000000000Z-a", 5 * MiB).status == "SUCCEEDED"
    (entry,) = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")
    assert entry.version_id == completed[0] != versions_written(s3, BACKUP, entry.data_key)[0]
    assert_versions_hold(s3, BACKUP, [entry], {("files", "big.bin"): b"1" * (12 * MiB)})


def test_a_file_rewritten_while_its_parts_are_sent_is_never_stored_torn(
    tmp_path: Path, s3: Any, clients: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is rewritten in place after its first part went out: the upload is aborted before it becomes
    a version, the object fails for this run (naming why), and the snapshot keeps what it had."""
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    path = tmp_path / "big.bin"
    path.write_bytes(b"1" * (12 * MiB))
    plan = plan_of(DirectorySource(name="files", path=str(tmp_path)))
    assert run(plan, clients.s3, "20261126T000000000Z-a", 5 * MiB).status == "SUCCEEDED"
    (before,) = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")
    path.write_bytes(b"2" * (12 * MiB))  # changed since: the next backup uploads it
    parts: list[int] = []

    def rewrite_midway(params: dict[str, Any], parsed: dict[str, Any]) -> None:
        parts.append(params["PartNumber"])
        if len(parts) == 1:
            path.write_bytes(b"3" * (13 * MiB))

    after_call(clients.s3, "UploadPart", rewrite_midway)
    result = run(plan, clients.s3, "20261127T000000000Z-b", 5 * MiB)
    assert (result.status, result.failed, result.copied) == ("PARTIAL", 1, 0)
    assert "changed while it was being read" in result.errors[0]
    (after,) = entries_of(s3, BACKUP, "safety", "20261127T000000000Z-b")
    assert after.version_id == before.version_id
    assert versions_written(s3, BACKUP, before.data_key) == [before.version_id]
    assert s3.list_multipart_uploads(Bucket=BACKUP).get("Uploads", []) == []
    assert_versions_hold(s3, BACKUP, [after], {("files", "big.bin"): b"1" * (12 * MiB)})


def test_a_file_that_changes_while_read_is_recorded_as_stored(
    tmp_path: Path, s3: Any, clients: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file replaced between the listing (which saw its size) and the upload: the entry describes
    the bytes that went to S3, never the size the listing saw."""
    path = tmp_path / "report.txt"
    path.write_bytes(b"short")
    source = DirectorySource(name="files", path=str(tmp_path))
    from chalicelib.backup import sources as sources_module

    real_list = sources_module.DirectorySourceReader.list_objects

    def list_then_change(self: Any, *bounds: Any, **hints: Any) -> Any:
        for obj in real_list(self, *bounds, **hints):
            path.write_bytes(b"a much longer text, written after the listing")
            yield obj

    monkeypatch.setattr(sources_module.DirectorySourceReader, "list_objects", list_then_change)
    assert run(plan_of(source), clients.s3, "20261126T000000000Z-a").status == "SUCCEEDED"
    (entry,) = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")
    assert entry.size == len(b"a much longer text, written after the listing")
    assert_versions_hold(s3, BACKUP, [entry], {("files", "report.txt"): path.read_bytes()})


def test_the_run_that_loses_the_manifest_race_reports_the_manifest_that_exists(
    s3: Any, clients: Any, bucket: str
) -> None:
    """Two invocations of one backup: the second writes its manifest first (with three more objects, added
    meanwhile). The first one's result must describe that manifest, not its own counts."""
    fill(s3, "safety-src", {f"doc/{i}": f"{i}".encode() for i in range(10)})
    plan = plan_of(S3Source(name="src", bucket="safety-src", prefix="doc/"))
    other: list[Any] = []

    def the_other_invocation_first(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Key", "").endswith(".jsonl.gz") and not other:
            with the_tests_own_calls():
                for i in range(10, 13):
                    s3.put_object(Bucket="safety-src", Key=f"doc/{i}", Body=b"late")
            other.append(run(plan, s3, "20261126T000000000Z-same"))

    clients.s3.meta.events.register("provide-client-params.s3.PutObject", the_other_invocation_first)
    loser = run(plan, clients.s3, "20261126T000000000Z-same")
    assert other[0].copied == 13 and other[0].objects == 13
    assert (loser.copied, loser.objects, loser.snapshot) == (13, 13, other[0].snapshot)
    (key,) = list_snapshot_keys(s3, BACKUP, "safety")
    entries = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-same")
    assert len(entries) == 13
    assert_versions_hold(s3, BACKUP, entries)


def test_two_deliveries_at_once_name_one_runs_versions_and_each_holds_its_bytes(
    s3: Any, backup_buckets: Any, stage_env: dict[str, str]
) -> None:
    """Both deliveries copy every object; one manifest wins. Every entry names a version of the winning run,
    with the source's bytes; the other run's versions are named by no snapshot (pruned as orphans later)."""
    from datetime import datetime, timezone

    documents = {f"doc/{i:02d}.txt": f"document {i}".encode() * (i + 1) for i in range(12)}
    fill(s3, stage_env["DOCUMENTS_SOURCE_BUCKET"], documents)
    settings = Settings.from_environ(stage_env)
    plan = settings.plans.get("documents")
    writes: dict[str, list[str]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def deliver() -> None:
        from chalicelib.aws import Clients

        clients = Clients()
        mine: list[str] = []
        after_call(clients.s3, "CopyObject", lambda params, parsed: mine.append(parsed["VersionId"]))
        barrier.wait()
        record = BackupService(settings, clients).run_scheduled(datetime(2026, 11, 26, 2, tzinfo=timezone.utc))
        with lock:
            writes[threading.current_thread().name] = mine
            results.append(record)

    threads = [threading.Thread(target=deliver, name=f"delivery-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backup_id = results[0].backup_id
    entries = entries_of(s3, plan.bucket, "documents", backup_id)
    named = {e.version_id for e in entries}
    winners = [name for name, written in writes.items() if named <= set(written)]
    assert len(winners) == 1, "every entry must come from one run's writes"
    assert_versions_hold(s3, plan.bucket, entries, {("documents", k): v for k, v in documents.items()})


# --------------------------------------------------------------------------------------------------------
# Never write where history is not kept


def test_a_bucket_with_versioning_suspended_gets_nothing_and_the_plan_fails(
    s3: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str], topic_queue: str, sqs: Any
) -> None:
    from chalicelib.aws import Clients

    plan = backup_buckets.get("documents")
    s3.put_bucket_versioning(Bucket=plan.bucket, VersioningConfiguration={"Status": "Suspended"})
    service = BackupService(Settings.from_environ(stage_env), Clients())
    record = service.run(service.start(["documents", "photos"], trigger="api").backup_id)
    result = record.plans["documents"]
    assert (record.status, result.status, result.copied) == ("PARTIAL", "FAILED", 0)
    assert "versioning is Suspended" in result.errors[0] and "nothing was written" in result.errors[0]
    assert record.plans["photos"].status == "SUCCEEDED"
    listing = s3.list_object_versions(Bucket=plan.bucket, Prefix="data/")
    assert "Versions" not in listing
    assert list_snapshot_keys(s3, plan.bucket, "documents") == []
    (alert,) = read_alerts(sqs, topic_queue)
    assert "versioning is Suspended" in alert["Message"]


def test_the_settings_check_overlaps_the_listing_of_snapshots_and_still_comes_before_any_write(
    s3: Any, clients: Any, bucket: str
) -> None:
    """The bucket's versioning and the plan's snapshots are read at once (one round trip, not two); a slow
    answer that versioning is suspended still stops the plan before it writes anything."""
    fill(s3, "safety-src", {f"k{i}": b"x" for i in range(5)})
    s3.put_bucket_versioning(Bucket=BACKUP, VersioningConfiguration={"Status": "Suspended"})
    events: list[str] = []
    snapshots_listed = threading.Event()

    def slow_check(**kwargs: Any) -> None:
        events.append("versioning asked")
        # S3 slow to answer: the answer waits until the listing of snapshots has gone out, which it can only
        # do if the two are asked at once (asked one after the other, the wait runs out and the order shows it).
        snapshots_listed.wait(30)

    def listed(params: dict[str, Any], **kwargs: Any) -> None:
        events.append(f"listed {params.get('Prefix')}")
        if str(params.get("Prefix", "")).startswith("meta/snapshots/"):
            snapshots_listed.set()

    def answered(**kwargs: Any) -> None:
        events.append("versioning answered")

    clients.s3.meta.events.register("before-call.s3.GetBucketVersioning", slow_check)
    clients.s3.meta.events.register("after-call.s3.GetBucketVersioning", answered)
    clients.s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", listed)
    result = run(plan_of(S3Source(name="src", bucket="safety-src")), clients.s3, "20261126T000000000Z-a")
    assert result.status == "FAILED" and "versioning is Suspended" in result.errors[0]
    assert events.index("listed meta/snapshots/safety/") < events.index("versioning answered")
    assert "Versions" not in s3.list_object_versions(Bucket=BACKUP)
    # The source was never listed: nothing is read for copying before the verdict.
    assert not any(event.startswith("listed") and "snapshots" not in event for event in events)


def test_each_range_of_a_split_plan_writes_nothing_into_a_bucket_with_versioning_suspended(
    s3: Any, clients: Any, bucket: str
) -> None:
    from chalicelib.backup import ranges

    fill(s3, "safety-src", {f"k{i}": b"x" for i in range(6)})
    s3.put_bucket_versioning(Bucket=BACKUP, VersioningConfiguration={"Status": "Suspended"})
    split = ranges.Split(previous=None, bounds=[(0, "k2")])
    plan = plan_of(S3Source(name="src", bucket="safety-src"))
    for segment in (0, 1):
        result = ranges.run_range(plan, clients, "20261126T000000000Z-a", split, segment, max_workers=4)
        assert result.status == "FAILED" and "versioning is Suspended" in result.errors[0], segment
    assert "Versions" not in s3.list_object_versions(Bucket=BACKUP, Prefix="data/")


def test_a_plan_that_asks_for_object_lock_writes_nothing_into_a_bucket_without_it(s3: Any, clients: Any, bucket: str) -> None:
    fill(s3, "safety-src", {"a": b"a"})
    plan = plan_of(S3Source(name="src", bucket="safety-src"), object_lock=ObjectLock(mode="GOVERNANCE", days=30))
    result = run(plan, clients.s3, "20261126T000000000Z-a")
    assert result.status == "FAILED" and "Object Lock is off" in result.errors[0]
    assert "Versions" not in s3.list_object_versions(Bucket=BACKUP)


def test_a_write_answered_without_a_version_id_stops_the_plan(s3: Any, clients: Any, bucket: str) -> None:
    """Versioning switched off during the run: S3 answers writes without a version id. No `null` version ever
    enters a manifest; the plan fails naming the cause."""
    fill(s3, "safety-src", {f"k{i}": b"x" for i in range(5)})

    def without_version(http_response: Any, parsed: dict[str, Any], **kwargs: Any) -> None:
        parsed.pop("VersionId", None)

    clients.s3.meta.events.register("after-call.s3.CopyObject", without_version)
    result = run(plan_of(S3Source(name="src", bucket="safety-src")), clients.s3, "20261126T000000000Z-a")
    assert result.status == "FAILED" and "without a version id" in result.errors[0]
    assert list_snapshot_keys(s3, BACKUP, "safety") == []


# --------------------------------------------------------------------------------------------------------
# The deletion guard cannot be bypassed by accident


def test_a_small_source_emptied_by_a_mistyped_prefix_is_held_even_in_a_large_plan(s3: Any, clients: Any, bucket: str) -> None:
    fill(s3, "safety-big", {f"big/{i:03d}": b"b" for i in range(100)})
    fill(s3, "safety-small", {f"small/{i}": b"s" for i in range(5)})
    sources = (S3Source(name="big", bucket="safety-big", prefix="big/"), S3Source(name="small", bucket="safety-small", prefix="small/"))
    first = run(plan_of(*sources), clients.s3, "20261126T000000000Z-a")
    assert first.objects == 105
    mistyped = (sources[0], dataclasses.replace(sources[1], prefix="smal/"))
    held = run(plan_of(*mistyped), clients.s3, "20261127T000000000Z-b")
    assert (held.status, held.deleted, held.deletions_held_back) == ("PARTIAL", 0, 5)
    assert any("source 'small' lists no objects at all" in w for w in held.warnings)
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=BACKUP)


def test_one_source_losing_more_than_its_share_is_held_even_when_the_plan_total_is_small(
    s3: Any, clients: Any, bucket: str
) -> None:
    fill(s3, "safety-big", {f"big/{i:03d}": b"b" for i in range(100)})
    fill(s3, "safety-small", {f"small/{i}": b"s" for i in range(5)})
    sources = (S3Source(name="big", bucket="safety-big", prefix="big/"), S3Source(name="small", bucket="safety-small", prefix="small/"))
    run(plan_of(*sources), clients.s3, "20261126T000000000Z-a")
    for i in range(3):  # 3 of 105 for the plan (3%), 3 of 5 for the source (60%)
        s3.delete_object(Bucket="safety-small", Key=f"small/{i}")
    held = run(plan_of(*sources), clients.s3, "20261127T000000000Z-b")
    assert (held.deleted, held.deletions_held_back) == (0, 3)
    assert any("3 of 5 objects (60%) disappeared from source 'small'" in w for w in held.warnings)


def test_slow_erosion_over_the_window_is_held(s3: Any, clients: Any, bucket: str) -> None:
    """15% a day passes the per-run limit of 20%, but the third day takes the week past 30%."""
    fill(s3, "safety-src", {f"k{i:03d}": b"x" for i in range(100)})
    plan = plan_of(S3Source(name="src", bucket="safety-src"))
    # Each backup runs on its own day (a backup finishing days after its id's time is abandoned).
    with time_machine.travel(datetime(2026, 11, 20, 0, 0, 1, tzinfo=timezone.utc), tick=True) as clock:
        assert run(plan, clients.s3, "20261120T000000000Z-d0").status == "SUCCEEDED"
        remaining = [f"k{i:03d}" for i in range(100)]
        outcomes = []
        for day in range(1, 4):
            clock.shift(timedelta(days=1))
            count = len(remaining) * 15 // 100
            for key in remaining[:count]:
                s3.delete_object(Bucket="safety-src", Key=key)
            result = run(plan, clients.s3, f"202611{20 + day}T000000000Z-d{day}")
            outcomes.append((result.deleted, result.deletions_held_back))
            if result.deleted:
                remaining = remaining[count:]
    assert outcomes[0] == (15, 0) and outcomes[1] == (12, 0)
    assert outcomes[2] == (0, 10)


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 1.5, -0.1])
def test_the_deletion_share_is_strictly_between_zero_and_one(value: float) -> None:
    document = {"plans": [{"name": "p", "bucket": "a-bucket", "sources": [{"type": "s3", "name": "s", "bucket": "src-bucket"}],
                           "max_delete_fraction": value}]}
    with pytest.raises(PlanError, match=r"plan 'p', field 'max_delete_fraction': must be strictly between 0 and 1"):
        parse_plans(document, {})


def test_an_intended_mass_deletion_is_allowed_for_one_run_and_said_so(
    app_client: Any, backup_buckets: Any, sources: Any, s3: Any, stage_env: dict[str, str], sqs: Any, topic_queue: str
) -> None:
    source = stage_env["DOCUMENTS_SOURCE_BUCKET"]
    headers = {"Content-Type": "application/json"}
    app_client.http.post("/backup", headers=headers, body=b'{"plans": ["documents"]}')
    for i in range(6):
        s3.delete_object(Bucket=source, Key=f"reports/report-{i}.txt")
    read_alerts(sqs, topic_queue)
    held = app_client.http.post("/backup", headers=headers, body=b'{"plans": ["documents"]}').json_body
    held_record = app_client.http.get(f"/backups/{held['backup_id']}").json_body
    assert held_record["plans"]["documents"]["deletions_held_back"] == 6
    read_alerts(sqs, topic_queue)
    allowed = app_client.http.post(
        "/backup", headers=headers, body=b'{"plans": ["documents"], "allow_deletions": ["documents"]}'
    ).json_body
    record = app_client.http.get(f"/backups/{allowed['backup_id']}").json_body
    result = record["plans"]["documents"]
    assert record["allow_deletions"] == ["documents"]
    assert (result["deleted"], result["deletions_held_back"], result["deletions_allowed"]) == (6, 0, 6)
    assert any("ALLOWED" in w for w in result["warnings"])
    (alert,) = read_alerts(sqs, topic_queue)
    assert "Mass deletions allowed for: documents" in alert["Message"] and "6 DELETIONS ALLOWED" in alert["Message"]
    # Only for that run: a plan it does not back up cannot be named, and a bad value is a 400.
    for body in (b'{"plans": ["documents"], "allow_deletions": ["photos"]}', b'{"allow_deletions": "documents"}'):
        response = app_client.http.post("/backup", headers=headers, body=body)
        assert response.status_code == 400 and "allow_deletions" in response.json_body["Message"]


# --------------------------------------------------------------------------------------------------------
# Sources that cannot be copied as they are


def test_objects_archived_at_the_source_are_skipped_and_listed_not_failed(s3: Any, clients: Any, bucket: str) -> None:
    fill(s3, "safety-src", {"warm.txt": b"warm"})
    s3.put_object(Bucket="safety-src", Key="cold.txt", Body=b"cold", StorageClass="GLACIER")
    s3.put_object(Bucket="safety-src", Key="colder.txt", Body=b"colder", StorageClass="DEEP_ARCHIVE")
    result = run(plan_of(S3Source(name="src", bucket="safety-src")), clients.s3, "20261126T000000000Z-a")
    assert (result.status, result.failed, result.copied) == ("SUCCEEDED", 0, 1)
    assert result.sources["src"]["archived_at_source"] == 2
    assert any("2 object(s) archived at the source" in w and "cold.txt" in w for w in result.warnings)
    entries = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")
    assert [e.key for e in entries] == ["warm.txt"]
    assert_versions_hold(s3, BACKUP, entries, {("src", "warm.txt"): b"warm"})


def test_archived_objects_of_a_thaw_source_are_thawed_then_copied_by_a_later_run(
    s3: Any, clients: Any, bucket: str, recorded_calls: Any
) -> None:
    """The first run finds the object archived, asks S3 to thaw it (a warning, not a failure); once it is
    readable (the emulator thaws at once; S3 takes hours), the next run copies it."""
    s3.create_bucket(Bucket="safety-src")
    s3.put_object(Bucket="safety-src", Key="cold.txt", Body=b"cold bytes", StorageClass="GLACIER")
    plan = plan_of(S3Source(name="src", bucket="safety-src", archived="thaw"))
    first = run(plan, clients.s3, "20261126T000000000Z-a")
    assert (first.status, first.failed, first.copied, first.sources["src"]["thawing_at_source"]) == ("SUCCEEDED", 0, 0, 1)
    (thaw,) = [c for c in recorded_calls.calls() if c.operation == "RestoreObject"]
    assert (thaw.params["Bucket"], thaw.params["Key"]) == ("safety-src", "cold.txt")
    assert entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a") == []
    second = run(plan, clients.s3, "20261127T000000000Z-b")
    assert second.copied == 1, second
    assert_versions_hold(s3, BACKUP, entries_of(s3, BACKUP, "safety", "20261127T000000000Z-b"), {("src", "cold.txt"): b"cold bytes"})


def test_sse_c_objects_are_skipped_with_that_reason(s3: Any, clients: Any, bucket: str) -> None:
    fill(s3, "safety-src", {"plain.txt": b"plain", "secret.bin": b"needs a customer key"})

    def refuse(params: dict[str, Any], **kwargs: Any) -> Any:
        if params.get("CopySource", {}).get("Key") == "secret.bin":
            message = ("The object was stored using a form of Server Side Encryption. The correct parameters must "
                       "be provided to retrieve the object.")
            http = AWSResponse("https://s3.amazonaws.com/", 400, {}, None)
            return http, {"Error": {"Code": "InvalidRequest", "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    clients.s3.meta.events.register("before-call.s3.CopyObject", lambda params, **kw: refuse(kw["context"].get("safety_params", {})))
    clients.s3.meta.events.register("provide-client-params.s3.CopyObject", lambda params, context, **kw: context.update(safety_params=dict(params)))
    result = run(plan_of(S3Source(name="src", bucket="safety-src")), clients.s3, "20261126T000000000Z-a")
    assert (result.status, result.failed, result.copied, result.sources["src"]["sse_c"]) == ("SUCCEEDED", 0, 1, 1)
    assert any("SSE-C" in w and "secret.bin" in w for w in result.warnings)


def test_a_change_to_metadata_or_tags_alone_is_not_backed_up(s3: Any, clients: Any, bucket: str) -> None:
    """Pinned decision (docs/how-a-backup-works.md, "What is backed up of an object"): an object is copied when
    its content changes (ETag and size); metadata or tags changed alone keep the version the snapshot already
    has, with its old ones."""
    s3.create_bucket(Bucket="safety-src")
    s3.put_object(Bucket="safety-src", Key="doc", Body=b"same bytes", Metadata={"owner": "ann"})
    plan = plan_of(S3Source(name="src", bucket="safety-src"))
    first = run(plan, clients.s3, "20261126T000000000Z-a")
    s3.copy_object(Bucket="safety-src", Key="doc", CopySource={"Bucket": "safety-src", "Key": "doc"},
                   Metadata={"owner": "bob"}, MetadataDirective="REPLACE")
    s3.put_object_tagging(Bucket="safety-src", Key="doc", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    second = run(plan, clients.s3, "20261127T000000000Z-b")
    assert (first.copied, second.copied, second.unchanged) == (1, 0, 1)
    (old,) = entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")
    (new,) = entries_of(s3, BACKUP, "safety", "20261127T000000000Z-b")
    assert new.version_id == old.version_id
    assert s3.head_object(Bucket=BACKUP, Key=new.data_key, VersionId=new.version_id)["Metadata"] == {"owner": "ann"}


def test_a_source_kms_key_is_granted_decrypt_and_nothing_wider(stage_env: dict[str, str], tmp_path: Path) -> None:
    import json

    from chalicelib.deploy.policy import generate, settings_scope

    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    document = json.loads(Path("chalicelib/plans.json").read_text())
    document["plans"][0]["sources"][0]["kms_key_id"] = key
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(document))
    settings = Settings.from_environ({**stage_env, "PLANS_FILE": str(path)})
    statements = generate(settings_scope("org-backup", "test", settings), "backup_worker")["Statement"]
    decrypting = [s for s in statements if "kms:Decrypt" in s["Action"]]
    assert [s["Resource"] for s in decrypting if key in s["Resource"]] == [[key]]
    assert all("*" not in resource for s in decrypting for resource in s["Resource"])
    with pytest.raises(PlanError, match="kms_key_id"):
        document["plans"][0]["sources"][0]["kms_key_id"] = "not a key"
        path.write_text(json.dumps(document))
        load_plans({**stage_env, "PLANS_FILE": str(path)})


# --------------------------------------------------------------------------------------------------------
# Keys


def test_a_source_key_too_long_for_its_backup_key_gets_a_short_name_and_restores_as_itself(
    s3: Any, clients: Any, bucket: str
) -> None:
    long_key = "deep/" + "d" * 1012  # 1,017 bytes: a valid source key, 1,026 bytes once under data/src/
    fill(s3, "safety-src", {long_key: b"long", "short": b"short"})
    plan = plan_of(S3Source(name="src", bucket="safety-src"))
    assert run(plan, clients.s3, "20261126T000000000Z-a").status == "SUCCEEDED"
    entries = {e.key: e for e in entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")}
    assert set(entries) == {long_key, "short"}
    stored_as = entries[long_key].data_key
    assert stored_as == data_key("src", long_key) and stored_as.startswith("data/~long/src/")
    assert len(stored_as.encode()) <= MAX_KEY_BYTES and entries["short"].data_key == "data/src/short"
    assert_versions_hold(s3, BACKUP, entries.values(), {("src", long_key): b"long", ("src", "short"): b"short"})
    # Unchanged next time: the same short name, nothing copied.
    assert run(plan, clients.s3, "20261127T000000000Z-b").copied == 0


@pytest.mark.parametrize("prefix, plain, ok", [("docs/", False, True), ("docs", False, False), ("docs", True, True), ("", False, True)])
def test_a_source_prefix_is_a_folder_or_declared_a_plain_prefix(prefix: str, plain: bool, ok: bool) -> None:
    source: dict[str, Any] = {"type": "s3", "name": "s", "bucket": "src-bucket", "prefix": prefix}
    if plain:
        source["plain_prefix"] = True
    document = {"plans": [{"name": "p", "bucket": "a-bucket", "sources": [source]}]}
    if ok:
        assert parse_plans(document, {}).plans[0].sources[0].prefix == prefix
    else:
        with pytest.raises(PlanError, match=r"plan 'p', sources\[0\], field 'prefix': 'docs' does not end in '/'"):
            parse_plans(document, {})


def test_a_folder_prefix_never_takes_a_sibling_folder(s3: Any, clients: Any, bucket: str) -> None:
    fill(s3, "safety-src", {"docs/a": b"a", "docs-old/b": b"b", "docs.txt": b"c"})
    run(plan_of(S3Source(name="src", bucket="safety-src", prefix="docs/")), clients.s3, "20261126T000000000Z-a")
    assert [e.key for e in entries_of(s3, BACKUP, "safety", "20261126T000000000Z-a")] == ["a"]

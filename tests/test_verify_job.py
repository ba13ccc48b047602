"""The weekly slice check as a job of its own: spread over many invocations it checks exactly what one pass
checks, each distinct version once; it is one job per backup however often it is delivered; it never runs in
the backup's invocation and never changes the backup's result; its memory does not grow with the versions."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine

from chalicelib.jobs.budget import TimeBudget
from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import Entry, list_snapshot_keys, manifest_key
from chalicelib.catalog.records import BackupRecord, PlanResult, new_backup_id, scheduled_suffix
from chalicelib.config import Settings
from chalicelib.layout import SEALED_VERIFICATIONS_PREFIX, VERIFICATIONS_PREFIX
from chalicelib.times import utcnow
from chalicelib.verify.checks import weekly_slice
from chalicelib.verify.distinct import DistinctVersions, batches
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.record import VerificationStore, verification_id
from tests.conftest import read_alerts
from tests.test_backup_engine import Crash
from tests.test_scale import FakeContext, Invocations
from tests.test_verify import read_manifest, rewrite_manifest

CATALOG = "test-backup-documents"
TOPIC = "arn:aws:sns:us-east-1:123456789012:test-backup-alerts"


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The scheduled runs these tests name (Monday 30 November 2026 and the days after) stay ahead of the
    clock and within MAX_BACKUP_DAYS of it."""
    with time_machine.travel(datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def backups(clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str]) -> BackupService:
    return BackupService(Settings.from_environ(stage_env), clients)


def take_backup(backups: BackupService) -> str:
    return backups.run(backups.start(None, trigger="api").backup_id).backup_id


COST_CODE = str(Path(__file__).resolve().parent.parent / "chalicelib" / "cost")


class Heads:
    """The (data key, version id) of every HeadObject the system sends, in order."""

    def __init__(self, s3: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        s3.meta.events.register("provide-client-params.s3.HeadObject", self._record)

    def _record(self, params: dict[str, Any], **kwargs: Any) -> None:
        # The daily backup's cost report asks S3 about a sample of versions too: not the verification's.
        frame = sys._getframe()
        while frame is not None:
            if frame.f_code.co_filename.startswith(COST_CODE):
                return
            frame = frame.f_back
        with self.lock:
            self.calls.append((params["Key"], params.get("VersionId", "")))

    def take(self) -> list[tuple[str, str]]:
        with self.lock:
            taken, self.calls = self.calls, []
        return taken


def stored_versions(s3: Any, plans: Any) -> set[tuple[str, str, int]]:
    """Every distinct (data key, version id) named by any manifest, with its slice."""
    found: set[tuple[str, str, int]] = set()
    for plan in plans.plans:
        for key in list_snapshot_keys(s3, plan.bucket, plan.name):
            _, entries = read_manifest(s3, plan.bucket, key)
            found.update((e.data_key, e.version_id, weekly_slice(e)) for e in entries if not e.held)
    return found


def later_id(suffix: str) -> str:
    """A backup id after every snapshot of the test: a job as of it covers all of them."""
    return new_backup_id(utcnow() + timedelta(days=1), suffix=suffix)


def busiest_weekday(s3: Any, plans: Any) -> int:
    """The slice holding the most stored versions (version ids are random, and so is each slice's size):
    with 21 versions it holds at least 3."""
    return Counter(day for _, _, day in stored_versions(s3, plans)).most_common(1)[0][0]


def scheduled_on(weekday: int) -> datetime:
    return datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc) + timedelta(days=weekday)  # 30 November 2026: a Monday


def findings(record: Any) -> list[tuple[str, str, str]]:
    return sorted((f["key"], f["version_id"], f["problem"]) for f in record.missing + record.damaged)


# ------------------------------------------------------------------------------------------ many invocations


@pytest.fixture
def history(backups: BackupService, s3: Any, stage_env: dict[str, str]) -> dict[str, Any]:
    """Three backups of 60 documents (20 then 10 changed), 10 photos and a table; then two faults: a deleted
    version that only the first snapshot names, and a checksum that no longer matches in the third."""
    documents = stage_env["DOCUMENTS_SOURCE_BUCKET"]
    for index in range(50):
        s3.put_object(Bucket=documents, Key=f"notes/note-{index:02d}.txt", Body=f"note {index}\n".encode())
    first = take_backup(backups)
    for index in range(20):
        s3.put_object(Bucket=documents, Key=f"notes/note-{index:02d}.txt", Body=f"note {index}, revised\n".encode())
    take_backup(backups)
    for index in range(10, 20):
        s3.put_object(Bucket=documents, Key=f"notes/note-{index:02d}.txt", Body=f"note {index}, again\n".encode())
    third = take_backup(backups)

    old = next(e for e in read_manifest(s3, CATALOG, manifest_key("documents", first))[1] if e.key == "notes/note-03.txt")
    s3.delete_object(Bucket=CATALOG, Key=old.data_key, VersionId=old.version_id)
    changed = next(e for e in read_manifest(s3, CATALOG, manifest_key("documents", third))[1] if e.key == "notes/note-12.txt")
    rewrite_manifest(s3, CATALOG, manifest_key("documents", third), {changed.key: {"checksum": "AAAA" + changed.checksum[4:]}})
    return {
        "missing": (old.key, old.version_id, "missing"),
        "damaged": (changed.key, changed.version_id, "damaged"),
    }


def test_a_job_over_many_invocations_checks_what_one_pass_checks(
    backups: BackupService, clients: Any, plans: Any, s3: Any, history: dict[str, Any]
) -> None:
    heads = Heads(clients.s3)
    stored = stored_versions(s3, plans)
    assert len(stored) == 60 + 20 + 10 + 10 + 1
    found: list[tuple[str, str, str]] = []
    invocations = 0
    for weekday in range(7):
        expected = {(key, version) for key, version, day in stored if day == weekday}

        single = VerificationJob(plans, clients, TOPIC, max_workers=4)
        job = single.start(later_id(f"single{weekday}"), weekday=weekday, trigger="test")
        one_pass = single.run(job.job_id)
        one_pass_heads = heads.take()

        invoker = Invocations()

        def invocation(payload: dict[str, Any]) -> None:
            # Each invocation's time runs out after two batches of two keys.
            VerificationJob(plans, clients, TOPIC, 4, TimeBudget(FakeContext(1)), invoker, batch_size=2).run(
                payload["job_id"]
            )

        job = VerificationJob(plans, clients, TOPIC).start(later_id(f"multi{weekday}"), weekday=weekday, trigger="test")
        invocation({"job_id": job.job_id})
        invoker.drive(invocation)
        many = VerificationStore(s3, CATALOG).get(job.job_id)
        many_heads = heads.take()

        assert many.invocations >= 2 and many.invocations == invoker.count + 1
        invocations += many.invocations
        assert set(one_pass_heads) == set(many_heads) == expected
        # Each version once: no key is checked again by the invocation after a checkpoint.
        assert Counter(many_heads).most_common(1)[0][1] == 1 and len(one_pass_heads) == len(expected)
        assert (many.status, many.checked, many.snapshots) == (one_pass.status, one_pass.checked, one_pass.snapshots)
        assert many.checked == len(expected) and many.snapshots == 9
        assert findings(many) == findings(one_pass)
        assert many.plans == one_pass.plans
        found += findings(many)
    assert sorted(found) == sorted([history["missing"], history["damaged"]])
    assert invocations >= 25


def test_two_snapshots_sharing_versions_check_each_version_once(
    backups: BackupService, clients: Any, plans: Any, s3: Any
) -> None:
    take_backup(backups)
    take_backup(backups)  # nothing changed: the second snapshot names the very same versions
    heads = Heads(clients.s3)
    checked = 0
    for weekday in range(7):
        job = VerificationJob(plans, clients, TOPIC)
        record = job.run(job.start(later_id(f"d{weekday}"), weekday=weekday).job_id)
        assert record.status == "SUCCEEDED" and record.snapshots == 6
        checked += record.checked
    counts = Counter(heads.take())
    assert set(counts.values()) == {1}
    assert len(counts) == checked == 10 + 10 + 1


# ------------------------------------------------------------------------------------------ delivered twice


def job_records(s3: Any) -> list[str]:
    listing = s3.list_objects_v2(Bucket=CATALOG, Prefix=VERIFICATIONS_PREFIX)
    return [item["Key"] for item in listing.get("Contents", [])]


def verification_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := read_alerts(sqs, queue_url):
        found += [a for a in batch if a["MessageAttributes"]["kind"]["Value"] == "verification"]
    return found


@pytest.mark.usefixtures("without_projection")
def test_two_deliveries_of_a_scheduled_backup_make_one_job(
    backups: BackupService, clients: Any, plans: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    take_backup(backups)
    moment = scheduled_on(busiest_weekday(s3, plans))
    verification_alerts(sqs, topic_queue)
    heads = Heads(clients.s3)
    first = backups.run_scheduled(moment)
    assert len(heads.take()) == VerificationStore(s3, CATALOG).get(verification_id(first.backup_id)).checked >= 3
    (key,) = job_records(s3)
    assert key.endswith(f"_{verification_id(first.backup_id)}.json")
    assert len(verification_alerts(sqs, topic_queue)) == 1

    second = backups.run_scheduled(moment)
    assert second.backup_id == first.backup_id
    # The finished job is not redone: nothing checked, nothing sent, still one record.
    assert heads.take() == [] and verification_alerts(sqs, topic_queue) == []
    assert job_records(s3) == [key]


@pytest.mark.usefixtures("without_projection")
def test_the_backup_is_final_before_its_job_starts_and_never_waits(
    clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str], s3: Any, sqs: Any, topic_queue: str
) -> None:
    """As in Lambda: the job is handed to another invocation (here a queue), never run in the backup's."""
    invoker = Invocations()
    backups = BackupService(Settings.from_environ(stage_env), clients, verify_invoker=invoker)
    heads = Heads(clients.s3)
    record = backups.run_scheduled(scheduled_on(3))
    job_id = verification_id(record.backup_id)
    # The backup hands the worker its id only: the worker records the job.
    assert invoker.queue == [{"backup_id": record.backup_id}]
    assert heads.take() == []
    stored = backups.get(record.backup_id)
    assert stored.status == "SUCCEEDED" and stored.finished_at is not None
    assert [a["MessageAttributes"]["kind"]["Value"] for a in read_alerts(sqs, topic_queue)] == ["backup"]
    assert VerificationStore(s3, CATALOG).read(job_id) is None

    # A redelivery meanwhile hands the job on again; the conditional writes keep one worker.
    backups.run_scheduled(scheduled_on(3))
    assert invoker.queue == [{"backup_id": record.backup_id}] * 2
    invoker.drive(lambda payload: backups.verification.work(payload, context=FakeContext(0)))
    job = VerificationStore(s3, CATALOG).get(job_id)
    assert job.status == "SUCCEEDED" and job.invocations >= 2
    counts = Counter(heads.take())
    # Every version of Thursday's slice, each asked about once (version ids are random: a slice may be empty).
    in_slice = {(key, version) for key, version, day in stored_versions(s3, backup_buckets) if day == 3}
    assert job.checked == len(in_slice) and set(counts) == in_slice and set(counts.values()) <= {1}
    assert len(verification_alerts(sqs, topic_queue)) == 1
    assert backups.get(record.backup_id).to_dict() == stored.to_dict()


def test_an_invocation_working_from_an_older_checkpoint_stops_at_its_first_write(
    backups: BackupService, clients: Any, plans: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    take_backup(backups)
    # A slice holding a version of the first plan checked (documents): the first batch checks one version.
    weekday = Counter(day for key, _, day in stored_versions(s3, plans) if key.startswith("data/documents/")).most_common(1)[0][0]
    job = VerificationJob(plans, clients, TOPIC).start(later_id("dup"), weekday=weekday)
    store = VerificationStore(s3, CATALOG)
    stale = store.read(job.job_id)
    invoker = Invocations()

    def worker(context: Any) -> VerificationJob:
        return VerificationJob(plans, clients, TOPIC, 4, TimeBudget(context), invoker, batch_size=1)

    worker(FakeContext(0)).run(job.job_id)  # one batch, a checkpoint, a continuation queued
    assert (store.get(job.job_id).checked, len(invoker.queue)) == (1, 1)
    late = worker(FakeContext(10))
    late.store.read = lambda job_id: stale  # type: ignore[method-assign]  # it read the record before that checkpoint
    late.run(job.job_id)
    # It checked a batch, lost the conditional write and stopped: its work is not counted, nothing was queued.
    assert (store.get(job.job_id).checked, store.get(job.job_id).invocations, len(invoker.queue)) == (1, 1, 1)
    invoker.drive(lambda payload: worker(FakeContext(0)).run(payload["job_id"]))

    single = VerificationJob(plans, clients, TOPIC)
    reference = single.run(single.start(later_id("ref"), weekday=weekday).job_id)
    final = store.get(job.job_id)
    assert final.status == "SUCCEEDED" and (final.checked, final.plans) == (reference.checked, reference.plans)
    assert len(verification_alerts(sqs, topic_queue)) == 2  # this job's and the reference's, one each


# ------------------------------------------------------------------------------------------ failures


@pytest.mark.usefixtures("without_projection")
def test_a_job_that_raises_ends_failed_with_the_reason_and_an_alert(
    backups: BackupService, clients: Any, plans: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    def fail(**kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    take_backup(backups)
    verification_alerts(sqs, topic_queue)
    clients.s3.meta.events.register("before-call.s3.HeadObject", fail)
    record = backups.run_scheduled(scheduled_on(busiest_weekday(s3, plans)))
    assert record.status == "SUCCEEDED" and backups.get(record.backup_id).status == "SUCCEEDED"
    job = VerificationStore(s3, CATALOG).get(verification_id(record.backup_id))
    assert job.status == "FAILED" and job.finished_at is not None
    assert job.errors == ["the verification stopped: RuntimeError: disk on fire"]
    (alert,) = verification_alerts(sqs, topic_queue)
    assert alert["Subject"].startswith("VERIFY FAILED") and "disk on fire" in alert["Message"]
    assert alert["MessageAttributes"]["status"]["Value"] == "FAILED"


@pytest.mark.parametrize("at", [time(0, 0), time(23, 59)])
def test_a_week_of_daily_deliveries_at_any_time_of_day_checks_each_slice_once(
    at: time, backups: BackupService, s3: Any
) -> None:
    """Under rate(1 day) the schedule fires at the time of day it was deployed, 24 hours apart (at a fixed
    time, at that time): a week of scheduled backups starts one job per weekday slice, the slice of the UTC
    day its delivery is dated, whenever the jobs themselves start."""
    first = datetime.combine(scheduled_on(0).date(), at, tzinfo=timezone.utc)
    slices = []
    for day in range(7):
        moment = first + timedelta(days=day)
        record = BackupRecord(
            new_backup_id(moment, suffix=scheduled_suffix(f"event-{day}")), "schedule",
            {"documents": PlanResult(plan="documents", status="SUCCEEDED")}, "SUCCEEDED",
        )
        backups.records.seal(record, None)
        assert backups.verification.start_after(record)
        job = VerificationStore(s3, CATALOG).get(verification_id(record.backup_id))
        assert job.trigger == "schedule"
        slices.append(job.weekday)
    assert slices == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.usefixtures("without_projection")
def test_a_job_killed_midway_leaves_the_backup_succeeded_and_the_redelivery_finishes_it(
    backups: BackupService, clients: Any, plans: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    take_backup(backups)
    verification_alerts(sqs, topic_queue)
    heads = Heads(clients.s3)

    def kill(**kwargs: Any) -> None:
        # At the third HEAD or after: the job's pool may send several before this hook sees the count.
        if len(heads.calls) >= 3:
            raise Crash()

    clients.s3.meta.events.register("before-call.s3.HeadObject", kill)
    moment = scheduled_on(busiest_weekday(s3, plans))
    with pytest.raises(Crash):
        backups.run_scheduled(moment)
    backup_id = new_backup_id(moment, suffix="scheduled")
    assert backups.get(backup_id).status == "SUCCEEDED"
    store = VerificationStore(s3, CATALOG)
    assert store.get(verification_id(backup_id)).status == "RUNNING"

    clients.s3.meta.events.unregister("before-call.s3.HeadObject", kill)
    backups.run_scheduled(moment)  # Lambda's retry of the daily backup
    job = store.get(verification_id(backup_id))
    # Every version of the slice was checked, and counted once: what the killed invocation had saved at a
    # checkpoint is not checked again, what it had not is (the HEADs of both invocations cover the slice).
    in_slice = {(key, version) for key, version, day in stored_versions(s3, plans) if day == job.weekday}
    assert job.status == "SUCCEEDED" and job.checked == len(in_slice)
    assert in_slice <= set(heads.take())
    assert len(verification_alerts(sqs, topic_queue)) == 1


# ------------------------------------------------------------------------------------------ bounded memory


def synthetic_manifests(keys: int, snapshots: int) -> list[list[Entry]]:
    """`snapshots` manifests of `keys` keys; key i changes every (i % 4) + 1 snapshots, so a key has up to
    `snapshots` versions and most versions are shared by several manifests."""
    manifests = []
    for snapshot in range(snapshots):
        entries = [
            Entry("docs", f"k{index:06d}", f"v{snapshot // (index % 4 + 1)}", 1, "e", "i") for index in range(keys)
        ]
        manifests.append(entries)
    return manifests


@pytest.mark.parametrize("keys", [500, 5000])
def test_the_working_set_is_bounded_by_one_keys_versions_not_by_all_versions(keys: int) -> None:
    manifests = synthetic_manifests(keys, snapshots=4)
    distinct = {(e.key, e.version_id): e for m in manifests for e in m}
    for weekday in range(7):
        versions = DistinctVersions(manifests, weekday)
        cut = list(batches(versions, 50))
        yielded = [(e.key, e.version_id) for batch in cut for e in batch]
        assert sorted(yielded) == sorted(k for k, e in distinct.items() if weekly_slice(e) == weekday)
        # What deduplication holds is one key's versions (at most 4 here), whatever the total (over 11,000).
        assert 1 <= versions.largest <= 4 < len(yielded) // 10
        # A batch holds about its size, and ends with a key: the next batch starts with another.
        assert all(len(batch) < 50 + 4 for batch in cut)
        assert all(a[-1].key != b[0].key for a, b in zip(cut, cut[1:]))


def test_resuming_after_a_key_skips_exactly_what_was_done() -> None:
    manifests = synthetic_manifests(300, snapshots=3)
    whole = list(DistinctVersions(manifests, 2))
    middle = whole[len(whole) // 2]
    rest = list(DistinctVersions(manifests, 2, after=middle.sort_key))
    assert [(e.key, e.version_id) for e in rest] == [(e.key, e.version_id) for e in whole if e.key > middle.key]


def test_a_job_over_many_versions_keeps_its_working_set_to_one_key(
    backups: BackupService, clients: Any, plans: Any, s3: Any, stage_env: dict[str, str]
) -> None:
    for round_ in range(3):
        for index in range(40):
            s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=f"reports/report-{index}.txt",
                          Body=f"round {round_} of {index}".encode() * (1 + index % 3))
        take_backup(backups)
    most_versions = 3  # every document changed in every round
    job = VerificationJob(plans, clients, TOPIC, batch_size=5)
    checked = 0
    for weekday in range(7):
        checked += job.run(job.start(later_id(f"m{weekday}"), weekday=weekday).job_id).checked
    assert checked == len(stored_versions(s3, plans)) > 120
    assert 1 <= job.largest_working_set <= most_versions


def test_only_snapshots_up_to_the_jobs_backup_are_checked(backups: BackupService, clients: Any, plans: Any, s3: Any) -> None:
    take_backup(backups)
    take_backup(backups)
    past = new_backup_id(datetime(2020, 1, 1, tzinfo=timezone.utc), suffix="past")
    job = VerificationJob(plans, clients, TOPIC)
    assert job.run(job.start(past, weekday=1).job_id).snapshots == 0
    assert job.run(job.start(later_id("now"), weekday=1).job_id).snapshots == 6


# ------------------------------------------------------------------------------------------ API, function, alert


@pytest.fixture
def stack(app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, clients: Any) -> Any:
    """The app under the test client, sharing this test's clients so that hooks see its calls."""
    import app as app_module

    app_module._clients = clients
    return app_client


def test_get_backup_shows_the_verification_job_found_with_one_get(stack: Any, clients: Any, s3: Any) -> None:
    from tests.conftest import scheduled_event

    manual = stack.http.post("/backup", body=b"").json_body["backup_id"]
    assert stack.http.get(f"/backups/{manual}").json_body["verification"] is None
    # The schedule fired an hour ago (its delivery came late): its id, and its slice, are older than the manual backup.
    fired = datetime.now(timezone.utc) - timedelta(hours=1)
    scheduled = stack.lambda_.invoke("daily_backup", scheduled_event(stack, fired)).payload["backup_id"]
    calls: list[tuple[str, str]] = []
    clients.s3.meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **kw: calls.append((model.name, params.get("Key", "")))
    )
    shown = stack.http.get(f"/backups/{scheduled}").json_body["verification"]
    job = VerificationStore(s3, CATALOG).get(verification_id(scheduled))
    assert shown == job.summary()
    # Its own three snapshots: the manual backup was taken after the time the schedule fired.
    assert shown["status"] == "SUCCEEDED" and shown["ok"] is True and shown["snapshots"] == 3
    # The backup's record, then the job's sealed result, by the key its id gives: no listing but the one of
    # the backup's pruned markers (a key range of meta/pruned/, ListObjectsV2 has no Key).
    assert [op for op, _ in calls] == ["GetObject", "ListObjectsV2", "GetObject"]
    assert calls[2][1].startswith(SEALED_VERIFICATIONS_PREFIX) and calls[2][1].endswith(f"_{job.job_id}.json")


def test_the_verify_worker_function_runs_a_job_and_does_not_redo_it(stack: Any, clients: Any, plans: Any, s3: Any) -> None:
    stack.http.post("/backup", body=b"")
    job = VerificationJob(plans, clients).start(later_id("fn"), weekday=busiest_weekday(s3, plans))
    heads = Heads(clients.s3)
    payload = stack.lambda_.invoke("verify_worker", {"job_id": job.job_id}).payload
    assert payload == {"job_id": job.job_id, "status": "SUCCEEDED"}
    record = VerificationStore(s3, CATALOG).get(job.job_id)
    # The test client's context leaves 3 s, under the reserve: the job stopped after every step and, with no
    # Lambda to invoke in this worker mode, carried on in-process.
    assert record.invocations >= 2
    assert len(heads.take()) == record.checked >= 3
    again = stack.lambda_.invoke("verify_worker", {"job_id": job.job_id}).payload
    assert again == payload and heads.take() == []


def test_the_verification_alert_subject_stays_within_what_sns_accepts() -> None:
    from chalicelib.notify import alerts
    from chalicelib.verify.record import VerificationRecord

    failed = VerificationRecord("verify-20261126T020000000Z-scheduled", "20261126T020000000Z-scheduled", 6,
                                status="FAILED", checked=10**12, missing_count=10**9, damaged_count=10**9, error_count=3)
    subject = alerts.verification_subject(failed.to_dict())
    assert subject.startswith("VERIFY FAILED") and len(subject) <= 100 and subject.isascii()
    clean = VerificationRecord("verify-x", "20261126T020000000Z-scheduled", 2, status="SUCCEEDED", checked=5)
    assert alerts.verification_subject(clean.to_dict()).startswith("Verification SUCCEEDED: 5 stored versions intact")
    damaged = VerificationRecord("verify-x", "20261126T020000000Z-scheduled", 2, status="FAILED", checked=5, damaged_count=1)
    assert alerts.verification_subject(damaged.to_dict()).startswith("VERIFY FAILED: 0 missing, 1 damaged")

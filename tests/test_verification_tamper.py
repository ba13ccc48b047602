"""A verification's result cannot be forged: only the verify worker writes verification records, and only the
result it seals when a job ends counts.

The attack, with the backup writer's permissions (each request checked against the writer's generated policy
and the bucket's policy, as in test_takeover.py): rewrite a weekly job's record, still running or finished, to
say "finished, nothing missing", or create the job's sealed result first. Before, the writer could write
`meta/verifications/` and all of `meta/sealed/`, and a record that said it was finished was shown and used as
the job's result. Now the backup hands the verify worker its id only; the worker records the job, seals its
result create-only under `meta/sealed/verifications/` before its working copy says it ended, and every
reader (GET /verifications/{id}, GET /backups/{id}, the dashboard, the cadence) takes a finished job from the
sealed copy alone.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import manifest_key
from chalicelib.config import Settings
from chalicelib.dashboard.overview import verification as dashboard_verification
from chalicelib.deploy.permissions import Permission, allows
from chalicelib.deploy.policy import generate, settings_scope
from chalicelib.verify.checks import weekly_slice
from chalicelib.verify.record import (
    VerificationRecord,
    VerificationStore,
    backup_verification,
    check_id,
    describe,
    sealed_verification_key,
    verification_id,
    verification_key,
)
from tests.conftest import ACCOUNT
from tests.test_scale import FakeContext, Invocations
from tests.test_takeover import Writer
from tests.test_verify import read_manifest
from tests.test_verify_job import _clock, later_id, scheduled_on, take_backup  # noqa: F401  (_clock: the tests' date)

CATALOG = "test-backup-documents"


class Role(Writer):
    """Requests another function's role may send, checked as the writer's are."""

    def __init__(self, s3: Any, settings: Settings, function: str) -> None:
        self.s3 = s3
        self.policy = generate(settings_scope("org-backup", "test", settings), function)


@pytest.fixture
def world(clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str], s3: Any) -> Any:
    """A manual backup, one version of it deleted behind the system's back, then the scheduled backup of that
    version's weekday: its weekly job, queued for the verify worker, will find the version missing."""

    class World:
        settings = Settings.from_environ(stage_env)
        invocations = Invocations()
        backups = BackupService(settings, clients, verify_invoker=invocations)
        store = VerificationStore(s3, CATALOG)
        writer = Writer(s3, settings)

        def worker(self, batches: int | None = None) -> None:
            """The queued invocations of the verify worker (app.py verify_worker): all of them, or only the first,
            stopping after `batches` batches."""
            if batches is None:
                self.invocations.drive(lambda payload: self.backups.verification.work(payload, context=FakeContext(0)))
            else:
                self.backups.verification.work(self.invocations.queue.pop(0), context=FakeContext(batches))

    world = World()
    manual = take_backup(world.backups)
    lost = read_manifest(s3, CATALOG, manifest_key("documents", manual))[1][0]
    s3.delete_object(Bucket=CATALOG, Key=lost.data_key, VersionId=lost.version_id)
    world.lost, world.manual = lost, manual
    world.backup_id = world.backups.run_scheduled(scheduled_on(weekly_slice(lost))).backup_id
    world.job_id = verification_id(world.backup_id)
    assert world.invocations.queue == [{"backup_id": world.backup_id}]
    return world


def forged(record: dict[str, Any]) -> bytes:
    """The record saying the job ended with nothing missing."""
    clean = {
        **record, "status": "SUCCEEDED", "ok": True, "finished_at": record.get("updated_at"),
        "missing_count": 0, "damaged_count": 0, "error_count": 0, "missing": [], "damaged": [], "errors": [],
    }
    return json.dumps(clean).encode()


def test_the_writer_can_neither_rewrite_a_running_job_nor_create_its_result(world: Any, s3: Any) -> None:
    # The job is recorded by the verify worker, not by the backup: the writer never needed to write there.
    assert world.store.read(world.job_id) is None
    world.worker(batches=1)
    running = s3.get_object(Bucket=CATALOG, Key=verification_key(world.job_id))
    assert json.loads(running["Body"].read())["status"] == "RUNNING"

    with pytest.raises(AssertionError, match="the writer may not"):
        world.writer.send(
            "PutObject", Bucket=CATALOG, Key=verification_key(world.job_id), Body=b"{}", IfMatch=running["ETag"]
        )
    with pytest.raises(AssertionError, match="the writer may not"):
        world.writer.send("PutObject", Bucket=CATALOG, Key=sealed_verification_key(world.job_id), Body=b"{}", IfNoneMatch="*")
    # Nor the record of a later backup's job, made ahead of it.
    later = verification_id(later_id("scheduled"))
    with pytest.raises(AssertionError, match="the writer may not"):
        world.writer.send("PutObject", Bucket=CATALOG, Key=verification_key(later), Body=b"{}", IfNoneMatch="*")
    # It still seals backups' own records.
    sealed_backup = f"arn:aws:s3:::{CATALOG}/meta/sealed/backups/x.json"
    own = (("s3:ResourceAccount", ACCOUNT), ("s3:ObjectCreationOperation", "true"), ("s3:if-none-match", "*"))
    assert allows(world.writer.policy, Permission("s3:PutObject", sealed_backup, own))


def test_the_api_role_only_creates_checks_and_never_their_results(world: Any, s3: Any) -> None:
    api = Role(s3, world.settings, "api_handler")
    check = check_id(later_id("request"))
    with pytest.raises(AssertionError, match="may not"):
        api.send("PutObject", Bucket=CATALOG, Key=verification_key(check), Body=b"{}")  # not create-only
    with pytest.raises(AssertionError, match="may not"):
        api.send("PutObject", Bucket=CATALOG, Key=verification_key(world.job_id), Body=b"{}", IfNoneMatch="*")
    with pytest.raises(AssertionError, match="may not"):
        api.send("PutObject", Bucket=CATALOG, Key=sealed_verification_key(check), Body=b"{}", IfNoneMatch="*")
    # What POST /backups/{id}/verify does: create the check's first record.
    api.send("PutObject", Bucket=CATALOG, Key=verification_key(check), Body=b"{}", IfNoneMatch="*")


def test_a_record_rewritten_to_say_finished_is_not_the_jobs_result(world: Any, s3: Any) -> None:
    """Another role rewrites the working copy (the raw client: no policy allows it to the writer any more)."""
    world.worker(batches=1)
    key = verification_key(world.job_id)
    s3.put_object(Bucket=CATALOG, Key=key, Body=forged(json.loads(s3.get_object(Bucket=CATALOG, Key=key)["Body"].read())))

    # Unsealed, none of it is believed: the job reads as running, from its start, saying why.
    shown = describe(world.store, world.job_id)
    assert (shown["status"], shown["ok"], shown["finished_at"], shown["checked"]) == ("RUNNING", None, None, 0)
    assert "no sealed result" in shown["errors"][0]
    assert backup_verification(s3, CATALOG, world.backup_id)["status"] == "RUNNING"

    # The worker checks everything again (not from the rewritten checkpoint) and seals what it found itself.
    world.worker()
    shown = describe(world.store, world.job_id)
    assert (shown["status"], shown["ok"]) == ("FAILED", False)
    assert [(f["key"], f["version_id"]) for f in shown["missing"]] == [(world.lost.key, world.lost.version_id)]
    sealed = json.loads(s3.get_object(Bucket=CATALOG, Key=sealed_verification_key(world.job_id))["Body"].read())
    assert sealed["status"] == "FAILED" and sealed["missing_count"] == 1

    # Rewritten again once sealed: every reader still shows the sealed result.
    s3.put_object(Bucket=CATALOG, Key=key, Body=forged(sealed))
    assert json.loads(s3.get_object(Bucket=CATALOG, Key=key)["Body"].read())["ok"] is True
    assert describe(world.store, world.job_id) == shown
    assert backup_verification(s3, CATALOG, world.backup_id)["status"] == "FAILED"
    jobs = world.store.latest(14)
    slices = dashboard_verification(jobs, datetime.now(timezone.utc) + timedelta(days=2)).slices
    assert slices[weekly_slice(world.lost)].status == "FAILED"
    # And the job, delivered again, is not redone from the rewritten copy.
    world.backups.run_scheduled(scheduled_on(weekly_slice(world.lost)))
    world.worker()
    assert describe(world.store, world.job_id) == shown


def test_a_check_record_posing_as_a_weekly_job_is_not_one(world: Any, s3: Any) -> None:
    """The API's role creates checks' records; one that says it is a weekly slice job is not read as one (it
    would cover a slice on the dashboard and make the cadence skip a report)."""
    check = check_id(later_id("request"))
    posing = VerificationRecord(check, world.backup_id, 0, kind="slice", trigger="schedule", checked_against={"documents": "r"})
    s3.put_object(Bucket=CATALOG, Key=verification_key(check), Body=json.dumps(posing.to_dict()).encode(), IfNoneMatch="*")
    with pytest.raises(ValueError, match="says it is a 'slice' job"):
        world.store.read(check)
    assert all(job.job_id != check for job in world.store.latest(14))


def test_the_verify_worker_starts_no_job_for_a_backup_that_has_not_finished(world: Any) -> None:
    """The writer may invoke the verify worker: a job started ahead for a later backup's id would leave that
    backup's slice unchecked, so the worker records a job only for a sealed, finished scheduled backup."""
    ahead = later_id("scheduled")
    assert world.backups.verification.work({"backup_id": ahead}) is None
    assert world.store.read(verification_id(ahead)) is None
    # Nor for a backup the API started: only the schedule's backups have weekly jobs.
    assert world.backups.verification.work({"backup_id": world.manual}) is None
    assert world.store.read(verification_id(world.manual)) is None

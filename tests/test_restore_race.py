"""Two invocations of one restore: the hourly check resuming it and a retried restore worker (Lambda retries
an invocation it thinks failed). Both read the same version of the restore's record; the first to write it
carries the pass on, the other stops at its own first write, before it copies anything, and answers with
the record as the first left it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.backup.service import BackupService
from chalicelib.config import Settings
from chalicelib.restore.record import RestoreRecord, RestoreStatus
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import PASS_TIME_LIMIT, RestoreService
from chalicelib.times import utcnow

TARGET = "restore-target"
PHOTOS = 10


@pytest.fixture
def settings(clients: Any, backup_buckets: Any, sources: Any, s3: Any, stage_env: dict[str, str]) -> Settings:
    s3.create_bucket(Bucket=TARGET)
    return Settings.from_environ(stage_env)


def recorded_restore(settings: Settings, clients: Any) -> str:
    backups = BackupService(settings, clients)
    backup = backups.start(["photos"], trigger="api")
    assert backups.run(backup.backup_id).status == "SUCCEEDED"
    restores = RestoreService.from_settings(settings, clients)
    record = restores.start(RestoreRequest(backup_id=backup.backup_id, plan="photos", target=Target(bucket=TARGET)))
    return record.restore_id


def interrupted_after_reading(service: RestoreService, reads: int, meanwhile: Any, ran: list[Any]) -> None:
    """Have `meanwhile` run to its end right after `service` has read the restore's record `reads` times:
    `ran` gets the records read (as they were read), what `meanwhile` returned, and a marker that it ended."""
    read = service.store.read

    def read_then_let_the_other_run(restore_id: str) -> Any:
        found = read(restore_id)
        if found is not None and len(ran) < reads:
            ran.append(RestoreRecord.from_dict(found[0].to_dict()))
            if len(ran) == reads:
                ran.append(meanwhile())
                ran.append("the other ended")
        return found

    service.store.read = read_then_let_the_other_run  # type: ignore[method-assign]


@pytest.mark.parametrize("first_to_read", ["hourly check", "retried worker"])
def test_two_invocations_of_one_restore_copy_and_write_it_once(
    settings: Settings, clients: Any, s3: Any, first_to_read: str
) -> None:
    restore_id = recorded_restore(settings, clients)
    ran: list[Any] = []
    copies: list[str] = []
    # Every request about the target, and whether the invocation that got there first had ended by then.
    at_target: list[tuple[str, bool]] = []

    def seen(params: dict[str, Any], model: Any, **kw: Any) -> None:
        if params.get("Bucket") == TARGET:
            at_target.append((model.name, "the other ended" in ran))
            if model.name == "CopyObject":
                copies.append(params["Key"])

    clients.s3.meta.events.register("provide-client-params.s3.*", seen)
    records: list[dict[str, Any]] = []
    clients.s3.meta.events.register(
        "provide-client-params.s3.PutObject",
        lambda params, **kw: records.append(params) if params["Key"].startswith("meta/restores/") else None,
    )
    # The worker's record looks lost to the hourly check: it has not been written for longer than a pass lasts.
    later = utcnow() + PASS_TIME_LIMIT + timedelta(minutes=1)
    hourly = RestoreService.from_settings(settings, clients)
    worker = RestoreService.from_settings(settings, clients)

    if first_to_read == "hourly check":
        # The check reads the record to judge it, then again to work it: the worker runs in between.
        interrupted_after_reading(hourly, 2, lambda: worker.run(restore_id), ran)
        (stopped,) = hourly.resume_pending(later)
        winner = ran[-2]
    else:
        interrupted_after_reading(worker, 1, lambda: hourly.resume_pending(later), ran)
        stopped = worker.run(restore_id)
        (winner,) = ran[-2]

    # Both read the record as it was before either wrote it.
    assert all(r.status == RestoreStatus.RUNNING and r.passes == 0 for r in ran[:-2])
    assert winner.status == RestoreStatus.SUCCEEDED and winner.passes == 1 and winner.restored == PHOTOS
    # Every photo was copied once, and the invocation that lost stopped before it asked the target anything.
    assert sorted(copies) == sorted(set(copies)) and len(copies) == PHOTOS
    assert at_target and [call for call, after in at_target if after] == []
    # It wrote the record nowhere after the winner began, and answers with the winner's record.
    assert stopped.to_dict() == winner.to_dict()
    assert worker.get(restore_id).to_dict() == winner.to_dict()
    conditional = [put for put in records if "IfMatch" in put]
    assert len(conditional) == len(records) >= 2

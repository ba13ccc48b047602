"""Invocations of one backup that write its record at the same time: parallel key ranges, repeated
deliveries, a continuation meeting its predecessor. The record is replaced only as the version an invocation
read; one that loses keeps what it did by carrying its finished plans into the record it re-reads, and one
that finds the backup finished by another stops, so a backup is finished and alerted once.

Each race is made to happen, not hoped for: another invocation runs to its end between the moment an
invocation read the record and the moment it writes it.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.backup import service as service_module
from chalicelib.backup.progress import BackupProgress
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import BackupStatus, PlanResult
from chalicelib.config import Settings
from tests.test_scale import FakeContext, Invocations


def progress_of(service: BackupService, backup_id: str) -> BackupProgress:
    """An invocation's view of the working record, as it read it now."""
    found = service.records.read(backup_id)
    assert found is not None
    return BackupProgress(service.records, *found)


def finished(plan: str, copied: int) -> PlanResult:
    return PlanResult(plan=plan, status=BackupStatus.SUCCEEDED, copied=copied, objects=copied)


@pytest.fixture
def service(clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str]) -> BackupService:
    return BackupService(Settings.from_environ(stage_env), clients)


@pytest.fixture
def alerts_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The backup ids an alert was published for (the alert is still published)."""
    sent: list[str] = []
    publish = service_module.alerts.publish

    def counted(sns: Any, topic: Any, record: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(record.backup_id)
        return publish(sns, topic, record, *args, **kwargs)

    monkeypatch.setattr(service_module.alerts, "publish", counted)
    return sent


def test_two_invocations_finishing_different_plans_keep_both_results(service: BackupService) -> None:
    record = service.start(["documents", "photos"], trigger="api")
    first = progress_of(service, record.backup_id)
    second = progress_of(service, record.backup_id)
    first.record.plans["documents"] = finished("documents", 3)
    first.save()
    # The second read the record before the first wrote it: its copy still shows documents running.
    second.record.plans["photos"] = finished("photos", 5)
    second.save()

    stored, _ = service.records.current(record.backup_id)
    assert stored.plans["documents"].copied == 3 and stored.plans["photos"].copied == 5
    assert stored.status == BackupStatus.RUNNING and stored.updated_at


def test_a_stale_invocation_never_undoes_a_plan_another_finished(service: BackupService) -> None:
    record = service.start(["documents", "photos"], trigger="api")
    first = progress_of(service, record.backup_id)
    stale = progress_of(service, record.backup_id)
    first.record.plans["documents"] = finished("documents", 3)
    first.save()
    # The stale invocation finished photos and holds documents as it read it, running.
    stale.record.plans["photos"] = finished("photos", 5)
    stale.record.plans["documents"].errors.append("never written")
    stale.save()

    stored, _ = service.records.current(record.backup_id)
    assert stored.plans["documents"].status == BackupStatus.SUCCEEDED and stored.plans["documents"].copied == 3
    assert stored.plans["documents"].errors == []
    assert stale.record.plans["documents"].copied == 3  # it carries on from the merged record


def test_a_repeated_delivery_that_meets_the_finished_backup_stops(
    service: BackupService, alerts_sent: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The duplicate reads the record, then the first delivery runs the whole backup, then the duplicate
    writes: it must not write its stale record over the final one, nor finish and alert a second time."""
    record = service.start(None, trigger="api")
    backup_id = record.backup_id
    run_plan = service_module.run_plan
    raced: list[str] = []

    def first_delivery_overtakes(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append("the first delivery ran the backup")
            assert service.run(backup_id).status == BackupStatus.SUCCEEDED
        return run_plan(*args, **kwargs)

    monkeypatch.setattr(service_module, "run_plan", first_delivery_overtakes)
    duplicate = service.run(backup_id)

    assert raced and duplicate.status == BackupStatus.SUCCEEDED and duplicate.sealed_at
    assert alerts_sent == [backup_id]
    working, _ = service.records.read(backup_id) or (None, None)
    assert working is not None and working.status == BackupStatus.SUCCEEDED and working.finished_at
    assert all(result.status == BackupStatus.SUCCEEDED for result in working.plans.values())


def test_parallel_ranges_and_repeated_deliveries_lose_no_plan(
    clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str], alerts_sent: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A split plan's ranges, each delivered twice, and every invocation overtaken, between reading the record
    and working its plan, by all the invocations queued so far: the backup ends once, with every plan's
    result as a single pass gives it."""
    settings = Settings.from_environ({**stage_env, "SPLIT_OBJECTS": "3", "MAX_PARALLEL_RANGES": "3"})
    invoker = Invocations()
    service = BackupService(settings, clients, invoker=invoker)
    first = service.start(None, trigger="api")
    assert service.run(first.backup_id).status == BackupStatus.SUCCEEDED
    clients.s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key="reports/report-3.txt", Body=b"new text")
    clients.s3.put_object(Bucket=stage_env["PHOTOS_SOURCE_BUCKET"], Key="2026/img-99.png", Body=b"new photo")
    alerts_sent.clear()

    def invocation(payload: dict[str, Any]) -> Any:
        return service.run(payload["backup_id"], context=FakeContext(0), plan_name=payload.get("plan"),
                           segment=payload.get("segment"))

    run_plan = service_module.run_plan
    overtaken: list[int] = []

    def overtaken_by_the_queue(*args: Any, **kwargs: Any) -> Any:
        outcome = run_plan(*args, **kwargs)
        if invoker.queue and len(overtaken) < 6:
            # Every queued invocation, twice (a repeated delivery), runs before this one writes the record.
            overtaken.append(len(invoker.queue))
            queued, invoker.queue[:] = list(invoker.queue), []
            for payload in queued + queued:
                invocation(payload)
        return outcome

    monkeypatch.setattr(service_module, "run_plan", overtaken_by_the_queue)
    second = service.start(None, trigger="api")
    invocation({"backup_id": second.backup_id})
    invoker.drive(invocation)

    assert overtaken
    final = service.get(second.backup_id)
    assert final.status == BackupStatus.SUCCEEDED and final.sealed_at, final.to_dict()
    assert (final.plans["documents"].copied, final.plans["documents"].unchanged) == (1, 9)
    assert final.plans["photos"].copied == 1 and final.plans["photos"].objects == 11
    assert final.plans["database"].status == BackupStatus.SUCCEEDED
    assert alerts_sent == [second.backup_id]
    working, _ = service.records.read(second.backup_id) or (None, None)
    assert working is not None and working.status == BackupStatus.SUCCEEDED
    assert {name: r.copied for name, r in working.plans.items()} == {name: r.copied for name, r in final.plans.items()}

"""The scheduled verification with an inventory works once per report (chalicelib/verify/cadence.py): the
first scheduled job after a report checks every kept version against it; another before the next report
waits, says which report was used, by which job and when, and reads neither the kept index nor the report's
rows; a new report, or a report's period since the last check, makes it due again; an on-demand check of one
backup always runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.backup.service import BackupService
from chalicelib.plans import PlanSet
from chalicelib.verify.cadence import LastCheck, last_check, waiting
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.record import VerificationRecord, VerificationStatus
from tests.record_calls import CallsSince
from tests.test_verify import take_backup
from tests.test_verify_inventory import START, _clock, backups, deliver_all, inventoried, named_versions, with_inventory  # noqa: F401  (the fixtures)
from tests.test_verify_job import TOPIC, later_id, verification_alerts


@pytest.fixture
def weekly(inventoried: PlanSet, backups: BackupService) -> tuple[PlanSet, str]:  # noqa: F811
    """The plans with a weekly inventory, every bucket configured, and a backup taken."""
    return with_inventory(inventoried, "Weekly"), take_backup(backups)


def scheduled(plans: PlanSet, clients: Any, tag: str) -> VerificationRecord:
    job = VerificationJob(plans, clients, TOPIC, max_workers=4, sample_percent=0)
    return job.run(job.start(later_id(tag), trigger="schedule").job_id)


def read_keys(since: CallsSince) -> list[str]:
    return [call.params.get("Key", "") for call in since.calls() if call.operation == "GetObject"]


def test_a_second_scheduled_job_before_the_next_report_waits_and_reads_nothing_else(
    weekly: tuple[PlanSet, str], clients: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    plans = weekly[0]
    delivered = deliver_all(s3, plans)
    first = scheduled(plans, clients, "first")
    # Every kept version, whatever its weekday's slice, against the report.
    assert first.status == VerificationStatus.SUCCEEDED and first.checked == len(named_versions(s3, plans)) == 21
    assert first.checked_against == delivered and first.waiting == {} and first.headed == 0
    verification_alerts(sqs, topic_queue)

    since = CallsSince()
    second = scheduled(plans, clients, "second")
    assert second.status == VerificationStatus.SUCCEEDED and second.ok and second.checked == 0
    assert set(second.waiting) == set(delivered) and second.checked_against == {}
    for name, why in second.waiting.items():
        assert (why["report"], why["used_by"], why["used_at"]) == (delivered[name], first.job_id, first.started_at)
        assert why["message"].startswith("waits for the next inventory report") and first.job_id in why["message"]
    assert second.summary()["waiting"] == sorted(delivered)
    # Its records, the verification records and the report's manifest: no index, no report rows, no manifest.
    assert [key for key in read_keys(since) if "/index/" in key or "/data/" in key or key.startswith("snapshots/")] == []
    assert not any(call.operation == "HeadObject" for call in since.calls())
    # Nothing happened that an alert would tell.
    assert verification_alerts(sqs, topic_queue) == []


def test_a_new_report_or_a_reports_period_makes_it_due_and_an_on_demand_check_always_runs(
    weekly: tuple[PlanSet, str], clients: Any, s3: Any
) -> None:
    plans, backup_id = weekly
    deliver_all(s3, plans)
    assert scheduled(plans, clients, "first").checked == 21
    with time_machine.travel(START + timedelta(days=1), tick=True):
        # A check of one backup is not scheduled: it runs whatever the reports.
        job = VerificationJob(plans, clients, TOPIC, max_workers=4)
        check = job.run(job.start_check(backup_id, "20261130T120000000Z-abcd1234", None, 0).job_id)
        assert check.status == VerificationStatus.SUCCEEDED and check.checked == 21 and check.waiting == {}
        assert scheduled(plans, clients, "waits").waiting
        newer = deliver_all(s3, plans)
        due = scheduled(plans, clients, "new-report")
        assert due.checked == 21 and due.checked_against == newer and due.waiting == {}
    # A week later no new report came (deliveries can lag by two days): a report's period since the last check.
    with time_machine.travel(START + timedelta(days=8), tick=True):
        again = scheduled(plans, clients, "period")
        assert again.checked == 21 and again.checked_against == newer and not again.inventory_problems


def test_a_due_job_over_many_invocations_finds_a_fault_in_every_slice_checking_each_version_once(
    weekly: tuple[PlanSet, str], clients: Any, s3: Any
) -> None:
    from chalicelib.catalog.manifests import manifest_key
    from chalicelib.jobs.budget import TimeBudget
    from chalicelib.verify.checks import SLICES, stored_slice
    from chalicelib.verify.record import VerificationStore
    from tests.test_scale import FakeContext, Invocations
    from tests.test_verify import BUCKET, rewrite_manifest

    plans, backup_id = weekly
    # Seven entries pointed at versions that never existed, one in each weekday's slice.
    gone = {}
    for index in range(SLICES):
        key = f"reports/report-{index}.txt"
        gone[key] = next(v for n in range(1000) if stored_slice(f"data/documents/{key}", v := f"gone-{n}") == index)
    rewrite_manifest(s3, BUCKET, manifest_key("documents", backup_id), {key: {"version_id": v} for key, v in gone.items()})
    deliver_all(s3, plans)
    invoker = Invocations()

    def invocation(payload: dict[str, Any]) -> None:
        # Time runs out after every batch of two keys: each invocation resumes after the last key done.
        VerificationJob(plans, clients, TOPIC, 4, TimeBudget(FakeContext(1)), invoker, batch_size=2, sample_percent=0).run(payload["job_id"])

    job = VerificationJob(plans, clients, TOPIC).start(later_id("many"), trigger="schedule")
    invocation({"job_id": job.job_id})
    invoker.drive(invocation)
    done = VerificationStore(s3, plans.catalog_bucket).get(job.job_id)
    assert done.invocations > 5 and done.checked == len(named_versions(s3, plans)) == 21
    assert sorted((f["key"], f["version_id"], f["problem"]) for f in done.missing) == sorted((k, v, "missing") for k, v in gone.items())
    assert set(done.checked_against) == {"documents", "photos", "database"}


def record(job_id: str, **fields: Any) -> VerificationRecord:
    return VerificationRecord(job_id=job_id, backup_id=job_id.removeprefix("verify-"), weekday=0, started_at="2026-11-29T12:00:00Z", **fields)


def test_the_last_check_is_the_newest_scheduled_job_that_used_a_report() -> None:
    done = record("verify-a", status=VerificationStatus.SUCCEEDED, checked_against={"docs": "r1"})
    running = record("verify-b", checking={"docs": "r2"})
    stopped = record("verify-c", status=VerificationStatus.FAILED, checking={"docs": "r3"})
    on_demand = record("check-d", kind="backup", trigger="api", status=VerificationStatus.SUCCEEDED, checked_against={"docs": "r4"})
    by_cli = record("verify-e", trigger="cli", status=VerificationStatus.SUCCEEDED, checked_against={"docs": "r5"})
    waited = record("verify-f", status=VerificationStatus.SUCCEEDED, waiting={"docs": {"report": "r6"}})
    assert last_check([waited, by_cli, on_demand, stopped, done], "docs", "verify-z") == LastCheck("verify-a", "2026-11-29T12:00:00Z", "r1")
    # One still running will have used its report; one that ended without finishing the plan did not.
    assert last_check([running, done], "docs", "verify-z") == LastCheck("verify-b", "2026-11-29T12:00:00Z", "r2")
    assert last_check([running, done], "docs", "verify-b") == LastCheck("verify-a", "2026-11-29T12:00:00Z", "r1")
    assert last_check([done], "photos", "verify-z") is None


@pytest.mark.parametrize(
    ("newest", "hours_since", "frequency", "waits"),
    [("r1", 24, "Weekly", True), ("r2", 24, "Weekly", False), ("r1", 7 * 24 - 1, "Weekly", False),
     ("r1", 7 * 24 - 2, "Weekly", True), ("r1", 23, "Daily", False), ("r1", 22, "Daily", True)],
)
def test_a_plan_waits_only_for_a_report_it_has_not_used_within_a_period(newest: str, hours_since: int, frequency: str, waits: bool) -> None:
    last = LastCheck("verify-a", "2026-11-29T12:00:00Z", "r1")
    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc) + timedelta(hours=hours_since)
    assert (waiting(last, newest, frequency, now) is not None) == waits
    assert waiting(None, newest, frequency, now) is None


def test_the_alert_says_a_waiting_plan_waits_rather_than_that_it_was_checked() -> None:
    from chalicelib.notify.alerts import verification_body

    why = waiting(LastCheck("verify-a", "2026-11-29T12:00:00Z", "r1"), "r1", "Weekly", datetime(2026, 11, 30, tzinfo=timezone.utc))
    assert why is not None
    used = {"report": "r1", "created": "2026-11-29T00:00:00Z", "age_days": 1.0, "problem": None}
    done = record("verify-b", status=VerificationStatus.SUCCEEDED, waiting={"docs": why}, checked_against={"photos": "r2"},
                  inventory={"docs": used, "photos": {**used, "report": "r2"}})
    body = verification_body(done.to_dict())
    assert f"docs: {why['message']}" in body and "docs: checked against" not in body
    assert "photos: checked against r2" in body

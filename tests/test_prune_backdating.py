"""A snapshot whose id is dated before its backup was recorded cannot take an ended period's place.

The writer's keys choose a backup id, hence a snapshot's time; S3's times for the backup's record and
manifest are not theirs to choose (chalicelib/prune/backdating.py). These tests plant backups as the writer
could, and run real backups across midnight, and check by version id that the snapshot a period kept is
still there with its bytes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import BackupRecord, PlanResult, RecordStore, new_backup_id, scheduled_suffix
from chalicelib.prune import backdating
from chalicelib.retention import RetentionPolicy
from chalicelib.times import utcnow
from tests.stored import assert_versions_hold, entries_of
from tests import test_prune
from tests.test_prune import BUCKET, SOURCE, plant_backup
from tests.test_takeover import Writer

# The prune tests' world (a plan bucket, a source, a clock to move), as fixtures of this module too.
clock, world = test_prune.clock, test_prune.world

DAY = timedelta(days=1)


class AsWriter:
    """An S3 client whose every request is the backup writer's (tests/test_takeover.py `Writer`)."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def __getattr__(self, name: str) -> Any:
        operation = "".join(part.title() for part in name.split("_"))
        return lambda **params: self.writer.send(operation, **params)


def at(world: Any, moment: datetime) -> None:
    world.clock.move_to(moment)


def day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def rows_of(record: Any) -> dict[str, dict[str, Any]]:
    return {row["backup_id"]: row for row in record.plans["docs"].snapshots}


def test_a_backup_planted_under_yesterdays_date_takes_no_place_and_is_reported(world: Any) -> None:
    """Within the six days a backup may run, the manifest's time alone let a planted backup dated yesterday
    23:00 become yesterday's snapshot and push the real one out. Its record was first written today: it is
    counted by no rule, reported, and yesterday's real snapshot keeps its place, its versions intact."""
    world.use(RetentionPolicy(keep_daily=2))
    taken = []
    for day in range(3):
        world.s3.put_object(Bucket=SOURCE, Key="k.txt", Body=f"day {day}".encode())
        taken.append(world.backup())
        world.days(1)
    yesterday = day_start(utcnow()) - DAY
    forged = new_backup_id(yesterday + timedelta(hours=23))
    # Every request checked against the writer's generated policy: its working record's first version is
    # dated now, by S3, whatever its id says.
    writer = AsWriter(Writer(world.s3, world.config))
    RecordStore(writer, BUCKET).create(BackupRecord(backup_id=forged, trigger="api", plans={"docs": PlanResult(plan="docs")}))
    plant_backup(writer, forged, source_of=taken[0])
    world.days(2)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert rows[forged]["kept"] and not rows[forged]["governed"]
    assert "first recorded at" in rows[forged]["reasons"][0], rows[forged]
    assert any(w.startswith("TAMPERING") and forged in w for w in record.plans["docs"].warnings)
    # Yesterday's real snapshot is still the day's, and the oldest goes as keep_daily 2 says.
    assert rows[taken[2]]["kept"] and any(reason.startswith("daily") for reason in rows[taken[2]]["reasons"])
    assert record.plans["docs"].removing == [taken[0]]
    assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", taken[2])) == 1


def test_a_backup_that_runs_past_midnight_keeps_its_day_without_an_alarm(world: Any) -> None:
    """Started at 23:55 (recorded then), its manifest written at 00:05: it is its day's newest, as a
    backup that started that day should be, and nothing is reported."""
    world.use(RetentionPolicy(keep_daily=3))
    world.backup()
    evening = day_start(utcnow()) + timedelta(hours=23, minutes=55)
    at(world, evening - timedelta(hours=8))
    noon = world.backup()
    at(world, evening)
    service = BackupService(world.config, world.clients)
    late = new_backup_id()
    service.start(None, trigger="api", backup_id=late)
    at(world, evening + timedelta(minutes=10))
    assert service.run(late).status == "SUCCEEDED"
    world.days(3)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert any(reason.startswith("daily") for reason in rows[late]["reasons"]), rows[late]
    assert not rows[noon]["kept"]
    assert not any(w.startswith("TAMPERING") for w in record.plans["docs"].warnings), record.plans["docs"].warnings


def test_a_scheduled_backup_delivered_after_midnight_counts_and_is_reported_when_it_takes_the_day(world: Any) -> None:
    """A scheduled event for 23:50 reaches the function at 00:20 (EventBridge retried it): its id keeps the
    schedule's time, so it is that day's newest and pushes out the day's noon backup, written earlier. That
    is allowed (deliveries are late up to 30 hours) and reported, since a planted backup would look the same."""
    world.use(RetentionPolicy(keep_daily=3))
    world.backup()
    midnight = day_start(utcnow()) + DAY
    at(world, midnight - timedelta(hours=12))
    noon = world.backup()
    at(world, midnight + timedelta(minutes=20))
    service = BackupService(world.config, world.clients)
    scheduled = service.run_scheduled(midnight - timedelta(minutes=10), event_id="late-event")
    assert scheduled.status == "SUCCEEDED" and scheduled.backup_id.endswith(scheduled_suffix("late-event"))
    world.days(3)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert rows[scheduled.backup_id]["governed"] and rows[scheduled.backup_id]["kept"]
    assert not rows[noon]["kept"]
    alarms = [w for w in record.plans["docs"].warnings if w.startswith("TAMPERING")]
    assert len(alarms) == 1 and scheduled.backup_id in alarms[0] and noon in alarms[0], alarms


def test_a_scheduled_id_recorded_more_than_the_delivery_slack_late_is_not_trusted() -> None:
    taken = datetime(2026, 3, 2, 23, 50, tzinfo=timezone.utc)
    scheduled = new_backup_id(taken, suffix=scheduled_suffix("event"))
    manual = new_backup_id(taken)
    written = taken + timedelta(hours=31)
    within = {scheduled: taken + timedelta(hours=29)}
    assert backdating.doubt(scheduled, written, within) is None
    assert "first recorded at" in (backdating.doubt(scheduled, written, {scheduled: taken + timedelta(hours=31)}) or "")
    assert "first recorded at" in (backdating.doubt(manual, written, {manual: taken + timedelta(minutes=6)}) or "")
    assert backdating.doubt(manual, written, {manual: taken + timedelta(minutes=4)}) is None
    assert backdating.doubt(manual, written, {manual: None}) == "no record of its start was found"
    # Not looked up (the manifest was written within its day): the manifest's own window still holds.
    assert backdating.doubt(manual, taken + timedelta(days=7), {}) is not None
    assert backdating.doubt(manual, taken - timedelta(minutes=6), {}) is not None

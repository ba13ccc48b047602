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
from chalicelib.catalog.manifests import ManifestWriter, manifest_key, put_manifest
from chalicelib.catalog.records import BackupRecord, PlanResult, RecordStore, new_backup_id, record_key, scheduled_suffix
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


def alarms(record: Any) -> list[str]:
    return [w for w in record.plans["docs"].warnings if w.startswith("TAMPERING")]


def history(world: Any, days: int, policy: RetentionPolicy) -> list[str]:
    """A backup a day at 02:00 (k.txt changed each day); the clock is left at 02:00 of the day after."""
    world.use(policy)
    taken = []
    for day in range(days):
        world.s3.put_object(Bucket=SOURCE, Key="k.txt", Body=f"day {day}".encode())
        taken.append(world.backup())
        world.days(1)
    return taken


def writer_of(world: Any) -> AsWriter:
    return AsWriter(Writer(world.s3, world.config))


def plant(world: Any, backup_id: str, source_of: str) -> None:
    """With the writer's permissions: a working record (its first version dated now, by S3), a manifest and
    a sealed record for `backup_id`, naming what `source_of`'s snapshot names."""
    writer = writer_of(world)
    RecordStore(writer, BUCKET).create(BackupRecord(backup_id=backup_id, trigger="api", plans={"docs": PlanResult(plan="docs")}))
    plant_backup(writer, backup_id, source_of=source_of)


def assert_whole(world: Any, backup_id: str) -> None:
    """Every version the snapshot names is there, by version id, with the bytes it recorded."""
    assert assert_versions_hold(world.s3, BUCKET, entries_of(world.s3, BUCKET, "docs", backup_id)) >= 1


def test_a_backup_planted_under_yesterdays_date_takes_no_place_and_is_reported(world: Any) -> None:
    """Within the six days a backup may run, the manifest's time alone let a planted backup dated yesterday
    23:00 become yesterday's snapshot and push the real one out. Its record was first written today: it is
    counted by no rule, reported, and yesterday's real snapshot keeps its place, its versions intact."""
    taken = history(world, 3, RetentionPolicy(keep_daily=2))
    forged = new_backup_id(day_start(utcnow()) - DAY + timedelta(hours=23))
    plant(world, forged, source_of=taken[0])
    world.days(2)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert rows[forged]["kept"] and not rows[forged]["governed"]
    assert "first recorded at" in rows[forged]["reasons"][0], rows[forged]
    assert any(forged in w for w in alarms(record))
    # Yesterday's real snapshot is still the day's, and the oldest goes as keep_daily 2 says.
    assert rows[taken[2]]["kept"] and any(reason.startswith("daily") for reason in rows[taken[2]]["reasons"])
    assert record.plans["docs"].removing == [taken[0]]
    assert_whole(world, taken[2])


def test_a_backup_planted_minutes_after_midnight_counts_but_is_reported(world: Any) -> None:
    """At 00:04 an id dated 23:59:59.999 is within the clocks' slack of its record: it counts, as the day's
    newest, and since it was recorded after that day ended it is reported, naming the snapshot it pushed out."""
    taken = history(world, 2, RetentionPolicy(keep_daily=3))
    midnight = day_start(utcnow())
    at(world, midnight - timedelta(hours=12))
    noon = world.backup()
    at(world, midnight + timedelta(minutes=4))
    forged = new_backup_id(midnight - timedelta(milliseconds=1))
    plant(world, forged, source_of=taken[0])
    world.days(3)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert rows[forged]["governed"] and not rows[noon]["kept"]
    (alarm,) = alarms(record)
    assert forged in alarm and noon in alarm and "had ended" in alarm, alarm


def test_a_manifest_planted_for_a_finished_dry_run_is_counted_by_no_rule(world: Any) -> None:
    """A dry run is sealed (a genuine record, dated when it ran) but writes no snapshot. A manifest the
    writer creates for it the next day names a version its sealed record does not: not counted, reported."""
    taken = history(world, 2, RetentionPolicy(keep_daily=2))
    at(world, day_start(utcnow()) - DAY + timedelta(hours=20))
    service = BackupService(world.config, world.clients)
    dry = new_backup_id()
    service.start(None, trigger="api", backup_id=dry, dry_run=True)
    assert service.run(dry).status == "SUCCEEDED"
    world.days(1)
    writer = writer_of(world)
    manifest = ManifestWriter()
    for entry in entries_of(world.s3, BUCKET, "docs", taken[0]):
        manifest.add(entry)
    put_manifest(writer, BUCKET, manifest_key("docs", dry), manifest.finish({"plan": "docs", "backup_id": dry}, keep_held=True))
    world.days(2)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert rows[dry]["kept"] and not rows[dry]["governed"] and "sealed record" in rows[dry]["reasons"][0], rows[dry]
    assert any(dry in w for w in alarms(record))
    assert rows[taken[1]]["kept"] and record.plans["docs"].removing == []
    assert_whole(world, taken[1])


def test_a_scheduled_looking_id_is_held_to_the_form_a_schedule_gives(world: Any) -> None:
    """A schedule's id has whole seconds and its suffix's exact form: a made-up `scheduled` id with
    milliseconds gets no delivery slack; one of the exact form planted into an ended day is counted and
    reported, even into a day without any other backup."""
    taken = history(world, 3, RetentionPolicy(keep_daily=3))
    yesterday = day_start(utcnow()) - DAY
    sloppy = new_backup_id(yesterday + timedelta(hours=23, milliseconds=5), suffix="scheduled-made-up")
    exact = new_backup_id(yesterday - DAY + timedelta(hours=23), suffix=scheduled_suffix("forged"))
    at(world, yesterday + DAY + timedelta(hours=3))  # within 30 hours of both
    for backup_id in (sloppy, exact):
        plant(world, backup_id, source_of=taken[0])
    world.days(2)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert not rows[sloppy]["governed"] and "first recorded at" in rows[sloppy]["reasons"][0]
    assert rows[exact]["governed"]
    assert any(exact in w and "had ended" in w for w in alarms(record)), alarms(record)


def test_a_backup_that_runs_past_midnight_keeps_its_day_without_an_alarm(world: Any) -> None:
    """Started at 23:50 (recorded then), its manifest written at 00:30: it is its day's newest, as a backup
    that started that day should be, and nothing is reported."""
    history(world, 1, RetentionPolicy(keep_daily=3))
    evening = day_start(utcnow()) + timedelta(hours=23, minutes=50)
    at(world, evening - timedelta(hours=8))
    noon = world.backup()
    at(world, evening)
    service = BackupService(world.config, world.clients)
    late = new_backup_id()
    service.start(None, trigger="api", backup_id=late)
    at(world, evening + timedelta(minutes=40))
    assert service.run(late).status == "SUCCEEDED"
    world.days(3)

    record = world.prune(allow=True)

    rows = rows_of(record)
    assert rows[late]["governed"] and any(reason.startswith("daily") for reason in rows[late]["reasons"]), rows[late]
    assert not rows[noon]["kept"]
    assert alarms(record) == []
    assert_whole(world, late)


def test_a_scheduled_backup_delivered_after_midnight_counts_and_is_reported(world: Any) -> None:
    """A scheduled event for 23:50 reaches the function at 00:20 (EventBridge retried it): its id keeps the
    schedule's time, so it is that day's newest and pushes out the day's noon backup. That is allowed
    (deliveries are late up to 30 hours) and reported, since a planted backup would look the same."""
    history(world, 1, RetentionPolicy(keep_daily=3))
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
    (alarm,) = alarms(record)
    assert scheduled.backup_id in alarm and noon in alarm, alarm


def test_what_s3_says_of_a_late_snapshot_against_its_id() -> None:
    taken = datetime(2026, 3, 2, 23, 50, tzinfo=timezone.utc)
    scheduled = new_backup_id(taken, suffix=scheduled_suffix("event"))
    manual = new_backup_id(taken)
    manifest = ("v1", taken + timedelta(hours=31))

    def start(backup_id: str, recorded: datetime | None, version: str | None = "v1") -> dict[str, backdating.Start]:
        return {backup_id: backdating.Start(recorded, version)}

    assert backdating.doubt(scheduled, manifest, start(scheduled, taken + timedelta(hours=29))) is None
    assert "first recorded at" in (backdating.doubt(scheduled, manifest, start(scheduled, taken + timedelta(hours=31))) or "")
    assert "first recorded at" in (backdating.doubt(manual, manifest, start(manual, taken + timedelta(minutes=6))) or "")
    assert backdating.doubt(manual, manifest, start(manual, taken + timedelta(minutes=4))) is None
    assert backdating.doubt(manual, manifest, start(manual, None)) == "no record of its start was found"
    assert "sealed record" in (backdating.doubt(manual, manifest, start(manual, taken, "v0")) or "")
    # Not looked up (the manifest was written within its day): the manifest's own window still holds.
    assert backdating.doubt(manual, ("v1", taken + timedelta(days=7)), {}) is not None
    assert backdating.doubt(manual, ("v1", taken - timedelta(minutes=6)), {}) is not None
    # Looked up from the last minutes of the day on, in the plan's time zone (Berlin: 23:00 UTC in winter).
    assert backdating.ended_before_written(manual, taken + timedelta(minutes=6), "UTC")
    assert not backdating.ended_before_written(manual, taken + timedelta(minutes=4), "UTC")
    early = new_backup_id(datetime(2026, 3, 2, 20, 0, tzinfo=timezone.utc))
    assert backdating.ended_before_written(early, datetime(2026, 3, 2, 22, 56, tzinfo=timezone.utc), "Europe/Berlin")
    assert not backdating.ended_before_written(early, datetime(2026, 3, 2, 22, 56, tzinfo=timezone.utc), "UTC")
    # 23:30 UTC is already the next day in Berlin, whose end is 23:00 UTC the day after.
    after_midnight_there = new_backup_id(datetime(2026, 3, 2, 23, 30, tzinfo=timezone.utc))
    assert not backdating.ended_before_written(after_midnight_there, datetime(2026, 3, 3, 10, 0, tzinfo=timezone.utc), "Europe/Berlin")


def test_the_first_version_of_the_record_dates_the_start(world: Any) -> None:
    """Rewritten later (by the run itself or by the writer), the record's first version still dates it."""
    started = utcnow()
    backup_id = world.backup()
    world.days(1)
    world.s3.put_object(Bucket=BUCKET, Key=record_key(backup_id), Body=b"{}")
    first = backdating.first_recorded(world.s3, BUCKET, backup_id)
    assert first is not None and abs(first - started) < timedelta(minutes=1)
    assert backdating.first_recorded(world.s3, BUCKET, new_backup_id()) is None


def test_a_manifest_under_an_id_that_is_no_time_is_a_reference_and_the_prune_goes_on(world: Any) -> None:
    """Month 13 has the digits of an id but is no time: before, reading its time stopped the plan's prune
    every day. It is read as a name that is no backup id: kept as a reference, never removed."""
    taken = history(world, 3, RetentionPolicy(keep_last=1))
    impossible = "20261340T000000000Z-planted"
    manifest = ManifestWriter()
    named = entries_of(world.s3, BUCKET, "docs", taken[0])
    for entry in named:
        manifest.add(entry)
    body = manifest.finish({"plan": "docs", "backup_id": impossible}, keep_held=True)
    put_manifest(writer_of(world), BUCKET, manifest_key("docs", impossible), body)
    world.days(3)

    record = world.prune(allow=True)

    assert record.status == "SUCCEEDED", record.plans["docs"].errors
    rows = rows_of(record)
    assert rows[impossible]["kept"] and "not a backup id" in rows[impossible]["reasons"][0]
    assert record.plans["docs"].removing == sorted(taken[:2])
    # What the planted manifest names stays: a reference never makes the prune delete more.
    assert assert_versions_hold(world.s3, BUCKET, named) == 1

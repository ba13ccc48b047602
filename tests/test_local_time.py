"""Times as operators read them: the organisation's time zone (TIME_ZONE) in alerts, the command line and
the dashboard, with the zone's abbreviation, while records and the API's JSON stay UTC."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from chalicelib import cli
from chalicelib.catalog.records import BackupRecord, PlanResult
from chalicelib.config import Settings
from chalicelib.errors import PlanError
from chalicelib.localtime import UTC, format_instant, parse_zone, zone_caption
from chalicelib.notify import alerts
from tests.conftest import STAGE_ENV

INSTANT = datetime(2026, 11, 26, 13, 47, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("zone", "shown", "caption"),
    [
        ("UTC", "2026-11-26 13:47 UTC", "UTC"),
        ("Asia/Manila", "2026-11-26 21:47 PST", "Asia/Manila (PST, UTC+08:00)"),
        ("America/Los_Angeles", "2026-11-26 05:47 PST", "America/Los_Angeles (PST, UTC-08:00)"),
        ("Asia/Kathmandu", "2026-11-26 19:32 +0545", "Asia/Kathmandu (UTC+05:45)"),
    ],
)
def test_the_same_instant_in_each_zone(zone: str, shown: str, caption: str) -> None:
    assert format_instant(INSTANT, parse_zone(zone)) == shown
    assert format_instant("2026-11-26T13:47:05.000Z", parse_zone(zone)) == shown  # as records hold it
    assert zone_caption(parse_zone(zone), INSTANT) == caption


def test_across_a_change_of_offset_the_abbreviation_tells_the_repeated_hour_apart() -> None:
    # On 2026-11-01 Los Angeles goes back from 02:00 PDT to 01:00 PST: 01:30 happens twice.
    zone = parse_zone("America/Los_Angeles")
    first = datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)
    second = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)
    assert format_instant(first, zone) == "2026-11-01 01:30 PDT"
    assert format_instant(second, zone) == "2026-11-01 01:30 PST"
    assert zone_caption(zone, first) == "America/Los_Angeles (PDT, UTC-07:00)"
    assert zone_caption(zone, second) == "America/Los_Angeles (PST, UTC-08:00)"
    # Manila keeps one offset all year: the same two instants an hour apart, as they are.
    manila = parse_zone("Asia/Manila")
    assert [format_instant(t, manila) for t in (first, second)] == ["2026-11-01 16:30 PST", "2026-11-01 17:30 PST"]


def test_the_time_zone_is_validated_when_the_settings_are_read() -> None:
    assert Settings.from_environ(STAGE_ENV).time_zone == UTC
    assert Settings.from_environ({**STAGE_ENV, "TIME_ZONE": ""}).time_zone == UTC
    assert str(Settings.from_environ({**STAGE_ENV, "TIME_ZONE": "Asia/Manila"}).time_zone) == "Asia/Manila"
    for wrong, hint in (("Asia/Manilla", "did you mean 'Asia/Manila'"), ("Mars/Olympus_Mons", ""), ("../../etc/passwd", "")):
        with pytest.raises(PlanError) as raised:
            Settings.from_environ({**STAGE_ENV, "TIME_ZONE": wrong})
        assert str(raised.value).startswith(f"environment variable TIME_ZONE: {wrong!r} is not an IANA time zone name")
        assert hint in str(raised.value)


def record() -> BackupRecord:
    plans = {"photos": PlanResult(plan="photos", status="SUCCEEDED", copied=2, objects=2)}
    return BackupRecord("20261126T134705000Z-abc", "api", plans, "SUCCEEDED", "2026-11-26T13:47:05.000Z", "2026-11-26T13:49:10.250Z")


def test_alerts_show_times_in_the_zone_and_name_it() -> None:
    body = alerts.body(record(), parse_zone("Asia/Manila"))
    assert "Started 2026-11-26 21:47:05 PST, finished 2026-11-26 21:49:10 PST (times in Asia/Manila (PST, UTC+08:00))" in body
    assert "Started 2026-11-26 13:47:05 UTC, finished 2026-11-26 13:49:10 UTC (times in UTC)" in alerts.body(record())
    verification = {"job_id": "verify-20261126T020000000Z-scheduled", "backup_id": "20261126T020000000Z-scheduled",
                    "status": "SUCCEEDED", "ok": True, "weekday": 3, "started_at": "2026-11-26T02:10:00.000Z",
                    "finished_at": "2026-11-26T02:12:00.000Z", "plans": {}}
    text = alerts.verification_body(verification, parse_zone("Europe/Berlin"))
    assert "taken up to 2026-11-26 03:00 CET" in text and "Started 2026-11-26 03:10:00 CET" in text


def test_the_backup_alert_uses_the_stages_time_zone(
    app_client: Any, backup_buckets: Any, sources: Any, topic_queue: str, sqs: Any, project_dir: Path
) -> None:
    config_path = project_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["local"]["environment_variables"]["TIME_ZONE"] = "Asia/Manila"
    config_path.write_text(json.dumps(config))
    from chalice.test import Client

    import app as app_module

    with Client(app_module.app, stage_name="local", project_dir=str(project_dir)) as client:
        started = client.http.post("/backup", body=b'{"plans": ["photos"]}', headers={"Content-Type": "application/json"})
        shown = client.http.get(f"/backups/{started.json_body['backup_id']}").json_body
    # The API's JSON stays UTC ISO 8601 ...
    assert shown["started_at"].endswith("Z") and shown["finished_at"].endswith("Z")
    messages = sqs.receive_message(QueueUrl=topic_queue, MaxNumberOfMessages=10).get("Messages", [])
    [message] = [json.loads(m["Body"])["Message"] for m in messages]
    # ... and the alert shows the same instant in the zone.
    started_at = datetime.fromisoformat(shown["started_at"].replace("Z", "+00:00"))
    assert format_instant(started_at, parse_zone("Asia/Manila"), seconds=True) in message
    assert "(times in Asia/Manila (PST, UTC+08:00))" in message


def test_the_command_lines_tables_show_the_zone_and_json_stays_utc(
    project_dir: Path, backup_buckets: Any, sources: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = project_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["local"]["environment_variables"]["TIME_ZONE"] = "America/Los_Angeles"
    config_path.write_text(json.dumps(config))

    def run(*argv: str) -> str:
        assert cli.main(["--stage", "local", "--project-dir", str(project_dir), *argv]) == 0
        return capsys.readouterr().out

    backup_id = json.loads(run("backup", "--plan", "photos", "--json"))["backup_id"]
    started = json.loads(run("show", backup_id, "--json"))["started_at"]
    assert started.endswith("Z")
    local = format_instant(started, parse_zone("America/Los_Angeles"))
    assert local.endswith((" PST", " PDT"))
    table = run("backups")
    assert backup_id in table and local in table
    assert f"started {local}" in run("show", backup_id)
    # A plan's snapshots, as retention sees them: when each was taken, in the zone; --json keeps UTC.
    taken = json.loads(run("snapshots", "--plan", "photos", "--json"))["snapshots"][0]["taken_at"]
    assert taken.endswith("Z")
    assert format_instant(taken, parse_zone("America/Los_Angeles")) in run("snapshots", "--plan", "photos")


@pytest.mark.parametrize(
    ("zone", "winter", "summer"),
    [
        ("UTC", "2026-01-15 02:00 UTC", "2026-07-15 02:00 UTC"),
        ("Asia/Manila", "2026-01-15 10:00 PST", "2026-07-15 10:00 PST"),
        ("Europe/Berlin", "2026-01-15 03:00 CET", "2026-07-15 04:00 CEST"),
        ("America/New_York", "2026-01-14 21:00 EST", "2026-07-14 22:00 EDT"),
        ("America/Los_Angeles", "2026-01-14 18:00 PST", "2026-07-14 19:00 PDT"),
    ],
)
def test_when_a_daily_backup_at_02_00_utc_fires_in_each_zone_as_the_readme_says(zone: str, winter: str, summer: str) -> None:
    from datetime import time

    from chalicelib.schedule import Schedule

    # The README's example of a fixed time: `"schedule": {"daily_at_utc": "02:00"}`.
    schedule = Schedule(time(2, 0))
    for day, expected in ((datetime(2026, 1, 15, tzinfo=timezone.utc), winter), (datetime(2026, 7, 15, tzinfo=timezone.utc), summer)):
        assert format_instant(schedule.next_run(day, None), parse_zone(zone)) == expected


def test_every_stages_time_zone_is_a_real_zone() -> None:
    from chalicelib.stages import stage_environment, stage_names

    # The functions read TIME_ZONE when they start; a typo in .chalice/config.json must fail here first.
    for stage in stage_names():
        Settings.from_environ(stage_environment(stage))

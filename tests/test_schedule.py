"""The daily schedule: `rate(1 day)` unless the shipped plans file sets a time of day. What app.py registers
from the file (as `chalice package` imports it), the expressions, a bad `schedule` entry refused on import
naming what is wrong, a plans file chosen at run time (PLANS_FILE) never deciding it, the next run, and the
alarm under either schedule."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice import Cron, Rate
from chalice.app import ScheduledEventConfig

from chalicelib import plans_file as plans_module
from chalicelib.json_fields import AnyVariable
from chalicelib.errors import PlanError
from chalicelib.localtime import parse_zone
from chalicelib.plans_file import DEFAULT_PLANS_FILE, check_plans_file, load_plans, parse_plans
from chalicelib.schedule import Schedule
from tests.conftest import ROOT, STAGE_ENV


def shipped_document() -> dict[str, Any]:
    return json.loads(DEFAULT_PLANS_FILE.read_text())


def committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: Any) -> Path:
    """The shipped plans file with `schedule` as its `schedule` entry, standing in for the committed one."""
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({**shipped_document(), "schedule": schedule}))
    monkeypatch.setattr(plans_module, "DEFAULT_PLANS_FILE", path)
    return path


def fresh_app() -> ModuleType:
    """app.py imported anew, as `chalice package` imports it: its schedules come from the plans file then."""
    spec = importlib.util.spec_from_file_location("app_as_packaged", ROOT / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registered(module: ModuleType) -> dict[str, Any]:
    """Each scheduled function's expression, as the app registered it."""
    return {s.name: s.schedule_expression for s in module.app.event_sources if isinstance(s, ScheduledEventConfig)}


def test_by_default_the_backup_and_the_prune_are_registered_as_rate_1_day() -> None:
    assert "schedule" not in shipped_document()
    assert check_plans_file().schedule == Schedule()
    schedules = registered(fresh_app())
    for name in ("daily_backup", "daily_prune"):
        expression = schedules[name]
        assert isinstance(expression, Rate) and (expression.value, expression.unit) == (1, Rate.DAYS)
        # What `chalice package` writes into the template (chalice.deploy.appgraph calls to_string()).
        assert expression.to_string() == "rate(1 day)"
    assert Schedule().backup_expression() == Schedule().prune_expression() == "rate(1 day)"
    assert schedules["resume_restores"].to_string() == "rate(1 hour)"


@pytest.mark.parametrize(
    ("at", "backup", "prune"),
    [
        ("02:00", "cron(0 2 * * ? *)", "cron(0 5 * * ? *)"),
        ("00:00", "cron(0 0 * * ? *)", "cron(0 3 * * ? *)"),
        # Three hours after 22:30 is 01:30 the next day.
        ("22:30", "cron(30 22 * * ? *)", "cron(30 1 * * ? *)"),
    ],
)
def test_a_time_of_day_in_the_committed_plans_file_registers_the_cron_expressions(
    at: str, backup: str, prune: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed(tmp_path, monkeypatch, {"daily_at_utc": at})
    schedule = check_plans_file().schedule
    assert schedule.daily_at == time.fromisoformat(at)
    assert (schedule.backup_expression(), schedule.prune_expression()) == (backup, prune)
    schedules = registered(fresh_app())
    assert isinstance(schedules["daily_backup"], Cron) and isinstance(schedules["daily_prune"], Cron)
    assert schedules["daily_backup"].to_string() == backup
    assert schedules["daily_prune"].to_string() == prune
    # Every stage's functions read the same schedule from the same file.
    assert load_plans(STAGE_ENV).schedule == schedule


@pytest.mark.parametrize("empty", [{}, {"daily_at_utc": None}])
def test_an_empty_schedule_entry_is_the_default(empty: Any) -> None:
    assert parse_plans({**shipped_document(), "schedule": empty}, AnyVariable()).schedule == Schedule()


@pytest.mark.parametrize(
    ("schedule", "named"),
    [
        ({"daily_at_utc": "2:00"}, "field 'schedule', field 'daily_at_utc': '2:00' is not a time of day in UTC written HH:MM"),
        ({"daily_at_utc": "24:00"}, "field 'daily_at_utc': '24:00' is not a time of day"),
        ({"daily_at_utc": "02:60"}, "field 'daily_at_utc': '02:60' is not a time of day"),
        ({"daily_at_utc": "02:00:00"}, "field 'daily_at_utc': '02:00:00' is not a time of day"),
        ({"daily_at_utc": "2am"}, "field 'daily_at_utc': '2am' is not a time of day"),
        ({"daily_at_utc": 2}, "field 'daily_at_utc': 2 is not a time of day"),
        ({"daily_at_utc": True}, "field 'daily_at_utc': True is not a time of day"),
        ({"daily_at": "02:00"}, "field 'schedule': unknown field(s) 'daily_at'"),
        ({"rate": "1 day", "daily_at_utc": "02:00"}, "field 'schedule': unknown field(s) 'rate'"),
        ("02:00", "field 'schedule': must be a JSON object, got str"),
        ([], "field 'schedule': must be a JSON object, got list"),
    ],
)
def test_a_bad_schedule_entry_stops_the_import_naming_what_is_wrong(
    schedule: Any, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PlanError, match="^plans file plans.json, ") as raised:
        parse_plans({**shipped_document(), "schedule": schedule}, AnyVariable(), origin="plans file plans.json")
    assert named in str(raised.value)
    # Importing the app (what `chalice package` and `chalice deploy` do) fails the same way: nothing deploys.
    committed(tmp_path, monkeypatch, schedule)
    with pytest.raises(PlanError) as on_import:
        fresh_app()
    assert named in str(on_import.value)


def test_a_plans_file_chosen_when_a_handler_runs_never_decides_the_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PLANS_FILE is read when a handler runs, after the schedules were registered from the shipped file: its
    plans follow the shipped file's schedule, and a schedule of its own is refused."""
    other = tmp_path / "other" / "plans.json"
    other.parent.mkdir()
    other.write_text(json.dumps(shipped_document()))
    assert load_plans({**STAGE_ENV, "PLANS_FILE": str(other)}).schedule == Schedule()
    committed(tmp_path, monkeypatch, {"daily_at_utc": "01:15"})
    assert load_plans({**STAGE_ENV, "PLANS_FILE": str(other)}).schedule == Schedule(time(1, 15))
    other.write_text(json.dumps({**shipped_document(), "schedule": {"daily_at_utc": "04:00"}}))
    with pytest.raises(PlanError, match="field 'schedule': the schedule is set in the shipped chalicelib/plans.json only"):
        load_plans({**STAGE_ENV, "PLANS_FILE": str(other)})


def test_at_a_fixed_time_the_next_run_is_the_next_time_of_day_in_utc() -> None:
    schedule = Schedule(time(2, 0))
    at = datetime(2026, 11, 27, 1, 59, tzinfo=timezone.utc)
    # The last delivery does not matter: the cron fires at its time whatever happened before.
    for last in (None, at - timedelta(days=3)):
        assert schedule.next_run(at, last) == datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)
    assert schedule.next_run(at.replace(hour=2, minute=0), None) == datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)
    manila = at.astimezone(parse_zone("Asia/Manila"))
    assert schedule.next_run(manila, None) == datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)
    assert schedule.time_of_day(None) == time(2, 0)
    assert schedule.describe() == "daily at 02:00 UTC"


def test_under_rate_1_day_the_next_run_is_a_day_after_the_last_delivery_and_not_known_before_one() -> None:
    schedule = Schedule()
    last = datetime(2026, 11, 26, 13, 47, tzinfo=timezone.utc)
    assert schedule.next_run(datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc), None) is None
    assert schedule.time_of_day(None) is None
    assert schedule.next_run(datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc), last) == last + timedelta(days=1)
    # Strictly after now: at the moment it fires, the next one is a day later.
    assert schedule.next_run(last + timedelta(days=1), last) == last + timedelta(days=2)
    # Deliveries that left no backup (the function could not start) do not move the rule: whole days on.
    assert schedule.next_run(last + timedelta(days=3, hours=12), last) == last + timedelta(days=4)
    # A clock behind the delivery's time still waits for the next day's.
    assert schedule.next_run(last - timedelta(minutes=5), last) == last + timedelta(days=1)
    # Shown in any zone, the instant is the same.
    assert schedule.next_run(datetime(2026, 11, 27, 17, 0, tzinfo=parse_zone("Asia/Manila")), last) == last + timedelta(days=1)
    assert schedule.time_of_day(last.astimezone(parse_zone("Europe/Berlin"))) == time(13, 47)
    assert "rate(1 day)" in schedule.describe()


def test_the_alarm_allows_a_day_and_two_hours_under_either_schedule_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No time of day is assumed: 26 hourly periods after the last success, whichever schedule fires."""
    from chalicelib.deploy.template import merge_template

    import app as app_module

    def alarm() -> dict[str, Any]:
        return merge_template("dev", ROOT, app_module)["Resources"]["NoSuccessfulBackupAlarm"]["Properties"]

    default = alarm()
    committed(tmp_path, monkeypatch, {"daily_at_utc": "02:00"})
    fixed = alarm()
    for props, expression in ((default, "rate(1 day)"), (fixed, "cron(0 2 * * ? *)")):
        assert props["Period"] * props["EvaluationPeriods"] == 26 * 3600 and props["TreatMissingData"] == "breaching"
        assert f"the daily schedule ({expression}) stopped" in props["AlarmDescription"]
    assert {k: v for k, v in default.items() if k != "AlarmDescription"} == {k: v for k, v in fixed.items() if k != "AlarmDescription"}

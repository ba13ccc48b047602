"""The dashboard's parts, each against its own state: escaping, what a page reads however large the catalog,
the operator's IAM policy, the colours' contrast, the staleness flag, the charts' calendar and the next run."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine

from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import BackupRecord, PlanResult, RecordStore, new_backup_id, scheduled_suffix, sealed_key
from chalicelib.config import Settings
from chalicelib.dashboard import charts
from chalicelib.dashboard.access import operator_policy
from chalicelib.dashboard.overview import STALE_AFTER, plan_health
from chalicelib.dashboard.server import Dashboard
from chalicelib.dashboard.storage import StorageCache, storage_by_class
from chalicelib.dashboard.views import STATIC
from chalicelib.deploy.permissions import allows, required_permissions
from chalicelib.localtime import parse_zone
from chalicelib.schedule import Schedule
from chalicelib.times import isoformat, utcnow
from chalicelib.verify.record import VerificationStore
from tests.dashboard_helpers import call
from tests.test_backup_engine import client_calls

ROOT = Path(__file__).resolve().parent.parent


def dashboard(settings: Settings, clients: Any) -> Dashboard:
    app = Dashboard(settings, clients, stage="test")
    app.bind(8001)
    return app


def test_everything_from_data_is_escaped(
    backup_buckets: Any, sources: Any, clients: Any, stage_env: dict[str, str], s3: Any
) -> None:
    hostile = "<img src=x onerror=alert(1)>.txt"
    s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=hostile, Body=b"x")
    settings = Settings.from_environ(stage_env)
    service = BackupService(settings, clients)
    record = service.run(service.start(["documents"], trigger="api").backup_id)
    # A later backup whose failure message carries markup (an error text quoting a key, say), recorded and
    # sealed as the service records a finished backup.
    failed = BackupRecord(
        backup_id=new_backup_id(), trigger="api", status="FAILED", started_at=isoformat(utcnow()), finished_at=isoformat(utcnow()),
        plans={"documents": PlanResult(plan="documents", status="FAILED", errors=['object "</td><script>alert(2)</script>": AccessDenied'])},
    )
    store = RecordStore(s3, settings.plans.catalog_bucket)
    store.create(failed)
    store.seal(failed)
    app = dashboard(settings, clients)

    for path in ("/", f"/backups/{record.backup_id}?plan=documents&prefix=%3Cimg"):
        answer = call(app, "GET", path)
        assert answer.status == 200
        assert "<script>" not in answer.body and "<img src=x" not in answer.body
        assert not answer.page.find_all("script") and not answer.page.find_all("img")
    overview = call(app, "GET", "/").page
    assert "</td><script>alert(2)</script>" in overview.find("tr", data_plan="documents").find(class_="reason").text()
    keys = [row.find_all("td")[1].text() for row in call(app, "GET", f"/backups/{record.backup_id}?plan=documents&prefix=%3Cimg").page.find(id="objects").find("tbody").find_all("tr")]
    assert keys == [hostile]


def test_a_record_that_cannot_be_trusted_needs_attention_and_is_not_counted(
    backup_buckets: Any, sources: Any, clients: Any, stage_env: dict[str, str], s3: Any
) -> None:
    settings = Settings.from_environ(stage_env)
    service = BackupService(settings, clients)
    good = service.run(service.start(["documents"], trigger="api").backup_id)
    forged = service.run(service.start(["documents"], trigger="api").backup_id)
    s3.put_object(Bucket=settings.plans.catalog_bucket, Key=sealed_key(forged.backup_id), Body=b"{not a record")
    page = call(dashboard(settings, clients), "GET", "/").page
    assert forged.backup_id in page.find(id="unreadable").text()
    assert page.find(id="plans").find("tr", data_plan="documents").find("a").text() == good.backup_id
    assert forged.backup_id not in page.find(id="recent").text()


def test_a_stage_with_no_backup_yet_says_so(backup_buckets: Any, clients: Any, stage_env: dict[str, str]) -> None:
    page = call(dashboard(Settings.from_environ(stage_env), clients), "GET", "/").page
    assert page.find(id="summary").find("h1").text() == "No backup in the last 30 days"
    for name in ("documents", "photos", "database"):
        row = page.find(id="plans").find("tr", data_plan=name)
        assert row.find(class_="success").find("span", class_="flag").text() == "none in 30 days"
    assert page.find(id="recent").text().endswith("No backup in the last 30 days.")
    assert not page.find_all(id="verify-latest")  # nothing to verify yet; backing up is possible
    assert page.find(id="backup-now")
    # Under rate(1 day) nothing knows the time of day before the schedule has fired once.
    assert page.find(id="next-run").text().startswith("not known yet once a day (rate(1 day))")


def _count_requests(s3: Any) -> tuple[dict[str, int], Any]:
    counts: dict[str, int] = {}

    def count(model: Any, **kwargs: Any) -> None:
        counts[model.name] = counts.get(model.name, 0) + 1

    s3.meta.events.register("before-call.s3", count)
    return counts, count


@pytest.mark.timeout(60)
def test_the_main_page_reads_the_last_30_days_however_large_the_catalog(
    backup_buckets: Any, clients: Any, stage_env: dict[str, str]
) -> None:
    settings = Settings.from_environ(stage_env)
    store = RecordStore(clients.s3, settings.plans.catalog_bucket)
    now = utcnow()

    def record(day: int) -> None:
        moment = now - timedelta(days=day, hours=1)
        results = {name: PlanResult(plan=name, status="SUCCEEDED", finished_at=isoformat(moment)) for name in settings.plans.names}
        finished = BackupRecord(new_backup_id(moment, suffix="scheduled"), "schedule", results, "SUCCEEDED",
                                isoformat(moment), isoformat(moment))
        store.create(finished)
        store.seal(finished)

    def requests() -> dict[str, int]:
        counts, handler = _count_requests(clients.s3)
        try:
            # A dashboard started afresh: its storage listing is not kept from the first call.
            assert call(dashboard(settings, clients), "GET", "/").status == 200
        finally:
            clients.s3.meta.events.unregister("before-call.s3", handler)
        return counts

    for day in range(40):
        record(day)
    month = requests()
    for day in range(40, 366):
        record(day)
    year = requests()
    # The 30 records of the window (each one's sealed copy), a listing of the catalog, of the pruned markers
    # of those backups, of the verification jobs, the prunes and the restore queue, and the versions under
    # data/ of each bucket for storage per class, and for the cost report the newest finished backup's record
    # and its stored report (none here): the same for a year of backups as for 40 days of them.
    assert year == month
    assert year["GetObject"] == 30 + 2 and year["ListObjectsV2"] <= 6
    assert year["ListObjectVersions"] == len({plan.bucket for plan in settings.plans.plans})


def test_the_operator_policy_allows_every_call_of_the_pages_and_buttons_and_nothing_unused(
    backup_buckets: Any, sources: Any, clients: Any, stage_env: dict[str, str], s3: Any, recorded_calls: Any
) -> None:
    s3.create_bucket(Bucket="restore-target")
    inline = Settings.from_environ(stage_env)
    service = BackupService(inline, clients)
    backup_id = service.run(service.start(None, trigger="api").backup_id).backup_id
    # As against a deployed stage: "Back up now" hands the backup to the worker Lambda.
    deployed = Settings.from_environ({**stage_env, "WORKER_MODE": "lambda", "WORKER_FUNCTION_NAME": "org-backup-test-backup_worker"})
    app = dashboard(deployed, clients)
    since = len(recorded_calls.calls())

    assert call(app, "GET", "/").status == 200
    assert call(app, "GET", f"/backups/{backup_id}?plan=photos").status == 200
    assert call(app, "GET", f"/backups/{backup_id}/quote?plan=documents&prefix=reports/").status == 200
    assert call(app, "GET", f"/backups/{backup_id}/quote?plan=database").status == 200
    # No worker function exists in moto: the invocations are refused, which are still the calls the buttons
    # make (each after recording its backup or check).
    assert call(app, "POST", f"/backups/{backup_id}/verify", form={"token": app.token, "sample_percent": "100"}).status == 502
    assert call(app, "POST", "/backup", form={"token": app.token, "plans": "photos"}).status == 502
    checks = VerificationStore(s3, inline.plans.catalog_bucket).latest(5)
    assert [c.kind for c in checks] == ["backup"]
    assert call(app, "GET", f"/verifications/{checks[0].job_id}").status == 200
    # Recording the backup fails after its lock was taken: the lock is given back.
    with client_calls(clients.s3) as faults:
        faults.fail("PutObject", when=lambda params: params.get("Key", "").startswith("meta/backups/"))
        assert call(app, "POST", "/backup", form={"token": app.token, "plans": "documents"}).status == 502

    policy = operator_policy(deployed, "us-east-1", "123456789012")
    used: set[str] = set()
    for made in recorded_calls.calls()[since:]:
        for permission in required_permissions(made.service, made.operation, made.params, made.region, "123456789012"):
            assert allows(policy, permission), f"the operator policy does not allow {permission} ({made.operation} from {made.origin})"
            used |= {s["Sid"] for s in policy["Statement"] if allows({"Statement": [s]}, permission)}
    assert used == {s["Sid"] for s in policy["Statement"]}


# --- colours ------------------------------------------------------------------------------------------

# Every text colour and the background it is drawn on (dashboard.css); the first of each pair is text.
TEXT_PAIRS = [
    ("text", "bg"), ("text", "panel"), ("muted", "panel"), ("muted", "bg"), ("link", "panel"), ("link", "bg"),
    ("text", "code-bg"), ("muted", "code-bg"),
    ("ok-text", "ok-bg"), ("warn-text", "warn-bg"), ("bad-text", "bad-bg"), ("bad-text", "panel"),
    ("run-text", "run-bg"), ("button-text", "button-bg"), ("flag-text", "flag-bg"),
]
# Chart marks, lines and bars against the panel: graphical objects need 3:1 (WCAG 2.1, 1.4.11).
GRAPHIC_COLOURS = ["mark-succeeded", "mark-partial", "mark-failed", "mark-running", "bar", "line-0", "line-1", "line-2",
                   "line-3", "sc-standard", "sc-glacier", "sc-deep", "sc-other"]


def css_colours() -> dict[str, str]:
    root = re.search(r":root\s*{(.*?)}", (STATIC / "dashboard.css").read_text(), re.DOTALL)
    assert root, "dashboard.css has no :root block"
    return dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})\s*;", root.group(1)))


def luminance(colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_is_computed_as_wcag_defines_it() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-failing grey


@pytest.mark.parametrize(("text", "background"), TEXT_PAIRS)
def test_every_text_colour_passes_wcag_aa_on_its_background(text: str, background: str) -> None:
    colours = css_colours()
    ratio = contrast(colours[text], colours[background])
    assert ratio >= 4.5, f"--{text} on --{background}: {ratio:.2f}:1, WCAG AA needs 4.5:1"


def test_every_text_colour_of_the_stylesheet_is_checked_and_charts_stand_out() -> None:
    colours = css_colours()
    checked = {text for text, _ in TEXT_PAIRS}
    texts = {name for name in colours if name.endswith("-text") or name in ("text", "muted", "link")}
    assert texts <= checked, f"text colours without a checked background: {sorted(texts - checked)}"
    for name in GRAPHIC_COLOURS:
        assert contrast(colours[name], colours["panel"]) >= 3.0, f"--{name} against the panel"


# --- health, calendar, schedule ------------------------------------------------------------------------


def test_a_plan_is_flagged_when_its_last_success_is_older_than_the_alarms_26_hours() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)

    def backups(success_hours_ago: float) -> list[dict[str, Any]]:
        done = isoformat(now - timedelta(hours=success_hours_ago))
        failed = isoformat(now - timedelta(hours=1))
        return [
            {"backup_id": "b", "started_at": failed, "status": "FAILED", "plans": {"photos": {"status": "FAILED", "finished_at": failed, "errors": ["gone"]}}},
            {"backup_id": "a", "started_at": done, "status": "SUCCEEDED", "plans": {"photos": {"status": "SUCCEEDED", "finished_at": done, "snapshot": "s3://x/y", "objects": 3, "bytes": 9}}},
        ]

    fresh = plan_health("photos", backups(25.9), now)
    assert (fresh.last_status, fresh.reason, fresh.success_id, fresh.stale) == ("FAILED", "gone", "a", False)
    assert fresh.objects == 3
    assert plan_health("photos", backups(26.1), now).stale
    assert STALE_AFTER == timedelta(hours=26)
    assert plan_health("photos", [], now).stale  # never backed up in the window


def test_the_charts_days_are_the_zones_calendar_days_a_change_of_offset_included() -> None:
    zone = parse_zone("America/Los_Angeles")
    start = datetime(2026, 10, 31, 7, 0, tzinfo=timezone.utc)  # midnight PDT
    end = datetime(2026, 11, 3, 8, 0, tzinfo=timezone.utc)  # midnight PST
    days = charts.local_days(start, end, zone)
    assert [d.isoformat() for d, _, _ in days] == ["2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
    # November 1st has 25 hours: clocks go back from 02:00 PDT to 01:00 PST.
    assert [(finish - begin) / timedelta(hours=1) for _, begin, finish in days[:3]] == [24, 25, 24]
    # A backup at 07:30 UTC on the 1st is at 00:30 PDT that day: its bytes count on the 1st.
    backups = [{"backup_id": "x", "status": "SUCCEEDED", "started_at": "2026-11-01T07:30:00Z", "totals": {"bytes_copied": 10}, "plans": {}}]
    bars = charts.bytes_copied(backups, start, end, zone).of("rect", "bar")
    assert [b.title.split(":")[0] for b in bars if b.title] == ["2026-11-01"]


@pytest.fixture
def late_november() -> Iterator[datetime]:
    now = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
    with time_machine.travel(now, tick=True):
        yield now


def test_the_next_run_is_a_day_after_the_newest_scheduled_backup_or_at_the_fixed_time(
    late_november: datetime, backup_buckets: Any, clients: Any, stage_env: dict[str, str]
) -> None:
    settings = Settings.from_environ({**stage_env, "TIME_ZONE": "Europe/Berlin"})
    store = RecordStore(clients.s3, settings.plans.catalog_bucket)
    now = late_november

    def record(moment: datetime, trigger: str, suffix: str | None = None) -> str:
        results = {name: PlanResult(plan=name, status="SUCCEEDED", finished_at=isoformat(moment)) for name in settings.plans.names}
        finished = BackupRecord(new_backup_id(moment, suffix=suffix), trigger, results, "SUCCEEDED", isoformat(moment), isoformat(moment))
        store.create(finished)
        store.seal(finished)
        return finished.backup_id

    def shown(settings: Settings) -> tuple[str | None, str]:
        """The next run as the page dates it (UTC), and what it says beside it."""
        cell = call(dashboard(settings, clients), "GET", "/").page.find(id="next-run")
        times = cell.find_all("time")
        return (times[0].attrs["datetime"] if times else None), cell.text()

    # A backup started by hand says nothing about when the schedule fires.
    record(now - timedelta(hours=1), "api")
    assert shown(settings) == (None, "not known yet once a day (rate(1 day)), a day after the last scheduled run; "
                                     "no scheduled backup in the last 30 days")
    # The schedule delivered at 03:30 the day before yesterday (its backup is dated by the event's time) and
    # a day before that; a manual backup since changes nothing. A day after the last delivery was 6 hours ago
    # (a delivery that left no backup): the rule fires again at 03:30 tomorrow.
    delivered = datetime(2026, 11, 26, 3, 30, tzinfo=timezone.utc)
    record(delivered - timedelta(days=1), "schedule", scheduled_suffix("earlier-event"))
    record(delivered, "schedule", scheduled_suffix("last-event"))
    expected = datetime(2026, 11, 28, 3, 30, tzinfo=timezone.utc)
    when, text = shown(settings)
    assert when == isoformat(expected)
    assert text.startswith("2026-11-28 04:30 CET")
    assert text.endswith("once a day (rate(1 day)), a day after the last scheduled run")
    # A record planted with a future scheduled time is no delivery.
    record(now + timedelta(hours=3), "schedule", scheduled_suffix("planted"))
    assert shown(settings)[0] == isoformat(expected)
    # Every plan's row says the same.
    page = call(dashboard(settings, clients), "GET", "/").page
    for name in settings.plans.names:
        cell = page.find(id="plans").find("tr", data_plan=name).find("td", data_label="Next run")
        assert cell.find("time").attrs["datetime"] == isoformat(expected)

    # With a fixed time in the plans file, the next run is at that time, whatever the last delivery was.
    fixed = replace(settings, plans=replace(settings.plans, schedule=Schedule(time(2, 0))))
    assert shown(fixed) == ("2026-11-28T02:00:00.000Z", "2026-11-28 03:00 CET daily at 02:00 UTC")


# --- storage per class ----------------------------------------------------------------------------------


class _ListedVersions:
    """An S3 client that answers ListObjectVersions from a fixed list, counting the listings."""

    def __init__(self, versions: list[dict[str, Any]]) -> None:
        self.versions = versions
        self.listings = 0

    def get_paginator(self, name: str) -> Any:
        assert name == "list_object_versions"
        owner = self

        class Pages:
            def paginate(self, **params: Any) -> list[dict[str, Any]]:
                owner.listings += 1
                assert params["Prefix"] == "data/"
                return [{"Versions": owner.versions[:2]}, {"Versions": owner.versions[2:], "DeleteMarkers": [{"Key": "data/x"}]}]

        return Pages()


def test_storage_per_class_counts_what_s3_lists_and_is_kept_for_an_hour(stage_env: dict[str, str]) -> None:
    settings = Settings.from_environ(stage_env)
    s3 = _ListedVersions([
        {"Key": "data/a", "Size": 2 * 2**30, "StorageClass": "STANDARD"},
        {"Key": "data/b", "Size": 10 * 2**30, "StorageClass": "GLACIER"},
        {"Key": "data/c", "Size": 2**30},  # S3 leaves the class out for STANDARD
    ])
    now = utcnow()
    found = storage_by_class(s3, settings.plans, settings.prices, now)
    buckets = len({plan.bucket for plan in settings.plans.plans})
    assert s3.listings == buckets
    assert found.total["STANDARD"].versions == 2 * buckets and found.total["STANDARD"].bytes == 3 * 2**30 * buckets
    assert found.total["GLACIER"].versions == buckets
    # List prices per GB-month, and each archived object's 40 KB overhead (8 KB of it at STANDARD's price).
    prices = settings.prices
    glacier = 10 * prices.storage["GLACIER"] + 32 * 1024 * prices.storage_per_byte_month("GLACIER")
    assert found.plans["documents"]["GLACIER"].monthly_usd == pytest.approx(glacier, abs=1e-6)
    standard = 3 * prices.storage["STANDARD"] + 8 * 1024 * prices.storage_per_byte_month("STANDARD")
    assert found.plans["documents"]["STANDARD"].monthly_usd == pytest.approx(standard, abs=1e-6)

    cache = StorageCache(ttl=timedelta(hours=1))
    cache.get(s3, settings.plans, settings.prices, now)
    cache.get(s3, settings.plans, settings.prices, now + timedelta(minutes=59))
    assert s3.listings == 2 * buckets
    cache.get(s3, settings.plans, settings.prices, now + timedelta(minutes=61))
    assert s3.listings == 3 * buckets

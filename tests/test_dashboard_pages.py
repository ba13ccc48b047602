"""The dashboard's pages and buttons, in-process against moto: one seeded catalog (a month of history, a failed
plan, held deletions, a verification finding, a restore waiting for a thaw) shared by the module; requests go
straight to the WSGI application. The same pages in a real browser: tests/test_dashboard_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.api.backups import get_backup, list_backups
from chalicelib.aws import Clients
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import RecordStore
from chalicelib.config import Settings
from chalicelib.dashboard import charts, pages
from chalicelib.dashboard.server import Dashboard
from chalicelib.cost.reports import CostReports, cost_key
from chalicelib.dashboard import storage as storage_module
from chalicelib.dashboard.views import _usd
from chalicelib.layout import DATA_PREFIX
from chalicelib.prune.record import PlanPrune, PruneRecord, PruneStore, new_prune_id
from chalicelib.times import isoformat, utcnow
from chalicelib.verify.record import VerificationStore, describe
from tests.conftest import REGION, STAGE_ENV
from tests.dashboard_helpers import Answer, World, call, seed
from tests.moto_state import buckets_restored

ENV = dict(STAGE_ENV, WORKER_MODE="inline", TIME_ZONE="Asia/Manila")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Settings, Any, World]]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            settings = Settings.from_environ(ENV)
            clients = Clients(session=boto3.session.Session(region_name=REGION))
            yield settings, clients, seed(settings, clients, ENV, utcnow())


@pytest.fixture(autouse=True)
def unchanged_world(world: tuple[Settings, Any, World]) -> Iterator[None]:
    """The seeded world is made once for the module, and every test gets it as seeded: what a test writes
    (a backup, a check, a prune record, a cost report) is gone before the next, whatever order the workers
    run the tests in."""
    with buckets_restored():
        yield


@pytest.fixture
def app(world: tuple[Settings, Any, World]) -> Dashboard:
    settings, clients, _ = world
    dashboard = Dashboard(settings, clients, stage="test")
    dashboard.bind(8001)
    return dashboard


@pytest.fixture(scope="module")
def index(world: tuple[Settings, Any, World]) -> Answer:
    settings, clients, _ = world
    dashboard = Dashboard(settings, clients, stage="test")
    dashboard.bind(8001)
    return call(dashboard, "GET", "/")


def row(answer: Answer, plan: str) -> Any:
    return answer.page.find(id="plans").find("tr", data_plan=plan)


def test_every_plan_shows_its_last_status_and_a_failed_plan_its_reason(index: Answer, world: Any) -> None:
    assert index.status == 200
    _, _, seeded = world
    documents, photos, database = (row(index, name) for name in ("documents", "photos", "database"))
    assert documents.find(class_="last").find("span", class_="badge s-partial").text() == "PARTIAL"
    assert database.find(class_="last").find("span", class_="badge s-succeeded").text() == "SUCCEEDED"
    assert photos.find(class_="last").find("span", class_="badge s-failed").text() == "FAILED"
    reason = photos.find(class_="reason").text()
    assert "s3 source 'photos'" in reason and "NoSuchBucket" in reason
    # The last success of photos is the first real backup, and its latest snapshot is that backup's.
    assert seeded.latest in documents.find(class_="last").text()
    assert index.page.find(id="summary").find("h1").text() == "Needs attention"


def test_what_needs_attention(index: Answer, world: Any) -> None:
    _, _, seeded = world
    attention = index.page.find(id="attention")
    held = attention.find(id="held-deletions").text()
    assert "documents: 4 held back in" in held and seeded.latest in held and "disappeared" in held
    failed = attention.find(id="failed").text()
    assert "photos failed in" in failed and "NoSuchBucket" in failed
    verification = attention.find(id="verification")
    assert "MISSING" in verification.text() and seeded.missing_key in verification.text()
    slices = verification.find("ol", class_="slices").find_all("li")
    assert len(slices) == 7 and sum("failed" in item.text() for item in slices) == 1
    restores = attention.find(id="restores")
    assert "WAITING_FOR_THAW" in restores.text() and "10 of 12 restored" in restores.text()
    assert restores.find("progress").attrs == {"max": "12", "value": "10"}
    held_prunes = attention.find(id="held-prunes").text()
    assert f"database: prune {seeded.held_prune} held" in held_prunes and "5 of 6 snapshots" in held_prunes
    assert attention.find(id="drift").text().endswith("None.")


def test_times_are_shown_in_the_zone_and_the_api_keeps_utc(index: Answer, world: Any) -> None:
    settings, clients, seeded = world
    assert "Asia/Manila (PST, UTC+08:00)" in index.page.find(id="zone").text()
    described = get_backup(RecordStore(clients.s3, settings.plans.catalog_bucket), seeded.latest)
    started = described["started_at"]
    assert started.endswith("Z")
    shown = [t for t in index.page.find(id="recent").find_all("time") if t.attrs["datetime"] == started]
    manila = datetime.fromisoformat(started.replace("Z", "+00:00")) + timedelta(hours=8)
    assert shown and shown[0].text() == manila.strftime("%Y-%m-%d %H:%M") + " PST"


def test_the_charts_have_a_mark_per_backup_and_plan_and_a_bar_per_day(app: Dashboard, world: Any) -> None:
    settings, clients, seeded = world
    data = pages.index(settings, clients, utcnow())
    backups = [b for b in data["o"].backups if not b.get("dry_run")]
    assert len(backups) >= len(seeded.history) + 2
    # One mark per backup in the "All plans" lane, and one per plan it backed up.
    expected = sum(1 + len(b["plans"]) for b in backups)
    assert len([e for e in data["charts"]["timeline"].elements if "mark" in str(e.attrs.get("class")).split()]) == expected
    page = call(app, "GET", "/").page
    drawn = [e for e in page.find("svg", data_chart="timeline").find_all() if "mark" in e.classes()]
    assert len(drawn) >= expected  # (another test's button may have added a backup meanwhile)
    assert len([m for m in drawn if "mark-failed" in m.classes()]) >= 2  # the history's failed day, and photos
    # A bar for each day of the zone's calendar with backups: 29 days of history and today.
    bars = page.find("svg", data_chart="bytes-copied").find_all("rect", class_="bar")
    assert 29 <= len(bars) <= 31
    assert page.find("svg", data_chart="stored").find_all("polyline")
    assert page.find(id="cost-unavailable")


def test_the_cost_panel_draws_a_report_of_the_agreed_shape(app: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    months = [f"2027-{m:02d}" for m in range(1, 13)]
    report = {
        "prices": {"region": "us-east-1", "read_on": "2026-11-01", "currency": "USD"},
        "total": {"monthly_usd": 12.5, "storage": {
            "STANDARD": {"versions": 1200, "bytes": 50 * 10**9, "monthly_usd": 1.15},
            "GLACIER": {"versions": 30000, "bytes": 2 * 10**12, "monthly_usd": 7.2},
            "DEEP_ARCHIVE": {"versions": 90000, "bytes": 4 * 10**12, "monthly_usd": 4.15}},
            "upkeep": {"monthly_usd": 1.25, "jobs": {
                "verification": {"monthly_usd": 1.0, "requests_per_day": {"head": 60000.4, "get": 51}, "lambda_seconds_per_day": 480.2},
                "alerts": {"monthly_usd": 0.25, "requests_per_day": {"sns": 1}, "lambda_seconds_per_day": 0}}}},
        "plans": {name: {"monthly_usd": 12.5 / 3, "storage": {}, "projection": [
            {"month": month, "monthly_usd": 4.0 + i, "by_class": {
                "STANDARD": {"bytes": 10**9, "monthly_usd": 1.0},
                "GLACIER": {"bytes": 10**12, "monthly_usd": 2.0 + i / 2},
                "DEEP_ARCHIVE": {"bytes": 10**12, "monthly_usd": 1.0 + i / 2}}}
            for i, month in enumerate(months)]} for name in ("documents", "photos", "database")},
    }
    # The stored cost report (GET /costs): the page shows it as it is.
    monkeypatch.setattr(storage_module, "stored_cost_report", lambda settings, clients, now: report)
    page = call(app, "GET", "/").page
    storage = page.find(id="storage")
    assert "$12.50 a month" in storage.find(id="cost-total").text()
    classes = [r.find("th").text() for r in storage.find(id="cost-classes").find("tbody").find_all("tr")]
    assert classes == ["DEEP_ARCHIVE", "GLACIER", "STANDARD"]
    upkeep = storage.find(id="cost-upkeep")
    assert "$1.25 a month" in upkeep.find("caption").text()
    rows = {r.find("th").text(): [cell.text() for cell in r.find_all("td")] for r in upkeep.find("tbody").find_all("tr")}
    assert rows == {"verification": ["60,051", "480 s", "$1.00"], "alerts": ["1", "0 s", "$0.25"]}
    projection = page.find("svg", data_chart="projection")
    bars = projection.find_all("rect")
    assert len(bars) == 12 * 3
    # The tallest stack is the last month: 3 plans x (1 + 7.5 + 6.5) = $45.
    assert "$45.00" in projection.text()
    assert not page.find_all(id="cost-unavailable")


def test_storage_per_class_is_what_s3_lists_until_the_cost_report_exists(app: Dashboard, world: Any, monkeypatch: Any) -> None:
    settings, clients, _ = world
    # No cost report stored yet.
    monkeypatch.setattr(storage_module, "stored_cost_report", lambda settings, clients, now: None)
    expected = 0
    for bucket in sorted({plan.bucket for plan in settings.plans.plans}):
        for listed in clients.s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=DATA_PREFIX):
            expected += len(listed.get("Versions", []))
    page = call(app, "GET", "/").page
    rows = page.find(id="storage-classes").find("tbody").find_all("tr")
    shown = {r.attrs["data-class"]: r.find_all("td")[0].text() for r in rows}
    assert expected > 0 and shown == {"STANDARD": f"{expected:,}"}  # moto keeps every version in STANDARD
    assert "a month for storage" in page.find(id="cost-total").text()
    assert page.find(id="cost-unavailable") and not page.find_all(id="cost-classes")


def test_a_held_prune_needs_attention_until_a_later_prune_of_its_plan_succeeds(app: Dashboard, world: Any) -> None:
    settings, clients, _ = world
    store = PruneStore(clients.s3, settings.plans.catalog_bucket)
    now = utcnow()

    def prune(minutes_ago: int, statuses: dict[str, str], dry_run: bool = False) -> str:
        at = now - timedelta(minutes=minutes_ago)
        plans = {}
        for name, status in statuses.items():
            reasons = ["it would remove 5 of 6 snapshots (83%)"] if status == "HELD" else []
            plans[name] = PlanPrune(plan=name, phase="done", status=status, guard={"reasons": reasons, "held": bool(reasons)},
                                    warnings=[f"prune of plan {name} held: {reasons[0]}"] if reasons else [])
        record = PruneRecord(prune_id=new_prune_id(at), trigger="schedule", plan_names=list(statuses), dry_run=dry_run,
                             status="HELD" if "HELD" in statuses.values() else "SUCCEEDED", started_at=isoformat(at),
                             finished_at=isoformat(at), plans=plans)
        store.create(record)
        return record.prune_id

    held = prune(30, {"photos": "HELD", "documents": "HELD"})
    prune(20, {"documents": "SUCCEEDED"})  # documents' retention went through since
    prune(10, {"database": "SUCCEEDED"}, dry_run=True)  # a dry run changes nothing: database's held one stays
    panel = call(app, "GET", "/").page.find(id="held-prunes")
    items = panel.find_all("li")
    assert [i.attrs["data-plan"] for i in items] == ["photos", "database"]
    assert held in items[0].text() and "it would remove 5 of 6 snapshots (83%)" in items[0].text()


def test_a_pruned_snapshot_is_shown_as_such_and_offers_no_restore(app: Dashboard, world: Any) -> None:
    settings, clients, seeded = world
    backup_id = seeded.history[-3]
    PrunedMarkers(clients.s3, settings.plans.catalog_bucket).mark("documents", backup_id, new_prune_id(), utcnow())
    page = call(app, "GET", f"/backups/{backup_id}?plan=documents").page
    assert "pruned" in page.find(id="results").find("tr", data_plan="documents").text()
    assert "pruned" not in page.find(id="results").find("tr", data_plan="photos").text()
    assert not page.find_all("a", id="quote-link") and not page.find_all(id="objects")
    assert "pruned" in page.find(id="contents").text()
    assert call(app, "GET", f"/backups/{backup_id}/quote?plan=documents").status == 410


def test_a_backups_page_shows_its_plans_findings_and_snapshot_a_page_at_a_time(app: Dashboard, world: Any) -> None:
    _, _, seeded = world
    page = call(app, "GET", f"/backups/{seeded.latest}?plan=documents").page
    results = page.find(id="results")
    assert results.find("tr", data_plan="photos").find("span", class_="badge s-failed")
    findings = results.find("ul", data_plan="documents").text()
    assert "Deletions held back" in findings
    objects = page.find(id="objects").find("tbody").find_all("tr")
    # 6 documents remain in the snapshot (the 4 held back are not part of its content).
    assert [o.find_all("td")[1].text() for o in objects] == [f"reports/report-{i}.txt" for i in range(4, 10)]
    quote_link = page.find("a", id="quote-link").attrs["href"]
    assert quote_link == f"/backups/{seeded.latest}/quote?plan=documents&prefix="

    filtered = call(app, "GET", f"/backups/{seeded.latest}?plan=documents&prefix=reports/report-8").page
    assert [o.find_all("td")[1].text() for o in filtered.find(id="objects").find("tbody").find_all("tr")] == ["reports/report-8.txt"]


def test_the_quote_link_answers_with_a_dry_run_and_writes_nothing(app: Dashboard, world: Any, recorded_calls: Any) -> None:
    _, _, seeded = world
    answer = call(app, "GET", f"/backups/{seeded.latest}/quote?plan=documents&prefix=reports/report-9")
    assert answer.status == 200
    page = answer.page
    assert page.find(id="quote-objects").text().startswith("1 ")
    assert [r.find("th").text() for r in page.find(id="tiers").find("tbody").find_all("tr")] == ["Bulk", "Standard", "Expedited"]
    assert "--prefix reports/report-9 --to-bucket restore-target" in page.find(id="restore-command").text()
    writes = [c for c in recorded_calls.calls() if c.operation in ("PutObject", "CopyObject", "DeleteObject", "RestoreObject")]
    assert writes == []


def test_back_up_now_starts_a_backup_that_get_backups_lists(app: Dashboard, world: Any) -> None:
    settings, clients, _ = world
    answer = call(app, "POST", "/backup", form={"token": app.token, "plans": "database"})
    assert answer.status == 303
    backup_id = answer.headers["Location"].rsplit("/", 1)[1]
    listed = list_backups(RecordStore(clients.s3, settings.plans.catalog_bucket), settings.plans, {"limit": "5"})
    assert listed["backups"][0]["backup_id"] == backup_id
    assert list(listed["backups"][0]["plans"]) == ["database"]
    shown = call(app, "GET", answer.headers["Location"])
    assert shown.status == 200 and backup_id in shown.page.find("h1").text()


def test_verify_records_a_check_that_the_verify_worker_runs_as_the_api_does(app: Dashboard, world: Any) -> None:
    settings, clients, seeded = world
    answer = call(app, "POST", f"/backups/{seeded.first}/verify", form={"token": app.token, "sample_percent": "50"})
    assert answer.status == 303
    location = answer.headers["Location"]
    verification_id = location.rsplit("/", 1)[1]
    assert location == f"/verifications/{verification_id}" and verification_id.startswith("check-")
    # The record GET /verifications/{id} shows (this stage's worker runs it in-process, at once).
    recorded = describe(VerificationStore(clients.s3, settings.plans.catalog_bucket), verification_id)
    assert recorded["kind"] == "backup" and recorded["backup_id"] == seeded.first and recorded["status"] == "FAILED"
    page = call(app, "GET", location).page
    assert page.find(id="verify-checked").text() == "21"  # 10 documents, 10 photos, 1 table export
    assert "MISSING" in page.find(id="verify").text() and "reports/report-7.txt" in page.find(id="verify").text()
    refused = call(app, "POST", f"/backups/{seeded.first}/verify", form={"token": app.token, "sample_percent": "200"})
    assert refused.status == 400 and "sample_percent" in refused.page.find(id="message").text()


@pytest.mark.parametrize(
    ("form", "headers", "why"),
    [
        ({}, {}, "no page token"),
        ({"token": "guessed"}, {}, "token is wrong"),
        (None, {"X-Dashboard-Token": "guessed"}, "token is wrong"),
        ("token", {"Origin": "https://evil.example"}, "another origin"),
        ("token", {"Origin": "null"}, "another origin"),
        ("token", {"Sec-Fetch-Site": "cross-site"}, "another site"),
        ("token", {"Referer": "https://evil.example/page"}, "another page"),
    ],
)
def test_a_state_changing_request_from_anywhere_but_the_page_is_refused(
    app: Dashboard, world: Any, form: Any, headers: dict[str, str], why: str
) -> None:
    settings, clients, _ = world
    records = RecordStore(clients.s3, settings.plans.catalog_bucket)
    before = list_backups(records, settings.plans, {"limit": "1"})["backups"][0]["backup_id"]
    body = {"token": app.token} if form == "token" else form
    answer = call(app, "POST", "/backup", form=body if body is not None else {}, headers=headers)
    assert answer.status == 403, answer.body
    assert why in answer.page.find(id="message").text()
    assert list_backups(records, settings.plans, {"limit": "1"})["backups"][0]["backup_id"] == before


def test_the_page_token_is_accepted_from_the_header_too_and_from_the_page_itself(app: Dashboard) -> None:
    own = {"Origin": sorted(f"http://{h}" for h in app.hosts)[0], "Sec-Fetch-Site": "same-origin"}
    answer = call(app, "POST", "/backup", form={"plans": "database"}, headers={**own, "X-Dashboard-Token": app.token})
    assert answer.status == 303


def test_another_host_name_gets_nothing_not_even_a_page(app: Dashboard) -> None:
    # A site that rebinds its DNS name to 127.0.0.1 reaches the port, but with its own Host.
    answer = call(app, "GET", "/", host="attacker.example:8001")
    assert answer.status == 400 and "documents" not in answer.body
    assert call(app, "GET", "/", host="localhost:8001").status == 200


def test_only_the_two_buttons_change_state(app: Dashboard, world: Any) -> None:
    _, _, seeded = world
    assert call(app, "GET", "/backup").status == 405
    assert call(app, "GET", f"/backups/{seeded.first}/verify").status == 405
    assert call(app, "POST", "/", form={"token": app.token}).status == 405
    assert call(app, "DELETE", f"/backups/{seeded.first}").status == 405
    assert call(app, "GET", "/nothing-here").status == 404
    answer = call(app, "GET", "/backups/not-a-backup-id")
    assert answer.status == 404 and "backup ids look like" in answer.page.find(id="message").text()
    headers = call(app, "GET", "/").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"


def test_the_stylesheet_is_served_and_nothing_comes_from_elsewhere(index: Answer, app: Dashboard) -> None:
    assert call(app, "GET", "/static/dashboard.css").headers["Content-Type"].startswith("text/css")
    urls = [n.attrs.get("href") or n.attrs.get("src") or "" for n in index.page.find_all() if n.tag in ("link", "script", "img")]
    assert urls == ["/static/dashboard.css"]
    assert not index.page.find_all("script")
    assert "http://" not in index.body.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in index.body


def test_timeline_marks_follow_the_backups_statuses(world: Any) -> None:
    settings, _, _ = world
    now = utcnow()
    backups = [
        {"backup_id": "a", "status": "SUCCEEDED", "started_at": (now - timedelta(days=3)).isoformat(), "plans": {"documents": {"status": "SUCCEEDED"}}},
        {"backup_id": "b", "status": "FAILED", "started_at": (now - timedelta(days=2)).isoformat(), "plans": {"documents": {"status": "FAILED"}}},
        {"backup_id": "c", "status": "PARTIAL", "started_at": (now - timedelta(days=1)).isoformat(), "dry_run": True, "plans": {}},
    ]
    chart = charts.timeline(backups, ["documents"], now - timedelta(days=30), now, settings.time_zone)
    assert len(chart.of("circle", "mark-succeeded")) == 2
    assert len(chart.of("path", "mark-failed")) == 2
    assert chart.of("polygon") == []  # the dry run is not drawn
    xs = [float(e.attrs["cx"]) for e in chart.of("circle", "mark-succeeded")]
    assert all(charts.LEFT < x < charts.WIDTH - charts.RIGHT for x in xs)


def test_the_page_shows_the_stored_cost_report_of_the_newest_backup_and_never_computes_one(
    app: Dashboard, world: Any
) -> None:
    settings, clients, _ = world
    reports = CostReports.from_settings(settings, clients)
    newest = reports.newest_finished()
    assert newest is not None and reports.stored(newest) is None
    # Nothing stored: the page lists storage per class, and stores no report either.
    page = call(app, "GET", "/").page
    assert page.find(id="cost-unavailable") and reports.stored(newest) is None
    report = reports.latest()  # what GET /costs (or the daily backup) computes and stores
    try:
        page = call(app, "GET", "/").page
        assert not page.find_all(id="cost-unavailable")
        total = page.find(id="cost-total").text()
        assert f"{_usd(report['total']['monthly_usd'])} a month at" in total, total
        shown = [r.find("th").text() for r in page.find(id="cost-classes").find("tbody").find_all("tr")]
        assert shown == sorted(report["total"]["storage"])
    finally:
        clients.s3.delete_object(Bucket=settings.plans.catalog_bucket, Key=cost_key(newest))

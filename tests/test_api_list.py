"""GET /backups: newest first, filters, limits, next_token, and pages that read only what they return."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest

from tests.api_helpers import S3Calls, make_buckets, seed_record

CATALOG = "test-backup-documents"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
STATUS_CYCLE = ("SUCCEEDED", "PARTIAL", "FAILED", "RUNNING", "SUCCEEDED")


@pytest.fixture
def seeded(app_client: Any, s3: Any, plans: Any) -> list[dict[str, Any]]:
    """45 backups, one every 7 hours from T0, oldest first, with varying statuses and plans."""
    make_buckets(s3, plans)
    seeds = []
    for index in range(45):
        moment = T0 + timedelta(hours=7 * index)
        status = STATUS_CYCLE[index % len(STATUS_CYCLE)]
        names = ("photos",) if index % 2 else ("documents", "database")
        seeds.append({"id": seed_record(s3, CATALOG, moment, status, names), "at": moment, "status": status, "plans": names})
    return seeds


@pytest.fixture
def calls(app_client: Any) -> S3Calls:
    """Count the S3 requests the API handler makes."""
    import app as app_module
    from chalicelib.aws import Clients

    app_module._clients = Clients()
    return S3Calls(app_module._clients.s3)


def ids(response: Any) -> list[str]:
    return [item["backup_id"] for item in response.json_body["backups"]]


def walk(client: Any, url: str) -> list[str]:
    """Every id of a listing, following next_token to the end."""
    found: list[str] = []
    token = None
    for _ in range(100):
        page = client.http.get(url + (f"&next_token={token}" if token else ""))
        assert page.status_code == 200, page.body
        found.extend(ids(page))
        token = page.json_body["next_token"]
        if token is None:
            return found
    raise AssertionError("next_token never ran out")


def newest_first(seeds: list[dict[str, Any]]) -> list[str]:
    return [seed["id"] for seed in sorted(seeds, key=lambda s: s["at"], reverse=True)]


def test_newest_first_twenty_a_page_and_tokens_walk_everything_once(app_client: Any, seeded: list[dict[str, Any]]) -> None:
    first = app_client.http.get("/backups")
    assert first.status_code == 200
    assert ids(first) == newest_first(seeded)[:20]
    assert first.json_body["next_token"]
    everything = walk(app_client, "/backups?limit=7")
    assert everything == newest_first(seeded)
    item = first.json_body["backups"][0]
    assert {"status", "plans", "totals", "started_at", "duration_seconds"} <= set(item)


def test_a_page_reads_one_listing_and_only_the_records_it_returns(
    app_client: Any, seeded: list[dict[str, Any]], calls: S3Calls
) -> None:
    # One GET per record returned: the sealed record of a finished backup; a running one has no seal yet, so
    # its working record takes a second GET.
    calls.reset()
    page = app_client.http.get("/backups?limit=5")
    assert len(ids(page)) == 5
    running = sum(1 for b in page.json_body["backups"] if b["status"] == "RUNNING")
    assert calls.counts["ListObjectsV2"] == 1
    assert calls.counts["GetObject"] == 5 + running
    calls.reset()
    second = app_client.http.get(f"/backups?limit=5&next_token={page.json_body['next_token']}")
    running = sum(1 for b in second.json_body["backups"] if b["status"] == "RUNNING")
    assert calls.counts["ListObjectsV2"] == 1 and calls.counts["GetObject"] == 5 + running


def test_status_filter(app_client: Any, seeded: list[dict[str, Any]]) -> None:
    for status in ("SUCCEEDED", "PARTIAL", "FAILED", "RUNNING"):
        expected = newest_first([s for s in seeded if s["status"] == status])
        assert walk(app_client, f"/backups?status={status}&limit=4") == expected


def test_plan_filter(app_client: Any, seeded: list[dict[str, Any]]) -> None:
    assert walk(app_client, "/backups?plan=photos&limit=6") == newest_first([s for s in seeded if "photos" in s["plans"]])
    assert walk(app_client, "/backups?plan=database&status=FAILED") == newest_first(
        [s for s in seeded if "database" in s["plans"] and s["status"] == "FAILED"]
    )


def test_since_and_until_bound_the_listing_by_the_keys(
    app_client: Any, seeded: list[dict[str, Any]], calls: S3Calls
) -> None:
    since, until = seeded[10]["at"], seeded[14]["at"]  # inclusive: five backups
    url = f"/backups?since={since.isoformat().replace('+00:00', 'Z')}&until={quote(until.isoformat())}"
    calls.reset()
    page = app_client.http.get(url)
    assert ids(page) == newest_first(seeded[10:15])
    assert page.json_body["next_token"] is None
    # Only the records in range were read: the time bounds come from the keys (one GET each, and a second
    # for a running backup, which has no sealed record yet).
    running = sum(1 for s in seeded[10:15] if s["status"] == "RUNNING")
    assert calls.counts["GetObject"] == 5 + running
    assert walk(app_client, url + "&limit=2") == newest_first(seeded[10:15])


def test_a_date_alone_covers_the_whole_day(app_client: Any, seeded: list[dict[str, Any]]) -> None:
    day = seeded[3]["at"].date()
    expected = newest_first([s for s in seeded if s["at"].date() == day])
    assert expected
    assert walk(app_client, f"/backups?since={day}&until={day}") == expected


BAD_QUERIES = [
    ("limit=0", "limit must be a whole number from 1 to 100"),
    ("limit=101", "limit must be"),
    ("limit=abc", "limit must be"),
    ("limit=2.5", "limit must be"),
    ("status=DONE", "status must be one of"),
    ("plan=nope", "the known plans are"),
    ("since=yesterday", "ISO 8601"),
    ("until=2026-13-01", "ISO 8601"),
    ("since=2026-11-26T10:00:00", "time zone"),
    ("since=2026-11-27&until=2026-11-26", "swap"),
    ("pland=photos", "unknown query parameter"),
    ("next_token=garbage", "next_token"),
    ("next_token=", "next_token"),
    ("next_token=eyJ2IjoxfQ.AAAA", "next_token"),
]


def test_bad_queries_are_400_with_a_reason(app_client: Any, s3: Any, plans: Any) -> None:
    make_buckets(s3, plans)
    seed_record(s3, CATALOG, T0)
    for query, says in BAD_QUERIES:
        response = app_client.http.get(f"/backups?{query}")
        assert response.status_code == 400, query
        assert response.json_body["Code"] == "BadRequestError"
        assert says in response.json_body["Message"], query


def test_a_tampered_or_foreign_token_is_400_not_a_first_page(app_client: Any, seeded: list[dict[str, Any]]) -> None:
    from chalicelib.catalog import pagetokens

    token = app_client.http.get("/backups?limit=3").json_body["next_token"]
    body, mac = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{flipped}.{mac}", token[:-3], token + "x", f"{body}.{mac[::-1]}"):
        response = app_client.http.get(f"/backups?limit=3&next_token={bad}")
        assert response.status_code == 400, bad
    # A token of another query: the filters must be the same on every page.
    other = app_client.http.get(f"/backups?limit=3&status=FAILED&next_token={token}")
    assert other.status_code == 400 and "different query" in other.json_body["Message"]
    # A well-formed token that names something other than a record key.
    forged = pagetokens.encode("backups", "meta/locks/photos.json", {"plan": None, "status": None, "since": None, "until": None})
    assert app_client.http.get(f"/backups?next_token={forged}").status_code == 400
    # The limit may change between pages.
    assert app_client.http.get(f"/backups?limit=10&next_token={token}").status_code == 200


def test_an_empty_catalog_is_an_empty_page(app_client: Any, s3: Any, plans: Any) -> None:
    make_buckets(s3, plans)
    response = app_client.http.get("/backups")
    assert response.status_code == 200
    assert response.json_body == {"backups": [], "next_token": None}

"""Retention through the API, the schedule and the command line: POST /prune (202), GET /prunes and
GET /prunes/{id}, the guard holding a prune until it is allowed, pruned backups still listed with the time
and refused (410) by restores and verification, the alert, a repeated schedule finding the same prune, bad
input named, and `org-backup prune` / `org-backup snapshots`.

The clock is simulated (time-machine): moto dates versions by it, so the grace period passes without sleeping.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine

from chalicelib import cli
from tests.conftest import read_alerts, scheduled_event
from tests.stored import assert_versions_hold, entries_of

JSON = {"Content-Type": "application/json"}
DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
DOCS = "test-src-documents"
DOCS_BACKUP = "test-backup-documents"
PLANS = ["documents"]
CHANGED = "reports/report-3.txt"


def post(client: Any, path: str, body: Any) -> Any:
    return client.http.post(path, headers=JSON, body=json.dumps(body))


def versions_of(s3: Any, key: str) -> dict[str, bytes]:
    found = {}
    for item in s3.list_object_versions(Bucket=DOCS_BACKUP, Prefix=key).get("Versions", []):
        if item["Key"] == key:
            found[item["VersionId"]] = s3.get_object(Bucket=DOCS_BACKUP, Key=key, VersionId=item["VersionId"])["Body"].read()
    return found


@pytest.fixture
def history(app_client: Any, backup_buckets: Any, sources: dict[str, Any], topic_queue: str, s3: Any, sqs: Any) -> Any:
    """Three backups of the documents an hour apart on one day (a document changed between each), then three days later: by
    the default policy (35 daily, ...) only the last is kept, and the versions only the others name are past
    the grace period."""
    s3.create_bucket(Bucket="restore-target")
    with time_machine.travel(DAY0, tick=True) as clock:
        first = post(app_client, "/backup", {"plans": ["documents"]}).json_body["backup_id"]
        clock.shift(timedelta(hours=1))
        s3.put_object(Bucket=DOCS, Key=CHANGED, Body=b"the first draft\n")
        middle = post(app_client, "/backup", {"plans": ["documents"]}).json_body["backup_id"]
        clock.shift(timedelta(hours=1))
        s3.put_object(Bucket=DOCS, Key=CHANGED, Body=b"the second draft\n")
        second = post(app_client, "/backup", {"plans": ["documents"]}).json_body["backup_id"]
        clock.shift(timedelta(days=3))
        while read_alerts(sqs, topic_queue):
            pass  # the backups' own alerts
        yield {"client": app_client, "first": first, "middle": middle, "second": second, "clock": clock, "s3": s3, "sqs": sqs, "queue": topic_queue}


def test_a_prune_through_the_api_holds_then_removes_what_no_rule_keeps_and_refuses_it_afterwards(history: Any) -> None:
    client, s3, first, middle, second = (history[k] for k in ("client", "s3", "first", "middle", "second"))
    key = f"data/documents/{CHANGED}"
    before = versions_of(s3, key)
    assert len(before) == 3
    unkept = {v for v, body in before.items() if body != b"the second draft\n"}
    kept_entries = entries_of(s3, DOCS_BACKUP, "documents", second)

    # A dry run says what would go and what it would save, and changes nothing.
    response = post(client, "/prune", {"dry_run": True})
    assert response.status_code == 202, response.body
    assert response.headers["Location"] == f"/prunes/{response.json_body['prune_id']}"
    dry = client.http.get(f"/prunes/{response.json_body['prune_id']}").json_body
    assert dry["dry_run"] is True and "dry run" in dry["note"]
    assert set(dry["plans"]["documents"]["removing"]) == {first, middle}
    assert dry["plans"]["documents"]["would_delete"]["versions"] >= 2
    assert versions_of(s3, key) == before
    assert client.http.get(f"/backups/{first}").json_body["pruned_at"] is None

    # Removing two snapshots of three is past the guard (30%): held, reported, nothing deleted.
    held = post(client, "/prune", {}).json_body
    report = client.http.get(f"/prunes/{held['prune_id']}").json_body
    assert report["status"] == "HELD"
    assert report["plans"]["documents"]["status"] == "HELD" and report["plans"]["documents"]["guard"]
    assert versions_of(s3, key) == before
    alerts = [json.loads(a["Message"]) if a["Message"].startswith("{") else a for a in read_alerts(history["sqs"], history["queue"])]
    subjects = [a.get("Subject", "") for a in alerts]
    assert any("HELD" in s for s in subjects), subjects

    # Allowed for one run, it removes the first backup's snapshot and the version only it named.
    done = post(client, "/prune", {"allow_large_prune": PLANS}).json_body
    report = client.http.get(f"/prunes/{done['prune_id']}").json_body
    assert report["status"] == "SUCCEEDED", report
    documents = report["plans"]["documents"]
    assert set(documents["removing"]) == {first, middle} and documents["snapshots_removed"] == 2
    (kept,) = [s for s in documents["snapshots"] if s["kept"]]
    assert kept["backup_id"] == second and kept["reasons"]
    assert documents["deleted"]["versions"] >= 2
    after = versions_of(s3, key)
    assert set(after) == set(before) - unkept and after == {v: before[v] for v in after}
    # Every version the kept snapshot names is there, by version id, with its bytes.
    assert assert_versions_hold(s3, DOCS_BACKUP, kept_entries) == len(kept_entries)
    assert any(e.key == CHANGED for e in kept_entries)

    # Still listed, marked pruned with the time; restoring or verifying it answers 410 and says why.
    listed = {b["backup_id"]: b for b in client.http.get("/backups").json_body["backups"]}
    # (`pruned`: plan -> when; `pruned_at`: when the last of its snapshots went.)
    assert set(listed[first]["pruned"]) == set(PLANS) and listed[first]["pruned_at"] == max(listed[first]["pruned"].values())
    assert set(listed[middle]["pruned"]) == set(PLANS)
    assert listed[second]["pruned"] == {} and listed[second]["pruned_at"] is None
    shown = client.http.get(f"/backups/{first}").json_body
    assert shown["pruned_at"] and shown["plans"]["documents"]["pruned_at"] == listed[first]["pruned"]["documents"]
    restore = post(client, "/restores", {"backup_id": first, "plan": "documents", "target": {"bucket": "restore-target"}})
    assert restore.status_code == 410 and restore.json_body["Code"] == "SnapshotPruned", restore.json_body
    assert "pruned" in restore.json_body["Message"] and done["prune_id"] in restore.json_body["Message"]
    verify = post(client, f"/backups/{first}/verify", {"plans": ["documents"]})
    assert verify.status_code == 410 and verify.json_body["Code"] == "SnapshotPruned"
    # The kept one restores as before.
    assert post(client, "/restores", {"backup_id": second, "plan": "documents", "target": {"bucket": "restore-target"}}).status_code == 202

    # The listing of prunes, newest first, without the snapshot lists.
    prunes = client.http.get("/prunes").json_body["prunes"]
    assert [p["prune_id"] for p in prunes] == [done["prune_id"], held["prune_id"], response.json_body["prune_id"]]
    assert "snapshots" not in prunes[0]["plans"]["documents"]
    # The alert of the real prune says what was removed.
    alerts = read_alerts(history["sqs"], history["queue"])
    assert any("Prune SUCCEEDED" in a.get("Subject", "") and "removed" in a.get("Subject", "") for a in alerts), alerts


def test_a_repeated_delivery_of_the_schedule_finds_the_same_prune(history: Any) -> None:
    client = history["client"]
    event = scheduled_event(client)
    first = client.lambda_.invoke("daily_prune", event).payload
    again = client.lambda_.invoke("daily_prune", event).payload
    assert first["prune_id"] == again["prune_id"]
    assert [p["prune_id"] for p in client.http.get("/prunes").json_body["prunes"]] == [first["prune_id"]]
    another = client.lambda_.invoke("daily_prune", scheduled_event(client, datetime.now(timezone.utc) + timedelta(days=1)))
    assert another.payload["prune_id"] != first["prune_id"]


@pytest.mark.parametrize(
    "body, named",
    [
        ({"plans": ["nope"]}, "nope"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"allow_large_prune": ["nope"]}, "nope"),
        ({"allow_large_prune": "documents"}, "allow_large_prune"),
        ({"keep_daily": 3}, "keep_daily"),
    ],
)
def test_bad_prune_requests_are_refused_naming_what_was_wrong(app_client: Any, backup_buckets: Any, body: Any, named: str) -> None:
    response = post(app_client, "/prune", body)
    assert response.status_code == 400, response.body
    assert named in response.json_body["Message"]
    assert app_client.http.get("/prunes").json_body["prunes"] == []


def test_unknown_prunes_are_404_naming_the_id(app_client: Any, backup_buckets: Any) -> None:
    for prune_id in ("prune-20260101T000000000Z-abcdef12", "not-a-prune"):
        response = app_client.http.get(f"/prunes/{prune_id}")
        assert response.status_code == 404 and prune_id in response.json_body["Message"]


def test_the_command_line_prunes_and_shows_what_keeps_each_snapshot(
    history: Any, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = history["first"], history["second"]

    def run(*argv: str) -> tuple[int, str]:
        code = cli.main(["--stage", "local", "--project-dir", str(project_dir), *argv])
        return code, capsys.readouterr().out

    code, out = run("snapshots", "--plan", "documents")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("2026", first[:8]))}
    assert "REMOVE" in rows[first] and "kept" in rows[second] and "daily" in rows[second]
    code, out = run("prune", "--plan", "documents", "--dry-run")
    assert code == 0 and "(dry run)" in out and "WOULD DELETE" in out
    code, out = run("prune", "--plan", "documents", "--json")
    assert code != 0 and json.loads(out)["status"] == "HELD"  # two snapshots of three: past the guard
    code, out = run("prune", "--plan", "documents", "--allow-large-prune", "documents")
    assert code == 0 and "SUCCEEDED" in out
    code, out = run("backups")
    assert "PRUNED" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("2026"))}
    assert rows[first][-1] == "documents" and rows[history["middle"]][-1] == "documents"
    assert rows[second][-1] != "documents"

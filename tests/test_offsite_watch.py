"""Watching the vault from the backup account: after each backup, the newest snapshot complete in the vault (every
version it names, its manifest and its sealed record replicated, as S3's ReplicationStatus says on the source
versions), its lag behind the newest sealed one, and failed replications. A lag beyond the vault's
`max_lag_hours`, or a FAILED version, makes the plan PARTIAL and is in the backup's alert; the dashboard shows
each plan's newest snapshot in the vault and its lag."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.vault_watch import VaultWatch, _new_versions
from chalicelib.catalog.manifests import Entry
from chalicelib.config import Settings
from chalicelib.dashboard.server import Dashboard
from chalicelib.deploy.offsite import provision_replication, replication_role_arn
from chalicelib.deploy.vault_bucket import provision_vault
from chalicelib.plans_file import DEFAULT_PLANS_FILE, load_plans
from tests.conftest import ACCOUNT, REGION, read_alerts
from tests.dashboard_helpers import call
from tests.offsite_world import VAULT_ACCOUNT, VAULT_REGION, assumed_client
from tests.s3_replication import Replication
from tests.test_restore import get, post

DOCS = "test-src-documents"
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def stage_env(tmp_path: Path, stage_env: dict[str, str]) -> dict[str, str]:
    """The shipped plans, each with a vault that may lag an hour behind."""
    document = json.loads(DEFAULT_PLANS_FILE.read_text())
    for plan in document["plans"]:
        days = 386 if plan["name"] == "database" else 2576
        plan["offsite"] = {"account": VAULT_ACCOUNT, "region": VAULT_REGION, "bucket": plan["bucket"] + "-vault",
                           "storage_class": "GLACIER_IR", "object_lock_days": days, "max_lag_hours": 1}
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(document))
    return {**stage_env, "PLANS_FILE": str(path)}


def backup(client: Any, plans: list[str]) -> dict[str, Any]:
    response = post(client, "/backup", {"plans": plans})
    assert response.status_code == 202, response.body
    return get(client, f"/backups/{response.json_body['backup_id']}").json_body


def test_a_lagging_vault_and_a_failed_replication_raise_alerts_and_the_dashboard_shows_the_vault(
    app_client: Any, backup_buckets: Any, sources: dict[str, Any], s3: Any, sqs: Any, topic_queue: str,
    stage_env: dict[str, str],
) -> None:
    plans = load_plans(stage_env)
    iam = boto3.client("iam", region_name=REGION)
    vault = assumed_client("s3")
    for plan in plans.plans:
        if plan.name != "photos":  # the photos vault is missing: S3 fails every replication into it
            provision_vault(vault, plan, replication_role_arn(plan, ACCOUNT))
        provision_replication(iam, s3, plan, ACCOUNT)
    both = ["documents", "photos"]
    with Replication() as replication, time_machine.travel(START, tick=True) as clock:
        first = backup(app_client, both)
        clock.shift(timedelta(hours=1))
        second = backup(app_client, both)
        documents = second["plans"]["documents"]
        assert documents["status"] == "SUCCEEDED", documents
        assert (documents["vault"]["newest_sealed"], documents["vault"]["newest_in_vault"]) == (first["backup_id"],) * 2
        assert documents["vault"]["lag_hours"] == 0 and documents["vault"]["failed"] == []
        photos = second["plans"]["photos"]
        assert photos["status"] == "PARTIAL" and photos["vault"]["newest_in_vault"] is None
        assert len(photos["vault"]["failed"]) == first["plans"]["photos"]["objects"] + 1  # every version, and the manifest
        assert any(line.startswith(f"vault: S3 failed to replicate {len(photos['vault']['failed'])} version(s)")
                   for line in photos["findings"]["drift"]), photos
        alert = next(a for a in read_alerts(sqs, topic_queue)[::-1] if second["backup_id"] in a["Message"])
        assert "S3 failed to replicate" in alert["Message"] and "PARTIAL" in alert["Subject"]

        # S3 falls behind: what the next two backups write stays PENDING.
        with replication.held():
            s3.put_object(Bucket=DOCS, Key="reports/report-1.txt", Body=b"changed while the vault lags\n")
            clock.shift(timedelta(hours=1))
            third = backup(app_client, ["documents"])
            assert third["plans"]["documents"]["status"] == "SUCCEEDED"  # the second is whole in the vault
            clock.shift(timedelta(hours=2))
            fourth = backup(app_client, ["documents"])
        lagging = fourth["plans"]["documents"]
        assert lagging["status"] == "SUCCEEDED", lagging  # an hour behind: not more than the hour allowed
        assert (lagging["vault"]["newest_sealed"], lagging["vault"]["newest_in_vault"]) == (third["backup_id"], second["backup_id"])
        assert lagging["vault"]["lag_hours"] == 1.0 and lagging["vault"]["pending"] > 0
        assert lagging["findings"]["drift"] == []
        clock.shift(timedelta(hours=2))
        with replication.held():
            fifth = backup(app_client, ["documents"])
        late = fifth["plans"]["documents"]
        assert late["status"] == "PARTIAL" and late["vault"]["newest_in_vault"] == second["backup_id"]
        assert late["vault"]["lag_hours"] == 3.0
        [finding] = [line for line in late["findings"]["drift"] if "hours behind" in line]
        assert f"{second['backup_id']}, is 3 hours behind the newest sealed one, {fourth['backup_id']} (more than 1;" in finding
        alert = next(a for a in read_alerts(sqs, topic_queue)[::-1] if fifth["backup_id"] in a["Message"])
        assert "hours behind" in alert["Message"]

        # S3 catches up: the vault is whole again up to the newest sealed snapshot.
        replication.release()
        clock.shift(timedelta(hours=1))
        sixth = backup(app_client, ["documents"])
        caught_up = sixth["plans"]["documents"]
        assert caught_up["status"] == "SUCCEEDED", caught_up
        assert caught_up["vault"]["newest_in_vault"] == fifth["backup_id"] and caught_up["vault"]["lag_hours"] == 0

        settings = Settings.from_environ(stage_env)
        dashboard = Dashboard(settings, Clients(session=boto3.session.Session(region_name=REGION)), stage="test")
        dashboard.bind(8001)
        page = call(dashboard, "GET", "/").page
    shown = page.find(id="plans").find("tr", data_plan="documents").find(class_="vault muted").text()
    assert shown == f"in the vault: {fifth['backup_id']}, 0.0 h behind", shown
    failed = page.find(id="plans").find("tr", data_plan="photos").find(class_="vault muted").text()
    assert "none complete" in failed and "failed" in failed, failed


def entry(key: str, version: str, held: bool = False) -> Entry:
    return Entry(source="documents", key=key, version_id=version, size=1, etag="e", identity="i", held=held)


def test_only_what_a_snapshot_names_anew_is_read() -> None:
    older = [entry("a", "1"), entry("b", "1"), entry("d", "1")]
    newer = [entry("a", "1"), entry("b", "2"), entry("c", "1"), entry("d", "1"), entry("e", "1", held=True)]
    assert list(_new_versions(older, newer)) == [("data/documents/b", "2"), ("data/documents/c", "1")]
    assert [key for key, _ in _new_versions(None, newer)] == ["data/documents/a", "data/documents/b", "data/documents/c", "data/documents/d"]

    # A packed object's bytes are its pack's version, which is what was replicated: each new pack once.
    pack = "data/~packs/20261126T000000000Z-a/0001"
    packed = [dataclasses.replace(entry(key, "p1"), pack_key=pack, pack_offset=offset) for offset, key in enumerate("fgh")]
    assert list(_new_versions(older, [*newer, *packed])) == [("data/documents/b", "2"), ("data/documents/c", "1"), (pack, "p1")]


def test_the_findings_name_failures_and_a_lag_past_the_limit_only() -> None:
    calm = VaultWatch("documents", newest_sealed="b2", newest_in_vault="b1", lag_hours=24.0)
    assert calm.findings(36) == []
    assert calm.findings(12) == ["vault: the newest snapshot complete in the vault, b1, is 24 hours behind the newest "
                                 "sealed one, b2 (more than 12; 0 version(s) not replicated yet)"]
    nothing = VaultWatch("photos", newest_sealed="b2", failed=[f"k{i} (v)" for i in range(7)])
    first, second = nothing.findings(36)
    assert first.startswith("vault: S3 failed to replicate 7 version(s) into the vault: k0 (v), k1 (v)") and first.endswith(", ...")
    assert second.startswith("vault: none of the newest 7 sealed snapshots is complete in the vault")
    assert VaultWatch("database").findings(1) == []  # nothing sealed yet: nothing to say

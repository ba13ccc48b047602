"""The operator command line against moto: back up, list, show, look inside a snapshot, restore to a bucket,
a new table and a folder (byte-identical), verify, quote; and bad input that fails with a clear message."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from chalicelib import cli

TARGET = "restore-target"
DOCS = "test-src-documents"


@pytest.fixture
def run(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the command with the test stage; returns (exit status, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--stage", "local", "--project-dir", str(project_dir), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def world(aws: None, backup_buckets: Any, sources: dict[str, Any], s3: Any) -> dict[str, Any]:
    s3.create_bucket(Bucket=TARGET)
    return sources


def backup_id_of(run: Any, *plans: str) -> str:
    args = [arg for plan in plans for arg in ("--plan", plan)]
    code, out, err = run("backup", *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)["backup_id"]


def bucket_contents(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    found = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        found[item["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def test_the_command_is_installed_by_the_project() -> None:
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("org-backup") == "chalicelib.cli:main"


def test_plans_backups_show_and_contents(run: Any, world: dict[str, Any]) -> None:
    code, out, _ = run("plans", "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)["plans"]] == ["documents", "photos", "database"]
    code, out, _ = run("plans")
    assert "test-backup-photos" in out

    backup_id = backup_id_of(run, "documents")
    code, out, _ = run("--json", "backups")
    assert code == 0 and [b["backup_id"] for b in json.loads(out)["backups"]] == [backup_id]
    code, out, _ = run("show", backup_id)
    assert code == 0 and backup_id in out and "SUCCEEDED" in out

    code, out, _ = run("contents", backup_id, "--plan", "documents", "--prefix", "reports/report-1", "--json")
    data = json.loads(out)
    assert [e["key"] for e in data["entries"]] == ["reports/report-1.txt"]
    assert data["entries"][0]["version_id"] and data["bytes"] == len(world["documents"]["reports/report-1.txt"])


def test_restore_to_a_bucket_and_a_folder_gives_back_what_the_backup_held(
    run: Any, world: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    original = world["documents"]
    backup_id = backup_id_of(run, "documents")
    s3.put_object(Bucket=DOCS, Key="reports/report-3.txt", Body=b"changed after the backup")
    s3.delete_object(Bucket=DOCS, Key="reports/report-5.txt")
    backup_id_of(run, "documents")

    code, out, err = run("restore", backup_id, "--plan", "documents", "--to-bucket", TARGET, "--to-prefix", "cli/", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "SUCCEEDED"
    assert bucket_contents(s3, TARGET, "cli/") == original

    folder = tmp_path / "restored"
    code, out, err = run("restore", backup_id, "--plan", "documents", "--to-dir", str(folder), "--progress")
    assert code == 0, err
    assert "SUCCEEDED" in out and "restoring" in err  # the progress bar
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert files == original

    # Again into the same folder: every file is there already, nothing is overwritten.
    (folder / "reports/report-1.txt").write_bytes(b"edited locally")
    code, out, err = run("restore", backup_id, "--plan", "documents", "--to-dir", str(folder))
    assert code == 2 and "already exist" in err and "report-1.txt" in err
    assert (folder / "reports/report-1.txt").read_bytes() == b"edited locally"


def test_restore_database_to_a_new_table(run: Any, world: dict[str, Any], dynamodb: Any) -> None:
    def items(table: str) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in dynamodb.scan(TableName=table)["Items"])

    before = items("test-orders")
    backup_id = backup_id_of(run, "database")
    dynamodb.delete_item(TableName="test-orders", Key={"pk": {"S": "order-0001"}})
    code, out, err = run("restore", backup_id, "--plan", "database", "--to-table", "restored-orders-cli", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "SUCCEEDED"
    assert items("restored-orders-cli") == before


def test_verify_reports_a_deleted_version_and_exits_1(run: Any, world: dict[str, Any], s3: Any) -> None:
    backup_id = backup_id_of(run, "photos")
    code, out, _ = run("verify", backup_id, "--sample-percent", "100", "--json")
    assert code == 0 and json.loads(out)["ok"] and json.loads(out)["sampled"] == 10
    key = "data/photos/2026/img-4.png"
    s3.delete_object(Bucket="test-backup-photos", Key=key, VersionId=s3.head_object(Bucket="test-backup-photos", Key=key)["VersionId"])
    code, out, _ = run("verify", backup_id)
    assert code == 1
    assert "MISSING" in out and "2026/img-4.png" in out


def test_verify_slice_checks_one_weekday_of_every_snapshot_and_exits_1_on_findings(
    run: Any, world: dict[str, Any], s3: Any
) -> None:
    from chalicelib.catalog.manifests import load_snapshot
    from chalicelib.verify.checks import weekly_slice

    first = backup_id_of(run, "photos")
    backup_id_of(run, "photos")
    with load_snapshot(s3, "test-backup-photos", "photos", first) as manifest:
        lost = next(manifest.entries())
    weekday = weekly_slice(lost)
    code, out, _ = run("verify-slice", "--weekday", str(weekday), "--json")
    result = json.loads(out)
    assert code == 0 and result["status"] == "SUCCEEDED" and result["weekday"] == weekday
    assert result["snapshots"] == 2 and result["checked"] >= 1 and result["trigger"] == "cli"
    s3.delete_object(Bucket="test-backup-photos", Key=lost.data_key, VersionId=lost.version_id)
    code, out, _ = run("verify-slice", "--weekday", str(weekday))
    assert code == 1
    assert "FAILED" in out and "MISSING" in out and lost.key in out
    code, _, err = run("verify-slice", "--weekday", "7")
    assert code == 2 and "--weekday" in err


def test_dry_run_quote_writes_nothing(run: Any, world: dict[str, Any], s3: Any) -> None:
    backup_id = backup_id_of(run, "documents")
    code, out, _ = run("restore", backup_id, "--plan", "documents", "--to-bucket", TARGET, "--dry-run", "--json")
    quote = json.loads(out)["quote"]
    assert code == 0 and quote["objects"] == 10 and quote["need_thaw"] == 0 and set(quote["tiers"]) == {"Bulk", "Standard", "Expedited"}
    code, out, _ = run("restore", backup_id, "--plan", "documents", "--to-bucket", TARGET, "--dry-run")
    assert "restore of 10 objects" in out and "Bulk" in out
    assert bucket_contents(s3, TARGET) == {}


def test_archived_versions_are_pending_until_a_later_pass(run: Any, world: dict[str, Any], s3: Any) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_api import state_manager
    from moto.s3.models import s3_backends

    backup_id = backup_id_of(run, "documents")
    key = "data/documents/reports/report-9.txt"
    version = s3.head_object(Bucket="test-backup-documents", Key=key)["VersionId"]
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object("test-backup-documents", key, version_id=version).set_storage_class("DEEP_ARCHIVE")
    state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": 1})
    try:
        code, out, _ = run("restore", backup_id, "--plan", "documents", "--to-bucket", TARGET, "--json")
        record = json.loads(out)
        assert code == 0 and record["status"] == "WAITING_FOR_THAW" and record["pending_thaw"] == 1
        # Each pass asks S3 once; moto's thaw finishes after a set number of such questions.
        for _ in range(3):
            code, out, _ = run("restore-status", record["restore_id"], "--resume")
            if "WAITING_FOR_THAW" not in out:
                break
        assert code == 0 and "SUCCEEDED" in out
    finally:
        state_manager.unset_transition("s3::keyrestore")
    assert bucket_contents(s3, TARGET) == world["documents"]


BAD_INPUT = [
    (["restore", "20200101T000000000Z-deadbeef", "--plan", "documents", "--to-bucket", TARGET], "no backup with id"),
    (["restore", "{id}", "--plan", "nope", "--to-bucket", TARGET], "unknown plan 'nope'"),
    (["restore", "{id}", "--plan", "documents", "--to-bucket", "test-backup-photos"], "backup bucket"),
    (["restore", "{id}", "--plan", "documents", "--to-bucket", TARGET, "--prefix", "../x"], "'..'"),
    (["restore", "{id}", "--plan", "documents", "--to-bucket", TARGET, "--to-prefix", "a\tb/"], "control character"),
    (["restore", "{id}", "--plan", "documents"], "--to-bucket"),
    (["verify", "{id}", "--sample-percent", "150"], "--sample-percent"),
    (["show", "nope"], "not a backup id"),
]


def test_bad_input_exits_2_naming_the_problem(run: Any, world: dict[str, Any], s3: Any) -> None:
    backup_id = backup_id_of(run, "documents")
    for argv in BAD_INPUT:
        args, words = argv
        code, out, err = run(*[a.replace("{id}", backup_id) for a in args], "--json")
        assert code == 2, (args, out, err)
        assert words in err and words in json.loads(out)["error"], (args, err)
    assert bucket_contents(s3, TARGET) == {}


def test_existing_target_needs_overwrite(run: Any, world: dict[str, Any], s3: Any) -> None:
    backup_id = backup_id_of(run, "documents")
    s3.put_object(Bucket=TARGET, Key="reports/report-0.txt", Body=b"keep me")
    code, _, err = run("restore", backup_id, "--plan", "documents", "--to-bucket", TARGET)
    assert code == 2 and "s3://restore-target/reports/report-0.txt" in err and "overwrite" in err
    assert bucket_contents(s3, TARGET) == {"reports/report-0.txt": b"keep me"}
    code, _, err = run("restore", backup_id, "--plan", "documents", "--to-bucket", TARGET, "--overwrite")
    assert code == 0, err
    assert bucket_contents(s3, TARGET) == world["documents"]


def test_allow_deletions_lets_one_backup_pass_the_guard(run: Any, world: dict[str, Any], s3: Any) -> None:
    backup_id_of(run, "documents")
    for i in range(5):
        s3.delete_object(Bucket=DOCS, Key=f"reports/report-{i}.txt")
    code, out, _ = run("backup", "--plan", "documents", "--json")
    held = json.loads(out)["plans"]["documents"]
    assert code == 1 and (held["deleted"], held["deletions_held_back"]) == (0, 5)
    code, out, err = run("backup", "--plan", "documents", "--allow-deletions", "documents", "--json")
    record = json.loads(out)
    assert code == 0, err
    assert record["allow_deletions"] == ["documents"]
    assert (record["plans"]["documents"]["deleted"], record["plans"]["documents"]["deletions_allowed"]) == (5, 5)
    code, _, err = run("backup", "--plan", "documents", "--allow-deletions", "photos")
    assert code == 2 and "allow_deletions names plan(s) this backup does not back up: photos" in err

"""Restores to a local folder never lose or mix data: keys that land on one path, a file where a folder must
be, folder markers and keys that are no valid file name are all found before anything is written, reported
key by key, and never counted as restored; the rest of the restore proceeds. Backups are taken by the real
engine into moto and restored with the command line, as an operator does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib import cli
from chalicelib.catalog.manifests import Entry
from chalicelib.plans import Lifecycle, Plan, S3Source
from chalicelib.restore.folder_layout import COLLISION, INVALID_NAME, MARKER_WITH_CONTENT, lay_out
from chalicelib.restore.requests import Target

DOCS = "test-src-documents"
LONG_SEGMENT = "s" * 300
FOLDER_NAME = "restored"


@pytest.fixture
def run(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the command with the test stage; returns (exit status, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--stage", "local", "--project-dir", str(project_dir), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def source(aws: None, backup_buckets: Any, s3: Any) -> Any:
    """The documents plan's source bucket, empty: each test puts the keys it is about."""
    s3.create_bucket(Bucket=DOCS)

    def put(objects: dict[str, bytes]) -> dict[str, bytes]:
        for key, body in objects.items():
            s3.put_object(Bucket=DOCS, Key=key, Body=body)
        return objects

    return put


def backup(run: Any) -> str:
    code, out, err = run("backup", "--plan", "documents", "--json")
    assert code == 0, (out, err)
    record = json.loads(out)
    assert record["status"] == "SUCCEEDED", record
    return str(record["backup_id"])


def restore(run: Any, backup_id: str, folder: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run("restore", backup_id, "--plan", "documents", "--to-dir", str(folder), "--json", *extra)
    return code, json.loads(out), err


def tree(folder: Path) -> dict[str, bytes | str]:
    """Everything under `folder`: each file's bytes, each directory as "<dir>" (temporary files included)."""
    if not folder.exists():
        return {}
    return {
        path.relative_to(folder).as_posix(): "<dir>" if path.is_dir() else path.read_bytes()
        for path in folder.rglob("*")
    }


def failures(record: dict[str, Any]) -> dict[str, str]:
    return {failure["key"]: failure["reason"] for failure in record["failures"]}


def counts(record: dict[str, Any]) -> tuple[str, int, int, int]:
    return record["status"], record["total"], record["restored"], record["failed"]


# ------------------------------------------------------------------------------------------------ collisions


def test_keys_that_land_on_one_path_are_reported_and_none_of_them_is_written(
    run: Any, source: Any, tmp_path: Path
) -> None:
    objects = source({
        "a//b": b"double slash", "a/b": b"single slash",
        "c/./d": b"dot segment", "c/d": b"plain c/d",
        "notes.txt": b"unrelated",
    })
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME

    code, record, _ = restore(run, backup_id, folder)

    assert code == 1  # done, but needs attention
    assert counts(record) == ("PARTIAL", 5, 1, 4)
    assert tree(folder) == {"notes.txt": objects["notes.txt"]}
    reasons = failures(record)
    assert set(reasons) == {"a//b", "a/b", "c/./d", "c/d"}
    for key, other, path in (("a//b", "a/b", "a/b"), ("a/b", "a//b", "a/b"), ("c/./d", "c/d", "c/d"), ("c/d", "c/./d", "c/d")):
        assert f"collides with {other!r}" in reasons[key] and f"at {path!r}" in reasons[key], reasons[key]
        assert "none of these keys is restored" in reasons[key] and "bucket" in reasons[key]
    assert sorted(tmp_path.iterdir()) == [tmp_path / "project", folder]


def test_a_file_where_another_key_needs_a_folder_is_a_collision(run: Any, source: Any, tmp_path: Path) -> None:
    objects = source({"y": b"file y", "y/z": b"file y/z", "y/w/deep": b"deeper", "yz": b"beside, not inside"})
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME

    code, record, _ = restore(run, backup_id, folder)

    assert code == 1 and counts(record) == ("PARTIAL", 4, 1, 3)
    assert tree(folder) == {"yz": objects["yz"]}
    reasons = failures(record)
    assert set(reasons) == {"y", "y/z", "y/w/deep"}
    assert "collides with 'y/w/deep', 'y/z' at 'y'" in reasons["y"]
    assert "collides with 'y', 'y/w/deep' at 'y'" in reasons["y/z"]
    assert all("a file and a folder cannot share one name" in reason for reason in reasons.values())


# ------------------------------------------------------------------------------------------------ folder markers


def test_folder_markers_become_directories_and_a_marker_with_content_is_reported(
    run: Any, source: Any, tmp_path: Path
) -> None:
    objects = source({
        "x/": b"", "x/inside.txt": b"inside x",
        "empty/": b"",
        "m/": b"a marker that holds bytes", "m/kept.txt": b"kept",
    })
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME

    code, record, _ = restore(run, backup_id, folder)

    assert code == 1 and counts(record) == ("PARTIAL", 5, 4, 1)
    assert record["bytes_restored"] == len(objects["x/inside.txt"]) + len(objects["m/kept.txt"])
    assert tree(folder) == {
        "x": "<dir>", "x/inside.txt": objects["x/inside.txt"],
        "empty": "<dir>",
        "m": "<dir>", "m/kept.txt": objects["m/kept.txt"],
    }
    reasons = failures(record)
    assert set(reasons) == {"m/"}
    assert "folder marker" in reasons["m/"] and f"{len(objects['m/'])} bytes" in reasons["m/"]


def test_a_marker_and_a_file_of_one_name_collide(run: Any, source: Any, tmp_path: Path) -> None:
    source({"k/": b"", "k": b"file k", "ok.txt": b"fine"})
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME

    code, record, _ = restore(run, backup_id, folder)

    assert counts(record) == ("PARTIAL", 3, 1, 2)
    assert tree(folder) == {"ok.txt": b"fine"}
    reasons = failures(record)
    assert "collides with 'k/' at 'k'" in reasons["k"] and "collides with 'k' at 'k'" in reasons["k/"]


# ------------------------------------------------------------------------------------------------ invalid names


def test_keys_that_are_no_valid_file_name_are_reported_and_the_rest_is_restored(
    run: Any, source: Any, tmp_path: Path
) -> None:
    objects = source({
        f"long/{LONG_SEGMENT}/file.txt": b"under a 300-byte segment",
        "ctl\x01key.txt": b"control character",
        "up/../../escape.txt": b"would climb out",
        "./": b"",
        "fine/one.txt": b"one",
        "fine/two.txt": b"two",
    })
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME

    code, record, _ = restore(run, backup_id, folder)

    assert code == 1 and counts(record) == ("PARTIAL", 6, 2, 4)
    assert tree(folder) == {"fine": "<dir>", "fine/one.txt": objects["fine/one.txt"], "fine/two.txt": objects["fine/two.txt"]}
    reasons = failures(record)
    assert "300 bytes" in reasons[f"long/{LONG_SEGMENT}/file.txt"] and "255" in reasons[f"long/{LONG_SEGMENT}/file.txt"]
    assert "control character '\\x01'" in reasons["ctl\x01key.txt"]
    assert "'..'" in reasons["up/../../escape.txt"]
    assert "target folder itself" in reasons["./"]
    # Nothing landed beside the folder either.
    assert sorted(tmp_path.iterdir()) == [tmp_path / "project", folder]


def test_an_empty_key_and_a_path_over_the_limit_have_no_place() -> None:
    # A snapshot from an S3 source never holds an empty key (the reader skips it), so this is the layout alone.
    plan = Plan(name="p", bucket="b", sources=(S3Source(name="s", bucket="src"),), lifecycle=Lifecycle(()))
    deep = "/".join(["d" * 200] * 21) + "/f"

    def entry(key: str, size: int = 1) -> Entry:
        return Entry(source="s", key=key, version_id="v", size=size, etag="e", identity="i")

    layout = lay_out(plan, Target(path="/restore/here"), [entry(""), entry(deep), entry("ok"), entry("ok/", size=0)])
    assert layout.problem(entry("")) is not None and "empty key" in layout.problem(entry("")).reason
    assert layout.problem(entry(deep)) is not None and "4095" in layout.problem(entry(deep)).reason
    assert layout.problem(entry("ok")).kind == COLLISION and layout.problem(entry("ok/", size=0)).kind == COLLISION
    assert (layout.count(INVALID_NAME), layout.count(COLLISION), layout.count(MARKER_WITH_CONTENT)) == (2, 2, 0)
    assert layout.paths == {}


# ------------------------------------------------------------------------------------------------ when it is found


def test_the_dry_run_reports_collisions_and_invalid_names_and_writes_nothing(
    run: Any, source: Any, tmp_path: Path
) -> None:
    source({
        "a//b": b"1", "a/b": b"2", "y": b"3", "y/z": b"4", "m/": b"content",
        "bad\x01.txt": b"5", f"{LONG_SEGMENT}.txt": b"6", "fine.txt": b"7",
    })
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME

    code, answer, _ = restore(run, backup_id, folder, "--dry-run")

    assert code == 0 and answer["dry_run"] is True
    problems = answer["quote"]["folder_problems"]
    assert (problems["objects"], problems["collisions"], problems["invalid_names"], problems["markers_with_content"]) == (7, 4, 2, 1)
    listed = {item["key"]: (item["problem"], item["reason"]) for item in problems["listed"]}
    assert set(listed) == {"a//b", "a/b", "y", "y/z", "m/", "bad\x01.txt", f"{LONG_SEGMENT}.txt"}
    assert listed["a//b"][0] == COLLISION and "'a/b'" in listed["a//b"][1]
    assert listed["y/z"][0] == COLLISION and "'y'" in listed["y/z"][1]
    assert listed["bad\x01.txt"][0] == INVALID_NAME and "control character" in listed["bad\x01.txt"][1]
    assert listed["m/"][0] == MARKER_WITH_CONTENT
    assert not folder.exists()
    # The text form says it too, without printing the control character.
    code, out, _ = run("restore", backup_id, "--plan", "documents", "--to-dir", str(folder), "--dry-run")
    assert code == 0 and "7 objects cannot be written to the folder" in out and "bad\\x01.txt" in out
    assert "\x01" not in out


def test_a_recorded_restore_checks_again_when_its_first_pass_starts(
    source: Any, run: Any, tmp_path: Path, clients: Any, stage_env: dict[str, str]
) -> None:
    from chalicelib.config import Settings
    from chalicelib.restore.record import RestoreRecord, RestoreStore
    from chalicelib.restore.service import RestoreService

    objects = source({"a//b": b"first", "a/b": b"second", "x/": b"", "bad\x01": b"b", "fine.txt": b"fine"})
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME
    settings = Settings.from_environ(stage_env)
    # Recorded without the restore's checks (by an older version, say): the pass must not trust them.
    record = RestoreRecord(
        restore_id="20261126T000000000Z-folder", backup_id=backup_id, plan="documents",
        target={"path": str(folder), "prefix": ""}, total=len(objects),
    )
    RestoreStore(clients.s3, settings.plans.catalog_bucket).create(record)

    done = RestoreService(settings.plans, clients, max_workers=8).run(record.restore_id)

    assert (done.status, done.restored, done.failed) == ("PARTIAL", 2, 3)
    assert tree(folder) == {"x": "<dir>", "fine.txt": b"fine"}
    reasons = {failure["key"]: failure["reason"] for failure in done.failures}
    assert set(reasons) == {"a//b", "a/b", "bad\x01"}
    assert "collides with 'a/b'" in reasons["a//b"] and "control character" in reasons["bad\x01"]


def test_a_name_too_long_for_the_folder_does_not_stop_the_existing_file_check(
    run: Any, source: Any, tmp_path: Path
) -> None:
    # Without overwrite, the checks look for files already in the folder; a key with no valid name is not
    # a path to look at (the file system would refuse the question), and an existing file still stops it.
    source({f"{LONG_SEGMENT}.txt": b"long", "present.txt": b"from the backup"})
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME
    folder.mkdir()
    (folder / "present.txt").write_bytes(b"local edit")

    code, out, err = run("restore", backup_id, "--plan", "documents", "--to-dir", str(folder))

    assert code == 2 and "already exist" in err and "present.txt" in err
    assert tree(folder) == {"present.txt": b"local edit"}


def test_nothing_is_written_through_a_link_that_leads_out_of_the_folder(run: Any, source: Any, tmp_path: Path) -> None:
    source({"link/file.txt": b"through the link", "here.txt": b"here"})
    backup_id = backup(run)
    folder = tmp_path / FOLDER_NAME
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.mkdir()
    (folder / "link").symlink_to(outside, target_is_directory=True)

    code, record, _ = restore(run, backup_id, folder)

    assert counts(record) == ("PARTIAL", 2, 1, 1)
    assert "would land outside" in failures(record)["link/file.txt"]
    assert list(outside.iterdir()) == []
    assert (folder / "here.txt").read_bytes() == b"here"


# ------------------------------------------------------------------------------------------- streaming, pool


def test_a_folder_restore_streams_each_object_and_downloads_several_at_once(
    run: Any, source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects larger than a read are written as they arrive (no read of a whole body), and downloads run
    side by side on the restore's pool: two of them must be in flight together to pass the barrier."""
    import threading

    from botocore.response import StreamingBody

    from chalicelib.restore import passes

    objects = source({f"big/{index}.bin": bytes([index]) * (2 * 1024 * 1024 + 17) for index in range(4)})
    backup_id = backup(run)
    reads: list[int | None] = []
    downloading = threading.local()
    real_read = StreamingBody.read

    def read(self: StreamingBody, amt: int | None = None) -> bytes:
        if getattr(downloading, "on", False):  # the data's bodies, not the manifest's
            reads.append(amt)
        return real_read(self, amt)

    together = threading.Barrier(2, timeout=20)
    started = iter(range(1_000))
    real_download = passes.download

    def download(*args: Any, **kwargs: Any) -> Any:
        if next(started) < 2:  # the first two wait for each other: a pool of one would break the barrier
            together.wait()
        downloading.on = True
        try:
            return real_download(*args, **kwargs)
        finally:
            downloading.on = False

    monkeypatch.setattr(StreamingBody, "read", read)
    monkeypatch.setattr(passes, "download", download)
    folder = tmp_path / FOLDER_NAME
    code, record, err = restore(run, backup_id, folder)

    assert code == 0 and counts(record) == ("SUCCEEDED", 4, 4, 0), (record, err)
    assert {key: (folder / key).read_bytes() for key in objects} == objects
    assert reads and None not in reads and max(amt or 0 for amt in reads) <= 1024 * 1024

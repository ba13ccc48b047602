"""Source readers: listing order and identity, awkward keys, the multipart paths, DynamoDB exports, and
sources that cannot be read."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from botocore.exceptions import ClientError

from chalicelib import transfer
from chalicelib.backup import writes
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.sources import DirectorySourceReader, S3SourceReader, make_reader
from chalicelib.backup.tables import DynamoDBSourceReader
from chalicelib.catalog.manifests import Manifest
from chalicelib.errors import SourceError
from chalicelib.plans import DirectorySource, DynamoDBSource, Lifecycle, Plan, S3Source
from tests.record_calls import assume_configuration
from tests.conftest import create_table
from tests.test_backup_engine import client_calls

BACKUP = "test-backup-sources"
MiB = 1024 * 1024

# Keys that trip up URL encoding, signing or sorting: spaces, non-ASCII (two- to four-byte UTF-8), '+'
# (a space in form encoding), '%' and an already-encoded sequence, '=', '&', '?', '#', zero-byte objects
# and a folder marker.
AWKWARD = {
    "with space.txt": b"space",
    "two  spaces and trailing .txt": b"spaces",
    "caf\u00e9/na\u00efve r\u00e9sum\u00e9.txt": "r\u00e9sum\u00e9".encode(),
    "\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb.txt": "\u65e5\u672c".encode(),
    "emoji \U0001f389.txt": b"party",
    "a+b=c&d?e#f.txt": b"plus",
    "100%.txt": b"percent",
    "already%20encoded%2Fslash.txt": b"encoded",
    "empty.bin": b"",
    "folder/": b"",
    "nested/deeper/zero": b"",
}


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The backup ids these tests name (26 and 27 November 2026) stay within MAX_BACKUP_DAYS of the clock."""
    with time_machine.travel(datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def backup_bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=BACKUP)
    s3.put_bucket_versioning(Bucket=BACKUP, VersioningConfiguration={"Status": "Enabled"})
    # Tests hand this bucket straight to readers: it is a plan's backup bucket, as far as the policy goes.
    assume_configuration(plan_for(S3Source(name="any", bucket="src")))
    return BACKUP


def plan_for(*plan_sources: Any) -> Plan:
    return Plan(name="sources", bucket=BACKUP, sources=tuple(plan_sources), lifecycle=Lifecycle(transitions=()))


def run(plan: Plan, clients: Any, backup_id: str) -> Any:
    def factory(source: Any) -> Any:
        return make_reader(source, clients.s3, clients.dynamodb)

    return PlanBackup(plan, clients.s3, backup_id, factory, max_workers=4).run()


def entries(s3: Any, result: Any) -> dict[tuple[str, str], Any]:
    key = result.snapshot.split("/", 3)[3]
    with Manifest.download(s3, BACKUP, key) as manifest:
        return {(e.source, e.key): e for e in manifest.entries()}


def stored(s3: Any, key: str, version_id: str) -> bytes:
    return s3.get_object(Bucket=BACKUP, Key=key, VersionId=version_id)["Body"].read()


# --------------------------------------------------------------------------------------------------------
# S3


def test_s3_listing_is_sorted_relative_to_the_prefix(s3: Any) -> None:
    s3.create_bucket(Bucket="src")
    for key in ["in/b", "in/a/z", "in/a+", "in/\u00e9", "out/x", "in/A"]:
        s3.put_object(Bucket="src", Key=key, Body=key.encode())
    listed = list(S3SourceReader(s3, S3Source(name="src", bucket="src", prefix="in/")).list_objects())
    assert [o.key for o in listed] == ["A", "a+", "a/z", "b", "\u00e9"]
    etag = hashlib.md5(b"in/b").hexdigest()
    assert listed[3].identity == f"etag:{etag}:4" and listed[3].size == 4


def test_awkward_s3_keys_and_zero_byte_objects_round_trip(s3: Any, clients: Any, backup_bucket: str) -> None:
    s3.create_bucket(Bucket="src")
    for key, body in AWKWARD.items():
        s3.put_object(Bucket="src", Key=f"share/{key}", Body=body)
    plan = plan_for(S3Source(name="share", bucket="src", prefix="share/"))
    result = run(plan, clients, "20261126T000000000Z-first")
    assert (result.status, result.copied, result.failed) == ("SUCCEEDED", len(AWKWARD), 0), result.errors
    found = entries(s3, result)
    assert sorted(key for _, key in found) == sorted(AWKWARD)
    for key, body in AWKWARD.items():
        entry = found[("share", key)]
        assert stored(s3, f"data/share/{key}", entry.version_id) == body
        assert entry.size == len(body)
    again = run(plan, clients, "20261126T000001000Z-second")
    assert (again.copied, again.unchanged) == (0, len(AWKWARD))


def test_a_copy_is_pinned_to_the_listed_content(s3: Any, backup_bucket: str) -> None:
    # AWS refuses the copy with 412 PreconditionFailed when the source's ETag no longer matches
    # CopySourceIfMatch (moto alone ignores the header; tests/moto_strict.py makes it answer as AWS does).
    s3.create_bucket(Bucket="src")
    s3.put_object(Bucket="src", Key="doc", Body=b"as listed")
    reader = S3SourceReader(s3, S3Source(name="src", bucket="src"))
    [listed] = list(reader.list_objects())
    s3.put_object(Bucket="src", Key="doc", Body=b"changed since listing")
    with client_calls(s3, ("CopyObject",)) as calls:
        with pytest.raises(ClientError) as caught:
            reader.store(listed, BACKUP, "data/src/doc")
    [(_, params)] = calls.calls
    assert params["CopySourceIfMatch"] == f'"{hashlib.md5(b"as listed").hexdigest()}"'
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert "Versions" not in s3.list_object_versions(Bucket=BACKUP)


def test_big_objects_take_the_multipart_copy_path(s3: Any, backup_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # In AWS the path starts above 5 GiB (CopyObject's limit) with parts of at least 64 MiB; here the
    # threshold and the part size are scaled down to 5 MiB (S3's minimum part size) so that a 12 MiB
    # object is copied in three parts. moto performs UploadPartCopy and returns a composite SHA-256.
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    body = os.urandom(12 * MiB)
    s3.create_bucket(Bucket="src")
    s3.put_object(Bucket="src", Key="big.bin", Body=body)
    s3.put_object(Bucket="src", Key="small.bin", Body=b"small")
    reader = S3SourceReader(s3, S3Source(name="src", bucket="src"), multipart_threshold=5 * MiB)
    listed = {o.key: o for o in reader.list_objects()}
    with client_calls(s3, ("CopyObject", "UploadPartCopy", "CreateMultipartUpload")) as calls:
        big = reader.store(listed["big.bin"], BACKUP, "data/src/big.bin")
        small = reader.store(listed["small.bin"], BACKUP, "data/src/small.bin")
    assert len(calls.keys("UploadPartCopy")) == 3
    assert calls.keys("CopyObject") == ["data/src/small.bin"]
    assert stored(s3, "data/src/big.bin", big.version_id) == body
    assert stored(s3, "data/src/small.bin", small.version_id) == b"small"
    current = s3.head_object(Bucket=BACKUP, Key="data/src/big.bin")
    assert big.version_id == current["VersionId"] and big.size == len(body)
    assert big.identity == listed["big.bin"].identity


def test_copy_part_size_stays_under_the_part_limit() -> None:
    for size in (6 * 1024**3, 600 * 1024**3, 5 * 1024**4):
        part = transfer.copy_part_size(size)
        assert part >= 64 * MiB and size / part <= 10_000


# --------------------------------------------------------------------------------------------------------
# Directories


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        if key.endswith("/"):
            (root / key).mkdir(parents=True, exist_ok=True)
            continue
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)


def test_awkward_file_names_and_empty_files_round_trip(tmp_path: Path, s3: Any, clients: Any, backup_bucket: str) -> None:
    folder = tmp_path / "home"
    write_tree(folder, AWKWARD)
    files = {k: v for k, v in AWKWARD.items() if not k.endswith("/")}
    plan = plan_for(DirectorySource(name="home", path=str(folder)))
    result = run(plan, clients, "20261126T000000000Z-first")
    assert (result.status, result.copied) == ("SUCCEEDED", len(files)), result.errors
    found = entries(s3, result)
    assert sorted(key for _, key in found) == sorted(files)
    for key, body in files.items():
        entry = found[("home", key)]
        assert stored(s3, f"data/home/{key}", entry.version_id) == body
        assert entry.sha256 == hashlib.sha256(body).hexdigest()
    assert run(plan, clients, "20261126T000001000Z-second").copied == 0


def test_directory_identity_is_size_and_mtime_or_a_content_hash(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"same")
    by_time = DirectorySourceReader(None, DirectorySource(name="d", path=str(tmp_path)))
    by_hash = DirectorySourceReader(None, DirectorySource(name="d", path=str(tmp_path), hash_contents=True))
    before = ([o.identity for o in by_time.list_objects()], [o.identity for o in by_hash.list_objects()])
    os.utime(tmp_path / "a.txt", ns=(1_000_000_000, 1_000_000_000))
    after = ([o.identity for o in by_time.list_objects()], [o.identity for o in by_hash.list_objects()])
    assert before[0] != after[0]  # touched: size and mtime say it may have changed
    assert before[1] == after[1] == [f"sha256:{hashlib.sha256(b'same').hexdigest()}"]


def test_directory_listing_skips_symlinks_and_is_sorted(tmp_path: Path) -> None:
    write_tree(tmp_path, {"b/x": b"1", "a-b": b"2", "a/c": b"3", "\u00e9": b"4"})
    (tmp_path / "link").symlink_to(tmp_path / "a-b")
    (tmp_path / "linked-dir").symlink_to(tmp_path / "b", target_is_directory=True)
    keys = [o.key for o in DirectorySourceReader(None, DirectorySource(name="d", path=str(tmp_path))).list_objects()]
    assert keys == ["a-b", "a/c", "b/x", "\u00e9"]


def test_big_files_are_uploaded_in_parts(tmp_path: Path, s3: Any, backup_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    body = os.urandom(11 * MiB)
    (tmp_path / "big.bin").write_bytes(body)
    reader = DirectorySourceReader(s3, DirectorySource(name="d", path=str(tmp_path)), multipart_threshold=5 * MiB)
    [listed] = list(reader.list_objects())
    with client_calls(s3, ("PutObject", "UploadPart")) as calls:
        result = reader.store(listed, BACKUP, "data/d/big.bin")
    assert len(calls.keys("UploadPart")) == 3 and calls.keys("PutObject") == []
    assert stored(s3, "data/d/big.bin", result.version_id) == body
    assert result.sha256 == hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------------------------------------
# DynamoDB


def export_lines(reader: DynamoDBSourceReader) -> tuple[Any, list[dict[str, Any]]]:
    [listed] = list(reader.list_objects())
    assert reader._export is not None
    with open(reader._export.name, "rb") as handle:
        lines = gzip.decompress(handle.read()).decode("utf-8").splitlines()
    return listed, [json.loads(line) for line in lines]


def test_dynamodb_export_is_one_item_a_line_whatever_the_segments(dynamodb: Any, s3: Any) -> None:
    create_table(dynamodb, "test-orders", items=37)
    dynamodb.put_item(TableName="test-orders", Item={"pk": {"S": "bin"}, "raw": {"B": b"\xff\x00"}, "m": {"M": {"l": {"L": [{"N": "1"}]}}}})
    identities = set()
    for segments in (1, 3, 8):
        reader = DynamoDBSourceReader(dynamodb, s3, DynamoDBSource(name="orders", table="test-orders", segments=segments))
        listed, items = export_lines(reader)
        reader.close()
        assert len(items) == reader.item_count == 38
        assert len({item["pk"]["S"] for item in items}) == 38
        assert listed.key == "test-orders.jsonl.gz"
        identities.add(listed.identity)
        binary = next(item for item in items if item["pk"]["S"] == "bin")
        assert base64.b64decode(binary["raw"]["B"]) == b"\xff\x00"
        assert binary["m"] == {"M": {"l": {"L": [{"N": "1"}]}}}
    # The same items give the same identity whatever order the segments return them in.
    assert len(identities) == 1
    dynamodb.put_item(TableName="test-orders", Item={"pk": {"S": "order-0000"}, "total": {"N": "1"}})
    reader = DynamoDBSourceReader(dynamodb, s3, DynamoDBSource(name="orders", table="test-orders"))
    listed, _ = export_lines(reader)
    reader.close()
    assert listed.identity not in identities


def test_an_empty_table_exports_an_empty_file(dynamodb: Any, s3: Any) -> None:
    create_table(dynamodb, "test-orders")
    reader = DynamoDBSourceReader(dynamodb, s3, DynamoDBSource(name="orders", table="test-orders", segments=2))
    _, items = export_lines(reader)
    reader.close()
    assert items == [] and reader.item_count == 0


# --------------------------------------------------------------------------------------------------------
# Unreadable sources


def test_unreadable_sources_name_themselves_and_the_reason(tmp_path: Path, s3: Any, dynamodb: Any) -> None:
    # Names from the test stage's plans (neither bucket nor table exists), so the calls stay within the
    # policy those plans get.
    readers = [
        (S3SourceReader(s3, S3Source(name="photos", bucket="test-src-photos")), ["photos", "test-src-photos", "NoSuchBucket"]),
        (
            DynamoDBSourceReader(dynamodb, s3, DynamoDBSource(name="orders", table="test-orders")),
            ["orders", "test-orders", "ResourceNotFoundException"],
        ),
        (
            DirectorySourceReader(s3, DirectorySource(name="home", path=str(tmp_path / "missing"))),
            ["home", "missing", "not a readable directory"],
        ),
    ]
    for reader, fragments in readers:
        with pytest.raises(SourceError) as caught:
            list(reader.list_objects())
        for fragment in fragments:
            assert fragment in str(caught.value)


def test_an_unlistable_folder_fails_the_source_instead_of_deleting_its_files(
    tmp_path: Path, s3: Any, clients: Any, backup_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(tmp_path, {"keep.txt": b"1", "private/a.txt": b"2", "private/b.txt": b"3"})
    plan = plan_for(DirectorySource(name="home", path=str(tmp_path)))
    assert run(plan, clients, "20261126T000000000Z-first").copied == 3
    # Tests run as root, which can read anything: play the permission error the folder would give.
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = run(plan, clients, "20261126T000001000Z-second")
    assert result.status == "FAILED" and result.deleted == 0
    assert "home" in result.errors[0] and "private" in result.errors[0] and "Permission denied" in result.errors[0]
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=BACKUP)


def test_an_unreadable_file_is_a_failure_not_a_deletion(
    tmp_path: Path, s3: Any, clients: Any, backup_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(tmp_path, {"a.txt": b"1", "locked.txt": b"secret v1", "c.txt": b"3"})
    plan = plan_for(DirectorySource(name="home", path=str(tmp_path), hash_contents=True))
    first = run(plan, clients, "20261126T000000000Z-first")
    real_hash = transfer.file_sha256

    def file_sha256(path: Path) -> bytes:
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    real_upload = writes.upload

    def upload(s3: Any, path: Path, *args: Any, **kwargs: Any) -> Any:
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_upload(s3, path, *args, **kwargs)

    # Unreadable both when listed (hashed) and when uploaded.
    monkeypatch.setattr(transfer, "file_sha256", file_sha256)
    monkeypatch.setattr(writes, "upload", upload)
    second = run(plan, clients, "20261126T000001000Z-second")
    assert (second.status, second.failed, second.deleted, second.unchanged) == ("PARTIAL", 1, 0, 2)
    assert "locked.txt" in second.errors[0] and "Permission denied" in second.errors[0]
    # The new snapshot still has the file, at the version backed up before.
    assert entries(s3, second)[("home", "locked.txt")].version_id == entries(s3, first)[("home", "locked.txt")].version_id
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=BACKUP)


def test_a_multipart_copy_failing_midway_leaves_no_version_and_no_upload(
    s3: Any, backup_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "MULTIPART_CHUNKSIZE", 5 * MiB)
    s3.create_bucket(Bucket="src")
    s3.put_object(Bucket="src", Key="big.bin", Body=b"\x07" * (12 * MiB))
    reader = S3SourceReader(s3, S3Source(name="src", bucket="src"), multipart_threshold=5 * MiB)
    [listed] = list(reader.list_objects())
    with client_calls(s3, ("UploadPartCopy",)) as calls:
        calls.fail("UploadPartCopy", when=lambda p: p["PartNumber"] == 2, code="InternalError", status=500)
        with pytest.raises(ClientError):
            reader.store(listed, BACKUP, "data/src/big.bin")
    assert "Versions" not in s3.list_object_versions(Bucket=BACKUP)
    # boto3's managed copy aborts the upload, so no parts are left behind to be billed.
    assert s3.list_multipart_uploads(Bucket=BACKUP).get("Uploads", []) == []

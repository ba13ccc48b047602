"""The strict-S3 plugin (tests/moto_strict.py): each rule fires where AWS refuses the request, and stays out
of the way of a valid one; a long key sent by the system's own code fails the session, one sent by a test
does not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests import moto_strict
from tests.moto_strict import LongKeyRequest, etag_matches
from tests.record_calls import RECORDER

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "strict-test"
TOO_LONG = "k" * 1025
# 512 two-byte characters: 1,024 bytes of UTF-8 (the limit counts bytes, not characters).
LONGEST = "\u00e9" * 512


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.fixture
def bucket(s3: Any) -> Any:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


@pytest.fixture
def found() -> Iterator[Callable[[], list[LongKeyRequest]]]:
    """`found()`: the long-key requests the system made since the test started. They are taken back
    afterwards, also from the policy check's record: they were made on purpose, to see the plugin catch
    them, to a bucket of no plan, and must not fail the session."""
    start = len(moto_strict.FOUND)
    calls_start = len(RECORDER.calls)
    yield lambda: moto_strict.FOUND[start:]
    del moto_strict.FOUND[start:]
    with RECORDER.lock:
        RECORDER.calls[calls_start:] = [c for c in RECORDER.calls[calls_start:] if c.params.get("Key") != TOO_LONG]


def contents(s3: Any) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listing}


# ------------------------------------------------------------------------------------------------ key length


def test_a_key_over_1024_bytes_is_refused_as_aws_refuses_it(bucket: Any) -> None:
    bucket.put_object(Bucket=BUCKET, Key="short", Body=b"s")
    requests = [
        lambda: bucket.put_object(Bucket=BUCKET, Key=TOO_LONG, Body=b"x"),
        lambda: bucket.put_object(Bucket=BUCKET, Key="\u00e9" * 513, Body=b"x"),  # 1,026 bytes, 513 characters
        lambda: bucket.get_object(Bucket=BUCKET, Key=TOO_LONG),
        lambda: bucket.copy_object(Bucket=BUCKET, Key=TOO_LONG, CopySource={"Bucket": BUCKET, "Key": "short"}),
        lambda: bucket.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": TOO_LONG}),
        lambda: bucket.create_multipart_upload(Bucket=BUCKET, Key=TOO_LONG),
        lambda: bucket.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "short"}, {"Key": TOO_LONG}]}),
    ]
    for request in requests:
        with pytest.raises(ClientError) as caught:
            request()
        assert error(caught) == (400, "KeyTooLongError")
    # Nothing was written or deleted by any of them.
    assert contents(bucket) == {"short": b"s"}


def test_a_key_of_exactly_1024_bytes_is_valid(bucket: Any) -> None:
    bucket.put_object(Bucket=BUCKET, Key=LONGEST, Body=b"at the limit")
    bucket.copy_object(Bucket=BUCKET, Key="k" * 1024, CopySource={"Bucket": BUCKET, "Key": LONGEST})
    assert contents(bucket) == {LONGEST: b"at the limit", "k" * 1024: b"at the limit"}
    bucket.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": LONGEST}]})
    assert set(contents(bucket)) == {"k" * 1024}


def test_the_systems_long_key_requests_are_recorded_and_a_tests_are_not(
    bucket: Any, found: Callable[[], list[LongKeyRequest]]
) -> None:
    from chalicelib import s3docs

    with pytest.raises(ClientError):
        bucket.put_object(Bucket=BUCKET, Key=TOO_LONG, Body=b"seeded by the test")
    assert found() == []  # the test's own request: only the error
    with pytest.raises(ClientError) as caught:
        s3docs.put_new(bucket, Bucket=BUCKET, Key=TOO_LONG, Body=b"written by the system")
    assert error(caught) == (400, "KeyTooLongError")
    [request] = found()
    assert (request.operation, request.field, request.key_bytes) == ("PutObject", "Key", 1025)
    assert request.origin.startswith("chalicelib/s3docs.py:") and "put_new" in request.origin


def test_a_session_whose_system_sent_a_long_key_fails_listing_it(tmp_path: Path) -> None:
    # A session of its own (under xdist, so the worker-to-controller hand-over is what is tested): one test
    # seeds a long key itself, which is only an error; another has the system send one, which fails the run.
    (tmp_path / "test_long.py").write_text(textwrap.dedent(f"""
        import boto3
        import pytest
        from botocore.exceptions import ClientError
        from moto import mock_aws

        from chalicelib import s3docs

        def test_seeding_a_long_key_only_gets_the_error():
            with mock_aws():
                s3 = boto3.client("s3", region_name="us-east-1")
                s3.create_bucket(Bucket="b-strict")
                with pytest.raises(ClientError):
                    s3.put_object(Bucket="b-strict", Key="t" * 1100, Body=b"")

        def test_the_system_sends_a_long_key():
            with mock_aws():
                s3 = boto3.client("s3", region_name="us-east-1")
                s3.create_bucket(Bucket="b-strict")
                with pytest.raises(ClientError):
                    s3docs.put_new(s3, Bucket="b-strict", Key="{"s" * 1100}", Body=b"")
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "1", "-p", "tests.moto_strict", "-p", "no:cacheprovider", "test_long.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "2 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    report = result.stdout.split("S3 requests AWS would refuse", 1)[1]
    assert "PutObject with a Key of 1100 bytes (s3://b-strict/sss" in report
    assert "chalicelib/s3docs.py" in report and "ttt" not in report


# ------------------------------------------------------------------------------------------------ copy conditions


def test_copy_source_if_match_fails_once_the_source_changed(bucket: Any) -> None:
    listed = bucket.put_object(Bucket=BUCKET, Key="src", Body=b"as listed")["ETag"]
    bucket.put_object(Bucket=BUCKET, Key="src", Body=b"changed")
    with pytest.raises(ClientError) as caught:
        bucket.copy_object(Bucket=BUCKET, Key="dst", CopySource={"Bucket": BUCKET, "Key": "src"}, CopySourceIfMatch=listed)
    assert error(caught) == (412, "PreconditionFailed")
    assert "dst" not in contents(bucket)


def test_copy_source_if_match_holds_for_the_current_etag_quoted_or_not(bucket: Any) -> None:
    current = bucket.put_object(Bucket=BUCKET, Key="src", Body=b"current")["ETag"]
    assert current.startswith('"')
    for index, condition in enumerate([current, current.strip('"'), f'"other", {current}', "*"]):
        bucket.copy_object(
            Bucket=BUCKET, Key=f"dst{index}", CopySource={"Bucket": BUCKET, "Key": "src"}, CopySourceIfMatch=condition
        )
    assert contents(bucket) == {"src": b"current", **{f"dst{i}": b"current" for i in range(4)}}


def test_copy_source_if_match_is_checked_against_the_named_version(bucket: Any) -> None:
    first = bucket.put_object(Bucket=BUCKET, Key="src", Body=b"first")
    bucket.put_object(Bucket=BUCKET, Key="src", Body=b"second")
    source = {"Bucket": BUCKET, "Key": "src", "VersionId": first["VersionId"]}
    bucket.copy_object(Bucket=BUCKET, Key="dst", CopySource=source, CopySourceIfMatch=first["ETag"])
    assert contents(bucket)["dst"] == b"first"


def test_copy_source_if_none_match_fails_when_the_etag_matches(bucket: Any) -> None:
    etag = bucket.put_object(Bucket=BUCKET, Key="src", Body=b"same")["ETag"]
    with pytest.raises(ClientError) as caught:
        bucket.copy_object(
            Bucket=BUCKET, Key="dst", CopySource={"Bucket": BUCKET, "Key": "src"}, CopySourceIfNoneMatch=etag.strip('"')
        )
    assert error(caught) == (412, "PreconditionFailed")
    bucket.copy_object(Bucket=BUCKET, Key="dst", CopySource={"Bucket": BUCKET, "Key": "src"}, CopySourceIfNoneMatch='"other"')
    assert contents(bucket)["dst"] == b"same"


def test_if_none_match_on_copy_refuses_an_existing_destination(bucket: Any) -> None:
    bucket.put_object(Bucket=BUCKET, Key="src", Body=b"restored bytes")
    bucket.put_object(Bucket=BUCKET, Key="taken", Body=b"someone else's")
    copy = {"CopySource": {"Bucket": BUCKET, "Key": "src"}, "IfNoneMatch": "*"}
    with pytest.raises(ClientError) as caught:
        bucket.copy_object(Bucket=BUCKET, Key="taken", **copy)
    assert error(caught) == (412, "PreconditionFailed")
    # A new key, and a key whose current version is a delete marker, do not exist: the copy goes ahead.
    bucket.put_object(Bucket=BUCKET, Key="deleted", Body=b"old")
    bucket.delete_object(Bucket=BUCKET, Key="deleted")
    bucket.copy_object(Bucket=BUCKET, Key="new", **copy)
    bucket.copy_object(Bucket=BUCKET, Key="deleted", **copy)
    assert contents(bucket) == {
        "src": b"restored bytes", "taken": b"someone else's", "new": b"restored bytes", "deleted": b"restored bytes"
    }


def test_upload_part_copy_honours_copy_source_if_match(bucket: Any) -> None:
    listed = bucket.put_object(Bucket=BUCKET, Key="src", Body=b"p" * 100)["ETag"]
    upload = bucket.create_multipart_upload(Bucket=BUCKET, Key="dst")["UploadId"]
    part = {"Bucket": BUCKET, "Key": "dst", "UploadId": upload, "CopySource": {"Bucket": BUCKET, "Key": "src"}}
    done = bucket.upload_part_copy(PartNumber=1, CopySourceIfMatch=listed, **part)
    bucket.put_object(Bucket=BUCKET, Key="src", Body=b"q" * 100)
    with pytest.raises(ClientError) as caught:
        bucket.upload_part_copy(PartNumber=2, CopySourceIfMatch=listed, **part)
    assert error(caught) == (412, "PreconditionFailed")
    parts = [{"PartNumber": 1, "ETag": done["CopyPartResult"]["ETag"]}]
    bucket.complete_multipart_upload(Bucket=BUCKET, Key="dst", UploadId=upload, MultipartUpload={"Parts": parts})
    assert contents(bucket)["dst"] == b"p" * 100


def test_etags_compare_as_s3_compares_them() -> None:
    assert etag_matches('"abc"', '"abc"') and etag_matches("abc", '"abc"') and etag_matches('"abc"', "abc")
    assert etag_matches('"x", "abc-2"', '"abc-2"') and etag_matches("*", '"anything"')
    assert not etag_matches('"abc"', '"abcd"') and not etag_matches("ab", '"abc"') and not etag_matches('"x", "y"', '"abc"')



def test_a_version_is_added_under_the_lock_so_two_writers_at_once_each_keep_theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 10: moto's store adds a key's version (finding its list, or making the first) under one lock, so
    two threads creating a key's first version at the same moment cannot each make a list of one."""
    from moto.s3.utils import _VersionedKeyStore

    seen: list[bool] = []
    add = moto_strict._add_version

    def watched(store: Any, key: str, value: Any) -> Any:
        seen.append(moto_strict._VERSIONS_LOCK.locked())
        return add(store, key, value)

    monkeypatch.setattr(moto_strict, "_add_version", watched)
    store = _VersionedKeyStore()
    store["k"] = "a"
    store["k"] = "b"
    assert seen == [True, True] and store.getlist("k") == ["a", "b"]
    assert _VersionedKeyStore.__setitem__ is moto_strict._add_version_whole

"""The checker every data-safety test relies on (tests/stored.py) must itself see each way a snapshot can
name the wrong thing, whether it reads moto's record of the bucket directly or asks through the API."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import boto3
import pytest

from chalicelib.catalog.manifests import Entry
from tests import stored
from tests.stored import assert_versions_hold

BUCKET = "stored-check"
SOURCE = "docs"


@pytest.fixture(params=["moto's record", "the API"])
def s3(request: pytest.FixtureRequest, s3: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    if request.param == "the API":
        monkeypatch.setattr(stored, "_in_process_bucket", lambda s3, bucket: None)
    else:
        # The fast path must really be the one taken: no HeadObject or GetObject goes out.
        def refuse(**kwargs: Any) -> None:
            raise AssertionError(f"a request went out: {kwargs.get('event_name')}")

        s3.meta.events.register("before-call.s3.HeadObject", refuse)
        s3.meta.events.register("before-call.s3.GetObject", refuse)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


def put(s3: Any, key: str, body: bytes) -> Entry:
    """Store `body` under `key` as the engine does, and the entry a manifest would record for it."""
    answer = s3.put_object(Bucket=BUCKET, Key=f"data/{SOURCE}/{key}", Body=body, ChecksumAlgorithm="SHA256")
    return Entry(
        SOURCE,
        key,
        answer["VersionId"],
        len(body),
        answer["ETag"].strip('"'),
        identity="i",
        checksum=base64.b64encode(hashlib.sha256(body).digest()).decode(),
        sha256=hashlib.sha256(body).hexdigest(),
    )


def test_a_whole_snapshot_holds(s3: Any) -> None:
    first = put(s3, "a.txt", b"first")
    put(s3, "a.txt", b"second, now current")  # the entry names the older version, which still holds its bytes
    other = put(s3, "b.txt", b"b")
    expected = {(SOURCE, "a.txt"): b"first", (SOURCE, "b.txt"): b"b"}
    assert assert_versions_hold(s3, BUCKET, [first, other], expected) == 2


def test_a_deleted_version_is_found(s3: Any) -> None:
    entry = put(s3, "a.txt", b"bytes")
    put(s3, "a.txt", b"newer")
    s3.delete_object(Bucket=BUCKET, Key="data/docs/a.txt", VersionId=entry.version_id)
    with pytest.raises(AssertionError, match="not stored"):
        assert_versions_hold(s3, BUCKET, [entry])


def test_a_delete_marker_is_found(s3: Any) -> None:
    entry = put(s3, "a.txt", b"bytes")
    marker = s3.delete_object(Bucket=BUCKET, Key="data/docs/a.txt")["VersionId"]
    with pytest.raises(AssertionError, match="not stored"):
        assert_versions_hold(s3, BUCKET, [Entry(**{**entry.__dict__, "version_id": marker})])


@pytest.mark.parametrize("version_id", ["", "null", "never-written"])
def test_no_version_id_a_null_one_or_one_never_written_is_found(s3: Any, version_id: str) -> None:
    entry = put(s3, "a.txt", b"bytes")
    with pytest.raises(AssertionError, match="no version id|not stored"):
        assert_versions_hold(s3, BUCKET, [Entry(**{**entry.__dict__, "version_id": version_id})])


def test_a_version_that_is_another_writes_is_found_by_its_size_etag_checksum_or_bytes(s3: Any) -> None:
    entry = put(s3, "a.txt", b"recorded")
    same_size = put(s3, "a.txt", b"RECORDED")
    # The manifest names the other write's version: its ETag and checksum differ.
    with pytest.raises(AssertionError, match="ETag"):
        assert_versions_hold(s3, BUCKET, [Entry(**{**entry.__dict__, "version_id": same_size.version_id})])
    with pytest.raises(AssertionError, match="bytes"):
        assert_versions_hold(s3, BUCKET, [Entry(**{**entry.__dict__, "size": 9})])
    with pytest.raises(AssertionError, match="checksum"):
        assert_versions_hold(s3, BUCKET, [Entry(**{**entry.__dict__, "checksum": same_size.checksum})])
    with pytest.raises(AssertionError, match="SHA-256"):
        assert_versions_hold(s3, BUCKET, [Entry(**{**entry.__dict__, "sha256": same_size.sha256})])
    with pytest.raises(AssertionError, match="differ from the source"):
        assert_versions_hold(s3, BUCKET, [entry], {(SOURCE, "a.txt"): b"RECORDED"})
    with pytest.raises(AssertionError, match="not expected"):
        assert_versions_hold(s3, BUCKET, [entry], {})


def test_both_paths_describe_every_kind_of_stored_version_alike(aws: None) -> None:
    """A single-part put with and without a SHA-256, a copy, and a multipart upload (composite checksum,
    `-N` ETag): moto's record and the API's answer agree on each."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="plain", Body=b"no checksum asked")
    s3.put_object(Bucket=BUCKET, Key="summed", Body=b"with a checksum", ChecksumAlgorithm="SHA256")
    s3.copy_object(Bucket=BUCKET, Key="copied", CopySource={"Bucket": BUCKET, "Key": "summed"}, ChecksumAlgorithm="SHA256")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="parts", ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for number, body in enumerate((b"a" * 5 * 1024 * 1024, b"tail"), start=1):
        answer = s3.upload_part(Bucket=BUCKET, Key="parts", UploadId=upload, PartNumber=number, Body=body,
                                ChecksumAlgorithm="SHA256")
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": answer["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket=BUCKET, Key="parts", UploadId=upload, MultipartUpload={"Parts": parts})
    backend = stored._in_process_bucket(s3, BUCKET)
    assert backend is not None
    for key in ("plain", "summed", "copied", "parts"):
        version = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]
        through_api = stored._stored(s3, None, BUCKET, key, version)
        direct = stored._stored(s3, backend, BUCKET, key, version)
        assert (direct.size, direct.etag, direct.checksum_sha256) == (
            through_api.size, through_api.etag, through_api.checksum_sha256
        ), key
        assert direct.read() == through_api.read(), key
    assert stored._stored(s3, None, BUCKET, "parts", version).etag.endswith("-2")


def test_moto_s_record_is_read_only_for_the_in_process_emulator_and_a_versioned_bucket(aws: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    assert stored._in_process_bucket(s3, BUCKET) is None  # versioning never enabled: the API answers
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    assert stored._in_process_bucket(s3, BUCKET) is not None
    assert stored._in_process_bucket(s3, "no-such-bucket") is None
    server = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:5999")
    assert stored._in_process_bucket(server, BUCKET) is None  # moto's server: through the API

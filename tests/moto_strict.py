"""A pytest plugin that makes the in-process moto enforce S3 rules that moto 5.2.5 lets pass (and name DynamoDB
exports as AWS does), so the suite asserts what AWS would do rather than what its test double forgives.

What it enforces, and why:

1. Keys are at most 1,024 bytes of UTF-8. moto stores longer ones; AWS answers 400 `KeyTooLongError`. Here
   any S3 request whose key (in the URL), `CopySource` key or `Delete.Objects[].Key` is longer fails the
   same way. A test seeding such a key just gets the error; a request made by the system's own code (decided
   as `record_calls` decides it: a frame in `app.py` or `chalicelib/`, or a thread started from there) is
   also recorded, and the session fails at its end listing each one: code that works against moto but
   whose request AWS refuses must not pass unnoticed, even where it handles the error.
2. `CopyObject` and `UploadPartCopy` honour `CopySourceIfMatch` and `CopySourceIfNoneMatch` against the
   source version's current ETag (412 `PreconditionFailed`). moto ignores the first, and compares the second
   only for `CopyObject`. This is what pins a backup's copy to the content it listed.
3. `CopyObject` honours `IfNoneMatch="*"` (AWS does since 2024): 412 `PreconditionFailed` when the
   destination key exists. moto ignores it; a restore relies on it not to replace what appeared meanwhile.
4. A DynamoDB table export is named as AWS names it, `arn:aws:dynamodb:<region>:<account>:table/<table>/export/<id>`:
   moto nests the table's whole ARN and says `import`, which no IAM grant on `table/<table>/export/*` (the
   resource `DescribeExport` is authorised on) would match. (moto also writes only the export's data file,
   `AWSDynamoDB/<id>/data/<id>.gz`, without AWS's manifest files; the system relies on neither.)
5. A bucket's lifecycle configuration keeps its `TransitionDefaultMinimumObjectSize` (what happens to
   objects under 128 KB): `PutBucketLifecycleConfiguration` sets it (S3's default,
   `all_storage_classes_128K`, when the request leaves it out) and `GetBucketLifecycleConfiguration` answers
   it. moto answers `all_storage_classes_128K` whatever was written, so drift detection could not be tested.

6. `ListObjectVersions` honours `encoding-type=url` (which botocore always sends): keys, markers and prefixes
   come back URL-encoded and the answer says `EncodingType`, as from AWS, which is how a key holding a control
   character (invalid in XML 1.0) is listed at all. moto encodes only `ListObjects`' answers, and answers a
   versions listing of such a key with a 500.
9. `GetBucketLifecycleConfiguration` answers a rule's size filters (`ObjectSizeGreaterThan`,
   `ObjectSizeLessThan`, in its `Filter` or its `And`) as they were written. moto drops them, so a rule
   scoped by size would read back as another rule, and drift could not be tested.
8. `GetBucketReplication` answers each rule's `Filter` and `DeleteMarkerReplication` as they were written, and
   its `Priority` as a number. moto answers every rule with an empty prefix and delete markers disabled, so
   neither provisioning's second run nor drift could tell a rule's scope.
10. Two writers putting the same key at the same moment each get a version, as S3 stores every version whole
   and at once. moto's version store, when two threads create a key's first version together, can keep only
   one of them (each finds no list, and the second list replaces the first): a snapshot would name a version
   id moto lost. Here a version is added to a key's versions under a lock.

And one rule moto is stricter about than AWS, relaxed:

7. A `CopyObject` into a bucket with a default Object Lock retention needs no `Content-MD5` (it has no body;
   AWS documents the header for uploads). moto asks the copy for it too, so a copy reaches moto as if the
   SDK had named a checksum algorithm: backups into locked buckets work here as they do in AWS.

ETags are compared as S3 compares them: with or without the surrounding quotes, a comma-separated list, or
`*` (any). Each rule wraps one method of moto's `S3Response` (names and signatures of moto 5.2.5's
`moto/s3/responses.py`); the wrapped method runs unchanged when the request is valid.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import pytest
import xmltodict
from moto.dynamodb.models.table_export import TableExport
from moto.core.responses import ActionResult
from moto.s3.exceptions import PreconditionFailed, ReplicationConfigurationNotFoundError, S3ClientError
from moto.s3.models import FakeKey
from moto.s3.responses import S3Response
from moto.s3.utils import _VersionedKeyStore
from werkzeug.datastructures import Headers

from tests.record_calls import system_origin

MAX_KEY_BYTES = 1024


class KeyTooLongError(S3ClientError):
    """AWS's answer to a key over 1,024 bytes (400; the code and message S3 sends)."""

    code = "KeyTooLongError"

    def __init__(self) -> None:
        super().__init__(self.code, "Your key is too long")


@dataclass(frozen=True)
class LongKeyRequest:
    """A request of the system's own code that AWS would refuse for its key's length."""

    operation: str
    field: str
    bucket: str
    key_bytes: int
    key_start: str
    origin: str

    def describe(self) -> str:
        return (
            f"{self.operation} with a {self.field} of {self.key_bytes} bytes (s3://{self.bucket}/{self.key_start}...) "
            f"from {self.origin}"
        )


# Every long-key request the system made in this process; a test of the plugin itself takes back its own.
FOUND: list[LongKeyRequest] = []


def _operation() -> str:
    """The botocore operation under way in this thread (its `_make_api_call` frame), for the report."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_make_api_call" and "operation_name" in frame.f_locals:
            return str(frame.f_locals["operation_name"])
        frame = frame.f_back
    return "an S3 request"


def _refuse_long(key: str, field: str, bucket: str) -> None:
    size = len(key.encode("utf-8", "surrogatepass"))
    if size <= MAX_KEY_BYTES:
        return
    origin = system_origin()
    if origin is not None:
        FOUND.append(LongKeyRequest(_operation(), field, bucket, size, key[:60], origin))
    raise KeyTooLongError()


def _copy_source(response: S3Response) -> tuple[str, str, str | None] | None:
    """The `x-amz-copy-source` header as moto parses it: bucket, key and version id."""
    header = response.headers.get("x-amz-copy-source")
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("utf-8")
    parsed = urlparse(header)
    bucket, _, key = unquote(parsed.path).lstrip("/").partition("/")
    return bucket, key, parse_qs(parsed.query).get("versionId", [None])[0]


def _peek(response: S3Response, bucket_name: str, key_name: str, version_id: str | None = None) -> FakeKey | None:
    """The object (or version) as moto's `get_object` finds it, without its side effect: `get_object` counts
    as one more question to a pending thaw (`FakeKey.advance`), and the tests count those questions."""
    try:
        bucket = response.backend.get_bucket(bucket_name)
    except S3ClientError:
        return None
    if version_id is None:
        found = bucket.keys[key_name] if key_name in bucket.keys else None
    else:
        found = next((k for k in bucket.keys.getlist(key_name, default=[]) if str(k.version_id) == str(version_id)), None)
    return found if isinstance(found, FakeKey) else None


def etag_matches(condition: str, etag: str) -> bool:
    """Does an `If-Match`-style condition (`"abc"`, `abc`, `"abc", "def"` or `*`) hold for `etag`?"""
    wanted = etag.strip().strip('"')
    for tag in condition.split(","):
        tag = tag.strip()
        if tag == "*" or tag.strip('"') == wanted:
            return True
    return False


def _check_copy_source_conditions(response: S3Response) -> None:
    source = _copy_source(response)
    if source is None:
        return
    found = _peek(response, *source)
    if found is None:
        return  # moto answers NoSuchKey / NoSuchVersion itself
    if_match = response.headers.get("x-amz-copy-source-if-match")
    if if_match and not etag_matches(if_match, found.etag):
        raise PreconditionFailed("x-amz-copy-source-If-Match")
    if_none_match = response.headers.get("x-amz-copy-source-if-none-match")
    if if_none_match and etag_matches(if_none_match, found.etag):
        raise PreconditionFailed("x-amz-copy-source-If-None-Match")


# The wrapped moto methods ------------------------------------------------------------------------------

_key_response = S3Response._key_response
_bucket_put = S3Response._bucket_response_put
_get_lifecycle = S3Response.get_bucket_lifecycle
_delete_keys = S3Response._bucket_response_delete_keys
_copy_object = S3Response.copy_object
_upload_part_copy = S3Response.upload_part_copy
_key_response_put = S3Response._key_response_put


def _strict_key_response(self: S3Response, request: Any, full_url: str) -> Any:
    # Every request on an object passes here (moto's `key_response` turns an S3ClientError into its answer).
    bucket = self.parse_bucket_name_from_url(request, full_url)
    _refuse_long(self.parse_key_name(), "Key", bucket)
    source = _copy_source(self)
    if source is not None:
        _refuse_long(source[1], "CopySource key", source[0])
    return _key_response(self, request, full_url)


def _strict_delete_keys(self: S3Response, bucket_name: str, authenticated: bool = True) -> Any:
    body = xmltodict.parse(self.body, strip_whitespace=False)
    objects = (body.get("Delete") or {}).get("Object") or []
    for item in objects if isinstance(objects, list) else [objects]:
        _refuse_long(str(item.get("Key", "")), "Delete.Objects[].Key", bucket_name)
    return _delete_keys(self, bucket_name, authenticated)


def _strict_copy_object(self: S3Response) -> Any:
    _check_copy_source_conditions(self)
    if self.headers.get("If-None-Match") == "*" and _peek(self, self.bucket_name, self.parse_key_name()) is not None:
        raise PreconditionFailed("If-None-Match")
    return _copy_object(self)


def _strict_upload_part_copy(self: S3Response) -> Any:
    _check_copy_source_conditions(self)
    return _upload_part_copy(self)


_export_init = TableExport.__init__


def _aws_named_export(self: TableExport, *args: Any, **kwargs: Any) -> None:
    _export_init(self, *args, **kwargs)
    export_id = self.arn.rsplit("/", 1)[-1]
    self.arn = f"arn:{self.partition}:dynamodb:{self.region_name}:{self.account_id}:table/{self.table.name}/export/{export_id}"
SMALL_OBJECTS_HEADER = "x-amz-transition-default-minimum-object-size"
# Kept on moto's bucket object, so that it goes with the bucket when moto's state is reset.
_SMALL_OBJECTS_ATTRIBUTE = "_strict_transition_default_minimum_object_size"


_SIZE_FILTERS_ATTRIBUTE = "_strict_lifecycle_size_filters"
_SIZE_FIELDS = ("ObjectSizeGreaterThan", "ObjectSizeLessThan")


def _bucket_put_keeping_small_objects(self: S3Response, request: Any, bucket_name: str, querystring: dict[str, Any]) -> Any:
    answer = _bucket_put(self, request, bucket_name, querystring)
    if querystring and "lifecycle" in querystring:
        value = request.headers.get(SMALL_OBJECTS_HEADER) or "all_storage_classes_128K"
        bucket = self.backend.get_bucket(bucket_name)
        setattr(bucket, _SMALL_OBJECTS_ATTRIBUTE, value)
        setattr(bucket, _SIZE_FILTERS_ATTRIBUTE, _size_filters(self.body))
    return answer


def _size_filters(body: Any) -> dict[str, tuple[bool, dict[str, str]]]:
    """Per rule ID: whether its size fields sit in an `And`, and the fields as written."""
    rules = (xmltodict.parse(body).get("LifecycleConfiguration") or {}).get("Rule") or []
    found: dict[str, tuple[bool, dict[str, str]]] = {}
    for rule in rules if isinstance(rules, list) else [rules]:
        flt = rule.get("Filter") or {}
        both = flt.get("And")
        where = both if isinstance(both, dict) else flt
        sizes = {name: where[name] for name in _SIZE_FIELDS if name in where}
        if sizes:
            found[rule.get("ID", "")] = (isinstance(both, dict), sizes)
    return found


def _with_size_filters(body: str, filters: dict[str, tuple[bool, dict[str, str]]]) -> str:
    def rule(match: re.Match[str]) -> str:
        text = match.group(0)
        named = re.search(r"<ID>([^<]*)</ID>", text)
        if named is None or named.group(1) not in filters:
            return text
        in_and, sizes = filters[named.group(1)]
        fields = "".join(f"<{name}>{value}</{name}>" for name, value in sizes.items())
        return text.replace("<And>", "<And>" + fields, 1) if in_and else text.replace("<Filter>", "<Filter>" + fields, 1)

    return re.sub(r"<Rule>.*?</Rule>", rule, body, flags=re.S)


def _get_lifecycle_with_small_objects(self: S3Response) -> Any:
    status, headers, body = _get_lifecycle(self)
    bucket = self.backend.get_bucket(self.bucket_name)
    value = getattr(bucket, _SMALL_OBJECTS_ATTRIBUTE, None)
    if value is not None:
        headers = {**headers, SMALL_OBJECTS_HEADER: value}
        body = re.sub(
            r"<TransitionDefaultMinimumObjectSize>[^<]*</TransitionDefaultMinimumObjectSize>",
            f"<TransitionDefaultMinimumObjectSize>{value}</TransitionDefaultMinimumObjectSize>",
            body.decode("utf-8") if isinstance(body, bytes) else body,
        )
    filters = getattr(bucket, _SIZE_FILTERS_ATTRIBUTE, None)
    if filters:
        body = _with_size_filters(body.decode("utf-8") if isinstance(body, bytes) else body, filters)
    return status, headers, body



def _copy_into_locked_bucket(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
    is_copy = "x-amz-copy-source" in self.headers and not query.get("uploadId")
    locked = is_copy and self.backend.get_bucket(self.bucket_name).has_default_lock
    if locked and not self.headers.get("Content-Md5") and not self.headers.get("x-amz-sdk-checksum-algorithm"):
        headers = Headers(self.headers)  # case-insensitive, as moto reads them
        headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
        original, self.headers = self.headers, headers
        try:
            return _key_response_put(self, query, key_name)
        finally:
            self.headers = original
    return _key_response_put(self, query, key_name)


def _replication_as_written(self: S3Response) -> Any:
    self.data["Action"] = "GetBucketReplication"
    replication = self.backend.get_bucket_replication(self.bucket_name)
    if not replication:
        raise ReplicationConfigurationNotFoundError(bucket_name=self.bucket_name)
    rules = [
        {
            "ID": rule["ID"],
            "Priority": int(rule["Priority"]),
            "Status": rule["Status"],
            "DeleteMarkerReplication": rule.get("DeleteMarkerReplication") or {"Status": "Disabled"},
            "Filter": rule.get("Filter") or {"Prefix": rule.get("Prefix") or ""},
            "Destination": rule["Destination"],
        }
        for rule in replication["Rule"]
    ]
    return self.serialized(ActionResult({"ReplicationConfiguration": {"Role": replication["Role"], "Rules": rules}}))


_serialized = S3Response.serialized


def _versions_url_encoded(self: S3Response, action_result: Any) -> Any:
    result = action_result.result
    if self.data.get("Action") == "ListObjectVersions" and self.querystring.get("encoding-type", [None])[0] == "url":
        for item in list(result.get("Versions", [])) + list(result.get("DeleteMarkers", [])):
            item["Key"] = quote(item["Key"])
        for name in ("Prefix", "KeyMarker", "NextKeyMarker", "Delimiter"):
            if result.get(name):
                result[name] = quote(result[name])
        for common in result.get("CommonPrefixes", []):
            common["Prefix"] = quote(common["Prefix"])
        result["EncodingType"] = "url"
    return _serialized(self, action_result)


_VERSIONS_LOCK = threading.Lock()
_add_version = _VersionedKeyStore.__setitem__


def _add_version_whole(self: _VersionedKeyStore, key: str, value: Any) -> Any:
    with _VERSIONS_LOCK:
        return _add_version(self, key, value)


_VersionedKeyStore.__setitem__ = _add_version_whole  # type: ignore[method-assign]
S3Response.serialized = _versions_url_encoded  # type: ignore[method-assign]
S3Response.get_bucket_replication = _replication_as_written  # type: ignore[method-assign]
S3Response._key_response_put = _copy_into_locked_bucket  # type: ignore[method-assign]
S3Response._key_response = _strict_key_response  # type: ignore[method-assign]
S3Response._bucket_response_put = _bucket_put_keeping_small_objects  # type: ignore[method-assign]
S3Response.get_bucket_lifecycle = _get_lifecycle_with_small_objects  # type: ignore[method-assign]
S3Response._bucket_response_delete_keys = _strict_delete_keys  # type: ignore[method-assign]
S3Response.copy_object = _strict_copy_object  # type: ignore[method-assign]
S3Response.upload_part_copy = _strict_upload_part_copy  # type: ignore[method-assign]
TableExport.__init__ = _aws_named_export  # type: ignore[method-assign]


# Reporting: each xdist worker hands its findings to the controller (as `record_calls` does) -----------------

_SESSION: list[dict[str, Any]] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION.extend(asdict(found) for found in FOUND if asdict(found) not in _SESSION)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["moto_strict"] = json.dumps(_SESSION)
        return
    if _SESSION:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    found = getattr(node, "workeroutput", {}).get("moto_strict")
    if found:
        _SESSION.extend(item for item in json.loads(found) if item not in _SESSION)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _SESSION:
        return
    terminalreporter.section("S3 requests AWS would refuse: keys over 1,024 bytes", red=True)
    for item in _SESSION[:50]:
        terminalreporter.write_line(LongKeyRequest(**item).describe())
    if len(_SESSION) > 50:
        terminalreporter.write_line(f"... and {len(_SESSION) - 50} more")

"""JSON documents in S3, read, written and listed one way: every store of the catalog uses this module.

- A missing document: `is_missing` is the one set of error codes for a key, version or delete marker that is
  not there; `get`, `get_bytes` and `get_json` (by version too) answer None for it.
- Conditional writes: S3 has strong read-after-write consistency, and `PutObject` honours `If-None-Match: *`
  (create only if absent) and `If-Match: <etag>` (replace only the version read). Of two writers racing for
  one key exactly one wins; the other gets 412 (or 409 ConditionalRequestConflict while the first write is
  in flight). `create`, `put_new`, `read` (a document with its ETag) and `replace` make compare-and-swap on
  one object possible without any other database: plan locks, idempotency keys and every job's record.
- Newest first: records kept under `<prefix><inverted time>_<name>.json` list newest first (`inverted_key`,
  `newest_keys`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import AlreadyExists, error_code

# What S3 answers for a key or a version that is not there: NoSuchKey (GetObject), a bare 404 or NotFound
# (HeadObject), NoSuchVersion (a version id that names nothing), and 405 MethodNotAllowed (a version id that
# names a delete marker: there is no object to read).
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion", "405", "MethodNotAllowed"})
# Milliseconds since the epoch stay below this until the year 2286: inverted, they keep their 13 digits.
_MAX_MS = 10**13
_INVERTED_DIGITS = 13


def is_missing(exc: BaseException) -> bool:
    """True when an S3 call failed because the key (or the version asked for) is not there."""
    return error_code(exc) in MISSING_CODES


def known_fields(cls: type, data: dict[str, Any], without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The items of a stored document that are fields of the dataclass `cls` (a field added later is
    defaulted; one removed since is ignored), leaving out `without` (fields decoded on their own)."""
    known = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in known and k not in without}


def get(s3: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
    """GetObject of the key (of `version_id`, when given): S3's answer, its body still to read; None when the
    key or the version is not there."""
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    try:
        return dict(s3.get_object(**params))
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def get_bytes(s3: Any, bucket: str, key: str, version_id: str | None = None) -> bytes | None:
    """The object's bytes, or None when it is not there."""
    response = get(s3, bucket, key, version_id)
    return None if response is None else bytes(response["Body"].read())


def get_json(s3: Any, bucket: str, key: str, version_id: str | None = None) -> Any:
    """The JSON document, or None when it is not there (ValueError when it is not JSON)."""
    body = get_bytes(s3, bucket, key, version_id)
    return None if body is None else json.loads(body)


def inverted_time(moment: datetime) -> str:
    """13 digits that sort the later moment first (S3 lists keys in ascending order)."""
    return f"{_MAX_MS - int(moment.timestamp() * 1000):0{_INVERTED_DIGITS}d}"


def time_of_inverted(digits: str) -> datetime:
    """The moment `inverted_time` wrote as `digits`."""
    return datetime.fromtimestamp((_MAX_MS - int(digits)) / 1000, tz=timezone.utc)


def inverted_ms(milliseconds: int) -> str:
    """`inverted_time` of a moment given in milliseconds since the epoch (clamped to the representable range)."""
    return f"{_MAX_MS - min(max(milliseconds, 0), _MAX_MS):0{_INVERTED_DIGITS}d}"


def inverted_key(prefix: str, moment: datetime, name: str) -> str:
    """`<prefix><inverted time>_<name>.json`: listed under `prefix`, the newest record comes first."""
    return f"{prefix}{inverted_time(moment)}_{name}.json"


def name_in_inverted_key(key: str) -> str:
    """The `name` of a key `inverted_key` made."""
    return key.rsplit("/", 1)[-1].split("_", 1)[-1].removesuffix(".json")


def newest_keys(s3: Any, bucket: str, prefix: str, limit: int) -> list[str]:
    """The keys of the newest `limit` records under `prefix` (one listing request)."""
    response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
    return [item["Key"] for item in response.get("Contents", [])]


# 412: the condition failed. 409: another conditional write to the key is in flight (AWS answers this;
# moto does not). Both mean "someone else got there first".
_LOST_RACE = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


@dataclass(frozen=True)
class Document:
    data: dict[str, Any]
    etag: str


def lost_race(exc: ClientError) -> bool:
    """True when a conditional write failed because another writer got there first."""
    return error_code(exc) in _LOST_RACE


def put_new(s3: Any, **params: Any) -> dict[str, Any]:
    """`PutObject` that only creates (`IfNoneMatch="*"`): `AlreadyExists` when the key is already there."""
    try:
        return dict(s3.put_object(IfNoneMatch="*", **params))
    except ClientError as exc:
        if lost_race(exc):
            raise AlreadyExists(f"s3://{params.get('Bucket')}/{params.get('Key')} already exists") from exc
        raise


def read(s3: Any, bucket: str, key: str) -> Document | None:
    """The document and its ETag, or None when there is none (or it is not a JSON object)."""
    response = get(s3, bucket, key)
    if response is None:
        return None
    try:
        data = json.loads(response["Body"].read())
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # Unreadable: treat like a document with no content; a caller may replace it by its ETag.
        data = {}
    return Document(data=data, etag=response["ETag"])


def create(s3: Any, bucket: str, key: str, data: dict[str, Any], sort_keys: bool = True) -> str:
    """Write `data` only if `key` does not exist. Returns the new ETag; `AlreadyExists` otherwise.
    (`sort_keys=False` keeps a document's own order, where its order means something.)"""
    return _put(s3, bucket, key, data, sort_keys, IfNoneMatch="*")


def replace(s3: Any, bucket: str, key: str, data: dict[str, Any], etag: str, sort_keys: bool = True) -> str:
    """Overwrite the version whose ETag is `etag`, and only it. `AlreadyExists` when it changed meanwhile."""
    return _put(s3, bucket, key, data, sort_keys, IfMatch=etag)


def remove(s3: Any, bucket: str, key: str) -> None:
    s3.delete_object(Bucket=bucket, Key=key)


def _put(s3: Any, bucket: str, key: str, data: dict[str, Any], sort_keys: bool, **condition: str) -> str:
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(data, sort_keys=sort_keys).encode("utf-8"),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        if lost_race(exc) or (condition.get("IfMatch") and is_missing(exc)):
            raise AlreadyExists(f"s3://{bucket}/{key} changed while it was being written") from exc
        raise
    return str(response.get("ETag", ""))

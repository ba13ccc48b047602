"""Small JSON documents written with S3 conditional writes: the building block of plan locks and
idempotency keys.

S3 has strong read-after-write consistency and `PutObject` honours `If-None-Match: *` (create only if absent)
and `If-Match: <etag>` (replace only the version read). Two writers racing for the same key: exactly one
wins, the other gets 412 (or 409 ConditionalRequestConflict while the first write is in flight). That makes
compare-and-swap on one object possible without any other database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.errors import AlreadyExists, error_code
from chalicelib import s3docs
from chalicelib.s3docs import is_missing

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
    response = s3docs.get(s3, bucket, key)
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

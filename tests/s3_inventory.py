"""A test double for S3 Inventory's delivery: moto stores inventory configurations but never writes a report,
so `deliver` writes one, in the format AWS documents, from what moto holds at that moment.

Followed (S3 User Guide): "Locating your inventory list" for the keys (`<prefix>/<source>/<id>/<YYYY-MM-DD
THH-MMZ>/manifest.json` and `manifest.checksum`, `<prefix>/<source>/<id>/hive/dt=<YYYY-MM-DD-HH-MM>/
symlink.txt`, `<prefix>/<source>/<id>/data/<name>.csv.gz`) and the manifest (sourceBucket, destinationBucket
as an ARN, version "2016-11-30", creationTimestamp in milliseconds as a string, fileFormat, fileSchema,
files with key, size and MD5checksum; manifest.checksum the MD5 of manifest.json); "What's included in an
inventory" for the columns (Bucket, Key, then VersionId, IsLatest and IsDeleteMarker for all versions, then
the optional fields in the order the guide's example fileSchema lists them) and for the key being
URL-encoded in CSV; cloud-custodian issue #1997 for a space encoded as '+'.

Where it departs from AWS:
- Delivery happens when a test calls `deliver`, not on a schedule within 48 hours; `at` stands for the moment
  S3 began its scan (the report folder and creationTimestamp), and only versions and delete markers written
  at or before it are listed, with IsLatest as it was then. A version permanently deleted after `at` is
  missing from the report (AWS's rolling scan may still list it).
- Only CSV (ORC and Parquet raise NotImplementedError); IncludedObjectVersions is always All (moto stores
  nothing else); SSE-S3 encryption of the reports is not applied (moto forgets it).
- Key encoding is Python's `quote_plus` with '*' kept and '~' encoded, as Java's URLEncoder does; AWS does
  not document its exact set of unencoded characters. Every value is quoted, and a field with no value (a
  delete marker's size, ETag and storage class) is an empty quoted string.
- IsMultipartUploaded comes from the ETag ('-' in it); ChecksumAlgorithm, ReplicationStatus, EncryptionStatus
  and the Object Lock fields from a HeadObject of each version, sent only when the schema has them.
- Data file names are random UUIDs; `files` splits the rows over that many files and `shuffle` spreads them
  in random order, since AWS promises no order within or across files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus

from chalicelib.inventory.reports import report_prefix
from chalicelib.times import utcnow

# The order of the guide's example fileSchema; a configured field takes its place in it.
SCHEMA_ORDER = (
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "IsDeleteMarker",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "IsMultipartUploaded",
    "ReplicationStatus",
    "EncryptionStatus",
    "ObjectLockRetainUntilDate",
    "ObjectLockMode",
    "ObjectLockLegalHoldStatus",
    "IntelligentTieringAccessTier",
    "BucketKeyStatus",
    "ChecksumAlgorithm",
    "ObjectAccessControlList",
    "ObjectOwner",
)
# Fields a version listing does not give: the double asks HeadObject for them.
_HEAD_FIELDS = {
    "ChecksumAlgorithm",
    "ReplicationStatus",
    "EncryptionStatus",
    "ObjectLockRetainUntilDate",
    "ObjectLockMode",
    "ObjectLockLegalHoldStatus",
}
_CHECKSUMS = ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256")
_ENCRYPTION = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}


def encode_key(key: str) -> str:
    """A key as a CSV report writes it: form-encoded UTF-8 (a space as '+')."""
    return quote_plus(key, safe="*", encoding="utf-8").replace("~", "%7E")


def deliver(
    s3: Any,
    source_bucket: str,
    configuration_id: str,
    *,
    at: datetime | None = None,
    files: int = 1,
    shuffle: int | None = None,
    schema: Sequence[str] | None = None,
) -> str:
    """Write the report of `configuration_id` for `source_bucket` as of `at` (default: now) into the
    configured destination; return the manifest.json key. `files`: how many data files the rows are split
    over; `shuffle`: a seed to put the rows in random order across files (else in listing order); `schema`:
    the columns in another order than AWS's (to test that readers follow fileSchema)."""
    config = s3.get_bucket_inventory_configuration(Bucket=source_bucket, Id=configuration_id)["InventoryConfiguration"]
    if not config.get("IsEnabled"):
        raise ValueError(f"inventory configuration {configuration_id} of {source_bucket} is disabled: S3 delivers nothing")
    target = config["Destination"]["S3BucketDestination"]
    if target["Format"] != "CSV":
        raise NotImplementedError(f"the double writes CSV reports only, not {target['Format']}")
    moment = (at or utcnow()).astimezone(timezone.utc)
    fields = set(config.get("OptionalFields") or [])
    columns = list(schema) if schema else [c for c in SCHEMA_ORDER if c in fields or c in SCHEMA_ORDER[:5]]
    filter_prefix = (config.get("Filter") or {}).get("Prefix", "")
    entries = _entries_as_of(s3, source_bucket, filter_prefix, moment)
    values = [_values(s3, source_bucket, entry, columns) for entry in entries]
    if shuffle is not None:
        random.Random(shuffle).shuffle(values)

    destination = target["Bucket"].rsplit(":", 1)[-1]
    base = report_prefix(target.get("Prefix", ""), source_bucket, configuration_id)
    manifest_files = []
    count = max(files, 1)
    for part in range(count):
        body = _gzip_csv(values[part::count] if shuffle is not None else _slice(values, part, count))
        key = f"{base}data/{uuid.uuid4()}.csv.gz"
        s3.put_object(Bucket=destination, Key=key, Body=body)
        manifest_files.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": target["Bucket"],
        "version": "2016-11-30",
        "creationTimestamp": str(int(moment.timestamp() * 1000)),
        "fileFormat": "CSV",
        "fileSchema": ", ".join(columns),
        "files": manifest_files,
    }
    folder = f"{base}{moment:%Y-%m-%dT%H-%MZ}/"
    manifest_body = json.dumps(manifest, indent=4).encode()
    s3.put_object(Bucket=destination, Key=folder + "manifest.json", Body=manifest_body)
    symlink = "".join(f"s3://{destination}/{f['key']}\n" for f in manifest_files).encode()
    s3.put_object(Bucket=destination, Key=f"{base}hive/dt={moment:%Y-%m-%d-%H-%M}/symlink.txt", Body=symlink)
    # Written last, as S3 does: its arrival is the documented sign that a delivery is complete.
    s3.put_object(Bucket=destination, Key=folder + "manifest.checksum", Body=hashlib.md5(manifest_body).hexdigest().encode())
    return folder + "manifest.json"


def rewrite_manifest(s3: Any, bucket: str, manifest_key: str, change: Callable[[dict[str, Any]], None], *, fix_checksum: bool = True) -> None:
    """Change a delivered manifest.json in place (and its manifest.checksum to match, unless told not to):
    how a test makes each kind of wrong report."""
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    change(manifest)
    body = json.dumps(manifest, indent=4).encode()
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=body)
    if fix_checksum:
        checksum_key = manifest_key.rsplit("/", 1)[0] + "/manifest.checksum"
        s3.put_object(Bucket=bucket, Key=checksum_key, Body=hashlib.md5(body).hexdigest().encode())


def _slice(values: list[list[str]], part: int, count: int) -> list[list[str]]:
    size = -(-len(values) // count) if values else 0
    return values[part * size : (part + 1) * size]


def _entries_as_of(s3: Any, bucket: str, prefix: str, moment: datetime) -> list[dict[str, Any]]:
    """Versions and delete markers written at or before `moment`, IsLatest as it was then, in S3's listing
    order (key, then newest first)."""
    listed: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        listed += [dict(v, IsDeleteMarker=False) for v in page.get("Versions", [])]
        listed += [dict(m, IsDeleteMarker=True) for m in page.get("DeleteMarkers", [])]
    # A page lists versions and delete markers apart: per key, newest first; of two written in the same
    # second (moto keeps whole seconds), the one S3 calls latest now comes first.
    listed.sort(key=lambda e: (e["Key"].encode("utf-8"), -e["LastModified"].timestamp(), not e["IsLatest"]))
    kept: list[dict[str, Any]] = []
    for entry in listed:
        if entry["LastModified"] > moment:
            continue
        entry["IsLatest"] = not kept or kept[-1]["Key"] != entry["Key"]
        kept.append(entry)
    return kept


def _values(s3: Any, bucket: str, entry: dict[str, Any], columns: list[str]) -> list[str]:
    marker = entry["IsDeleteMarker"]
    head: dict[str, Any] = {}
    if not marker and _HEAD_FIELDS & set(columns):
        head = s3.head_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"], ChecksumMode="ENABLED")
    etag = "" if marker else entry["ETag"].strip('"')
    retain = head.get("ObjectLockRetainUntilDate")
    known = {
        "Bucket": bucket,
        "Key": encode_key(entry["Key"]),
        "VersionId": "" if entry["VersionId"] == "null" else entry["VersionId"],
        "IsLatest": _flag(entry["IsLatest"]),
        "IsDeleteMarker": _flag(marker),
        "Size": "" if marker else str(entry["Size"]),
        "LastModifiedDate": _time(entry["LastModified"]),
        "ETag": etag,
        "StorageClass": "" if marker else entry.get("StorageClass", "STANDARD"),
        "IsMultipartUploaded": "" if marker else _flag("-" in etag),
        "ChecksumAlgorithm": next((name.removeprefix("Checksum") for name in _CHECKSUMS if head.get(name)), ""),
        "ReplicationStatus": head.get("ReplicationStatus", ""),
        "EncryptionStatus": "" if marker else _ENCRYPTION.get(head.get("ServerSideEncryption", ""), "NOT-SSE"),
        "ObjectLockRetainUntilDate": _time(retain) if retain else "",
        "ObjectLockMode": head.get("ObjectLockMode", ""),
        "ObjectLockLegalHoldStatus": head.get("ObjectLockLegalHoldStatus", ""),
    }
    return [known.get(column, "") for column in columns]


def _gzip_csv(values: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(values)
    return gzip.compress(text.getvalue().encode("utf-8"))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

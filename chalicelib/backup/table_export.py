"""A table's backup by DynamoDB's own export (`ExportTableToPointInTime`), joined into one object.

DynamoDB writes the export into the backup bucket, under a prefix of its own for each export started
(`data/~exports/<source>/<backup id>-<token>/`, inside the lifecycle's `data/` but never a source's key):
`AWSDynamoDB/<export id>/data/*.json.gz` (gzip, one `{"Item": {...}}` a line) and manifest files. Those files
are written by DynamoDB, so the run reads their version ids back (`ListObjectVersions` of that prefix: each
key there is written once) and joins them into the table's object `data/<source>/<table>.jsonl.gz` with a
multipart upload of its own, whose `CompleteMultipartUpload` answers the version the snapshot names. Gzip
members concatenate into one stream and a table's items have no order, so files of 5 MiB and more are
copied server-side (`UploadPartCopy`, pinned to their version), and smaller ones are read and sent together
in parts of at least 5 MiB (S3's minimum, but for the last part). Then the export's own files get delete
markers: their versions age out with the bucket's noncurrent-version rules.

The export's ARN and prefix are recorded (`export.json`, a conditional create in the plan run's checkpoint
prefix) as soon as it is started, so that a run carried on by a new invocation, or a duplicate delivery,
waits for the same export instead of starting another; a duplicate that started one too adopts the recorded
one, and its own export stays behind, unnamed, under its own prefix.

In AWS, DynamoDB writes these files with the caller's permissions: the function's role needs `s3:PutObject`,
`s3:PutObjectAcl` and `s3:AbortMultipartUpload` on the export prefix (chalicelib/deploy/policy.py grants them
there only). The bucket, in the same account, needs no bucket policy for it; a bucket in another account would
need one allowing those actions to the role, and `S3BucketOwner` in the request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from chalicelib import s3docs
from chalicelib.backup import writes
from chalicelib.backup.source_reader import ReaderRun
from chalicelib.catalog.manifests import EXPORT_IDENTITY
from chalicelib.errors import AlreadyExists, SourceError
from chalicelib.layout import EXPORTS_PREFIX
from chalicelib.s3docs import get_json

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_IDENTITY", "Export", "TableExports"]

# AWS exports take minutes at least: how often to ask whether it is done (and check the invocation's time).
EXPORT_POLL_SECONDS: float = 20
MIN_PART = 5 * 1024**2
MAX_COPY_PART = 5 * 1024**3
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Export:
    arn: str
    # S3Prefix given to DynamoDB (no trailing slash: it adds `/AWSDynamoDB/...`).
    prefix: str


@dataclass(frozen=True)
class _File:
    key: str
    version_id: str
    size: int


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class TableExports:
    """Exports of one table into one backup bucket, for one plan run (`state_prefix`: its checkpoint prefix)."""

    def __init__(self, dynamodb: Any, s3: Any, bucket: str, run: ReaderRun, where: str) -> None:
        self.dynamodb = dynamodb
        self.s3 = s3
        self.bucket = bucket
        # Where the reader keeps its progress, and the run's proof of it.
        self.run = run
        self.state_key = f"{run.prefix}export.json"
        self.where = where

    def _load(self) -> Export | None:
        data = get_json(self.s3, self.bucket, self.state_key)
        if data is None:
            return None
        trusted = self.run.opened(self.state_key, data)
        if trusted is None:
            # Created (create-only) by a version before the run's proof: neither adopted nor replaced.
            raise SourceError(
                f"{self.where}: the export recorded at {self.state_key} by an earlier version is not adopted; the next "
                "backup exports the table anew"
            )
        return Export(trusted["arn"], trusted["prefix"])

    def start_or_adopt(self, table_arn: str, source: str, backup_id: str) -> Export:
        """The export this plan run waits for: the one already recorded, or a new one."""
        recorded = self._load()
        if recorded is not None:
            return recorded
        prefix = f"{EXPORTS_PREFIX}{source}/{backup_id}-{secrets.token_hex(4)}"
        answer = self.dynamodb.export_table_to_point_in_time(
            TableArn=table_arn, S3Bucket=self.bucket, S3Prefix=prefix, ExportFormat="DYNAMODB_JSON",
            ExportType="FULL_EXPORT",
        )
        export = Export(answer["ExportDescription"]["ExportArn"], prefix)
        try:
            s3docs.put_new(
                self.s3, Bucket=self.bucket, Key=self.state_key, ContentType="application/json",
                Body=json.dumps(self.run.seal(self.state_key, {"arn": export.arn, "prefix": export.prefix})).encode("utf-8"),
            )
        except AlreadyExists:
            adopted = self._load()
            assert adopted is not None
            logger.info("%s: another invocation started export %s first; waiting for that one", self.where, adopted.arn)
            return adopted
        logger.info("%s: export %s started into s3://%s/%s", self.where, export.arn, self.bucket, prefix)
        return export

    def wait(self, export: Export, running_out: Callable[[], bool] | None) -> dict[str, Any] | None:
        """The export's description once it is complete; None when the invocation must stop first."""
        waiter = self.dynamodb.get_waiter("export_completed")
        while True:
            try:
                # Two attempts: one poll, one wait, one more poll; then the invocation's time is looked at.
                waiter.wait(ExportArn=export.arn, WaiterConfig={"Delay": EXPORT_POLL_SECONDS, "MaxAttempts": 2})
            except WaiterError as exc:
                # A waiter's last response is DescribeExport's answer (botocore types it loosely).
                last: Any = exc.last_response or {}
                description = last.get("ExportDescription", {})
                status = description.get("ExportStatus")
                if status == "FAILED":
                    raise SourceError(
                        f"{self.where}: export {export.arn} failed: {description.get('FailureCode')}: "
                        f"{description.get('FailureMessage')}"
                    ) from exc
                if status != "IN_PROGRESS":
                    raise SourceError(f"{self.where}: export {export.arn}: {exc}") from exc
                if running_out is not None and running_out():
                    return None
                continue
            return dict(self.dynamodb.describe_export(ExportArn=export.arn)["ExportDescription"])

    def _files(self, export: Export, data_only: bool) -> list[_File]:
        found: list[_File] = []
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=export.prefix + "/"):
            for version in page.get("Versions", []):
                if not version.get("IsLatest"):
                    continue
                if data_only and "/data/" not in version["Key"][len(export.prefix):]:
                    continue
                found.append(_File(version["Key"], version["VersionId"], int(version["Size"])))
        return found

    def join(self, description: dict[str, Any], export: Export, key: str) -> tuple[writes.Written, int]:
        """The export's data files as one object at `key`; returns what S3 answered and the item count."""
        files = self._files(export, data_only=True)
        return self._assemble(files, key), int(description.get("ItemCount", 0))

    def clean_up(self, export: Export) -> None:
        """Delete markers on the export's own files, now joined (their versions age out as noncurrent)."""
        try:
            keys = [file.key for file in self._files(export, data_only=False)]
            for start in range(0, len(keys), 1000):
                self.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True}
                )
        except ClientError as exc:
            logger.warning("%s: could not clear the export's files under %s: %s", self.where, export.prefix, exc)

    def _assemble(self, files: list[_File], key: str) -> writes.Written:
        if not files:
            body = gzip.compress(b"", mtime=0)
            response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ChecksumSHA256=_b64(hashlib.sha256(body).digest()))
            return writes.Written(writes.version_of(response, self.bucket, key), response["ETag"].strip('"'), len(body),
                                  response.get("ChecksumSHA256"))
        big = [file for file in files if file.size >= MIN_PART]
        small = [file for file in files if file.size < MIN_PART]
        copies = [(file, first, last) for file in big for first, last in _ranges(file.size)]
        if len(small) == 1:
            # One small file can be the last part as it is.
            copies.append((small[0], 0, small[0].size - 1))
            small = []
        planned = len(copies) + math.ceil(sum(file.size for file in small) / MIN_PART)
        if planned > MAX_PARTS:
            raise SourceError(f"{self.where}: the export has {len(files)} files, more than one object's {MAX_PARTS} parts hold")
        upload_id = self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", ContentType="application/gzip"
        )["UploadId"]

        def copy(number: int, file: _File, first: int, last: int) -> dict[str, Any]:
            source = {"Bucket": self.bucket, "Key": file.key, "VersionId": file.version_id}
            extra = {"CopySourceRange": f"bytes={first}-{last}"} if (first, last) != (0, file.size - 1) else {}
            result = self.s3.upload_part_copy(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, CopySource=source, **extra
            )["CopyPartResult"]
            return _part(number, result["ETag"], result.get("ChecksumSHA256"))

        def send(number: int, body: bytes) -> dict[str, Any]:
            response = self.s3.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                ChecksumSHA256=_b64(hashlib.sha256(body).digest()),
            )
            return _part(number, response["ETag"], response.get("ChecksumSHA256"))

        with writes.aborted_on_failure(self.s3, self.bucket, key, upload_id):
            with ThreadPoolExecutor(max_workers=writes.PART_THREADS) as pool:
                futures = [pool.submit(copy, number, *job) for number, job in enumerate(copies, start=1)]
                parts = [future.result() for future in futures]
            buffer = bytearray()
            for index, file in enumerate(small):
                buffer += self.s3.get_object(Bucket=self.bucket, Key=file.key, VersionId=file.version_id)["Body"].read()
                if len(buffer) >= MIN_PART or index == len(small) - 1:
                    parts.append(send(len(parts) + 1, bytes(buffer)))
                    buffer = bytearray()
            response = self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        return writes.Written(
            version_id=writes.version_of(response, self.bucket, key),
            etag=response.get("ETag", "").strip('"'),
            size=sum(file.size for file in files),
            checksum=response.get("ChecksumSHA256"),
        )


def _ranges(size: int) -> list[tuple[int, int]]:
    """Byte ranges of at most 5 GiB (UploadPartCopy's limit), about equal, so none is below 5 MiB."""
    count = max(1, math.ceil(size / MAX_COPY_PART))
    step = math.ceil(size / count)
    return [(first, min(first + step, size) - 1) for first in range(0, size, step)]


def _part(number: int, etag: str, checksum: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"PartNumber": number, "ETag": etag}
    if checksum:
        part["ChecksumSHA256"] = checksum
    return part

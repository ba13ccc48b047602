"""Writing one object into a backup bucket, and knowing exactly which version the write made.

A manifest entry must name the version its own run wrote, so every write here returns the `VersionId` that S3
answered for that very request: `CopyObject`, `PutObject`, or the `CompleteMultipartUpload` that ends a
multipart copy or upload. boto3's managed transfers drop that answer (and reading the key back afterwards
can find another run's newer version), which is why multipart copies and uploads are driven here, part by
part, on a small thread pool, with the same part sizes boto3 would choose (`chalicelib/transfer.py`).

Uploads read the file once and hash exactly the bytes they send, so an entry always describes the bytes
stored. A file modified while it is being read (its size or modification time moves under the open handle)
could be stored torn, half old and half new: the upload is then abandoned (a multipart upload is aborted
before it completes) and the object fails for this run; the snapshot keeps its previous version and the next
backup takes the file again.

A write whose answer has no version id (or the version `null`) means the bucket does not keep history: that
is `HistoryNotKept`, and the plan stops, since a later write could replace those bytes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import transfer
from chalicelib.errors import HistoryNotKept

logger = logging.getLogger(__name__)

# Parts of one multipart transfer in flight at once (uploads also hold this many parts in memory).
PART_THREADS = 4
# What CopyObject carries over from the source by default, and a multipart copy must ask for itself.
_COPIED_HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "ContentType", "Expires")


@dataclass(frozen=True)
class Written:
    """What S3 said about the version a write made."""

    version_id: str
    etag: str
    size: int
    checksum: str | None = None
    # SHA-256 (hex) of the bytes sent, where this system sent them (uploads).
    sha256: str | None = None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def version_of(response: dict[str, Any], bucket: str, key: str) -> str:
    """The version id S3 gave a write; `HistoryNotKept` when it gave none."""
    version = response.get("VersionId")
    if not version or version == "null":
        raise HistoryNotKept(
            f"s3://{bucket}/{key} was written without a version id: versioning is not enabled on {bucket}, so a "
            "later write could replace these bytes; nothing more is written to it"
        )
    return str(version)


def copy(
    s3: Any, source_bucket: str, source_key: str, etag: str, size: int, bucket: str, key: str, multipart_threshold: int
) -> Written:
    """Copy the source object, pinned to the listed `etag` (a change since the listing fails the copy with
    412 instead of storing other bytes under this identity), server-side."""
    source = {"Bucket": source_bucket, "Key": source_key}
    if size <= multipart_threshold:
        response = s3.copy_object(
            Bucket=bucket, Key=key, CopySource=source, CopySourceIfMatch=f'"{etag}"', ChecksumAlgorithm="SHA256"
        )
        result = response.get("CopyObjectResult", {})
        return Written(
            version_id=version_of(response, bucket, key),
            etag=result.get("ETag", "").strip('"'),
            size=size,
            checksum=result.get("ChecksumSHA256"),
        )
    return _multipart_copy(s3, source, etag, size, bucket, key)


def _multipart_copy(s3: Any, source: dict[str, str], etag: str, size: int, bucket: str, key: str) -> Written:
    # CopyObject would carry the source's headers, user metadata and tags over by itself; a multipart copy
    # starts from nothing, so they are read (pinned to the same ETag) and given to the new upload.
    head = s3.head_object(Bucket=source["Bucket"], Key=source["Key"], IfMatch=f'"{etag}"')
    extra: dict[str, Any] = {name: head[name] for name in _COPIED_HEADERS if head.get(name)}
    if head.get("Metadata"):
        extra["Metadata"] = head["Metadata"]
    tags = s3.get_object_tagging(Bucket=source["Bucket"], Key=source["Key"]).get("TagSet", [])
    if tags:
        extra["Tagging"] = urlencode([(tag["Key"], tag["Value"]) for tag in tags])
    part_size = transfer.copy_part_size(size)

    def part(number: int, first: int) -> dict[str, Any]:
        last = min(first + part_size, size) - 1
        response = s3.upload_part_copy(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, CopySource=source,
            CopySourceRange=f"bytes={first}-{last}", CopySourceIfMatch=f'"{etag}"',
        )
        result = response["CopyPartResult"]
        return _part(number, result["ETag"], result.get("ChecksumSHA256"))

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", **extra)["UploadId"]
    with aborted_on_failure(s3, bucket, key, upload_id):
        with ThreadPoolExecutor(max_workers=PART_THREADS) as pool:
            futures = [pool.submit(part, n, first) for n, first in enumerate(range(0, size, part_size), start=1)]
            parts = [future.result() for future in futures]
        response = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return Written(
        version_id=version_of(response, bucket, key),
        etag=response.get("ETag", "").strip('"'),
        size=size,
        checksum=response.get("ChecksumSHA256"),
    )


class ChangedWhileRead(Exception):
    """The file changed while it was being read: what was read may be half old and half new."""


def _stamp(handle: Any) -> tuple[int, int]:
    stat = os.fstat(handle.fileno())
    return stat.st_size, stat.st_mtime_ns


def read_whole(path: Path) -> bytes:
    """A small file's bytes, read once for a pack; `ChangedWhileRead` when it changed while being read."""
    with open(path, "rb") as handle:
        stamp = _stamp(handle)
        data = handle.read()
        if _stamp(handle) != stamp or len(data) != stamp[0]:
            raise ChangedWhileRead(f"{path} changed while it was being read; the next backup takes it again")
    return data


def upload(s3: Any, path: Path, bucket: str, key: str, multipart_threshold: int) -> Written:
    """Upload a local file, reading it once. The SHA-256 of what is read goes with each request, so S3
    refuses a body that does not match it, and is what the manifest records."""
    with open(path, "rb") as handle:
        stamp = _stamp(handle)

        def check_unchanged() -> None:
            if _stamp(handle) != stamp:
                raise ChangedWhileRead(f"{path} changed while it was being read; the next backup takes it again")

        first = handle.read(multipart_threshold + 1)
        if len(first) <= multipart_threshold:
            check_unchanged()
            digest = hashlib.sha256(first).digest()
            response = s3.put_object(Bucket=bucket, Key=key, Body=first, ChecksumSHA256=_b64(digest))
            return Written(
                version_id=version_of(response, bucket, key),
                etag=response["ETag"].strip('"'),
                size=len(first),
                checksum=response.get("ChecksumSHA256"),
                sha256=digest.hex(),
            )
        return _multipart_upload(s3, handle, first, bucket, key, check_unchanged)


def _multipart_upload(
    s3: Any, handle: Any, first: bytes, bucket: str, key: str, check_unchanged: Callable[[], None]
) -> Written:
    part_size = transfer.MULTIPART_CHUNKSIZE
    whole = hashlib.sha256()
    size = 0
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    # At most PART_THREADS parts are read ahead of the ones S3 has acknowledged: memory stays bounded.
    slots = threading.BoundedSemaphore(PART_THREADS)

    def send(number: int, body: bytes) -> dict[str, Any]:
        try:
            response = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                ChecksumSHA256=_b64(hashlib.sha256(body).digest()),
            )
            return _part(number, response["ETag"], response.get("ChecksumSHA256"))
        finally:
            slots.release()

    futures: list[Future[dict[str, Any]]] = []
    with aborted_on_failure(s3, bucket, key, upload_id):
        with ThreadPoolExecutor(max_workers=PART_THREADS) as pool:
            pending = first
            number = 0
            # The first end of file ends the upload: a file truncated and rewritten while it is read must not
            # give a short part in the middle (S3 refuses parts under 5 MiB but the last) or a mix of two files.
            ended = False
            while pending:
                # Parts of exactly part_size, the last one shorter: read until a part is full.
                while len(pending) < part_size and not ended:
                    more = handle.read(part_size - len(pending))
                    ended = not more
                    pending += more
                body, pending = pending[:part_size], pending[part_size:]
                number += 1
                whole.update(body)
                size += len(body)
                slots.acquire()
                futures.append(pool.submit(send, number, body))
                if not pending and not ended:
                    pending = handle.read(part_size)
                    ended = not pending
            parts = [future.result() for future in futures]
        # Before the upload becomes a version: a torn file is aborted, never stored.
        check_unchanged()
        response = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return Written(
        version_id=version_of(response, bucket, key),
        etag=response.get("ETag", "").strip('"'),
        size=size,
        checksum=response.get("ChecksumSHA256"),
        sha256=whole.hexdigest(),
    )


def _part(number: int, etag: str, checksum: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"PartNumber": number, "ETag": etag}
    if checksum:
        part["ChecksumSHA256"] = checksum
    return part


@contextmanager
def aborted_on_failure(s3: Any, bucket: str, key: str, upload_id: str) -> Iterator[None]:
    """Abort the multipart upload when anything fails before it completes, so no parts are left billed.
    If the abort fails too (the process is dying), the run's upload marker and the bucket's
    AbortIncompleteMultipartUpload rule clean up."""
    try:
        yield
    except Exception:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as abort_error:
            logger.warning("could not abort the multipart upload of s3://%s/%s: %s", bucket, key, abort_error)
        raise

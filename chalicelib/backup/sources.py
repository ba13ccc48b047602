"""Readers for the three kinds of source: what a source holds, and how one object gets into a backup bucket.

Every reader lists its objects sorted by key (the order S3 lists in), with an `identity` that changes
whenever the content may have changed; the backup engine copies an object only when its identity differs
from the previous snapshot's.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import transfer
from chalicelib.errors import SourceError, describe_error
from chalicelib.plans import DirectorySource, DynamoDBSource, S3Source, Source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    identity: str
    storage_class: str | None = None


@dataclass(frozen=True)
class Stored:
    """What S3 said about the version a backup wrote."""

    version_id: str
    etag: str
    size: int
    identity: str
    checksum: str | None = None
    sha256: str | None = None
    item_count: int | None = None


class SourceReader(Protocol):
    source: Source

    def list_objects(self) -> Iterator[SourceObject]: ...

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored: ...

    def close(self) -> None: ...


def _dynamodb_json(value: Any) -> Any:
    """boto3 hands B and BS values over as bytes; DynamoDB JSON (as in a DynamoDB export) writes them base64."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} as DynamoDB JSON")


def _sha256_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3SourceReader:
    """A bucket and prefix, copied server-side: no object's bytes pass through the function."""

    def __init__(self, s3: Any, source: S3Source, multipart_threshold: int = transfer.COPY_OBJECT_LIMIT) -> None:
        self.s3 = s3
        self.source = source
        self.multipart_threshold = multipart_threshold

    def _where(self) -> str:
        return f"s3 source '{self.source.name}' (s3://{self.source.bucket}/{self.source.prefix})"

    def list_objects(self, start_after: str | None = None) -> Iterator[SourceObject]:
        """Sorted by key; from just after `start_after` when a resumed backup carries on."""
        prefix = self.source.prefix
        paginator = self.s3.get_paginator("list_objects_v2")
        extra = {"StartAfter": prefix + start_after} if start_after else {}
        try:
            for page in paginator.paginate(Bucket=self.source.bucket, Prefix=prefix, **extra):
                for item in page.get("Contents", []):
                    key = item["Key"][len(prefix):]
                    if not key:
                        continue
                    etag = item["ETag"].strip('"')
                    yield SourceObject(
                        key=key,
                        size=item["Size"],
                        identity=f"etag:{etag}:{item['Size']}",
                        storage_class=item.get("StorageClass"),
                    )
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"{self._where()}: {describe_error(exc)}") from exc

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored:
        source_key = self.source.prefix + obj.key
        etag = obj.identity.split(":")[1]
        if obj.size <= self.multipart_threshold:
            # IfMatch pins the copy to the version we listed: a change mid-backup fails this copy (and the
            # next backup takes the new content) instead of recording a size and ETag that don't match.
            response = self.s3.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": self.source.bucket, "Key": source_key},
                CopySourceIfMatch=f'"{etag}"',
                ChecksumAlgorithm="SHA256",
            )
            result = response.get("CopyObjectResult", {})
            return Stored(
                version_id=response.get("VersionId", "null"),
                etag=result.get("ETag", "").strip('"'),
                size=obj.size,
                identity=obj.identity,
                checksum=result.get("ChecksumSHA256"),
            )
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=transfer.copy_part_size(obj.size)
        )
        self.s3.copy(
            CopySource={"Bucket": self.source.bucket, "Key": source_key},
            Bucket=bucket,
            Key=key,
            ExtraArgs={"ChecksumAlgorithm": "SHA256", "CopySourceIfMatch": f'"{etag}"'},
            Config=config,
        )
        head = self.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        return Stored(
            version_id=head.get("VersionId", "null"),
            etag=head["ETag"].strip('"'),
            size=head["ContentLength"],
            identity=obj.identity,
            checksum=head.get("ChecksumSHA256"),
        )

    def close(self) -> None:
        pass


class DirectorySourceReader:
    """A local folder (a laptop, the local stack, or an EFS mount in Lambda)."""

    def __init__(self, s3: Any, source: DirectorySource, multipart_threshold: int = transfer.UPLOAD_MULTIPART_THRESHOLD) -> None:
        self.s3 = s3
        self.source = source
        self.root = Path(source.path)
        self.multipart_threshold = multipart_threshold

    def _identity(self, path: Path, stat: os.stat_result) -> str:
        if self.source.hash_contents:
            return f"sha256:{transfer.file_sha256(path).hex()}"
        return f"file:{stat.st_size}:{stat.st_mtime_ns}"

    def list_objects(self) -> Iterator[SourceObject]:
        if not self.root.is_dir():
            raise SourceError(f"directory source '{self.source.name}': {self.root} is not a readable directory")
        keys: list[str] = []

        def unreadable(error: OSError) -> None:
            # A folder that can't be listed must fail the source: its files would otherwise look deleted.
            raise SourceError(
                f"directory source '{self.source.name}': cannot list {error.filename}: {error.strerror or error}"
            ) from error

        for folder, dirs, files in os.walk(self.root, onerror=unreadable, followlinks=False):
            dirs.sort()
            base = Path(folder).relative_to(self.root)
            for name in files:
                keys.append((base / name).as_posix() if str(base) != "." else name)
        # S3 lists in UTF-8 byte order, which is code point order: sort the same way.
        for key in sorted(keys):
            path = self.root / key
            try:
                stat = path.lstat()
                if not path.is_file() or path.is_symlink():
                    continue
                identity = self._identity(path, stat)
            except FileNotFoundError:
                continue  # deleted since the folder was listed
            except OSError as exc:
                # Listed, so not deleted: an identity that matches nothing makes the copy run (and fail,
                # naming the reason), and the snapshot keeps the version it had.
                logger.warning("unreadable file %s: %s", path, exc)
                yield SourceObject(key=key, size=0, identity=f"unreadable:{exc.strerror or exc}")
                continue
            yield SourceObject(key=key, size=stat.st_size, identity=identity)

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored:
        path = self.root / obj.key
        return upload_file(self.s3, path, bucket, key, obj.identity, self.multipart_threshold)

    def close(self) -> None:
        pass


def upload_file(
    s3: Any, path: Path, bucket: str, key: str, identity: str, multipart_threshold: int, item_count: int | None = None
) -> Stored:
    """Upload a local file with an end-to-end SHA-256: S3 rejects a single-part body that doesn't match."""
    digest = transfer.file_sha256(path)
    size = path.stat().st_size
    if size <= multipart_threshold:
        with open(path, "rb") as body:
            response = s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumSHA256=_sha256_b64(digest))
        return Stored(
            version_id=response.get("VersionId", "null"),
            etag=response["ETag"].strip('"'),
            size=size,
            identity=identity,
            checksum=response.get("ChecksumSHA256"),
            sha256=digest.hex(),
            item_count=item_count,
        )
    config = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=transfer.MULTIPART_CHUNKSIZE)
    s3.upload_file(str(path), bucket, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=config)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return Stored(
        version_id=head.get("VersionId", "null"),
        etag=head["ETag"].strip('"'),
        size=size,
        identity=identity,
        checksum=head.get("ChecksumSHA256"),
        sha256=digest.hex(),
        item_count=item_count,
    )


class DynamoDBSourceReader:
    """A table, exported by a parallel scan as gzip JSON Lines of DynamoDB JSON (one item a line).

    The export's identity is an order-independent hash of its items, so an unchanged table is recognised
    even though a parallel scan returns items in a different order each time.
    """

    def __init__(
        self, dynamodb: Any, s3: Any, source: DynamoDBSource, multipart_threshold: int = transfer.UPLOAD_MULTIPART_THRESHOLD
    ) -> None:
        self.dynamodb = dynamodb
        self.s3 = s3
        self.source = source
        self.multipart_threshold = multipart_threshold
        self._export: IO[bytes] | None = None
        self.item_count = 0
        # The table's key schema, kept with the snapshot so a restore can create an equivalent table.
        self.table_schema: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.source.table}.jsonl.gz"

    def _scan_segment(self, segment: int, total: int) -> tuple[IO[bytes], int, int]:
        out: IO[bytes] = tempfile.TemporaryFile()
        count = 0
        digest_sum = 0
        paginator = self.dynamodb.get_paginator("scan")
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            for page in paginator.paginate(
                TableName=self.source.table, Segment=segment, TotalSegments=total, ConsistentRead=True
            ):
                for item in page.get("Items", []):
                    line = json.dumps(
                        item, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_dynamodb_json
                    ).encode("utf-8")
                    digest_sum += int.from_bytes(hashlib.sha256(line).digest(), "big")
                    count += 1
                    gz.write(line + b"\n")
        out.seek(0)
        return out, count, digest_sum

    def list_objects(self) -> Iterator[SourceObject]:
        try:
            description = self.dynamodb.describe_table(TableName=self.source.table)["Table"]
            key_names = {item["AttributeName"] for item in description["KeySchema"]}
            self.table_schema = {
                "KeySchema": description["KeySchema"],
                "AttributeDefinitions": [
                    a for a in description["AttributeDefinitions"] if a["AttributeName"] in key_names
                ],
            }
            total = self.source.segments
            with ThreadPoolExecutor(max_workers=total) as pool:
                parts = list(pool.map(lambda s: self._scan_segment(s, total), range(total)))
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(
                f"dynamodb source '{self.source.name}' (table {self.source.table}): {describe_error(exc)}"
            ) from exc
        # Concatenated gzip members are one valid gzip stream.
        export: IO[bytes] = tempfile.NamedTemporaryFile(suffix=".jsonl.gz")
        combined = 0
        self.item_count = 0
        for part, count, digest_sum in parts:
            shutil.copyfileobj(part, export)
            part.close()
            self.item_count += count
            combined = (combined + digest_sum) % (1 << 256)
        export.flush()
        self._export = export
        size = export.tell()
        yield SourceObject(key=self.key, size=size, identity=f"items:{self.item_count}:{combined:064x}")

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored:
        assert self._export is not None, "list_objects() runs before store()"
        return upload_file(
            self.s3, Path(self._export.name), bucket, key, obj.identity, self.multipart_threshold, self.item_count
        )

    def close(self) -> None:
        if self._export is not None:
            self._export.close()
            self._export = None


def make_reader(source: Source, s3: Any, dynamodb: Any) -> SourceReader:
    if isinstance(source, S3Source):
        return S3SourceReader(s3, source)
    if isinstance(source, DynamoDBSource):
        return DynamoDBSourceReader(dynamodb, s3, source)
    if isinstance(source, DirectorySource):
        return DirectorySourceReader(s3, source)
    raise TypeError(f"unknown source {source!r}")

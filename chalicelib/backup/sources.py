"""Readers of S3 buckets and local folders, and the reader for any kind of source (`make_reader`; DynamoDB
tables: chalicelib/backup/tables.py). What a reader must do is declared in source_reader.py.

Every reader lists its objects sorted by key (the order S3 lists in), with an `identity` that changes
whenever the content may have changed; the backup engine copies an object only when its identity differs
from the previous snapshot's.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import transfer
from chalicelib.backup import listing, writes
from chalicelib.backup.source_reader import (  # noqa: F401 (the readers' types, also imported from here)
    Fetched,
    NotCopied,
    ReaderRun,
    ReaderStats,
    ReaderSuspended,
    SourceObject,
    SourceReader,
    Stored,
)
from chalicelib.backup.tables import DynamoDBSourceReader
from chalicelib.errors import SourceError, describe_error, error_code
from chalicelib.plans import DirectorySource, DynamoDBSource, S3Source, Source

logger = logging.getLogger(__name__)


# Where a source object is archived, S3 refuses to read or copy it until it is thawed.
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
_ARCHIVED_ERRORS = ("ObjectNotInActiveTierError", "InvalidObjectState")
# A thaw of an archived source object lasts this long: enough for the next daily runs to copy it.
SOURCE_THAW_DAYS = 3


def _sse_c(exc: ClientError) -> bool:
    """S3 refuses to read an SSE-C object without its key (400 InvalidRequest naming server-side encryption);
    the system never holds customers' keys, so such objects cannot be backed up."""
    error = exc.response.get("Error", {})
    return error.get("Code") == "InvalidRequest" and "Server Side Encryption" in str(error.get("Message", ""))


class S3SourceReader:
    """A bucket and prefix, copied server-side: no object's bytes pass through the function."""

    def __init__(
        self, s3: Any, source: S3Source, multipart_threshold: int = transfer.COPY_OBJECT_LIMIT,
        page_size: int = listing.PAGE_SIZE, max_ranges: int = listing.MAX_RANGES,
    ) -> None:
        self.s3 = s3
        self.source = source
        self.multipart_threshold = multipart_threshold
        # Keys per listing page, and how many ranges one listing may be cut into (chalicelib/backup/listing.py).
        self.page_size = page_size
        self.max_ranges = max_ranges
        self._listing: listing.SequentialListing | listing.RangedListing | None = None

    def _where(self) -> str:
        return f"s3 source '{self.source.name}' (s3://{self.source.bucket}/{self.source.prefix})"

    def attach(self, run: ReaderRun) -> None:
        """A bucket keeps no progress of its own: the plan run's checkpoint says where its listing stopped."""

    def stats(self) -> ReaderStats:
        """The last listing's LIST requests, those that ran one after another, and its key ranges."""
        if self._listing is None:
            return ReaderStats()
        return ReaderStats(
            listing_pages=self._listing.pages, listing_depth=self._listing.depth, listing_ranges=self._listing.ranges
        )

    def list_objects(
        self, start_after: str | None = None, stop_key: str | None = None,
        previous_pages: listing.PageMarks | None = None,
    ) -> Iterator[SourceObject]:
        """Sorted by key; from just after `start_after` when a resumed backup carries on, up to `stop_key` for
        a range of a split plan. With the previous snapshot's page marks, listed in ranges at once."""
        prefix = self.source.prefix
        split = listing.split_keys(previous_pages, start_after, stop_key, self.max_ranges, self.page_size)
        if split:
            self._listing = listing.RangedListing(
                self.s3, self.source.bucket, prefix, split, start_after, stop_key, self.page_size
            )
        else:
            self._listing = listing.SequentialListing(
                self.s3, self.source.bucket, prefix, start_after, stop_key, self.page_size
            )
        try:
            for item in self._listing:
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
        finally:
            self._listing.close()

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored:
        source_key = self.source.prefix + obj.key
        self._readable(obj)
        etag = obj.identity.split(":")[1]
        with self._refusals(source_key, obj):
            written = writes.copy(
                self.s3, self.source.bucket, source_key, etag, obj.size, bucket, key, self.multipart_threshold
            )
        return Stored(written.version_id, written.etag, written.size, obj.identity, written.checksum)

    # A bucket's small objects are read (GET, pinned to the listed ETag) and packed.
    packable = True

    def fetch(self, obj: SourceObject) -> Fetched:
        source_key = self.source.prefix + obj.key
        self._readable(obj)
        etag = obj.identity.split(":")[1]
        with self._refusals(source_key, obj):
            # Pinned like a copy: an object changed since the listing fails with 412, never packs other bytes.
            response = self.s3.get_object(Bucket=self.source.bucket, Key=source_key, IfMatch=f'"{etag}"')
            data = response["Body"].read()
        if len(data) != obj.size:
            raise SourceError(f"{self._where()}: {obj.key} was listed with {obj.size} bytes and read with {len(data)}")
        return Fetched(data, obj.identity)

    def _readable(self, obj: SourceObject) -> None:
        if obj.storage_class in ARCHIVE_CLASSES and self.source.archived == "skip":
            # Known from the listing: no request is spent on a copy S3 would refuse.
            raise NotCopied("archived_at_source", f"in {obj.storage_class} at the source (archived: skip)")

    @contextmanager
    def _refusals(self, source_key: str, obj: SourceObject) -> Iterator[None]:
        """S3's refusals to read an object that the run leaves out on purpose, as `NotCopied`."""
        try:
            yield
        except ClientError as exc:
            if error_code(exc) in _ARCHIVED_ERRORS:
                raise self._archived(source_key, obj) from exc
            if _sse_c(exc):
                raise NotCopied("sse_c", "encrypted with a customer-provided key (SSE-C): S3 cannot copy it") from exc
            raise

    def _archived(self, source_key: str, obj: SourceObject) -> NotCopied:
        """The object is archived (Glacier classes, or Intelligent-Tiering's archive tiers, which the listing
        does not show). With `archived: thaw` a thaw is requested, and a later run copies it once readable."""
        where = obj.storage_class or "an archive tier"
        if self.source.archived != "thaw":
            return NotCopied("archived_at_source", f"in {where} at the source (archived: skip)")
        request: dict[str, Any] = {"GlacierJobParameters": {"Tier": "Bulk"}}
        if obj.storage_class in ARCHIVE_CLASSES:
            # Intelligent-Tiering's archive tiers take no Days: the object moves back to its frequent tier.
            request["Days"] = SOURCE_THAW_DAYS
        try:
            self.s3.restore_object(Bucket=self.source.bucket, Key=source_key, RestoreRequest=request)
        except ClientError as exc:
            if error_code(exc) != "RestoreAlreadyInProgress":
                raise
        return NotCopied("thawing_at_source", f"in {where} at the source: thaw requested, a later backup copies it")

    def close(self) -> None:
        if self._listing is not None:
            # A run that stops midway (a checkpoint, a failure) stops the listers too.
            self._listing.close()


class DirectorySourceReader:
    """A local folder (a laptop, the local stack, or an EFS mount in Lambda)."""

    def __init__(self, s3: Any, source: DirectorySource, multipart_threshold: int = transfer.UPLOAD_MULTIPART_THRESHOLD) -> None:
        self.s3 = s3
        self.source = source
        self.root = Path(source.path)
        self.multipart_threshold = multipart_threshold
        # A folder is listed in one pass.
        self.page_size: int | None = None

    def attach(self, run: ReaderRun) -> None:
        """A folder keeps no progress of its own: the plan run's checkpoint says where its listing stopped."""

    def stats(self) -> ReaderStats:
        return ReaderStats()

    def _identity(self, path: Path, stat: os.stat_result) -> str:
        if self.source.hash_contents:
            return f"sha256:{transfer.file_sha256(path).hex()}"
        return f"file:{stat.st_size}:{stat.st_mtime_ns}"

    def list_objects(
        self, start_after: str | None = None, stop_key: str | None = None,
        previous_pages: listing.PageMarks | None = None,
    ) -> Iterator[SourceObject]:
        """Every file, sorted by key (the engine drops those outside the bounds: a folder is walked whole)."""
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

    # A folder's small files are read and packed.
    packable = True

    def fetch(self, obj: SourceObject) -> Fetched:
        data = writes.read_whole(self.root / obj.key)
        identity = obj.identity
        if self.source.hash_contents:
            # As for a stored file: the identity is the hash of what was read.
            identity = f"sha256:{hashlib.sha256(data).hexdigest()}"
        return Fetched(data, identity)

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored:
        written = writes.upload(self.s3, self.root / obj.key, bucket, key, self.multipart_threshold)
        identity = obj.identity
        if self.source.hash_contents:
            # The identity is the hash of what was stored: a file that changed while it was read is then
            # recognised as changed (or unchanged) next time by its content, not by the listing's reading.
            identity = f"sha256:{written.sha256}"
        return Stored(written.version_id, written.etag, written.size, identity, written.checksum, written.sha256)

    def close(self) -> None:
        pass


def readers_on(clients: Any) -> Callable[[Source], SourceReader]:
    """The readers a backup reads its sources with, on `clients` (an `aws.Clients`)."""
    return lambda source: make_reader(source, clients.s3, clients.dynamodb)


def make_reader(source: Source, s3: Any, dynamodb: Any) -> SourceReader:
    if isinstance(source, S3Source):
        return S3SourceReader(s3, source)
    if isinstance(source, DynamoDBSource):
        return DynamoDBSourceReader(dynamodb, s3, source)
    if isinstance(source, DirectorySource):
        return DirectorySourceReader(s3, source)
    raise TypeError(f"unknown source {source!r}")

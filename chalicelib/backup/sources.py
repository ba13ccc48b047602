"""Readers for the three kinds of source: what a source holds, and how one object gets into a backup bucket.
(DynamoDB tables: chalicelib/backup/tables.py.)

Every reader lists its objects sorted by key (the order S3 lists in), with an `identity` that changes
whenever the content may have changed; the backup engine copies an object only when its identity differs
from the previous snapshot's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import transfer
from chalicelib.backup import listing, writes
from chalicelib.errors import SourceError, describe_error, error_code
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


# Where a source object is archived, S3 refuses to read or copy it until it is thawed.
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
_ARCHIVED_ERRORS = ("ObjectNotInActiveTierError", "InvalidObjectState")
# A thaw of an archived source object lasts this long: enough for the next daily runs to copy it.
SOURCE_THAW_DAYS = 3


class NotCopied(Exception):
    """An object this run deliberately leaves out (a warning, not a failure): `kind` is one of
    `archived_at_source`, `thawing_at_source` or `sse_c`, and `reason` says why in words."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class ReaderSuspended(Exception):
    """A reader stopped at a checkpoint of its own (a table scan, or the wait for an export, outlasting the
    invocation): the plan run stops before this source, and the next invocation carries it on."""


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

    @property
    def listing_pages(self) -> int:
        """LIST requests of the last listing."""
        return self._listing.pages if self._listing else 0

    @property
    def listing_depth(self) -> int:
        """LIST requests of the last listing that had to run one after another."""
        return self._listing.depth if self._listing else 0

    @property
    def listing_ranges(self) -> int:
        """Key ranges the last listing was cut into (1: one listing, page after page)."""
        return self._listing.ranges if self._listing else 0

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
        if obj.storage_class in ARCHIVE_CLASSES and self.source.archived == "skip":
            # Known from the listing: no request is spent on a copy S3 would refuse.
            raise NotCopied("archived_at_source", f"in {obj.storage_class} at the source (archived: skip)")
        etag = obj.identity.split(":")[1]
        try:
            written = writes.copy(
                self.s3, self.source.bucket, source_key, etag, obj.size, bucket, key, self.multipart_threshold
            )
        except ClientError as exc:
            if error_code(exc) in _ARCHIVED_ERRORS:
                raise self._archived(source_key, obj) from exc
            if _sse_c(exc):
                raise NotCopied("sse_c", "encrypted with a customer-provided key (SSE-C): S3 cannot copy it") from exc
            raise
        return Stored(written.version_id, written.etag, written.size, obj.identity, written.checksum)

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
        written = writes.upload(self.s3, self.root / obj.key, bucket, key, self.multipart_threshold)
        identity = obj.identity
        if self.source.hash_contents:
            # The identity is the hash of what was stored: a file that changed while it was read is then
            # recognised as changed (or unchanged) next time by its content, not by the listing's reading.
            identity = f"sha256:{written.sha256}"
        return Stored(written.version_id, written.etag, written.size, identity, written.checksum, written.sha256)

    def close(self) -> None:
        pass


def make_reader(source: Source, s3: Any, dynamodb: Any) -> SourceReader:
    if isinstance(source, S3Source):
        return S3SourceReader(s3, source)
    if isinstance(source, DynamoDBSource):
        # Tables read with the types above (imported here: tables.py builds on this module).
        from chalicelib.backup.tables import DynamoDBSourceReader

        return DynamoDBSourceReader(dynamodb, s3, source)
    if isinstance(source, DirectorySource):
        return DirectorySourceReader(s3, source)
    raise TypeError(f"unknown source {source!r}")

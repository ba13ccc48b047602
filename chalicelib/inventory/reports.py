"""Delivered inventory reports: finding the newest, checking it, and reading its rows.

Where S3 writes a report (S3 User Guide, "Locating your inventory list"):

    <prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.json   what the report is, its files
    <prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.checksum the MD5 (hex) of manifest.json
    <prefix>/<source bucket>/<config id>/hive/dt=<YYYY-MM-DD-HH-MM>/symlink.txt
    <prefix>/<source bucket>/<config id>/data/<uuid>.csv.gz                   the rows, gzip CSV

`manifest.json` names sourceBucket, destinationBucket (an ARN), version, creationTimestamp (milliseconds
since the epoch, as a string: when S3 began scanning the bucket), fileFormat, fileSchema (the CSV columns,
comma-separated, in file order) and files (key, size, MD5checksum). In CSV the key is URL-encoded (a space
as '+') and must be decoded.

Nothing in a report is trusted unchecked: manifest.json against manifest.checksum, each data file against
its MD5 and size, the format and the columns the product needs. Each fault is a `ReportError` naming the
report (its manifest key) and what was wrong.

A report is a point in time and arrives up to 48 hours after it: versions written after `created` are not in
it, and a caller decides from `age` whether it is too old to act on.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import heapq
import io
import json
import pickle
import re
import tempfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Any, NamedTuple
from urllib.parse import unquote_plus

from chalicelib import s3docs
from chalicelib.errors import BackupError
from chalicelib.times import parse_iso

# The columns every use of a report needs: which version, whether it is a delete marker, and what S3 holds
# (size, ETag, storage class), and when it was written (a prune's grace period).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    "Bucket Key VersionId IsLatest IsDeleteMarker Size LastModifiedDate ETag StorageClass".split()
)
_REPORT_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
# Rows held in memory at once by `sorted_rows` before a sorted run is written to a temporary file.
RUN_ROWS = 200_000
# Rows pickled together in a run's file.
_RUN_CHUNK = 1_000
_CHUNK = 1 << 20


class ReportError(BackupError):
    """A delivered report that cannot be used; `report` is its manifest key."""

    def __init__(self, report: str, problem: str) -> None:
        super().__init__(f"inventory report {report}: {problem}")
        self.report = report
        self.problem = problem


class ManifestMissing(ReportError):
    """manifest.json is not there."""


class ChecksumMissing(ReportError):
    """manifest.checksum is not there (S3 writes it last: the delivery may be unfinished)."""


class ChecksumMismatch(ReportError):
    """manifest.json's MD5 is not the one manifest.checksum gives."""


class MalformedManifest(ReportError):
    """manifest.json is not JSON, or lacks a field, or a field has the wrong type."""


class UnsupportedFormat(ReportError):
    """fileFormat is not CSV (ORC and Parquet are not read here)."""


class MissingColumns(ReportError):
    """fileSchema lacks columns the product needs (`REQUIRED_COLUMNS`)."""


class DataFileCorrupt(ReportError):
    """A data file is missing, differs from its MD5 or size, or is not the gzip CSV its schema says."""


@dataclass(frozen=True)
class DataFile:
    key: str
    size: int
    md5: str


@dataclass(frozen=True)
class Report:
    """One delivered report, its manifest checked."""

    bucket: str  # the destination bucket, where the files are
    manifest_key: str
    source_bucket: str
    destination_bucket_arn: str
    version: str
    created: datetime  # creationTimestamp: when S3 began scanning the source bucket
    schema: tuple[str, ...]
    files: tuple[DataFile, ...]

    def age(self, now: datetime) -> timedelta:
        """How long before `now` the report's scan began: a caller compares it with what it will accept."""
        return now - self.created


class Row(NamedTuple):
    """One version or delete marker of the source bucket, as the report lists it. Fields the report's
    configuration does not include are None.

    A named tuple, not a dataclass: a report of ten million objects has over forty million rows, each read,
    and often sorted through a temporary file, by every pass; a tuple is built and pickled several times
    faster (scripts/bench_rows.py measures it)."""

    bucket: str
    key: str  # decoded
    version_id: str  # '' for an object written before versioning was enabled
    is_latest: bool
    is_delete_marker: bool
    size: int | None
    last_modified: datetime | None
    etag: str | None
    storage_class: str | None
    is_multipart_uploaded: bool | None = None
    checksum_algorithm: str | None = None
    replication_status: str | None = None
    encryption_status: str | None = None
    object_lock_mode: str | None = None
    object_lock_retain_until: datetime | None = None
    object_lock_legal_hold: str | None = None

    @property
    def sort_key(self) -> tuple[str, str]:
        """(key, version id): `sorted_rows`'s order. Python compares str by code point, which is the order
        of their UTF-8 bytes, the order S3 lists keys in."""
        return (self.key, self.version_id)


def report_prefix(destination_prefix: str, source_bucket: str, configuration_id: str) -> str:
    """`<prefix>/<source bucket>/<config id>/`, under which every report of that configuration lies."""
    head = f"{destination_prefix.strip('/')}/" if destination_prefix.strip("/") else ""
    return f"{head}{source_bucket}/{configuration_id}/"


def newest_report(s3: Any, bucket: str, destination_prefix: str, source_bucket: str, configuration_id: str) -> Report | None:
    """The newest report delivered for this configuration, checked (`load_report`); None when none has been
    delivered. The newest folder is the one read: an unusable newest report raises rather than falling back
    silently to an older one."""
    base = report_prefix(destination_prefix, source_bucket, configuration_id)
    folders: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(base) :].rstrip("/")
            if _REPORT_FOLDER.match(name):
                folders.append(name)
    if not folders:
        return None
    report = load_report(s3, bucket, f"{base}{max(folders)}/manifest.json")
    if report.source_bucket != source_bucket:
        raise MalformedManifest(report.manifest_key, f"sourceBucket is {report.source_bucket!r}, not {source_bucket!r}")
    return report


def load_report(s3: Any, bucket: str, manifest_key: str) -> Report:
    """The report whose manifest.json is at `manifest_key`, checked against manifest.checksum and parsed."""
    body = s3docs.get_bytes(s3, bucket, manifest_key)
    if body is None:
        raise ManifestMissing(manifest_key, "manifest.json is not there")
    checksum = s3docs.get_bytes(s3, bucket, manifest_key.rsplit("/", 1)[0] + "/manifest.checksum")
    if checksum is None:
        raise ChecksumMissing(manifest_key, "manifest.checksum is not there")
    expected = checksum.decode("ascii", "replace").strip().lower()
    actual = hashlib.md5(body, usedforsecurity=False).hexdigest()
    if expected != actual:
        raise ChecksumMismatch(manifest_key, f"manifest.json's MD5 is {actual}, manifest.checksum says {expected}")
    return _parse_manifest(bucket, manifest_key, body)


def _parse_manifest(bucket: str, manifest_key: str, body: bytes) -> Report:
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        raise MalformedManifest(manifest_key, f"manifest.json is not JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise MalformedManifest(manifest_key, "manifest.json is not a JSON object")
    for name in ("sourceBucket", "destinationBucket", "version", "creationTimestamp", "fileFormat", "fileSchema", "files"):
        if name not in manifest:
            raise MalformedManifest(manifest_key, f"manifest.json has no {name}")
    if manifest["fileFormat"] != "CSV":
        raise UnsupportedFormat(manifest_key, f"fileFormat is {manifest['fileFormat']!r}; only CSV is read")
    schema = tuple(column.strip() for column in str(manifest["fileSchema"]).split(","))
    lacking = [column for column in REQUIRED_COLUMNS if column not in schema]
    if lacking:
        raise MissingColumns(manifest_key, f"fileSchema lacks {', '.join(lacking)}")
    try:
        created = datetime.fromtimestamp(int(manifest["creationTimestamp"]) / 1000, tz=timezone.utc)
        files = tuple(DataFile(str(f["key"]), int(f["size"]), str(f["MD5checksum"]).lower()) for f in manifest["files"])
    except (TypeError, ValueError, KeyError) as exc:
        raise MalformedManifest(manifest_key, f"creationTimestamp or files is malformed ({exc!r})") from exc
    return Report(
        bucket=bucket,
        manifest_key=manifest_key,
        source_bucket=str(manifest["sourceBucket"]),
        destination_bucket_arn=str(manifest["destinationBucket"]),
        version=str(manifest["version"]),
        created=created,
        schema=schema,
        files=files,
    )


def rows(s3: Any, report: Report) -> Iterator[Row]:
    """Every row of the report, data file by data file, in the order S3 wrote them (no order is promised).
    Each data file is copied to a temporary file and checked against its MD5 and size before its first row is
    given, so a caller never acts on a row of a corrupt file; memory stays at one chunk and one row."""
    for data_file in report.files:
        with _verified_copy(s3, report, data_file) as copy:
            yield from _read_rows(report, data_file, copy)


def sorted_rows(
    s3: Any,
    report: Report,
    run_rows: int = RUN_ROWS,
    keep: Callable[[Row], bool] | None = None,
    order: Callable[[Row], Any] | None = None,
) -> Generator[Row, None, None]:
    """Every row of the report (or those `keep` accepts, left out before sorting) in (key, version id) order
    (`Row.sort_key`), or in the order `order` gives (a total order ending in the version id), for a merge
    against sorted snapshot manifests.

    An external merge sort: rows are read `run_rows` at a time, each batch sorted in memory and written to a
    temporary file, then the sorted runs are merged with heapq. Memory holds one batch while sorting and one
    row per run while merging, whatever the report's size or how S3 spread rows over its files; temporary
    space is the rows once (Lambda's /tmp holds up to 10 GB)."""
    if run_rows < 1:
        raise ValueError("run_rows must be at least 1")
    by = order or _by_key
    runs: list[IO[bytes]] = []
    try:
        batch: list[Row] = []
        for row in rows(s3, report):
            if keep is not None and not keep(row):
                continue
            batch.append(row)
            if len(batch) >= run_rows:
                runs.append(_write_run(batch, by))
                batch = []
        if batch:
            runs.append(_write_run(batch, by))
        yield from heapq.merge(*(read_run(run) for run in runs), key=by)
    finally:
        for run in runs:
            run.close()


def _by_key(row: Row) -> tuple[str, str]:
    return row.sort_key


def _write_run(batch: list[Row], by: Callable[[Row], Any]) -> IO[bytes]:
    batch.sort(key=by)
    run = tempfile.TemporaryFile()
    _RunWriter(run).extend(batch)
    run.seek(0)
    return run


# Row's time fields (LastModifiedDate, ObjectLockRetainUntilDate), held in a run as microseconds since the
# epoch: a datetime is pickled through its reduce method, which was most of a run's writing time.
_TIME_FIELDS = (Row._fields.index("last_modified"), Row._fields.index("object_lock_retain_until"))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class _RunWriter:
    """Rows written to a temporary file as pickled lists of plain tuples, `_RUN_CHUNK` at a time (one pickle
    call per chunk instead of one per row, no class reference per row, times as integers), each chunk
    compressed (zlib level 1: a third of the bytes in /tmp, for little time), after its length."""

    def __init__(self, run: IO[bytes]) -> None:
        self.run = run
        self.chunk: list[tuple[Any, ...]] = []

    def append(self, row: Row) -> None:
        values: list[Any] = list(row)
        for index in _TIME_FIELDS:
            moment = values[index]
            if moment is not None:
                values[index] = (moment - _EPOCH) // _MICROSECOND
        self.chunk.append(tuple(values))
        if len(self.chunk) >= _RUN_CHUNK:
            self.flush()

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.append(row)
        self.flush()

    def flush(self) -> None:
        if self.chunk:
            packed = zlib.compress(pickle.dumps(self.chunk, protocol=pickle.HIGHEST_PROTOCOL), 1)
            self.run.write(len(packed).to_bytes(4, "big") + packed)
            self.chunk = []


def read_run(run: IO[bytes]) -> Iterator[Row]:
    """The rows `_RunWriter` wrote into a temporary file of this process (a sorted run, or a group)."""
    make = Row._make
    first, second = _TIME_FIELDS
    while True:
        size = run.read(4)
        if len(size) < 4:
            return
        # The runs are this process's own temporary files, never anything read from S3.
        chunk = pickle.loads(zlib.decompress(run.read(int.from_bytes(size, "big"))))  # noqa: S301
        for values in chunk:
            if values[first] is not None or values[second] is not None:
                values = list(values)
                for index in _TIME_FIELDS:
                    if values[index] is not None:
                        values[index] = _EPOCH + values[index] * _MICROSECOND
            yield make(values)


@contextmanager
def _verified_copy(s3: Any, report: Report, data_file: DataFile) -> Iterator[IO[bytes]]:
    """The data file copied into a temporary file, its MD5 and size checked; the copy is gone on exit."""
    response = s3docs.get(s3, report.bucket, data_file.key)
    if response is None:
        raise DataFileCorrupt(report.manifest_key, f"data file {data_file.key} is not there")
    with tempfile.TemporaryFile() as copy:
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        for chunk in iter(lambda: response["Body"].read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            copy.write(chunk)
        if digest.hexdigest() != data_file.md5 or size != data_file.size:
            raise DataFileCorrupt(
                report.manifest_key,
                f"data file {data_file.key} has MD5 {digest.hexdigest()} and {size} bytes, "
                f"the manifest says {data_file.md5} and {data_file.size}",
            )
        copy.seek(0)
        yield copy


def _read_rows(report: Report, data_file: DataFile, copy: IO[bytes]) -> Iterator[Row]:
    make = _row_maker(report.schema)
    try:
        text = io.TextIOWrapper(gzip.GzipFile(fileobj=copy, mode="rb"), encoding="utf-8", newline="")
        for number, values in enumerate(csv.reader(text), start=1):
            if len(values) != len(report.schema):
                raise DataFileCorrupt(
                    report.manifest_key,
                    f"data file {data_file.key} row {number} has {len(values)} values, fileSchema has {len(report.schema)}",
                )
            try:
                yield make(values)
            except ValueError as exc:
                raise DataFileCorrupt(report.manifest_key, f"data file {data_file.key} row {number}: {exc}") from exc
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileCorrupt(report.manifest_key, f"data file {data_file.key} is not gzip CSV ({exc})") from exc


# Row's fields after the first three, the column each comes from, and how its text is read.
_OPTIONAL_COLUMNS: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("IsLatest", lambda text: _flag(text)),
    ("IsDeleteMarker", lambda text: _flag(text)),
    ("Size", int),
    ("LastModifiedDate", lambda text: _time(text)),
    ("ETag", str),
    ("StorageClass", str),
    ("IsMultipartUploaded", lambda text: _flag(text)),
    ("ChecksumAlgorithm", str),
    ("ReplicationStatus", str),
    ("EncryptionStatus", str),
    ("ObjectLockMode", str),
    ("ObjectLockRetainUntilDate", lambda text: _time(text)),
    ("ObjectLockLegalHoldStatus", str),
)


def _row_maker(schema: tuple[str, ...]) -> Callable[[list[str]], Row]:
    """A function from one CSV record of a report with this schema to its Row, the columns found once per
    data file rather than once per row (a report of ten million objects has over forty million rows).
    ValueError names a value that is not what its column holds."""
    columns = {name: index for index, name in enumerate(schema)}
    bucket, key, version = columns["Bucket"], columns["Key"], columns["VersionId"]
    flags = ("IsLatest", "IsDeleteMarker")
    # Per Row field after the first three, in Row's order: its column (None: not in the report), how its text
    # is read, and whether it is a flag that is False rather than None when empty or absent.
    make = Row._make
    getters = [_getter(columns.get(name), read, name in flags) for name, read in _OPTIONAL_COLUMNS]

    def row(values: list[str]) -> Row:
        return make((values[bucket], _key(values[key]), values[version], *[get(values) for get in getters]))

    return row


def _getter(index: int | None, read: Callable[[str], Any], flag: bool) -> Callable[[list[str]], Any]:
    """How one Row field is taken from a record: a flag is False rather than None when empty or absent; an
    empty value is None; a text column is the text itself (no call to read it)."""
    if index is None:
        return (lambda values: False) if flag else (lambda values: None)
    if flag:
        return lambda values: values[index] != "" and read(values[index]) is True
    if read is str:
        return lambda values: values[index] or None
    return lambda values: None if values[index] == "" else read(values[index])


def _key(text: str) -> str:
    """A report's key, URL-encoded (a space as '+'), decoded; most keys need nothing done."""
    if "%" not in text and "+" not in text:
        return text
    return unquote_plus(text, encoding="utf-8", errors="strict")


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    if text == "true" or text == "false":
        return text == "true"
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return lowered == "true"


def _time(text: str | None) -> datetime | None:
    return None if text is None else parse_iso(text)

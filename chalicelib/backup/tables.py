"""DynamoDB sources: a table becomes one gzip JSON Lines object, `data/<source>/<table>.jsonl.gz`, in one of
two forms.

- **Export** (the table has point-in-time recovery on): DynamoDB's own `ExportTableToPointInTime` writes the
  table into the backup bucket, consuming no read capacity, at one point in time, whatever the size; the
  export's data files are then joined server-side into the table's object (table_export.py). Lines are
  DynamoDB's export lines, `{"Item": {...}}`. A new export is taken at every backup.
- **Scan** (no point-in-time recovery): a parallel scan of `segments` segments, one item a line in DynamoDB JSON
  (`{"pk": {"S": "order-1"}}`). Its identity is an order-independent hash of the items, so an unchanged table
  is not copied again. The scan consumes read capacity, and is not a point-in-time copy: each item is as it
  was when its page was read.

A scan that outlasts its invocation stops between pages: each segment's part so far is uploaded to the plan
run's checkpoint prefix (`meta/checkpoints/<plan>/<backup id>/table-<source>/`), with every segment's
`LastEvaluatedKey`, count and hash in `scan.json`, and the next invocation carries on from there; gzip members
concatenate, so the parts joined are the export. Waiting for an export stops the same way, keeping the
export's ARN (`export.json`) so that the next invocation waits for the same export.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import transfer
from chalicelib.backup import table_export, writes
from chalicelib.backup.listing import PageMarks
from chalicelib.backup.source_reader import Fetched, ReaderRun, ReaderStats, ReaderSuspended, SourceObject, Stored
from chalicelib.catalog.manifests import file_sha256
from chalicelib.errors import SourceError, Tampered, describe_error
from chalicelib.plans import DynamoDBSource
from chalicelib.s3docs import get_json

logger = logging.getLogger(__name__)

# Items per scan page: None lets DynamoDB fill its 1 MB pages (the invocation's time is looked at between pages).
SCAN_PAGE_ITEMS: int | None = None


@dataclass
class _Segment:
    """One scan segment's progress across invocations."""

    done: bool = False
    last_key: dict[str, Any] | None = None
    parts: list[str] = field(default_factory=list)
    # Each part's SHA-256, as saved: a part is read back only with those bytes.
    part_sha256: list[str] = field(default_factory=list)
    count: int = 0
    digest: int = 0


def _dynamodb_json(value: Any) -> Any:
    """boto3 hands B and BS values over as bytes; DynamoDB JSON (as in a DynamoDB export) writes them base64."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} as DynamoDB JSON")


class DynamoDBSourceReader:
    """A table, as an export (point-in-time recovery on) or a parallel scan; see the module's docstring."""

    def __init__(
        self, dynamodb: Any, s3: Any, source: DynamoDBSource, multipart_threshold: int = transfer.UPLOAD_MULTIPART_THRESHOLD
    ) -> None:
        self.dynamodb = dynamodb
        self.s3 = s3
        self.source = source
        self.multipart_threshold = multipart_threshold
        # A table is scanned (or exported) whole.
        self.page_size: int | None = None
        self._export: IO[bytes] | None = None
        self._run: ReaderRun | None = None
        self._table_arn = ""
        self._identity = ""
        self.exported = False
        self.item_count = 0
        # The table's key schema, kept with the snapshot so a restore can create an equivalent table.
        self.table_schema: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.source.table}.jsonl.gz"

    def _where(self) -> str:
        return f"dynamodb source '{self.source.name}' (table {self.source.table})"

    def attach(self, run: ReaderRun) -> None:
        """Work for a plan run: checkpoints past the invocation's end, and exports where they are possible."""
        self._run = run

    def stats(self) -> ReaderStats:
        return ReaderStats(item_count=self.item_count, table_schema=self.table_schema)

    def list_objects(
        self, start_after: str | None = None, stop_key: str | None = None, previous_pages: PageMarks | None = None
    ) -> Iterator[SourceObject]:
        """The table as one object (the bounds are the engine's to apply: a table is read whole)."""
        try:
            description = self.dynamodb.describe_table(TableName=self.source.table)["Table"]
            key_names = {item["AttributeName"] for item in description["KeySchema"]}
            self.table_schema = {
                "KeySchema": description["KeySchema"],
                "AttributeDefinitions": [
                    a for a in description["AttributeDefinitions"] if a["AttributeName"] in key_names
                ],
            }
            self._table_arn = description["TableArn"]
            if self._run is not None and self._point_in_time_recovery():
                # Exported when stored, so a dry run never starts one: a new export each backup.
                self.exported = True
                yield SourceObject(key=self.key, size=int(description.get("TableSizeBytes", 0)), identity="export:pending")
                return
            parts = self._scan()
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"{self._where()}: {describe_error(exc)}") from exc
        # Concatenated gzip members are one valid gzip stream.
        export: IO[bytes] = tempfile.NamedTemporaryFile(suffix=".jsonl.gz")
        for part in parts:
            shutil.copyfileobj(part, export)
            part.close()
        export.flush()
        self._export = export
        yield SourceObject(key=self.key, size=export.tell(), identity=self._identity)

    def _point_in_time_recovery(self) -> bool:
        answer = self.dynamodb.describe_continuous_backups(TableName=self.source.table)
        description = answer["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        return bool(description.get("PointInTimeRecoveryStatus") == "ENABLED")

    # Scan ------------------------------------------------------------------------------------------------

    def _scan(self) -> list[IO[bytes]]:
        """Every segment scanned to its end (in this invocation or earlier ones): the export's gzip parts."""
        state = self._load_scan_state()
        segments = state or [_Segment() for _ in range(self.source.segments)]
        total = len(segments)
        counted = [segment.count for segment in segments]
        with ThreadPoolExecutor(max_workers=total) as pool:
            local = list(pool.map(lambda index: self._scan_segment(index, total, segments[index]), range(total)))
        if not all(segment.done for segment in segments):
            self._save_scan_state(segments, local, counted)
            raise ReaderSuspended(f"{self._where()}: scan stopped at a checkpoint")
        self.item_count = sum(segment.count for segment in segments)
        self._identity = f"items:{self.item_count}:{sum(s.digest for s in segments) % (1 << 256):064x}"
        parts: list[IO[bytes]] = []
        if self._run is not None:
            for segment in segments:
                for position, key in enumerate(segment.parts):
                    part: IO[bytes] = tempfile.TemporaryFile()
                    parts.append(part)
                    shutil.copyfileobj(self.s3.get_object(Bucket=self._run.bucket, Key=key)["Body"], part, 1 << 20)
                    saved = segment.part_sha256[position] if position < len(segment.part_sha256) else None
                    part.seek(0)
                    if self._run.run_key is not None and file_sha256(part) != saved:
                        for opened in parts + local:
                            opened.close()
                        raise Tampered(f"s3://{self._run.bucket}/{key}, a part of the scan of {self._where()}, was changed after it was saved")
        return parts + local

    def _scan_segment(self, index: int, total: int, segment: _Segment) -> IO[bytes]:
        """Scan one segment from where it stopped, page after page, until its end or the invocation's: its new
        items, as a gzip member."""
        out: IO[bytes] = tempfile.TemporaryFile()
        running_out = self._run.running_out if self._run else None
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            while not segment.done:
                request: dict[str, Any] = {
                    "TableName": self.source.table, "Segment": index, "TotalSegments": total, "ConsistentRead": True,
                }
                if segment.last_key is not None:
                    request["ExclusiveStartKey"] = segment.last_key
                if SCAN_PAGE_ITEMS:
                    request["Limit"] = SCAN_PAGE_ITEMS
                page = self.dynamodb.scan(**request)
                for item in page.get("Items", []):
                    line = json.dumps(
                        item, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_dynamodb_json
                    ).encode("utf-8")
                    segment.digest += int.from_bytes(hashlib.sha256(line).digest(), "big")
                    segment.count += 1
                    gz.write(line + b"\n")
                segment.last_key = page.get("LastEvaluatedKey")
                segment.done = segment.last_key is None
                if running_out is not None and running_out():
                    break
        out.seek(0)
        return out

    def _state_key(self, name: str) -> str:
        assert self._run is not None
        return f"{self._run.prefix}{name}"

    def _load_scan_state(self) -> list[_Segment] | None:
        if self._run is None:
            return None
        key = self._state_key("scan.json")
        data = get_json(self.s3, self._run.bucket, key)
        if data is None:
            return None
        data = self._run.opened(key, data)
        if data is None or data.get("table") != self.source.table:
            return None
        return [_Segment(**{**segment, "digest": int(segment["digest"], 16)}) for segment in data["segments"]]

    def _save_scan_state(self, segments: list[_Segment], local: list[IO[bytes]], counted: list[int]) -> None:
        """Each segment's new part first (under a name of this invocation's), then the state naming them."""
        if self._run is None:
            raise SourceError(f"{self._where()}: the scan cannot stop midway without a plan run to keep its progress")
        token = secrets.token_hex(4)
        for index, (segment, part) in enumerate(zip(segments, local, strict=True)):
            if segment.count == counted[index]:
                part.close()  # nothing new in this segment (done before this invocation)
                continue
            key = self._state_key(f"scan-{index:02d}-{len(segment.parts):05d}-{token}.jsonl.gz")
            digest = file_sha256(part)
            self.s3.put_object(Bucket=self._run.bucket, Key=key, Body=part, ContentType="application/gzip")
            part.close()
            segment.parts.append(key)
            segment.part_sha256.append(digest)
        state = {
            "table": self.source.table,
            "segments": [{**asdict(segment), "digest": f"{segment.digest:x}"} for segment in segments],
        }
        key = self._state_key("scan.json")
        self.s3.put_object(
            Bucket=self._run.bucket, Key=key, Body=json.dumps(self._run.seal(key, state)).encode("utf-8"),
            ContentType="application/json",
        )
        done = sum(segment.done for segment in segments)
        logger.info("%s: scan checkpoint, %d of %d segments done, %d items so far", self._where(), done,
                    len(segments), sum(segment.count for segment in segments))

    # Storing ---------------------------------------------------------------------------------------------

    def store(self, obj: SourceObject, bucket: str, key: str) -> Stored:
        if self.exported:
            return self._store_export(bucket, key)
        assert self._export is not None, "list_objects() runs before store()"
        written = writes.upload(self.s3, Path(self._export.name), bucket, key, self.multipart_threshold)
        return Stored(
            written.version_id, written.etag, written.size, self._identity, written.checksum, written.sha256, self.item_count
        )

    # A table's snapshot is one object of its own, never packed.
    packable = False

    def fetch(self, obj: SourceObject) -> Fetched:
        raise TypeError(f"{self._where()}: a table is never packed")

    def _store_export(self, bucket: str, key: str) -> Stored:
        assert self._run is not None
        exports = table_export.TableExports(self.dynamodb, self.s3, bucket, self._run, self._where())
        try:
            export = exports.start_or_adopt(self._table_arn, self.source.name, self._run.backup_id)
            description = exports.wait(export, self._run.running_out)
            if description is None:
                raise ReaderSuspended(f"{self._where()}: export {export.arn} still running")
            self._run.before_multipart()
            written, items = exports.join(description, export, key)
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"{self._where()}: {describe_error(exc)}") from exc
        self.item_count = items
        exports.clean_up(export)
        identity = f"{table_export.EXPORT_IDENTITY}{items}:{export.arn.rsplit('/', 1)[-1]}"
        return Stored(written.version_id, written.etag, written.size, identity, written.checksum, None, items)

    def close(self) -> None:
        if self._export is not None:
            self._export.close()
            self._export = None

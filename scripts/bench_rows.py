"""What the upkeep's passes cost per row: the figures chalicelib/cost/upkeep.py's `*_SECONDS` stand for.

Side by side in one process, `--repeats` times each in turn, medians, per row:
  manifest      a snapshot manifest's entry read (gunzipped, JSON-decoded into an Entry)
  index-read    a kept index's line read (chalicelib/catalog/kept_index.py)
  index-write   a kept index's line written
  report-read   an S3 Inventory report's row read (the data file copied from an in-process moto bucket,
                MD5-checked, gunzipped, parsed into a Row)
  report-sort   the same rows read and sorted through temporary runs (`sorted_rows`)
  check         a version checked against its report row (verify/checks.py `verify_versions`)
  index-skip    a kept index's line skipped by a job resuming from a checkpoint (decoded, no entry made)
  merge-entry   a manifest's entry as the verification's kept index merges it (read as S3 sends it, in blocks:
                manifest_stream.streamed_entries)
  cost-row      a report's row as the cost report takes it (chalicelib/cost/inventory.py: read, sorted in the
                order the join reads its sources, shaped as a listing's versions) and counts it (cost/tally.py `PlanTally.add`)
  count-row     a report's row, already sorted by the verification's pass, counted along it for the cost report
                (chalicelib/cost/row_counts.py `RowCounts.row`: each key's rows shaped as a listing's versions,
                counted by cost/tally.py `PlanTally.add`): what the pass adds per row
  checked-merge a manifest's entry as the prune's kept index merges it (read as S3 sends it at its pinned
                version, held entries too, its order checked and its bytes hashed: manifest_stream.checked_entries)
And the bytes a row takes in /tmp (`bytes_per_row`): a manifest entry and a kept index line (gzip, as
downloaded or written), a report row in its data file (gzip CSV, as copied) and in a sorted run (pickled).
Each is also given as a ratio to `manifest`, the figure the model was first calibrated on (10 microseconds
on this project's test machine when quiet): the ratios hold however busy the machine is, the microseconds
do not. Rows look like a backup bucket's (keys, version ids, ETags, checksums), in random order.

A report, not a test: it prints, and never fails on a number. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import csv
import gzip
import hashlib
import io
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.catalog import kept_index, manifest_stream  # noqa: E402
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter  # noqa: E402
from chalicelib.cost import bucket_versions  # noqa: E402
from chalicelib.cost.report_runs import ReportRuns  # noqa: E402
from chalicelib.cost.row_counts import RowCounts  # noqa: E402
from chalicelib.cost.tally import PlanTally  # noqa: E402
from chalicelib.inventory import reports  # noqa: E402
from chalicelib.plans import Lifecycle, Plan, S3Source, Transition  # noqa: E402
from chalicelib.prices import load_prices  # noqa: E402
from chalicelib.retention import RetentionPolicy  # noqa: E402
from chalicelib.verify.checks import verify_versions  # noqa: E402
from chalicelib.inventory.configuration import OPTIONAL_FIELDS  # noqa: E402
from chalicelib.layout import LONG_KEYS_PREFIX, PACKS_PREFIX  # noqa: E402

BUCKET = "bench-reports"


def _columns() -> list[str]:
    fixed = ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker"]
    return fixed + [field for field in OPTIONAL_FIELDS if field not in fixed]


def _value(column: str, number: int, rng: random.Random, written: datetime) -> str:
    return {
        "Bucket": "org-backup-documents",
        "Key": f"data/documents/team{number % 97}/folder{number % 1009}/report-{number:08d}.docx",
        "VersionId": "%032x" % rng.getrandbits(128),
        "IsLatest": "true",
        "IsDeleteMarker": "false",
        "Size": "10240",
        "LastModifiedDate": (written + timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "ETag": "%032x" % rng.getrandbits(128),
        "StorageClass": "STANDARD",
        "IsMultipartUploaded": "false",
        "ChecksumAlgorithm": "SHA256",
        "ReplicationStatus": "",
        "EncryptionStatus": "SSE-S3",
        "ObjectLockMode": "",
        "ObjectLockRetainUntilDate": "",
        "ObjectLockLegalHoldStatus": "",
    }.get(column, "")


def deliver(s3: object, rows: int, file_rows: int) -> reports.Report:
    rng = random.Random(7)
    columns = _columns()
    written = datetime(2026, 1, 1, tzinfo=timezone.utc)
    order = list(range(rows))
    rng.shuffle(order)
    files = []
    for start in range(0, rows, file_rows):
        text = io.StringIO()
        writer = csv.writer(text, quoting=csv.QUOTE_ALL)
        for number in order[start : start + file_rows]:
            writer.writerow([_value(column, number, rng, written) for column in columns])
        body = gzip.compress(text.getvalue().encode(), compresslevel=6)
        key = f"inventory/data/{start // file_rows:04d}.csv.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)  # type: ignore[attr-defined]
        files.append(reports.DataFile(key, len(body), hashlib.md5(body, usedforsecurity=False).hexdigest()))
    return reports.Report(
        bucket=BUCKET,
        manifest_key="inventory/manifest.json",
        source_bucket="org-backup-documents",
        destination_bucket_arn=f"arn:aws:s3:::{BUCKET}",
        version="2016-11-30",
        created=written,
        schema=tuple(columns),
        files=tuple(files),
    )


def entries(rows: int, rng: random.Random) -> list[Entry]:
    listed = []
    for number in range(rows):
        version_id, etag = "%032x" % rng.getrandbits(128), "%032x" % rng.getrandbits(128)
        listed.append(
            Entry(
                source="documents",
                key=f"team{number % 97}/folder{number % 1009}/report-{number:08d}.docx",
                version_id=version_id,
                size=10240,
                etag=etag,
                # Copied from a bucket source: the source's ETag, which the stored version keeps.
                identity=f"etag:{etag}:10240",
                checksum="%044x" % rng.getrandbits(176),
            )
        )
    return listed


def manifest_file(listed: list[Entry]) -> Any:
    writer = ManifestWriter()
    for entry in listed:
        writer.add(entry)
    return writer.finish({"plan": "documents", "backup_id": "20260101T000000000Z-bench"}, keep_held=False)


class _Bucket:
    """Enough of an S3 client for `kept_index` to write an index: the put is accepted and forgotten."""

    def put_object(self, **_: Any) -> dict[str, Any]:
        return {}


def index_write(listed: list[Entry]) -> Any:
    snapshots = [f"202601{day:02d}T000000000Z-bench" for day in range(1, 31)]
    return kept_index._write(_Bucket(), "bench", "documents", snapshots, ((entry, (1 << 30) - 1) for entry in listed), kept_index.VERIFIED, None)


def per_row(run: Callable[[], Iterable[Any]], rows: int) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in run())
    if count != rows:
        raise SystemExit(f"read {count} rows of {rows}")
    return (time.perf_counter() - started) / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--file-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = args.rows
    listed = sorted(entries(rows, random.Random(3)), key=lambda entry: entry.sort_key)
    manifest = Manifest(manifest_file(listed))
    index = index_write(listed)
    checked = [(entry, row_of(entry)) for entry in listed]
    times: dict[str, list[float]] = {
        name: [] for name in ("manifest", "index-read", "index-write", "report-read", "report-sort", "check", "index-skip", "merge-entry", "checked-merge", "cost-row", "count-row")
    }
    last = listed[-1].sort_key
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        report = deliver(s3, rows, args.file_rows)
        for _ in range(args.repeats):
            times["manifest"].append(per_row(manifest.entries, rows))
            times["index-read"].append(per_row(index.versions, rows))
            times["index-write"].append(per_row(lambda: index_write(listed).versions(), rows) - statistics.median(times["index-read"]))
            times["report-read"].append(per_row(lambda: reports.rows(s3, report), rows))
            times["report-sort"].append(per_row(lambda: reports.sorted_rows(s3, report), rows))
            times["check"].append(per_row(lambda: _checked(checked), rows))
            times["index-skip"].append(per_row(lambda: _skipped(index, last, rows), rows))
            times["merge-entry"].append(per_row(lambda: _streamed(manifest), rows))
            times["checked-merge"].append(per_row(lambda: _checked_stream(manifest), rows))
            times["cost-row"].append(per_row(lambda: _costed(s3, report), rows))
            in_order = [row_of(entry) for entry in listed]
            times["count-row"].append(per_row(lambda: _counted(in_order), rows))
        spooled = {
            "manifest": _size(manifest_file(listed)) / rows,
            "index": _size(index_write(listed)._file) / rows,
            "report-file": sum(f.size for f in report.files) / rows,
            "report-run": _size(reports._write_run([row_of(entry) for entry in listed], reports._by_key)) / rows,
        }
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    ratios = {name: round(value / medians["manifest"], 3) for name, value in medians.items()}
    for name, value in medians.items():
        print(f"{name:12} {value:8.2f} us a row   {ratios[name]:6.3f} x a manifest entry")
    bytes_per_row = {name: round(value, 1) for name, value in spooled.items()}
    for name, value in bytes_per_row.items():
        print(f"{name:12} {value:8.1f} bytes a row in /tmp")
    print(json.dumps({"rows": rows, "repeats": args.repeats, "us_per_row": medians, "ratio_to_manifest_entry": ratios,
                      "bytes_per_row": bytes_per_row}, sort_keys=True))


def _skipped(index: Any, last: tuple[str, str], rows: int) -> Iterable[None]:
    """Every line skipped (the checkpoint is the last key), counted as rows for `per_row`."""
    if any(True for _ in index.versions(after=last)):
        raise SystemExit("a line past the last key")
    return (None for _ in range(rows))


def _streamed(manifest: Manifest) -> Iterable[Entry]:
    manifest._file.seek(0)
    return manifest_stream.entries_of(gzip.GzipFile(fileobj=io.BytesIO(manifest._file.read()), mode="rb"), "bench")


def _costed(s3: Any, report: reports.Report) -> Iterable[None]:
    """Every row through the cost report's join (none named) into a plan's tally, one None a version."""
    # The shipped plan's lifecycle: GLACIER after 30 days, DEEP_ARCHIVE after 180.
    lifecycle = Lifecycle(transitions=(Transition(30, "GLACIER"), Transition(180, "DEEP_ARCHIVE")))
    plan = Plan(name="documents", bucket=BUCKET, sources=(S3Source(name="documents", bucket="source"),), lifecycle=lifecycle, retention=RetentionPolicy(keep_last=1))
    tally = PlanTally(plan, load_prices(environ={}), datetime(2026, 12, 1, tzinfo=timezone.utc), listed_by=bucket_versions.FROM_REPORT)
    work = bucket_versions.Work()
    with ReportRuns(s3, report, work) as runs:
        prefixes = [f"data/{source}/" for source in sorted(runs.sources())] + [LONG_KEYS_PREFIX, PACKS_PREFIX]
        for prefix in prefixes:
            for key, items in runs.listed(prefix):
                for version in bucket_versions._versions(key, items, set(), work):
                    tally.add(version)
                    yield None


def _counted(in_order: list[reports.Row]) -> Iterable[None]:
    """Every row, in the verification's order, through the counter it hands rows to (none named)."""
    lifecycle = Lifecycle(transitions=(Transition(30, "GLACIER"), Transition(180, "DEEP_ARCHIVE")))
    plan = Plan(name="documents", bucket=BUCKET, sources=(S3Source(name="documents", bucket="source"),), lifecycle=lifecycle, retention=RetentionPolicy(keep_last=1))
    moment = datetime(2026, 12, 1, tzinfo=timezone.utc)
    counts = RowCounts(plan, load_prices(environ={}), "report", moment, moment, 20)
    for row in in_order:
        counts.row(row)
        yield None
    counts.finished("backup", 1)


class _Stored:
    """Enough of an S3 client for `checked_entries`: one manifest version, with the SHA-256 S3 would give."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self._data), "ChecksumSHA256": self._sha256}


def _checked_stream(manifest: Manifest) -> Iterable[Entry]:
    manifest._file.seek(0)
    stored = _Stored(manifest._file.read())
    with ExitStack() as stack:
        yield from manifest_stream.checked_entries(stored, BUCKET, "bench", "v", stack, "bench")


def _size(fileobj: Any) -> int:
    fileobj.seek(0, os.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(0)
    return size


def row_of(entry: Entry) -> reports.Row:
    return reports.Row(
        bucket="org-backup-documents",
        key=entry.data_key,
        version_id=entry.version_id,
        is_latest=True,
        is_delete_marker=False,
        size=entry.size,
        last_modified=datetime(2026, 1, 1, tzinfo=timezone.utc),
        etag=f'"{entry.etag}"',
        storage_class="STANDARD",
    )


class _Plan:
    name = "documents"
    bucket = "org-backup-documents"
    sources = ()
    kms_key_id = None


def _checked(versions: list[tuple[Entry, reports.Row]]) -> Iterable[None]:
    for start in range(0, len(versions), 1000):
        part = verify_versions(None, _Plan(), versions[start : start + 1000], 0.0)  # type: ignore[arg-type]
        if not part.ok:
            raise SystemExit("a version failed its check")
        yield from (None for _ in range(part.checked))


if __name__ == "__main__":
    main()

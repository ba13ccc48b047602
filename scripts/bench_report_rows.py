"""What reading an S3 Inventory report costs per row: the figures chalicelib/cost/upkeep.py's
`REPORT_ROW_SECONDS` and `SORTED_ROW_SECONDS` stand for.

A report of `--rows` rows in AWS's CSV format (the columns the product configures, keys and version ids like
a backup bucket's, in random order, split over data files of `--file-rows`) is put into an in-process moto
bucket; then `reports.rows` reads it (each data file copied, MD5-checked, gunzipped, parsed into Rows) and
`reports.sorted_rows` reads and sorts it through temporary runs, `--repeats` times each, alternating. Reported:
microseconds per row, the median of the repeats, for reading, and what sorting adds.

A report, not a test: it prints, and never fails on a number. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
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
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.inventory import reports  # noqa: E402
from chalicelib.inventory.configuration import OPTIONAL_FIELDS  # noqa: E402

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


def per_row(run, rows: int) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in run())
    if count != rows:
        raise SystemExit(f"read {count} rows of {rows}")
    return (time.perf_counter() - started) / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--file-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        report = deliver(s3, args.rows, args.file_rows)
        read, sort = [], []
        for _ in range(args.repeats):
            read.append(per_row(lambda: reports.rows(s3, report), args.rows))
            sort.append(per_row(lambda: reports.sorted_rows(s3, report), args.rows))
    result = {
        "rows": args.rows,
        "repeats": args.repeats,
        "read_us_per_row": round(statistics.median(read), 1),
        "sorted_us_per_row": round(statistics.median(sort), 1),
        "sort_adds_us_per_row": round(statistics.median(sort) - statistics.median(read), 1),
    }
    print(f"reading a report: {result['read_us_per_row']} us a row; sorted: {result['sorted_us_per_row']} us a row "
          f"({result['sort_adds_us_per_row']} more), medians of {args.repeats}, {args.rows:,} rows")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

"""How `GET /backups` and the dashboard's main page scale: 1,000 recorded backups, then pages timed and their
S3 requests counted.

    .venv/bin/python scripts/bench_api.py [--records 1000] [--repeat 30]

Runs in-process against moto (no network), through the Chalice test client and the dashboard's WSGI
application, so the times show the code's own work; the S3 request counts are what a page costs against
real S3, where each request takes milliseconds. A report, not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGE_ENV = {
    "BACKUP_BUCKET_PREFIX": "bench-backup",
    "DOCUMENTS_SOURCE_BUCKET": "bench-src-documents",
    "PHOTOS_SOURCE_BUCKET": "bench-src-photos",
    "DATABASE_TABLE": "bench-orders",
    "ALERT_TOPIC_ARN": "",
    "WORKER_MODE": "inline",
}
STATUSES = ("SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "PARTIAL", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)

    import moto  # noqa: F401  (before any client exists)
    from moto import mock_aws

    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        run(args.records, args.repeat, Path(tmp))


def run(count: int, repeat: int, tmp: Path) -> None:
    import boto3
    from chalice.test import Client

    import app as app_module
    from chalicelib.aws import Clients
    from chalicelib.catalog.records import BackupRecord, PlanResult, RecordStore, new_backup_id
    from chalicelib.plans_file import load_plans
    from chalicelib.times import isoformat

    plans = load_plans(STAGE_ENV)
    s3 = boto3.client("s3", region_name="us-east-1")
    for plan in plans.plans:
        s3.create_bucket(Bucket=plan.bucket)
        s3.put_bucket_versioning(Bucket=plan.bucket, VersioningConfiguration={"Status": "Enabled"})
    store = RecordStore(s3, plans.catalog_bucket)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seeded_at = time.perf_counter()
    for index in range(count):
        moment = start + timedelta(hours=6 * index)
        status = STATUSES[index % len(STATUSES)]
        record = BackupRecord(
            backup_id=new_backup_id(moment),
            trigger="schedule",
            plans={name: PlanResult(plan=name, status=status, copied=index, objects=1000 + index) for name in plans.names},
            status=status,
            started_at=isoformat(moment),
            finished_at=isoformat(moment + timedelta(minutes=7)),
        )
        store.create(record)
        if status != "RUNNING":
            store.seal(record)  # as the service does when a backup finishes: readers take the sealed copy
    print(f"recorded {count} backups in {time.perf_counter() - seeded_at:.1f} s")

    project = tmp / "project"
    (project / ".chalice").mkdir(parents=True)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["local"]["environment_variables"] = STAGE_ENV
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    shutil.copy(ROOT / "app.py", project / "app.py")

    app_module._clients = Clients()
    counts: Counter[str] = Counter()
    app_module._clients.s3.meta.events.register("before-call.s3", lambda model, **_: counts.update([model.name]))

    with Client(app_module.app, stage_name="local", project_dir=str(project)) as client:

        def page(url: str) -> tuple[float, int, dict[str, Any]]:
            counts.clear()
            began = time.perf_counter()
            response = client.http.get(url)
            elapsed = time.perf_counter() - began
            assert response.status_code == 200, response.body
            return elapsed, sum(counts.values()), response.json_body

        rows: list[tuple[str, float, float, int]] = []

        def measure(label: str, url: str) -> None:
            results = [page(url) for _ in range(repeat)]
            times = [r[0] for r in results]
            returned = len(results[0][2]["backups"])
            rows.append((label, statistics.median(times) * 1000, results[0][1], returned))

        measure("first page (limit=20)", "/backups")
        measure("first page (limit=100)", "/backups?limit=100")
        middle = start + timedelta(hours=6 * (count // 2))
        window = f"since={isoformat(middle - timedelta(days=2))}&until={isoformat(middle)}"
        measure("2-day window (since/until)", f"/backups?{window}")
        measure("status=FAILED (1 in 10)", "/backups?status=FAILED")

        # Walking the whole catalog 20 at a time: every page costs the same, wherever it is.
        walk_times, walk_requests, token, pages = [], [], None, 0
        while True:
            elapsed, requests, body = page("/backups" + (f"?next_token={token}" if token else ""))
            walk_times.append(elapsed)
            walk_requests.append(requests)
            pages += 1
            token = body["next_token"]
            if not token:
                break
        rows.append((f"walk all {pages} pages, median", statistics.median(walk_times) * 1000, int(statistics.median(walk_requests)), 20))

        # For scale: what reading every record (a listing that ignores the key order) would take.
        counts.clear()
        began = time.perf_counter()
        keys = []
        for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=plans.catalog_bucket, Prefix="meta/backups/"):
            keys.extend(item["Key"] for item in listing.get("Contents", []))
        for key in keys:
            store.read_key(key)
        read_all = (time.perf_counter() - began) * 1000
        rows.append(("reading every record (for comparison)", read_all, len(keys) + (len(keys) + 999) // 1000, len(keys)))

    print(f"\nGET /backups with {count} recorded backups (median of {repeat} requests; moto in-process)\n")
    print(f"{'query':42} {'median ms':>10} {'S3 requests':>12} {'backups':>8}")
    for label, ms, requests, returned in rows:
        print(f"{label:42} {ms:10.1f} {requests:12d} {returned:8d}")
    first = rows[0]
    print(f"\nfirst page vs reading every record: {rows[-1][1] / first[1]:.0f}x faster, {rows[-1][2] / first[2]:.0f}x fewer S3 requests")

    dashboard_report(app_module._clients, counts, count, max(5, repeat // 3), start + timedelta(hours=6 * count))


def dashboard_report(clients: Any, counts: Counter[str], count: int, repeat: int, now: datetime) -> None:
    """The dashboard's main page over the same catalog, seen at `now` (just after the newest backup): the whole
    page (its reads and its rendering), and the rendering alone (the charts as inline SVG and the templates,
    from data already read)."""
    from chalicelib.config import Settings
    from chalicelib.dashboard import pages
    from chalicelib.dashboard.server import Dashboard

    settings = Settings.from_environ(STAGE_ENV)
    app = Dashboard(settings, clients, stage="bench")

    def page() -> tuple[float, Counter[str], int]:
        counts.clear()
        began = time.perf_counter()
        # The dashboard's own storage cache, as its server passes it: storage per class is listed on the first
        # page and kept for an hour (STORAGE_TTL), so the median is of pages that do not list it.
        body = app.render("index.html", **pages.index(settings, clients, now, app.storage)).body
        return time.perf_counter() - began, Counter(counts), len(body)

    results = [page() for _ in range(repeat)]
    page_ms = statistics.median(r[0] for r in results) * 1000
    # The steady state: the last page's requests (the first one also listed storage per class).
    requests, size = results[-1][1], results[-1][2]
    listing = results[0][1]["ListObjectVersions"]
    data = pages.index(settings, clients, now, app.storage)
    render_times = []
    for _ in range(repeat):
        began = time.perf_counter()
        app.render("index.html", **data)
        render_times.append(time.perf_counter() - began)
    render_ms = statistics.median(render_times) * 1000
    shown = len(data["o"].backups)
    marks = len([e for e in data["charts"]["timeline"].elements if "mark" in str(e.attrs.get("class", "")).split()])
    print(f"\nDashboard main page with {count} recorded backups, the last 30 days shown (median of {repeat}; moto in-process)\n")
    print(f"{'page':42} {'median ms':>10} {'S3 requests':>12} {'backups':>8}")
    print(f"{'main page: read and render':42} {page_ms:10.1f} {sum(requests.values()):12d} {shown:8d}")
    print(f"{'main page: render only (charts, templates)':42} {render_ms:10.1f} {0:12d} {shown:8d}")
    print(f"\nS3 requests per main page: {', '.join(f'{n} {op}' for op, n in sorted(requests.items()))}; the first page "
          f"after start-up (or after an hour) also lists storage per class: {listing} ListObjectVersions (one per 1,000 "
          "stored versions of each bucket)")
    print(f"{1000 / page_ms:.1f} pages per second in one thread ({1000 / render_ms:.0f} rendered from data already read); "
          f"{size / 1024:.0f} KiB of HTML with {marks} chart marks, no script, no file but the stylesheet")
    print(json.dumps({"dashboard": {"records": count, "page_ms": round(page_ms, 1), "render_ms": round(render_ms, 1),
                                    "s3_requests": dict(requests), "backups_shown": shown, "html_bytes": size}}))


if __name__ == "__main__":
    main()

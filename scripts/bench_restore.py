"""The restore case of `make bench`: a snapshot of `--restore-objects` objects of 4 KiB restored into a new
bucket at `--restore-latency-ms` a request, by three tools, each with 32 requests in flight, in rotating
order, `--repeats` times:

  product          this product's restore as the operator's command runs it: `RestoreService.start` (the
                   checks, the record) then `run` (the first pass), every request of both counted
  s3_pit_restore   s3-pit-restore (a development dependency) with `--max-workers 32`: the backup bucket's
                   versions under the source's prefix listed, the newest of each copied with its VersionId
  plain_loop       `ListObjectVersions` of the same prefix, then `CopyObject` with `VersionId` on 32 threads

Every restored object is compared byte for byte with the snapshot's (read back at no latency, not measured).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import THREADS, Bench

RESTORE_OBJECT_SIZE = 4096
RESTORE_TOOLS = ["product", "s3_pit_restore", "plain_loop"]
SOURCE = "source"


def restore_settings(backup_bucket: str, source_bucket: str) -> Any:
    from chalicelib.config import Settings
    from chalicelib.plans import Lifecycle, Plan, PlanSet, S3Source

    plan = Plan(name="bench", bucket=backup_bucket, sources=(S3Source(name=SOURCE, bucket=source_bucket),), lifecycle=Lifecycle(()))
    return Settings(plans=PlanSet((plan,), catalog_bucket=backup_bucket), topic_arn=None, worker_mode="inline",
                    worker_function=None, max_workers=THREADS)


def run_product(clients: Any, settings: Any, backup_id: str, target: str) -> dict[str, Any]:
    from chalicelib.restore.requests import RestoreRequest, Target
    from chalicelib.restore.service import RestoreService

    # As the operator's command makes it (its own credentials: any bucket but a backup bucket).
    service = RestoreService(settings.plans, clients, max_workers=THREADS, worker_mode="inline", allowed_buckets=None)
    record = service.start(RestoreRequest(backup_id=backup_id, plan="bench", target=Target(bucket=target)))
    done = service.run(record.restore_id)
    assert done.status == "SUCCEEDED", done
    return {"restored": done.restored}


def run_pit(env: dict[str, str], backup_bucket: str, prefix: str, target: str) -> dict[str, Any]:
    tool = shutil.which("s3-pit-restore", path=str(Path(sys.executable).parent)) or shutil.which("s3-pit-restore")
    if tool is None:
        return {"error": "s3-pit-restore not installed (pip install -r requirements-dev.txt)"}
    command = [sys.executable, tool, "-b", backup_bucket, "-B", target, "-p", prefix, "--max-workers", str(THREADS)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or done.stderr.strip():
        return {"error": (done.stderr.strip() or f"exit {done.returncode}")[-300:]}
    return {}


def run_plain(clients: Any, backup_bucket: str, prefix: str, target: str) -> dict[str, Any]:
    s3 = clients.s3
    latest = [
        (version["Key"], version["VersionId"])
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=backup_bucket, Prefix=prefix)
        for version in page.get("Versions", []) if version["IsLatest"]
    ]

    def copy(item: tuple[str, str]) -> None:
        key, version = item
        s3.copy_object(Bucket=target, Key=key[len(prefix):], CopySource={"Bucket": backup_bucket, "Key": key, "VersionId": version})

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(copy, latest))
    return {"restored": len(latest)}


def contents(s3: Any, bucket: str, prefix: str = "") -> dict[str, str]:
    """Every object's SHA-256 under `prefix`, by key relative to it."""
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])]

    def digest(key: str) -> tuple[str, str]:
        return key[len(prefix):], hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()

    with ThreadPoolExecutor(THREADS) as pool:
        return dict(pool.map(digest, keys))


def restore_case(bench: Bench) -> None:
    """Seed, back up (at no latency, not measured), then restore with each tool; each sample records whether
    its bytes matched the snapshot's."""
    from chalicelib.backup.service import BackupService
    from chalicelib.layout import data_key

    args, emulator, s3 = bench.args, bench.emulator, bench.s3
    objects, latency = args.restore_objects, args.restore_latency_ms
    print(f"restore: {objects} objects of {RESTORE_OBJECT_SIZE} bytes into a new bucket, {latency:g} ms per request", flush=True)
    emulator.set_latency(0)
    source = bench.bucket("restore-source", versioned=False)
    emulator.seed(source, objects, RESTORE_OBJECT_SIZE)
    backup_bucket = bench.bucket("restore-backup")
    settings = restore_settings(backup_bucket, source)
    backups = BackupService(settings, bench.clients)
    backup_id = backups.start(["bench"], trigger="api").backup_id
    # PARTIAL only for the bucket's settings (the emulator's bucket is not provisioned): the snapshot is whole.
    backed_up = backups.run(backup_id).plans["bench"]
    assert backed_up.snapshot and backed_up.copied == objects and not backed_up.errors, backed_up
    prefix = data_key(SOURCE, "")
    expected = contents(s3, source)
    targets = {(tool, rep): bench.bucket(f"restore-{tool.replace('_', '-')}-{rep}", versioned=False)
               for tool in RESTORE_TOOLS for rep in range(args.repeats)}
    env = {**bench.env, "AWS_CONFIG_FILE": bench.default_config.name}
    for rep in range(args.repeats):
        for tool in RESTORE_TOOLS[rep % len(RESTORE_TOOLS):] + RESTORE_TOOLS[: rep % len(RESTORE_TOOLS)]:
            target = targets[tool, rep]
            emulator.set_latency(latency)
            if tool == "product":
                bench.sample("restore", tool, rep, lambda: run_product(bench.clients, settings, backup_id, target), objects)
            elif tool == "s3_pit_restore":
                bench.sample("restore", tool, rep, lambda: run_pit(env, backup_bucket, prefix, target), objects)
            else:
                bench.sample("restore", tool, rep, lambda: run_plain(bench.clients, backup_bucket, prefix, target), objects)
            emulator.set_latency(0)
            # s3-pit-restore keeps the backup's keys (`data/<source>/...`); the others restore them as they were.
            got = contents(s3, target, prefix if tool == "s3_pit_restore" else "")
            bench.samples[f"restore/{tool}"][-1]["bytes_identical"] = got == expected
            print(f"  {'':<9} {tool:<19} #{rep + 1} bytes identical: {got == expected} ({len(got)} objects)", flush=True)
    emulator.set_latency(0)


def restore_figures(rows: dict[str, dict[str, Any]], objects: int) -> dict[str, Any]:
    """The JSON line's restore figures: the product's time against each tool's, its requests against its
    budget (N copies, ceil(N/1000) listing pages, 12 besides), and whether every tool's bytes matched."""
    import math

    def get(tool: str, name: str) -> Any:
        return rows.get(f"restore/{tool}", {}).get(name)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    budget = objects + math.ceil(objects / 1000) + 12
    bound = any(get(tool, "bound") for tool in RESTORE_TOOLS)
    figures = {
        "restore_product_vs_plain_loop": ratio(get("product", "seconds"), get("plain_loop", "seconds")),
        "restore_product_vs_s3_pit_restore": ratio(get("product", "seconds"), get("s3_pit_restore", "seconds")),
        "restore_product_requests": get("product", "requests"),
        "restore_requests_budget": budget,
        "restore_bytes_identical": {tool: get(tool, "bytes_identical") for tool in RESTORE_TOOLS},
    }
    met = {
        "restore_vs_plain_loop": None if bound else (figures["restore_product_vs_plain_loop"] or 99) <= 1.1,
        "restore_vs_s3_pit_restore": None if bound else (figures["restore_product_vs_s3_pit_restore"] or 99) <= 1.05,
        "restore_requests": (figures["restore_product_requests"] or 10**9) <= budget,
    }
    return {"figures": figures, "targets": {"restore_vs_plain_loop_max": 1.1, "restore_vs_s3_pit_restore_max": 1.05,
                                            "restore_requests_max": budget}, "met": met}


if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, str(Path(__file__).with_name("bench.py")), "--cases", "restore", *sys.argv[1:]])

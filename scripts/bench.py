"""`make bench`: how fast and how cheap a backup is, side by side with `aws s3 sync` and a plain boto3 loop.

Everything runs against moto's server on loopback (a free port, in a child process, so the server does not
share the benchmark's interpreter lock). The server counts the requests it receives: every figure is
counted at the emulator, whoever sent the request.

Runs, on one source bucket of N objects of 4 KiB:
  full       a first backup: every object copied
  unchanged  the same again, nothing changed at the source
  changed    1% of the objects rewritten
each three times (median reported; full runs into fresh buckets, in rotating order) by: this engine (one plan, 32 copy threads), `aws s3 sync` (max_concurrent_requests 32, like the
others, and again with the CLI's defaults, 10 in flight, as a cron job runs it), and a plain loop (list, then copy_object on 32 threads; it has no notion of "unchanged", so it
copies everything every time).

Then, in a child process, the peak memory (ru_maxrss) of comparing a 1,000,000-entry snapshot with a
1,000,000-object listing through the engine's own merge, with an in-memory fake of S3 and a fake reader.

This is a report, not a test: it prints, and never fails on a number. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OBJECT_SIZE = 4096
THREADS = 32
SOURCE = "bench-source"
# aws_s3_sync runs with 32 requests in flight like the others; aws_s3_sync_default as a cron job would run
# it, with the CLI's default of 10.
TOOLS = ["engine", "aws_s3_sync", "aws_s3_sync_default", "plain_loop"]
# Each run is repeated and the median reported: the emulator shares the machine with everything else.
REPEATS = 3


# --------------------------------------------------------------------------------------------------------
# The emulator, in a child process: moto's server app behind a request-counting WSGI layer.


def serve() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def operation(environ: dict[str, Any]) -> str:
        method = environ["REQUEST_METHOD"]
        query = environ.get("QUERY_STRING", "")
        keys = sorted({part.split("=", 1)[0] for part in query.split("&") if part})
        if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in environ:
            return "COPY"
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return target.rsplit(".", 1)[-1]
        return f"{method} {'&'.join(keys)}".strip()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/__bench/counts":
            with lock:
                body = json.dumps(counts).encode()
                if environ["REQUEST_METHOD"] == "DELETE":
                    counts.clear()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        with lock:
            counts["total"] += 1
            counts[operation(environ)] += 1
        return moto_app(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)

    def exit_with_parent() -> None:
        # The parent holds our stdin open; when it ends, however it ends, so does the emulator.
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    print(server.server_port, flush=True)
    server.serve_forever()


class Emulator:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def counts(self, reset: bool = False) -> dict[str, int]:
        import urllib.request

        request = urllib.request.Request(f"{self.url}/__bench/counts", method="DELETE" if reset else "GET")
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --------------------------------------------------------------------------------------------------------
# The three ways of copying a bucket.


def environment(emulator: Emulator, config_file: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": emulator.url,
        "AWS_CONFIG_FILE": config_file,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def make_plan(bucket: str) -> Any:
    from chalicelib.plans import Lifecycle, Plan, S3Source

    return Plan(name="bench", bucket=bucket, sources=(S3Source(name="source", bucket=SOURCE),), lifecycle=Lifecycle(()))


def run_engine(clients: Any, bucket: str) -> dict[str, Any]:
    from chalicelib.backup.plan_backup import back_up_plan
    from chalicelib.catalog.records import new_backup_id

    result = back_up_plan(make_plan(bucket), clients, new_backup_id(), max_workers=THREADS)
    assert result.status == "SUCCEEDED", result
    return {"copied": result.copied, "unchanged": result.unchanged}


def run_plain(clients: Any, bucket: str) -> dict[str, Any]:
    s3 = clients.s3
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=SOURCE)
            for item in page.get("Contents", [])]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda key: s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": SOURCE, "Key": key}), keys))
    return {"copied": len(keys)}


def run_sync(env: dict[str, str], bucket: str, config_file: str | None = None) -> dict[str, Any]:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if aws is None:
        return {"error": "aws CLI not installed (pip install -r requirements-dev.txt)"}
    command = [aws, "s3", "sync", f"s3://{SOURCE}", f"s3://{bucket}", "--endpoint-url", env["AWS_ENDPOINT_URL"],
               "--only-show-errors", "--no-progress"]
    run_env = env if config_file is None else {**env, "AWS_CONFIG_FILE": config_file}
    done = subprocess.run(command, env=run_env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    return {}


def timed(emulator: Emulator, run: Any) -> dict[str, Any]:
    emulator.counts(reset=True)
    start = time.perf_counter()
    outcome = run()
    seconds = time.perf_counter() - start
    counts = emulator.counts()
    top = {k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if k != "total"}
    return {"seconds": round(seconds, 3), "requests": counts.get("total", 0), "by_request": dict(list(top.items())[:6]), **outcome}


def copy_benchmark(objects: int) -> dict[str, Any]:
    emulator = Emulator()
    config = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
    # The CLI's default is 10 requests in flight; give it the same 32 as the others.
    config.write("[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = 32\n")
    config.close()
    default_config = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
    default_config.write("[default]\nregion = us-east-1\n")
    default_config.close()
    try:
        env = environment(emulator, config.name)
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")})
        from chalicelib.aws import Clients

        clients = Clients()
        s3 = clients.s3
        def bucket_for(name: str, rep: int) -> str:
            return f"bench-{name.replace('_', '-')}-{rep}"

        s3.create_bucket(Bucket=SOURCE)
        for rep in range(REPEATS):
            for name in TOOLS:
                s3.create_bucket(Bucket=bucket_for(name, rep))
                s3.put_bucket_versioning(Bucket=bucket_for(name, rep), VersioningConfiguration={"Status": "Enabled"})
        body = os.urandom(OBJECT_SIZE)
        keys = [f"data/{index // 100:03d}/object-{index:06d}.bin" for index in range(objects)]
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda key: s3.put_object(Bucket=SOURCE, Key=key, Body=key.encode() + body[len(key):]), keys))

        def run(name: str, bucket: str) -> dict[str, Any]:
            if name == "engine":
                return run_engine(clients, bucket)
            if name == "aws_s3_sync":
                return run_sync(env, bucket)
            if name == "aws_s3_sync_default":
                return run_sync(env, bucket, default_config.name)
            return run_plain(clients, bucket)

        samples: dict[str, list[dict[str, Any]]] = {}
        changes = max(1, objects // 100)
        for scenario in ("full", "unchanged", "changed"):
            for rep in range(REPEATS):
                if scenario == "changed":
                    # A different 1% each time, rewritten before the three tools run.
                    changed = keys[rep::max(1, objects // changes)][:changes]
                    with ThreadPoolExecutor(THREADS) as pool:
                        list(pool.map(lambda key: s3.put_object(Bucket=SOURCE, Key=key, Body=os.urandom(OBJECT_SIZE)), changed))
                # Rotate the order, so no tool always runs first (or last) on a warming emulator.
                order = TOOLS[rep % len(TOOLS):] + TOOLS[: rep % len(TOOLS)]
                for name in order:
                    # Full runs go to a fresh bucket each time; the others to the last full run's bucket.
                    bucket = bucket_for(name, rep if scenario == "full" else REPEATS - 1)
                    sample = timed(emulator, lambda: run(name, bucket))
                    samples.setdefault(f"{scenario}/{name}", []).append(sample)
                    print(f"  {scenario:<9} {name:<12} #{rep + 1} {json.dumps(sample)}", flush=True)
        rows: dict[str, dict[str, Any]] = {}
        for row, runs in samples.items():
            ordered = sorted(runs, key=lambda sample: sample["seconds"])
            median = ordered[len(ordered) // 2]
            rows[row] = {**median, "seconds_all": [sample["seconds"] for sample in runs]}
        return rows
    finally:
        emulator.stop()
        os.unlink(config.name)
        os.unlink(default_config.name)


# --------------------------------------------------------------------------------------------------------
# Peak memory of the comparison, in its own process.


class _FakePaginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **kwargs: Any) -> Any:
        return iter(self.pages)


class FakeS3:
    """Just enough of S3 for one plan run: one previous manifest on local disk; writes are read and dropped."""

    def __init__(self, manifest_key: str, manifest_path: str) -> None:
        self.manifest_key = manifest_key
        self.manifest_path = manifest_path
        self.written = 0

    def get_paginator(self, name: str) -> _FakePaginator:
        if name == "list_objects_v2":
            return _FakePaginator([{"Contents": [{"Key": self.manifest_key, "LastModified": datetime.now(timezone.utc)}]}])
        return _FakePaginator([{}])

    def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
        return {"Body": open(self.manifest_path, "rb")}

    def put_object(self, Body: Any = b"", **kwargs: Any) -> dict[str, Any]:
        if hasattr(Body, "read"):
            while chunk := Body.read(1 << 20):
                self.written += len(chunk)
        return {"VersionId": "v", "ETag": '"e"'}

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        return {}


class FakeReader:
    def __init__(self, source: Any, count: int) -> None:
        self.source = source
        self.count = count

    def list_objects(self) -> Any:
        from chalicelib.backup.sources import SourceObject

        for index in range(self.count):
            yield SourceObject(key=f"data/{index:09d}.bin", size=OBJECT_SIZE, identity=f"etag:{index:032x}:{OBJECT_SIZE}")

    def store(self, obj: Any, bucket: str, key: str) -> Any:
        raise AssertionError("nothing changed: nothing is copied")

    def close(self) -> None:
        pass


def compare_child(entries: int) -> None:
    from chalicelib.backup.plan_backup import PlanBackup
    from chalicelib.catalog.manifests import Entry, ManifestWriter, manifest_key

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = make_plan("bench-memory")
    key = manifest_key(plan.name, "20261125T000000000Z-previous")
    writer = ManifestWriter()
    for index in range(entries):
        writer.add(Entry("source", f"data/{index:09d}.bin", "v" * 32, OBJECT_SIZE, f"{index:032x}",
                         f"etag:{index:032x}:{OBJECT_SIZE}"))
    body = writer.finish({"plan": plan.name, "backup_id": "20261125T000000000Z-previous"}, keep_held=False)
    spool = tempfile.NamedTemporaryFile(suffix=".jsonl.gz", delete=False)
    shutil.copyfileobj(body, spool)
    spool.close()
    body.close()
    writer.close()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s3 = FakeS3(key, spool.name)
    start = time.perf_counter()
    result = PlanBackup(plan, s3, "20261126T000000000Z-current", lambda source: FakeReader(source, entries)).run()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    os.unlink(spool.name)
    print(json.dumps({
        "status": result.status, "unchanged": result.unchanged, "seconds": round(seconds, 2),
        "baseline_mb": round(baseline / 1024, 1), "before_run_mb": round(before / 1024, 1),
        "peak_mb": round(peak / 1024, 1), "manifest_bytes": s3.written,
    }))


def memory_benchmark(entries: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--compare-child", str(entries)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.compare_child:
        compare_child(args.compare_child)
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    print(f"copy benchmark: {args.objects} objects of {OBJECT_SIZE} bytes, {THREADS} threads, moto server on loopback")
    rows = copy_benchmark(args.objects)
    print(f"memory benchmark: {args.entries:,}-entry snapshot against a {args.entries:,}-object listing")
    memory = memory_benchmark(args.entries)
    print(f"  {json.dumps(memory)}")

    def seconds(row: str) -> float | None:
        return rows.get(row, {}).get("seconds") if "error" not in rows.get(row, {}) else None

    request_budget = math.ceil(args.objects / 1000) + 4
    report = {
        "objects": args.objects,
        "object_bytes": OBJECT_SIZE,
        "threads": THREADS,
        "full_engine_s": seconds("full/engine"),
        "full_plain_loop_s": seconds("full/plain_loop"),
        "full_aws_s3_sync_s": seconds("full/aws_s3_sync"),
        "full_engine_vs_plain_loop": ratio(seconds("full/engine"), seconds("full/plain_loop")),
        "full_engine_vs_aws_s3_sync": ratio(seconds("full/engine"), seconds("full/aws_s3_sync")),
        "full_aws_s3_sync_default_s": seconds("full/aws_s3_sync_default"),
        "full_engine_vs_aws_s3_sync_default": ratio(seconds("full/engine"), seconds("full/aws_s3_sync_default")),
        "unchanged_engine_vs_aws_s3_sync_default": ratio(seconds("unchanged/engine"), seconds("unchanged/aws_s3_sync_default")),
        "unchanged_engine_s": seconds("unchanged/engine"),
        "unchanged_aws_s3_sync_s": seconds("unchanged/aws_s3_sync"),
        "unchanged_plain_loop_s": seconds("unchanged/plain_loop"),
        "unchanged_engine_vs_aws_s3_sync": ratio(seconds("unchanged/engine"), seconds("unchanged/aws_s3_sync")),
        "changed_engine_s": seconds("changed/engine"),
        "changed_aws_s3_sync_s": seconds("changed/aws_s3_sync"),
        "changed_plain_loop_s": seconds("changed/plain_loop"),
        "changed_engine_vs_aws_s3_sync": ratio(seconds("changed/engine"), seconds("changed/aws_s3_sync")),
        "changed_engine_vs_plain_loop": ratio(seconds("changed/engine"), seconds("changed/plain_loop")),
        "requests": {row: values.get("requests") for row, values in rows.items()},
        "unchanged_engine_requests": rows["unchanged/engine"]["requests"],
        # The backup record is written by the service, outside the engine: one more request.
        "unchanged_engine_requests_with_record": rows["unchanged/engine"]["requests"] + 1,
        "unchanged_request_budget": request_budget,
        "compare_entries": args.entries,
        "compare_peak_mb": memory.get("peak_mb"),
        "compare_baseline_mb": memory.get("baseline_mb"),
        "compare_seconds": memory.get("seconds"),
        "targets": {
            "full_vs_plain_loop_max": 1.05,
            "full_vs_aws_s3_sync_max": 0.8,
            "unchanged_requests_max": request_budget,
            "unchanged_vs_aws_s3_sync_max": 0.5,
            "compare_peak_mb_max": 300,
        },
    }
    met = {
        "full_vs_plain_loop": (report["full_engine_vs_plain_loop"] or 99) <= 1.05,
        "full_vs_aws_s3_sync": (report["full_engine_vs_aws_s3_sync"] or 99) <= 0.8,
        "full_vs_aws_s3_sync_default": (report["full_engine_vs_aws_s3_sync_default"] or 99) <= 0.8,
        "unchanged_requests": report["unchanged_engine_requests_with_record"] <= request_budget,
        "unchanged_vs_aws_s3_sync": (report["unchanged_engine_vs_aws_s3_sync"] or 99) <= 0.5,
        "compare_peak_mb": (report["compare_peak_mb"] or 9999) < 300,
    }
    report["met"] = met
    print("targets met: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in met.items()))
    print(json.dumps(report, separators=(",", ":")))


if __name__ == "__main__":
    main()

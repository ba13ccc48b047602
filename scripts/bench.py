"""`make bench`: how fast, how many requests and how much CPU a backup takes, beside `aws s3 sync` and a plain
boto3 loop, against an emulator that answers with S3's latency.

The emulator is moto's server in a process of its own (scripts/bench_emulator.py): each request waits a
fixed delay in the server before it is answered, and requests in flight at once wait at once, as in S3. It
counts every request, and reports its own CPU time, so each run says whether the emulator bound it (busy for
more than half of the run). No target applies to a bound run.

Cases, each run by four tools, in rotating order, the median of `--repeats` runs reported:
  full       a first backup of `--full-objects` objects of 4 KiB, at `--full-latency-ms` (high enough that
             the emulator does not bind 32 copies in flight)
  unchanged  a backup of `--objects` objects (256 bytes) with nothing changed at the source, at `--latency-ms`
  changed    the same with 1% of the objects rewritten
Tools: this engine (one plan, 32 copies in flight, compared with its previous snapshot as the service names
it: the version and hash a sealed record holds), `aws s3 sync` with 32 requests in flight and with the CLI's
defaults (10), and a plain loop (list, then `copy_object` on 32 threads). The plain loop has no notion of
"unchanged": in the large cases it copies every object every time, the same work whatever changed, at the
emulator's pace of about 100 copies a second (minutes at 20,000, bound), so it runs there only when asked
(`--plain-repeats`, in the unchanged case); its pace per object is the full case's.

Each run reports wall time, requests counted at the emulator, LIST requests in all and how many of them had
to run one after another (the engine counts its own; the others list one page after another, so all of
theirs), client CPU seconds per 1,000 objects (what a Lambda bills for, by memory size), and the emulator's
busy time.

The restore case (scripts/bench_restore.py) restores a snapshot into a new bucket with this product, with
s3-pit-restore and with a plain loop, and compares every restored object's bytes with the snapshot's.
`--cases` picks the cases that run (all by default).

Then, in a child process, the peak memory of comparing a 1,000,000-entry snapshot with a 1,000,000-object
listing through the engine's own merge, with an in-memory fake of S3 and a fake reader.

A report, not a test: it prints, and never fails on a number. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_emulator import Emulator  # noqa: E402

THREADS = 32
FULL_OBJECT_SIZE = 4096
LARGE_OBJECT_SIZE = 256
TOOLS = ["engine", "aws_s3_sync", "aws_s3_sync_default", "plain_loop"]
# What a one-plan backup sends besides the engine's requests: its record created, read, saved and sealed;
# the listing of records, the previous sealed record and its pruned marker; the drift check's seven reads
# of the bucket's settings, its inventory configuration and the inventory bucket's policy and encryption;
# the alert (tests/test_backup_engine.py, BOOKKEEPING_REQUESTS).
BOOKKEEPING_REQUESTS = 19
# A run is bound by the emulator when its process was busy for more than this share of the run.
BOUND_SHARE = 0.5


def make_plan(bucket: str, source_bucket: str) -> Any:
    from chalicelib.plans import Lifecycle, Plan, S3Source

    return Plan(name="bench", bucket=bucket, sources=(S3Source(name="source", bucket=source_bucket),), lifecycle=Lifecycle(()))


def run_engine(clients: Any, source: str, bucket: str, bases: dict[str, Any]) -> dict[str, Any]:
    """One plan run, compared with the bucket's previous snapshot as the service names it: the version and
    hash the previous backup's sealed record holds (`bases`, by bucket; the service reads that record once
    per backup for all its plans)."""
    from chalicelib.backup.base import Base
    from chalicelib.backup.plan_backup import PlanBackup
    from chalicelib.backup.sources import make_reader
    from chalicelib.catalog.records import new_backup_id

    backup_id = new_backup_id()
    backup = PlanBackup(make_plan(bucket, source), clients.s3, backup_id,
                        lambda src: make_reader(src, clients.s3, clients.dynamodb), max_workers=THREADS,
                        base=bases.get(bucket))
    result = backup.run()
    assert result.status == "SUCCEEDED", result
    bases[bucket] = Base(backup_id, result.manifest_version, result.manifest_sha256)
    return {"copied": result.copied, "unchanged": result.unchanged, "list_depth": backup.list_depth,
            "list_ranges": backup.list_ranges}


def prime_engine(emulator: Emulator, s3: Any, source: str, bucket: str) -> Any:
    """The engine's previous snapshot of `source` in `bucket`, as a first backup would leave it (every
    object under data/<source name>/, a manifest naming those versions), made inside the emulator: a real
    first backup of 20,000 objects would cost minutes of the emulator's copies, measured by nobody."""
    from chalicelib.backup.base import Base
    from chalicelib.catalog.manifests import Entry, ManifestWriter, manifest_key, put_manifest
    from chalicelib.catalog.records import new_backup_id
    from chalicelib.layout import data_key

    plan = make_plan(bucket, source)
    name = plan.sources[0].name
    backup_id = new_backup_id()
    writer = ManifestWriter()
    for key, version, etag, size in sorted(emulator.clone(source, bucket, prefix=data_key(name, ""))):
        writer.add(Entry(name, key, version, size, etag, f"etag:{etag}:{size}"))
    body = writer.finish({"plan": plan.name, "backup_id": backup_id, "bucket": bucket}, keep_held=False)
    try:
        written = put_manifest(s3, bucket, manifest_key(plan.name, backup_id), body)
    finally:
        body.close()
        writer.close()
    return Base(backup_id, written.version_id, written.sha256)


def run_plain(clients: Any, source: str, bucket: str) -> dict[str, Any]:
    s3 = clients.s3
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source)
            for item in page.get("Contents", [])]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda key: s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source, "Key": key}), keys))
    return {"copied": len(keys)}


def run_sync(env: dict[str, str], source: str, bucket: str) -> dict[str, Any]:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if aws is None:
        return {"error": "aws CLI not installed (pip install -r requirements-dev.txt)"}
    command = [aws, "s3", "sync", f"s3://{source}", f"s3://{bucket}", "--endpoint-url", env["AWS_ENDPOINT_URL"],
               "--only-show-errors", "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    return {}


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measured(emulator: Emulator, run: Any, objects: int) -> dict[str, Any]:
    """One run: wall time, requests and LIST requests counted at the emulator, client and emulator CPU."""
    emulator.counts(reset=True)
    server_before = emulator.counts()["cpu_seconds"]
    client_before = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    outcome = run()
    seconds = time.perf_counter() - start
    client = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - client_before
    after = emulator.counts()
    counts = after["counts"]
    server = after["cpu_seconds"] - server_before
    lists = counts.get("LIST", 0)
    top = {k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if k != "total" and not k.startswith("LIST ")}
    return {
        "seconds": round(seconds, 3),
        "requests": counts.get("total", 0),
        "lists": lists,
        # Sync and the plain loop list one page after another: every one of their pages is on the path.
        "list_depth": outcome.pop("list_depth", lists),
        "lists_by_bucket": {k[5:]: v for k, v in counts.items() if k.startswith("LIST ")},
        "by_request": dict(list(top.items())[:6]),
        "client_cpu_s": round(client, 3),
        "client_cpu_s_per_1000": round(client * 1000 / objects, 4),
        "emulator_cpu_s": round(server, 3),
        "emulator_busy": round(server / seconds, 3) if seconds else None,
        **outcome,
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.emulator = Emulator()
        self.config = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
        # The CLI's default is 10 requests in flight; aws_s3_sync gets the same 32 as the others.
        self.config.write("[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = 32\n")
        self.config.close()
        self.default_config = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
        self.default_config.write("[default]\nregion = us-east-1\n")
        self.default_config.close()
        self.env = {
            **os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.emulator.url, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        os.environ.update({k: self.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                                    "AWS_ENDPOINT_URL")})
        from chalicelib.aws import Clients

        self.clients = Clients()
        self.s3 = self.clients.s3
        self.samples: dict[str, list[dict[str, Any]]] = {}
        # The engine's latest snapshot in each of its buckets, as a sealed record would name it.
        self.bases: dict[str, Any] = {}

    def close(self) -> None:
        self.emulator.stop()
        os.unlink(self.config.name)
        os.unlink(self.default_config.name)

    def bucket(self, name: str, versioned: bool = True) -> str:
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def run(self, tool: str, source: str, bucket: str) -> dict[str, Any]:
        if tool == "engine":
            return run_engine(self.clients, source, bucket, self.bases)
        if tool == "aws_s3_sync":
            return run_sync({**self.env, "AWS_CONFIG_FILE": self.config.name}, source, bucket)
        if tool == "aws_s3_sync_default":
            return run_sync({**self.env, "AWS_CONFIG_FILE": self.default_config.name}, source, bucket)
        return run_plain(self.clients, source, bucket)

    def sample(self, case: str, tool: str, rep: int, run: Any, objects: int) -> None:
        sample = measured(self.emulator, run, objects)
        self.samples.setdefault(f"{case}/{tool}", []).append(sample)
        shown = {k: sample[k] for k in ("seconds", "requests", "lists", "list_depth", "client_cpu_s", "emulator_busy")}
        print(f"  {case:<9} {tool:<19} #{rep + 1} {json.dumps(shown)}", flush=True)

    def full(self) -> None:
        objects, latency = self.args.full_objects, self.args.full_latency_ms
        print(f"full backup: {objects} objects of {FULL_OBJECT_SIZE} bytes, {latency:g} ms per request", flush=True)
        self.emulator.set_latency(0)
        source = self.bucket("full-source", versioned=False)
        self.emulator.seed(source, objects, FULL_OBJECT_SIZE)
        targets = {(tool, rep): self.bucket(f"full-{tool.replace('_', '-')}-{rep}") for tool in TOOLS
                   for rep in range(self.args.repeats)}
        self.emulator.set_latency(latency)
        for rep in range(self.args.repeats):
            # Rotate the order, so no tool always runs first (or last) on a warming emulator.
            for tool in TOOLS[rep % len(TOOLS):] + TOOLS[: rep % len(TOOLS)]:
                self.sample("full", tool, rep, lambda: self.run(tool, source, targets[tool, rep]), objects)

    def large(self) -> None:
        objects, latency = self.args.objects, self.args.latency_ms
        print(f"unchanged and 1% changed: {objects} objects of {LARGE_OBJECT_SIZE} bytes, {latency:g} ms per request",
              flush=True)
        self.emulator.set_latency(0)
        source = self.bucket("large-source", versioned=False)
        self.emulator.seed(source, objects, LARGE_OBJECT_SIZE)
        targets = {tool: self.bucket(f"large-{tool.replace('_', '-')}", versioned=tool == "engine") for tool in TOOLS}
        # Each tool starts from a complete copy: the engine's own first backup (its previous snapshot), the
        # sync targets cloned inside the emulator (newer than the source, so sync counts them as unchanged).
        started = time.perf_counter()
        self.bases[targets["engine"]] = prime_engine(self.emulator, self.s3, source, targets["engine"])
        for tool in ("aws_s3_sync", "aws_s3_sync_default"):
            self.emulator.clone(source, targets[tool])
        print(f"  set up in {time.perf_counter() - started:.0f} s (not measured)", flush=True)
        changes = max(1, objects // 100)
        for case in ("unchanged", "changed"):
            for rep in range(self.args.repeats):
                if case == "changed":
                    # A different 1% each time, rewritten before the tools run (at no latency, not measured).
                    self.emulator.set_latency(0)
                    first = (rep * 7919) % max(1, objects - changes)
                    self.emulator.seed(source, changes, LARGE_OBJECT_SIZE, first=first, tag=f"{case}-{rep}-")
                self.emulator.set_latency(latency)
                for tool in TOOLS[rep % len(TOOLS):] + TOOLS[: rep % len(TOOLS)]:
                    # The plain loop copies every object whatever changed: the same work in both cases, at
                    # the emulator's pace (about 100 copies a second), so it runs only `--plain-repeats`
                    # times, in the unchanged case.
                    if tool == "plain_loop" and (case == "changed" or rep >= self.args.plain_repeats):
                        continue
                    self.sample(case, tool, rep, lambda: self.run(tool, source, targets[tool]), objects)


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
            item = {"Key": self.manifest_key, "LastModified": datetime.now(timezone.utc), "ETag": '"previous"'}
            return _FakePaginator([{"Contents": [item]}])
        return _FakePaginator([{}])

    def get_bucket_versioning(self, **kwargs: Any) -> dict[str, Any]:
        return {"Status": "Enabled"}

    def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
        return {"Body": open(self.manifest_path, "rb"), "VersionId": "v", "ETag": '"previous"'}

    def put_object(self, Body: Any = b"", **kwargs: Any) -> dict[str, Any]:
        if hasattr(Body, "read"):
            while chunk := Body.read(1 << 20):
                self.written += len(chunk)
        return {"VersionId": "v", "ETag": '"e"'}

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        return {}


class FakeReader:
    # The engine reads the previous snapshot's page marks for readers that list in ranges: so does this one.
    page_size = 1000

    def __init__(self, source: Any, count: int) -> None:
        self.source = source
        self.count = count

    def list_objects(self, previous_pages: Any = None) -> Any:
        from chalicelib.backup.sources import SourceObject

        for index in range(self.count):
            yield SourceObject(key=f"data/{index:09d}.bin", size=FULL_OBJECT_SIZE, identity=f"etag:{index:032x}:{FULL_OBJECT_SIZE}")

    def store(self, obj: Any, bucket: str, key: str) -> Any:
        raise AssertionError("nothing changed: nothing is copied")

    def close(self) -> None:
        pass


def peak_rss_kb() -> int:
    """This process's peak resident memory. Not `ru_maxrss`: on Linux a child starts with its parent's
    (fork copies the parent's memory and exec keeps the mark), so the benchmark's own size would show."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def compare_child(entries: int) -> None:
    from chalicelib.backup.base import Base
    from chalicelib.backup.plan_backup import PlanBackup
    from chalicelib.catalog.manifests import Entry, ManifestWriter, manifest_key

    baseline = peak_rss_kb()
    plan = make_plan("bench-memory", "bench-source")
    key = manifest_key(plan.name, "20261125T000000000Z-previous")
    writer = ManifestWriter()
    for index in range(entries):
        writer.add(Entry("source", f"data/{index:09d}.bin", "v" * 32, FULL_OBJECT_SIZE, f"{index:032x}",
                         f"etag:{index:032x}:{FULL_OBJECT_SIZE}"))
    body = writer.finish({"plan": plan.name, "backup_id": "20261125T000000000Z-previous"}, keep_held=False)
    spool = tempfile.NamedTemporaryFile(suffix=".jsonl.gz", delete=False)
    shutil.copyfileobj(body, spool)
    spool.close()
    body.close()
    writer.close()
    digest = hashlib.sha256(Path(spool.name).read_bytes()).hexdigest()
    before = peak_rss_kb()
    s3 = FakeS3(key, spool.name)
    start = time.perf_counter()
    # The previous snapshot as the catalog's sealed record names it: its version and hash.
    base = Base("20261125T000000000Z-previous", "v", digest)
    result = PlanBackup(plan, s3, "20261126T000000000Z-current", lambda source: FakeReader(source, entries), base=base).run()
    seconds = time.perf_counter() - start
    peak = peak_rss_kb()
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
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------------------------
# The report.


def medians(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for row, runs in samples.items():
        if any("error" in run for run in runs):
            rows[row] = {"error": next(run["error"] for run in runs if "error" in run)}
            continue
        ordered = sorted(runs, key=lambda sample: sample["seconds"])
        median = ordered[len(ordered) // 2]
        cpu = sorted(run["client_cpu_s_per_1000"] for run in runs)[len(runs) // 2]
        if any("bytes_identical" in run for run in runs):
            median = {**median, "bytes_identical": all(run.get("bytes_identical") for run in runs)}
        rows[row] = {**median, "client_cpu_s_per_1000": cpu, "runs": len(runs),
                     "seconds_all": [run["seconds"] for run in runs],
                     "bound": median["emulator_busy"] is not None and median["emulator_busy"] > BOUND_SHARE}
    return rows


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    header = f"{'case':<10}{'tool':<21}{'seconds':>9}{'requests':>10}{'LIST':>7}{'LIST in a row':>15}{'client CPU s/1000':>19}{'emulator busy':>15}  bound"
    print(header)
    print("-" * len(header))
    for row, values in rows.items():
        case, tool = row.split("/")
        if "error" in values:
            print(f"{case:<10}{tool:<21}  error: {values['error'][:80]}")
            continue
        runs = "" if values["runs"] >= 3 else f" ({values['runs']} run)"
        print(f"{case:<10}{tool:<21}{values['seconds']:>9.2f}{values['requests']:>10,}{values['lists']:>7}"
              f"{values['list_depth']:>15}{values['client_cpu_s_per_1000']:>19.4f}{values['emulator_busy']:>14.0%}"
              f"  {'BOUND' if values['bound'] else 'no'}{runs}")


def report(args: argparse.Namespace, rows: dict[str, dict[str, Any]], memory: dict[str, Any], load: list[float]) -> dict[str, Any]:
    def get(row: str, name: str) -> Any:
        return rows.get(row, {}).get(name)

    n = args.objects
    unchanged_budget = math.ceil(n / 1000) + 4
    ranges = get("unchanged/engine", "list_ranges") or 1
    critical_budget = math.ceil(n / 1000 / ranges) + 3
    full_bound = any(get(f"full/{tool}", "bound") for tool in ("engine", "plain_loop", "aws_s3_sync_default"))
    figures = {
        "full_engine_vs_plain_loop": ratio(get("full/engine", "seconds"), get("full/plain_loop", "seconds")),
        "full_engine_vs_aws_s3_sync": ratio(get("full/engine", "seconds"), get("full/aws_s3_sync", "seconds")),
        "full_engine_vs_aws_s3_sync_default": ratio(get("full/engine", "seconds"), get("full/aws_s3_sync_default", "seconds")),
        "full_client_cpu_engine_vs_plain_loop": ratio(get("full/engine", "client_cpu_s_per_1000"),
                                                      get("full/plain_loop", "client_cpu_s_per_1000")),
        "unchanged_engine_vs_aws_s3_sync_default": ratio(get("unchanged/engine", "seconds"),
                                                         get("unchanged/aws_s3_sync_default", "seconds")),
        "changed_engine_vs_aws_s3_sync_default": ratio(get("changed/engine", "seconds"), get("changed/aws_s3_sync_default", "seconds")),
        "unchanged_engine_list_depth": get("unchanged/engine", "list_depth"),
        "unchanged_engine_lists": get("unchanged/engine", "lists"),
        "unchanged_engine_list_ranges": ranges,
        "unchanged_aws_s3_sync_list_depth": get("unchanged/aws_s3_sync", "list_depth"),
        "unchanged_engine_requests": get("unchanged/engine", "requests"),
        # The backup as a whole: the engine's requests and the service's bookkeeping around them, a fixed
        # count per one-plan backup whatever its size (tests/test_backup_engine.py holds it request by request).
        "unchanged_backup_requests_in_all": (get("unchanged/engine", "requests") or 0) + BOOKKEEPING_REQUESTS,
    }
    targets = {
        "full_vs_plain_loop_max": 1.1,
        "full_vs_aws_s3_sync_default_max": 0.45,
        "unchanged_list_depth_max": critical_budget,
        "unchanged_list_ranges_min": 8,
        "full_client_cpu_vs_plain_loop_max": 1.2,
        "unchanged_requests_max": unchanged_budget,
        "compare_peak_mb_max": 300,
    }
    met = {
        # No time target applies to a run the emulator bound.
        "full_vs_plain_loop": None if full_bound else (figures["full_engine_vs_plain_loop"] or 99) <= 1.1,
        "full_vs_aws_s3_sync_default": None if full_bound else (figures["full_engine_vs_aws_s3_sync_default"] or 99) <= 0.45,
        "unchanged_list_depth": (figures["unchanged_engine_list_depth"] or 999) <= critical_budget and ranges >= 8,
        "full_client_cpu": (figures["full_client_cpu_engine_vs_plain_loop"] or 99) <= 1.2,
        "unchanged_requests_engine": (figures["unchanged_engine_requests"] or 999) <= unchanged_budget,
        "unchanged_requests_in_all": figures["unchanged_backup_requests_in_all"] <= unchanged_budget,
        "compare_peak_mb": (memory.get("peak_mb") or 9999) < 300,
    }
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": load,
                    "load_after": [round(x, 2) for x in os.getloadavg()], "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "objects": n, "full_objects": args.full_objects, "latency_ms": args.latency_ms,
        "full_latency_ms": args.full_latency_ms, "threads": THREADS, "repeats": args.repeats,
        "bound_share": BOUND_SHARE,
        "rows": {row: {k: v for k, v in values.items() if k not in ("by_request",)} for row, values in rows.items()},
        **figures,
        "compare_entries": args.entries, "compare_peak_mb": memory.get("peak_mb"),
        "compare_baseline_mb": memory.get("baseline_mb"), "compare_seconds": memory.get("seconds"),
        "targets": targets, "met": met,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000, help="objects of the unchanged and changed cases")
    parser.add_argument("--latency-ms", type=float, default=100, help="delay per request in the unchanged and changed cases")
    # 32 copies in flight at 400 ms is 80 requests a second: under half of what the emulator can answer, so
    # the full case is not bound; 800 objects keep each run of the slowest tool (10 in flight) to about 30 s.
    parser.add_argument("--full-objects", type=int, default=800, help="objects of the full backup case")
    parser.add_argument("--full-latency-ms", type=float, default=400, help="delay per request in the full backup case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain-repeats", type=int, default=0,
                        help="runs of the plain loop in the unchanged case (it copies every object every time)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--cases", default="full,large,restore",
                        help="which cases run (comma-separated: full, large, restore); the memory case runs with large")
    # As the full backup case: 32 copies in flight at 400 ms keep the emulator under half busy.
    parser.add_argument("--restore-objects", type=int, default=800, help="objects of the restore case")
    parser.add_argument("--restore-latency-ms", type=float, default=400, help="delay per request in the restore case")
    parser.add_argument("--compare-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare_child:
        compare_child(args.compare_child)
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"{os.cpu_count()} CPUs, load average {load}; {THREADS} requests in flight per tool; moto's server in its own process")
    cases = set(args.cases.split(","))
    bench = Bench(args)
    try:
        if "full" in cases:
            bench.full()
        if "large" in cases:
            bench.large()
        if "restore" in cases:
            from bench_restore import restore_case

            restore_case(bench)
    finally:
        bench.close()
    rows = medians(bench.samples)
    memory: dict[str, Any] = {}
    if "large" in cases:
        print(f"memory: a {args.entries:,}-entry snapshot against a {args.entries:,}-object listing", flush=True)
        memory = memory_benchmark(args.entries)
        print(f"  {json.dumps(memory)}")
    print()
    print_table(rows)
    result = report(args, rows, memory, load)
    if "restore" in cases:
        from bench_restore import restore_figures

        restore = restore_figures(rows, args.restore_objects)
        result.update(restore["figures"])
        result["restore_objects"], result["restore_latency_ms"] = args.restore_objects, args.restore_latency_ms
        result["targets"].update(restore["targets"])
        result["met"].update(restore["met"])
    # Only the cases that ran are judged.
    case_of = {"full": "full", "unchanged": "large", "changed": "large", "compare": "large", "restore": "restore"}
    result["met"] = {name: ok for name, ok in result["met"].items() if case_of[name.split("_")[0]] in cases}
    print()
    ran = tuple(f"{case}_" for case in ("full", "unchanged", "changed", "restore") if {"unchanged": "large", "changed": "large"}.get(case, case) in cases)
    for name in [k for k in result if k.startswith(ran)]:
        print(f"{name}: {result[name]}")
    print("targets met: " + ", ".join(f"{name} {'n/a (bound)' if ok is None else 'yes' if ok else 'NO'}"
                                      for name, ok in result["met"].items()))
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()

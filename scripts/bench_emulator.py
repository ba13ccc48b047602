"""The emulator `make bench` measures against: moto's server in a process of its own, made to answer like S3.

- **Latency.** Every request waits a fixed delay (`set_latency`) in the server's own thread for that request
  before moto answers it; the server is threaded, so requests in flight at once wait at once, as they do in
  S3, where what decides a backup's time is how many requests are in flight and how many run one after
  another.
- **Counting.** The server counts every request it receives, by operation, and the LIST requests by bucket:
  every figure is counted at the emulator, whoever sent the request.
- **Its own busy time.** The server reports its process's CPU seconds, so that each case can say whether the
  emulator bound it: one Python process answers everything, at about 100 to 300 copies a second and a few
  tenths of a second of CPU per listing page of 1,000 keys on a machine of two cores, whatever the clients'
  concurrency.
- **Seeding.** Objects are written and buckets cloned inside the server, through moto's own backend: setting
  up 20,000 objects costs seconds, not minutes of requests nobody measures.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

# Seeded keys: a hundred per folder, as a file share would have them.
KEY_FORMAT = "data/{folder:03d}/object-{index:06d}.bin"


def seeded_key(index: int) -> str:
    return KEY_FORMAT.format(folder=index // 100, index=index)


def _operation(environ: dict[str, Any]) -> tuple[str, str | None]:
    """The request's operation, and its bucket when it is a listing."""
    method = environ["REQUEST_METHOD"]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    path = environ.get("PATH_INFO", "").lstrip("/")
    bucket, _, key = path.partition("/")
    if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in environ:
        return "COPY", None
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1], None
    if method == "GET" and bucket and not key and ("list-type" in query or not query or set(query) <= {"prefix", "marker", "max-keys", "encoding-type", "delimiter"}):
        return "LIST", bucket
    if method == "GET" and bucket and not key and "versions" in query:
        return "LIST versions", bucket
    return f"{method} {'&'.join(sorted(query))}".strip(), None


def serve() -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.s3.models import s3_backends
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    latency = [0.0]

    def backend() -> Any:
        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def control(path: str, environ: dict[str, Any]) -> dict[str, Any]:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/__bench/counts":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            with lock:
                answer = {"counts": dict(counts), "cpu_seconds": usage.ru_utime + usage.ru_stime}
                if environ["REQUEST_METHOD"] == "DELETE":
                    counts.clear()
            return answer
        if path == "/__bench/latency":
            latency[0] = float(query["ms"]) / 1000
            return {"latency_ms": latency[0] * 1000}
        if path == "/__bench/seed":
            size, first, count = int(query["size"]), int(query.get("first", 0)), int(query["count"])
            pad = os.urandom(size)
            for index in range(first, first + count):
                key = seeded_key(index)
                body = (query.get("tag", "") + key).encode() + pad
                backend().put_object(query["bucket"], key, body[:size])
            return {"seeded": count}
        if path == "/__bench/clone":
            # Every object of `source` written again under `prefix` of `target`; what was written, so that a
            # snapshot naming those versions can be made without a request per object.
            source = backend().get_bucket(query["source"])
            keys = [(name, key.value) for name, key in source.keys.items()]
            written = []
            for name, value in keys:
                stored = backend().put_object(query["target"], query.get("prefix", "") + name, value)
                written.append([name, stored.version_id, stored.etag.strip('"'), stored.size])
            return {"cloned": len(keys), "written": written}
        raise KeyError(path)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__bench/"):
            body = json.dumps(control(path, environ)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        operation, listed = _operation(environ)
        with lock:
            counts["total"] += 1
            counts[operation] += 1
            if listed:
                counts[f"LIST {listed}"] += 1
        if latency[0]:
            # In this request's own thread: requests in flight at once wait at once.
            time.sleep(latency[0])
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
    """The emulator's process, seen from the benchmark."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, path: str, method: str = "POST", **query: Any) -> dict[str, Any]:
        from urllib.parse import urlencode

        request = urllib.request.Request(f"{self.url}/__bench/{path}?{urlencode(query)}", method=method)
        with urllib.request.urlopen(request, timeout=600) as response:
            return dict(json.loads(response.read()))

    def counts(self, reset: bool = False) -> dict[str, Any]:
        """{"counts": requests by operation, "cpu_seconds": the server process's CPU time so far}."""
        return self._call("counts", method="DELETE" if reset else "GET")

    def set_latency(self, ms: float) -> None:
        self._call("latency", ms=ms)

    def seed(self, bucket: str, count: int, size: int, first: int = 0, tag: str = "") -> None:
        self._call("seed", bucket=bucket, count=count, size=size, first=first, tag=tag)

    def clone(self, source: str, target: str, prefix: str = "") -> list[tuple[str, str, str, int]]:
        """Copy every object of `source` into `target` (under `prefix`) inside the emulator: for each, its
        key, and the version id, ETag and size written."""
        return [tuple(row) for row in self._call("clone", source=source, target=target, prefix=prefix)["written"]]  # type: ignore[misc]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


if __name__ == "__main__":
    serve()

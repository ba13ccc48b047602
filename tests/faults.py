"""Fault injection for tests, on botocore's event hooks: any client, any operation, seeded and replayable.

Two kinds of fault matter for idempotency, and both are covered:

- nothing was written: the connection dropped or timed out before the service acted (`reset`, `timeout`
  raise `ConnectionClosedError` / `ReadTimeoutError` from `before-send`, so moto never sees the request);
- written, but the caller saw an error: the service acted, then the answer was a 5xx (`slowdown`: 503
  SlowDown, `error500`: 500 InternalError). The handler returns the error response; moto's stubber still
  runs after it and does the work, but botocore keeps the first response, the error.

And a third for crash tests: `crash` stops "the process" at operation k: that call and every later one
fail, so nothing from k on reaches the service. In the test's own thread they raise `Crash`, a BaseException,
so no `except Exception` in the code under test can swallow it. In other threads (copy pools, boto3's transfer
threads) they raise `ConnectionClosedError`: boto3's transfer manager only handles `Exception` and would
wait for ever on a task that died of a BaseException, whereas a dead process simply stops. Either way no
call reaches the service, so what S3 holds is what a crash at k leaves; the test's thread then meets `Crash`
at its own next call.

The handler is registered with `register_first`, so it runs before moto's stubber (which every client gets
from botocore's built-in handlers when moto is imported). botocore emits `before-send` to all handlers and
uses the first response: raising stops the emit before moto (nothing written); returning a response lets
moto act but the caller sees ours (written, then an error). Against real AWS or moto's server the second kind
would need the real send first; these tests run moto in process.

Usage:
    faults = FaultInjector(seed=7)
    faults.add("s3.CopyObject", "slowdown", rate=0.05)
    faults.add("*", "reset", rate=0.05)
    faults.attach(clients.s3, clients.dynamodb, clients.sns)
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.response import StreamingBody

KINDS = ("reset", "timeout", "slowdown", "error500", "crash")
# Faults that leave no trace at the service, and faults after which the write has happened.
NOT_WRITTEN = ("reset", "timeout")
WRITTEN = ("slowdown", "error500")


class Crash(BaseException):
    """The process died here: nothing after this point runs."""


@dataclass
class Rule:
    # "service.Operation" glob: "s3.CopyObject", "s3.*", "*.Put*", "*".
    operation: str
    kind: str
    rate: float = 1.0
    # Only requests whose URL contains this (e.g. a bucket name) are candidates.
    url_contains: str | None = None
    # At most this many faults from this rule (None: unlimited; a fault that never clears).
    times: int | None = None
    fired: int = 0

    def matches(self, operation: str, url: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.url_contains is not None and self.url_contains not in url:
            return False
        return fnmatch.fnmatchcase(operation, self.operation)


class _RawBody:
    """Enough of a urllib3 response for botocore to read an injected error body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body

    def read(self, *args: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def _error_response(service: str, url: str, status: int, code: str) -> AWSResponse:
    message = "injected fault"
    if service in ("dynamodb",):
        body = f'{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}'.encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    elif service in ("sns", "sqs", "cloudwatch"):
        body = (
            f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>injected</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    else:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>injected</RequestId></Error>".encode()
        headers = {"Content-Type": "application/xml"}
    return AWSResponse(url, status, headers, _RawBody(body))


class FaultInjector:
    """Seeded faults for the clients it is attached to. Thread-safe; `log` lists what fired."""

    def __init__(self, seed: int = 0) -> None:
        self.rules: list[Rule] = []
        self.seed = seed
        self.lock = threading.Lock()
        self.operations = 0
        self.crash_at: int | None = None
        self.crashed = False
        self.log: list[tuple[int, str, str]] = []
        self.calls: Counter[str] = Counter()
        self._sent: Counter[tuple[str, str]] = Counter()
        # Every operation in the order it was sent (service.Operation).
        self.sequence: list[str] = []
        self._clients: list[Any] = []
        # The thread that meets `Crash`: the test's.
        self._owner = threading.current_thread()

    def add(
        self,
        operation: str = "*",
        kind: str = "reset",
        rate: float = 1.0,
        url_contains: str | None = None,
        times: int | None = None,
    ) -> Rule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        rule = Rule(operation, kind, rate, url_contains, times)
        self.rules.append(rule)
        return rule

    def crash_at_operation(self, k: int) -> None:
        """Operation number k (0-based, counting every attempt) and all after it raise `Crash`."""
        self.crash_at = k

    def attach(self, *clients: Any) -> FaultInjector:
        for client in clients:
            client.meta.events.register_first("before-send", self._before_send)
            self._clients.append(client)
        return self

    def detach(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-send", self._before_send)
        self._clients = []

    def _decide(self, operation: str, url: str) -> str | None:
        with self.lock:
            index = self.operations
            self.operations += 1
            self.calls[operation] += 1
            self.sequence.append(operation)
            if self.crash_at is not None and index >= self.crash_at:
                self.crashed = True
                self.log.append((index, operation, "crash"))
                return "crash"
            # How many times this very request (operation and URL: bucket, key, query) was sent before: a
            # retry is drawn anew, and the same request meets the same fault on every run of the seed.
            ordinal = self._sent[(operation, url)]
            self._sent[(operation, url)] += 1
            for number, rule in enumerate(self.rules):
                if rule.matches(operation, url) and self._draw(number, operation, url, ordinal) < rule.rate:
                    rule.fired += 1
                    self.log.append((index, operation, rule.kind))
                    if rule.kind == "crash":
                        # A dead process makes no further calls: everything from here on crashes too.
                        self.crash_at = index
                        self.crashed = True
                    return rule.kind
        return None

    def _draw(self, rule: int, operation: str, url: str, attempt: int) -> float:
        """A number in [0, 1) fixed by the seed, the rule, the request and its attempt: the same request
        meets the same fault on every run of a seed, whatever order the threads send in (a shared random
        stream would hand its draws to whichever thread asked first). Requests whose URL names something
        random (a new backup id) still differ between runs; every DynamoDB request has the same URL, so there
        the n-th request of an operation is what is fixed."""
        digest = hashlib.blake2b(f"{self.seed}/{rule}/{operation}/{url}/{attempt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _before_send(self, request: Any, event_name: str = "", **kwargs: Any) -> AWSResponse | None:
        # event_name: "before-send.<service>.<Operation>"
        _, service, op = (event_name.split(".", 2) + ["", ""])[:3]
        operation = f"{service}.{op}"
        kind = self._decide(operation, request.url)
        if kind is None:
            return None
        if kind == "crash":
            if threading.current_thread() is self._owner:
                raise Crash(f"crashed at {operation}")
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind == "reset":
            raise ConnectionClosedError(endpoint_url=request.url)
        if kind == "timeout":
            raise ReadTimeoutError(endpoint_url=request.url)
        # Written, then the answer is an error: botocore emits `before-send` to every handler and keeps the
        # first response, so moto's stubber, registered after this one, still performs the request.
        if kind == "slowdown":
            return _error_response(service, request.url, 503, "SlowDown" if service == "s3" else "ServiceUnavailable")
        return _error_response(service, request.url, 500, "InternalError" if service != "dynamodb" else "InternalServerError")


def damage_reads(client: Any, key_part: str) -> None:
    """A wrapping fault: S3's metadata stays intact, the bytes that arrive do not (a damaged disk or replica).
    Every GetObject of a key containing `key_part` answers with its first byte flipped."""

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["damaged_key"] = params.get("Key", "")

    def alter(parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        if key_part in context.get("damaged_key", "") and "Body" in parsed:
            data = bytearray(parsed["Body"].read())
            data[0] ^= 0xFF
            parsed["Body"] = StreamingBody(io.BytesIO(bytes(data)), len(data))

    client.meta.events.register("provide-client-params.s3.GetObject", remember)
    client.meta.events.register("after-call.s3.GetObject", alter)


def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard retry mode waits up to 20 s between attempts; tests retry at once (same attempts, same quota)."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture
def fault_injector(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FaultInjector]:
    """`fault_injector(seed)` makes an injector; every injector made is detached after the test."""
    no_retry_delay(monkeypatch)
    made: list[FaultInjector] = []

    def make(seed: int = 0) -> FaultInjector:
        injector = FaultInjector(seed)
        made.append(injector)
        return injector

    yield make  # type: ignore[misc]
    for injector in made:
        injector.detach()

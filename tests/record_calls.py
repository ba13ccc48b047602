"""A pytest plugin: record every AWS call the system's own code makes during the whole test run, and
check at the end that the generated least-privilege policy of the function that made it allows each one.

How a call is recorded: a botocore `before-parameter-build` handler, added to botocore's built-in
handlers so every session (and so every client) made during the run has it, sees each API call with
its parameters. A call counts as the system's when the calling thread's stack passes through `app.py`
or a runtime module of `chalicelib/`, or the thread was started from such code (the copy pool, boto3's
transfer threads). Calls made by tests and fixtures themselves (seeding sources, provisioning buckets,
reading results) are not the system's and are ignored, and so are calls made with the vault account's
credentials (a restore from the vault: `aws.vault_clients`), which no function's role governs.

Which function made it: `tests/call_owner.py` decides from the calling frames (the app.py handler, the
in-process hand-off to a worker, or the chalicelib entry point a test drives), and a thread started by the
system's code belongs to the function that started it. The operator's command line, and internals a test
drives with no entry point, are checked against the union of every function's policy.

What the check uses as the policies: `chalicelib.deploy.policy.generate` of each function for the
configurations the code ran with (every Plan, PlanSet, Settings and source seen in the system's frames when
it made a call, and every plans document loaded during the run), so tests that use their own plans are
checked against the policies those plans would get.

At the end of the session the run fails if a call needs an action or resource its function's policy does
not allow, or needs a forbidden action; each line names the function. `recorded_calls` gives a test the
calls made while it ran.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.handlers
import pytest

from chalicelib.aws import VAULT_USER_AGENT
from tests import call_check
from tests.call_owner import UNATTRIBUTED, owner, thread_owner

ROOT = Path(__file__).resolve().parent.parent
_RUNTIME_DIR = str(ROOT / "chalicelib") + os.sep
_APP_FILE = str(ROOT / "app.py")
# Administrator's tools in chalicelib/: they run with an administrator's rights, never in the functions.
# (The bucket-reading helpers of bucket_state.py and inventory_bucket.py still count when drift.py calls them: its frame is the
# system's.)
ADMIN_MODULES = {
    "deploy/bucket_settings.py",
    "deploy/bucket_state.py",
    "deploy/bucket_differences.py",
    "deploy/inventory_bucket.py",
    "deploy/offsite.py",
    "deploy/vault_bucket.py",
    "deploy/provision.py",
    "deploy/policy.py",
    "deploy/permissions.py",
    "deploy/template.py",
    "deploy/grants.py",
    "deploy/backup_grants.py",
    "deploy/job_grants.py",
    "deploy/roles.py",
    "deploy/scope.py",
    "stages.py",
}
_ADMIN_FILES = {_RUNTIME_DIR + name.replace("/", os.sep) for name in ADMIN_MODULES}
TEST_ACCOUNT = os.environ.get("MOTO_ACCOUNT_ID", "123456789012")


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    region: str
    origin: str  # file:line of the innermost system frame, for the report
    # The function whose role must allow the call (tests/call_owner.py).
    function: str = UNATTRIBUTED


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    configurations: set[Any] = field(default_factory=set)
    topics: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


RECORDER = Recorder()
_LOCAL = threading.local()


def _is_runtime_file(filename: str) -> bool:
    if filename == _APP_FILE:
        return True
    return filename.startswith(_RUNTIME_DIR) and filename not in _ADMIN_FILES


def _runtime_frames() -> list[Any]:
    frames = []
    frame: Any = sys._getframe(1)
    while frame is not None:
        if _is_runtime_file(frame.f_code.co_filename):
            frames.append(frame)
        frame = frame.f_back
    return frames


def _collect_configuration(frames: list[Any]) -> None:
    """Remember the plans and settings the system code is working with."""
    from chalicelib.config import Settings
    from chalicelib.plans import DirectorySource, DynamoDBSource, Plan, PlanSet, S3Source

    kinds = (Plan, PlanSet, Settings, S3Source, DynamoDBSource, DirectorySource)
    found: set[Any] = set()
    topics: set[str] = set()
    for frame in frames:
        values = list(frame.f_locals.items())
        owner = frame.f_locals.get("self")
        if owner is not None:
            values += [(name, getattr(owner, name, None)) for name in ("plan", "plans", "settings", "source")]
        for name, value in values:
            if isinstance(value, kinds):
                try:
                    found.add(value)
                except TypeError:  # not hashable: nothing to remember it by
                    pass
            elif name == "topic_arn" and isinstance(value, str) and value:
                topics.add(value)
    with RECORDER.lock:
        for item in found:
            RECORDER.configurations.add(item)
        RECORDER.topics |= topics


@contextmanager
def _on_this_thread(name: str, value: Any, default: Any) -> Iterator[None]:
    """`_LOCAL.<name>` is `value` inside this block, and what it was (or `default`) after it."""
    before = getattr(_LOCAL, name, default)
    setattr(_LOCAL, name, value)
    try:
        yield
    finally:
        setattr(_LOCAL, name, before)


def the_tests_own_calls() -> AbstractContextManager[None]:
    """Calls made inside this block are the test's (e.g. from an event hook that plays another writer while
    the system's call is on the stack), never the system's."""
    return _on_this_thread("busy", True, False)


def running_as(function: str) -> AbstractContextManager[None]:
    """The system's calls made inside this block (on this thread, and on threads started in it) are
    `function`'s, as deployed: for a part a test drives directly that no entry point of the function reaches
    yet (e.g. the inventory reader the verify worker reads reports with), or another function's work a test
    runs from a hook inside the system's call (the frames outside the block are not this work's)."""
    outside = frozenset(id(frame) for frame in _runtime_frames())
    return _on_this_thread("function", (function, outside), None)


def _owner_here(frames: list[Any]) -> str:
    """`owner` of a call (or a thread started) with these system frames on the stack: inside `running_as`,
    the block's function, judged from the frames inside the block only."""
    running = getattr(_LOCAL, "function", None)
    if running is None:
        return owner(frames, thread_owner())
    function, outside = running
    return owner([frame for frame in frames if id(frame) not in outside], function)


def assume_configuration(item: Any) -> None:
    """A plan (or plans, settings) the system runs with although no system frame holds it, e.g. the plan
    whose bucket a test hands straight to a source reader."""
    with RECORDER.lock:
        RECORDER.configurations.add(item)


def _origin(frames: list[Any]) -> str:
    if not frames:
        return "a thread started by the system"
    code = frames[0].f_code
    return f"{Path(code.co_filename).relative_to(ROOT)}:{frames[0].f_lineno} ({code.co_name})"


def system_origin() -> str | None:
    """Where the system's own code is making the call under way: `file:line (function)` of its innermost
    frame, or "a thread started by the system"; None when a test or fixture makes it."""
    if getattr(_LOCAL, "busy", False):
        return None  # inside `the_tests_own_calls`
    frames = _runtime_frames()
    if not frames and not getattr(threading.current_thread(), "_started_by_system", False):
        return None
    return _origin(frames)


def _record(params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if getattr(_LOCAL, "busy", False):
        return
    _LOCAL.busy = True
    try:
        frames = _runtime_frames()
        started_by_system = getattr(threading.current_thread(), "_started_by_system", False)
        if not frames and not started_by_system:
            return
        config = (context or {}).get("client_config")
        if VAULT_USER_AGENT in (getattr(config, "user_agent_extra", None) or ""):
            # Made with the vault account's credentials (aws.vault_clients), which no function's role grants.
            return
        _collect_configuration(frames)
        origin = _origin(frames)
        call = Call(
            service=model.service_model.service_name,
            operation=model.name,
            # Bodies are not needed to name the permission, and would keep every upload in memory.
            params={k: v for k, v in params.items() if k != "Body"},
            region=(context or {}).get("client_region") or "us-east-1",
            origin=origin,
            function=_owner_here(frames),
        )
        with RECORDER.lock:
            RECORDER.calls.append(call)
    finally:
        _LOCAL.busy = False


_original_start = threading.Thread.start


def _start(self: threading.Thread) -> None:
    # Copy pools and boto3's transfer threads run the system's calls with no system frame on their stack:
    # they are the system's, and belong to the function that started them.
    frames = _runtime_frames()
    self._started_by_system = bool(  # type: ignore[attr-defined]
        getattr(threading.current_thread(), "_started_by_system", False) or frames
    )
    if self._started_by_system:  # type: ignore[attr-defined]
        started_for = _owner_here(frames)
        self._started_for = None if started_for == UNATTRIBUTED else started_for  # type: ignore[attr-defined]
    _original_start(self)


def _remember_plans(parse: Any) -> Any:
    """Every plans document a test loads is a configuration the system could run with: its policy counts,
    also for the parts (a reader, a bucket) a test then drives on their own."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        plans = parse(*args, **kwargs)
        with RECORDER.lock:
            RECORDER.configurations.add(plans)
        return plans

    wrapper.__wrapped__ = parse  # type: ignore[attr-defined]
    return wrapper


def install() -> None:
    import chalicelib.plans_file

    if ("before-parameter-build", _record) not in botocore.handlers.BUILTIN_HANDLERS:
        botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _record))
    threading.Thread.start = _start  # type: ignore[method-assign]
    if not hasattr(chalicelib.plans_file.parse_plans, "__wrapped__"):
        chalicelib.plans_file.parse_plans = _remember_plans(chalicelib.plans_file.parse_plans)


install()


# Checking ---------------------------------------------------------------------------------------------


def check_policies() -> dict[str, dict[str, Any]]:
    """Each function's policy for everything the system ran with during the tests (`call_check.policies_for`)."""
    with RECORDER.lock:
        configurations = list(RECORDER.configurations)
        topics = set(RECORDER.topics)
    return call_check.policies_for(configurations, topics, TEST_ACCOUNT)


def violations(calls: list[Call], policy: dict[str, Any] | None = None) -> list[str]:
    """One line per missing grant, naming the function, or per use of a forbidden action. `policy`: one
    policy document for every call, or one per function (default: `check_policies()`)."""
    return call_check.violations(calls, policy if policy is not None else check_policies(), TEST_ACCOUNT)


class CallsSince:
    """The calls recorded since this object was made."""

    def __init__(self) -> None:
        self.start = len(RECORDER.calls)

    def calls(self) -> list[Call]:
        with RECORDER.lock:
            return list(RECORDER.calls[self.start :])


@pytest.fixture
def recorded_calls() -> CallsSince:
    """The calls the system made while this test ran."""
    return CallsSince()


# What the check found: the calls and operations seen, and every violation. Under pytest-xdist each worker
# checks its own calls and the controller gathers the workers' findings (`pytest_testnodedown`).
_SUMMARY: dict[str, Any] = {"calls": 0, "operations": set(), "functions": {}, "violations": [], "seconds": 0.0}


def _count_functions(counts: dict[str, int]) -> None:
    for function, count in counts.items():
        _SUMMARY["functions"][function] = _SUMMARY["functions"].get(function, 0) + count


def backup_buckets_seen() -> set[str]:
    """Every backup bucket of the configurations the system ran with."""
    from chalicelib.config import Settings
    from chalicelib.plans import Plan, PlanSet

    buckets: set[str] = set()
    for item in list(RECORDER.configurations):
        if isinstance(item, Plan):
            buckets.add(item.bucket)
        elif isinstance(item, PlanSet):
            buckets |= {plan.bucket for plan in item.plans}
        elif isinstance(item, Settings):
            buckets |= {plan.bucket for plan in item.plans.plans}
    return buckets


def bucket_policy_violations(calls: list[Call], buckets: set[str] | None = None) -> list[str]:
    """Calls into a backup bucket that its own bucket policy (as provisioning writes it) refuses: moto does
    not evaluate the create-only statements, so the suite checks every request the system sends."""
    from chalicelib.deploy.bucket_settings import bucket_policy
    from chalicelib.deploy.permissions import denies, required_permissions

    buckets = backup_buckets_seen() if buckets is None else buckets
    policies = {bucket: bucket_policy(bucket) for bucket in buckets}
    found: dict[str, str] = {}
    for call in calls:
        if call.service != "s3" or call.params.get("Bucket") not in policies:
            continue
        for permission in required_permissions(call.service, call.operation, call.params, call.region, TEST_ACCOUNT):
            sid = denies(policies[call.params["Bucket"]], permission)
            if sid and permission.resource.startswith(f"arn:aws:s3:::{call.params['Bucket']}"):
                line = f"REFUSED by the backup bucket's policy ({sid}): {call.operation} on {permission.resource}"
                found.setdefault(line, f"{line} from {call.origin}")
    return sorted(found.values())


def _check_own_calls() -> None:
    if not RECORDER.calls:
        return
    started = time.perf_counter()
    calls = list(RECORDER.calls)
    _SUMMARY["calls"] += len(calls)
    _SUMMARY["operations"] |= {f"{c.service}:{c.operation}" for c in calls}
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.function] = counts.get(call.function, 0) + 1
    _count_functions(counts)
    _SUMMARY["violations"].extend(violations(calls))
    _SUMMARY["violations"].extend(bucket_policy_violations(calls))
    _SUMMARY["seconds"] += time.perf_counter() - started


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _check_own_calls()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker: hand the findings to the controller, which reports them once.
        workeroutput["recorded_calls"] = json.dumps(
            {
                "calls": _SUMMARY["calls"],
                "operations": sorted(_SUMMARY["operations"]),
                "functions": _SUMMARY["functions"],
                "violations": _SUMMARY["violations"],
                "seconds": _SUMMARY["seconds"],
            }
        )
        return
    if _SUMMARY["violations"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    found = getattr(node, "workeroutput", {}).get("recorded_calls")
    if not found:
        return
    data = json.loads(found)
    _SUMMARY["calls"] += data["calls"]
    _SUMMARY["operations"] |= set(data["operations"])
    _count_functions(data.get("functions", {}))
    _SUMMARY["seconds"] += data["seconds"]
    _SUMMARY["violations"].extend(v for v in data["violations"] if v not in _SUMMARY["violations"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SUMMARY["calls"]:
        functions = ", ".join(f"{name} {count}" for name, count in sorted(_SUMMARY["functions"].items()))
        terminalreporter.write_line(
            f"recorded AWS calls: {_SUMMARY['calls']} ({len(_SUMMARY['operations'])} operations) checked against "
            f"the generated policy of the function that made each in {_SUMMARY['seconds']:.1f} s ({functions})"
        )
    found = _SUMMARY["violations"]
    if found:
        terminalreporter.section("AWS calls the generated policy does not allow", red=True)
        for line in found[:50]:
            terminalreporter.write_line(line)
        if len(found) > 50:
            terminalreporter.write_line(f"... and {len(found) - 50} more")
        terminalreporter.write_line(
            "Add the permission to a table of chalicelib/deploy/grants.py, backup_grants.py or job_grants.py that "
            "the function's role has (chalicelib/deploy/roles.py) and run `make policies`."
        )

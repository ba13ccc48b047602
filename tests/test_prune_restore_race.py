"""A restore of a snapshot the prune removes, interleaved with that prune at every point: no version the
restore reads is deleted while it runs, and the restore either gives the recorded bytes or is refused (410)
before it writes anything; never FAILED with NoSuchVersion.

The prune is the outer side. Its S3 operations are counted (an uninterrupted prune of the same history
gives the sequence), and at operation j (before it is sent) a hook runs steps of the restore, which works
through its own clients: the request (`submit`, as POST /restores), and invocations of the restore worker
that each copy one object (a first pass cut into batches of one, stopped by a budget that is always
running out, carried on by the next invocation). What the hook leaves of the restore runs once the prune
has ended. Three ways of cutting the restore are swept over every j:

- `requested`: the request at j, every copy after the prune;
- `started`: the request and the first copy at j, the other copies after the prune;
- `queued`: the request before the prune, the first copy at j, the others after.

So every step boundary of the restore meets every point of the prune, including those between the prune's
last reading of the restore queue before its marks, its marks, its listing after them and its deletes.
After each case the bucket is put back as it was (moto's bucket, deep-copied) and a later prune runs: it
deletes what the held snapshot alone named, leaving the bucket as a prune without a restore does. With
--exhaustive (`make test-full`) every j and every way of cutting; `make test` takes the first way at the
edges, every listing of the restore queue, every marker, the first delete and one other operation drawn by a
fixed seed."""

from __future__ import annotations

import random
from urllib.parse import unquote
from dataclasses import replace
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from chalicelib.aws import Clients
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import new_backup_id
from chalicelib.deploy.provision import provision
from chalicelib.deploy.scope import API_HANDLER, RESTORE_WORKER
from chalicelib.errors import Pruned
from chalicelib.prune.job import PruneJob
from chalicelib.restore import passes
from chalicelib.restore.record import RestoreStatus
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from chalicelib.retention import RetentionPolicy
from tests.record_calls import running_as
from tests.moto_state import clone, freeze, thaw
from tests.stored import entries_of
from tests.test_prune import BUCKET, SOURCE, daily_history, listed_versions, make_settings

DAY0 = datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc)
TARGET = "restore-target"  # one of the stage's restore buckets, which the restore worker may write
MODES = ("requested", "started", "queued")
# The prune's operations that read or write what the two sides decide by.
DECISIVE = ("prefix=meta/restore-queue/", "/meta/restores/", "/meta/pruned/")


class Prune:
    """A prune of the history's plan through its own clients, with a hook at its operation `at`."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.clients = Clients()
        self.sequence: list[str] = []
        self.at: int | None = None
        self.hook: Callable[[], None] = lambda: None
        self.clients.s3.meta.events.register_first("before-send", self._before_send)

    def _before_send(self, request: Any, event_name: str = "", **kwargs: Any) -> None:
        index = len(self.sequence)
        self.sequence.append(f"{event_name.rsplit('.', 1)[-1]} {unquote(request.url)}")
        if index == self.at:
            self.hook()

    def run(self, at: int | None = None, hook: Callable[[], None] = lambda: None) -> Any:
        self.sequence, self.at, self.hook = [], at, hook
        job = PruneJob(self.config.plans, self.clients)
        record = job.run(job.start(["docs"], "api", allow_large=["docs"]).prune_id)
        self.at = None
        return record


class AlwaysOut:
    """An invocation whose time is always running out: a first pass stops after each batch."""

    def running_out(self) -> bool:
        return True


class Restore:
    """One restore of a snapshot into TARGET, taken a step at a time through its own clients: the request,
    then one worker invocation per step (each copies one object). `copied` records what each copy read."""

    def __init__(self, config: Any, backup_id: str) -> None:
        self.clients = Clients()
        self.service = RestoreService.from_settings(config, self.clients)
        self.backup_id = backup_id
        self.restore_id: str | None = None
        self.refused: Pruned | None = None
        self.read: list[tuple[str, str]] = []
        self.clients.s3.meta.events.register(
            "provide-client-params.s3.CopyObject",
            lambda params, **kw: self.read.append((params["CopySource"]["Key"], params["CopySource"]["VersionId"])),
        )

    @property
    def done(self) -> bool:
        if self.refused is not None:
            return True
        return self.restore_id is not None and self.service.get(self.restore_id).finished

    def step(self) -> None:
        if self.done:
            return
        if self.restore_id is None:
            request = RestoreRequest(backup_id=self.backup_id, plan="docs", target=Target(bucket=TARGET))
            try:
                with running_as(API_HANDLER):
                    self.restore_id = self.service.submit(request).restore_id
            except Pruned as exc:
                self.refused = exc
            return
        with running_as(RESTORE_WORKER):
            self.service.passes.run(self.restore_id, None, AlwaysOut(), lambda payload: None)

    def steps(self, count: int) -> None:
        for _ in range(count):
            self.step()

    def finish(self) -> Any:
        while not self.done:
            self.step()
        return None if self.restore_id is None else self.service.get(self.restore_id)


# The history, built once per worker process and shared by its cases.
_HISTORY: dict[str, Any] = {}


def points(sequence: list[str], mode: str, exhaustive: bool, sample: int = 1, seed: int = 20260601) -> list[int]:
    everything = range(len(sequence) + 1)  # the last: after the prune's last operation
    if exhaustive:
        return list(everything)
    decisive = {j for j, call in enumerate(sequence) if any(part in call for part in DECISIVE)}
    decisive.add(next(j for j, call in enumerate(sequence) if call.startswith("DeleteObjects")))
    edges = {0, len(sequence)}
    rest = sorted(set(everything) - decisive - edges)
    return sorted(decisive | edges | set(random.Random(f"{seed}/{mode}").sample(rest, min(sample, len(rest)))))


@pytest.mark.parametrize("mode", MODES)
def test_a_restore_interleaved_with_a_prune_at_any_point_reads_only_versions_that_stay_or_is_refused(
    aws: None, s3: Any, monkeypatch: pytest.MonkeyPatch, exhaustive: bool, mode: str
) -> None:
    if mode != "requested" and not exhaustive:
        pytest.skip("the other ways of cutting the restore run under make test-full (--exhaustive)")
    monkeypatch.setattr(passes, "BATCH_SIZE", 1)
    with time_machine.travel(DAY0, tick=True) as clock:
        config = replace(make_settings(RetentionPolicy(keep_last=2)), restore_buckets=(TARGET,))
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        s3.create_bucket(Bucket=TARGET)
        if not _HISTORY:
            s3.create_bucket(Bucket=SOURCE)
            provision(s3, config.plans.plans[0])
            world = _World(s3, config, clock)
            taken = daily_history(world, 4)
            clock.shift(timedelta(days=3))
            _HISTORY.update(taken=taken, bucket=freeze(backend.buckets[BUCKET]), source=freeze(backend.buckets[SOURCE]))
        else:
            s3.create_bucket(Bucket=BUCKET)
            s3.create_bucket(Bucket=SOURCE)
            backend.buckets[BUCKET] = thaw(_HISTORY["bucket"])
            backend.buckets[SOURCE] = thaw(_HISTORY["source"])
            clock.shift(timedelta(days=7))
        taken: list[str] = _HISTORY["taken"]
        pristine = clone(backend.buckets[BUCKET])
        empty_target = clone(backend.buckets[TARGET])
        restored = taken[0]
        entries = entries_of(s3, BUCKET, "docs", restored)
        recorded = {e.key: s3.get_object(Bucket=BUCKET, Key=e.data_key, VersionId=e.version_id)["Body"].read() for e in entries}

        prune = Prune(config)
        reference = prune.run()
        work = reference.plans["docs"]
        assert reference.status == "SUCCEEDED" and restored in work.removing and work.deleted["versions"] >= 2
        sequence = prune.sequence
        without_restore = listed_versions(s3)
        # Versions only the removed snapshots named: a restore of `restored` without the hold would lose these.
        assert {(e.data_key, e.version_id) for e in entries} - without_restore

        outcomes: dict[str, int] = {}
        chosen = points(sequence, mode, exhaustive)
        for j in chosen:
            backend.buckets[BUCKET] = clone(pristine)
            backend.buckets[TARGET] = clone(empty_target)
            restore = Restore(config, restored)
            before, at_j = {"requested": (0, 1), "started": (0, 2), "queued": (1, 1)}[mode]
            restore.steps(before)
            record = prune.run(j, lambda: restore.steps(at_j))
            assert record.status == "SUCCEEDED", (j, sequence[j:j + 1], record.plans["docs"].errors)
            final = restore.finish()
            present = listed_versions(s3)
            target = {item["Key"]: s3.get_object(Bucket=TARGET, Key=item["Key"])["Body"].read()
                      for item in s3.list_objects_v2(Bucket=TARGET).get("Contents", [])}
            case = (mode, j, sequence[j] if j < len(sequence) else "after the prune")
            # Every version the restore read is still there once it has ended (a deleted version id never
            # comes back, so it was there throughout).
            assert not set(restore.read) - present, case
            if final is not None and final.refused is None:
                assert final.status == RestoreStatus.SUCCEEDED, (case, final.status, final.failures)
                assert target == recorded, case
                outcomes["restored"] = outcomes.get("restored", 0) + 1
            else:
                # Refused, with the reason, before anything was written.
                reason = str(restore.refused) if restore.refused is not None else str(final.refused)
                assert "was pruned at" in reason and target == {} and not restore.read, (case, reason)
                outcomes["refused"] = outcomes.get("refused", 0) + 1
            # A later prune, the restore ended, takes what was held: the bucket ends as without the restore.
            # (Under `make test`, where it was held: the restore succeeded from a marked snapshot.)
            held = final is not None and final.status == RestoreStatus.SUCCEEDED and PrunedMarkers(s3, BUCKET).get("docs", restored)
            if exhaustive or held:
                prune.run()
                assert listed_versions(s3) == without_restore, case
        # A restore queued before the prune began keeps its snapshot; otherwise the sweep crossed the marks,
        # and both outcomes occur.
        assert set(outcomes) == ({"restored"} if mode == "queued" else {"restored", "refused"}), outcomes


class _World:
    """What `daily_history` needs of a world: the bucket's client and a backup a day."""

    def __init__(self, s3: Any, config: Any, clock: Any) -> None:
        self.s3 = s3
        self.config = config
        self.clients = Clients()
        self.clock = clock

    def backup(self) -> str:
        service = BackupService(self.config, self.clients)
        backup_id = new_backup_id()
        service.start(None, trigger="api", backup_id=backup_id)
        assert service.run(backup_id).status == "SUCCEEDED"
        return backup_id

    def days(self, count: float) -> None:
        self.clock.shift(timedelta(days=count))

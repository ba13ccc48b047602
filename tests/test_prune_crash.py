"""A prune killed at any operation, then resumed (as Lambda's retry of its invocation does): every kept
snapshot is whole, the bucket ends as an uninterrupted prune leaves it, and the prune's report counts what
left the bucket, each version once.

One history of daily backups is built once per chunk; for each crash point k the backup bucket (which is
also the catalog) is put back exactly as it was (moto's bucket object, deep-copied: same version ids, same
write times), a prune dies at operation k, and the same prune is run again to its end (recorded anew when it
died before its record was written). The kept snapshots are then read version by version against what the
source held when each was taken, and the bucket's versions, markers and manifests are compared with those an
uninterrupted prune left.

The uninterrupted prune's kept snapshots are read byte for byte against what the source held; after each
crash and resumed prune the bucket must hold exactly the same version ids (a version id's bytes never change
in S3), and every version each kept snapshot's manifest names must be among them; the resumed prune's
versions and bytes deleted, delete markers and manifests deleted and snapshots removed must be the
difference between the bucket's listings before the first attempt and after the resumed one. With
--exhaustive (`make test-full`) every k is taken; `make test` takes every k whose operation changes the
bucket (each write and delete: a crash at a read is a crash before the next write) at the edges and a seeded
sample of the rest."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import new_backup_id
from chalicelib.deploy.provision import provision
from chalicelib.layout import PRUNED_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.prune.job import PruneJob
from chalicelib.prune.record import new_prune_id
from chalicelib.retention import RetentionPolicy
from tests.faults import Crash
from tests.moto_state import clone, freeze, thaw
from tests.stored import assert_versions_hold, entries_of
from tests.test_prune import BUCKET, SOURCE, make_settings

CHUNKS = 4
DAY0 = datetime(2026, 5, 4, 2, 0, tzinfo=timezone.utc)
# Small batches, so that the prune's ~200 operations cover every step several times: survey checkpoints,
# markers, delete batches with their checkpoints, manifests.
BATCH = 2


def state(s3: Any, sizes: dict[tuple[str, str], int] | None = None) -> dict[str, set[tuple[str, str]]]:
    """The bucket's versions and delete markers under data/, the manifests and the pruned markers (with
    `sizes`, each data version's size is noted there)."""
    found: dict[str, set[tuple[str, str]]] = {"data": set(), "data_markers": set(), "manifests": set(), "markers": set()}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for version in page.get("Versions", []):
            key = version["Key"]
            if key.startswith("data/"):
                found["data"].add((key, version["VersionId"]))
                if sizes is not None:
                    sizes[(key, version["VersionId"])] = version["Size"]
            elif key.startswith(SNAPSHOTS_PREFIX) and key.endswith(".jsonl.gz"):
                found["manifests"].add((key, version["VersionId"]))
            elif key.startswith(PRUNED_PREFIX):
                found["markers"].add((key, ""))
        for marker in page.get("DeleteMarkers", []):
            if marker["Key"].startswith("data/"):
                found["data_markers"].add((marker["Key"], marker["VersionId"]))
    return found


def assert_reported(
    record: Any, before: dict[str, set[tuple[str, str]]], after: dict[str, set[tuple[str, str]]], sizes: dict[tuple[str, str], int]
) -> None:
    """The prune's report is the difference between the bucket's listings before and after it."""
    plan = record.plans["docs"]
    gone = before["data"] - after["data"]
    reported = {
        "versions": plan.deleted["versions"],
        "bytes": plan.deleted["bytes"],
        "markers_deleted": plan.markers_deleted,
        "manifests_deleted": plan.manifests_deleted,
        "removed": plan.removed_count(),
        "snapshots_removed": record.totals()["snapshots_removed"],
        "unsent": len(plan.sending),
    }
    listed = {
        "versions": len(gone),
        "bytes": sum(sizes[version] for version in gone),
        "markers_deleted": len(before["data_markers"] - after["data_markers"]),
        "manifests_deleted": len(before["manifests"] - after["manifests"]),
        "removed": len(after["markers"] - before["markers"]),
        "snapshots_removed": len(after["markers"] - before["markers"]),
        "unsent": 0,
    }
    assert reported == listed


# The history, built once per worker process and shared by its chunks: the bucket, and what the source held
# at each backup.
_HISTORY: dict[str, Any] = {}
HISTORY_DAYS = timedelta(days=23)


def build_history(s3: Any, config: Any, clients: Any, clock: Any) -> dict[str, dict[tuple[str, str], bytes]]:
    """Twenty daily backups of 40 keys, a quarter of them changed each day and one deleted every fifth day;
    the clock ends three days after the last (HISTORY_DAYS after it started)."""
    s3.create_bucket(Bucket=SOURCE)
    provision(s3, config.plans.plans[0])
    held: dict[str, dict[tuple[str, str], bytes]] = {}
    model: dict[str, bytes] = {}
    for day in range(20):
        for index in range(40):
            if day == 0 or (index + day) % 4 == 0:
                model[f"k{index}.txt"] = f"{index} on day {day}".encode()
                s3.put_object(Bucket=SOURCE, Key=f"k{index}.txt", Body=model[f"k{index}.txt"])
        if day % 5 == 4:
            s3.delete_object(Bucket=SOURCE, Key=f"k{day}.txt")
            model.pop(f"k{day}.txt", None)
        service = BackupService(config, clients)
        backup_id = new_backup_id()
        service.start(None, trigger="api", backup_id=backup_id)
        assert service.run(backup_id).status == "SUCCEEDED"
        held[backup_id] = {("src", key): body for key, body in model.items()}
        clock.shift(timedelta(days=1))
    clock.shift(timedelta(days=3))
    return held


# Operations that change the bucket or the prune's record.
WRITES = ("s3.PutObject", "s3.DeleteObjects", "s3.DeleteObject", "s3.CopyObject")


def crash_points(sequence: list[str], chunk: int, exhaustive: bool, sample: int = 4, seed: int = 20261129) -> list[int]:
    everything = range(len(sequence))
    if exhaustive:
        return [k for k in everything if k % CHUNKS == chunk]
    writes = [k for k in everything if sequence[k] in WRITES]
    edges = set(range(3)) | set(range(len(sequence) - 3, len(sequence)))
    chosen = edges | set(random.Random(seed).sample(writes, min(sample, len(writes))))
    return [k for k in sorted(chosen) if k % CHUNKS == chunk]


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_a_prune_crashed_at_any_operation_then_resumed_keeps_every_kept_snapshot_whole_and_reports_what_left_the_bucket(
    aws: None, s3: Any, fault_injector: Any, exhaustive: bool, chunk: int
) -> None:
    with time_machine.travel(DAY0, tick=True) as clock:
        config = make_settings(RetentionPolicy(keep_last=2, keep_weekly=1))
        clients = Clients()
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        if not _HISTORY:
            # Both at once: a build interrupted half way must not leave a history later chunks take as made.
            held_now = build_history(s3, config, clients, clock)
            _HISTORY.update(held=held_now, bucket=freeze(backend.buckets[BUCKET]))
        else:
            # The same history, as this worker built it for an earlier chunk: the bucket with every version,
            # the same version ids and write times, and the clock where that history left it.
            s3.create_bucket(Bucket=BUCKET)
            backend.buckets[BUCKET] = thaw(_HISTORY["bucket"])
            clock.shift(HISTORY_DAYS)
        held: dict[str, dict[tuple[str, str], bytes]] = _HISTORY["held"]
        pristine = clone(backend.buckets[BUCKET])

        def prune(prune_id: str | None = None) -> Any:
            """A prune, or with the id of one recorded already, that prune resumed (as Lambda's retry does)."""
            job = PruneJob(config.plans, clients, batch_size=BATCH)
            return job.run(job.start(["docs"], "api", allow_large=["docs"], prune_id=prune_id).prune_id)

        sizes: dict[tuple[str, str], int] = {}
        stored = state(s3, sizes)
        counting = fault_injector(0).attach(clients.s3)
        reference = prune()
        counting.detach()
        operations = counting.operations
        plan = reference.plans["docs"]
        assert reference.status == "SUCCEEDED" and len(plan.removing) >= 8 and plan.deleted["versions"] >= 10
        assert 150 <= operations <= 260, (operations, counting.calls)
        kept = [row["backup_id"] for row in plan.snapshots if row["kept"]]
        for backup_id in kept:
            entries = entries_of(s3, BUCKET, "docs", backup_id)
            assert assert_versions_hold(s3, BUCKET, entries, held[backup_id]) == len(held[backup_id])
        expected = state(s3)
        assert expected["data"] < stored["data"] and expected["markers"] > stored["markers"]
        assert_reported(reference, stored, expected, sizes)

        points = crash_points(counting.sequence, chunk, exhaustive)
        assert points or chunk >= operations
        for k in points:
            backend.buckets[BUCKET] = clone(pristine)
            faults = fault_injector(k)
            faults.crash_at_operation(k)
            faults.attach(clients.s3)
            crashed = new_prune_id()
            with pytest.raises(Crash):
                prune(crashed)
            faults.detach()
            after = prune(crashed)
            assert after.status == "SUCCEEDED", (k, after.plans["docs"].errors)
            found = state(s3)
            assert found == expected, (k, counting.sequence[k], {name: found[name] ^ expected[name] for name in found})
            # Counted once whatever the crash point: the resumed prune reports what left the bucket.
            assert_reported(after, stored, found, sizes)
            for backup_id in kept:
                entries = entries_of(s3, BUCKET, "docs", backup_id)
                lost = [(e.data_key, e.version_id) for e in entries if (e.data_key, e.version_id) not in found["data"]]
                assert not lost and len(entries) == len(held[backup_id]), (k, backup_id, lost)

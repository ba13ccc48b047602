"""The prune repacks a mostly dead STANDARD pack (chalicelib/prune/repack.py): the live objects into a new pack,
a relocation record every reader applies, the old version deleted only by a later prune; a dry run writes
nothing; a crash at any write, then the prune resumed, leaves every kept snapshot restorable by version id
and ends as one uninterrupted repack."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog import kept_index as ki
from chalicelib.catalog.manifests import Entry, Manifest, manifest_key
from chalicelib.catalog.packs import read_index_from_s3, read_packed
from chalicelib.catalog.records import RecordStore, new_backup_id
from chalicelib.catalog.relocations import Relocations
from chalicelib.catalog.snapshot_reader import open_snapshot
from chalicelib.config import Settings
from chalicelib.cost.kept_versions import KeptVersions
from chalicelib.deploy.provision import provision
from chalicelib.deploy.scope import PRUNE_WORKER, RESTORE_WORKER, VERIFY_WORKER
from chalicelib.layout import PACKS_PREFIX, RELOCATIONS_PREFIX
from chalicelib.inventory import configuration as conf
from chalicelib.plans import InventoryPlan, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prices import load_prices
from chalicelib.prune.job import PruneJob
from chalicelib.prune.record import new_prune_id
from chalicelib.prune.repack import REPACKED_PREFIX
from chalicelib.prune.sweep import References
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from chalicelib.retention import RetentionPolicy
from tests.faults import Crash
from tests.moto_state import clone, freeze, thaw
from tests.record_calls import running_as
from tests.s3_inventory import deliver
from tests.stored import entries_of

SOURCE, BUCKET, TARGET, REPORTS = "repack-source", "repack-backup", "repack-restored", "repack-inventory-reports"
DAY0 = datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc)
PRICES = load_prices(environ={})
# STANDARD priced so that any dead byte is worth repacking: what is tested here is the repack, not the rule
# (tests/test_repack_rule.py).
DEAR = dataclasses.replace(PRICES, storage={**PRICES.storage, "STANDARD": PRICES.storage["STANDARD"] * 10**6})
# One object stays the whole time; eight are replaced the next day: the first pack is then mostly dead.
FIRST = {"keep.txt": b"kept " * 700, "empty.txt": b"", **{f"d{i}.txt": f"day one {i} ".encode() * 400 for i in range(8)}}
SECOND = {f"d{i}.txt": f"day two {i} ".encode() * 400 for i in range(8)}


def settings(inventory: bool = False) -> Settings:
    plan = Plan(
        name="docs",
        bucket=BUCKET,
        sources=(S3Source(name="src", bucket=SOURCE),),
        lifecycle=Lifecycle(transitions=(), small_objects="pack"),
        retention=RetentionPolicy(keep_last=1),
    )
    plans = PlanSet(plans=(plan,), catalog_bucket=BUCKET, inventory=InventoryPlan(bucket=REPORTS) if inventory else None)
    return Settings(plans=plans, topic_arn=None, worker_mode="inline", worker_function=None, max_workers=4, restore_buckets=(TARGET,))


def prune(clients: Clients, dry_run: bool = False, prune_id: str | None = None, inventory: bool = False) -> Any:
    job = PruneJob(settings(inventory).plans, clients, DEAR)
    record = job.start(["docs"], "api", dry_run=dry_run, allow_large=["docs"], prune_id=prune_id, grace=timedelta(hours=48))
    return job.run(record.prune_id)


# The history, built once per worker process and put back for each test: the bucket with every version, the
# same version ids and write times, and the clock where it left it.
_HISTORY: dict[str, Any] = {}
HISTORY_DAYS = timedelta(days=5)


def history(s3: Any, clients: Clients, clock: Any) -> str:
    """Two daily backups, then three days: the kept (second) snapshot's id."""
    s3.create_bucket(Bucket=SOURCE)
    s3.create_bucket(Bucket=TARGET)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if _HISTORY:
        s3.create_bucket(Bucket=BUCKET)
        backend.buckets[BUCKET] = thaw(_HISTORY["bucket"])
        clock.shift(HISTORY_DAYS)
        return str(_HISTORY["kept"])
    provision(s3, settings().plans.plans[0])
    taken = []
    for objects in (FIRST, SECOND):
        for key, body in objects.items():
            s3.put_object(Bucket=SOURCE, Key=key, Body=body)
        service = BackupService(settings(), clients)
        backup_id = new_backup_id()
        service.start(None, trigger="api", backup_id=backup_id)
        assert service.run(backup_id).status == "SUCCEEDED"
        taken.append(backup_id)
        clock.shift(timedelta(days=1))
    clock.shift(HISTORY_DAYS - timedelta(days=2))
    _HISTORY.update(kept=taken[-1], bucket=freeze(backend.buckets[BUCKET]))
    return taken[-1]


def versions(s3: Any, prefix: str) -> set[tuple[str, str]]:
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return {(v["Key"], v["VersionId"]) for v in listed.get("Versions", [])}


def restorable(s3: Any, backup_id: str) -> dict[str, bytes]:
    """The kept snapshot read as a restore reads it (open_snapshot, each object by its version id, a packed
    one by a ranged GET checked against its SHA-256): what the source held when it was taken."""
    with running_as(RESTORE_WORKER), open_snapshot(s3, RecordStore(s3, BUCKET), settings().plans.plans[0], backup_id, print) as manifest:
        got = {}
        for entry in manifest.entries():
            if entry.packed:
                got[entry.key] = read_packed(s3, BUCKET, entry)
            else:
                got[entry.key] = s3.get_object(Bucket=BUCKET, Key=entry.data_key, VersionId=entry.version_id)["Body"].read()
    assert got == FIRST | SECOND
    return got


def relocated(s3: Any, written: list[Entry], old: tuple[str, str], new: tuple[str, str]) -> list[Entry]:
    """The entries as written, those of the old pack version naming the new one, found from the new pack's
    own trailer and a HEAD of it (not from the record)."""
    head = s3.head_object(Bucket=BUCKET, Key=new[0], VersionId=new[1])
    at = {o.key: o.offset for o in read_index_from_s3(s3, BUCKET, *new)}
    return [
        dataclasses.replace(
            e, pack_key=new[0], version_id=new[1], pack_offset=at[e.key], pack_size=head["ContentLength"], pack_etag=head["ETag"].strip('"')
        )
        if (e.pack_key, e.version_id) == old
        else e
        for e in written
    ]


def test_a_mostly_dead_pack_is_repacked_every_reader_reads_the_new_one_and_a_later_prune_deletes_the_old(aws: None, s3: Any) -> None:
    clients = Clients()
    with time_machine.travel(DAY0, tick=True) as clock:
        kept = history(s3, clients, clock)
        written = entries_of(s3, BUCKET, "docs", kept)
        old = next((str(e.pack_key), e.version_id) for e in written if e.key == "keep.txt")
        packs_before = versions(s3, PACKS_PREFIX)

        # A dry run says what it would repack and writes nothing.
        dry = prune(clients, dry_run=True).plans["docs"]
        assert dry.would_repack["packs"] == 1 and dry.would_repack["bytes_freed"] > 8 * 3000
        assert [p["key"] for p in dry.would_repack["each"]] == [old[0]] and dry.repacked["packs"] == 0
        assert prune(clients, dry_run=True).totals()["packs_repacked"] == 1
        assert versions(s3, PACKS_PREFIX) == packs_before and not versions(s3, RELOCATIONS_PREFIX)

        done = prune(clients)
        work = done.plans["docs"]
        assert done.status == "SUCCEEDED", work.errors
        assert work.repacked["packs"] == 1 and work.repacked["bytes_freed"] > 8 * 3000
        assert done.totals()["packs_repacked"] == 1 and done.totals()["repack_bytes_freed"] == work.repacked["bytes_freed"]
        (new,) = versions(s3, REPACKED_PREFIX)
        assert len(versions(s3, RELOCATIONS_PREFIX)) == 1
        # The old version stays while the record is younger than the grace period.
        assert old in versions(s3, PACKS_PREFIX)
        expected = relocated(s3, written, old, new)
        assert expected != written
        assert_every_reader_gives(s3, kept, expected)
        restorable(s3, kept)
        restore_service_gives_the_source(s3, clients, kept)

        clock.shift(timedelta(days=3))
        later = prune(clients)
        assert later.status == "SUCCEEDED" and later.plans["docs"].repacked["packs"] == 0
        assert versions(s3, PACKS_PREFIX) == (packs_before - {old}) | {new}
        assert len(versions(s3, RELOCATIONS_PREFIX)) == 1
        assert_every_reader_gives(s3, kept, expected)
        restore_service_gives_the_source(s3, clients, kept)


def test_with_an_inventory_the_sweep_keeps_the_new_pack_and_its_record_and_deletes_the_old_pack_later(aws: None, s3: Any) -> None:
    clients = Clients()
    with time_machine.travel(DAY0, tick=True) as clock:
        kept = history(s3, clients, clock)
        s3.create_bucket(Bucket=REPORTS)
        destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id="123456789012", prefix="inventory", encrypted=False)
        s3.put_bucket_inventory_configuration(
            Bucket=BUCKET, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
        )
        written = entries_of(s3, BUCKET, "docs", kept)
        old = next((str(e.pack_key), e.version_id) for e in written if e.key == "keep.txt")
        packs_before = versions(s3, PACKS_PREFIX)
        deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID)
        first = prune(clients, inventory=True)
        assert first.status == "SUCCEEDED" and first.plans["docs"].repacked["packs"] == 1, first.plans["docs"].errors
        (new,) = versions(s3, REPACKED_PREFIX)
        # A report that lists the new pack and the record: the new pack is named (through the record), the
        # record is no data; the old version stays while the record is young.
        clock.shift(timedelta(hours=1))
        deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID)
        assert prune(clients, inventory=True).status == "SUCCEEDED"
        assert versions(s3, PACKS_PREFIX) == packs_before | {new} and len(versions(s3, RELOCATIONS_PREFIX)) == 1
        clock.shift(timedelta(days=3))
        deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID)
        assert prune(clients, inventory=True).status == "SUCCEEDED"
        assert versions(s3, PACKS_PREFIX) == (packs_before - {old}) | {new} and len(versions(s3, RELOCATIONS_PREFIX)) == 1
        assert_every_reader_gives(s3, kept, relocated(s3, written, old, new))
        restorable(s3, kept)


def assert_every_reader_gives(s3: Any, backup_id: str, expected: list[Entry]) -> None:
    """Restore and verify (open_snapshot), the verification's and the prune's kept indexes, the prune's
    references and the cost report's kept versions: each gives the relocated entries, field by field."""
    plan = settings().plans.plans[0]
    records = RecordStore(s3, BUCKET)
    live = [e for e in expected if not e.held]
    with running_as(VERIFY_WORKER), open_snapshot(s3, records, plan, backup_id, print) as manifest:
        assert [dataclasses.asdict(e) for e in manifest.entries()] == [dataclasses.asdict(e) for e in live]
    with ExitStack() as stack, running_as(VERIFY_WORKER):
        assert [e for e, _ in ki.kept_index(s3, BUCKET, "docs", [backup_id], stack).versions()] == live
    version = records.get(backup_id).plans["docs"].manifest_version
    with ExitStack() as stack, running_as(PRUNE_WORKER):
        index = ki.kept_index(s3, BUCKET, "docs", [backup_id], stack, kind=ki.PRUNE_INDEX, pinned={backup_id: version})
        assert [e for e, _ in index.versions()] == expected
        with Manifest.download(s3, BUCKET, manifest_key("docs", backup_id), version) as raw:
            references = References([raw.entries(include_held=True)], relocations=Relocations.load(s3, BUCKET))
            packs = {(key, v) for key, v, _, _ in references.tagged_long()}
            references.close()
        assert packs == {(str(e.pack_key), e.version_id) for e in expected if e.packed}
    with ExitStack() as stack:
        cost = KeptVersions(s3, records, plan, print, [], use_index=False)
        assert list(cost.entries([backup_id], stack)) == expected


def restore_service_gives_the_source(s3: Any, clients: Clients, backup_id: str) -> None:
    prefix = f"{new_backup_id()}/"
    restores = RestoreService(settings().plans, clients, max_workers=2)
    record = restores.start(RestoreRequest(backup_id=backup_id, plan="docs", target=Target(bucket=TARGET, prefix=prefix)))
    finished = restores.run(record.restore_id)
    assert finished.status == "SUCCEEDED" and not finished.failed, finished
    listed = s3.list_objects_v2(Bucket=TARGET, Prefix=prefix).get("Contents", [])
    got = {item["Key"][len(prefix):]: s3.get_object(Bucket=TARGET, Key=item["Key"])["Body"].read() for item in listed}
    assert got == FIRST | SECOND


WRITES = ("s3.PutObject", "s3.DeleteObjects", "s3.DeleteObject")


@pytest.mark.parametrize("kind", ["crash", "~repacked/", "meta/relocations/"])
def test_a_repack_crashed_at_each_write_then_resumed_keeps_every_snapshot_restorable_and_ends_as_one_repack(
    aws: None, s3: Any, fault_injector: Any, exhaustive: bool, kind: str
) -> None:
    clients = Clients()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    with time_machine.travel(DAY0, tick=True) as clock:
        kept = history(s3, clients, clock)
        old = next((str(e.pack_key), e.version_id) for e in entries_of(s3, BUCKET, "docs", kept) if e.key == "keep.txt")
        pristine = clone(backend.buckets[BUCKET])
        counting = fault_injector(0).attach(clients.s3)
        urls: list[str] = []
        clients.s3.meta.events.register("before-send.s3", lambda request, **_: urls.append(request.url))
        reference = prune(clients)
        counting.detach()
        assert reference.plans["docs"].repacked["packs"] == 1
        # Every write of the prune (its records, markers, deletions, the new pack and the relocation record)
        # with --exhaustive; else the repack's own writes, and the first and last write.
        writes = [k for k, operation in enumerate(counting.sequence) if operation in WRITES]
        repack_writes = [k for k in writes if "~repacked/" in urls[k] or "meta/relocations/" in urls[k]]
        assert len(repack_writes) == 2, [urls[k] for k in writes]
        points = writes if exhaustive else sorted({writes[0], *repack_writes, writes[-1]})
        if kind != "crash":
            points = points[:1]
        for k in points:
            backend.buckets[BUCKET] = clone(pristine)
            faults = fault_injector(k)
            prune_id = new_prune_id()
            if kind == "crash":
                faults.crash_at_operation(k)
            else:
                # The new pack's PUT, or the record's, stored by S3 and answered with an error: retried, it finds
                # its key taken and adopts what is there only if it is what this prune wrote.
                faults.add("s3.PutObject", kind="error500", times=1, url_contains=kind)
            faults.attach(clients.s3)
            try:
                first = prune(clients, prune_id=prune_id)
            except Crash:
                first = None
            faults.detach()
            restorable(s3, kept)
            if first is None or first.status != "SUCCEEDED":
                resumed = prune(clients, prune_id=prune_id)
                assert resumed.status == "SUCCEEDED", (k, resumed.plans["docs"].errors)
            restorable(s3, kept)
            # One record for the old version, naming a pack that holds the live objects.
            records = Relocations.load(s3, BUCKET)
            assert len(records) == 1 and records.of(*old) is not None, k
            assert (records.of(*old).new_key, records.of(*old).new_version) in versions(s3, REPACKED_PREFIX)
            # A later prune: the old version goes, and any pack a crashed run wrote that no record names.
            clock.shift(timedelta(days=3))
            assert prune(clients).status == "SUCCEEDED"
            assert old not in versions(s3, PACKS_PREFIX)
            assert versions(s3, REPACKED_PREFIX) == {(records.of(*old).new_key, records.of(*old).new_version)}, k
            restorable(s3, kept)
            if kind != "crash":
                assert faults.log and first is not None and first.plans["docs"].repacked["packs"] == 1, faults.log


@pytest.mark.parametrize("tamper", ["delete marker", "second version", "not a record"])
def test_a_relocation_record_hidden_or_rewritten_stops_the_prune_before_the_new_pack_goes(aws: None, s3: Any, tamper: str) -> None:
    """Whoever may write the bucket hides or rewrites a record once its old pack is gone: the entries it moved
    would name that deleted version again and the new pack nothing, so a prune that read on would delete the
    last copy. The prune reads every version of the records and stops, reporting tampering."""
    clients = Clients()
    with time_machine.travel(DAY0, tick=True) as clock:
        kept = history(s3, clients, clock)
        assert prune(clients).plans["docs"].repacked["packs"] == 1
        clock.shift(timedelta(days=3))
        assert prune(clients).status == "SUCCEEDED"
        (new,) = versions(s3, REPACKED_PREFIX)
        held = s3.get_object(Bucket=BUCKET, Key=new[0], VersionId=new[1])["Body"].read()
        (record_key, _), = versions(s3, RELOCATIONS_PREFIX)
        if tamper == "delete marker":
            s3.delete_object(Bucket=BUCKET, Key=record_key)
        else:
            body = s3.get_object(Bucket=BUCKET, Key=record_key)["Body"].read()
            s3.put_object(Bucket=BUCKET, Key=record_key, Body=body if tamper == "second version" else b"{}")
        clock.shift(timedelta(days=3))
        stopped = prune(clients)
        work = stopped.plans["docs"]
        assert stopped.status == "FAILED" and any("TAMPERING" in error and record_key in error for error in work.errors), work.errors
        # The new pack is still there, by version id, holding the bytes it held.
        assert new in versions(s3, PACKS_PREFIX)
        assert s3.get_object(Bucket=BUCKET, Key=new[0], VersionId=new[1])["Body"].read() == held
        assert work.deleted["versions"] == 0
    assert kept

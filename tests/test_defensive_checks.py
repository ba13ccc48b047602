"""The checks that guard against a forged or damaged catalog and damaged bytes, each made to matter: a snapshot
read without its record takes the manifest's first version; the prune reads every version of a manifest as a
reference; a running backup whose record cannot be read, and the earliest of overlapping running backups,
keep what they may write; a restore compares what it copied or downloaded with the snapshot's digest, and
never takes an object it finds at the target for its own on the size alone.

One history (four daily backups of three keys, the clock three days on) is built once per worker process
and put back for each test (moto's buckets, deep-copied: same version ids and write times)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import ManifestWriter, manifest_key
from chalicelib.catalog.records import new_backup_id, record_key
from chalicelib.layout import SEALED_RECORDS_PREFIX
from chalicelib.restore.record import RestoreStatus
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from tests.faults import damage_reads
from tests.moto_state import freeze, thaw
from tests.stored import entries_of
from tests.test_prune import BUCKET, SOURCE, clock, daily_history, listed_versions, world  # noqa: F401

TARGET = "restore-target"  # one of the stage's restore buckets
_HISTORY: dict[str, Any] = {}


@pytest.fixture
def history(world: Any) -> Any:  # noqa: F811
    """The world with its four snapshots (`world.taken`), the clock three days after the last."""
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if not _HISTORY:
        taken = daily_history(world, 4)
        world.days(3)
        _HISTORY.update(taken=taken, bucket=freeze(backend.buckets[BUCKET]), source=freeze(backend.buckets[SOURCE]))
    else:
        backend.buckets[BUCKET] = thaw(_HISTORY["bucket"])
        backend.buckets[SOURCE] = thaw(_HISTORY["source"])
        world.days(7)
    world.taken = list(_HISTORY["taken"])
    world.s3.create_bucket(Bucket=TARGET)
    world.config = replace(world.config, restore_buckets=(TARGET,))
    return world


def restores(seeded: Any, findings: list[str] | None = None) -> RestoreService:
    return RestoreService.from_settings(seeded.config, seeded.clients, report=(findings if findings is not None else []).append)


def target_objects(s3: Any) -> dict[str, bytes]:
    return {
        item["Key"]: s3.get_object(Bucket=TARGET, Key=item["Key"])["Body"].read()
        for item in s3.list_objects_v2(Bucket=TARGET).get("Contents", [])
    }


def recorded_bytes(s3: Any, backup_id: str) -> dict[str, bytes]:
    return {
        e.key: s3.get_object(Bucket=BUCKET, Key=e.data_key, VersionId=e.version_id)["Body"].read()
        for e in entries_of(s3, BUCKET, "docs", backup_id)
    }


def test_a_snapshot_whose_record_cannot_be_read_is_restored_from_its_manifests_first_version(history: Any) -> None:
    """A writer plants bytes, writes a second version of a snapshot's manifest naming them, and makes the
    backup's records unreadable: the restore reads the manifest's first version (the one the backup wrote),
    gives the original bytes, and reports both findings."""
    s3, backup_id = history.s3, history.taken[-1]
    original = recorded_bytes(s3, backup_id)
    entries = entries_of(s3, BUCKET, "docs", backup_id)
    planted = s3.put_object(Bucket=BUCKET, Key=entries[0].data_key, Body=b"planted")
    writer = ManifestWriter()
    for entry in entries:
        if entry is entries[0]:
            entry = replace(entry, version_id=planted["VersionId"], size=7, etag=planted["ETag"].strip('"'), checksum=None, sha256=None)
        writer.add(entry)
    with writer.finish({"plan": "docs", "backup_id": backup_id}, keep_held=False) as body:
        s3.put_object(Bucket=BUCKET, Key=manifest_key("docs", backup_id), Body=body.read())
    writer.close()
    sealed = [i["Key"] for i in s3.list_objects_v2(Bucket=BUCKET, Prefix=SEALED_RECORDS_PREFIX)["Contents"] if backup_id in i["Key"]]
    for key in sealed + [record_key(backup_id)]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{not a record")

    findings: list[str] = []
    service = restores(history, findings)
    record = service.start(RestoreRequest(backup_id=backup_id, plan="docs", target=Target(bucket=TARGET)))
    done = service.run(record.restore_id)

    assert done.status == RestoreStatus.SUCCEEDED, done.failures
    assert target_objects(s3) == original and b"planted" not in target_objects(s3).values()
    assert any("2 versions of the manifest exist" in finding for finding in findings), findings
    assert any("sealed record is not JSON" in finding for finding in findings), findings


def test_the_prune_reads_every_version_of_a_kept_manifest_as_a_reference(history: Any) -> None:
    """A valid but empty second version of a kept snapshot's manifest: every version its first named stays."""
    s3, kept = history.s3, history.taken[-1]
    named = {(e.data_key, e.version_id) for e in entries_of(s3, BUCKET, "docs", kept)}
    writer = ManifestWriter()
    with writer.finish({"plan": "docs", "backup_id": kept}, keep_held=False) as body:
        s3.put_object(Bucket=BUCKET, Key=manifest_key("docs", kept), Body=body.read())
    writer.close()

    record = history.prune(allow=True)

    assert record.status == "SUCCEEDED" and kept not in record.plans["docs"].removing
    assert record.plans["docs"].deleted["versions"] > 0
    assert named <= listed_versions(s3)


def orphan(seeded: Any, key: str) -> tuple[str, str]:
    """A version no manifest names, as a running backup's copy is until its manifest is written."""
    put = seeded.s3.put_object(Bucket=BUCKET, Key=f"data/src/{key}", Body=key.encode())
    return f"data/src/{key}", put["VersionId"]


def test_a_running_backup_whose_record_cannot_be_read_keeps_what_it_may_have_written(history: Any) -> None:
    s3 = history.s3
    history.days(-3)  # back to just after the last backup: a backup starts, its record then damaged
    backup_id = new_backup_id()
    s3.put_object(Bucket=BUCKET, Key=record_key(backup_id), Body=b"{damaged")
    history.clock.shift(timedelta(minutes=1))
    copied = orphan(history, "copied-by-the-unreadable-run.txt")
    history.days(3)

    work = history.prune(allow=True).plans["docs"]

    assert copied in listed_versions(s3) and work.kept_running >= 1
    assert work.deleted["versions"] > 0


def test_overlapping_running_backups_keep_everything_written_since_the_earliest_started(history: Any) -> None:
    s3 = history.s3
    history.days(-3)
    service = BackupService(history.config, history.clients)
    earliest = new_backup_id()
    service.start(None, trigger="api", backup_id=earliest)
    history.clock.shift(timedelta(hours=1))
    copied = orphan(history, "copied-by-the-earliest-run.txt")
    history.clock.shift(timedelta(hours=1))
    later = new_backup_id()
    service.start(None, trigger="api", backup_id=later)
    history.days(3)

    work = history.prune(allow=True).plans["docs"]

    assert set(work.running) == {earliest, later}
    assert copied in listed_versions(s3) and work.kept_running >= 1


def test_a_copy_whose_sha256_differs_from_the_snapshots_fails_that_object(history: Any) -> None:
    """S3 answers a copy with the new object's SHA-256; one that is not the snapshot's (a damaged copy) is
    not counted restored."""
    s3, backup_id = history.s3, history.taken[-1]
    service = restores(history)
    damaged = entries_of(s3, BUCKET, "docs", backup_id)[0]

    def damage(parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        if context.get("copied") == damaged.data_key and "CopyObjectResult" in parsed:
            parsed["CopyObjectResult"]["ChecksumSHA256"] = "AAAA" + parsed["CopyObjectResult"]["ChecksumSHA256"][4:]

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["copied"] = params["CopySource"]["Key"]

    history.clients.s3.meta.events.register("provide-client-params.s3.CopyObject", remember)
    history.clients.s3.meta.events.register("after-call.s3.CopyObject", damage)
    record = service.start(RestoreRequest(backup_id=backup_id, plan="docs", target=Target(bucket=TARGET)))
    done = service.run(record.restore_id)

    assert done.status == RestoreStatus.PARTIAL and done.failed == 1
    assert "SHA-256" in done.failures[0]["reason"] and done.failures[0]["key"] == damaged.key


def test_a_download_whose_bytes_do_not_hash_to_the_snapshots_fails_and_leaves_no_file(history: Any, tmp_path: Path) -> None:
    s3, backup_id = history.s3, history.taken[-1]
    entries = entries_of(s3, BUCKET, "docs", backup_id)
    damage_reads(history.clients.s3, entries[0].data_key)
    service = RestoreService(history.config.plans, history.clients)  # the operator's: a folder target
    record = service.start(RestoreRequest(backup_id=backup_id, plan="docs", target=Target(path=str(tmp_path))))
    done = service.run(record.restore_id)

    assert done.failed == 1 and "SHA-256" in done.failures[0]["reason"]
    assert not (tmp_path / entries[0].key).exists() and (tmp_path / entries[1].key).exists()


def test_an_object_of_the_same_size_that_appears_at_the_target_is_not_taken_for_the_restored_one(history: Any) -> None:
    """Between the restore's checks and its copy, someone writes a key it restores: same size, other bytes,
    no SHA-256. The copy is refused (no overwrite), and the object is not counted as the restore's own."""
    s3, backup_id = history.s3, history.taken[-1]
    entries = entries_of(s3, BUCKET, "docs", backup_id)
    service = restores(history)
    record = service.start(RestoreRequest(backup_id=backup_id, plan="docs", target=Target(bucket=TARGET)))
    original = s3.get_object(Bucket=BUCKET, Key=entries[0].data_key, VersionId=entries[0].version_id)["Body"].read()
    other = bytes(reversed(original)) if original != bytes(reversed(original)) else b"x" * len(original)
    s3.upload_fileobj(io.BytesIO(other), TARGET, entries[0].key, ExtraArgs={"ChecksumAlgorithm": "CRC32"})
    assert "ChecksumSHA256" not in s3.head_object(Bucket=TARGET, Key=entries[0].key, ChecksumMode="ENABLED")

    done = service.run(record.restore_id)

    assert done.failed == 1 and "appeared during the restore" in done.failures[0]["reason"]
    assert s3.get_object(Bucket=TARGET, Key=entries[0].key)["Body"].read() == other

"""Relocation records (chalicelib/catalog/relocations.py): written once, under meta/, by the prune alone; applied
in one place to every packed entry read; and unable to change the bytes a restore gives back."""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter
from chalicelib.catalog.packs import DamagedPack, PackWriter, read_packed
from chalicelib.catalog.relocations import BadRelocation, Relocation, Relocations, put_relocation, relocation_key
from chalicelib.deploy.bucket_settings import create_only_keys
from chalicelib.deploy.policy import FUNCTIONS
from chalicelib.deploy.scope import PRUNE_WORKER, RESTORE_WORKER
from chalicelib.errors import AlreadyExists
from chalicelib.plans import Lifecycle, Plan, PlanSet
from chalicelib.prune.references import keep_recently_relocated
from chalicelib.prune.sweep import References
from tests.record_calls import assume_configuration, running_as
from tests.test_roles import PHOTOS, PRUNERS, may, s3 as call

BUCKET = "relocation-tests"
OLD_KEY = "data/~packs/20261126T000000000Z-a/0a0b0c0d-000001.pack"
NEW_KEY = "data/~packs/~repacked/20261201T000000000Z-r/0e0f1011-000001.pack"
OBJECTS = {"a.txt": b"alpha " * 100, "b.txt": b"beta " * 300, "c.txt": b"", "d.txt": "délta ✓".encode() * 40}
LIVE = ("a.txt", "c.txt", "d.txt")


def store_pack(s3: Any, key: str, objects: dict[str, bytes]) -> tuple[str, int, str, dict[str, int]]:
    """A pack of `objects` stored at `key`: its version, size, ETag and each object's offset."""
    writer = PackWriter()
    offsets = {name: writer.add("documents", name, io.BytesIO(body), f"id:{name}").offset for name, body in objects.items()}
    body = writer.finish().read()
    writer.close()
    response = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return response["VersionId"], len(body), response["ETag"].strip('"'), offsets


def entry_of(name: str, body: bytes, key: str, version: str, size: int, etag: str, offset: int) -> Entry:
    import base64
    import hashlib

    digest = hashlib.sha256(body)
    return Entry(
        "documents", name, version, len(body), hashlib.md5(body, usedforsecurity=False).hexdigest(), f"id:{name}",
        checksum=base64.b64encode(digest.digest()).decode(), sha256=digest.hexdigest(), pack_key=key, pack_offset=offset,
        pack_size=size, pack_etag=etag,
    )


@pytest.fixture
def world(s3: Any) -> dict[str, Any]:
    """An old pack of four objects, a new one of the three still live, and the record between them."""
    assume_configuration(PlanSet(plans=(Plan(name="documents", bucket=BUCKET, sources=(), lifecycle=Lifecycle(())),), catalog_bucket=BUCKET))
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old_version, old_size, old_etag, old_offsets = store_pack(s3, OLD_KEY, OBJECTS)
    new_version, new_size, new_etag, new_offsets = store_pack(s3, NEW_KEY, {name: OBJECTS[name] for name in LIVE})
    record = Relocation(
        OLD_KEY, old_version, NEW_KEY, new_version, new_size, new_etag, {(old_offsets[n], len(OBJECTS[n])): new_offsets[n] for n in LIVE}
    )
    entries = [entry_of(name, OBJECTS[name], OLD_KEY, old_version, old_size, old_etag, old_offsets[name]) for name in sorted(OBJECTS)]
    return {"record": record, "entries": entries, "new": (new_version, new_size, new_etag, new_offsets)}


def manifest_of(entries: list[Entry]) -> Manifest:
    writer = ManifestWriter()
    for entry in entries:
        writer.add(entry)
    body = writer.finish({"plan": "documents", "backup_id": "20261126T000000000Z-a"}, keep_held=True)
    writer.close()
    return Manifest(body)


def test_a_record_reads_back_as_written_and_only_from_the_key_of_the_version_it_moves(world: dict[str, Any]) -> None:
    record: Relocation = world["record"]
    assert record.key == f"meta/relocations/20261126T000000000Z-a/0a0b0c0d-000001.pack/{record.old_version}.json"
    assert Relocation.from_json(record.to_json(), record.key) == record
    with pytest.raises(BadRelocation, match="holds the record of"):
        Relocation.from_json(record.to_json(), relocation_key(OLD_KEY, "another-version"))
    with pytest.raises(BadRelocation, match="format"):
        Relocation.from_json(record.to_json().replace(b"pack-relocation/1", b"pack-relocation/9"))
    with pytest.raises(BadRelocation, match="negative offset"):
        Relocation.from_json(dataclasses.replace(record, offsets={(0, 5): -5}).to_json())
    with pytest.raises(BadRelocation, match="only a version of a pack"):
        relocation_key("data/documents/a.txt", "v")


def test_a_record_is_written_once_and_the_bucket_policy_keeps_it_so(s3: Any, world: dict[str, Any]) -> None:
    record: Relocation = world["record"]
    with running_as(PRUNE_WORKER):
        put_relocation(s3, BUCKET, record)
        with pytest.raises(AlreadyExists):
            put_relocation(s3, BUCKET, dataclasses.replace(record, new_version="elsewhere"))
    with running_as(RESTORE_WORKER):
        assert Relocations.load(s3, BUCKET).of(OLD_KEY, record.old_version) == record
    # S3 itself refuses an overwrite, whoever writes: the create-only statements cover the records.
    assert f"arn:aws:s3:::{BUCKET}/meta/relocations/*" in create_only_keys(BUCKET)


def test_only_the_prune_may_write_a_relocation_record_and_every_reader_may_read_them() -> None:
    key = "meta/relocations/20261126T000000000Z-a/0a0b0c0d-000001.pack/v1.json"
    forge = call("PutObject", Bucket=PHOTOS, Key=key, IfNoneMatch="*")
    read = call("GetObject", Bucket=PHOTOS, Key=key)
    assert {function for function in FUNCTIONS if may(function, forge)} <= PRUNERS
    assert {function for function in FUNCTIONS if may(function, read)} >= {"restore_worker", "verify_worker", "api_handler"} | PRUNERS


def test_a_relocated_entry_names_the_new_pack_field_by_field_and_reads_the_same_bytes(s3: Any, world: dict[str, Any]) -> None:
    record: Relocation = world["record"]
    new_version, new_size, new_etag, new_offsets = world["new"]
    relocations = Relocations([record])
    with manifest_of(world["entries"]) as manifest:
        assert list(manifest.entries()) == world["entries"]  # no relocation given: as written
        manifest.relocate = relocations.apply
        read = {entry.key: entry for entry in manifest.entries()}
    for written in world["entries"]:
        got = read[written.key]
        if written.key in LIVE:
            moved = dict(pack_key=NEW_KEY, version_id=new_version, pack_offset=new_offsets[written.key], pack_size=new_size, pack_etag=new_etag)
            assert dataclasses.asdict(got) == dataclasses.asdict(written) | moved
        else:
            # An object the record does not carry still names the old pack version.
            assert got == written
        with running_as(RESTORE_WORKER):
            assert read_packed(s3, BUCKET, got) == OBJECTS[written.key]


def test_a_forged_record_cannot_change_the_bytes_restored(s3: Any, world: dict[str, Any]) -> None:
    record: Relocation = world["record"]
    new_offsets = world["new"][3]
    a = next(entry for entry in world["entries"] if entry.key == "a.txt")
    # a.txt's old offset sent to d.txt's bytes in the new pack: the entry's own SHA-256 refuses them.
    forged = Relocations([dataclasses.replace(record, offsets={(a.pack_offset, a.size): new_offsets["d.txt"]})])
    with running_as(RESTORE_WORKER), pytest.raises(DamagedPack, match="does not hash to its recorded SHA-256"):
        read_packed(s3, BUCKET, forged.apply(a))
    # Sent to a pack version that is not there: the read fails, it never yields other bytes.
    missing = Relocations([dataclasses.replace(record, new_version="no-such-version")])
    with running_as(RESTORE_WORKER), pytest.raises(ClientError):
        read_packed(s3, BUCKET, missing.apply(a))


def test_a_pack_repacked_twice_is_followed_to_its_last_pack_and_a_cycle_ends() -> None:
    first = Relocation(OLD_KEY, "v1", NEW_KEY, "v2", 100, "e2", {(0, 5): 10, (5, 5): 0})
    second = Relocation(NEW_KEY, "v2", OLD_KEY + "-3", "v3", 50, "e3", {(10, 5): 20})
    entry = entry_of("a.txt", b"hello", OLD_KEY, "v1", 200, "e1", 0)
    chained = Relocations([first, second]).apply(entry)
    assert (chained.pack_key, chained.version_id, chained.pack_offset, chained.pack_size, chained.pack_etag) == (OLD_KEY + "-3", "v3", 20, 50, "e3")
    # The object at offset 5 went to the second pack at 0, which the second record does not carry on.
    other = Relocations([first, second]).apply(dataclasses.replace(entry, pack_offset=5))
    assert (other.pack_key, other.version_id, other.pack_offset) == (NEW_KEY, "v2", 0)
    back = Relocation(NEW_KEY, "v2", OLD_KEY, "v1", 200, "e1", {(10, 5): 0})
    assert Relocations([first, back]).apply(entry).version_id in ("v1", "v2")


def test_the_prune_keeps_an_old_pack_version_a_kept_entry_still_names_or_a_recent_record_moved() -> None:
    carried = Relocation(OLD_KEY, "v1", NEW_KEY, "v2", 100, "e2", {(0, 5): 0})
    entries = [entry_of("a.txt", b"hello", OLD_KEY, "v1", 200, "e1", 0), entry_of("b.txt", b"world", OLD_KEY, "v1", 200, "e1", 5)]

    def named(relocations: Relocations, since: datetime) -> set[tuple[str, str]]:
        references = References([iter(entries)], relocations=relocations)
        keep_recently_relocated(references, relocations, since)
        found = {(key, version) for key, version, _, _ in references.tagged_long()}
        references.close()
        return found

    written = datetime(2026, 12, 1, tzinfo=timezone.utc)
    day_after = written + timedelta(days=1)
    # b.txt is not in the record: its old version stays named.
    assert named(Relocations([carried], {(OLD_KEY, "v1"): written}), day_after) == {(OLD_KEY, "v1"), (NEW_KEY, "v2")}
    both = dataclasses.replace(carried, offsets={(0, 5): 0, (5, 5): 5})
    # Both moved: the old version is named by nothing once the record is older than the grace period...
    assert named(Relocations([both], {(OLD_KEY, "v1"): written}), day_after) == {(NEW_KEY, "v2")}
    # ... and kept while it is younger, or when its time is not known.
    assert named(Relocations([both], {(OLD_KEY, "v1"): written}), written - timedelta(hours=1)) == {(OLD_KEY, "v1"), (NEW_KEY, "v2")}
    assert named(Relocations([both]), day_after) == {(OLD_KEY, "v1"), (NEW_KEY, "v2")}

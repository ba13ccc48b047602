"""Plans with `small_objects: pack`: manifest entries that name a pack, backups that write packs, restores
that read them, and a prune that keeps every pack a kept snapshot names."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from chalicelib.catalog import kept_index as ki
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, manifest_key, put_manifest
from chalicelib.deploy.scope import BACKUP_WORKER, VERIFY_WORKER
from chalicelib.plans import Lifecycle, Plan, PlanSet
from tests.record_calls import assume_configuration, running_as

PACKED = Entry(
    source="documents",
    key="notes/é.txt",
    version_id="pack-version",
    size=5,
    etag="5d41402abc4b2a76b9719d911017c592",
    identity="etag:5d41402abc4b2a76b9719d911017c592:5",
    checksum="LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
    sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    pack_key="data/~packs/20261126T000000000Z-a/0001",
    pack_offset=42,
)


# --------------------------------------------------------------------------------------------------------
# Manifest entries of packed objects


def test_a_packed_entry_names_its_pack_and_an_old_entry_reads_as_before() -> None:
    line = PACKED.to_json()
    assert json.loads(line)["pack_key"] == PACKED.pack_key and json.loads(line)["pack_offset"] == 42
    again = Entry.from_json(line)
    assert again == PACKED
    assert again.packed and again.stored_key == PACKED.pack_key and again.byte_range == "bytes=42-46"
    # A line written before packs existed: no pack fields, and the object's own key holds its version.
    old = Entry.from_json('{"source":"documents","key":"a","version_id":"v1","size":3,"etag":"e","identity":"etag:e:3"}')
    assert not old.packed and old.pack_offset is None and old.stored_key == "data/documents/a" and old.byte_range is None
    assert "pack_key" not in old.to_json()
    # A zero-byte packed object has no bytes to read.
    empty = Entry(**{**PACKED.__dict__, "size": 0})
    assert empty.packed and empty.byte_range is None


def test_a_snapshot_with_packed_entries_stays_one_sorted_manifest_and_the_kept_index_keeps_the_pack(s3: Any) -> None:
    bucket, plan = "pack-entries", "documents"
    assume_configuration(PlanSet(plans=(Plan(name=plan, bucket=bucket, sources=(), lifecycle=Lifecycle(())),), catalog_bucket=bucket))
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    plain = Entry("documents", "a.bin", "v-a", 200_000, "e", "etag:e:200000")
    other = Entry(**{**PACKED.__dict__, "key": "z.txt", "pack_offset": 47})
    writer = ManifestWriter()
    for entry in (plain, PACKED, other):
        writer.add(entry)
    backup_id = "20261126T000000000Z-a"
    with writer.finish({"plan": plan, "backup_id": backup_id}, keep_held=False) as body, running_as(BACKUP_WORKER):
        put_manifest(s3, bucket, manifest_key(plan, backup_id), body)
    writer.close()
    with Manifest.download(s3, bucket, manifest_key(plan, backup_id)) as manifest:
        assert list(manifest.entries()) == [plain, PACKED, other]
        assert manifest.header["objects"] == 3
    with ExitStack() as stack, running_as(VERIFY_WORKER):
        index = ki.kept_index(s3, bucket, plan, [backup_id], stack)
        assert [entry for entry, _ in index.versions()] == [plain, PACKED, other]

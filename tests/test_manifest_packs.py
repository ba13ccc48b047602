"""Manifests that name each pack once (format 2): every reader makes of them the entries the backup wrote, and
manifests of the first format, every packed entry naming its pack in full, read as before."""

from __future__ import annotations

import dataclasses
import gzip
import json
from contextlib import ExitStack
from typing import Any

import pytest

from chalicelib.catalog import kept_index as ki
from chalicelib.catalog.manifest_stream import checked_entries, local_entries, streamed_entries
from chalicelib.catalog.manifests import (
    MANIFEST_FORMAT,
    Entry,
    Manifest,
    ManifestWriter,
    PackTable,
    manifest_key,
    put_manifest,
    read_header,
)
from chalicelib.deploy.scope import BACKUP_WORKER, PRUNE_WORKER, VERIFY_WORKER
from chalicelib.errors import Tampered
from chalicelib.plans import Lifecycle, Plan, PlanSet
from tests.record_calls import assume_configuration, running_as
from tests.test_pack_backup import World, first_day
from tests.test_resilience import _clock  # noqa: F401  (autouse: the resilience sweep's clock)

PLAN, BACKUP_ID = "documents", "20261126T000000000Z-a"


def packed(key: str, pack: int, offset: int, version: str = "v", **fields: Any) -> Entry:
    return Entry(
        "documents", key, f"{version}{pack}", 5, "5d41402abc4b2a76b9719d911017c592", "etag:5d41:5",
        checksum="LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        pack_key=f"data/~packs/{BACKUP_ID}/{pack:04d}", pack_offset=offset, pack_size=1000 + pack, pack_etag=f"etag-of-pack-{pack}", **fields,
    )


# Three packs interleaved in key order, a held deletion of a packed object first in its pack's order, an
# object of its own, a pack written before packs recorded their size and ETag.
ENTRIES = [
    packed("a", 1, 0, held=True),
    packed("b", 1, 5),
    packed("c", 2, 0),
    Entry("documents", "d.bin", "own-version", 200_000, "e", "etag:e:200000"),
    packed("e", 1, 10),
    dataclasses.replace(packed("f", 3, 0), pack_size=None, pack_etag=None),
    packed("g", 2, 5),
    dataclasses.replace(packed("h", 3, 5), pack_size=None, pack_etag=None),
    # Another version of pack 1's key: another pack.
    packed("i", 1, 0, version="w"),
]


def written(entries: list[Entry], keep_held: bool = True) -> bytes:
    writer = ManifestWriter()
    for entry in entries:
        writer.add(entry)
    with writer.finish({"plan": PLAN, "backup_id": BACKUP_ID}, keep_held=keep_held) as body:
        data = body.read()
    writer.close()
    return data


def lines_of(manifest: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(manifest).splitlines()]


def test_a_manifest_names_each_pack_once_and_reads_back_the_same_entries() -> None:
    header, *lines = lines_of(written(ENTRIES))
    assert header["format"] == MANIFEST_FORMAT == "backup-snapshot/2"
    # Each pack's key, version, size and ETag once: on its first entry (the held one is written in full and
    # defines nothing), numbered in order of appearance; the pack's later entries give only its number.
    defining = [line for line in lines if "pack" in line and "pack_key" in line]
    assert [(line["key"], line["pack"]) for line in defining] == [("b", 0), ("c", 1), ("f", 2), ("i", 3)]
    assert {line["key"]: line["pack"] for line in lines if "pack" in line and "pack_key" not in line} == {"e": 0, "g": 1, "h": 2}
    assert "pack" not in lines[0] and lines[0]["pack_key"] and lines[0]["held"]
    assert all("version_id" not in line and "pack_size" not in line for line in lines if "pack" in line and "pack_key" not in line)
    # Every line still begins with its source (what page marks count by).
    assert all(line.startswith(b'{"source":"') for line in gzip.decompress(written(ENTRIES)).splitlines()[1:])
    with Manifest(_file(written(ENTRIES))) as manifest:
        assert list(manifest.entries(include_held=True)) == ENTRIES
        assert list(local_entries(manifest, "m", include_held=True)) == ENTRIES
    # The held entry dropped when the manifest is finished: the rest still reads whole.
    with Manifest(_file(written(ENTRIES, keep_held=False))) as manifest:
        assert list(manifest.entries(include_held=True)) == ENTRIES[1:]


def test_a_pack_number_no_entry_gave_before_is_refused() -> None:
    table = PackTable()
    with pytest.raises(ValueError, match="before any entry gives it"):
        table.entry({"source": "documents", "key": "b", "size": 1, "etag": "e", "identity": "i", "pack_offset": 0, "pack": 0})
    with pytest.raises(ValueError, match="numbers its pack 4"):
        table.entry(json.loads(PackTable().line(ENTRIES[1])) | {"pack": 4})


def _file(data: bytes) -> Any:
    import tempfile

    spool = tempfile.TemporaryFile()
    spool.write(data)
    spool.seek(0)
    return spool


def first_format(entries: list[Entry]) -> bytes:
    """A manifest as the first format wrote it: every entry in full."""
    header = {"format": "backup-snapshot/1", "plan": PLAN, "backup_id": BACKUP_ID, "objects": len(entries), "bytes": 0, "held_deletions": 0}
    return gzip.compress(("\n".join([json.dumps(header)] + [entry.to_json() for entry in entries]) + "\n").encode())


def every_reader(s3: Any, bucket: str, backup_id: str, version_id: str) -> dict[str, list[Entry]]:
    """A stored manifest's entries (held ones too where the reader gives them) as each reader makes them: the
    restore's download, the streams the kept indexes merge, and the indexes (the verification's and the
    prune's, which the prune's references and the cost report read)."""
    key = manifest_key(PLAN, backup_id)
    read: dict[str, list[Entry]] = {}
    with Manifest.download(s3, bucket, key, version_id) as manifest:
        read["download"] = list(manifest.entries(include_held=True))
        read["local"] = list(local_entries(manifest, key, include_held=True))
    with ExitStack() as stack:
        read["streamed"] = list(streamed_entries(s3, bucket, key, stack))
        read["checked"] = list(checked_entries(s3, bucket, key, version_id, stack, key))
    with ExitStack() as stack, running_as(VERIFY_WORKER):
        read["verified index"] = [entry for entry, _ in ki.kept_index(s3, bucket, PLAN, [backup_id], stack).versions()]
    with ExitStack() as stack, running_as(PRUNE_WORKER):
        index = ki.kept_index(s3, bucket, PLAN, [backup_id], stack, kind=ki.PRUNE_INDEX, pinned={backup_id: version_id})
        read["pruned index"] = [entry for entry, _ in index.versions()]
    return read


def test_a_first_format_manifest_reads_as_before_through_every_reader(s3: Any) -> None:
    bucket = "first-format"
    assume_configuration(PlanSet(plans=(Plan(name=PLAN, bucket=bucket, sources=(), lifecycle=Lifecycle(())),), catalog_bucket=bucket))
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with running_as(BACKUP_WORKER):
        version = put_manifest(s3, bucket, manifest_key(PLAN, BACKUP_ID), _file(first_format(ENTRIES))).version_id
    assert read_header(s3, bucket, manifest_key(PLAN, BACKUP_ID))["format"] == "backup-snapshot/1"
    for reader, entries in every_reader(s3, bucket, BACKUP_ID, version).items():
        expected = ENTRIES if reader in ("download", "local", "checked", "pruned index") else ENTRIES[1:]
        assert entries == expected, reader
    # An unknown format is still refused.
    with pytest.raises(Tampered, match="unknown manifest format"):
        s3.put_object(Bucket=bucket, Key="meta/x.jsonl.gz", Body=gzip.compress(b'{"format": "backup-snapshot/9"}\n'))
        Manifest.download(s3, bucket, "meta/x.jsonl.gz")


def test_a_packed_backups_entries_read_back_field_by_field_as_the_backup_wrote_them(
    s3: Any, stage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # By writer, each kept alive here: keyed by id() alone, a writer freed and another made at its address
    # would pool two manifests' entries.
    added: dict[int, tuple[ManifestWriter, list[Entry]]] = {}
    add = ManifestWriter.add

    def recording(writer: ManifestWriter, entry: Entry) -> None:
        added.setdefault(id(writer), (writer, []))[1].append(dataclasses.replace(entry))
        add(writer, entry)

    monkeypatch.setattr(ManifestWriter, "add", recording)
    world = World(s3, stage_env)
    world.put(first_day())
    world.backup()
    # The second backup carries most packed entries over from the first manifest, as read back.
    world.put({"small/001.txt": b"changed one", "small/new.txt": b"new", "small/039.txt": None, "edge/shrinks.bin": b"s"})
    added.clear()
    second = world.backup()
    (wrote,) = [entries for _, entries in added.values() if any(entry.packed for entry in entries)]
    # The deleted object was added as a deletion candidate and, deleted, left out when the manifest was finished.
    assert [entry.key for entry in wrote if entry.held] == ["small/039.txt"]
    wrote = [entry for entry in wrote if not entry.held]
    assert len({(entry.pack_key, entry.version_id) for entry in wrote if entry.packed}) >= 3
    bucket = world.plans.get(PLAN).bucket
    record = world.backups.records.get(second.backup_id)
    version = record.plans[PLAN].manifest_version
    for reader, entries in every_reader(s3, bucket, second.backup_id, version).items():
        assert len(entries) == len(wrote), reader
        for got, want in zip(entries, wrote, strict=True):
            assert dataclasses.asdict(got) == dataclasses.asdict(want), reader

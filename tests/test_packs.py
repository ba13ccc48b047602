"""The pack format (chalicelib/catalog/packs.py): objects byte-identical after a round trip, whatever their
keys and sizes; the index read from a pack alone (two ranged GETs in S3, one more per object); damage found
and named; and the stand-alone `scripts/unpack.py` unpacks a pack with the standard library only."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.catalog.packs import (
    FOOTER_BYTES,
    MIN_PACK_BYTES,
    DamagedPack,
    PackWriter,
    objects_of,
    read_index,
    read_index_from_s3,
    read_object,
)

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "test-backup-documents"
# Unicode keys, a zero-byte file, one exactly at the transition minimum, a folder marker, nested paths.
OBJECTS = [
    ("documents", "reports/ünïcødé 報告.txt", b"caf\xc3\xa9 " * 100),
    ("documents", "empty.txt", b""),
    ("documents", "at-the-threshold.bin", os.urandom(MIN_PACK_BYTES)),
    ("documents", "folder/", b""),
    ("photos", "2026/11/a.jpg", os.urandom(10_000)),
]


def pack_of(objects: list[tuple[str, str, bytes]]) -> tuple[bytes, list[Any]]:
    writer = PackWriter()
    packed = [writer.add(source, key, io.BytesIO(data), f"etag:{index}") for index, (source, key, data) in enumerate(objects)]
    body = writer.finish().read()
    writer.close()
    return body, packed


def test_a_pack_gives_back_every_object_byte_for_byte_and_describes_itself() -> None:
    body, packed = pack_of(OBJECTS)
    assert read_index(io.BytesIO(body)) == packed
    assert [(p.source, p.key, data) for p, data in objects_of(io.BytesIO(body))] == OBJECTS
    assert sum(p.length for p in packed) + FOOTER_BYTES < len(body)
    assert [p.identity for p in packed] == [f"etag:{i}" for i in range(len(OBJECTS))]


def test_in_s3_the_index_is_two_ranged_gets_and_each_object_one(s3: Any, backup_buckets: Any) -> None:
    body, packed = pack_of(OBJECTS)
    version = s3.put_object(Bucket=BUCKET, Key="data/~packs/docs/p1.pack", Body=body, IfNoneMatch="*")["VersionId"]
    sent: list[dict[str, Any]] = []
    s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **kw: sent.append(dict(params)))
    assert read_index_from_s3(s3, BUCKET, "data/~packs/docs/p1.pack", version) == packed
    assert len(sent) == 2 and all(p["VersionId"] == version and p["Range"].startswith("bytes=") for p in sent)
    for item, (_, _, data) in zip(packed, OBJECTS):
        assert read_object(s3, BUCKET, "data/~packs/docs/p1.pack", version, item) == data
    # Zero-byte objects need no request.
    assert len(sent) == 2 + sum(1 for _, _, data in OBJECTS if data)


@pytest.mark.parametrize("damage", ["truncated", "trailer", "object", "not a pack"])
def test_a_damaged_pack_is_found_and_the_object_named(damage: str) -> None:
    body, packed = pack_of(OBJECTS)
    if damage == "truncated":
        body = body[: len(body) - 10]
    elif damage == "trailer":
        at = len(body) - FOOTER_BYTES - 5
        body = body[:at] + bytes([body[at] ^ 1]) + body[at + 1:]
    elif damage == "object":
        at = packed[4].offset + 7
        body = body[:at] + bytes([body[at] ^ 1]) + body[at + 1:]
    else:
        body = b"just some bytes " * 10
    with pytest.raises(DamagedPack) as raised:
        list(objects_of(io.BytesIO(body)))
    if damage == "object":
        assert "photos/2026/11/a.jpg" in str(raised.value)


def test_the_stand_alone_script_unpacks_a_pack_and_refuses_keys_outside_the_folder(tmp_path: Path) -> None:
    body, _ = pack_of([*OBJECTS, ("documents", "../../escaped.txt", b"nope")])
    pack = tmp_path / "pack.bin"
    pack.write_bytes(body)
    out = tmp_path / "restored"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "unpack.py"), str(pack), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stderr and "escaped.txt" in done.stderr
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
    for source, key, data in OBJECTS:
        path = out / source / key
        assert path.is_dir() if key.endswith("/") else path.read_bytes() == data
    listed = subprocess.run([sys.executable, str(ROOT / "scripts" / "unpack.py"), str(pack), "--list"], capture_output=True, text=True)
    assert "photos/2026/11/a.jpg" in listed.stdout

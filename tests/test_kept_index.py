"""The kept index gives exactly the distinct versions a merge of the kept manifests gives, whatever snapshots
come and go between two passes, and a pass reads the index and the manifests written since it, never every
kept manifest again."""

from __future__ import annotations

import gzip
import random
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import pytest

from chalicelib.catalog import kept_index as ki
from chalicelib.catalog.manifest_stream import local_entries
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, manifest_key, put_manifest
from chalicelib.deploy.scope import BACKUP_WORKER, PRUNE_WORKER, VERIFY_WORKER
from chalicelib.plans import Lifecycle, Plan, PlanSet
from chalicelib.verify.distinct import DistinctVersions
from tests.record_calls import assume_configuration, running_as

BUCKET = "index-test"
PLAN = "documents"


def snapshot_id(day: int) -> str:
    return f"202611{day:02d}T010000000Z-{day:08x}"


def write_snapshot(s3: Any, day: int, entries: Sequence[Entry]) -> str:
    writer = ManifestWriter()
    for entry in sorted(entries, key=lambda e: e.sort_key):
        writer.add(entry)
    backup_id = snapshot_id(day)
    with writer.finish({"plan": PLAN, "backup_id": backup_id}, keep_held=False) as body, running_as(BACKUP_WORKER):
        put_manifest(s3, BUCKET, manifest_key(PLAN, backup_id), body)
    writer.close()
    return backup_id


def by_merging_manifests(s3: Any, kept: Sequence[str]) -> list[tuple[str, str, str, int]]:
    """What the verification merged before the index: every kept manifest, distinct versions."""
    with ExitStack() as stack, running_as(VERIFY_WORKER):
        manifests = [
            stack.enter_context(Manifest.download(s3, BUCKET, manifest_key(PLAN, s))).entries() for s in sorted(kept)
        ]
        return sorted((e.source, e.key, e.version_id, e.size) for e in DistinctVersions(manifests, None))


def by_index(s3: Any, kept: Sequence[str]) -> list[tuple[str, str, str, int]]:
    with ExitStack() as stack, running_as(VERIFY_WORKER):
        index = ki.kept_index(s3, BUCKET, PLAN, kept, stack)
        named = list(index.versions())
        assert all(mask for _, mask in named)
        return [(e.source, e.key, e.version_id, e.size) for e, _ in named]


class History:
    """Objects changing day by day: each day's snapshot names the current version of every live key."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.live: dict[tuple[str, str], Entry] = {}
        self.serial = 0

    def day(self) -> list[Entry]:
        for _ in range(self.random.randint(3, 12)):
            source = self.random.choice(["docs", "docs-a", "mail"])
            key = f"k{self.random.randint(0, 25):02d}"
            if self.random.random() < 0.2:
                self.live.pop((source, key), None)
                continue
            self.serial += 1
            self.live[(source, key)] = Entry(source, key, f"v{self.serial:05d}", self.serial, "e", "i")
        return list(self.live.values())


class CountingS3:
    """The S3 client, counting the objects read by key."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.reads: list[str] = []

    def get_object(self, **params: Any) -> Any:
        self.reads.append(params["Key"])
        return self._s3.get_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


@pytest.fixture
def bucket(s3: Any) -> Iterator[Any]:
    # Each call is checked against the generated policy of the function that makes it in production: the
    # backup worker writes manifests, the verify worker the index, the prune deletes superseded ones.
    assume_configuration(PlanSet(plans=(Plan(name=PLAN, bucket=BUCKET, sources=(), lifecycle=Lifecycle(())),), catalog_bucket=BUCKET))
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield s3


@pytest.mark.parametrize("seed", range(2))
def test_the_index_gives_what_merging_the_kept_manifests_gives_as_snapshots_come_and_go(bucket: Any, seed: int) -> None:
    s3 = bucket
    history = History(seed)
    kept: list[str] = []
    for day in range(1, 13):
        kept.append(write_snapshot(s3, day, history.day()))
        # Retention removes some older snapshots, never the newest.
        kept = [s for s in kept[:-1] if history.random.random() > 0.25] + kept[-1:]
        counting = CountingS3(s3)
        assert by_index(counting, kept) == by_merging_manifests(s3, kept), f"day {day}"
        manifests_read = [k for k in counting.reads if k.startswith("meta/snapshots/")]
        # After the first day, only the day's new manifest is read: not every kept one.
        assert manifests_read == ([manifest_key(PLAN, kept[-1])] if day > 1 else [manifest_key(PLAN, kept[0])])


def test_a_pass_over_an_up_to_date_index_reads_no_manifest_and_writes_nothing(bucket: Any) -> None:
    s3 = bucket
    history = History(7)
    kept = [write_snapshot(s3, day, history.day()) for day in (1, 2, 3)]
    first = by_index(s3, kept)
    counting = CountingS3(s3)
    written = ki.index_keys(s3, BUCKET, PLAN)
    assert by_index(counting, kept) == first
    assert [k for k in counting.reads if not k.startswith(ki.INDEX_PREFIX)] == []
    assert ki.index_keys(s3, BUCKET, PLAN) == written and len(written) == 1


def test_a_missing_or_unreadable_index_is_rebuilt_from_the_manifests(bucket: Any) -> None:
    s3 = bucket
    history = History(3)
    kept = [write_snapshot(s3, day, history.day()) for day in (1, 2, 3)]
    expected = by_merging_manifests(s3, kept)
    by_index(s3, kept[:2])
    (key,) = ki.index_keys(s3, BUCKET, PLAN)
    with running_as(VERIFY_WORKER):
        s3.put_object(Bucket=BUCKET, Key=key.replace(".jsonl.gz", "-junk.jsonl.gz"), Body=b"not gzip")
    assert by_index(s3, kept) == expected
    # A readable header over a body cut short: the manifests alone.
    body = gzip.compress(b'{"format": "kept-index/1", "plan": "documents", "snapshots": ["' + kept[0].encode() + b'"]}\n{"source": "do')
    with running_as(VERIFY_WORKER):
        s3.put_object(Bucket=BUCKET, Key=ki.index_key(PLAN, ["99999999T999999999Z-ffffffff"]), Body=body)
    assert by_index(s3, kept) == expected
    with running_as(PRUNE_WORKER):
        ki.drop_superseded(s3, BUCKET, PLAN)
        for key in ki.index_keys(s3, BUCKET, PLAN):
            s3.delete_object(Bucket=BUCKET, Key=key)
    assert by_index(s3, kept) == expected


def test_the_prune_step_deletes_every_index_but_the_newest_by_version(bucket: Any) -> None:
    s3 = bucket
    history = History(5)
    kept: list[str] = []
    for day in (1, 2, 3):
        kept.append(write_snapshot(s3, day, history.day()))
        by_index(s3, kept)
    keys = ki.index_keys(s3, BUCKET, PLAN)
    assert len(keys) == 3
    with running_as(PRUNE_WORKER):
        assert ki.drop_superseded(s3, BUCKET, PLAN) == 2
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=ki.INDEX_PREFIX)
    assert [v["Key"] for v in versions.get("Versions", [])] == [keys[-1]] and not versions.get("DeleteMarkers")
    assert by_index(s3, kept) == by_merging_manifests(s3, kept)


class _AcceptsPuts:
    """Enough of S3 for an index to be written: the put is accepted and forgotten."""

    def put_object(self, **_: Any) -> dict[str, Any]:
        return {}


def test_a_resumed_pass_skips_exactly_the_lines_up_to_its_checkpoint() -> None:
    # Keys JSON escapes or that sort apart from their bytes, in two sources of which one prefixes the other.
    keys = ['a"quote', "back\\slash", "caf\u00e9", "line\u2028sep", "plain", "z\u0001ctl"]
    entries = sorted((Entry(source, key, f"v{n}", n, "e", "i") for source in ("a", "a-b") for key in keys for n in (1, 2)),
                     key=lambda e: (e.sort_key, e.version_id))
    index = ki._write(_AcceptsPuts(), BUCKET, PLAN, ["s1"], ((e, 1) for e in entries), ki.VERIFIED, None)
    try:
        every = [entry for entry, _ in index.versions()]
        assert every == entries
        for after in [("a", ""), *(e.sort_key for e in entries), ("a-b", "zzz"), ("0", "x")]:
            assert [entry for entry, _ in index.versions(after)] == [e for e in entries if e.sort_key > after], after
    finally:
        index.close()


def test_a_downloaded_manifest_decoded_in_blocks_gives_the_entries_it_gives_line_by_line() -> None:
    """The cost report decodes the manifests it reads as the kept index decodes a stream
    (`manifest_stream.local_entries`): the same entries, held ones only when asked for, a field this version
    does not know left out."""
    writer = ManifestWriter()
    rng = random.Random(7)
    for number in range(2500):
        entry = Entry("src", f"k/{number:05d}\u2028é", f"v{rng.getrandbits(40):x}", rng.randrange(10**6), "e", "id", held=number % 97 == 0)
        writer.add(entry)
    with writer.finish({"plan": PLAN, "backup_id": snapshot_id(1)}, keep_held=True) as body:
        lines = gzip.decompress(body.read()).split(b"\n")
    writer.close()
    # A line with a field this version does not know (a manifest from a newer version of the system).
    lines[5] = lines[5][:-1] + b',"newer_field":1}'
    spool = tempfile.TemporaryFile()
    spool.write(gzip.compress(b"\n".join(lines)))
    with Manifest(spool) as manifest:
        for held in (False, True):
            expected = list(manifest.entries(include_held=held))
            assert list(local_entries(manifest, "test", include_held=held)) == expected
            assert len(expected) == (2500 if held else 2500 - 26)

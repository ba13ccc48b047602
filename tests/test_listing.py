"""Listing a source in key ranges at once gives the snapshot a single listing gives, whatever the keys.

Readers here use pages of 3 keys (S3's are 1,000) so that a few dozen keys make many pages and ranges. Every
case backs up the same source into two buckets: once listed one page after another, once in ranges cut at
the previous snapshot's page marks; the snapshots must be equal entry for entry, and the ranged run must
really have listed in ranges.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from botocore.exceptions import ClientError

from chalicelib.backup import listing, ranges
from chalicelib.jobs.budget import TimeBudget
from chalicelib.backup.plan_backup import PlanBackup
from chalicelib.backup.plan_run import PlanOptions, run_plan
from chalicelib.backup.sources import S3SourceReader
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, manifest_key, put_manifest
from chalicelib.plans import Lifecycle, Plan, S3Source
from tests.record_calls import assume_configuration
from tests.test_scale import FakeContext, Invocations, make_bucket, snapshot_content
from tests.stored import assert_every_manifest_holds

PAGE = 3
SOURCE_BUCKET = "listing-source"
RANGED = "listing-ranged"
SEQUENTIAL = "listing-sequential"

# Source keys, before and after a day of changes (new keys before the first and after the last split key,
# and in between; changed and deleted ones), for each awkward distribution.
LONG = "shared/" + "p" * 300 + "/"
DISTRIBUTIONS: dict[str, tuple[list[str], list[str]]] = {
    # Almost every key under one prefix, a few around it.
    "one huge prefix": (
        ["a", "b"] + [f"huge/{i:04d}" for i in range(60)] + ["zz"],
        ["0-before-all", "huge/0000a", "huge/0031-new", "huge/9999", "zzz-after-all"],
    ),
    # Keys that differ only after a long shared prefix, split points among them.
    "long shared prefixes": (
        [f"{LONG}{i:03d}" for i in range(40)] + [f"{LONG}{i:03d}/x" for i in range(0, 40, 3)],
        [f"{LONG}", f"{LONG}000!", f"{LONG}039/y", f"{LONG}~"],
    ),
    # Two-, three- and four-byte UTF-8, private use and astral-plane characters: S3's byte order.
    "unicode": (
        [f"{ch}{i}" for ch in ("e", "\u00e9", "\u65e5", "\ue000", "\U0001f389") for i in range(9)],
        ["\t-tab-first", "\u00e9-new", "\U0001f389\U0001f389", "\U0010fffd-last"],
    ),
}


def plan_for(bucket: str, prefix: str = "") -> Plan:
    return Plan(
        name="listing", bucket=bucket, sources=(S3Source(name="src", bucket=SOURCE_BUCKET, prefix=prefix),),
        lifecycle=Lifecycle(()),
    )


def reader_factory(s3: Any, max_ranges: int) -> Any:
    return lambda source: S3SourceReader(s3, source, page_size=PAGE, max_ranges=max_ranges)


def run(plan: Plan, s3: Any, backup_id: str, max_ranges: int, **options: Any) -> PlanBackup:
    backup = PlanBackup(plan, s3, backup_id, reader_factory(s3, max_ranges), max_workers=4, **options)
    result = backup.run()
    assert result.status == "SUCCEEDED", result
    return backup


def seed(s3: Any, keys: list[str], prefix: str = "") -> None:
    """Source objects, written straight into moto's store: thousands in a second, where requests take ten."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    for key in keys:
        s3_backends[DEFAULT_ACCOUNT_ID]["aws"].put_object(SOURCE_BUCKET, prefix + key, f"v1 {key}".encode())


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """The backup ids these tests name (26 and 27 November 2026) stay within MAX_BACKUP_DAYS of the clock."""
    with time_machine.travel(datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def buckets(s3: Any) -> Any:
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    make_bucket(s3, RANGED)
    make_bucket(s3, SEQUENTIAL)
    assume_configuration(plan_for(RANGED))
    return s3


@pytest.mark.parametrize(("name", "prefix"), [(name, "") for name in sorted(DISTRIBUTIONS)] + [("unicode", "in/")])
def test_a_listing_in_ranges_gives_the_snapshot_of_a_single_listing(buckets: Any, name: str, prefix: str) -> None:
    s3 = buckets
    before, added = DISTRIBUTIONS[name]
    seed(s3, before, prefix)
    if prefix:
        # Keys outside the source's prefix, sorting before and after it, are not the source's.
        seed(s3, ["in", "in.txt", "im/x", "io/y"])
    for bucket, ranges_at_once in ((RANGED, 8), (SEQUENTIAL, 1)):
        run(plan_for(bucket, prefix), s3, "20261126T000000000Z-first", ranges_at_once)

    # Keys new before the first split key and after the last: the open-ended ranges must list them.
    with Manifest.download(s3, RANGED, manifest_key("listing", "20261126T000000000Z-first")) as previous:
        split = listing.split_keys(listing.page_marks(previous.lines(), PAGE)["src"], max_ranges=8, page_size=PAGE)
    assert len(split) == 7 and min(added) < split[0] and max(added) > split[-1]
    seed(s3, added, prefix)
    for key in before[::7]:
        s3.put_object(Bucket=SOURCE_BUCKET, Key=prefix + key, Body=b"changed")
    for key in before[3::11]:
        s3.delete_object(Bucket=SOURCE_BUCKET, Key=prefix + key)
    ranged = run(plan_for(RANGED, prefix), s3, "20261127T000000000Z-second", 8)
    single = run(plan_for(SEQUENTIAL, prefix), s3, "20261127T000000000Z-second", 1)

    expected = sorted(set(before) - set(before[3::11]) | set(added))
    content = snapshot_content(s3, plan_for(RANGED), "20261127T000000000Z-second")
    assert [row[1] for row in content if not row[7]] == expected
    assert content == snapshot_content(s3, plan_for(SEQUENTIAL), "20261127T000000000Z-second")
    assert (ranged.result.copied, ranged.result.deleted) == (single.result.copied, single.result.deleted)
    # It did list in ranges: fewer requests in a row than pages.
    assert ranged.list_depth < ranged.list_requests
    assert single.list_depth == single.list_requests
    assert assert_every_manifest_holds(s3, RANGED) > 0


def test_an_unchanged_source_lists_in_the_pages_of_one_listing_with_a_short_critical_path(buckets: Any) -> None:
    s3 = buckets
    keys = [f"k/{i:05d}" for i in range(100)]
    seed(s3, keys)
    run(plan_for(RANGED), s3, "20261126T000000000Z-first", 8)
    calls = list_calls(s3)
    again = run(plan_for(RANGED), s3, "20261127T000000000Z-again", 8)
    pages = math.ceil(len(keys) / PAGE)
    # Split at page marks, the ranges hold whole pages: no request more than a single listing makes.
    source_lists = calls[SOURCE_BUCKET]
    assert source_lists == pages
    # The snapshots' listing (one page), then the longest range.
    assert again.list_requests == pages + 1 == source_lists + calls[RANGED]
    assert again.list_depth <= math.ceil(pages / 8) + 1
    assert again.result.unchanged == len(keys) and again.result.copied == 0


def list_calls(s3: Any) -> Counter[str]:
    """ListObjectsV2 requests by bucket, counted at the client from now on."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(params: dict[str, Any], **kwargs: Any) -> None:
        with lock:
            counts[params["Bucket"]] += 1

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", count)
    return counts


def test_a_ranged_listing_resumed_across_invocations_equals_a_single_pass(buckets: Any) -> None:
    s3 = buckets
    before, added = DISTRIBUTIONS["unicode"]
    seed(s3, before)
    for bucket in (RANGED, SEQUENTIAL):
        run(plan_for(bucket), s3, "20261126T000000000Z-first", 8)
    seed(s3, added)
    for key in before[::5]:
        s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=b"changed")
    invocations = 0
    while True:
        invocations += 1
        assert invocations < 200, "no progress"
        result = PlanBackup(
            plan_for(RANGED), s3, "20261127T000000000Z-second", reader_factory(s3, 8), max_workers=4, batch_size=1,
            budget=TimeBudget(FakeContext(1)),
        ).run()
        if result.status != "RUNNING":
            assert result.status == "SUCCEEDED", result
            break
    assert invocations >= 10
    run(plan_for(SEQUENTIAL), s3, "20261127T000000000Z-second", 1)
    assert snapshot_content(s3, plan_for(RANGED), "20261127T000000000Z-second") == snapshot_content(
        s3, plan_for(SEQUENTIAL), "20261127T000000000Z-second"
    )


def test_each_range_of_a_split_plan_lists_its_keys_in_ranges(buckets: Any) -> None:
    s3 = buckets
    before, added = DISTRIBUTIONS["one huge prefix"]
    seed(s3, before)
    for bucket in (RANGED, SEQUENTIAL):
        run(plan_for(bucket), s3, "20261126T000000000Z-first", 8)
    seed(s3, added)
    invoker = Invocations()
    policy = ranges.SplitPolicy(split_objects=20, max_parallel=3, invoker=invoker)
    clients = SimpleNamespace(s3=s3, dynamodb=None)
    backup_id = "20261127T000000000Z-split"
    results: list[Any] = []

    def invocation(payload: dict[str, Any]) -> None:
        # The worker's run of a plan, as BackupService.run makes it.
        options = PlanOptions(max_workers=4, reader_factory=reader_factory(s3, 4))
        outcome = run_plan(plan_for(RANGED), clients, payload["backup_id"], options, payload.get("segment"), policy)
        results.append(outcome.result)

    invocation({"backup_id": backup_id})
    invoker.drive(invocation)
    assert [r.status for r in results].count("SUCCEEDED") == 1 and len(results) == 3
    run(plan_for(SEQUENTIAL), s3, backup_id, 1)
    assert snapshot_content(s3, plan_for(RANGED), backup_id) == snapshot_content(s3, plan_for(SEQUENTIAL), backup_id)


# --------------------------------------------------------------------------------------------------------
# Split keys


def test_page_marks_count_each_source_and_skip_held_deletions() -> None:
    writer = ManifestWriter()
    for index in range(7):
        writer.add(Entry("a", f"{index}", "v", 1, "e", "i"))
    for index in range(8):
        writer.add(Entry("b", f"{index}", "v", 1, "e", "i", held=index in (1, 2)))
    with Manifest(writer.finish({"plan": "p"}, keep_held=True)) as manifest:
        entries = manifest.entries()
        next(entries)  # a stream of the same manifest, half-way through, is left undisturbed
        marks = listing.page_marks(manifest.lines(), page_size=3)
        assert [e.key for e in entries] == [str(i) for i in range(1, 7)] + ["0"] + [str(i) for i in range(3, 8)]
    writer.close()
    assert marks == {"a": listing.PageMarks(["2", "5"], 7), "b": listing.PageMarks(["4", "7"], 6)}


def test_split_keys_end_pages_and_stay_inside_the_window() -> None:
    marks = listing.PageMarks([f"{i:02d}" for i in range(1, 21)], 20 * 1000)
    keys = listing.split_keys(marks, max_ranges=16)
    assert len(keys) == 15 and keys == sorted(set(keys))
    # Each range holds whole pages, at most ceil(20 / 16) of them.
    bounds = [0] + [int(k) for k in keys] + [20]
    assert max(b - a for a, b in zip(bounds, bounds[1:])) == 2
    assert listing.split_keys(marks, start_after="05", stop_key="09", max_ranges=16) == ["06", "07", "08"]
    assert listing.split_keys(listing.PageMarks(["x"], 1000), max_ranges=16) == []
    assert listing.split_keys(None) == []


def test_a_failing_range_fails_the_source(buckets: Any) -> None:
    s3 = buckets
    seed(s3, [f"{i:03d}" for i in range(30)])
    run(plan_for(RANGED), s3, "20261126T000000000Z-first", 8)

    def deny(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("StartAfter", "") >= "015":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "listing refused"}}, "ListObjectsV2")

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", deny)
    result = PlanBackup(plan_for(RANGED), s3, "20261127T000000000Z-x", reader_factory(s3, 8), max_workers=4).run()
    s3.meta.events.unregister("provide-client-params.s3.ListObjectsV2", deny)
    assert result.status == "FAILED" and "s3 source 'src'" in result.errors[0] and "listing refused" in result.errors[0]
    assert result.deleted == 0


def test_the_default_reader_lists_in_ranges_of_s3_pages(buckets: Any) -> None:
    """S3's own pages of 1,000 keys: a snapshot of 2,001 objects is listed in three ranges of one page each."""
    s3 = buckets
    keys = [f"{i:04d}" for i in range(2001)]
    seed(s3, keys)
    # The previous snapshot, written directly: what matters here is where its keys are, not their versions.
    writer = ManifestWriter()
    for key in keys:
        etag = hashlib.md5(f"v1 {key}".encode()).hexdigest()
        size = len(f"v1 {key}")
        writer.add(Entry("src", key, "v1", size, etag, f"etag:{etag}:{size}"))
    put_manifest(s3, RANGED, manifest_key("listing", "20261126T000000000Z-first"), writer.finish({"plan": "listing", "backup_id": "20261126T000000000Z-first"}, keep_held=False))
    writer.close()
    again = PlanBackup(plan_for(RANGED), s3, "20261127T000000000Z-again", lambda source: S3SourceReader(s3, source))
    assert again.run().unchanged == 2001
    assert (again.list_requests, again.list_depth) == (1 + 3, 1 + 1)

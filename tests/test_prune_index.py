"""The prune with the plans' S3 Inventory reads its own kept index (meta/prune-index/<plan>/) instead of every
kept manifest, never trusts an index changed after it was written, and its scheduled run works once per
report: between two reports it records that it waits and sends nothing more, while POST /prune always runs."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.response import StreamingBody

from chalicelib.catalog.kept_index import index_keys
from chalicelib.catalog.manifests import Entry
from chalicelib.layout import SNAPSHOTS_PREFIX
from chalicelib.prune.job import PruneJob
from chalicelib.catalog.kept_index import PRUNE_INDEX
from chalicelib.retention import RetentionPolicy
from tests.record_calls import CallsSince
from tests.test_prune import BUCKET, SOURCE
from tests.test_prune_inventory import inventoried, named, world  # noqa: F401  (the fixture)

GRACE = timedelta(hours=1)


def scheduled(plans: Any) -> Any:
    # (allow_large: the guard is not what this is about.)
    job = PruneJob(plans.config.plans, plans.clients, grace=GRACE)
    return job.run(job.start(["docs"], "schedule", allow_large=["docs"], grace=GRACE).prune_id)


def by_api(plans: Any) -> Any:
    job = PruneJob(plans.config.plans, plans.clients, grace=GRACE)
    return job.run(job.start(["docs"], "api", allow_large=["docs"], grace=GRACE).prune_id)


def manifests_read(since: CallsSince) -> list[str]:
    return [c.params["Key"] for c in since.calls() if c.operation == "GetObject" and c.params["Key"].startswith(SNAPSHOTS_PREFIX)]


def _forge(s3: Any, key: str, how: str, drop: str) -> None:
    """Write the index at `key` again (a new version of it), changed: a line naming `drop` left out, or the
    header naming other snapshots."""
    lines = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).splitlines()
    header = json.loads(lines[0])
    if how == "a row removed":
        # A line: Entry's fields in order, then the mask.
        position = [field.name for field in dataclasses.fields(Entry)].index("version_id")
        lines = [lines[0]] + [line for line in lines[1:] if json.loads(line)[position] != drop]
    else:
        header["snapshots"] = [f"{name[:-1]}0" for name in header["snapshots"]]
        lines = [json.dumps(header).encode()] + lines[1:]
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b"\n".join(lines) + b"\n"))


@pytest.fixture
def history(world: Any) -> dict[str, Any]:  # noqa: F811
    """Three daily snapshots of two files (a.txt changes daily, b.txt not yet), a report, and a prune keeping
    two: the prune's index covers them."""
    s3 = world.s3
    world.config = inventoried(RetentionPolicy(keep_last=2))
    s3.put_object(Bucket=SOURCE, Key="b.txt", Body=b"b, unchanged until the fourth day")
    ids = []
    for day in range(3):
        ids.append(world.backup(f"day {day}".encode()))
        world.days(1)
    stable = s3.head_object(Bucket=BUCKET, Key="data/src/b.txt")["VersionId"]
    world.deliver()
    first = by_api(world)
    assert first.status == "SUCCEEDED" and first.plans["docs"].removing == [ids[0]], first.plans["docs"].errors
    return {"ids": ids, "stable": stable, "index": first.plans["docs"].inventory["kept_index"]}


def test_the_prune_reads_its_index_and_the_manifests_written_since_not_every_kept_one(world: Any, history: dict[str, Any]) -> None:  # noqa: F811
    s3 = world.s3
    assert history["index"] and history["index"].startswith("meta/prune-index/docs/")
    assert index_keys(s3, BUCKET, "docs", PRUNE_INDEX) == [history["index"]]
    world.days(1)
    newest = world.backup(b"day 3")
    world.deliver()
    since = CallsSince()

    record = by_api(world)

    work = record.plans["docs"]
    assert record.status == "SUCCEEDED" and work.removing == [history["ids"][1]], work.errors
    # The survey merges the new manifest into yesterday's index; the delete pass reads the new index only.
    assert manifests_read(since) == [f"{SNAPSHOTS_PREFIX}docs/{newest}.jsonl.gz"]
    assert work.inventory["kept_index"] != history["index"]
    # The superseded index is deleted; the verification's own (meta/index/) is another one.
    assert index_keys(s3, BUCKET, "docs", PRUNE_INDEX) == [work.inventory["kept_index"]]
    assert named(s3, history["ids"][2]) | named(s3, newest) <= world.versions()


@pytest.mark.parametrize("how", ["a row removed", "a header naming other snapshots"])
def test_an_index_changed_after_it_was_written_is_not_trusted_and_nothing_kept_goes(
    world: Any, history: dict[str, Any], how: str  # noqa: F811
) -> None:
    s3 = world.s3
    # b.txt changes: its first version stays named by the third snapshot (kept) and the second (removed next).
    s3.put_object(Bucket=SOURCE, Key="b.txt", Body=b"b, changed")
    world.days(1)
    newest = world.backup(b"day 3")
    _forge(s3, history["index"], how, history["stable"])
    world.deliver()
    since = CallsSince()

    record = by_api(world)

    work = record.plans["docs"]
    assert record.status == "SUCCEEDED" and work.removing == [history["ids"][1]], work.errors
    # Rebuilt from the kept snapshots' manifests, and the version the kept one names is still there.
    assert sorted(manifests_read(since)) == sorted(
        f"{SNAPSHOTS_PREFIX}docs/{b}.jsonl.gz" for b in (history["ids"][1], history["ids"][2], newest)
    )
    assert ("data/src/b.txt", history["stable"]) in world.versions()
    assert named(s3, history["ids"][2]) | named(s3, newest) <= world.versions()


def test_the_scheduled_prune_works_once_per_report_and_post_prune_always(world: Any, history: dict[str, Any]) -> None:  # noqa: F811
    s3 = world.s3
    plans = world.config.plans
    world.config = dataclasses.replace(world.config, plans=dataclasses.replace(plans, inventory=dataclasses.replace(plans.inventory, frequency="Weekly")))
    world.days(1)
    world.backup(b"day 3")
    world.days(1)
    world.backup(b"day 4")
    # No new report since the prune in `history` swept the newest: the scheduled prune waits.
    since = CallsSince()

    waited = scheduled(world)

    work = waited.plans["docs"]
    assert waited.status == "SUCCEEDED" and work.phase == "done" and work.waiting is not None, work
    assert work.waiting["swept_by"] and work.waiting["report"] and "waits for the next inventory report" in work.waiting["message"]
    assert not work.removing and work.deleted["versions"] == 0
    operations = {c.operation for c in since.calls()}
    assert operations <= {"GetObject", "ListObjectsV2", "PutObject"}, operations
    assert not [c for c in since.calls() if c.params.get("Bucket") == BUCKET and c.params.get("Prefix", "").startswith(SNAPSHOTS_PREFIX)]
    # A second one is not due either: the waiting prune did not sweep anything.
    assert scheduled(world).plans["docs"].waiting is not None
    # POST /prune runs whatever the reports.
    posted = by_api(world)
    assert posted.plans["docs"].waiting is None and posted.plans["docs"].removing == history["ids"][1:3]
    world.days(1)
    world.backup(b"day 5")
    assert scheduled(world).plans["docs"].waiting is not None
    # A new report makes it due.
    world.deliver()
    due = scheduled(world)
    assert due.plans["docs"].waiting is None and due.plans["docs"].phase == "done"
    assert due.plans["docs"].inventory["report"] != work.waiting["report"] and len(due.plans["docs"].removing) == 1
    # A week without a new report makes it due too (reports that stop do not stop the prune).
    world.days(6)
    assert scheduled(world).plans["docs"].waiting is not None
    world.days(1)
    assert scheduled(world).plans["docs"].waiting is None
    # Without an inventory, every scheduled prune runs.
    plain = dataclasses.replace(world.config, plans=dataclasses.replace(world.config.plans, inventory=None))
    job = PruneJob(plain.plans, world.clients, grace=GRACE)
    assert job.run(job.start(["docs"], "schedule", grace=GRACE).prune_id).plans["docs"].waiting is None
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="meta/prune-index/docs/")["KeyCount"] == 1


def test_a_manifest_whose_bytes_are_not_the_ones_written_is_refused_by_version_and_nothing_goes(
    world: Any, history: dict[str, Any]  # noqa: F811
) -> None:
    """The manifests merged into the prune's index are read as S3 sends them: the bytes that arrive are
    hashed and compared with the SHA-256 S3 stored for the pinned version only when the stream ends. Here
    they arrive changed (a valid manifest, one entry left out: what would let its version go), so the merge
    refuses that version: no index is written and nothing is deleted."""
    s3 = world.s3
    s3.put_object(Bucket=SOURCE, Key="b.txt", Body=b"b, changed")
    world.days(1)
    newest = world.backup(b"day 3")
    world.deliver()
    key = f"{SNAPSHOTS_PREFIX}docs/{newest}.jsonl.gz"
    version = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]
    lines = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).splitlines()
    forged = gzip.compress(b"\n".join(line for line in lines if b'"b.txt"' not in line) + b"\n")
    assert len(forged) and forged != gzip.compress(b"\n".join(lines) + b"\n")

    def changed_in_transit(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("VersionId") == version and "Body" in parsed:
            parsed["Body"] = StreamingBody(io.BytesIO(forged), len(forged))

    events = world.clients.s3.meta.events
    events.register("after-call.s3.GetObject", changed_in_transit)
    since = CallsSince()
    try:
        record = by_api(world)
    finally:
        events.unregister("after-call.s3.GetObject", changed_in_transit)

    work = record.plans["docs"]
    assert work.status == "FAILED" and work.phase == "survey", work
    assert any("TAMPERING" in error and version in error and "SHA-256" in error for error in work.errors), work.errors
    # The merge read the new manifest at its pinned version, and wrote no index of it.
    assert [c.params.get("VersionId") for c in since.calls() if c.operation == "GetObject" and c.params["Key"] == key] == [version]
    assert index_keys(s3, BUCKET, "docs", PRUNE_INDEX) == [history["index"]]
    assert not [c for c in since.calls() if c.operation in ("DeleteObject", "DeleteObjects")]
    # Its bytes arriving as written, the next prune merges it and goes on.
    again = by_api(world).plans["docs"]
    assert again.status == "SUCCEEDED" and again.inventory["kept_index"] != history["index"], again.errors

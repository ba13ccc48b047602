"""Restores too large for one invocation. Cut into parts worked at once (chalicelib/restore/parts.py): each
part copies its own range of the selection, once per object and naming the exact version, lists only its
own key range of the backup bucket, thaws its own archived versions; the whole restore adds its parts up, and
ends when the last part does. A thaw pass carries on from its checkpoint, and the hourly check leaves what it
cannot reach in time to the next one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


from chalicelib.catalog.manifests import Manifest, manifest_key
from chalicelib.config import Settings
from chalicelib.restore import parts
from chalicelib.restore.record import RestoreStatus
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from chalicelib.restore.versions import listed_versions
from chalicelib.times import utcnow
from tests import test_restore, test_restore_requests
from tests.test_restore import archive, bucket_contents
from tests.test_restore_requests import BACKUP_BUCKET, DOCUMENTS, TARGET, Sent
from tests.test_scale import FakeContext

# The restore tests' world: the documents plan backed up once, a target bucket, thaws that take a while.
settings = test_restore_requests.settings
backup_id = test_restore_requests.backup_id
manual_thaw = test_restore.manual_thaw

QUEUE = "meta/restore-queue/"


def service(settings: Settings, clients: Any, invoked: list[dict[str, Any]], split: tuple[int, int] = (3, 4)) -> RestoreService:
    """A restore worker as Lambda runs it: it can have new invocations (`invoked` collects them)."""
    return RestoreService(
        settings.plans, clients, max_workers=4, allowed_buckets=(TARGET,), prices=settings.prices,
        split=split, invoker=invoked.append,
    )


def snapshot_versions(s3: Any, backup_id: str) -> dict[str, str]:
    with Manifest.download(s3, BACKUP_BUCKET, manifest_key("documents", backup_id)) as manifest:
        return {entry.data_key: entry.version_id for entry in manifest.entries()}


def test_a_large_restore_is_cut_into_parts_each_copying_its_own_range_once(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str, manual_thaw: Any
) -> None:
    named = snapshot_versions(s3, backup_id)
    # One archived version in the first part's range, one in the last's.
    first, last = sorted(named)[0], sorted(named)[-1]
    for key in (first, last):
        archive(BACKUP_BUCKET, key, named[key], "GLACIER")
    manual_thaw(1)
    invoked: list[dict[str, Any]] = []
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    whole = service(settings, clients, invoked).start(request)

    cut = service(settings, clients, invoked).run(whole.restore_id, context=FakeContext(100))
    sent = Sent(clients)
    # 10 entries, one part per 3, at most 4: four parts, each invoked; the whole restore copied nothing.
    assert cut.status == "RUNNING" and cut.parts == [f"{whole.restore_id}-p{i}" for i in range(4)]
    assert invoked == [{"restore_id": part} for part in cut.parts]
    assert not bucket_contents(s3, TARGET)

    for payload in list(invoked):
        service(settings, clients, invoked).run(payload["restore_id"], context=FakeContext(100))
    assert len(invoked) == 4  # no part cut again, none handed on
    copies = sent.of("CopyObject")
    # Every object not archived copied exactly once, from the version the snapshot names.
    assert sorted((c["CopySource"]["Key"], c["CopySource"]["VersionId"]) for c in copies) == sorted(
        (key, version) for key, version in named.items() if key not in (first, last)
    )
    assert sorted((t["Key"], t["VersionId"]) for t in sent.of("RestoreObject")) == sorted((k, named[k]) for k in (first, last))
    # Each part listed only its own key range: the first from the start, the others after their bound.
    markers = [p.get("KeyMarker") for p in sent.of("ListObjectVersions") if p["Prefix"].startswith("data/")]
    assert markers.count(None) == 1 and len(markers) == 4
    records = [RestoreService.from_settings(settings, clients).get(p) for p in cut.parts]
    assert sorted(m for m in markers if m) == sorted(f"data/documents/{r.part_range[0][1]}" for r in records[1:])
    assert sum(r.total for r in records) == DOCUMENTS

    whole_now = RestoreService.from_settings(settings, clients).get(whole.restore_id)
    assert (whole_now.status, whole_now.restored, whole_now.pending_thaw, whole_now.failed) == ("WAITING_FOR_THAW", 8, 2, 0)
    # The parts are in the whole one's counts, not in the list of restores.
    listed = [r.restore_id for r in RestoreService.from_settings(settings, clients).latest()]
    assert whole.restore_id in listed and not set(listed) & set(cut.parts)

    # The hourly check: the thaws are done, each waiting part copies its version, the whole one ends.
    hourly = RestoreService.from_settings(settings, clients)
    for hours in (1, 2):
        hourly.resume_pending(now=utcnow() + timedelta(hours=hours))
    done = hourly.get(whole.restore_id)
    assert (done.status, done.restored, done.pending_thaw, done.failed) == ("SUCCEEDED", DOCUMENTS, 0, 0), done
    assert bucket_contents(s3, TARGET) == sources["documents"]
    catalog = settings.plans.catalog_bucket
    hourly.resume_pending(now=utcnow() + timedelta(hours=3))
    assert s3.list_objects_v2(Bucket=catalog, Prefix=QUEUE)["KeyCount"] == 0


def test_a_restore_is_not_cut_without_new_invocations_or_below_the_threshold(
    settings: Settings, clients: Any, s3: Any, backup_id: str
) -> None:
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    invoked: list[dict[str, Any]] = []
    small = service(settings, clients, invoked, split=(DOCUMENTS + 1, 4))
    done = small.run(small.start(request).restore_id, context=FakeContext(100))
    assert (done.status, done.restored, done.parts, invoked) == ("SUCCEEDED", DOCUMENTS, [], [])
    # In process (the command line): no invocations to be had, never cut.
    s3.delete_objects(Bucket=TARGET, Delete={"Objects": [{"Key": k} for k in bucket_contents(s3, TARGET)]})
    inline = RestoreService(settings.plans, clients, allowed_buckets=(TARGET,), split=(3, 4))
    done = inline.run(inline.start(request).restore_id)
    assert (done.status, done.restored, done.parts) == ("SUCCEEDED", DOCUMENTS, [])


def test_a_part_missing_after_its_whole_restore_named_it_fails_the_whole_one_with_the_reason(
    settings: Settings, clients: Any, s3: Any, backup_id: str
) -> None:
    invoked: list[dict[str, Any]] = []
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    worker = service(settings, clients, invoked)
    cut = worker.run(worker.start(request).restore_id, context=FakeContext(100))
    for payload in invoked[1:]:
        service(settings, clients, invoked).run(payload["restore_id"], context=FakeContext(100))
    store = worker.store
    s3.delete_object(Bucket=store.bucket, Key=store.key(cut.parts[0]))
    hourly = RestoreService.from_settings(settings, clients)
    hourly.resume_pending(now=utcnow() + timedelta(hours=1))
    done = hourly.get(cut.restore_id)
    # The missing part's share of the selection (the first of four parts of ten: three) counts as failed.
    assert done.status == "PARTIAL" and (done.restored, done.failed) == (DOCUMENTS - 3, 3)
    assert f"part {cut.parts[0]} has no readable record" in done.failures[0]["reason"]


def test_a_parts_listing_holds_exactly_its_own_range(s3: Any, backup_buckets: Any, backup_id: str) -> None:
    named = sorted(snapshot_versions(s3, backup_id))
    keys = [key.removeprefix("data/documents/") for key in named]
    for after_index, through_index in [(None, 3), (3, 6), (6, None), (None, None)]:
        after = ("documents", keys[after_index]) if after_index is not None else None
        through = ("documents", keys[through_index]) if through_index is not None else None
        listed = [v["Key"] for v in listed_versions(s3, BACKUP_BUCKET, ["data/documents/"], after, through)]
        expected = [
            k for k in named
            if (after is None or k > f"data/documents/{after[1]}") and (through is None or k <= f"data/documents/{through[1]}")
        ]
        assert sorted(set(listed)) == expected, (after, through)
    # Another source's range lists nothing of this one.
    assert list(listed_versions(s3, BACKUP_BUCKET, ["data/documents/"], ("photos", ""), None)) == []


def test_cut_gives_disjoint_ranges_covering_the_selection() -> None:
    class E:
        def __init__(self, key: str) -> None:
            self.sort_key = ("s", key)

    entries = [E(f"k{i:03d}") for i in range(10)]
    ranges = parts.cut(entries, 3, 4)  # type: ignore[arg-type]
    assert len(ranges) == 4
    covered = [e.sort_key for after, through in ranges for e in parts.in_part(entries, after, through)]  # type: ignore[arg-type]
    assert covered == [e.sort_key for e in entries]
    assert parts.cut(entries, 3, 1) == [] and parts.cut(entries, 11, 4) == [] and parts.cut(entries, 0, 4) == []  # type: ignore[arg-type]


def test_a_thaw_pass_too_long_for_one_invocation_carries_on_looking_at_each_waiting_version_once(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str, manual_thaw: Any, monkeypatch: Any
) -> None:
    import chalicelib.restore.passes as passes_module

    named = snapshot_versions(s3, backup_id)
    archived = sorted(named)[:5]
    for key in archived:
        archive(BACKUP_BUCKET, key, named[key], "GLACIER")
    manual_thaw(1)
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    first = RestoreService.from_settings(settings, clients)
    waiting = first.run(first.start(request).restore_id)
    assert (waiting.status, waiting.pending_thaw) == ("WAITING_FOR_THAW", 5)

    # Batches of 2 (1,000 in the functions), and an invocation that runs short of time after each batch.
    monkeypatch.setattr(passes_module, "BATCH_SIZE", 2)

    class OneBatch:
        def running_out(self) -> bool:
            return True

    def one_pass() -> tuple[Any, list[str], int]:
        """A later pass, invocation after invocation until it ends: the record, the versions looked at, and
        how many invocations it took."""
        sent = Sent(clients)
        handed_on: list[dict[str, Any]] = []
        invocations = 0
        while True:
            invocations += 1
            before = len(handed_on)
            done = RestoreService.from_settings(settings, clients).passes.run(waiting.restore_id, budget=OneBatch(), invoker=handed_on.append)
            if len(handed_on) == before:
                return done, [p["Key"] for p in sent.of("HeadObject")], invocations

    # The thaws still run: every waiting version looked at once, in three invocations, none lost.
    still, looked_at, invocations = one_pass()
    assert sorted(looked_at) == archived and invocations == 3
    assert (still.status, still.pending_thaw, still.pending_checked, still.restored) == ("WAITING_FOR_THAW", 5, 0, DOCUMENTS - 5)
    # Thawed now: each copied once, the restore ends whole.
    done, looked_at, _ = one_pass()
    assert sorted(looked_at) == archived
    assert (done.status, done.restored, done.pending_thaw) == ("SUCCEEDED", DOCUMENTS, 0)
    assert bucket_contents(s3, TARGET) == sources["documents"]


def test_the_hourly_check_short_of_time_leaves_the_restores_it_did_not_reach_to_the_next_check(
    settings: Settings, clients: Any, s3: Any, backup_id: str, manual_thaw: Any
) -> None:
    named = snapshot_versions(s3, backup_id)
    archive(BACKUP_BUCKET, sorted(named)[0], named[sorted(named)[0]], "GLACIER")
    manual_thaw(1)
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    first = RestoreService.from_settings(settings, clients)
    waiting = first.run(first.start(request).restore_id)
    assert waiting.status == "WAITING_FOR_THAW"
    deployed = RestoreService(
        settings.plans, clients, worker_mode="lambda", worker_function="app-dev-backup_worker",
        allowed_buckets=(TARGET,), invoker=lambda payload: None,
    )
    assert deployed.resume_pending(now=utcnow() + timedelta(hours=1), context=FakeContext(0)) == []
    assert deployed.get(waiting.restore_id).passes == waiting.passes
    for hours in (1, 2):
        deployed.resume_pending(now=utcnow() + timedelta(hours=hours), context=FakeContext(100))
    done = deployed.get(waiting.restore_id)
    assert (done.status, done.restored) == ("SUCCEEDED", DOCUMENTS)


def test_a_refused_part_fails_its_whole_range_in_the_whole_restore(settings: Settings, clients: Any, s3: Any, backup_id: str) -> None:
    invoked: list[dict[str, Any]] = []
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    worker = service(settings, clients, invoked)
    cut = worker.run(worker.start(request).restore_id, context=FakeContext(100))
    # One part's record names a bucket this stage may not write: its worker refuses it, writing nothing.
    store = worker.store
    part, etag = store.read(cut.parts[0]) or (None, "")
    assert part is not None
    part.target = {"bucket": "someone-elses-bucket", "prefix": ""}
    store.replace(part, etag)
    for payload in invoked:
        service(settings, clients, invoked).run(payload["restore_id"], context=FakeContext(100))
    done = worker.get(cut.restore_id)
    assert done.status == "PARTIAL" and done.restored == DOCUMENTS - part.total and done.failed == part.total
    assert any("refused" in f["reason"] for f in done.failures)


def test_parts_that_do_not_cover_the_selection_leave_the_rest_failed_not_succeeded() -> None:
    from chalicelib.restore.record import RestoreRecord

    whole = RestoreRecord(restore_id="20261207T000000000Z-w", backup_id="b", plan="documents", target={}, total=10,
                          parts=["20261207T000000000Z-w-p0", "20261207T000000000Z-w-p1"])
    done = [RestoreRecord(restore_id=p, backup_id="b", plan="documents", target={}, total=3, restored=3, status=RestoreStatus.SUCCEEDED)
            for p in whole.parts]
    assert parts.add_up(whole, list(done))
    assert (whole.status, whole.restored, whole.failed) == ("PARTIAL", 6, 4)
    assert "4 object(s) of the selection are in no readable part" in whole.failures[-1]["reason"]

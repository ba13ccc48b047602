"""What a restore sends, request by request: one copy per object and a fixed few requests besides (no look at
the backup's version or at the target before a copy), archive state from a listing, one thaw per archived
version; and every safety rule of a restore still holding on that path: no overwrite unless asked (the
copy's `IfNoneMatch`, which tests/moto_strict.py makes moto honour as S3 does), pruned snapshots refused,
checksums compared."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from chalicelib.backup.service import BackupService
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.config import Settings
from chalicelib.restore.quote import quote
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from tests.test_restore import archive, bucket_contents

TARGET = "restore-target"
BACKUP_BUCKET = "test-backup-documents"
DOCUMENTS = 10
# Requests a restore of N objects from STANDARD may send besides its N copies: ceil(N/1000) listing pages of
# the backup's versions and a fixed few (the target's check and listing, the snapshot's pruned marker,
# record, versions and body, the restore's record and queue entry, the marker again, and its last save).
FIXED = 12


@pytest.fixture
def settings(clients: Any, backup_buckets: Any, sources: Any, s3: Any, stage_env: dict[str, str]) -> Settings:
    s3.create_bucket(Bucket=TARGET)
    return Settings.from_environ(stage_env)


@pytest.fixture
def backup_id(settings: Settings, clients: Any) -> str:
    backups = BackupService(settings, clients)
    record = backups.start(["documents"], trigger="api")
    assert backups.run(record.backup_id).status == "SUCCEEDED"
    return record.backup_id


class Sent:
    """Every S3 request the clients send from now on: its operation and parameters."""

    def __init__(self, clients: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        clients.s3.meta.events.register("provide-client-params.s3.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def count(self) -> Counter[str]:
        return Counter(name for name, _ in self.calls)

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


def restore(settings: Settings, clients: Any, backup_id: str, **request: Any) -> Any:
    service = RestoreService.from_settings(settings, clients)
    started = service.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET), **request))
    return service.run(started.restore_id)


def test_a_restore_from_standard_sends_one_copy_per_object_and_a_fixed_few_requests_besides(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str
) -> None:
    sent = Sent(clients)
    done = restore(settings, clients, backup_id)
    assert (done.status, done.restored) == ("SUCCEEDED", DOCUMENTS)
    counts = sent.count()
    assert counts["CopyObject"] == DOCUMENTS and counts["HeadObject"] == 0, counts
    assert counts["ListObjectVersions"] <= 1 + math.ceil(DOCUMENTS / 1000), counts
    assert sum(counts.values()) <= DOCUMENTS + math.ceil(DOCUMENTS / 1000) + FIXED, counts
    # Each copy names the exact version, and S3 refuses it where the key exists (overwrite is off).
    for params in sent.of("CopyObject"):
        assert params["CopySource"]["VersionId"] and params["IfNoneMatch"] == "*"
    assert bucket_contents(s3, TARGET) == sources["documents"]


def test_overwrite_replaces_with_one_unconditional_copy_each(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str
) -> None:
    s3.put_object(Bucket=TARGET, Key="reports/report-3.txt", Body=b"stale")
    sent = Sent(clients)
    done = restore(settings, clients, backup_id, overwrite=True)
    assert (done.status, done.restored) == ("SUCCEEDED", DOCUMENTS)
    copies = sent.of("CopyObject")
    assert len(copies) == DOCUMENTS and not any("IfNoneMatch" in params for params in copies)
    assert sent.count()["HeadObject"] == 0
    assert bucket_contents(s3, TARGET) == sources["documents"]


def test_a_key_written_at_the_target_after_the_checks_is_not_overwritten(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str
) -> None:
    service = RestoreService.from_settings(settings, clients)
    started = service.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET)))
    # Written after the conflict check found the key free, before the copy: no look at the target precedes
    # the copy, so only the copy's condition keeps it.
    s3.put_object(Bucket=TARGET, Key="reports/report-5.txt", Body=b"someone else's")
    done = service.run(started.restore_id)
    assert (done.status, done.restored, done.failed) == ("PARTIAL", DOCUMENTS - 1, 1)
    assert "appeared during the restore" in done.failures[0]["reason"]
    assert s3.get_object(Bucket=TARGET, Key="reports/report-5.txt")["Body"].read() == b"someone else's"


def test_a_copy_answered_409_while_another_conditional_write_was_in_flight_is_sent_again(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str
) -> None:
    from types import SimpleNamespace

    conflicted: list[str] = []

    def in_flight(params: dict[str, Any], **kwargs: Any) -> Any:
        # S3's answer while another conditional write to the key is under way (which then did not land).
        if params["url_path"].endswith("/reports/report-5.txt") and not conflicted:
            conflicted.append(params["url_path"])
            error = {"Code": "ConditionalRequestConflict", "Message": "A conflicting conditional operation is in progress"}
            return SimpleNamespace(status_code=409), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 409}}
        return None

    clients.s3.meta.events.register("before-call.s3.CopyObject", in_flight)
    sent = Sent(clients)
    done = restore(settings, clients, backup_id)
    assert conflicted and (done.status, done.restored, done.failed) == ("SUCCEEDED", DOCUMENTS, 0), done.failures
    assert [p["Key"] for p in sent.of("CopyObject")].count("reports/report-5.txt") == 2
    assert bucket_contents(s3, TARGET) == sources["documents"]


def test_a_copy_whose_checksum_differs_from_the_snapshot_fails_that_object(
    settings: Settings, clients: Any, s3: Any, backup_id: str
) -> None:
    def corrupted(parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:
        # S3 answers the copy's SHA-256; the restore compares it with the snapshot's, as it did after a HEAD.
        result = parsed.get("CopyObjectResult", {})
        if result.get("ChecksumSHA256"):
            result["ChecksumSHA256"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

    clients.s3.meta.events.register("after-call.s3.CopyObject", corrupted)
    done = restore(settings, clients, backup_id)
    assert (done.status, done.restored, done.failed) == ("FAILED", 0, DOCUMENTS)
    assert all("differs from the snapshot's" in failure["reason"] for failure in done.failures)


def test_a_snapshot_pruned_after_the_restore_was_recorded_is_refused_before_any_copy(
    settings: Settings, clients: Any, s3: Any, backup_id: str
) -> None:
    recorder = RestoreService.from_settings(settings, clients)
    record = recorder.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET)))
    PrunedMarkers(s3, BACKUP_BUCKET).mark("documents", backup_id, "prune-1", datetime.now(timezone.utc))
    sent = Sent(clients)
    # The worker: another process, which reads the record and the snapshot itself.
    done = RestoreService.from_settings(settings, clients).run(record.restore_id)
    assert done.status == "FAILED" and done.refused and "pruned" in done.refused
    assert sent.count()["CopyObject"] == 0 and bucket_contents(s3, TARGET) == {}


def test_archived_versions_get_one_thaw_each_from_a_listing_and_the_quote_is_as_a_head_of_each_would_make_it(
    settings: Settings, clients: Any, s3: Any, backup_id: str
) -> None:
    archived = {"reports/report-1.txt": "GLACIER", "reports/report-2.txt": "DEEP_ARCHIVE"}
    for key, storage_class in archived.items():
        data_key = f"data/documents/{key}"
        archive(BACKUP_BUCKET, data_key, s3.head_object(Bucket=BACKUP_BUCKET, Key=data_key)["VersionId"], storage_class)
    service = RestoreService.from_settings(settings, clients)
    request = RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))

    sent = Sent(clients)
    quoted = service.quote(request)
    assert sent.count()["HeadObject"] == 0
    plan, selected, layout, _, manifest = service.checks.prepare(request)
    heads = [dict(s3.head_object(Bucket=plan.bucket, Key=e.data_key, VersionId=e.version_id)) for e in selected]
    assert quoted == quote(request, plan, selected, heads, service.prices, layout, manifest)
    assert quoted["need_thaw"] == 2 and quoted["archived"]["DEEP_ARCHIVE"]["objects"] == 1

    sent = Sent(clients)
    done = service.run(service.start(request).restore_id)
    assert (done.status, done.restored, done.pending_thaw) == ("WAITING_FOR_THAW", DOCUMENTS - 2, 2)
    thaws = sent.of("RestoreObject")
    assert sorted(t["Key"] for t in thaws) == sorted(f"data/documents/{key}" for key in archived)
    # Archived versions are known from the listing: no copy is tried on them, and nothing is headed.
    counts = sent.count()
    assert counts["CopyObject"] == DOCUMENTS - 2 and counts["HeadObject"] == 0, counts


def test_a_first_pass_too_long_for_one_invocation_carries_on_from_its_checkpoint_copying_each_object_once(
    settings: Settings, clients: Any, s3: Any, sources: Any, backup_id: str, monkeypatch: Any
) -> None:
    import chalicelib.restore.passes as passes_module

    # Batches of 3 (1,000 in the functions), and an invocation that runs short of time after each batch.
    monkeypatch.setattr(passes_module, "BATCH_SIZE", 3)

    class OneBatch:
        def running_out(self) -> bool:
            return True

    record = RestoreService.from_settings(settings, clients).start(
        RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET))
    )
    sent = Sent(clients)
    handed_on: list[dict[str, Any]] = []
    invocations = 0
    done = None
    while True:
        # Each invocation is the restore worker anew: what it knows is the record and its checkpoint.
        invocations += 1
        before = len(handed_on)
        worker = RestoreService.from_settings(settings, clients)
        done = worker.passes.run(record.restore_id, budget=OneBatch(), invoker=handed_on.append)
        if len(handed_on) == before:
            break
        assert handed_on[-1] == {"restore_id": record.restore_id} and done.done_through
    assert done is not None and (done.status, done.restored, done.failed) == ("SUCCEEDED", DOCUMENTS, 0)
    assert invocations == math.ceil(DOCUMENTS / 3) and done.done_through is None
    copied = [params["Key"] for params in sent.of("CopyObject")]
    assert sorted(copied) == sorted(sources["documents"])  # each object once, none left out
    assert bucket_contents(s3, TARGET) == sources["documents"]


def test_a_restore_the_checks_refuse_ends_refused_and_leaves_nothing_queued(
    settings: Settings, clients: Any, s3: Any, backup_id: str
) -> None:
    """The record is written while the checks read (one round trip, not two): a refusal ends it FAILED with
    the reason, out of the queue, so the hourly check never carries out a restore its caller saw refused."""
    from chalicelib.errors import Conflict

    s3.put_object(Bucket=TARGET, Key="reports/report-5.txt", Body=b"already there")
    service = RestoreService.from_settings(settings, clients)
    sent = Sent(clients)
    with pytest.raises(Conflict):
        service.start(RestoreRequest(backup_id=backup_id, plan="documents", target=Target(bucket=TARGET)))
    assert sent.count()["CopyObject"] == 0
    [record] = service.latest()
    assert record.status == "FAILED" and "already exist" in (record.refused or "")
    # The hourly check runs nothing of it, and takes it out of the queue.
    assert service.resume_pending() == []
    assert s3.list_objects_v2(Bucket=settings.plans.catalog_bucket, Prefix="meta/restore-queue/")["KeyCount"] == 0


def test_a_manifest_in_glacier_ir_is_quoted_with_its_retrieval_per_read_as_s3_answers_its_class() -> None:
    import gzip
    import io

    from chalicelib.catalog.manifests import MANIFEST_FORMAT, Manifest
    from chalicelib.plans import Lifecycle, Plan, S3Source
    from chalicelib.prices import GB, load_prices
    from chalicelib.restore.quote import quote

    body = gzip.compress(json.dumps({"format": MANIFEST_FORMAT}).encode() + b"\n")

    class MovedManifest:
        """S3's answer for a manifest the plan's manifest rule has moved (moto never runs lifecycle rules)."""

        def get_object(self, **params: Any) -> dict[str, Any]:
            return {"Body": io.BytesIO(body), "VersionId": "v1", "ETag": '"e"', "StorageClass": "GLACIER_IR", "ContentLength": len(body)}

    manifest = Manifest.download(MovedManifest(), "b", "meta/snapshots/docs/x.jsonl.gz")
    assert (manifest.storage_class, manifest.size) == ("GLACIER_IR", len(body))
    prices = load_prices()
    plan = Plan(name="docs", bucket="b", sources=(S3Source(name="src", bucket="s"),), lifecycle=Lifecycle(transitions=()))
    request = RestoreRequest(backup_id="20260302T020000000Z-1a2b3c4d", plan="docs", target=Target(bucket="t"))
    two_gb = 2 * GB
    quoted = quote(request, plan, [], [], prices, manifest=("GLACIER_IR", two_gb))
    option = prices.retrieval[("GLACIER_IR", "Instant")]
    assert (quoted["manifest_storage_class"], quoted["manifest_bytes"]) == ("GLACIER_IR", two_gb)
    assert quoted["manifest_retrieval_usd_per_read"] == round(2 * option.per_gb + option.per_1000_requests / 1000, 6) > 0.05
    assert quote(request, plan, [], [], prices, manifest=("STANDARD", two_gb))["manifest_retrieval_usd_per_read"] == 0.0

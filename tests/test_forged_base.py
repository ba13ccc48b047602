"""A forged base cannot poison later backups: an entry is carried forward only when what it names agrees with
the source object as listed, and the weekly verification checks every version against its entry's source
identity.

The attack, with the backup writer's permissions: put planted bytes under `data/documents/<key>` (a new
version), create a manifest for a backup id F between the last real backup and now that copies the last real
manifest but points that key's entry at the planted version (version id, ETag, checksum, SHA-256, size) while
keeping its source identity, and create F's sealed and working records naming that manifest's version and
hash. Before the fix, the next genuine backup copied nothing, named the planted version and reported
SUCCEEDED; verification at 100% said ok; a restore returned the planted bytes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import Entry, Manifest, ManifestWriter, manifest_key, put_manifest
from chalicelib.catalog.records import backup_time, new_backup_id, record_key, sealed_key
from chalicelib.restore.requests import RestoreRequest, Target
from chalicelib.restore.service import RestoreService
from chalicelib.verify.verifier import Verifier
from tests.conftest import read_alerts
from tests.stored import entries_of
from tests import test_tampering as tampering
from tests.test_tampering import backup, plant_version

# The tampering tests' clock, service and restore target.
_clock, service, restore_target = tampering._clock, tampering.service, tampering.restore_target

KEY = "reports/report-3.txt"
ORIGINAL = b"report 3\n" * 4
# As long as the original: size alone cannot tell them apart.
PLANTED = b"planted bytes".ljust(len(ORIGINAL), b"!")


def forge_base(s3: Any, service: BackupService, real_id: str, change: dict[str, Any]) -> str:
    """Backup F, between `real_id` and now, made as the writer could: a new manifest copying the real one
    with KEY's entry changed, and sealed and working records naming that manifest's version and hash."""
    plan = service.settings.plans.get("documents")
    forged = new_backup_id(backup_time(real_id) + timedelta(milliseconds=1), suffix="forged")
    with Manifest.download(s3, plan.bucket, manifest_key("documents", real_id)) as manifest:
        header, entries = manifest.header, list(manifest.entries(include_held=True))
    writer = ManifestWriter()
    for entry in entries:
        writer.add(Entry(**{**entry.__dict__, **(change if entry.key == KEY else {})}))
    header = {key: value for key, value in header.items() if key not in ("format", "objects", "bytes", "held_deletions")}
    body = writer.finish({**header, "backup_id": forged}, keep_held=True)
    written = put_manifest(s3, plan.bucket, manifest_key("documents", forged), body)
    writer.close()
    record = json.loads(s3.get_object(Bucket=service.records.bucket, Key=sealed_key(real_id))["Body"].read())
    record["backup_id"] = forged
    result = record["plans"]["documents"]
    result["snapshot"] = result["snapshot"].replace(real_id, forged)
    result["manifest_version"], result["manifest_sha256"] = written.version_id, written.sha256
    for key in (sealed_key(forged), record_key(forged)):
        s3.put_object(Bucket=service.records.bucket, Key=key, Body=json.dumps(record).encode(), IfNoneMatch="*")
    return forged


def named(s3: Any, bucket: str, backup_id: str) -> Entry:
    return {e.key: e for e in entries_of(s3, bucket, "documents", backup_id)}[KEY]


def stored_bytes(s3: Any, bucket: str, entry: Entry) -> bytes:
    return s3.get_object(Bucket=bucket, Key=entry.data_key, VersionId=entry.version_id)["Body"].read()


def restored(service: BackupService, backup_id: str, s3: Any) -> bytes:
    restores = RestoreService.from_settings(service.settings, service.clients, service.tampering.report)
    request = RestoreRequest(backup_id, "documents", Target(bucket="restore-target", prefix=f"{backup_id}/"), keys=(KEY,))
    done = restores.run(restores.start(request).restore_id)
    assert done.status == "SUCCEEDED"
    return s3.get_object(Bucket="restore-target", Key=f"{backup_id}/{KEY}")["Body"].read()


@pytest.mark.parametrize("lie", ["planted", "claims_source_etag"])
def test_a_backdated_forged_base_does_not_poison_the_next_backup(
    service: BackupService, s3: Any, sqs: Any, topic_queue: str, restore_target: str, lie: str, recorded_calls: Any
) -> None:
    """`planted`: the entry describes the planted version truly (its own ETag). `claims_source_etag`: the
    entry also lies that the version's ETag is the source's, so nothing in the manifest disagrees: the
    backup cannot see it without a request per object, and the weekly verification finds it."""
    plan = service.settings.plans.get("documents")
    real = backup(service)
    original = named(s3, plan.bucket, real.backup_id)
    planted = plant_version(s3, plan.bucket, f"data/documents/{KEY}", PLANTED)
    if lie == "claims_source_etag":
        planted["etag"] = original.etag
    forged = forge_base(s3, service, real.backup_id, planted)
    read_alerts(sqs, topic_queue)

    calls = len(recorded_calls.calls())
    genuine = backup(service)
    sent = recorded_calls.calls()[calls:]
    result = genuine.plans["documents"]
    entry = named(s3, plan.bucket, genuine.backup_id)
    if lie == "planted":
        # The entry disagrees with the source as listed: copied again, named by the new snapshot, reported.
        assert (result.copied, result.unchanged) == (1, 9)
        assert entry.version_id not in (planted["version_id"], original.version_id)
        assert stored_bytes(s3, plan.bucket, entry) == ORIGINAL
        assert restored(service, genuine.backup_id, s3) == ORIGINAL
        assert [w for w in result.warnings if w.startswith("TAMPERING") and KEY in w and forged in w]
        alerts = [a for a in read_alerts(sqs, topic_queue) if a["Subject"].startswith("TAMPERING")]
        assert any(KEY in alert["Message"] for alert in alerts)
        # Every other entry is carried forward as the real snapshot named it.
        others = {e.key: e.version_id for e in entries_of(s3, plan.bucket, "documents", genuine.backup_id) if e.key != KEY}
        assert others == {e.key: e.version_id for e in entries_of(s3, plan.bucket, "documents", real.backup_id) if e.key != KEY}
        # The copy is the only request on data/ beyond the tampered key's: no request per unchanged object.
        data_calls = [c for c in sent if str(c.params.get("Key", "")).startswith("data/")]
        assert [(c.operation, c.params["Key"]) for c in data_calls] == [("CopyObject", f"data/documents/{KEY}")]
    else:
        assert entry.version_id == planted["version_id"]
    # Either way, the weekly verification of what the forged base named finds the planted version.
    for poisoned in (forged, genuine.backup_id) if lie != "planted" else (forged,):
        report = Verifier(service.settings.plans, service.clients).verify_backup(poisoned, ["documents"], sample_percent=100)
        assert not report["ok"]
        assert [(f["key"], f["version_id"]) for f in report["damaged"]] == [(KEY, planted["version_id"])]
        # A true entry of the planted version disagrees only with its source identity.
        assert ("the source" in report["damaged"][0]["detail"]) == (lie == "planted")


def test_an_untouched_chain_is_carried_forward_without_a_request_per_object(
    service: BackupService, s3: Any, recorded_calls: Any
) -> None:
    plan = service.settings.plans.get("documents")
    first = backup(service)
    calls = len(recorded_calls.calls())
    second = backup(service)
    result = second.plans["documents"]
    assert (result.copied, result.unchanged, result.warnings) == (0, 10, [])
    assert [c for c in recorded_calls.calls()[calls:] if str(c.params.get("Key", "")).startswith("data/")] == []
    before = entries_of(s3, plan.bucket, "documents", first.backup_id)
    after = entries_of(s3, plan.bucket, "documents", second.backup_id)
    assert [(e.key, e.version_id) for e in before] == [(e.key, e.version_id) for e in after]
    for entry in after:
        assert len(stored_bytes(s3, plan.bucket, entry)) == entry.size
    report = Verifier(service.settings.plans, service.clients).verify_backup(second.backup_id, ["documents"], sample_percent=100)
    assert report["ok"], report

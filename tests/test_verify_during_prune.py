"""A prune that fires while the weekly verification runs is no false alarm: the versions of snapshots it marks
after the job listed them are being deleted as retention says, not missing. A version gone from a snapshot
still kept is missing whatever the prune does.

The interleaving is driven, not raced: the prune (its marker, then the deletion of the versions only that
snapshot names and of its manifest) happens just before the job's k-th HeadObject of the plan's data, after the
job listed the snapshots and built its kept index. The prune's writes go to the emulator's store directly, as
another function's would, outside the job's own requests.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import manifest_key
from chalicelib.catalog.pruned import marker_key
from chalicelib.config import Settings
from chalicelib.verify.checks import weekly_slice
from chalicelib.verify.job import VerificationJob
from tests.conftest import read_alerts
from tests.test_verify import read_manifest
from tests.test_verify_job import CATALOG, TOPIC, findings, later_id, take_backup

PLAN = "documents"


@pytest.fixture
def two_snapshots(clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str], s3: Any) -> dict[str, Any]:
    """Two backups of 30 notes, the first 15 revised in between: the first snapshot alone names 15 versions."""
    backups = BackupService(Settings.from_environ(stage_env), clients)
    documents = stage_env["DOCUMENTS_SOURCE_BUCKET"]
    for index in range(30):
        s3.put_object(Bucket=documents, Key=f"notes/note-{index:02d}.txt", Body=f"note {index}\n".encode())
    first = take_backup(backups)
    for index in range(15):
        s3.put_object(Bucket=documents, Key=f"notes/note-{index:02d}.txt", Body=f"note {index}, revised\n".encode())
    second = take_backup(backups)
    old = read_manifest(s3, CATALOG, manifest_key(PLAN, first))[1]
    kept = read_manifest(s3, CATALOG, manifest_key(PLAN, second))[1]
    only_first = [e for e in old if e.version_id not in {k.version_id for k in kept}]
    assert len(only_first) == 15
    # Version ids are random, and so is which slice each version falls in: the day's slice is one holding
    # versions of both snapshots (the kept one's for the case where one of them is truly deleted), the one
    # with most of the first snapshot's own among those, so that the prune deletes some the job has yet to
    # head. (Before, the slice was chosen without the kept snapshot's: one in 500 runs it held none of them.)
    first_only = Counter(weekly_slice(e) for e in only_first)
    in_kept = Counter(weekly_slice(e) for e in kept)
    weekday = max((day for day in first_only if in_kept[day]), key=lambda day: (first_only[day], in_kept[day], -day))
    assert first_only[weekday] >= 2 and first_only[weekday] + in_kept[weekday] >= 4
    return {"first": first, "only_first": only_first, "kept": kept, "weekday": weekday}


def prune(s3: Any, snapshot: str, only_its: list[Any]) -> None:
    """What a prune does to a snapshot, in its order: the marker, then the versions only it names and its
    manifest."""
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    marker = {"plan": PLAN, "backup_id": snapshot, "prune_id": "prune-x", "marked_at": "2026-11-26T05:00:00.000Z"}
    backend.put_object(CATALOG, marker_key(PLAN, snapshot), json.dumps(marker).encode())
    for entry in only_its:
        backend.delete_object(CATALOG, entry.data_key, version_id=entry.version_id)
    for version in s3.list_object_versions(Bucket=CATALOG, Prefix=manifest_key(PLAN, snapshot)).get("Versions", []):
        backend.delete_object(CATALOG, version["Key"], version_id=version["VersionId"])


@pytest.mark.parametrize("truly_deleted", [False, True], ids=["prune only", "and a kept version deleted"])
@pytest.mark.parametrize("at_head", [1, 4])
def test_a_prune_during_the_job_is_not_missing_versions(
    at_head: int, truly_deleted: bool, two_snapshots: dict[str, Any], clients: Any, plans: Any, s3: Any, sqs: Any,
    topic_queue: str,
) -> None:
    weekday = two_snapshots["weekday"]
    expected = []
    if truly_deleted:
        # A version the kept snapshot names, in the day's slice: gone for real.
        gone = next(e for e in two_snapshots["kept"] if weekly_slice(e) == weekday)
        s3.delete_object(Bucket=CATALOG, Key=gone.data_key, VersionId=gone.version_id)
        expected = [(gone.key, gone.version_id, "missing")]
    heads = {"count": 0}

    def before_head(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Bucket"] == CATALOG and params["Key"].startswith(f"data/{PLAN}/"):
            heads["count"] += 1
            if heads["count"] == at_head:
                prune(s3, two_snapshots["first"], two_snapshots["only_first"])

    clients.s3.meta.events.register("provide-client-params.s3.HeadObject", before_head)
    read_alerts(sqs, topic_queue)
    job = VerificationJob(plans, clients, TOPIC, max_workers=1, batch_size=2)
    record = job.run(job.start(later_id("weekly"), weekday=weekday, trigger="test").job_id)

    assert heads["count"] >= at_head  # the prune did fire while the job ran
    assert findings(record) == expected
    assert record.status == ("FAILED" if truly_deleted else "SUCCEEDED")
    failed = [a for a in read_alerts(sqs, topic_queue) if a["Subject"].startswith("VERIFY FAILED")]
    assert len(failed) == (1 if truly_deleted else 0)

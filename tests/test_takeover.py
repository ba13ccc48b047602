"""A running backup cannot be taken over: it adopts no manifest and no sealed record that it did not write.

The attack, with the backup writer's permissions (each request checked against the writer's generated policy
and the bucket's policy): list `meta/backups/` and see a backup still running, then create, for its id, a
manifest (If-None-Match: it is not there yet) or a sealed record saying SUCCEEDED. Before, the run took that
manifest for one a duplicate invocation of its own had written and reported it as its snapshot, and the sealed
record made every later invocation return at once. Each run now has a key only its invocations carry
(catalog/run_keys.py): what it did not write is tampering, told by the alert, and the backup ends FAILED.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import Manifest, ManifestWriter, manifest_key
from chalicelib.catalog.records import RecordStore, new_backup_id, record_key, sealed_key
from chalicelib.catalog.run_keys import new_run_key
from chalicelib.config import Settings
from chalicelib.deploy.bucket_settings import bucket_policy
from chalicelib.deploy.permissions import allows, denies, required_permissions
from chalicelib.deploy.policy import generate, settings_scope
from tests.conftest import ACCOUNT, read_alerts
from tests.stored import assert_versions_hold, entries_of
from tests.test_scale import FakeContext, Invocations


class Writer:
    """Requests the backup writer's role may send: each is checked against `backup_worker`'s generated policy
    and the bucket's own policy before it is sent."""

    def __init__(self, s3: Any, settings: Settings) -> None:
        self.s3 = s3
        self.policy = generate(settings_scope("org-backup", "test", settings), "backup_worker")

    def send(self, operation: str, **params: Any) -> Any:
        for permission in required_permissions("s3", operation, params, "us-east-1", ACCOUNT):
            assert allows(self.policy, permission), f"the writer may not {permission}"
            assert denies(bucket_policy(params["Bucket"]), permission) is None, f"the bucket refuses {permission}"
        return getattr(self.s3, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())(**params)

    def running_backups(self, catalog: str) -> list[str]:
        listed = self.send("ListObjectsV2", Bucket=catalog, Prefix="meta/backups/")
        ids = [key["Key"].rsplit("_", 1)[1].removesuffix(".json") for key in listed.get("Contents", [])]
        return [i for i in ids if json.loads(self.send("GetObject", Bucket=catalog, Key=record_key(i))["Body"].read())["status"] == "RUNNING"]


@pytest.fixture
def world(backup_buckets: Any, sources: Any, stage_env: dict[str, str], topic_queue: str, s3: Any) -> Any:
    class World:
        settings = Settings.from_environ(stage_env)
        invocations = Invocations()
        service = BackupService(settings, Clients(), invoker=invocations, batch_size=1)
        writer = Writer(s3, settings)
        catalog = settings.plans.catalog_bucket
        documents = settings.plans.get("documents")

        def start(self) -> tuple[str, str]:
            """A backup of the documents plan, stopped at its first checkpoint: (its id, its run's key)."""
            key = new_run_key()
            backup_id = self.service.start(["documents"], trigger="api", backup_id=new_backup_id(), run_key=key).backup_id
            assert self.service.run(backup_id, context=FakeContext(1), run_key=key).status == "RUNNING"
            assert self.invocations.queue and self.invocations.queue[0]["run_key"] == key
            return backup_id, key

        def carry_on(self) -> Any:
            """The queued continuations, as the worker runs them (app.py backup_worker)."""
            self.invocations.drive(
                lambda p: self.service.run(p["backup_id"], plan_name=p.get("plan"), segment=p.get("segment"), run_key=p.get("run_key"))
            )

    return World()


def test_a_manifest_planted_for_a_running_backup_is_not_adopted(world: Any, s3: Any, sqs: Any, topic_queue: str) -> None:
    first = world.service.run(world.service.start(["documents"], trigger="api", run_key=(k := new_run_key())).backup_id, run_key=k)
    running, _ = world.start()
    assert world.writer.running_backups(world.catalog) == [running]
    # The writer copies the last real snapshot's manifest under the running id, create-only as S3 demands.
    with Manifest.download(s3, world.documents.bucket, manifest_key("documents", first.backup_id)) as real:
        writer = ManifestWriter()
        for entry in real.entries(include_held=True):
            writer.add(entry)
        header = {k: v for k, v in real.header.items() if k not in ("format", "objects", "bytes", "held_deletions")}
        with writer.finish({**header, "backup_id": running}, keep_held=True) as body:
            forged = world.writer.send(
                "PutObject", Bucket=world.documents.bucket, Key=manifest_key("documents", running), Body=body.read(), IfNoneMatch="*"
            )["VersionId"]
        writer.close()
    read_alerts(sqs, topic_queue)

    world.carry_on()

    record = RecordStore(s3, world.catalog).get(running)
    result = record.plans["documents"]
    assert record.status == "FAILED" and result.status == "FAILED"
    assert any(e.startswith("TAMPERING") and "not written by the backup's run" in e for e in result.errors)
    assert result.manifest_version != forged
    alerts = read_alerts(sqs, topic_queue)
    assert any(a["Subject"].startswith("TAMPERING") and running in a["Message"] for a in alerts)
    assert any("FAILED" in a["Subject"] for a in alerts)
    # The last real snapshot is untouched: every version it names is there with its bytes.
    assert assert_versions_hold(s3, world.documents.bucket, entries_of(s3, world.documents.bucket, "documents", first.backup_id)) == 10


def test_a_sealed_record_planted_for_a_running_backup_does_not_end_it(world: Any, s3: Any, sqs: Any, topic_queue: str) -> None:
    running, _ = world.start()
    working = json.loads(world.writer.send("GetObject", Bucket=world.catalog, Key=record_key(running))["Body"].read())
    forged = {**working, "status": "SUCCEEDED", "plans": {n: {**p, "status": "SUCCEEDED"} for n, p in working["plans"].items()}}
    world.writer.send(
        "PutObject", Bucket=world.catalog, Key=sealed_key(running), Body=json.dumps(forged).encode(), IfNoneMatch="*"
    )
    read_alerts(sqs, topic_queue)

    world.carry_on()

    # The run did not take the planted record for its end: it told the tampering and failed loudly.
    alerts = read_alerts(sqs, topic_queue)
    assert any(a["Subject"].startswith("TAMPERING") and "sealed record" in a["Message"] and running in a["Message"] for a in alerts), alerts
    assert any("FAILED" in a["Subject"] for a in alerts)
    found = RecordStore(s3, world.catalog).read(running)
    assert found is not None
    record, _ = found
    assert record.status == "FAILED"
    assert any("TAMPERING" in e and "sealed record" in e for e in record.plans["documents"].errors)


def test_an_invocation_without_the_runs_key_does_nothing(world: Any, s3: Any, sqs: Any, topic_queue: str, recorded_calls: Any) -> None:
    running, key = world.start()
    read_alerts(sqs, topic_queue)
    before = len(recorded_calls.calls())

    # The writer may invoke the worker too, but not with the run's key, which no record holds.
    record = world.service.run(running)

    assert record.status == "RUNNING"
    sent = recorded_calls.calls()[before:]
    writes = [c for c in sent if c.operation in ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects")]
    assert [c.params["Key"].split("/")[1] for c in writes] == ["tampering"]  # only the finding's marker
    assert any(a["Subject"].startswith("TAMPERING") and "without its run's key" in a["Message"] for a in read_alerts(sqs, topic_queue))
    # The run itself carries on and ends as if nothing happened.
    world.carry_on()
    done = RecordStore(s3, world.catalog).get(running)
    assert done.status == "SUCCEEDED" and done.sealed_at is not None and done.run_proof
    assert assert_versions_hold(s3, world.documents.bucket, entries_of(s3, world.documents.bucket, "documents", running)) == 10


def test_a_duplicate_invocation_of_the_run_adopts_the_manifest_the_run_wrote(world: Any, s3: Any) -> None:
    """Two invocations of one run (a retry while the first still works) both reach the manifest: the second
    finds the first's, proven by the same key, and reports it."""
    running, key = world.start()
    world.carry_on()
    done = RecordStore(s3, world.catalog).get(running)
    again = BackupService(world.settings, Clients()).run(running, run_key=key)
    assert again.status == done.status == "SUCCEEDED"
    header = Manifest.download(s3, world.documents.bucket, manifest_key("documents", running)).header
    assert header["run_proof"]
    # And a plan run again from the start (its record said RUNNING) adopts it rather than fail.
    from chalicelib.backup.plan_run import PlanOptions, back_up_plan

    result = back_up_plan(world.documents, Clients(), running, PlanOptions(run_key=key))
    assert result.status == "SUCCEEDED" and result.manifest_version == done.plans["documents"].manifest_version
    other = back_up_plan(world.documents, Clients(), running, PlanOptions(run_key=new_run_key()))
    assert other.status == "FAILED" and other.errors[0].startswith("TAMPERING")


def test_the_runs_key_is_never_logged(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        _, key = world.start()
        world.carry_on()
    assert caplog.records and not [r for r in caplog.records if key in r.getMessage()]


def test_a_scheduled_backup_recorded_before_runs_had_keys_is_carried_on_by_its_redelivery(
    world: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    from datetime import datetime, timezone

    from chalicelib.catalog.records import scheduled_suffix

    moment = datetime.now(timezone.utc).replace(microsecond=0)
    backup_id = new_backup_id(moment, suffix=scheduled_suffix("event-before-keys"))
    world.service.start(None, trigger="schedule", backup_id=backup_id)  # as the version before keys recorded it
    read_alerts(sqs, topic_queue)
    record = BackupService(world.settings, Clients()).run_scheduled(moment, event_id="event-before-keys")
    assert record.backup_id == backup_id and record.status == "SUCCEEDED"
    assert not [a for a in read_alerts(sqs, topic_queue) if a["Subject"].startswith("TAMPERING")]


@pytest.mark.parametrize("finished", [True, False])
def test_a_rewritten_working_record_cannot_finish_a_plan_for_the_run(
    world: Any, s3: Any, sqs: Any, topic_queue: str, finished: bool
) -> None:
    """The writer plants a manifest at the running backup's key and rewrites its working record (which is not
    create-only) to show the plan SUCCEEDED naming that manifest, keeping the key's digest: the backup as a
    whole finished, or still RUNNING with the plan done. The run seals neither: tampering, FAILED."""
    running, _ = world.start()
    key = manifest_key("documents", running)
    writer = ManifestWriter()
    with writer.finish({"plan": "documents", "backup_id": running}, keep_held=True) as body:
        planted = world.writer.send("PutObject", Bucket=world.documents.bucket, Key=key, Body=body.read(), IfNoneMatch="*")
    writer.close()
    working = json.loads(world.writer.send("GetObject", Bucket=world.catalog, Key=record_key(running))["Body"].read())
    plan = working["plans"]["documents"]
    plan.update(status="SUCCEEDED", snapshot=f"s3://{world.documents.bucket}/{key}", manifest_version=planted["VersionId"],
                manifest_sha256="0" * 64, run_proof="f" * 64)
    if finished:
        working["status"] = "SUCCEEDED"
    world.writer.send("PutObject", Bucket=world.catalog, Key=record_key(running), Body=json.dumps(working).encode())
    read_alerts(sqs, topic_queue)

    world.carry_on()

    sealed = s3.list_objects_v2(Bucket=world.catalog, Prefix=sealed_key(running)).get("Contents", [])
    assert not sealed
    found = RecordStore(s3, world.catalog).read(running)
    assert found is not None and found[0].status == "FAILED"
    assert any("TAMPERING" in e and "rewritten" in e for e in found[0].plans["documents"].errors)
    assert any(a["Subject"].startswith("TAMPERING") and running in a["Message"] for a in read_alerts(sqs, topic_queue))


def _planted_version(world: Any, running: str) -> tuple[str, str]:
    """The writer's planted bytes at a documents key: (data key, version id)."""
    data_key = "data/documents/reports/report-1.txt"
    planted = world.writer.send("PutObject", Bucket=world.documents.bucket, Key=data_key, Body=b"planted by the writer")
    return data_key, planted["VersionId"]


@pytest.mark.parametrize("rewritten", ["state", "partial"])
def test_a_checkpoint_rewritten_while_the_backup_runs_is_not_resumed_from(
    world: Any, s3: Any, sqs: Any, topic_queue: str, rewritten: str
) -> None:
    """The writer rewrites the running backup's checkpoint (which is not create-only): its state, to point at
    a partial manifest of the writer's own naming planted bytes, or the partial manifest itself, in place.
    The run resumes from neither: tampering, told by the alert, and the plan FAILED; no snapshot names the
    planted version."""
    from chalicelib.backup.checkpoints import checkpoint_key
    import hashlib

    from chalicelib.catalog.manifests import Entry

    running, _ = world.start()
    bucket = world.documents.bucket
    state = json.loads(world.writer.send("GetObject", Bucket=bucket, Key=checkpoint_key("documents", running))["Body"].read())
    data_key, planted = _planted_version(world, running)
    writer = ManifestWriter()
    with Manifest.download(s3, bucket, state["partial_key"]) as partial:
        for entry in partial.entries(include_held=True):
            writer.add(entry)
    writer.add(Entry(source="documents", key="~planted", version_id=planted, etag="x", size=21, identity="planted"))
    with writer.finish({"plan": "documents", "backup_id": running, "checkpoint": state["seq"]}, keep_held=True) as file:
        body = file.read()
    if rewritten == "state":
        key = state["partial_key"].replace("partial-", "partial-9")
        world.writer.send("PutObject", Bucket=bucket, Key=key, Body=body)
        state.update(partial_key=key, partial_sha256=hashlib.sha256(body).hexdigest())
        world.writer.send("PutObject", Bucket=bucket, Key=checkpoint_key("documents", running), Body=json.dumps(state).encode())
    else:
        world.writer.send("PutObject", Bucket=bucket, Key=state["partial_key"], Body=body)
    writer.close()
    read_alerts(sqs, topic_queue)

    world.carry_on()

    record = RecordStore(s3, world.catalog).get(running)
    result = record.plans["documents"]
    assert record.status == "FAILED" and result.status == "FAILED" and not result.manifest_version
    assert any(e.startswith("TAMPERING") and "checkpoint" in e for e in result.errors), result.errors
    assert any(a["Subject"].startswith("TAMPERING") and running in a["Message"] for a in read_alerts(sqs, topic_queue))
    assert data_key and not s3.list_objects_v2(Bucket=bucket, Prefix=manifest_key("documents", running)).get("Contents")


@pytest.mark.parametrize("proof", ["forged", "none"])
def test_a_split_recorded_by_another_than_the_run_is_not_worked(
    backup_buckets: Any, sources: Any, stage_env: dict[str, str], topic_queue: str, s3: Any, sqs: Any, proof: str
) -> None:
    """The writer creates the split record (create-only) of a backup about to split its plan into ranges,
    with bounds of its choosing, before the run's first invocation: the run works none of its ranges. With a
    proof that is not the run's it is tampering, and the plan fails; without any proof (as a version before
    proofs wrote it) the plan runs whole, every version its snapshot names the run's own copy."""
    from chalicelib.backup.ranges import split_key

    settings = Settings.from_environ({**stage_env, "SPLIT_OBJECTS": "3", "MAX_PARALLEL_RANGES": "3"})
    invocations = Invocations()
    service = BackupService(settings, Clients(), invoker=invocations)
    first = service.start(["documents"], trigger="api", run_key=(k := new_run_key()))
    assert service.run(first.backup_id, run_key=k).status == "SUCCEEDED"
    key = new_run_key()
    running = service.start(["documents"], trigger="api", run_key=key).backup_id
    bucket = settings.plans.get("documents").bucket
    split = {"previous": None, "bounds": [[0, "a"], [0, "z"]]} | ({"run_proof": "f" * 64} if proof == "forged" else {})
    Writer(s3, settings).send("PutObject", Bucket=bucket, Key=split_key("documents", running), IfNoneMatch="*", Body=json.dumps(split).encode())
    read_alerts(sqs, topic_queue)

    service.run(running, context=FakeContext(100), run_key=key)
    invocations.drive(lambda p: service.run(p["backup_id"], plan_name=p.get("plan"), segment=p.get("segment"), run_key=p.get("run_key")))

    record = RecordStore(s3, settings.plans.catalog_bucket).get(running)
    result = record.plans["documents"]
    assert not [p for p in invocations.queue if p.get("segment")]
    tampering = [a for a in read_alerts(sqs, topic_queue) if a["Subject"].startswith("TAMPERING") and running in a["Message"]]
    if proof == "forged":
        assert record.status == "FAILED" and result.status == "FAILED", record
        assert any(e.startswith("TAMPERING") and "split" in e for e in result.errors), result.errors
        assert tampering
    else:
        assert record.status == "SUCCEEDED" and not tampering, record
        assert assert_versions_hold(s3, bucket, entries_of(s3, bucket, "documents", running)) == 10


def test_a_checkpoint_of_an_earlier_version_without_proof_is_not_resumed_from_and_the_run_starts_over(
    world: Any, s3: Any, sqs: Any, topic_queue: str
) -> None:
    """A run under way when the version that proves checkpoints is deployed finds a state without proof (and
    without the partial manifest's SHA-256): it is neither adopted nor an alarm; the run starts over."""
    from chalicelib.backup.checkpoints import checkpoint_key

    running, _ = world.start()
    bucket = world.documents.bucket
    key = checkpoint_key("documents", running)
    state = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    _, planted = _planted_version(world, running)
    for field in ("partial_sha256", "run_proof"):
        state.pop(field)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(state).encode())
    read_alerts(sqs, topic_queue)

    world.carry_on()

    record = RecordStore(s3, world.catalog).get(running)
    assert record.status == "SUCCEEDED", record.plans["documents"].errors
    entries = entries_of(s3, bucket, "documents", running)
    assert planted not in {e.version_id for e in entries}
    assert assert_versions_hold(s3, bucket, entries) == len(entries)
    assert not [a for a in read_alerts(sqs, topic_queue) if a["Subject"].startswith("TAMPERING")]

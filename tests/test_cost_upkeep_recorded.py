"""The upkeep model against the product itself: a simulated week on moto (a backup, the weekly slice
verification, the cost report and the prune every day, so every weekday's slice is checked once and the
prune removes snapshots from the fifth day on), each job's AWS calls recorded (tests/record_calls.py) and
counted by kind beside what `chalicelib.cost.upkeep` says that job sends for the bucket as it stood that day.
A job that starts sending other requests, or the model drifting from the code, fails here.

The plans set a daily S3 Inventory, delivered by the test double (tests/s3_inventory.py) before each day's
backup: the verification and the cost report read it, and must send exactly what the model counts. The
scheduled verification is due every day (a new report each day: compared with `verification_when_due`, every
kept version against it), and on odd days a second scheduled one waits (compared with
`verification_waiting`: the report was used). The prune
runs with the inventory on odd days (compared with `prune_when_due`: the day's report is new, so it works,
from its own kept index) and again the same day (compared with `prune_waiting`: the report was swept), and
without the inventory on even days (compared with `prune_by_listing`), so every path is held to the model."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import time_machine

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.kept_index import PRUNE_INDEX, KeptIndex, index_keys
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.catalog.records import backup_time, new_backup_id
from chalicelib.config import Settings
from chalicelib.cost.reports import SAMPLE_SIZE, CostReports
from chalicelib.cost.row_counts import row_counter
from chalicelib.cost.prune_upkeep import prune_by_listing, prune_waiting, prune_when_due
from chalicelib.cost.upkeep import upkeep_day
from chalicelib.cost.verify_upkeep import verification_waiting
from chalicelib.cost.upkeep_model import BucketDay, UpkeepSettings
from chalicelib.deploy.provision import provision
from chalicelib.inventory import configuration as conf
from chalicelib.layout import DATA_PREFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import InventoryPlan, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prices import load_prices
from chalicelib.prune.job import PruneJob
from chalicelib.retention import RetentionPolicy
from chalicelib.catalog.manifests import Entry
from chalicelib.verify.checks import in_sample
from chalicelib.verify.job import REPORT_SAMPLE_PERCENT, VerificationJob
from tests.record_calls import CallsSince, the_tests_own_calls
from tests.s3_inventory import deliver

SOURCE = "upkeep-source"
BUCKET = "upkeep-backup"
REPORTS = "upkeep-inventory"
DAY0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # a Monday
KEYS = 10
DAYS = 7
# The S3 request kinds of the model, by operation.
KINDS = {
    "ListObjectVersions": "list",
    "ListObjectsV2": "list",
    "GetObject": "get",
    "HeadObject": "head",
    "PutObject": "put",
    "DeleteObjects": "post",
    "DeleteObject": "delete",
    "Publish": "sns",
}


def _settings() -> Settings:
    plan = Plan(
        name="docs",
        bucket=BUCKET,
        sources=(S3Source(name="src", bucket=SOURCE),),
        lifecycle=Lifecycle(transitions=()),
        retention=RetentionPolicy(keep_last=4),
    )
    plans = PlanSet(plans=(plan,), catalog_bucket=BUCKET, inventory=InventoryPlan(bucket=REPORTS, frequency="Daily"))
    return Settings(plans=plans, topic_arn=None, worker_mode="inline", worker_function=None, max_workers=4)


def _stored(s3: Any) -> set[tuple[str, str]]:
    """Every (key, version id) under data/: what a report delivered now lists."""
    found = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=DATA_PREFIX):
        found |= {(item["Key"], item["VersionId"]) for item in page.get("Versions", [])}
    return found


def _kinds(since: CallsSince) -> Counter[str]:
    return Counter(KINDS.get(call.operation, call.operation) for call in since.calls())


def _state(
    s3: Any,
    day: int,
    deleted: float = 0.0,
    removed: int = 0,
    reported: set[tuple[str, str]] | None = None,
    scanned: datetime | None = None,
    **known: Any,
) -> BucketDay:
    versions = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=DATA_PREFIX):
        versions += len(page.get("Versions", []))
    named: dict[tuple[str, str], Entry] = {}
    # The snapshots naming each version.
    naming: dict[tuple[str, str], set[str]] = {}
    snapshots = entries = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=SNAPSHOTS_PREFIX):
        for item in page.get("Contents", []):
            snapshots += 1
            taken = item["Key"].rsplit("/", 1)[1].removesuffix(".jsonl.gz")
            lines = gzip.GzipFile(fileobj=io.BytesIO(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())).read().splitlines()
            for line in lines[1:]:
                entry = json.loads(line)
                entries += 1
                named[(entry["key"], entry["version_id"])] = Entry(**entry)
                naming.setdefault((entry["key"], entry["version_id"]), set()).add(taken)
    # A due scheduled verification checks every kept version (all seven slices).
    today = list(named.values())
    # The verification leaves for the next report what the last kept snapshot before the report's scan does not
    # name (copied since), when there is one and no snapshot after it was pruned (verify/job.py).
    with the_tests_own_calls():
        pruned = {backup_time(taken) for (_, taken) in PrunedMarkers(s3, BUCKET).all()}
    kept = {taken for names in naming.values() for taken in names if backup_time(taken) not in pruned}
    before = [taken for taken in kept if scanned is not None and backup_time(taken) < scanned]
    last = max(before, key=backup_time) if before else None
    if last is not None and any(backup_time(last) < moment < scanned for moment in pruned):
        last = None
    listed = reported or set()
    missing = [entry for entry in today if (entry.data_key, entry.version_id) not in listed]
    deferred = [entry for entry in missing if last is not None and last not in naming[(entry.key, entry.version_id)]]
    unreported = [entry for entry in missing if entry not in deferred]
    return BucketDay(
        versions=versions,
        named_versions=len(named),
        snapshots=snapshots,
        manifest_entries=entries,
        deleted=deleted,
        removed=removed,
        checked=len(today),
        # Of them, those the day's report does not list although a snapshot older than its scan names them
        # (HEADed; those written by today's backup wait for the next report), and the sample re-read.
        unreported=len(unreported),
        # (A version left for the next report is not re-read either.)
        sampled=sum(1 for entry in today if in_sample(entry, REPORT_SAMPLE_PERCENT) and entry not in deferred),
        # What today's backup wrote: not in the report (nothing was pruned since its scan).
        written=versions - len(reported) if reported is not None else 0.0,
        # A backup a day so far, and a prune a day before today's (two on odd days: one works, one waits);
        # as many verifications with today's (two on odd days before today).
        backups_in_window=day + 1,
        prunes_in_window=day + day // 2,
        verifications_in_window=day + 1 + day // 2,
        # The kept index: written by each day's verification from the first on, superseded by the next.
        indexed=day > 0,
        superseded_indexes=1.0 if day > 0 else 0.0,
        **known,
    )


def _cost_index(s3: Any) -> dict[str, Any]:
    """What the cost report finds of the prune's kept index: whether there is one, and how many of the kept
    snapshots it does not cover (their manifests are read)."""
    keys = index_keys(s3, BUCKET, "docs", PRUNE_INDEX)
    pruned = {taken for (_, taken) in PrunedMarkers(s3, BUCKET).all()}
    kept = {
        item["Key"].rsplit("/", 1)[1].removesuffix(".jsonl.gz")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=SNAPSHOTS_PREFIX)
        for item in page.get("Contents", [])
    } - pruned
    if not keys:
        return {"cost_indexed": False}
    index = KeptIndex.download(s3, BUCKET, keys[-1], PRUNE_INDEX)
    index.close()
    return {"cost_indexed": True, "cost_unindexed": len(kept - set(index.snapshots))}


def test_each_jobs_recorded_requests_a_day_are_what_the_upkeep_model_counts(aws: None, s3: Any, without_projection: None) -> None:
    s3.create_bucket(Bucket=SOURCE)
    settings = _settings()
    plans = settings.plans
    clients = Clients()
    provision(s3, plans.plans[0])
    s3.create_bucket(Bucket=REPORTS)
    destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id="123456789012", prefix="inventory", encrypted=False)
    s3.put_bucket_inventory_configuration(
        Bucket=BUCKET, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
    )
    model = UpkeepSettings.of_plans(plans)
    assert model.inventory == "Daily" and model.verify_sample_percent == REPORT_SAMPLE_PERCENT
    unmodelled = dataclasses.replace(model, inventory=None)
    recorded: dict[str, Counter[str]] = {}
    expected: dict[str, Counter[str]] = {}
    with time_machine.travel(DAY0, tick=True) as clock:
        for day in range(DAYS):
            for index in range(KEYS):
                if day == 0 or index % 2 == day % 2:
                    s3.put_object(Bucket=SOURCE, Key=f"k{index:02d}.txt", Body=f"{index} on day {day}".encode())
            # The day's report, scanned before the backup.
            reported = _stored(s3)
            scanned = datetime.now(timezone.utc)
            deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID, at=scanned)
            clock.shift(timedelta(minutes=5))
            # (The backup's drift check would find the double's reports bucket unlike a provisioned one.)
            service = BackupService(dataclasses.replace(settings, plans=dataclasses.replace(plans, inventory=None)), clients)
            backup_id = new_backup_id()
            service.start(None, trigger="api", backup_id=backup_id)
            assert service.run(backup_id).status == "SUCCEEDED"
            # The cost report finds the counts of today's verification among the sealed results, behind the
            # one that waited on odd days.
            state = _state(s3, day, reported=reported, scanned=scanned, cost_sealed_reads=1.0 + day % 2, **_cost_index(s3))
            jobs = upkeep_day(state, model)

            since = CallsSince()
            # As the verify worker makes it: counting the cost report's figures along its pass.
            verification = VerificationJob(plans, clients, row_counter=row_counter(settings.prices or load_prices(), SAMPLE_SIZE))
            verification.run(verification.start(backup_id, weekday=day % 7, trigger="schedule").job_id)
            _add(recorded, expected, "verification", _kinds(since), jobs["verification"].requests)
            if day % 2 == 1:
                # Another scheduled verification the same day (as a second scheduled backup's would be): the
                # report was used, so it waits.
                since = CallsSince()
                again = verification.run(verification.start(new_backup_id(), trigger="schedule").job_id)
                assert set(again.waiting) == {"docs"} and again.checked == 0, again
                waiting = verification_waiting(dataclasses.replace(state, verifications_in_window=day + 2 + day // 2), model)
                _add(recorded, expected, "verification_waiting", _kinds(since), waiting.requests)

            since = CallsSince()
            CostReports(plans, s3, settings.prices or load_prices()).for_backup(backup_id)
            _add(recorded, expected, "cost_report", _kinds(since), jobs["cost_report"].requests)

            since = CallsSince()
            by_report = day % 2 == 1
            prune = PruneJob(plans if by_report else dataclasses.replace(plans, inventory=None), clients)
            record = prune.run(prune.start(["docs"], "schedule", grace=timedelta(hours=1)).prune_id)
            deleted = sum(plan.deleted["versions"] + plan.markers_deleted for plan in record.plans.values())
            removed = sum(plan.removed_count(record.dry_run) for plan in record.plans.values())
            # The report the prune read lists the manifests of the day's snapshots too.
            after = _state(s3, day, deleted, removed)
            if by_report:
                # The prune's own index: left by the prune two days before (none on the first), which covers
                # neither yesterday's snapshot nor today's.
                after = dataclasses.replace(after, prune_indexed=day > 1, prune_new_snapshots=2 if day > 1 else None)
                _add(recorded, expected, "prune_when_due", _kinds(since), prune_when_due(after, model).requests)
                since = CallsSince()
                again = prune.run(prune.start(["docs"], "schedule", grace=timedelta(hours=1)).prune_id)
                assert again.plans["docs"].waiting is not None, again.plans["docs"]
                after = dataclasses.replace(after, prunes_in_window=after.prunes_in_window + 1)
                _add(recorded, expected, "prune_waiting", _kinds(since), prune_waiting(after, model).requests)
            else:
                _add(recorded, expected, "prune", _kinds(since), prune_by_listing(after, unmodelled).requests)
            clock.shift(timedelta(days=1) - timedelta(minutes=5))
    assert recorded == expected
    # Something was pruned and verified, so deletions and HEADs were compared too; the verification and the cost
    # report read the reports and listed no version under data/.
    assert recorded["prune"]["post"] > 0 and recorded["prune_when_due"]["post"] > 0
    assert "list" in recorded["prune_when_due"] and recorded["prune_when_due"]["delete"] > 0 and recorded["prune_waiting"]["put"] > 0
    assert recorded["verification"]["get"] > 0 and recorded["cost_report"]["list"] == expected["cost_report"]["list"]
    assert recorded["verification_waiting"]["get"] > 0 and "head" not in recorded["verification_waiting"]


def _add(recorded: dict[str, Counter[str]], expected: dict[str, Counter[str]], job: str, calls: Counter[str], model: dict[str, float]) -> None:
    recorded.setdefault(job, Counter()).update(calls)
    expected.setdefault(job, Counter()).update({kind: round(count, 6) for kind, count in model.items()})


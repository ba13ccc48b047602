"""Which jobs read a manifest, and how old it is then: what lets a plan move its kept manifests to GLACIER_IR
after `manifest_glacier_ir_days` (at least `MIN_MANIFEST_GLACIER_IR_DAYS`) without paying for reading them.

A simulated month on moto with the shipped plans' cadence: a backup, the scheduled verification, the cost
report and the prune every day, a weekly S3 Inventory report (delivered by tests/s3_inventory.py at its scan,
before the day's backup), and a retention that keeps weekly snapshots past the transition age. Every
GetObject the system sends for a key under `meta/snapshots/` is recorded with the job that sent it and the
manifest's age in days. Apart from a restore of an old snapshot (and a kept index rebuilt from scratch, which
no job here needs), nothing reads a manifest as old as the transition age: the jobs read their kept indexes
and the manifests written since, the backup the newest manifest and the headers of the last
`deletion_window_days`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
import time_machine
from moto import mock_aws

from chalicelib.aws import Clients
from chalicelib.backup.service import BackupService
from chalicelib.catalog.records import backup_time, new_backup_id
from chalicelib.config import Settings
from chalicelib.cost.reports import CostReports
from chalicelib.deploy.provision import provision
from chalicelib.inventory import configuration as conf
from chalicelib.layout import MANIFEST_SUFFIX, SNAPSHOTS_PREFIX
from chalicelib.plans import MIN_MANIFEST_GLACIER_IR_DAYS, InventoryPlan, Lifecycle, Plan, PlanSet, S3Source
from chalicelib.prices import load_prices
from chalicelib.prune.job import PruneJob
from chalicelib.retention import RetentionPolicy
from chalicelib.verify.job import VerificationJob
from tests.conftest import REGION
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver

SOURCE = "reads-source"
BUCKET = "reads-backup"
REPORTS = "reads-inventory"
DAY0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # a Monday
# Weekly snapshots outlive the transition age: on the last day the oldest kept manifest is 11 days old (24
# with --exhaustive, which runs every job every day for 24 days).
DAYS = 18
EXHAUSTIVE_DAYS = 24
RETENTION = RetentionPolicy(keep_daily=3, keep_weekly=4)
# The days the verification, the cost report and the prune run without --exhaustive: each report's day, when
# they work (the first brings the kept indexes into being), a day after one, when they wait (as on every
# other day of its week), and the last, when the newest report is three days old.
JOB_DAYS = frozenset({0, 7, 8, 14, DAYS - 1})


@dataclass(frozen=True)
class Read:
    job: str
    day: int
    key: str
    age_days: float
    ranged: bool


@dataclass
class Month:
    reads: list[Read]
    # The kept manifests' ages in days on the last day, after its prune.
    kept_ages: list[float]


def _settings() -> Settings:
    plan = Plan(
        name="docs",
        bucket=BUCKET,
        sources=(S3Source(name="src", bucket=SOURCE),),
        lifecycle=Lifecycle(transitions=(), manifest_glacier_ir_days=MIN_MANIFEST_GLACIER_IR_DAYS),
        retention=RETENTION,
    )
    plans = PlanSet(plans=(plan,), catalog_bucket=BUCKET, inventory=InventoryPlan(bucket=REPORTS, frequency="Weekly"))
    return Settings(plans=plans, topic_arn=None, worker_mode="inline", worker_function=None, max_workers=4)


def _manifest_reads(since: CallsSince, job: str, day: int, now: datetime) -> list[Read]:
    reads = []
    for call in since.calls():
        key = call.params.get("Key", "")
        if call.operation == "GetObject" and key.startswith(SNAPSHOTS_PREFIX) and key.endswith(MANIFEST_SUFFIX):
            taken = backup_time(key.rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX))
            reads.append(Read(job, day, key, (now - taken) / timedelta(days=1), "Range" in call.params))
    return reads


@pytest.fixture(scope="module")
def month(request: pytest.FixtureRequest) -> Iterator[Month]:
    from chalicelib.cost import plan_costs

    with pytest.MonkeyPatch.context() as env:
        # The cost report's 12-month projection sends no request (as `without_projection`).
        env.setattr(plan_costs, "project_from", lambda *args, **kwargs: [])
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            env.setenv(name, value)
        with mock_aws(), time_machine.travel(DAY0, tick=False) as clock:
            if request.config.getoption("--exhaustive"):
                yield _run(boto3.client("s3", region_name=REGION), clock, EXHAUSTIVE_DAYS, frozenset(range(EXHAUSTIVE_DAYS)))
            else:
                yield _run(boto3.client("s3", region_name=REGION), clock, DAYS, JOB_DAYS)


def _run(s3: Any, clock: Any, days: int, job_days: frozenset[int]) -> Month:
    settings = _settings()
    plans = settings.plans
    clients = Clients()
    s3.create_bucket(Bucket=SOURCE)
    provision(s3, plans.plans[0])
    s3.create_bucket(Bucket=REPORTS)
    destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id="123456789012", prefix="inventory", encrypted=False)
    s3.put_bucket_inventory_configuration(
        Bucket=BUCKET, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
    )
    # (The backup's drift check would find the double's reports bucket unlike a provisioned one.)
    backups = BackupService(dataclasses.replace(settings, plans=dataclasses.replace(plans, inventory=None)), clients)
    prices = settings.prices or load_prices()
    reads: list[Read] = []
    for day in range(days):
        for index in range(3):
            if day == 0 or index == day % 3:
                s3.put_object(Bucket=SOURCE, Key=f"k{index}.txt", Body=f"{index} on day {day}".encode())
        if day % 7 == 0:
            deliver(s3, BUCKET, conf.DEFAULT_CONFIGURATION_ID, at=datetime.now(timezone.utc))
        clock.shift(timedelta(minutes=5))
        now = datetime.now(timezone.utc)
        since = CallsSince()
        backup_id = new_backup_id()
        backups.start(None, trigger="api", backup_id=backup_id)
        assert backups.run(backup_id).status == "SUCCEEDED"
        reads += _manifest_reads(since, "backup", day, now)
        if day not in job_days:
            clock.shift(timedelta(days=1) - timedelta(minutes=5))
            continue

        since = CallsSince()
        verification = VerificationJob(plans, clients)
        verification.run(verification.start(backup_id, weekday=day % 7, trigger="schedule").job_id)
        reads += _manifest_reads(since, "verification", day, now)

        since = CallsSince()
        CostReports(plans, s3, prices).for_backup(backup_id)
        reads += _manifest_reads(since, "cost report", day, now)

        since = CallsSince()
        prune = PruneJob(plans, clients)
        prune.run(prune.start(["docs"], "schedule", grace=timedelta(hours=1)).prune_id)
        reads += _manifest_reads(since, "prune", day, now)
        clock.shift(timedelta(days=1) - timedelta(minutes=5))
    now = datetime.now(timezone.utc)
    kept = [
        (now - backup_time(item["Key"].rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX))) / timedelta(days=1)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=SNAPSHOTS_PREFIX)
        for item in page.get("Contents", [])
        if item["Key"].endswith(MANIFEST_SUFFIX)
    ]
    return Month(reads, kept)


def test_the_month_keeps_manifests_older_than_the_transition_age_and_every_job_read_manifests(month: Month) -> None:
    assert max(month.kept_ages) > MIN_MANIFEST_GLACIER_IR_DAYS
    jobs = {read.job for read in month.reads}
    assert jobs == {"backup", "verification", "cost report", "prune"}, jobs


def test_no_job_reads_a_manifest_as_old_as_the_transition_age(month: Month) -> None:
    old = [read for read in month.reads if read.age_days >= MIN_MANIFEST_GLACIER_IR_DAYS]
    assert old == []
    # The oldest each job read: the jobs' windows, a week's manifests at most with a weekly report.
    oldest = {job: max(read.age_days for read in month.reads if read.job == job) for job in {read.job for read in month.reads}}
    assert all(age < MIN_MANIFEST_GLACIER_IR_DAYS - 1 for age in oldest.values()), oldest

"""The cost report's figures counted by the weekly verification's pass over the inventory report
(cost/row_counts.py) are the figures the cost report's own pass computes on the same bucket: versions named
and unnamed, noncurrent, deleted, several classes, a source the plan no longer has, a long key and a pack;
also when the pass is interrupted and resumed at any checkpoint. With them, the cost report reads no row."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import time_machine

from chalicelib.aws import Clients
from chalicelib.catalog.manifests import Entry
from chalicelib.catalog.records import new_backup_id
from chalicelib.cost.row_counts import row_counter
from chalicelib.inventory import configuration as conf
from chalicelib.layout import LONG_KEYS_PREFIX, pack_key
from chalicelib.plans import InventoryPlan, PlanSet
from chalicelib.times import utcnow
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.record import VerificationStore
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver
from chalicelib.cost.reports import CostReports
from tests.test_cost_report import KIB, PRICES, snapshot, store
from tests.test_verify_job import TOPIC

def compute(s3: Any, plans: PlanSet, backup_id: str, now: Any) -> dict[str, Any]:
    # Never the figures kept from the last computation: computed again each time.
    return CostReports(plans, s3, PRICES, sample_size=50).compute(backup_id, now, fresh=True)


# Where the figures came from and what computing them read: not the figures.
NOT_FIGURES = ("figures", "work", "check")


class StopAfter:
    """An invocation's clock that runs out at its `checks`-th look: the job stops at that batch."""

    def __init__(self, checks: int) -> None:
        self.checks = checks

    def running_out(self) -> bool:
        self.checks -= 1
        return self.checks < 0


class Later:
    """The continuations a stopped job asks for, run one after another by `drive`."""

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        self.queue.append(payload)


def _seed(s3: Any, plans: PlanSet) -> str:
    """The documents bucket: current, noncurrent, deleted, unnamed and archived versions, a source the plan no
    longer has, a long key named by a snapshot, a pack two packed objects live in; two snapshots."""
    name = plans.get("documents").bucket
    s3.delete_bucket_policy(Bucket=plans.inventory.bucket)
    big = store(s3, name, "big.bin", 200 * KIB, "GLACIER")
    small = [store(s3, name, f"small-{index:02d}.txt", (index + 1) * KIB) for index in range(12)]
    old = store(s3, name, "twice.bin", 300 * KIB)
    new = store(s3, name, "twice.bin", 310 * KIB)
    gone = store(s3, name, "gone.bin", 150 * KIB, "GLACIER")
    s3.delete_object(Bucket=name, Key="data/documents/gone.bin")
    store(s3, name, "stray.bin", 140 * KIB, "GLACIER")
    # Named by no snapshot, and just before packed objects, whose entries never move the report's cursor.
    store(s3, name, "p-stray.bin", 20 * KIB)
    s3.put_object(Bucket=name, Key="data/documents-old/left.bin", Body=b"x" * 2000, IfNoneMatch="*")
    long_name = "deep/" * 300 + "file.txt"
    long_entry = Entry("documents", long_name, "", 3000, "etag", identity="3000")
    long_key = long_entry.data_key
    assert long_key.startswith(LONG_KEYS_PREFIX)
    answer = s3.put_object(Bucket=name, Key=long_key, Body=b"y" * 3000)
    long_entry = dataclasses.replace(long_entry, version_id=answer["VersionId"], etag=answer["ETag"].strip('"'))
    packed_at = pack_key("20260101T000000000Z-api", "t0", 1)
    pack = s3.put_object(Bucket=name, Key=packed_at, Body=b"p" * 8192)
    packed = [
        Entry("documents", f"packed-{index}.txt", pack["VersionId"], 4096, f"e{index}", identity="4096", pack_key=packed_at, pack_offset=4096 * index)
        for index in range(2)
    ]
    now = utcnow()
    snapshot(s3, plans, [big, *small, old, gone, long_entry, packed[0]], now - timedelta(minutes=2))
    return snapshot(s3, plans, [big, *small[3:], new, long_entry, *packed], now - timedelta(minutes=1))


def _verify(plans: PlanSet, stops: list[int], order: int = 0) -> Any:
    """The weekly job of a new backup over as many invocations as `stops` has clocks (each stops at that
    many looks at it), then to the end; its sealed result."""
    clients = Clients()
    counter = row_counter(PRICES, 50)
    # A backup a little later for each job: the newest job's sealed result is listed first.
    job_id = VerificationJob(plans, clients, TOPIC).start(new_backup_id(utcnow() + timedelta(seconds=order))).job_id
    later = Later()
    for checks in stops:
        VerificationJob(plans, clients, TOPIC, 2, StopAfter(checks), later, batch_size=2, row_counter=counter).run(job_id)
    VerificationJob(plans, clients, TOPIC, 2, batch_size=2, row_counter=counter).run(job_id)
    return VerificationStore(clients.s3, plans.catalog_bucket).get(job_id), len(later.queue)


def test_the_figures_counted_by_the_verification_are_the_cost_reports_own_even_resumed(s3: Any, backup_buckets: Any) -> None:
    plans = dataclasses.replace(
        backup_buckets, plans=[backup_buckets.get("documents")], inventory=InventoryPlan(bucket=backup_buckets.inventory.bucket, frequency="Daily")
    )
    newest = _seed(s3, plans)
    scanned = utcnow()
    deliver(s3, plans.get("documents").bucket, conf.DEFAULT_CONFIGURATION_ID, at=scanned, files=3, shuffle=5)
    # Within a day of the scan (a Daily report is relied on); the versions S3 reports in GLACIER disagree
    # with the model, which lists them.
    at = scanned + timedelta(hours=20)
    with time_machine.travel(at, tick=False):
        own = compute(s3, plans, newest, at)["plans"]["documents"]
        assert own["figures"]["counted_by"]["verification"] is None
        assert "read and counted here" in own["figures"]["counted_by"]["note"]
        assert own["work"]["report_rows"] > 0 and own["named_by_no_snapshot"]["versions"] == 3
        whole, continued = _verify(plans, [])
        assert continued == 0 and whole.checked_against == {"documents": whole.checking["documents"]}
        counts = whole.row_counts["documents"]
        assert counts["report"] == own["work"]["inventory_report"]["report"] and whole.counting == {}
        since = CallsSince()
        counted = compute(s3, plans, newest, at)["plans"]["documents"]
        calls = since.calls()
    # Not a row read: the report's data files are not fetched, no manifest or kept index either.
    fetched = [call.params["Key"] for call in calls if call.operation == "GetObject"]
    assert not any(key.endswith(".csv.gz") or "/snapshots/" in key or "index" in key for key in fetched), fetched
    assert counted["figures"]["counted_by"]["verification"] == whole.job_id
    assert counted["figures"]["counted_by"]["age_days"] == 0
    assert {name: value for name, value in counted.items() if name not in NOT_FIGURES} == {
        name: value for name, value in own.items() if name not in NOT_FIGURES
    }
    verdicts = ("compared", "agree", "pending", "disagreements_count", "head_sampled", "head_agree")
    assert [counted["check"][name] for name in verdicts] == [own["check"][name] for name in verdicts]

    # The disagreements, but for the words: a timeline shared by the versions of one day says "since" the
    # write time of the first version the tally placed on it, which is not the same one in both.
    def listed(check: dict[str, Any]) -> list[dict[str, Any]]:
        return [{name: value for name, value in found.items() if name != "why"} for found in check["disagreements"]]

    assert listed(counted["check"]) == listed(own["check"]) and len(listed(own["check"])) >= 3
    for name in ("versions", "missing_versions", "report_rows", "manifest_entries"):
        assert counted["work"][name] == own["work"][name], name
    assert (counted["work"]["report_files"], own["work"]["report_files"]) == (0, 3)
    # Interrupted at several checkpoints and resumed (a fresh invocation each time): the same counts. (A job
    # works once per report: each is given a new one, of the same rows.)
    def same(found: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in found.items() if name not in ("report", "created", "snapshots_up_to")}

    for minutes, stops in enumerate(([1], [2, 1], [1, 1, 1, 1], [3, 2]), start=1):
        deliver(s3, plans.get("documents").bucket, conf.DEFAULT_CONFIGURATION_ID, at=scanned + timedelta(minutes=minutes), files=2, shuffle=minutes)
        with time_machine.travel(at, tick=False):
            resumed, continued = _verify(plans, stops, minutes)
        assert continued == len(stops) and resumed.invocations == len(stops) + 1, stops
        assert resumed.row_counts["documents"]["report"] != counts["report"]
        assert same(resumed.row_counts["documents"]) == same(counts), stops
    # A report delivered since the last verification: its figures are not counted yet, and the last ones,
    # from a report still fresh, are used and said to be.
    deliver(s3, plans.get("documents").bucket, conf.DEFAULT_CONFIGURATION_ID, at=scanned + timedelta(minutes=9))
    with time_machine.travel(at, tick=False):
        behind = compute(s3, plans, newest, at)["plans"]["documents"]
    assert behind["figures"]["counted_by"]["verification"] == resumed.job_id
    assert behind["figures"]["counted_by"]["newest_report"] is False and "is not counted yet" in behind["figures"]["counted_by"]["note"]
    assert behind["storage"] == own["storage"] and behind["work"]["report_files"] == 0

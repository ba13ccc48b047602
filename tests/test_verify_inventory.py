"""The weekly verification against an S3 Inventory report: it finds what the HEAD path finds, sends a HEAD
only for what the report cannot answer (versions written after it, versions gone), and a missing or stale
report is a finding that alerts, after which the job checks by HEAD as it does without an inventory."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from chalicelib.backup.service import BackupService
from chalicelib.catalog.manifests import Entry, list_snapshot_keys, manifest_key
from chalicelib.catalog.pruned import PrunedMarkers
from chalicelib.config import Settings
from chalicelib.inventory import configuration as conf
from chalicelib.inventory.reports import Row
from chalicelib.plans import InventoryPlan, PlanSet
from chalicelib.times import utcnow
from chalicelib.verify.checks import check_version
from chalicelib.verify.job import VerificationJob
from chalicelib.verify.record import VerificationRecord
from chalicelib.verify.report_check import ReportRows
from tests.faults import damage_reads
from tests.record_calls import CallsSince
from tests.s3_inventory import deliver
from tests.test_verify import BUCKET, data_version, read_manifest, rewrite_manifest, seed_faults, take_backup
from tests.test_verify_job import TOPIC, findings, later_id, verification_alerts

REPORTS = "test-inventory-reports"
ACCOUNT = "123456789012"
START = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(START, tick=True):
        yield


@pytest.fixture
def backups(clients: Any, backup_buckets: Any, sources: Any, stage_env: dict[str, str]) -> BackupService:
    return BackupService(Settings.from_environ(stage_env), clients)


def with_inventory(plans: PlanSet, frequency: str = "Daily") -> PlanSet:
    return dataclasses.replace(plans, inventory=InventoryPlan(bucket=REPORTS, frequency=frequency))


@pytest.fixture
def inventoried(s3: Any, backup_buckets: PlanSet) -> PlanSet:
    """The plans with `inventory` set, each backup bucket given its inventory configuration (as deploy/
    provisions it) and the reports' bucket created; nothing delivered yet."""
    s3.create_bucket(Bucket=REPORTS)
    destination = conf.Destination(bucket_arn=conf.bucket_arn(REPORTS), account_id=ACCOUNT, prefix="inventory", encrypted=False)
    for plan in backup_buckets.plans:
        s3.put_bucket_inventory_configuration(
            Bucket=plan.bucket, Id=conf.DEFAULT_CONFIGURATION_ID, InventoryConfiguration=conf.inventory_configuration(destination)
        )
    return with_inventory(backup_buckets)


def deliver_all(s3: Any, plans: PlanSet, at: datetime | None = None) -> dict[str, str]:
    """A report of every backup bucket as of `at` (default now), rows spread over two files in random order."""
    return {
        plan.name: deliver(s3, plan.bucket, conf.DEFAULT_CONFIGURATION_ID, at=at, files=2, shuffle=7) for plan in plans.plans
    }


def named_versions(s3: Any, plans: PlanSet) -> dict[tuple[str, str], tuple[str, Entry]]:
    """Every distinct (stored key, version id) any manifest names, with its bucket and entry."""
    found: dict[tuple[str, str], tuple[str, Entry]] = {}
    for plan in plans.plans:
        for key in list_snapshot_keys(s3, plan.bucket, plan.name):
            entries = read_manifest(s3, plan.bucket, key)[1]
            found.update(((e.data_key, e.version_id), (plan.bucket, e)) for e in entries if not e.held)
    return found


def heads(since: CallsSince) -> list[tuple[str, str]]:
    """The HeadObject calls of the system's own code on data (the recorded calls, by key and version id)."""
    return [
        (call.params["Key"], call.params.get("VersionId", ""))
        for call in since.calls()
        if call.operation == "HeadObject" and call.params.get("Key", "").startswith("data/")
    ]


def whole_week(plans: PlanSet, clients: Any, tag: str, **options: Any) -> list[VerificationRecord]:
    """A job for each of the seven slices: together they check every stored version once."""
    job = VerificationJob(plans, clients, TOPIC, max_workers=4, **options)
    return [job.run(job.start(later_id(f"{tag}{day}"), weekday=day).job_id) for day in range(7)]


def all_findings(records: list[VerificationRecord]) -> list[tuple[str, str, str]]:
    return sorted(f for record in records for f in findings(record))


# ------------------------------------------------------------------------------------------ the report path


def test_a_clean_bucket_is_checked_against_the_report_with_no_head_at_all(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet, stage_env: dict[str, str]
) -> None:
    take_backup(backups)
    for index in range(5):
        s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=f"reports/report-{index}.txt", Body=f"v2 {index}".encode())
    take_backup(backups)
    delivered = deliver_all(s3, inventoried)
    named = named_versions(s3, inventoried)
    # Each named version exists and holds the bytes its entry records (the test's own reads).
    for (stored, version), (bucket, entry) in named.items():
        body = s3.get_object(Bucket=bucket, Key=stored, VersionId=version)["Body"].read()
        assert len(body) == entry.size
        if entry.etag and "-" not in entry.etag:
            assert hashlib.md5(body).hexdigest() == entry.etag  # noqa: S324

    since = CallsSince()
    records = whole_week(inventoried, clients, "clean", sample_percent=0)
    assert all(r.status == "SUCCEEDED" and r.ok for r in records)
    assert sum(r.checked for r in records) == len(named) == 10 + 10 + 1 + 5
    # The HEAD path sends one per version; this one none: nothing grows with the stored versions but rows read.
    assert heads(since) == [] and sum(r.headed for r in records) == 0
    used = records[0].inventory
    assert {name: u["report"] for name, u in used.items()} == delivered
    assert all(u["problem"] is None and u["created"] and 0 <= u["age_days"] < 0.01 for u in used.values())


def test_the_report_path_finds_every_fault_the_head_path_finds(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet, plans: PlanSet
) -> None:
    backup_id = take_backup(backups, ["documents"])
    seeded = seed_faults(s3, backup_id)
    # A version whose ETag alone differs from the one recorded (same size).
    entry = next(e for e in read_manifest(s3, BUCKET, manifest_key("documents", backup_id))[1] if e.key == "reports/report-6.txt")
    rewrite_manifest(s3, BUCKET, manifest_key("documents", backup_id), {entry.key: {"etag": "0" * 32, "checksum": None}})
    deliver_all(s3, inventoried)

    by_head = all_findings(whole_week(plans, clients, "head"))
    since = CallsSince()
    by_report = whole_week(inventoried, clients, "report", sample_percent=0)
    assert by_head == all_findings(by_report)
    problems = {(key, problem) for key, _, problem in by_head}
    assert problems == {(k, "missing") for k in seeded["missing"]} | {(k, "damaged") for k in seeded["damaged"] | {entry.key}}
    # The delete marker, the sizes and the ETags were read from the report: only the versions it does not list
    # (deleted, never written) were asked about, and HEAD confirmed they are gone.
    asked = {key.removeprefix("data/documents/") for key, _ in heads(since)}
    assert asked == {"reports/report-1.txt", "reports/report-5.txt"}
    assert all(r.status == "FAILED" and not r.inventory_problems for r in by_report if findings(r))


def row(entry: Entry, **change: Any) -> Row:
    values = dict(bucket=BUCKET, key=entry.data_key, version_id=entry.version_id, is_latest=True, is_delete_marker=False,
                  size=entry.size, last_modified=START, etag=entry.etag, storage_class="STANDARD")
    return Row(**(values | change))


class NoS3:
    """Any request fails the test: what the report answers needs none."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no S3 request expected, {name} was called")


@pytest.mark.parametrize(
    ("change", "problem", "detail"),
    [
        ({"is_delete_marker": True, "size": None, "etag": None, "storage_class": None}, "missing", "delete marker"),
        ({"size": 37}, "damaged", "size 37 instead of the recorded 36"),
        ({"etag": "f" * 32}, "damaged", f"ETag {'f' * 32} instead"),
    ],
)
def test_each_check_against_a_row_finds_its_fault_without_a_request(
    change: dict[str, Any], problem: str, detail: str, plans: PlanSet
) -> None:
    entry = Entry("documents", "a.txt", "v1", 36, "e" * 32, "i")
    plan = plans.get("documents")
    assert check_version(NoS3(), plan, entry, row(entry), 0).ok
    found = check_version(NoS3(), plan, entry, row(entry, **change), 0)
    (finding,) = found.missing + found.damaged
    assert finding.problem == problem and detail in finding.detail and (found.checked, found.headed) == (1, 0)


def test_the_sample_is_re_hashed_and_an_archived_version_in_the_report_is_skipped(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet, plans: PlanSet
) -> None:
    entry = Entry("documents", "a.txt", "v1", 36, "e" * 32, "i")
    archived = check_version(NoS3(), plans.get("documents"), entry, row(entry, storage_class="DEEP_ARCHIVE"), 100)
    assert (archived.sample_skipped_archived, archived.sampled, archived.ok) == (1, 0, True)

    take_backup(backups, ["documents"])
    deliver_all(s3, inventoried)
    damage_reads(clients.s3, "data/documents/reports/report-6.txt")
    records = whole_week(inventoried, clients, "sample", sample_percent=100)
    assert sum(r.sampled for r in records) == 10 and sum(r.headed for r in records) == 0
    assert [(key, problem) for key, _, problem in all_findings(records)] == [("reports/report-6.txt", "damaged")]


def test_a_version_written_after_the_report_waits_for_the_next_report_not_called_missing(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet, stage_env: dict[str, str]
) -> None:
    take_backup(backups)
    before = set(named_versions(s3, inventoried))
    deliver_all(s3, inventoried, at=utcnow() + timedelta(minutes=10))
    with time_machine.travel(START + timedelta(hours=1), tick=True):
        for index in range(4):
            s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key=f"reports/report-{index}.txt", Body=f"new {index}".encode())
        take_backup(backups)
        written_after = set(named_versions(s3, inventoried)) - before
        since = CallsSince()
        records = whole_week(inventoried, clients, "after", sample_percent=0)
        # Named only by the snapshot taken after the report's scan: not in the report, not asked about by
        # HEAD, not missing; counted as left for the next report.
        assert len(written_after) == 4
        assert all(r.status == "SUCCEEDED" for r in records) and all_findings(records) == []
        assert heads(since) == [] and sum(r.headed for r in records) == 0 and sum(r.deferred for r in records) == 4
        checked = sum(r.checked for r in records)
        # The next report lists them: checked against it, nothing left over.
        deliver_all(s3, inventoried)
        since = CallsSince()
        later = whole_week(inventoried, clients, "next", sample_percent=0)
    assert all_findings(later) == [] and heads(since) == []
    assert sum(r.deferred for r in later) == 0 and sum(r.checked for r in later) == checked + 4


@pytest.mark.parametrize("kept_before_scan", [False, True], ids=["no kept snapshot before the scan", "a pruned one between"])
def test_a_version_lost_before_the_report_is_never_left_for_the_next_one(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet, stage_env: dict[str, str], kept_before_scan: bool
) -> None:
    """Whether the report can be trusted not to list a version because it is new is decided by the last kept
    snapshot before its scan: with none (short retention), or with a pruned snapshot after it that may have
    named the version first, a version missing from the report is asked about by HEAD, week after week."""
    first = take_backup(backups, ["documents"])
    s3.put_object(Bucket=stage_env["DOCUMENTS_SOURCE_BUCKET"], Key="reports/report-1.txt", Body=b"changed before the report")
    second = take_backup(backups, ["documents"])
    lost = data_version(s3, "reports/report-1.txt")
    s3.delete_object(Bucket=BUCKET, Key="data/documents/reports/report-1.txt", VersionId=lost)
    markers = PrunedMarkers(s3, inventoried.catalog_bucket)
    if not kept_before_scan:
        markers.mark("documents", first, "a-prune", utcnow())
    previous = second
    for week in range(2):
        at = START + timedelta(days=7 * week, hours=1)
        with time_machine.travel(at, tick=True):
            deliver_all(s3, inventoried, at=utcnow())
        with time_machine.travel(at + timedelta(hours=1), tick=True):
            newest = take_backup(backups, ["documents"])
            # The snapshot that named the lost version first is pruned; the newest one carries it forward.
            markers.mark("documents", previous, "a-prune", utcnow())
            previous = newest
            records = whole_week(inventoried, clients, f"lost{week}", sample_percent=0)
        assert sum(r.deferred for r in records) == 0
        assert [f for f in all_findings(records) if f[2] == "missing"] == [("reports/report-1.txt", lost, "missing")]


def test_a_job_over_many_invocations_against_the_report_checks_what_one_pass_checks(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet
) -> None:
    from chalicelib.jobs.budget import TimeBudget
    from chalicelib.verify.record import VerificationStore
    from tests.test_scale import FakeContext, Invocations

    backup_id = take_backup(backups)
    seed_faults(s3, backup_id)
    deliver_all(s3, inventoried)
    since = CallsSince()
    one_pass = whole_week(inventoried, clients, "one", sample_percent=0)
    one_pass_heads = sorted(heads(since))
    # The first scheduled job checks every kept version against the report; the others wait for the next one.
    assert [r.checked for r in one_pass] == [21, 0, 0, 0, 0, 0, 0] and all(len(r.waiting) == 3 for r in one_pass[1:])
    invoker = Invocations()

    def invocation(payload: dict[str, Any]) -> None:
        # Each invocation's time runs out after two batches of two keys: the report is read again by each.
        VerificationJob(inventoried, clients, TOPIC, 4, TimeBudget(FakeContext(1)), invoker, batch_size=2,
                        sample_percent=0).run(payload["job_id"])

    many = []
    with time_machine.travel(START + timedelta(days=1), tick=True):
        deliver_all(s3, inventoried)
        since = CallsSince()
        for day in range(7):
            job = VerificationJob(inventoried, clients, TOPIC).start(later_id(f"many{day}"), weekday=day)
            invocation({"job_id": job.job_id})
            invoker.drive(invocation)
            many.append(VerificationStore(s3, "test-backup-documents").get(job.job_id))
    assert invoker.count >= 7 and many[0].invocations > 3
    assert [(r.checked, r.headed, r.plans) for r in many] == [(r.checked, r.headed, r.plans) for r in one_pass]
    assert all_findings(many) == all_findings(one_pass) != []
    # Resuming after a key neither skips nor repeats a version the report does not list.
    assert sorted(heads(since)) == one_pass_heads and len(one_pass_heads) == 2


def test_an_unreadable_report_alerts_and_the_job_checks_by_head(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet
) -> None:
    from tests.s3_inventory import rewrite_manifest as rewrite_report

    take_backup(backups, ["documents"])
    delivered = deliver_all(s3, inventoried)
    rewrite_report(s3, REPORTS, delivered["documents"], lambda manifest: manifest.update(fileSchema="Bucket, Key"), fix_checksum=False)
    since = CallsSince()
    records = whole_week(inventoried, clients, "unreadable", sample_percent=0)
    assert len(heads(since)) == sum(r.checked for r in records) == 10
    problem = records[0].inventory["documents"]["problem"]
    assert "s3://test-backup-documents" in problem and "manifest.checksum" in problem and "by HEAD" in problem
    assert all(r.status == "FAILED" for r in records) and records[0].inventory["photos"]["problem"] is None


# ------------------------------------------------------------------------------------------ no usable report


@pytest.mark.parametrize(
    ("frequency", "age", "stale"),
    [("Daily", timedelta(days=2, hours=20), False), ("Daily", timedelta(days=4), True),
     ("Weekly", timedelta(days=3), False), ("Weekly", timedelta(days=10), True)],
)
def test_a_stale_report_alerts_and_the_job_checks_by_head(
    frequency: str, age: timedelta, stale: bool, backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet,
    sqs: Any, topic_queue: str,
) -> None:
    with time_machine.travel(START - age - timedelta(hours=1), tick=True):
        take_backup(backups)
    deliver_all(s3, inventoried, at=utcnow() - age)
    verification_alerts(sqs, topic_queue)
    since = CallsSince()
    plans = with_inventory(inventoried, frequency)
    records = whole_week(plans, clients, "stale", sample_percent=0)
    checked = sum(r.checked for r in records)
    assert checked == 21 and all_findings(records) == []
    if not stale:
        assert heads(since) == [] and all(r.status == "SUCCEEDED" for r in records)
        return
    assert len(heads(since)) == checked == sum(r.headed for r in records)
    assert all(r.status == "FAILED" and not r.ok for r in records)
    problem = records[0].inventory["documents"]["problem"]
    assert BUCKET in problem and f"{age.days}.0 days old" in problem and "by HEAD" in problem
    alerts = verification_alerts(sqs, topic_queue)
    assert len(alerts) == 7 and all("no usable inventory report" in a["Subject"] for a in alerts)
    assert f"s3://{BUCKET}" in alerts[0]["Message"] and f"{age.days}.0 days old" in alerts[0]["Message"]


@pytest.mark.parametrize("after", [timedelta(days=4), timedelta(hours=71)], ids=["overdue", "not due yet"])
def test_no_report_alerts_once_the_first_is_due_and_the_job_checks_by_head(
    backups: BackupService, clients: Any, s3: Any, inventoried: PlanSet, sqs: Any, topic_queue: str, after: timedelta
) -> None:
    take_backup(backups)
    verification_alerts(sqs, topic_queue)
    since = CallsSince()
    # The first report is due within three days of the first backup.
    with time_machine.travel(START + after, tick=True):
        records = whole_week(inventoried, clients, "none", sample_percent=0)
    assert len(heads(since)) == sum(r.checked for r in records) == 21
    subjects = [a["Subject"] for a in verification_alerts(sqs, topic_queue)]
    if after > timedelta(days=3):
        assert all(r.status == "FAILED" for r in records)
        problem = records[0].inventory["photos"]["problem"]
        assert problem.startswith("no inventory report of s3://") and REPORTS in problem
        assert subjects and all(s.startswith("VERIFY FAILED, no usable inventory report") for s in subjects)
    else:
        assert all(r.status == "SUCCEEDED" and not r.inventory_problems for r in records)
        pending = records[0].inventory["photos"]["pending"]
        assert "first inventory report of s3://" in pending and "not due before 2026-12-02T12:" in pending
        assert not any("VERIFY FAILED" in s for s in subjects)
    assert not any("VERIFY FAILED" in a["Subject"] for a in verification_alerts(sqs, topic_queue))


# ------------------------------------------------------------------------------------------ lining up the orders


def test_rows_meet_their_entries_although_stored_keys_sort_otherwise_across_sources() -> None:
    # (source, key) order puts "a" before "a-b"; stored keys put "data/a-b/..." before "data/a/...".
    entries = [Entry("a", "x", "1", 1, "", "i"), Entry("a", "y", "1", 1, "", "i"), Entry("a", "y", "2", 1, "", "i"),
               Entry("a-b", "x", "1", 1, "", "i"), Entry("a-b", "z", "9", 1, "", "i")]
    listed = sorted([row(e) for e in entries[:4]] + [row(Entry("other", "x", "1", 1, "", "i"))], key=lambda r: r.sort_key)
    assert [r.key for r in listed][:2] == ["data/a-b/x", "data/a/x"]
    report: Any = None
    with ReportRows(NoS3(), report, ["a", "a-b"], rows=listed) as rows:
        found = [rows.row(e) for e in entries]
    assert [r.key if r else None for r in found] == ["data/a/x", "data/a/y", "data/a/y", "data/a-b/x", None]
    assert [r.version_id if r else None for r in found] == ["1", "1", "2", "1", None]


def test_a_resumed_invocation_keeps_only_the_rows_past_its_checkpoint() -> None:
    entries = [Entry(source, key, "1", 1, "", "i") for source in ("a", "a-b") for key in ("w", "x", "y")]
    listed = sorted((row(e) for e in entries), key=lambda r: r.sort_key)
    with ReportRows(NoS3(), None, ["a", "a-b"], rows=listed, after=("a", "x")) as rows:
        found = {e.sort_key for e in entries if rows.row(e) is not None}
        # Rows up to the checkpoint are neither sorted nor kept; every one after it is.
        assert rows.kept == 4
    assert found == {("a", "y"), ("a-b", "w"), ("a-b", "x"), ("a-b", "y")}


def test_the_rows_held_are_one_keys_versions_whatever_the_size_of_the_report() -> None:
    keys, versions = 1500, 3
    entries = [Entry(source, f"k{index:05d}", f"v{version}", 1, "", "i")
               for source in ("docs", "docs-old") for index in range(keys) for version in range(versions)]
    listed = sorted((row(e) for e in entries), key=lambda r: r.sort_key)
    with ReportRows(NoS3(), None, ["docs", "docs-old"], rows=iter(listed)) as rows:
        found = [rows.row(e) for e in entries if e.version_id != "v1"]
        assert rows.largest == versions < len(listed) // 1000
    assert all(r is not None for r in found) and len(found) == 2 * keys * (versions - 1)


# ------------------------------------------------------------------------------------------ the command line


@pytest.fixture
def inventory_plans_file(stage_env: dict[str, str], tmp_path: Any) -> dict[str, str]:
    """The shipped plans file with `inventory` set, chosen by PLANS_FILE (before the stage is written)."""
    import json
    from pathlib import Path

    import chalicelib.plans_file

    document = json.loads(Path(chalicelib.plans_file.DEFAULT_PLANS_FILE).read_text())
    document["inventory"] = {"bucket": REPORTS, "frequency": "Daily"}
    path = tmp_path / "plans-with-inventory.json"
    path.write_text(json.dumps(document))
    stage_env["PLANS_FILE"] = str(path)
    return stage_env


def test_verify_slice_says_when_no_inventory_report_could_be_used(
    inventory_plans_file: dict[str, str], project_dir: Any, capsys: pytest.CaptureFixture[str],
    backups: BackupService, s3: Any,
) -> None:
    from chalicelib import cli

    take_backup(backups, ["photos"])
    s3.create_bucket(Bucket=REPORTS)
    with time_machine.travel(START + timedelta(days=4), tick=True):
        code = cli.main(["--stage", "local", "--project-dir", str(project_dir), "verify-slice", "--weekday", "2"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out and "0 missing, 0 damaged, 0 error(s)" in out
    assert f"INVENTORY: no inventory report of s3://test-backup-photos has been delivered to s3://{REPORTS}/inventory" in out


def test_only_the_slices_rows_are_kept() -> None:
    from chalicelib.verify.checks import weekly_slice

    entries = [Entry("docs", f"k{index:03d}", "v1", 1, "", "i") for index in range(200)]
    listed = sorted((row(e) for e in entries), key=lambda r: r.sort_key)
    with ReportRows(NoS3(), None, ["docs"], weekday=4, rows=listed) as rows:
        found = {e.key for e in entries if rows.row(e) is not None}
    assert found == {e.key for e in entries if weekly_slice(e) == 4} and 10 < len(found) < 60

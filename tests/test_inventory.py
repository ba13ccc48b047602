"""S3 Inventory: the configuration a backup bucket gets, the destination's policy, and reading delivered
reports (tests/s3_inventory.py writes them as S3 does, since moto never does)."""

from __future__ import annotations

import copy
import gzip
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.session
import pytest
import time_machine

from chalicelib.inventory import configuration as conf
from chalicelib.inventory import reports
from chalicelib.deploy.scope import VERIFY_WORKER
from chalicelib.plans import InventoryPlan, Lifecycle, Plan, PlanSet
from tests.record_calls import assume_configuration, running_as
from tests.s3_inventory import deliver, encode_key, rewrite_manifest

ACCOUNT = "123456789012"
SOURCE = "test-inventory-source"
DESTINATION = "test-inventory-reports"
CONFIG_ID = conf.DEFAULT_CONFIGURATION_ID
START = datetime(2031, 3, 2, 4, 0, tzinfo=timezone.utc)
ODD_KEYS = [
    "plain.txt",
    "with space/and  two.txt",
    "ünïcødé/ファイル.bin",
    "plus+sign",
    "percent%41not-an-escape",
    "tilde~star*",
    'quote"comma,semi;colon',
    "deep/er/than/most/key",
]


@pytest.fixture(autouse=True)
def _read_as_the_verify_worker() -> Iterator[None]:
    # The reader's calls are checked against the verify worker's generated policy, for a stage whose one
    # backup bucket is SOURCE and whose reports go to DESTINATION: listing under inventory/ and reading
    # reports there, nothing more. (The prune and the cost report's functions get the same grants.)
    assume_configuration(
        PlanSet(plans=(Plan(name="inventoried", bucket=SOURCE, sources=(), lifecycle=Lifecycle(())),), catalog_bucket=SOURCE,
                inventory=InventoryPlan(bucket=DESTINATION))
    )
    with running_as(VERIFY_WORKER):
        yield


def _destination(prefix: str = "inventory", encrypted: bool = False) -> conf.Destination:
    return conf.Destination(bucket_arn=conf.bucket_arn(DESTINATION), account_id=ACCOUNT, prefix=prefix, encrypted=encrypted)


@pytest.fixture
def buckets(s3: Any) -> Any:
    s3.create_bucket(Bucket=SOURCE, ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket=SOURCE, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=DESTINATION)
    wanted = conf.inventory_configuration(_destination())
    s3.put_bucket_inventory_configuration(Bucket=SOURCE, Id=CONFIG_ID, InventoryConfiguration=wanted)
    return s3


def _at(moment: datetime) -> Any:
    return time_machine.travel(moment, tick=False)


def _expected(s3: Any) -> dict[tuple[str, str], tuple[Any, ...]]:
    """What S3 lists now: (key, version id) -> (is latest, is delete marker, size, ETag, storage class)."""
    listing = s3.list_object_versions(Bucket=SOURCE)
    found = {(v["Key"], v["VersionId"]): (v["IsLatest"], False, v["Size"], v["ETag"].strip('"'), v["StorageClass"]) for v in listing.get("Versions", [])}
    for m in listing.get("DeleteMarkers", []):
        found[(m["Key"], m["VersionId"])] = (m["IsLatest"], True, None, None, None)
    return found


def _as_listed(rows: list[reports.Row]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {row.sort_key: (row.is_latest, row.is_delete_marker, row.size, row.etag, row.storage_class) for row in rows}


def _newest(s3: Any) -> reports.Report:
    report = reports.newest_report(s3, DESTINATION, "inventory", SOURCE, CONFIG_ID)
    assert report is not None
    return report


# The configuration ---------------------------------------------------------------------------------------


def test_configuration_lists_every_version_with_every_field_aws_knows() -> None:
    wanted = conf.inventory_configuration(_destination(encrypted=True), conf.Frequency.WEEKLY, "weekly-versions")
    model = botocore.session.get_session().get_service_model("s3")
    known_fields = set(model.shape_for("InventoryOptionalField").enum)
    assert set(wanted["OptionalFields"]) <= known_fields
    assert set(conf.OPTIONAL_FIELDS) >= {"Size", "ETag", "StorageClass", "LastModifiedDate", "ObjectLockMode"}
    assert wanted["IncludedObjectVersions"] == "All" and "Filter" not in wanted
    assert wanted["Schedule"] == {"Frequency": "Weekly"} and wanted["Id"] == "weekly-versions"
    target = wanted["Destination"]["S3BucketDestination"]
    assert target == {
        "AccountId": ACCOUNT,
        "Bucket": f"arn:aws:s3:::{DESTINATION}",
        "Format": "CSV",
        "Prefix": "inventory",
        "Encryption": {"SSES3": {}},
    }
    assert "Encryption" not in conf.inventory_configuration(_destination())["Destination"]["S3BucketDestination"]
    assert conf.inventory_configuration(_destination())["Schedule"] == {"Frequency": "Daily"}


def test_configuration_is_accepted_by_the_s3_api_and_reads_back_without_differences(s3: Any) -> None:
    s3.create_bucket(Bucket=SOURCE)
    wanted = conf.inventory_configuration(_destination())
    # botocore validates the request against S3's service model before moto sees it.
    s3.put_bucket_inventory_configuration(Bucket=SOURCE, Id=CONFIG_ID, InventoryConfiguration=wanted)
    stored = s3.get_bucket_inventory_configuration(Bucket=SOURCE, Id=CONFIG_ID)["InventoryConfiguration"]
    assert conf.differences(stored, wanted) == []


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"bucket_arn": "my-bucket"}, "my-bucket"),
        ({"bucket_arn": "arn:aws:s3:::Bad_Bucket"}, "Bad_Bucket"),
        ({"account_id": "12345"}, "12345"),
        ({"prefix": "/reports"}, "/reports"),
        ({"prefix": "reports/"}, "reports/"),
    ],
)
def test_a_wrong_destination_is_refused_naming_the_value(bad: dict[str, str], named: str) -> None:
    values = {"bucket_arn": conf.bucket_arn(DESTINATION), "account_id": ACCOUNT, "prefix": "inventory"} | bad
    with pytest.raises(conf.ConfigurationError, match=named.replace("/", ".")):
        conf.Destination(**values)


def test_a_configuration_id_that_is_not_one_path_segment_is_refused() -> None:
    with pytest.raises(conf.ConfigurationError, match="a/b"):
        conf.inventory_configuration(_destination(), configuration_id="a/b")


def _altered(change: Any) -> dict[str, Any]:
    stored = copy.deepcopy(conf.inventory_configuration(_destination(encrypted=True)))
    change(stored)
    return stored


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c.update(IsEnabled=False), "IsEnabled"),
        (lambda c: c.update(IncludedObjectVersions="Current"), "IncludedObjectVersions"),
        (lambda c: c.update(Schedule={"Frequency": "Weekly"}), "Schedule.Frequency"),
        (lambda c: c.update(Filter={"Prefix": "data/"}), "Filter"),
        (lambda c: c["Destination"]["S3BucketDestination"].update(Bucket="arn:aws:s3:::elsewhere"), "Destination.Bucket"),
        (lambda c: c["Destination"]["S3BucketDestination"].update(AccountId="210987654321"), "Destination.AccountId"),
        (lambda c: c["Destination"]["S3BucketDestination"].update(Format="Parquet"), "Destination.Format"),
        (lambda c: c["Destination"]["S3BucketDestination"].update(Prefix="other"), "Destination.Prefix"),
        (lambda c: c["Destination"]["S3BucketDestination"].pop("Encryption"), "Destination.Encryption"),
        (lambda c: c["OptionalFields"].remove("ETag"), "lacks ETag"),
        (lambda c: c["OptionalFields"].append("ObjectOwner"), "has ObjectOwner"),
    ],
)
def test_every_drift_of_a_stored_configuration_is_named(change: Any, named: str) -> None:
    wanted = conf.inventory_configuration(_destination(encrypted=True))
    assert conf.differences(copy.deepcopy(wanted), wanted) == []
    found = conf.differences(_altered(change), wanted)
    assert len(found) == 1 and named in found[0]


def test_a_missing_configuration_is_drift() -> None:
    assert conf.differences(None, conf.inventory_configuration(_destination())) == [
        f"inventory configuration {CONFIG_ID!r} is missing"
    ]


# The destination's policy --------------------------------------------------------------------------------


def test_only_s3_may_write_reports_and_only_of_our_buckets() -> None:
    allow, deny = conf.destination_policy_statements(_destination(), ["test-backup-b", "test-backup-a"], ACCOUNT)
    assert allow["Effect"] == "Allow" and allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == f"arn:aws:s3:::{DESTINATION}/inventory/*"
    assert allow["Condition"] == {
        "ArnLike": {"aws:SourceArn": ["arn:aws:s3:::test-backup-a", "arn:aws:s3:::test-backup-b"]},
        "StringEquals": {"aws:SourceAccount": ACCOUNT, "s3:x-amz-acl": "bucket-owner-full-control"},
    }
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:PutObject"
    assert deny["Resource"] == allow["Resource"]
    assert deny["Condition"] == {"Bool": {"aws:PrincipalIsAWSService": "false"}}
    single, _ = conf.destination_policy_statements(_destination(prefix=""), ["test-backup-a"], ACCOUNT)
    assert single["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:s3:::test-backup-a"
    assert single["Resource"] == f"arn:aws:s3:::{DESTINATION}/*"


def test_the_policy_is_a_valid_bucket_policy(s3: Any) -> None:
    import json

    s3.create_bucket(Bucket=DESTINATION)
    statements = conf.destination_policy_statements(_destination(), [SOURCE], ACCOUNT)
    s3.put_bucket_policy(Bucket=DESTINATION, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    assert json.loads(s3.get_bucket_policy(Bucket=DESTINATION)["Policy"])["Statement"] == statements


def test_a_policy_without_sources_or_with_a_wrong_account_is_refused() -> None:
    with pytest.raises(conf.ConfigurationError, match="source bucket"):
        conf.destination_policy_statements(_destination(), [], ACCOUNT)
    with pytest.raises(conf.ConfigurationError, match="'42'"):
        conf.destination_policy_statements(_destination(), [SOURCE], "42")


# Reports round-trip through the double -------------------------------------------------------------------


def _write_history(s3: Any) -> None:
    """Odd keys, overwritten versions, a delete marker, an archived object, a multipart upload, a SHA-256
    checksum and an Object Lock retention, each written at its own second."""
    moment = START
    for key in ODD_KEYS:
        moment += timedelta(seconds=1)
        with _at(moment):
            s3.put_object(Bucket=SOURCE, Key=key, Body=key.encode() * 3)
    with _at(moment + timedelta(seconds=1)):
        s3.put_object(Bucket=SOURCE, Key="plain.txt", Body=b"second version", ChecksumAlgorithm="SHA256")
        s3.put_object(Bucket=SOURCE, Key="cold", Body=b"archived", StorageClass="DEEP_ARCHIVE")
        s3.put_object(
            Bucket=SOURCE,
            Key="locked",
            Body=b"kept",
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=START + timedelta(days=30),
        )
        upload = s3.create_multipart_upload(Bucket=SOURCE, Key="parts")
        part = s3.upload_part(Bucket=SOURCE, Key="parts", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 10)
        s3.complete_multipart_upload(
            Bucket=SOURCE,
            Key="parts",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
    with _at(moment + timedelta(seconds=2)):
        s3.delete_object(Bucket=SOURCE, Key="tilde~star*")


def test_a_report_lists_every_version_and_delete_marker_as_s3_holds_them(buckets: Any) -> None:
    _write_history(buckets)
    with _at(START + timedelta(minutes=5)):
        manifest_key = deliver(buckets, SOURCE, CONFIG_ID)
    report = _newest(buckets)
    assert report.manifest_key == manifest_key == f"inventory/{SOURCE}/{CONFIG_ID}/2031-03-02T04-05Z/manifest.json"
    assert report.source_bucket == SOURCE and report.destination_bucket_arn == f"arn:aws:s3:::{DESTINATION}"
    assert report.created == START + timedelta(minutes=5)
    rows = list(reports.rows(buckets, report))
    assert _as_listed(rows) == _expected(buckets)
    assert {row.key for row in rows} >= set(ODD_KEYS)
    by_key = {row.key: row for row in rows if row.is_latest}
    assert by_key["tilde~star*"].is_delete_marker and by_key["tilde~star*"].size is None
    assert by_key["cold"].storage_class == "DEEP_ARCHIVE"
    assert by_key["parts"].is_multipart_uploaded is True and by_key["plain.txt"].is_multipart_uploaded is False
    assert by_key["plain.txt"].checksum_algorithm == "SHA256"
    assert by_key["locked"].object_lock_mode == "GOVERNANCE"
    assert by_key["locked"].object_lock_retain_until == START + timedelta(days=30)
    assert all(row.bucket == SOURCE for row in rows)
    assert all(row.last_modified is not None and row.last_modified <= report.created for row in rows)


def test_keys_are_url_encoded_in_the_files_and_decoded_by_the_reader(buckets: Any) -> None:
    with _at(START):
        for key in ODD_KEYS:
            buckets.put_object(Bucket=SOURCE, Key=key, Body=b"x")
        manifest_key = deliver(buckets, SOURCE, CONFIG_ID)
    report = reports.load_report(buckets, DESTINATION, manifest_key)
    raw = gzip.decompress(buckets.get_object(Bucket=DESTINATION, Key=report.files[0].key)["Body"].read()).decode()
    assert '"with+space%2Fand++two.txt"' in raw and '"plus%2Bsign"' in raw and '"percent%2541not-an-escape"' in raw
    assert encode_key("ünï") == "%C3%BCn%C3%AF"
    assert sorted(row.key for row in reports.rows(buckets, report)) == sorted(ODD_KEYS)


def test_a_report_taken_before_later_writes_does_not_contain_them(buckets: Any) -> None:
    with _at(START):
        first = buckets.put_object(Bucket=SOURCE, Key="doc", Body=b"one")["VersionId"]
    with _at(START + timedelta(hours=2)):
        second = buckets.put_object(Bucket=SOURCE, Key="doc", Body=b"two")["VersionId"]
        buckets.put_object(Bucket=SOURCE, Key="new", Body=b"later")
        buckets.delete_object(Bucket=SOURCE, Key="doc")
    with _at(START + timedelta(hours=3)):
        deliver(buckets, SOURCE, CONFIG_ID, at=START + timedelta(hours=1))
    report = _newest(buckets)
    rows = list(reports.rows(buckets, report))
    assert [(row.key, row.version_id, row.is_latest, row.is_delete_marker) for row in rows] == [("doc", first, True, False)]
    assert second not in {row.version_id for row in rows}
    now = START + timedelta(hours=30)
    assert report.age(now) == timedelta(hours=29)


def test_the_newest_of_several_reports_is_read_and_other_configurations_are_not(buckets: Any) -> None:
    assert reports.newest_report(buckets, DESTINATION, "inventory", SOURCE, CONFIG_ID) is None
    other = conf.inventory_configuration(_destination(), configuration_id="other")
    buckets.put_bucket_inventory_configuration(Bucket=SOURCE, Id="other", InventoryConfiguration=other)
    with _at(START):
        buckets.put_object(Bucket=SOURCE, Key="a", Body=b"1")
        deliver(buckets, SOURCE, CONFIG_ID)
    with _at(START + timedelta(days=1)):
        buckets.put_object(Bucket=SOURCE, Key="b", Body=b"2")
        deliver(buckets, SOURCE, CONFIG_ID)
    with _at(START + timedelta(days=2)):
        buckets.put_object(Bucket=SOURCE, Key="c", Body=b"3")
        deliver(buckets, SOURCE, "other")
    report = _newest(buckets)
    assert report.created == START + timedelta(days=1)
    assert sorted(row.key for row in reports.rows(buckets, report)) == ["a", "b"]


def test_the_reader_follows_the_file_schema_not_a_fixed_column_order(buckets: Any) -> None:
    _write_history(buckets)
    with _at(START + timedelta(minutes=5)):
        manifest_key = deliver(buckets, SOURCE, CONFIG_ID)
    in_order = list(reports.rows(buckets, reports.load_report(buckets, DESTINATION, manifest_key)))
    columns = reports.load_report(buckets, DESTINATION, manifest_key).schema
    with _at(START + timedelta(minutes=6)):
        reversed_key = deliver(buckets, SOURCE, CONFIG_ID, schema=list(reversed(columns)))
    reversed_report = reports.load_report(buckets, DESTINATION, reversed_key)
    assert reversed_report.schema == tuple(reversed(columns))
    assert sorted(reports.rows(buckets, reversed_report), key=lambda r: r.sort_key) == sorted(in_order, key=lambda r: r.sort_key)


# Every way a report can be wrong -------------------------------------------------------------------------


@pytest.fixture
def delivered(buckets: Any) -> str:
    with _at(START):
        for key in ODD_KEYS:
            buckets.put_object(Bucket=SOURCE, Key=key, Body=b"x")
        return deliver(buckets, SOURCE, CONFIG_ID, files=2)


def _checksum_key(manifest_key: str) -> str:
    return manifest_key.rsplit("/", 1)[0] + "/manifest.checksum"


def test_a_report_without_its_checksum_is_refused(buckets: Any, delivered: str) -> None:
    buckets.delete_object(Bucket=DESTINATION, Key=_checksum_key(delivered))
    with pytest.raises(reports.ChecksumMissing) as caught:
        _newest(buckets)
    assert caught.value.report == delivered and delivered in str(caught.value)


def test_a_manifest_that_differs_from_its_checksum_is_refused(buckets: Any, delivered: str) -> None:
    rewrite_manifest(buckets, DESTINATION, delivered, lambda m: m["files"].pop(), fix_checksum=False)
    with pytest.raises(reports.ChecksumMismatch, match="manifest.checksum says"):
        _newest(buckets)


def test_a_report_folder_without_its_manifest_is_refused(buckets: Any, delivered: str) -> None:
    buckets.delete_object(Bucket=DESTINATION, Key=delivered)
    with pytest.raises(reports.ManifestMissing, match="manifest.json is not there"):
        _newest(buckets)


def test_a_manifest_of_another_source_bucket_is_refused(buckets: Any, delivered: str) -> None:
    rewrite_manifest(buckets, DESTINATION, delivered, lambda m: m.update(sourceBucket="someone-else"))
    with pytest.raises(reports.MalformedManifest, match="someone-else"):
        _newest(buckets)


def test_a_manifest_that_is_not_json_is_refused(buckets: Any, delivered: str) -> None:
    body = b"{not json"
    buckets.put_object(Bucket=DESTINATION, Key=delivered, Body=body)
    buckets.put_object(Bucket=DESTINATION, Key=_checksum_key(delivered), Body=hashlib.md5(body).hexdigest().encode())
    with pytest.raises(reports.MalformedManifest, match="not JSON"):
        _newest(buckets)


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        (lambda m: m.update(fileFormat="Parquet"), reports.UnsupportedFormat, "Parquet"),
        (lambda m: m.update(fileSchema="Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size"), reports.MissingColumns, "ETag"),
        (lambda m: m.pop("creationTimestamp"), reports.MalformedManifest, "creationTimestamp"),
        (lambda m: m.update(creationTimestamp="yesterday"), reports.MalformedManifest, "creationTimestamp"),
        (lambda m: m["files"][0].pop("MD5checksum"), reports.MalformedManifest, "files"),
    ],
)
def test_a_manifest_the_product_cannot_use_is_refused_naming_why(
    buckets: Any, delivered: str, change: Any, error: type[reports.ReportError], named: str
) -> None:
    rewrite_manifest(buckets, DESTINATION, delivered, change)
    with pytest.raises(error, match=named) as caught:
        _newest(buckets)
    assert caught.value.report == delivered


def test_a_data_file_whose_md5_differs_is_refused_before_any_of_its_rows(buckets: Any, delivered: str) -> None:
    report = _newest(buckets)
    victim = report.files[1]
    body = buckets.get_object(Bucket=DESTINATION, Key=victim.key)["Body"].read()
    tampered = gzip.compress(gzip.decompress(body).replace(b'"true"', b'"false"'))
    buckets.put_object(Bucket=DESTINATION, Key=victim.key, Body=tampered)
    read: list[reports.Row] = []
    with pytest.raises(reports.DataFileCorrupt, match=victim.key):
        read.extend(reports.rows(buckets, report))
    first_file = gzip.decompress(buckets.get_object(Bucket=DESTINATION, Key=report.files[0].key)["Body"].read())
    assert len(read) == first_file.count(b"\n")


def test_a_missing_data_file_is_refused(buckets: Any, delivered: str) -> None:
    report = _newest(buckets)
    buckets.delete_object(Bucket=DESTINATION, Key=report.files[0].key)
    with pytest.raises(reports.DataFileCorrupt, match="is not there"):
        list(reports.rows(buckets, report))


def test_a_data_file_that_is_not_gzip_csv_of_its_schema_is_refused(buckets: Any, delivered: str) -> None:
    report = _newest(buckets)
    for body, named in ((b"plain text, not gzip", "not gzip CSV"), (gzip.compress(b'"only","three","values"\n'), "3 values")):
        key = report.files[0].key
        buckets.put_object(Bucket=DESTINATION, Key=key, Body=body)

        def point_at(manifest: dict[str, Any], body: bytes = body) -> None:
            manifest["files"][0].update(size=len(body), MD5checksum=hashlib.md5(body).hexdigest())

        rewrite_manifest(buckets, DESTINATION, delivered, point_at)
        with pytest.raises(reports.DataFileCorrupt, match=named):
            list(reports.rows(buckets, _newest(buckets)))


# The sorted view -----------------------------------------------------------------------------------------


def test_rows_come_sorted_by_key_and_version_across_shuffled_files(buckets: Any) -> None:
    moment = START
    for round_ in range(3):
        moment += timedelta(seconds=1)
        with _at(moment):
            for index in range(40):
                if (index + round_) % 3:
                    buckets.put_object(Bucket=SOURCE, Key=f"{ODD_KEYS[index % len(ODD_KEYS)]}/{index:02d}", Body=b"v%d" % round_)
                elif round_:
                    buckets.delete_object(Bucket=SOURCE, Key=f"{ODD_KEYS[index % len(ODD_KEYS)]}/{index:02d}")
    with _at(moment + timedelta(minutes=1)):
        manifest_key = deliver(buckets, SOURCE, CONFIG_ID, files=4, shuffle=7)
    report = reports.load_report(buckets, DESTINATION, manifest_key)
    assert len(report.files) == 4
    as_written = list(reports.rows(buckets, report))
    assert [row.sort_key for row in as_written] != sorted(row.sort_key for row in as_written)
    for run_rows in (1, 7, 1000):
        in_order = list(reports.sorted_rows(buckets, report, run_rows=run_rows))
        assert [row.sort_key for row in in_order] == sorted(row.sort_key for row in as_written)
        assert sorted(in_order, key=lambda r: r.sort_key) == sorted(as_written, key=lambda r: r.sort_key)
    assert _as_listed(as_written) == _expected(buckets)

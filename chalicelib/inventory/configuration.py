"""The inventory configuration a backup bucket gets, and where its reports may be written.

Pure functions of plain data: what to send as `put_bucket_inventory_configuration`'s
`InventoryConfiguration`, the destination bucket's policy statements, and the differences between what a
bucket has stored and what it should have (for drift detection).

Followed: AWS's PutBucketInventoryConfiguration request shape, and the destination policy of "Grant
permissions for S3 Inventory and S3 analytics" in the S3 User Guide's bucket policy examples
(`Principal: {"Service": "s3.amazonaws.com"}`, `s3:PutObject`, `ArnLike aws:SourceArn`, `StringEquals
aws:SourceAccount` and `s3:x-amz-acl: bucket-owner-full-control`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from chalicelib.errors import BackupError

# Every field the product reads from a report. `IncludedObjectVersions: All` adds VersionId, IsLatest and
# IsDeleteMarker on its own; Bucket and Key are always there.
OPTIONAL_FIELDS: tuple[str, ...] = (
    "Size",
    "ETag",
    "StorageClass",
    "LastModifiedDate",
    "IsMultipartUploaded",
    "ChecksumAlgorithm",
    "ReplicationStatus",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
)
DEFAULT_CONFIGURATION_ID = "org-backup-versions"
S3_SERVICE_PRINCIPAL = "s3.amazonaws.com"
_BUCKET_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:s3:::([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
# The id is a path segment of every report key (`<prefix>/<source bucket>/<id>/...`): no '/'.
_CONFIGURATION_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ConfigurationError(BackupError):
    """An inventory configuration or destination that cannot be right; the message names the value."""


class Frequency(str, Enum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


@dataclass(frozen=True)
class Destination:
    """Where a bucket's reports go: a bucket (by ARN), the account that owns it, a key prefix, and whether
    S3 encrypts the reports with its own keys (SSE-S3)."""

    bucket_arn: str
    account_id: str
    prefix: str = "inventory"
    encrypted: bool = True

    def __post_init__(self) -> None:
        if not _BUCKET_ARN.match(self.bucket_arn):
            raise ConfigurationError(f"inventory destination {self.bucket_arn!r} is not an S3 bucket ARN (arn:aws:s3:::<bucket>)")
        if not _ACCOUNT_ID.match(self.account_id):
            raise ConfigurationError(f"inventory destination account {self.account_id!r} is not a 12-digit account id")
        if self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ConfigurationError(f"inventory destination prefix {self.prefix!r} must not start or end with '/'")

    @property
    def bucket(self) -> str:
        return self.bucket_arn.rsplit(":", 1)[-1]


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def inventory_configuration(
    destination: Destination,
    frequency: Frequency = Frequency.DAILY,
    configuration_id: str = DEFAULT_CONFIGURATION_ID,
) -> dict[str, Any]:
    """`InventoryConfiguration` for put_bucket_inventory_configuration: every version and delete marker of
    the whole bucket (no filter), CSV, with every field in OPTIONAL_FIELDS."""
    if not _CONFIGURATION_ID.match(configuration_id):
        raise ConfigurationError(
            f"inventory configuration id {configuration_id!r}: 1 to 64 letters, digits, '.', '-' or '_'"
        )
    target: dict[str, Any] = {"AccountId": destination.account_id, "Bucket": destination.bucket_arn, "Format": "CSV"}
    if destination.prefix:
        target["Prefix"] = destination.prefix
    if destination.encrypted:
        target["Encryption"] = {"SSES3": {}}
    return {
        "Id": configuration_id,
        "IsEnabled": True,
        "IncludedObjectVersions": "All",
        "Destination": {"S3BucketDestination": target},
        "Schedule": {"Frequency": Frequency(frequency).value},
        "OptionalFields": list(OPTIONAL_FIELDS),
    }


def destination_policy_statements(destination: Destination, source_buckets: list[str], source_account: str) -> list[dict[str, Any]]:
    """The statements the destination bucket's policy needs: S3's service principal may write reports of
    these source buckets, of this account, under the prefix (AWS's documented statement, narrowed to the
    prefix); and nothing else may write there, so a report read later is S3's own."""
    if not source_buckets:
        raise ConfigurationError("an inventory destination needs at least one source bucket")
    if not _ACCOUNT_ID.match(source_account):
        raise ConfigurationError(f"inventory source account {source_account!r} is not a 12-digit account id")
    reports = f"{destination.bucket_arn}/{destination.prefix + '/' if destination.prefix else ''}*"
    sources = [bucket_arn(name) for name in sorted(source_buckets)]
    return [
        {
            "Sid": "InventoryReportsFromS3",
            "Effect": "Allow",
            "Principal": {"Service": S3_SERVICE_PRINCIPAL},
            "Action": "s3:PutObject",
            "Resource": reports,
            "Condition": {
                "ArnLike": {"aws:SourceArn": sources if len(sources) > 1 else sources[0]},
                "StringEquals": {"aws:SourceAccount": source_account, "s3:x-amz-acl": "bucket-owner-full-control"},
            },
        },
        {
            # An Allow cannot stop a role with s3:PutObject in its own policy; this Deny does. The global key
            # aws:PrincipalIsAWSService is true only for a service principal's own request.
            "Sid": "InventoryReportsOnlyFromS3",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": reports,
            "Condition": {"Bool": {"aws:PrincipalIsAWSService": "false"}},
        },
    ]


def differences(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """Every way a bucket's stored inventory configuration (get_bucket_inventory_configuration's
    `InventoryConfiguration`, or None when there is none) differs from the wanted one, one line each; empty
    when they agree."""
    if stored is None:
        return [f"inventory configuration {wanted['Id']!r} is missing"]
    found: list[str] = []

    def compare(name: str, have: Any, want: Any) -> None:
        if have != want:
            found.append(f"{name} is {have!r}, should be {want!r}")

    compare("Id", stored.get("Id"), wanted["Id"])
    compare("IsEnabled", bool(stored.get("IsEnabled")), wanted["IsEnabled"])
    compare("IncludedObjectVersions", stored.get("IncludedObjectVersions"), wanted["IncludedObjectVersions"])
    compare("Schedule.Frequency", (stored.get("Schedule") or {}).get("Frequency"), wanted["Schedule"]["Frequency"])
    if stored.get("Filter"):
        found.append(f"Filter {stored['Filter']!r} leaves versions out of the reports, should be none")
    have_target = (stored.get("Destination") or {}).get("S3BucketDestination") or {}
    want_target = wanted["Destination"]["S3BucketDestination"]
    for name in ("Bucket", "AccountId", "Format"):
        compare(f"Destination.{name}", have_target.get(name), want_target[name])
    compare("Destination.Prefix", have_target.get("Prefix", ""), want_target.get("Prefix", ""))
    compare("Destination.Encryption", _encryption(have_target), _encryption(want_target))
    have_fields = set(stored.get("OptionalFields") or [])
    want_fields = set(wanted["OptionalFields"])
    if want_fields - have_fields:
        found.append(f"OptionalFields lacks {', '.join(sorted(want_fields - have_fields))}")
    if have_fields - want_fields:
        found.append(f"OptionalFields has {', '.join(sorted(have_fields - want_fields))} it does not need")
    return found


def _encryption(target: dict[str, Any]) -> str:
    encryption = target.get("Encryption") or {}
    if "SSEKMS" in encryption:
        return f"SSE-KMS {encryption['SSEKMS'].get('KeyId', '')}".strip()
    return "SSE-S3" if "SSES3" in encryption else "none"

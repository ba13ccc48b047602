"""A plan's `offsite` entry: the vault's account, region, bucket, replica storage class and lock, each field
checked with an error naming the plan and the field."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.errors import PlanError
from chalicelib.plans_file import check_offsite_apart, check_plans_file, parse_plans
from tests.test_plans import ENV, valid_document

VAULT = {"account": "210987654321", "region": "eu-central-1", "bucket": "acme-vault-documents",
         "storage_class": "DEEP_ARCHIVE", "object_lock_days": 2576}


def with_vaults(**changes: Any) -> dict[str, Any]:
    """The test plans file with a vault for both plans; `changes` alter the first plan's."""
    document = valid_document()
    document["plans"][0]["offsite"] = {**VAULT, **changes}
    # The database plan keeps the default retention, whose horizon is 386 days.
    document["plans"][1]["offsite"] = {**VAULT, "bucket": "acme-vault-database", "object_lock_days": 386}
    return document


def test_a_plan_reads_its_vault() -> None:
    plans = parse_plans(with_vaults(storage_class="GLACIER"), ENV)
    documents, database = plans.plans
    assert documents.offsite is not None and database.offsite is not None
    assert (documents.offsite.account, documents.offsite.region, documents.offsite.bucket) == (
        "210987654321", "eu-central-1", "acme-vault-documents")
    assert (documents.offsite.storage_class, documents.offsite.object_lock_days) == ("GLACIER", 2576)
    document = with_vaults()
    del document["plans"][0]["offsite"]["storage_class"]
    assert parse_plans(document, ENV).plans[0].offsite.storage_class == "DEEP_ARCHIVE"  # type: ignore[union-attr]
    assert parse_plans(valid_document(), ENV).plans[0].offsite is None


def test_placeholders_fill_the_vault_and_the_shape_check_waits_for_them() -> None:
    document = with_vaults(account="${VAULT_ACCOUNT}", region="${VAULT_REGION}")
    document["plans"][1]["offsite"].update(account="${VAULT_ACCOUNT}", region="${VAULT_REGION}")
    plans = parse_plans(document, {**ENV, "VAULT_ACCOUNT": "210987654321", "VAULT_REGION": "eu-west-1"})
    assert plans.plans[0].offsite.region == "eu-west-1"  # type: ignore[union-attr]
    from chalicelib.json_fields import AnyVariable

    assert parse_plans(document, AnyVariable()).plans[0].offsite is not None
    with pytest.raises(PlanError, match="plan 'documents', field 'offsite', field 'account': uses \\$\\{VAULT_ACCOUNT\\}"):
        parse_plans(document, ENV)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"account": "21098765432"}, "account", "12 digits"),
        ({"account": "acme-vault"}, "account", "12 digits"),
        ({"region": "Frankfurt"}, "region", "region name"),
        ({"region": "eu-central"}, "region", "region name"),
        ({"bucket": "Acme_Vault"}, "bucket", "valid S3 bucket name"),
        ({"bucket": "acme-backup-documents"}, "bucket", "own backup bucket"),
        ({"bucket": "acme-backup-database"}, "bucket", "is a backup bucket"),
        ({"storage_class": "REDUCED_REDUNDANCY"}, "storage_class", "S3 Replication writes replicas in"),
        ({"storage_class": "EXPRESS_ONEZONE"}, "storage_class", "S3 Replication writes replicas in"),
        ({"object_lock_days": 0}, "object_lock_days", "at least 1"),
        ({"object_lock_days": 36501}, "object_lock_days", "at most 36500"),
        ({"object_lock_days": 2575}, "object_lock_days", "horizon .* use at least 2576"),
        ({"object_lock_days": "2576"}, "object_lock_days", "an integer"),
        ({"colder": True}, None, "unknown field\\(s\\) 'colder'"),
    ],
)
def test_each_field_is_checked_and_named(changes: dict[str, Any], field: str | None, says: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plans(with_vaults(**changes), ENV)
    message = str(caught.value)
    assert message.startswith("plan 'documents', field 'offsite'"), message
    if field is not None:
        assert f"field '{field}'" in message, message
    assert re.search(says, message), message


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"bucket": "acme-vault-documents"}, "field 'bucket': 'acme-vault-documents' is also plan 'documents''s vault"),
        ({"region": "eu-west-1"}, "field 'region': 'eu-west-1' differs from plan 'documents''s 'eu-central-1'"),
        ({"account": "111122223333"}, "field 'account': '111122223333' differs .* every vault is in one account and region"),
    ],
)
def test_the_vaults_are_distinct_buckets_in_one_account_and_region(changes: dict[str, Any], says: str) -> None:
    """Reported at the plan that departs from the first vault."""
    document = with_vaults()
    document["plans"][1]["offsite"].update(changes)
    with pytest.raises(PlanError, match="^plan 'database', field 'offsite', " + says):
        parse_plans(document, ENV)


def test_the_catalog_plan_needs_a_vault_when_another_plan_has_one() -> None:
    document = copy.deepcopy(with_vaults())
    del document["plans"][0]["offsite"]
    with pytest.raises(PlanError, match="plan 'documents', field 'offsite': plan 'database' has a vault, so the catalog"):
        parse_plans(document, ENV)


def test_a_vault_in_the_stages_own_account_and_region_is_refused() -> None:
    plans = parse_plans(with_vaults(), ENV)
    # Another account in the same region, or the same account in another region: each is accepted.
    check_offsite_apart(plans, "123456789012", "eu-central-1")
    check_offsite_apart(plans, "210987654321", "us-east-1")
    with pytest.raises(PlanError, match="plan 'documents', field 'offsite': .*own account 210987654321 and region eu-central-1"):
        check_offsite_apart(plans, "210987654321", "eu-central-1")


def test_the_stages_settings_check_the_vault_against_the_stages_account_and_region(tmp_path: Any) -> None:
    import json

    path = tmp_path / "plans.json"
    path.write_text(json.dumps(with_vaults()))
    env = {**ENV, "PLANS_FILE": str(path), "ALERT_TOPIC_ARN": "arn:aws:sns:eu-central-1:210987654321:alerts"}
    with pytest.raises(PlanError, match="own account 210987654321 and region eu-central-1"):
        Settings.from_environ(env)
    settings = Settings.from_environ({**env, "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts"})
    assert settings.plans.plans[0].offsite is not None


def test_the_shipped_plans_file_has_no_vault() -> None:
    assert all(plan.offsite is None for plan in check_plans_file().plans)

"""The prices file: the shipped list prices, the PRICES_FILE override, and every mistake named by field."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import BackupError
from chalicelib.prices import DEFAULT_PRICES_FILE, PriceError, Retrieval, load_prices, parse_prices


def shipped_document() -> dict[str, Any]:
    return json.loads(DEFAULT_PRICES_FILE.read_text())


def test_the_shipped_file_holds_the_us_east_1_list_prices() -> None:
    prices = load_prices(environ={})
    assert (prices.region, prices.read_on, prices.currency) == ("us-east-1", date(2026, 11, 29), "USD")
    assert all(url.startswith("https://") for url in prices.source) and prices.source
    assert dict(prices.storage) == {
        "STANDARD": 0.023,
        "STANDARD_IA": 0.0125,
        "ONEZONE_IA": 0.01,
        "INTELLIGENT_TIERING": 0.023,
        "GLACIER_IR": 0.004,
        "GLACIER": 0.0036,
        "DEEP_ARCHIVE": 0.00099,
    }
    assert (prices.put_copy_post_list, prices.get) == (0.005, 0.0004)
    assert prices.transitions["GLACIER"] == 0.03 and prices.transitions["DEEP_ARCHIVE"] == 0.05
    assert prices.transitions["GLACIER_IR"] == 0.02 and prices.transitions["STANDARD_IA"] == 0.01
    # The retrieval prices and thaw times the restore estimate uses today.
    assert dict(prices.retrieval) == {
        ("GLACIER", "Expedited"): Retrieval(0.03, 10.0, 5 / 60),
        ("GLACIER", "Standard"): Retrieval(0.01, 0.05, 5.0),
        ("GLACIER", "Bulk"): Retrieval(0.0, 0.0, 12.0),
        ("DEEP_ARCHIVE", "Standard"): Retrieval(0.02, 0.10, 12.0),
        ("DEEP_ARCHIVE", "Bulk"): Retrieval(0.0025, 0.025, 48.0),
        # No thaw: a manifest in GLACIER_IR is read at once, per GB and at its own GET price.
        ("GLACIER_IR", "Instant"): Retrieval(0.03, 0.01, 0.0),
    }
    assert [prices.minimum_days(c) for c in ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")] == [
        0,
        30,
        30,
        90,
        90,
        180,
    ]
    assert prices.archive_classes == ("GLACIER", "DEEP_ARCHIVE")
    assert (prices.overhead_standard_bytes, prices.overhead_archive_bytes) == (8 * 1024, 32 * 1024)
    assert prices.aws_backup.warm_storage == 0.05
    assert prices.aws_backup.minimum_billable_bytes == 128 * 1024
    assert prices.aws_backup.cold_tier is False and "no cold" in prices.aws_backup.note
    # Per byte and per request, in the units the file states: 2^30-byte GB, 1,000 requests.
    assert prices.storage_per_byte_month("GLACIER") == 0.0036 / 1073741824
    assert prices.transition_per_request("DEEP_ARCHIVE") == 0.05 / 1000


def test_prices_file_chosen_by_the_stage_variable_or_a_path(tmp_path: Path) -> None:
    document = shipped_document()
    document["region"] = "eu-central-1"
    document["storage"]["STANDARD"] = 0.0245
    custom = tmp_path / "prices-eu.json"
    custom.write_text(json.dumps(document))
    from_env = load_prices(environ={"PRICES_FILE": str(custom)})
    assert from_env.region == "eu-central-1" and from_env.storage["STANDARD"] == 0.0245
    assert from_env.origin == "prices-eu.json"
    assert load_prices(custom, environ={}).region == "eu-central-1"
    # An explicit path wins over the variable.
    assert load_prices(DEFAULT_PRICES_FILE, environ={"PRICES_FILE": str(custom)}).region == "us-east-1"


def _set(path: str, value: Any) -> Any:
    """A mutation of the shipped document: set (value=... deletes) the field at a dotted path."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is ...:
            del target[int(last) if last.isdigit() else last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


BAD_FILES = {
    "price as text": (_set("storage.GLACIER", "0.0036"), ["field 'storage.GLACIER'", "non-negative number", "str"]),
    "negative price": (_set("storage.DEEP_ARCHIVE", -0.001), ["field 'storage.DEEP_ARCHIVE'", "non-negative", "-0.001"]),
    "price a boolean": (_set("requests.get", True), ["field 'requests.get'", "boolean"]),
    "price null": (_set("transitions.GLACIER", None), ["field 'transitions.GLACIER'", "NoneType"]),
    "missing class": (_set("storage.GLACIER_IR", ...), ["field 'storage.GLACIER_IR'", "required"]),
    "unknown class": (_set("storage.COLD", 0.001), ["field 'storage'", "'COLD'", "unknown"]),
    "missing transition price": (_set("transitions.DEEP_ARCHIVE", ...), ["field 'transitions.DEEP_ARCHIVE'", "required"]),
    "transition into standard": (_set("transitions.STANDARD", 0.0), ["field 'transitions'", "'STANDARD'", "unknown"]),
    "decimal gigabytes": (_set("units.gb_bytes", 1000000000), ["field 'units.gb_bytes'", "1073741824", "1000000000"]),
    "decimal kilobytes": (_set("units.kb_bytes", 1000), ["field 'units.kb_bytes'", "1024"]),
    "date not a date": (_set("read_on", "2026-02-30"), ["field 'read_on'", "not a date"]),
    "date in another format": (_set("read_on", "29/11/2026"), ["field 'read_on'", "YYYY-MM-DD"]),
    "region misspelt": (_set("region", "US East"), ["field 'region'", "region"]),
    "currency misspelt": (_set("currency", "dollars"), ["field 'currency'", "three-letter"]),
    "no source": (_set("source", []), ["field 'source'", "at least one"]),
    "source not https": (_set("source.0", "http://aws.amazon.com/s3/pricing/"), ["field 'source[0]'", "https://"]),
    "retrieval tier missing": (_set("retrieval.GLACIER.Bulk", ...), ["field 'retrieval.GLACIER.Bulk'", "required"]),
    "expedited deep archive": (
        _set("retrieval.DEEP_ARCHIVE.Expedited", {"per_gb": 0.1, "per_1000_requests": 1, "thaw_hours": 1}),
        ["field 'retrieval.DEEP_ARCHIVE'", "'Expedited'", "unknown"],
    ),
    "retrieval price as text": (
        _set("retrieval.DEEP_ARCHIVE.Bulk.per_gb", "free"),
        ["field 'retrieval.DEEP_ARCHIVE.Bulk.per_gb'", "non-negative number"],
    ),
    "thaw hours in minutes": (
        _set("retrieval.GLACIER.Bulk.thaw_hours", 720),
        ["field 'retrieval.GLACIER.Bulk.thaw_hours'", "at most 96"],
    ),
    "minimum days a float": (
        _set("minimum_storage_days.GLACIER", 90.5),
        ["field 'minimum_storage_days.GLACIER'", "integer", "90.5"],
    ),
    "minimum days missing": (_set("minimum_storage_days.DEEP_ARCHIVE", ...), ["field 'minimum_storage_days.DEEP_ARCHIVE'", "required"]),
    "overhead class unknown": (_set("archive_overhead.classes", ["GLACIER", "TAPE"]), ["field 'archive_overhead.classes'", "'TAPE'"]),
    "overhead classes not a list": (_set("archive_overhead.classes", "GLACIER"), ["field 'archive_overhead.classes'", "list"]),
    "overhead negative": (_set("archive_overhead.archive_kb", -32), ["field 'archive_overhead.archive_kb'", "non-negative integer"]),
    "cold tier as text": (_set("aws_backup_s3.cold_tier", "no"), ["field 'aws_backup_s3.cold_tier'", "true or false"]),
    "backup minimum missing": (
        _set("aws_backup_s3.minimum_billable_object_kb", ...),
        ["field 'aws_backup_s3.minimum_billable_object_kb'", "required"],
    ),
    "upkeep price as text": (_set("upkeep.lambda_gb_second", "cheap"), ["field 'upkeep.lambda_gb_second'", "non-negative number"]),
    "upkeep price missing": (_set("upkeep.inventory_per_million_objects", ...), ["field 'upkeep.inventory_per_million_objects'", "required"]),
    "unknown top-level field": (_set("discount", 0.1), ["'discount'", "unknown field"]),
    "missing section": (_set("requests", ...), ["field 'requests'", "required"]),
    "section not an object": (_set("storage", [0.023]), ["field 'storage'", "JSON object", "list"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_mistake_is_a_price_error_naming_file_and_field(case: str, tmp_path: Path) -> None:
    mutate, fragments = BAD_FILES[case]
    document = copy.deepcopy(shipped_document())
    mutate(document)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PriceError) as caught:
        load_prices(path, environ={})
    message = str(caught.value)
    assert isinstance(caught.value, BackupError)
    for fragment in ["prices file prices.json"] + fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_the_unmutated_document_parses() -> None:
    # The mutations above start from this document: if it failed, every case would prove nothing.
    assert parse_prices(shipped_document()).region == "us-east-1"


@pytest.mark.parametrize(
    "text, fragments",
    [("{", ["not valid JSON", "line 1"]), ("[]", ["JSON object", "list"]), ("", ["not valid JSON"])],
    ids=["truncated", "a list", "empty"],
)
def test_bad_json_or_a_missing_file(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "prices.json"
    path.write_text(text)
    with pytest.raises(PriceError) as caught:
        load_prices(path, environ={})
    for fragment in fragments + ["prices.json"]:
        assert fragment in str(caught.value)
    with pytest.raises(PriceError, match="cannot be read"):
        load_prices(environ={"PRICES_FILE": str(tmp_path / "missing.json")})

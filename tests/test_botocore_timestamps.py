"""The timestamp plugin (tests/botocore_timestamps.py) gives what botocore's own parser gives, value and time
zone, and is what the suite's clients use."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.utils import parse_timestamp as botocore_parse

from tests import botocore_timestamps


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-04T02:00:00.000Z", "2026-05-04T02:00:00.123Z", "2026-12-31T23:59:59.999999Z", "2026-05-04T02:00:00Z",
        "2024-02-29T00:00:00.500Z",
        # An HTTP date (Last-Modified): the standard library's parser.
        "Mon, 04 May 2026 02:00:00 GMT", "Thu, 31 Dec 2026 23:59:59 GMT",
        # Not a fast path's form: botocore's own parser answers.
        "2026-05-04T02:00:00+02:00", "2026-05-04T02:00:00.1234Z", "1778000000",
    ],
)
def test_the_same_datetime_and_time_zone_as_botocore(text: str) -> None:
    fast, own = botocore_timestamps.parse_timestamp(text), botocore_parse(text)
    assert (fast, fast.utcoffset(), type(fast.tzinfo)) == (own, own.utcoffset(), type(own.tzinfo))


@pytest.mark.parametrize(
    "text", ["2026-05-04T02:00:00.000Z", "2026-12-31T23:59:59.999999Z", "2026-05-04T02:00:00+02:00", "1778000000", "2026-05-04"]
)
def test_moto_s_answers_read_the_same_datetime_as_botocore_s_own_function(text: str) -> None:
    from botocore.utils import parse_to_aware_datetime as botocore_aware

    fast, own = botocore_timestamps.parse_to_aware_datetime(text), botocore_aware(text)
    assert (fast, fast.utcoffset()) == (own, own.utcoffset())


def test_a_listing_s_times_come_through_it(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    parse = botocore_timestamps.parse_timestamp
    monkeypatch.setattr(botocore_timestamps, "_botocore_parse", lambda value: seen.append(value) or botocore_parse(value))
    s3.create_bucket(Bucket="timestamps-test")
    s3.put_object(Bucket="timestamps-test", Key="k", Body=b"x")
    import boto3

    fresh = boto3.client("s3", region_name="us-east-1")
    modified = fresh.list_objects_v2(Bucket="timestamps-test")["Contents"][0]["LastModified"]
    assert modified.tzinfo is not None and modified.utcoffset().total_seconds() == 0
    assert seen == [], "an ISO 8601 UTC time should not need botocore's general parser"
    assert botocore_timestamps.parse_timestamp is parse

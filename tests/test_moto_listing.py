"""The listing plugin (tests/moto_listing.py): moto's ListObjectVersions on the narrowed view of a bucket
answers page for page exactly as moto's own, over prefixes, delimiters, page sizes and markers."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from tests import moto_listing

BUCKET = "listing-test"
NAMES = [f"{folder}/{index}" for folder in ("a", "ab", "b", "b/c", "data/x", "data/y") for index in range(6)] + ["", "é"]


def page(listing: Any, **query: Any) -> tuple[Any, ...]:
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    versions, prefixes, markers, next_key, next_version = listing(backend, BUCKET, **query)
    return (
        [(v.name, v.version_id, v.is_latest) for v in versions],
        prefixes,
        [(m.name, m.version_id, m.is_latest) for m in markers],
        next_key,
        next_version,
    )


@pytest.fixture
def history(s3: Any) -> None:
    """A hundred seeded writes and deletions (delete markers) across nested prefixes."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    draw = random.Random(20261207)
    for _ in range(100):
        name = draw.choice(NAMES[:-2]) + draw.choice(["", "/z"])
        if draw.random() < 0.2:
            s3.delete_object(Bucket=BUCKET, Key=name)
        else:
            s3.put_object(Bucket=BUCKET, Key=name, Body=b"x")


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_every_page_is_moto_s_own(history: None, delimiter: str | None) -> None:
    pages = 0
    for prefix, max_keys in itertools.product(["", "a", "ab/", "b", "b/", "data/", "zz"], [3, 7, 1000]):
        key_marker = version_marker = None
        while True:
            query = dict(delimiter=delimiter, key_marker=key_marker, max_keys=max_keys, prefix=prefix, version_id_marker=version_marker)
            expected = page(moto_listing._list_object_versions, **query)
            assert page(moto_listing._list_only_what_a_page_can_name, **query) == expected, query
            pages += 1
            if expected[3] is None:
                break
            key_marker, version_marker = expected[3], expected[4]
    assert pages > 21  # some walks took more than one page


@pytest.mark.parametrize(
    "key_marker, version_marker", [("b/", None), ("data/x/3", "no-such-version"), ("zzz", None), (None, "x"), ("a/1", "")]
)
def test_markers_that_name_nothing_give_moto_s_own_answer(history: None, key_marker: Any, version_marker: Any) -> None:
    for max_keys in (1, 2, 5):
        query = dict(key_marker=key_marker, version_id_marker=version_marker, max_keys=max_keys, prefix="")
        assert page(moto_listing._list_only_what_a_page_can_name, **query) == page(moto_listing._list_object_versions, **query)


def test_the_plugin_is_what_moto_runs(s3: Any) -> None:
    """Requests go through the narrowed listing (so the comparisons above are of what the suite uses)."""
    from moto.s3.models import S3Backend

    assert S3Backend.list_object_versions is moto_listing._list_only_what_a_page_can_name

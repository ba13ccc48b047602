"""moto's S3 buckets saved and put back whole: every version of every key, with its version id and write time.

For tests that build an expensive history once and give each test (or each crash point) that same history,
unchanged by what the tests before it did.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends


def in_process(s3: Any) -> bool:
    """Whether the client talks to the in-process mock (mock_aws), whose state is this module's to read and
    put back, and not to moto's server."""
    return str(urlsplit(s3.meta.endpoint_url).hostname).endswith("amazonaws.com")


def freeze(bucket: Any) -> bytes:
    """moto's bucket with every version of every key, as bytes that outlive the test's mock (moto closes the
    buffers of every key it made when a mock ends, copies included)."""
    store = bucket.keys
    histories = {name: dict.__getitem__(store, name) for name in dict.keys(store)}
    bucket.keys = type(store)()
    try:
        shell = pickle.dumps(bucket)
    finally:
        bucket.keys = store
    return pickle.dumps((shell, {name: pickle.dumps(versions) for name, versions in histories.items()}))


def thaw(frozen: bytes) -> Any:
    shell, histories = pickle.loads(frozen)
    bucket = pickle.loads(shell)
    for name, versions in histories.items():
        bucket.keys.setlist(name, pickle.loads(versions))
    return bucket


def clone(bucket: Any) -> Any:
    """A copy of moto's bucket with every version of every key (a plain deepcopy keeps only each key's
    latest: moto's key store is a dict whose items() yields the latest version)."""
    return thaw(freeze(bucket))


@contextmanager
def buckets_restored() -> Iterator[None]:
    """Every bucket of the in-process mock as it was on entry, on exit: what was written is gone, what was
    deleted is back, buckets made meanwhile are removed."""
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    saved = {name: freeze(bucket) for name, bucket in backend.buckets.items()}
    try:
        yield
    finally:
        for name in list(backend.buckets):
            if name not in saved:
                del backend.buckets[name]
        for name, frozen in saved.items():
            backend.buckets[name] = thaw(frozen)


def put_back(frozen: bytes) -> Any:
    """A frozen bucket made again in the mock, in its own account and partition, as if created there: later
    requests find it by name (moto's register of bucket names) and it replaces nothing (the name is free)."""
    bucket = thaw(frozen)
    backend = s3_backends[bucket.account_id][bucket.partition]
    assert bucket.name not in s3_backends.bucket_accounts, f"bucket {bucket.name} exists already"
    backend.buckets[bucket.name] = bucket
    s3_backends.bucket_accounts[bucket.name] = (bucket.partition, bucket.account_id)
    return bucket

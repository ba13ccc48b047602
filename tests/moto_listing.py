"""A pytest plugin: moto's ListObjectVersions copies only the versions a page can name.

moto answers every ListObjectVersions request by deep-copying every version of every key in the bucket
(each copy reads the version's bytes and writes them to a new temporary file), and only then skips what is
before the page's key marker or outside its prefix, and what comes after the page's last entry. A listing of
one prefix, and every page, so costs as much as copying the whole bucket: a fifth of the time of the prune's
sweeps. Here moto's own listing runs on a view of the bucket without the keys it would skip anyway (a name
outside the prefix, or before the key marker) and, without a delimiter, without the keys after the first
that lie beyond `max_keys` + 2 versions (in name order) past the marker's key: it answers exactly as before,
the same versions, markers, prefixes and page ends. (With a delimiter a page's entries are prefixes standing
for any number of versions, so every key after the marker stays in view.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from moto.s3.models import S3Backend

_list_object_versions = S3Backend.list_object_versions


class _Keys:
    """The part of moto's key store its listing reads: each key name with its versions, oldest first."""

    def __init__(self, keys: Any, prefix: str, key_marker: str | None, budget: int | None) -> None:
        self._keys, self._prefix, self._marker, self._budget = keys, prefix, key_marker or "", budget

    def iterlists(self) -> Iterator[tuple[str, list[Any]]]:
        named = [(name, versions) for name, versions in self._keys.iterlists() if name.startswith(self._prefix) and name >= self._marker]
        if self._budget is None:
            yield from named
            return
        # moto sorts the versions by name before it pages: the keys it can reach are the first ones by name.
        left = self._budget
        for name, versions in sorted(named, key=lambda item: item[0]):
            yield name, versions
            if name != self._marker:  # the marker's own versions may be skipped up to the version marker
                left -= len(versions)
                if left <= 0:
                    return


class _Bucket:
    def __init__(self, bucket: Any, prefix: str, key_marker: str | None, budget: int | None) -> None:
        self.keys = _Keys(bucket.keys, prefix, key_marker, budget)


class _Backend:
    """The backend as moto's listing uses it: only `get_bucket`."""

    def __init__(self, backend: S3Backend, prefix: str, key_marker: str | None, budget: int | None) -> None:
        self._backend, self._prefix, self._marker, self._budget = backend, prefix, key_marker, budget

    def get_bucket(self, bucket_name: str) -> _Bucket:
        return _Bucket(self._backend.get_bucket(bucket_name), self._prefix, self._marker, self._budget)


def _list_only_what_a_page_can_name(
    self: S3Backend,
    bucket_name: str,
    delimiter: str | None = None,
    key_marker: str | None = None,
    max_keys: int | None = 1000,
    prefix: str = "",
    version_id_marker: str | None = None,
) -> Any:
    # One version more than the page holds, for moto to see that the listing goes on, and one for the version
    # moto passes over after a key marker given without a version marker.
    budget = None if delimiter or max_keys is None else max_keys + 2
    view = _Backend(self, prefix or "", key_marker, budget)
    return _list_object_versions(view, bucket_name, delimiter, key_marker, max_keys, prefix, version_id_marker)  # type: ignore[arg-type]


S3Backend.list_object_versions = _list_only_what_a_page_can_name  # type: ignore[method-assign]

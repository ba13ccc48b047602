"""A pytest plugin: moto finds a request's handler from URL patterns built once per backend class.

For every request, moto's dispatcher (`moto/core/botocore_stubber.py`, whose own comment says "TODO: cache
this part") rebuilds the backend's table of URL patterns: it imports the service's `urls` module again and
formats every pattern for every URL base and DNS suffix. That is about a millisecond and a half of each of
the suite's tens of thousands of requests, a tenth of the time moto takes. The table depends only on the
backend's class (its `urls` module) and on whether ISO regions are enabled (an environment variable the
suite never changes), so it is built once per class and kept: every request is dispatched exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.base_backend import BaseBackend
from moto.settings import enable_iso_regions

_urls: Callable[[BaseBackend], dict[str, Any]] = BaseBackend.urls.fget  # type: ignore[attr-defined]
_built: dict[tuple[type, bool], dict[str, Any]] = {}


def _cached_urls(self: BaseBackend) -> dict[str, Any]:
    key = (type(self), enable_iso_regions())
    table = _built.get(key)
    if table is None:
        table = _built[key] = _urls(self)
    return table


BaseBackend.urls = property(_cached_urls)  # type: ignore[method-assign,assignment]

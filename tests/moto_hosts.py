"""A pytest plugin: moto's S3 decides once per host, not six times per request, whether a request names its
bucket in the host (virtual-hosted style) or in the path.

moto asks `S3Response.subdomain_based_buckets` about six times while it handles one request, and each time
reads the environment and tries up to five regular expressions on the host: about a twentieth of the CPU time
an S3 request takes in the suite. The answer depends only on the host and on two moto settings read from the
environment (`S3_IGNORE_SUBDOMAIN_BUCKETNAME` and `MOTO_S3_CUSTOM_ENDPOINTS`), so it is kept per host and
those settings: what moto answers is unchanged.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from moto import settings
from moto.s3.responses import S3Response

_decide = S3Response.subdomain_based_buckets
_ANSWERS: dict[tuple[str, str | None, Any], bool] = {}


def subdomain_based_buckets(request: Any) -> bool:
    host = request.headers.get("host", request.headers.get("Host")) or urlparse(request.url).netloc
    key = (host, os.environ.get("MOTO_S3_CUSTOM_ENDPOINTS"), settings.S3_IGNORE_SUBDOMAIN_BUCKETNAME)
    found = _ANSWERS.get(key)
    if found is None:
        found = _ANSWERS[key] = bool(_decide(request))
    return found


S3Response.subdomain_based_buckets = staticmethod(subdomain_based_buckets)  # type: ignore[method-assign]

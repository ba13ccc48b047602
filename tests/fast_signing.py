"""A pytest plugin: botocore's Signature Version 4 in the suite names the credentials but computes no
signature.

Neither moto in process nor moto's server checks a signature (no test turns on moto's IAM authentication),
yet botocore computes one for every request: the canonical request, the string to sign and four HMACs, about
a twentieth of the suite's CPU time. moto reads only the access key (the account a request is in) from the
`Authorization` header, and the date, token and payload headers. So the request keeps everything botocore
adds before signing (`_modify_request_before_signing`: `X-Amz-Date`, the session token, S3's
`X-Amz-Content-SHA256`) and an `Authorization` header of the same form, with its credential scope and a
placeholder signature. Presigned URLs (query-string signing) are signed as botocore signs them.
"""

from __future__ import annotations

from typing import Any

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth, SigV4QueryAuth
from botocore.compat import get_current_datetime
from botocore.exceptions import NoCredentialsError

_signed = SigV4Auth.add_auth
PLACEHOLDER = "0" * 64


def add_auth(self: SigV4Auth, request: Any) -> None:
    if isinstance(self, SigV4QueryAuth):
        _signed(self, request)
        return
    if self.credentials is None:
        raise NoCredentialsError()
    request.context["timestamp"] = get_current_datetime().strftime(SIGV4_TIMESTAMP)
    self._modify_request_before_signing(request)
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={self.scope(request)}, SignedHeaders=host, Signature={PLACEHOLDER}"
    )


SigV4Auth.add_auth = add_auth  # type: ignore[method-assign]

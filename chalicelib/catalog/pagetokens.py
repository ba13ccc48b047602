"""Opaque `next_token`s: where the next page starts, bound to the query that produced them.

A token is base64url(JSON) + "." + base64url(MAC). The MAC makes an edited, truncated or made-up token a
clear 400 instead of a silent first page or a 500. It is an integrity check, not an access control: every
caller IAM lets in may read every page anyway. The position inside is validated again by the caller (e.g.
that it is a record key), so even a token with a valid MAC can only name a place to start listing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from chalicelib.errors import BadRequest

_VERSION = 1
_MAC_KEY = b"org-backup/page-token/1"
_MAX_LENGTH = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: bytes) -> bytes:
    return hmac.new(_MAC_KEY, payload, hashlib.sha256).digest()[:16]


def _query_digest(query: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def encode(kind: str, position: Any, query: dict[str, Any]) -> str:
    payload = json.dumps(
        {"v": _VERSION, "k": kind, "p": position, "q": _query_digest(query)}, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(payload))}"


def decode(token: str, kind: str, query: dict[str, Any]) -> Any:
    """The position inside a token this API issued for the same kind of listing and the same query."""
    invalid = BadRequest(
        "next_token is not a token this API issued (it may have been cut or edited); pass next_token exactly as "
        "the previous page returned it, or leave it out to start from the first page"
    )
    if not token or len(token) > _MAX_LENGTH or token.count(".") != 1:
        raise invalid
    body, mac = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        raise invalid from None
    if not hmac.compare_digest(given, _mac(payload)):
        raise invalid
    try:
        data = json.loads(payload)
    except ValueError:
        raise invalid from None
    if not isinstance(data, dict) or data.get("v") != _VERSION or data.get("k") != kind or "p" not in data:
        raise invalid
    if data.get("q") != _query_digest(query):
        raise BadRequest(
            "next_token belongs to a different query: repeat the filters of the request that returned it "
            "(only limit may change between pages)"
        )
    return data["p"]

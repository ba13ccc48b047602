"""A pytest plugin: botocore reads the timestamps moto answers with (`2026-05-04T02:00:00.000Z`) without
dateutil's general parser.

botocore parses every timestamp of a response (each version's LastModified in a listing, a thousand a page)
with `dateutil.parser.parse`, about a seventh of the CPU time of the prune's sweeps. A timestamp in exactly
that ISO 8601 form, in UTC, is read here by `datetime.fromisoformat`, giving the same value with the time
zone object botocore's parser gives such a time (dateutil's `tzlocal()` where the machine's zone is UTC,
`tzutc()` elsewhere); an HTTP date in GMT (a `Last-Modified` header) is read by the standard library's RFC 5322 parser; anything
else (an offset, an epoch) goes to botocore's own parser.

moto, answering, turns each stored time back into text through botocore's `parse_to_aware_datetime`, which
also goes to dateutil for a string: its ISO 8601 times are read here by `datetime.fromisoformat` too.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import Any

import botocore.parsers
import botocore.utils
import moto.core.serialize

_botocore_parse = botocore.parsers.DEFAULT_TIMESTAMP_PARSER
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z")
_HTTP_GMT = re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT")
# What botocore's parser makes of a UTC time on this machine (dateutil decides from the process's time zone).
_UTC = _botocore_parse("2026-01-01T00:00:00Z").tzinfo
_GMT = _botocore_parse("Thu, 01 Jan 2026 00:00:00 GMT").tzinfo


def parse_timestamp(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        if _ISO_UTC.fullmatch(value):
            return datetime.datetime.fromisoformat(value[:-1]).replace(tzinfo=_UTC)
        if _HTTP_GMT.fullmatch(value):
            return email.utils.parsedate_to_datetime(value).replace(tzinfo=_GMT)
    return _botocore_parse(value)


_botocore_aware = botocore.utils.parse_to_aware_datetime


def parse_to_aware_datetime(value: Any) -> datetime.datetime:
    if isinstance(value, str) and _ISO_UTC.fullmatch(value):
        return datetime.datetime.fromisoformat(value[:-1]).replace(tzinfo=_UTC)
    return _botocore_aware(value)


# Read by each response parser when it is made (botocore.parsers.ResponseParser.__init__).
botocore.parsers.DEFAULT_TIMESTAMP_PARSER = parse_timestamp
# Looked up in moto's serializer module each time it answers.
moto.core.serialize.parse_to_aware_datetime = parse_to_aware_datetime

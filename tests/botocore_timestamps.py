"""A pytest plugin: botocore reads the timestamps moto answers with (`2026-05-04T02:00:00.000Z`) without
dateutil's general parser.

botocore parses every timestamp of a response (each version's LastModified in a listing, a thousand a page)
with `dateutil.parser.parse`, about a seventh of the CPU time of the prune's sweeps. A timestamp in exactly
that ISO 8601 form, in UTC, is read here by `datetime.fromisoformat`, giving the same value with the time
zone object botocore's parser gives such a time (dateutil's `tzlocal()` where the machine's zone is UTC,
`tzutc()` elsewhere); anything else (an HTTP date in a header, an epoch) goes to botocore's own parser.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import botocore.parsers

_botocore_parse = botocore.parsers.DEFAULT_TIMESTAMP_PARSER
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z")
# What botocore's parser makes of a UTC time on this machine (dateutil decides from the process's time zone).
_UTC = _botocore_parse("2026-01-01T00:00:00Z").tzinfo


def parse_timestamp(value: Any) -> datetime.datetime:
    if isinstance(value, str) and _ISO_UTC.fullmatch(value):
        return datetime.datetime.fromisoformat(value[:-1]).replace(tzinfo=_UTC)
    return _botocore_parse(value)


# Read by each response parser when it is made (botocore.parsers.ResponseParser.__init__).
botocore.parsers.DEFAULT_TIMESTAMP_PARSER = parse_timestamp

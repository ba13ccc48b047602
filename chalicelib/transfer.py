"""S3's limits on moving one object, and how boto3's managed transfers are sized to respect them."""

from __future__ import annotations

import hashlib
from pathlib import Path

# CopyObject handles up to 5 GiB in one request; above that boto3's managed copy does a multipart copy.
COPY_OBJECT_LIMIT = 5 * 1024**3
# Files above this are uploaded in parts by boto3's managed transfer.
UPLOAD_MULTIPART_THRESHOLD = 64 * 1024**2
MULTIPART_CHUNKSIZE = 64 * 1024**2
# S3 accepts at most 10,000 parts; staying well under leaves room for rounding.
MAX_PARTS = 9_000


def copy_part_size(size: int) -> int:
    """Parts of at least MULTIPART_CHUNKSIZE, and few enough to stay under S3's 10,000-part limit."""
    part = MULTIPART_CHUNKSIZE
    while size / part > MAX_PARTS:
        part *= 2
    return part


def file_sha256(path: Path) -> bytes:
    """The SHA-256 of a local file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.digest()

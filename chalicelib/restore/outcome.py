"""What one pass of a restore did to one entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.catalog.manifests import Entry

ProgressCallback = Callable[[int], None]


@dataclass
class Outcome:
    """What one pass did to one entry."""

    state: str  # "restored", "pending" or "failed"
    entry: Entry
    bytes: int = 0
    reason: str = ""
    pending: dict[str, Any] | None = None

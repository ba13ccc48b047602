"""Seams for what other parts of the system will provide: the cost report and the prunes held back.

Each is a function of the settings and the clients, so that wiring the real thing is one line here and the
pages do not change. Until then they answer "nothing" and the pages say what they show instead.
"""

from __future__ import annotations

from typing import Any


def cost_report(settings: Any, clients: Any) -> dict[str, Any] | None:
    """What `GET /costs` answers, or None while it does not exist. The shape the pages expect:

        {"prices": {"region", "read_on", "currency"},
         "total": {"monthly_usd": float, "storage": {<class>: {"versions": int, "bytes": int, "monthly_usd": float}}},
         "plans": {<plan>: {"monthly_usd": float, "storage": {<class>: {...}},
                            "projection": [{"month": "2026-12", "monthly_usd": float,
                                            "by_class": {<class>: {"bytes": int, "monthly_usd": float}}},
                                           ... 12 entries]}}}
    """
    return None


def held_prunes(settings: Any, clients: Any) -> list[dict[str, Any]]:
    """Prunes the retention job held back (nothing prunes yet): one dict per finding, with `plan` and
    `message`, and optionally `backup_id` (the snapshot concerned)."""
    return []

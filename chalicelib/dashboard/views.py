"""Rendering: Jinja2 templates with autoescaping on, and the filters that show recorded values to people.

Everything that comes from data (keys, plan names, error messages, ids) reaches the page through these
templates, which escape it; nothing builds HTML by string concatenation. Times are recorded in UTC and shown
in the organisation's time zone, each inside `<time datetime="...Z">` so the exact instant stays readable
(and testable) beside the local wall-clock time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from chalicelib.localtime import format_age, format_instant, zone_caption
from chalicelib.notify.alerts import human_bytes
from chalicelib.times import isoformat, parse_iso

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return parse_iso(value)
        except ValueError:
            return None
    return None


def _usd(amount: Any) -> str:
    """Dollars and cents; a small bucket's few cents a year still shows as something, not as $0.00."""
    if amount is None:
        return "-"
    value = float(amount)
    return "under $0.01" if 0 < value < 0.005 else f"${value:,.2f}"


class Views:
    """The templates of one dashboard, showing times in `zone`."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=self.when,
            iso=self.iso,
            age=lambda delta: format_age(delta) if isinstance(delta, timedelta) else "-",
            bytes=lambda count: human_bytes(int(count)) if count is not None else "-",
            number=lambda count: f"{int(count):,}" if count is not None else "-",
            usd=_usd,
            objects=lambda count: "-" if count is None else f"{int(count):,} object{'' if count == 1 else 's'}",
        )
        self.env.globals.update(zone_name=str(zone.key))

    def when(self, value: Any, seconds: bool = False) -> str:
        moment = _instant(value)
        return format_instant(moment, self.zone, seconds=seconds) if moment else "-"

    def iso(self, value: Any) -> str:
        moment = _instant(value)
        return isoformat(moment) if moment else ""

    def caption(self, at: datetime) -> str:
        return zone_caption(self.zone, at)

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)


def stylesheet() -> bytes:
    return (STATIC / "dashboard.css").read_bytes()

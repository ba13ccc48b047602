"""The page's charts as inline SVG, computed here and drawn by one template macro.

Inline SVG made on the server costs nothing to ship (no script, no chart library, nothing fetched), is drawn
before any script could run, and scales with the page. Each function returns a `Chart`: a list of plain SVG
elements with their attributes; values from data (keys, plan names, messages) only ever go into attribute
values and `<title>` text, which the template escapes. Status is shown by shape as well as colour (circle,
diamond, cross, ring), so the chart reads without colour too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.localtime import format_instant, in_zone
from chalicelib.notify.alerts import human_bytes
from chalicelib.times import parse_iso
from chalicelib.catalog.records import BackupStatus

WIDTH = 960
LEFT = 128  # room for the lane labels
RIGHT = 16
# The 30-day charts keep a gutter on the right too, with the lanes' names or latest values again: on a
# phone they open scrolled to their right end (today), where the left labels are out of sight.
PLOT_RIGHT = WIDTH - 124
LANE = 30
AXIS = 22
MARK = 5.5
STATUSES = (BackupStatus.SUCCEEDED, BackupStatus.PARTIAL, BackupStatus.FAILED, BackupStatus.RUNNING)


@dataclass
class Element:
    tag: str
    attrs: dict[str, Any]
    text: str | None = None
    title: str | None = None


@dataclass
class Chart:
    name: str
    width: int
    height: int
    title: str
    description: str
    elements: list[Element] = field(default_factory=list)

    def add(self, tag: str, title: str | None = None, text: str | None = None, **attrs: Any) -> None:
        # `class_` and `text_anchor`-style names become `class` and `text-anchor`.
        clean = {k.rstrip("_").replace("_", "-"): (round(v, 1) if isinstance(v, float) else v) for k, v in attrs.items()}
        self.elements.append(Element(tag, clean, text, title))

    def of(self, tag: str, cls: str | None = None) -> list[Element]:
        """The elements of one kind (tests look at what was drawn)."""
        return [e for e in self.elements if e.tag == tag and (cls is None or cls in str(e.attrs.get("class", "")).split())]


class TimeScale:
    """Instants between `start` and `end` onto the plot's width."""

    def __init__(self, start: datetime, end: datetime, left: float = LEFT, right: float = PLOT_RIGHT) -> None:
        self.start, self.end, self.left, self.right = start, end, left, right

    def x(self, moment: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        share = (moment - self.start).total_seconds() / span
        return self.left + min(1.0, max(0.0, share)) * (self.right - self.left)


def local_days(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """The calendar days of `zone` between two instants: (day, its first instant, the next day's), clipped,
    in UTC. A day with a change of offset is 23 or 25 hours long, as the zone's clocks say. (In UTC because
    Python subtracts two times of the same zone by their wall clocks, which would make every day 24 hours.)"""
    days = []
    day = in_zone(start, zone).date()
    last = in_zone(end, zone).date()
    while day <= last:
        begin = datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)
        finish = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(timezone.utc)
        days.append((day, max(begin, start), min(finish, end)))
        day += timedelta(days=1)
    return days


def _started(backup: dict[str, Any]) -> datetime | None:
    try:
        return parse_iso(backup["started_at"]) if backup.get("started_at") else None
    except ValueError:
        return None


def _mark(chart: Chart, status: str, x: float, y: float, title: str) -> None:
    cls = f"mark mark-{status.lower()}" if status in STATUSES else "mark mark-running"
    if status == BackupStatus.SUCCEEDED:
        chart.add("circle", title, cx=x, cy=y, r=MARK, class_=cls)
    elif status == BackupStatus.PARTIAL:
        d = MARK * 1.3
        chart.add("polygon", title, points=f"{x:.1f},{y - d:.1f} {x + d:.1f},{y:.1f} {x:.1f},{y + d:.1f} {x - d:.1f},{y:.1f}", class_=cls)
    elif status == BackupStatus.FAILED:
        d = MARK
        chart.add("path", title, d=f"M{x - d:.1f} {y - d:.1f}L{x + d:.1f} {y + d:.1f}M{x + d:.1f} {y - d:.1f}L{x - d:.1f} {y + d:.1f}", class_=cls)
    else:
        chart.add("circle", title, cx=x, cy=y, r=MARK - 1, class_=cls)


def _day_axis(chart: Chart, scale: TimeScale, days: list[tuple[date, datetime, datetime]], top: float, bottom: float) -> None:
    """A faint line at each local midnight, and a date under every few days (at least 70 px apart)."""
    every = max(1, -(-70 * len(days) // int(scale.right - scale.left)))
    for index, (day, begin, _) in enumerate(days):
        x = scale.x(begin)
        chart.add("line", x1=x, x2=x, y1=top, y2=bottom, class_="grid")
        # (no label so close to the right edge that it would be cut off)
        if index % every == 0 and x < scale.right - 40:
            chart.add("text", text=day.strftime("%b %d"), x=x + 3, y=bottom + 15, class_="axis")


def timeline(backups: list[dict[str, Any]], plans: list[str], start: datetime, end: datetime, zone: ZoneInfo) -> Chart:
    """One lane for the system and one per plan; one mark per backup at its start, shaped by its status."""
    lanes = ["All plans", *plans]
    height = LANE * len(lanes) + AXIS
    real = [b for b in backups if not b.get("dry_run") and _started(b) is not None]
    chart = Chart(
        "timeline", WIDTH, height, "Backups of the last 30 days",
        f"{len(real)} backups from {format_instant(start, zone)} to {format_instant(end, zone)}: one mark per "
        "backup and plan; circle succeeded, diamond partial, cross failed, ring running.",
    )
    scale = TimeScale(start, end)
    days = local_days(start, end, zone)
    _day_axis(chart, scale, days, 0, LANE * len(lanes))
    for index, lane in enumerate(lanes):
        y = LANE * index + LANE / 2
        chart.add("line", x1=LEFT, x2=scale.right, y1=y, y2=y, class_="lane")
        chart.add("text", text=lane, x=LEFT - 8, y=y + 4, text_anchor="end", class_="label")
        chart.add("text", text=lane, x=scale.right + 10, y=y + 4, class_="axis")
    for backup in real:
        moment = _started(backup)
        assert moment is not None
        x = scale.x(moment)
        when = format_instant(moment, zone)
        _mark(chart, backup["status"], x, LANE / 2, f"{when}: backup {backup['backup_id']} {backup['status']}")
        for index, plan in enumerate(plans, start=1):
            result = backup["plans"].get(plan)
            if result is not None:
                title = f"{when}: {plan} {result['status']} (backup {backup['backup_id']})"
                _mark(chart, result["status"], x, LANE * index + LANE / 2, title)
    return chart


def bytes_copied(backups: list[dict[str, Any]], start: datetime, end: datetime, zone: ZoneInfo) -> Chart:
    """Bytes copied per day of the zone's calendar, as bars under the timeline (same scale)."""
    plot = 90
    days = local_days(start, end, zone)
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for backup in backups:
        moment = _started(backup)
        if moment is None or backup.get("dry_run"):
            continue
        tally = per_day[in_zone(moment, zone).date()]
        tally[0] += int(backup["totals"].get("bytes_copied", 0))
        tally[1] += 1
    largest = max((v[0] for v in per_day.values()), default=0)
    total = sum(v[0] for v in per_day.values())
    chart = Chart(
        "bytes-copied", WIDTH, plot + AXIS + 8, "Bytes copied per day",
        f"{human_bytes(total)} copied in the last 30 days; the busiest day copied {human_bytes(largest)}.",
    )
    scale = TimeScale(start, end)
    top = 8
    _day_axis(chart, scale, days, top, top + plot)
    chart.add("line", x1=LEFT, x2=scale.right, y1=top + plot, y2=top + plot, class_="baseline")
    for x, anchor in ((LEFT - 8, "end"), (scale.right + 10, "start")):
        chart.add("text", text=f"{human_bytes(largest)}/day", x=x, y=top + 10, text_anchor=anchor, class_="axis")
        chart.add("text", text="0", x=x, y=top + plot, text_anchor=anchor, class_="axis")
    for day, begin, finish in days:
        copied, count = per_day.get(day, (0, 0))
        if not count:
            continue
        height = plot * copied / largest if largest else 0.0
        x0, x1 = scale.x(begin), scale.x(finish)
        title = f"{day.isoformat()}: {human_bytes(copied)} copied by {count} backup{'s' if count != 1 else ''}"
        # A day with backups that copied nothing still gets a sliver, so that it can be seen and pointed at.
        chart.add("rect", title, x=x0 + 1, y=top + plot - max(height, 1.5), width=max(1.0, x1 - x0 - 2),
                  height=max(height, 1.5), class_="bar")
    return chart


def stored(backups: list[dict[str, Any]], plans: list[str], start: datetime, end: datetime, zone: ZoneInfo) -> Chart:
    """How each plan's snapshot grows: a line per plan of the bytes its snapshots held, each on its own
    scale (plans differ by orders of magnitude), with the latest size at the end."""
    lane = 40
    chart = Chart(
        "stored", WIDTH, lane * max(1, len(plans)) + AXIS, "Bytes held by each plan's snapshots",
        "One line per plan: the size of each snapshot taken in the last 30 days, each plan on its own scale.",
    )
    scale = TimeScale(start, end)
    _day_axis(chart, scale, local_days(start, end, zone), 0, lane * len(plans))
    for index, plan in enumerate(plans):
        points = []
        for backup in reversed(backups):
            result = backup["plans"].get(plan)
            moment = _started(backup)
            if result is None or moment is None or backup.get("dry_run") or not result.get("snapshot"):
                continue
            if result["status"] == BackupStatus.RUNNING:
                continue
            points.append((scale.x(moment), int(result.get("bytes", 0)), moment))
        top = lane * index
        chart.add("text", text=plan, x=LEFT - 8, y=top + lane / 2 + 4, text_anchor="end", class_="label")
        if not points:
            chart.add("text", text="no snapshot in the window", x=LEFT + 4, y=top + lane / 2 + 4, class_="axis")
            continue
        low, high = min(p[1] for p in points), max(p[1] for p in points)
        span = (high - low) or 1

        def y(value: int, top: float = top) -> float:
            return top + lane - 6 - (lane - 12) * ((value - low) / span if high != low else 0.5)

        chart.add("polyline", points=" ".join(f"{x:.1f},{y(v):.1f}" for x, v, _ in points), class_=f"line line-{index % 4}")
        for x, value, moment in points:
            chart.add("circle", f"{plan}: {human_bytes(value)} at {format_instant(moment, zone)}", cx=x, cy=y(value), r=2.5,
                      class_=f"dot line-{index % 4}")
        chart.add("text", text=f"{plan} {human_bytes(points[-1][1])}", x=scale.right + 10, y=top + lane / 2 + 4, class_="axis")
    return chart


def _month_label(month: str) -> str:
    try:
        year, number = (int(part) for part in month.split("-"))
        return date(year, number, 1).strftime("%b %Y" if number == 1 else "%b")
    except ValueError:
        return month


def projection(report: dict[str, Any]) -> Chart:
    """The next 12 months' monthly cost of every plan together, stacked by storage class."""
    months: dict[str, dict[str, float]] = {}
    for plan in (report.get("plans") or {}).values():
        for entry in plan.get("projection") or []:
            by_class = months.setdefault(str(entry["month"]), defaultdict(float))
            for storage_class, figures in (entry.get("by_class") or {}).items():
                by_class[storage_class] += float(figures.get("monthly_usd", 0.0))
    ordered = sorted(months)[:12]
    classes = sorted({c for m in ordered for c in months[m]}, key=_class_order)
    largest = max((sum(months[m].values()) for m in ordered), default=0.0)
    plot, top = 160, 10
    chart = Chart(
        "projection", WIDTH, plot + top + AXIS, "Projected monthly cost, next 12 months",
        f"Monthly cost of all plans by storage class for {len(ordered)} months; the highest month is "
        f"${largest:,.2f}.",
    )
    chart.add("line", x1=LEFT, x2=WIDTH - RIGHT, y1=top + plot, y2=top + plot, class_="baseline")
    for fraction in (0.5, 1.0):
        y = top + plot - plot * fraction
        chart.add("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, class_="grid")
        chart.add("text", text=f"${largest * fraction:,.2f}", x=LEFT - 8, y=y + 4, text_anchor="end", class_="axis")
    chart.add("text", text="$0", x=LEFT - 8, y=top + plot + 4, text_anchor="end", class_="axis")
    slot = (WIDTH - RIGHT - LEFT) / max(1, len(ordered))
    for index, month in enumerate(ordered):
        x = LEFT + slot * index + slot * 0.15
        base: float = top + plot
        for storage_class in classes:
            cost = months[month].get(storage_class, 0.0)
            height = plot * cost / largest if largest else 0.0
            if height <= 0:
                continue
            base -= height
            chart.add("rect", f"{month}: {storage_class} ${cost:,.2f}", x=x, y=base, width=slot * 0.7, height=height,
                      class_=f"bar {class_css(storage_class)}")
        total = sum(months[month].values())
        chart.add("text", title=f"{month}: ${total:,.2f} in all", text=_month_label(month), x=x + slot * 0.35,
                  y=top + plot + 16, text_anchor="middle", class_="axis")
    return chart


_CLASS_ORDER = ("STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")


def _class_order(storage_class: str) -> tuple[int, str]:
    return (_CLASS_ORDER.index(storage_class) if storage_class in _CLASS_ORDER else len(_CLASS_ORDER), storage_class)


def class_css(storage_class: str) -> str:
    """The CSS class of a storage class's colour: warm for hot storage, cold blues for the archives."""
    known = {"STANDARD": "sc-standard", "GLACIER": "sc-glacier", "DEEP_ARCHIVE": "sc-deep"}
    return known.get(storage_class, "sc-other")

"""Which snapshots of a plan to keep: restic's and borg's `keep` rules, as pure logic.

A plan's `retention` block names how many snapshots each rule keeps:

- `keep_last N`: the N newest snapshots;
- `keep_daily`, `keep_weekly`, `keep_monthly`, `keep_yearly N`: the newest snapshot of each of the last N
  days / ISO weeks / months / years *that have a snapshot* (a period without one is skipped, not counted);
- `keep_within_days D`: every snapshot taken at most D days (D x 24 hours) before the newest one.

0 turns a rule off. The newest snapshot is always kept, whatever the rules say, so a plan can never prune
itself down to nothing. Periods are calendar periods in a time zone (UTC unless the caller names another):
a backup at 23:30 UTC belongs to the next day in Berlin, and an administrator thinks in local days.

Nothing here touches AWS: `decide` only answers which snapshots stay and why, so the answer can be shown
(a dry run, the API) before anything is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.errors import PlanError

logger = logging.getLogger(__name__)

RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within_days")
# Far beyond any sensible policy (10,000 days is 27 years), yet small enough that a typo such as 3650000
# is caught rather than silently keeping everything forever.
MAX_KEEP = 10000
# The longest span, in days, of one period of each rule: what one more period can add to a snapshot's age.
_PERIOD_DAYS = {"keep_last": 1, "keep_daily": 1, "keep_weekly": 7, "keep_monthly": 31, "keep_yearly": 366, "keep_within_days": 1}
# Missed backups push the kept periods further back (only periods with a snapshot count): the horizon
# tolerates this many days without a backup. A plan that misses two weeks has alerted every day by then.
HORIZON_SLACK_DAYS = 14
# A backup still running this many days after it started is abandoned: it writes no snapshot (its plans
# fail, and the next backup copies what it had copied). The prune relies on it: it protects what running
# backups wrote and the snapshots they compare with, and looks back this far (plus a day) for them.
MAX_BACKUP_DAYS = 6


class UnknownTimeZone(ValueError):
    """The time zone given to `decide` is not an IANA name this system knows.

    A ValueError rather than a PlanError: `decide` is pure logic and does not know where the name came
    from. A caller that read it from the plans file reports it as a PlanError naming the plan and field;
    one that read it from a request answers 400.
    """


@dataclass(frozen=True)
class RetentionPolicy:
    """How many snapshots each rule keeps (0: the rule is off). Build one with `parse_retention`."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within_days: int = 0

    def __post_init__(self) -> None:
        # Code that builds a policy directly gets the same guard as the plans file, as a plain ValueError.
        for name in RULES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_KEEP:
                raise ValueError(f"{name} must be an integer from 0 to {MAX_KEEP}, got {value!r}")

    def horizon_days(self) -> int:
        """The oldest a kept snapshot can be, in days before now, when the plan backs up every day.

        Each rule alone: with at least one snapshot a day, the N-th newest snapshot, the oldest of the last
        N days, or the one kept for the N-th week / month / year back is younger than N periods of the
        longest length that period can have (a week is 7 days, a month at most 31, a year at most 366), and
        `keep_within_days D` keeps nothing older than D days. The largest of these bounds, plus
        HORIZON_SLACK_DAYS for missed backups, bounds every kept snapshot. A version named by a kept snapshot
        was current when that snapshot was taken, so it has been noncurrent for at most this long: a
        `noncurrent_expiration_days` longer than the horizon can never delete it.

        Examples: keep_daily 35, keep_weekly 12, keep_monthly 24, keep_yearly 7 gives 7 x 366 + 14 = 2576
        days; keep_daily 35, keep_weekly 12, keep_monthly 12 gives 12 x 31 + 14 = 386 days.
        """
        longest = max(getattr(self, name) * _PERIOD_DAYS[name] for name in RULES)
        return longest + HORIZON_SLACK_DAYS

    def describe(self) -> str:
        """The rules that are on, as an administrator writes them: `daily 35, weekly 12`."""
        parts = [f"{name.removeprefix('keep_')} {getattr(self, name)}" for name in RULES[:-1] if getattr(self, name)]
        if self.keep_within_days:
            parts.append(f"within {self.keep_within_days} days")
        return ", ".join(parts) or "newest only"


def described(text: str) -> RetentionPolicy | None:
    """The policy `RetentionPolicy.describe` wrote as `text` (None: not such a text), for records written
    before they kept the rules themselves."""
    rules: dict[str, int] = {}
    if text != "newest only":
        for part in text.split(", "):
            words = part.split(" ")
            if len(words) == 3 and words[0] == "within" and words[2] == "days" and words[1].isdigit():
                rules["keep_within_days"] = int(words[1])
            elif len(words) == 2 and f"keep_{words[0]}" in RULES[:-1] and words[1].isdigit():
                rules[f"keep_{words[0]}"] = int(words[1])
            else:
                return None
    try:
        return RetentionPolicy(**rules)
    except ValueError:
        return None


def parse_retention(data: Any, where: str) -> RetentionPolicy:
    """Validate a plan's `retention` block.

    `where` names the block in messages, e.g. "plan 'documents', field 'retention'", giving errors such as
    `plan 'documents', field 'retention', 'keep_daily': must be an integer, got str`.
    """
    if not isinstance(data, dict):
        raise PlanError(f"{where}: must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(RULES))
    if unknown:
        raise PlanError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(RULES)}"
        )
    values: dict[str, int] = {}
    for name in RULES:
        if name not in data:
            continue
        value = data[name]
        # JSON true is an int in Python; `"keep_daily": true` is a mistake, not 1.
        if isinstance(value, bool):
            raise PlanError(f"{where}, '{name}': must be an integer, got a boolean")
        if not isinstance(value, int):
            raise PlanError(f"{where}, '{name}': must be an integer, got {type(value).__name__}")
        if value < 0:
            raise PlanError(f"{where}, '{name}': must be at least 0, got {value}")
        if value > MAX_KEEP:
            raise PlanError(f"{where}, '{name}': must be at most {MAX_KEEP}, got {value}")
        values[name] = value
    if not any(values.values()):
        # Only the newest snapshot would survive: almost certainly not what was meant.
        raise PlanError(f"{where}: must turn on at least one rule (one of {', '.join(RULES)} above 0)")
    return RetentionPolicy(**values)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a plan: the backup that took it and when (time-zone aware)."""

    backup_id: str
    taken_at: datetime

    def __post_init__(self) -> None:
        if self.taken_at.tzinfo is None or self.taken_at.utcoffset() is None:
            raise ValueError(f"snapshot {self.backup_id}: taken_at {self.taken_at.isoformat()} has no time zone")


@dataclass(frozen=True)
class Verdict:
    """What happens to one snapshot, and every rule that keeps it (empty when it is dropped)."""

    snapshot: Snapshot
    kept: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetentionDecision:
    """Every snapshot, newest first, with its verdict."""

    verdicts: list[Verdict]

    @property
    def kept(self) -> list[Snapshot]:
        return [v.snapshot for v in self.verdicts if v.kept]

    @property
    def dropped(self) -> list[Snapshot]:
        return [v.snapshot for v in self.verdicts if not v.kept]

    def reasons(self, backup_id: str) -> list[str]:
        for verdict in self.verdicts:
            if verdict.snapshot.backup_id == backup_id:
                return verdict.reasons
        raise KeyError(backup_id)


def resolve_time_zone(tz: str | tzinfo) -> tzinfo:
    """An IANA time zone by name (a tzinfo is taken as is). Raises UnknownTimeZone for anything else."""
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise UnknownTimeZone(f"time zone must be an IANA name such as 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        # ValueError: names ZoneInfo refuses outright, such as absolute paths or '..'.
        raise UnknownTimeZone(f"unknown time zone {tz!r}: expected an IANA name such as 'Europe/Berlin' or 'UTC'") from exc


# A rule's period of a local time, as shown in reasons: 2026-11-28, 2026-W48, 2026-11, 2026.
def _day(t: datetime) -> str:
    return t.date().isoformat()


def _iso_week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _month(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _year(t: datetime) -> str:
    return f"{t.year:04d}"


PERIOD_RULES: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("keep_daily", "daily", _day),
    ("keep_weekly", "weekly", _iso_week),
    ("keep_monthly", "monthly", _month),
    ("keep_yearly", "yearly", _year),
)


def newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    """Newest first; snapshots taken at the same instant are ordered by backup_id, the greater counting as newer,
    so the answer never depends on the order the snapshots were listed in."""
    return sorted(snapshots, key=lambda s: (s.taken_at, s.backup_id), reverse=True)


def decide(snapshots: Iterable[Snapshot], policy: RetentionPolicy, tz: str | tzinfo = "UTC") -> RetentionDecision:
    """Which snapshots the policy keeps, newest first, each with every rule that keeps it.

    Reasons read `newest`, `last 2 of 3`, `daily 2026-11-28`, `weekly 2026-W48`, `monthly 2026-11`,
    `yearly 2026` and `within 10 days`. Raises UnknownTimeZone for a bad `tz` and ValueError when two
    snapshots share a backup_id (the same snapshot listed twice is a bug upstream, not a tie).
    """
    zone = resolve_time_zone(tz)
    ordered = newest_first(snapshots)
    seen: set[str] = set()
    for snapshot in ordered:
        if snapshot.backup_id in seen:
            raise ValueError(f"snapshot {snapshot.backup_id} is listed twice")
        seen.add(snapshot.backup_id)
    reasons: dict[str, list[str]] = {s.backup_id: [] for s in ordered}
    if not ordered:
        return RetentionDecision(verdicts=[])
    newest = ordered[0]
    reasons[newest.backup_id].append("newest")
    for index, snapshot in enumerate(ordered[: policy.keep_last]):
        reasons[snapshot.backup_id].append(f"last {index + 1} of {policy.keep_last}")
    local = {s.backup_id: s.taken_at.astimezone(zone) for s in ordered}
    for name, label, period_of in PERIOD_RULES:
        wanted = getattr(policy, name)
        periods: set[str] = set()
        for snapshot in ordered:
            if len(periods) == wanted:
                break
            period = period_of(local[snapshot.backup_id])
            # Walking newest first, the first snapshot met in a period is that period's newest.
            if period not in periods:
                periods.add(period)
                reasons[snapshot.backup_id].append(f"{label} {period}")
    if policy.keep_within_days:
        cutoff = newest.taken_at - timedelta(days=policy.keep_within_days)
        for snapshot in ordered:
            if snapshot.taken_at < cutoff:
                break
            reasons[snapshot.backup_id].append(f"within {policy.keep_within_days} days")
    verdicts = [Verdict(snapshot=s, kept=bool(reasons[s.backup_id]), reasons=reasons[s.backup_id]) for s in ordered]
    logger.debug("retention %s keeps %d of %d snapshots", policy.describe(), sum(v.kept for v in verdicts), len(verdicts))
    return RetentionDecision(verdicts=verdicts)

"""One plan's stored versions counted for the cost report: where the lifecycle model places each one now,
what S3 says, and everything the report prices from them.

For each version (`inventory.Version`, from S3's listing or an inventory report) the model (`model.timeline`) gives its storage class now from its
size, when it was written and when it stopped being current, and the plan's lifecycle. A timeline depends
only on the dates (S3 rounds every lifecycle date up to midnight UTC) and on whether the version is under
128 KB, so it is computed once per (size group, day written, day replaced) and shared: the model costs no
more for ten million versions than for the few thousand distinct pairs of days.

Counted per version: bytes and versions per class, current and noncurrent apart; the versions no kept
snapshot names; the small versions kept in STANDARD by the 128 KB rule (a version of 128 KB or more of the
same age would be colder); what S3 reports and where it disagrees with the model; the transitions of the
last 30 days; the storage under each `small_objects` choice; and the cohorts a projection starts from.

S3 carries lifecycle transitions out asynchronously, sometimes days after the date (billing follows the
rule's date, not the move). A version S3 still reports in the class it held before a transition that fell
due in the last `PENDING_DAYS` days is "pending", not a disagreement.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.cost.bucket_versions import Version
from chalicelib.cost.model import SMALL_OBJECT_BYTES, Placement, StoredVersion, timeline
from chalicelib.errors import describe_error
from chalicelib.plans import BUCKET_SETTING_CHOICES, Lifecycle, Plan
from chalicelib.prices import Prices
from chalicelib.times import isoformat

# AWS: lifecycle actions may complete "days or even weeks" after the rule is satisfied.
PENDING_DAYS = 14
# Disagreements named in a report (all are counted).
MAX_LISTED = 20
TRANSITION_WINDOW = timedelta(days=30)


@dataclass
class Count:
    versions: int = 0
    bytes: int = 0

    def add(self, size: int, versions: int = 1) -> None:
        self.versions += versions
        self.bytes += size


def usd(amount: float) -> float:
    """An amount as the report shows it: to a hundredth of a millionth of a dollar, so that small buckets
    (and tests) still show what differs."""
    return round(amount, 8)


def storage_usd(storage_class: str, count: Count, prices: Prices) -> float:
    """A month of these versions in this class: their bytes, and 40 KB more per archived version (8 KB at
    STANDARD's price, 32 KB at the class's)."""
    usd = count.bytes * prices.storage_per_byte_month(storage_class)
    if storage_class in prices.archive_classes:
        usd += count.versions * (
            prices.overhead_standard_bytes * prices.storage_per_byte_month("STANDARD")
            + prices.overhead_archive_bytes * prices.storage_per_byte_month(storage_class)
        )
    return usd


def by_class(counts: dict[str, Count], prices: Prices) -> dict[str, dict[str, Any]]:
    """{class: {versions, bytes, monthly_usd}}, the shape every storage figure of the report has."""
    return {
        name: {"versions": count.versions, "bytes": count.bytes, "monthly_usd": usd(storage_usd(name, count, prices))}
        for name, count in sorted(counts.items())
    }


def _midnight_key(moment: datetime | None) -> tuple[date, bool] | None:
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.date(), moment.time() == datetime.min.time()


class Placements:
    """The model's timelines under one lifecycle, cached by what they depend on: size group, the day written
    and the day replaced, and whether each moment fell exactly on midnight (S3 rounds up to midnight)."""

    def __init__(self, lifecycle: Lifecycle, now: datetime) -> None:
        self.lifecycle = lifecycle
        self.now = now
        self._cache: dict[tuple[Any, ...], list[Placement]] = {}

    def timeline(self, small: bool, written: datetime, replaced: datetime | None) -> list[Placement]:
        key = (small, _midnight_key(written), _midnight_key(replaced))
        found = self._cache.get(key)
        if found is None:
            size = SMALL_OBJECT_BYTES - 1 if small else SMALL_OBJECT_BYTES
            found = self._cache[key] = timeline(StoredVersion(size, written, replaced), self.lifecycle)
        return found

    def now_in(self, small: bool, written: datetime, replaced: datetime | None) -> Placement:
        """Where the version is now. (The first placement holds from the version's own write time, which a
        shared timeline does not know exactly: it is taken as reached.)"""
        steps = self.timeline(small, written, replaced)
        found = steps[0]
        for step in steps[1:]:
            if step.since <= self.now:
                found = step
        return found


@dataclass
class Check:
    """The model against S3: every listed version (or every version of the inventory report), and a sample
    asked again with HeadObject."""

    compared: int = 0
    agree: int = 0
    pending: int = 0
    disagreements: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)
    head_sampled: int = 0
    head_agree: int = 0
    head_pending: int = 0
    head_disagreements: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "agree": self.agree,
            "pending": self.pending,
            "disagreements_count": self.disagreements,
            "head_sampled": self.head_sampled,
            "head_agree": self.head_agree,
            "head_pending": self.head_pending,
            "head_disagreements_count": self.head_disagreements,
            "disagreements": self.listed,
            "errors": self.errors[:MAX_LISTED],
        }


@dataclass(frozen=True)
class _Profile:
    """What a version's size group and days give under each lifecycle: where the plan's puts it now, the class
    a small version held in STANDARD by the 128 KB rule would be in otherwise, the transitions of the last 30
    days, and the class under each bucket setting."""

    placement: Placement
    held_as: str | None
    transitions: tuple[str, ...]
    choices: tuple[tuple[str, str], ...]


class PlanTally:
    """Counts one plan's versions as they stream by; nothing per version is kept but the HeadObject sample."""

    def __init__(self, plan: Plan, prices: Prices, now: datetime, sample_size: int = 20, listed_by: str = "ListObjectVersions") -> None:
        self.plan = plan
        # What the versions' storage classes come from: S3's listing, or an inventory report.
        self.listed_by = listed_by
        self.prices = prices
        self.now = now
        self.sample_size = sample_size
        self.choices = {
            choice: Placements(
                Lifecycle(plan.lifecycle.transitions, plan.lifecycle.noncurrent_expiration_days, choice), now
            )
            for choice in BUCKET_SETTING_CHOICES
        }
        self.model = self.choices[plan.lifecycle.bucket_setting_choice]
        self.storage: dict[str, Count] = {}
        self.current: dict[str, Count] = {}
        self.noncurrent: dict[str, Count] = {}
        self.unnamed: dict[str, Count] = {}
        self.reported: dict[str, Count] = {}
        self.by_choice: dict[str, dict[str, Count]] = {choice: {} for choice in BUCKET_SETTING_CHOICES}
        # Versions that switching to a choice would move now, by the class they would move into.
        self.switch: dict[str, dict[str, int]] = {choice: {} for choice in BUCKET_SETTING_CHOICES}
        self.held_by_rule = Count()
        self.held_would_be: dict[str, int] = {}
        self.transitions: dict[str, int] = {}
        self.named = Count()
        # For AWS Backup: every named version billed as at least its minimum size.
        self.aws_backup_bytes = 0
        # Current versions by size group (True: under 128 KB), for the projection's size mix.
        self.current_groups: dict[bool, Count] = {True: Count(), False: Count()}
        # Cohorts: (small, day written) and (small, day written, day replaced) -> [versions, bytes].
        self.current_cohorts: dict[tuple[bool, date], list[float]] = {}
        self.noncurrent_cohorts: dict[tuple[bool, date, date], list[float]] = {}
        self.check = Check()
        self._sample: list[tuple[int, str, Version]] = []
        self._profiles: dict[tuple[Any, ...], _Profile] = {}

    def add(self, version: Version) -> None:
        small = version.size < SMALL_OBJECT_BYTES
        # Where the version is under each lifecycle depends only on its size group and the days it was written
        # and replaced (what `Placements` caches by): worked out once per such profile, not per version.
        key = (small, _midnight_key(version.written), _midnight_key(version.noncurrent_since))
        profile = self._profiles.get(key)
        if profile is None:
            profile = self._profiles[key] = self._profile(small, version.written, version.noncurrent_since)
        size = version.size
        name = profile.placement.storage_class
        self.storage.setdefault(name, Count()).add(size)
        (self.current if version.current else self.noncurrent).setdefault(name, Count()).add(size)
        self.reported.setdefault(version.storage_class, Count()).add(size)
        if version.named:
            self.named.add(size)
            self.aws_backup_bytes += max(size, self.prices.aws_backup.minimum_billable_bytes)
        else:
            self.unnamed.setdefault(name, Count()).add(size)
        if profile.held_as is not None:
            self.held_by_rule.add(size)
            self.held_would_be[profile.held_as] = self.held_would_be.get(profile.held_as, 0) + 1
        for storage_class in profile.transitions:
            self.transitions[storage_class] = self.transitions.get(storage_class, 0) + 1
        for choice, there in profile.choices:
            self.by_choice[choice].setdefault(there, Count()).add(size)
            if there != name and there != "STANDARD":
                # Transitions only go colder: switching never brings an archived version back.
                self.switch[choice][there] = self.switch[choice].get(there, 0) + 1
        self._cohort(version, small)
        self._compare(version, profile.placement, version.storage_class, self.listed_by)
        self._sampled(version)

    def _profile(self, small: bool, written: datetime, replaced: datetime | None) -> _Profile:
        placement = self.model.now_in(small, written, replaced)
        held_as = None
        if small and placement.storage_class == "STANDARD":
            large = self.choices["standard"].now_in(False, written, replaced).storage_class
            held_as = large if large != "STANDARD" else None
        transitions = tuple(
            step.storage_class
            for step in self.model.timeline(small, written, replaced)[1:]
            if self.now - TRANSITION_WINDOW < step.since <= self.now
        )
        choices = tuple((choice, placements.now_in(small, written, replaced).storage_class) for choice, placements in self.choices.items())
        return _Profile(placement, held_as, transitions, choices)

    def _cohort(self, version: Version, small: bool) -> None:
        written = version.written.astimezone(timezone.utc).date()
        if version.current:
            self.current_groups[small].add(version.size)
            totals = self.current_cohorts.setdefault((small, written), [0.0, 0.0])
        else:
            assert version.noncurrent_since is not None
            # A projection counts in whole days: a version replaced the day it was written is taken as
            # replaced the next day, the first day a later backup could have named its successor.
            replaced = max(version.noncurrent_since.astimezone(timezone.utc).date(), written + timedelta(days=1))
            totals = self.noncurrent_cohorts.setdefault((small, written, replaced), [0.0, 0.0])
        totals[0] += 1
        totals[1] += version.size

    def _compare(self, version: Version, placement: Placement, reported: str, by: str) -> None:
        head = by == "HeadObject"
        if reported == placement.storage_class:
            verdict = "agree"
        elif self._pending(version, placement, reported):
            verdict = "pending"
        else:
            verdict = "disagree"
        if head:
            self.check.head_sampled += 1
            self.check.head_agree += verdict == "agree"
            self.check.head_pending += verdict == "pending"
            self.check.head_disagreements += verdict == "disagree"
        else:
            self.check.compared += 1
            self.check.agree += verdict == "agree"
            self.check.pending += verdict == "pending"
            self.check.disagreements += verdict == "disagree"
        if verdict == "disagree" and len(self.check.listed) < MAX_LISTED:
            self.check.listed.append(
                {
                    "key": version.key,
                    "version_id": version.version_id,
                    "size": version.size,
                    "written": isoformat(version.written),
                    "noncurrent_since": isoformat(version.noncurrent_since) if version.noncurrent_since else None,
                    "model": placement.storage_class,
                    "s3": reported,
                    "by": by,
                    "why": f"the model says {placement.storage_class} from {isoformat(placement.since)} "
                    f"({placement.reason}); {by} says {reported}",
                }
            )

    def _pending(self, version: Version, placement: Placement, reported: str) -> bool:
        """S3 still shows the class before a transition that fell due lately."""
        steps = self.model.timeline(version.size < SMALL_OBJECT_BYTES, version.written, version.noncurrent_since)
        reached = next(index for index, step in enumerate(steps) if step is placement)
        earlier = {step.storage_class for step in steps[:reached]}
        return reported in earlier and self.now - placement.since <= timedelta(days=PENDING_DAYS)

    def _sampled(self, version: Version) -> None:
        """Keep the `sample_size` versions whose hash is smallest: a uniform sample, the same on every run."""
        digest = hashlib.sha256(f"{version.key}\0{version.version_id}".encode()).digest()
        rank = -int.from_bytes(digest[:8], "big")
        entry = (rank, version.version_id, version)
        if len(self._sample) < self.sample_size:
            heapq.heappush(self._sample, entry)
        elif rank > self._sample[0][0]:
            heapq.heapreplace(self._sample, entry)

    def head_check(self, s3: Any) -> None:
        """Ask S3 again about the sampled versions, one HeadObject each."""
        for _, _, version in sorted(self._sample, reverse=True):
            try:
                answer = s3.head_object(Bucket=self.plan.bucket, Key=version.key, VersionId=version.version_id)
            except (ClientError, BotoCoreError) as exc:
                self.check.errors.append(f"{version.key} version {version.version_id}: {describe_error(exc)}")
                continue
            placement = self.model.now_in(version.size < SMALL_OBJECT_BYTES, version.written, version.noncurrent_since)
            # HeadObject leaves the header out for STANDARD.
            self._compare(version, placement, answer.get("StorageClass") or "STANDARD", "HeadObject")

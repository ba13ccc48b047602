"""The projection's pack books (small_objects: pack) against small histories counted by hand."""

from __future__ import annotations

import base64
import itertools
import random
import string
from datetime import date, datetime, timedelta, timezone

import pytest

from chalicelib.catalog.manifests import Entry, ManifestWriter
from chalicelib.catalog.packs import FOOTER_BYTES
from chalicelib.cost.packs_model import PACK_INDEX_BYTES_PER_OBJECT, PACKED_MANIFEST_BYTES_PER_ENTRY
from chalicelib.cost.projection import project
from chalicelib.cost.simulation import MANIFEST_BYTES_PER_ENTRY, Simulation
from chalicelib.cost.workload import SizeClass, Workload
from chalicelib.layout import pack_key
from chalicelib.plans import Lifecycle, Transition
from chalicelib.prices import load_prices
from chalicelib.retention import RetentionPolicy, Snapshot, decide

PRICES = load_prices(environ={})
KIB = 1024
START = date(2026, 1, 1)
# 64 objects of 8 KiB into packs of 128 KiB: 16 objects, 4 packs, each pack just over 128 KiB with its index.
OBJECTS, SIZE, TARGET = 64, 8 * KIB, 128 * KIB
PACK_BYTES = TARGET + 16 * PACK_INDEX_BYTES_PER_OBJECT + FOOTER_BYTES


def _workload(changed: float) -> Workload:
    return Workload("small", OBJECTS, (SizeClass("files", SIZE, 1.0),), changed_per_day=changed, deleted_per_day=0, new_per_day=0)


def _packed(*transitions: Transition) -> Lifecycle:
    return Lifecycle(transitions=transitions, small_objects="pack", pack_target_bytes=TARGET)


def test_packs_are_stored_moved_and_billed_as_the_objects_they_are() -> None:
    # Nothing changes: day 0 writes 4 packs (January 1, 02:00), which reach GLACIER at midnight, February 1.
    months = project(_workload(0.0), _packed(Transition(30, "GLACIER")), None, PRICES, days=59, start=START, baselines=False).ours.months
    january, february = months
    assert january.request_counts["pack_put"] == 4 and january.request_counts["pack_get"] == OBJECTS
    assert january.request_counts["copy"] == 0
    # Packs are what S3 stores and moves: four versions, a transition request and 40 KB each.
    assert february.versions == {"GLACIER": pytest.approx(4)}
    assert february.bytes == {"GLACIER": pytest.approx(4 * PACK_BYTES)}
    assert january.transitions == 0
    assert february.transitions == pytest.approx(4 * PRICES.transition_per_request("GLACIER"))
    per_pack = 8 * KIB * PRICES.storage_per_byte_month("STANDARD") + 32 * KIB * PRICES.storage_per_byte_month("GLACIER")
    assert february.overhead == pytest.approx(4 * per_pack) and january.overhead == 0
    assert january.storage == {"STANDARD": pytest.approx(4 * PACK_BYTES * PRICES.storage_per_byte_month("STANDARD"))}
    # The same objects unpacked stay in STANDARD under the 128 KB rule, one version each.
    plain = project(_workload(0.0), Lifecycle((Transition(30, "GLACIER"),)), None, PRICES, days=59, start=START, baselines=False)
    assert plain.ours.months[1].versions == {"STANDARD": pytest.approx(OBJECTS)}
    # Manifests: a packed entry is larger than an object's own.
    assert february.manifest_bytes == pytest.approx(59 * OBJECTS * PACKED_MANIFEST_BYTES_PER_ENTRY)
    assert plain.ours.months[1].manifest_bytes == pytest.approx(59 * OBJECTS * MANIFEST_BYTES_PER_ENTRY)


def test_a_last_partial_pack_under_128_kb_stays_in_standard() -> None:
    # 20 objects: one full pack of 16 and one of 4 (32 KiB), which S3 does not transition.
    workload = Workload("small", 20, (SizeClass("files", SIZE, 1.0),), 0, 0, 0)
    months = project(workload, _packed(Transition(30, "GLACIER")), None, PRICES, days=40, start=START, baselines=False).ours.months
    partial = 4 * SIZE + 4 * PACK_INDEX_BYTES_PER_OBJECT + FOOTER_BYTES
    assert months[-1].bytes == {"GLACIER": pytest.approx(PACK_BYTES), "STANDARD": pytest.approx(partial)}


def test_a_pack_dies_the_day_its_last_named_object_leaves_retention() -> None:
    # Every object changes every day: a day's 4 packs are named only by that day's snapshot, which keep_daily=3
    # drops three days later. They reach GLACIER at the second midnight and are deleted early there.
    lifecycle = _packed(Transition(1, "GLACIER"))
    projection = project(_workload(1.0), lifecycle, RetentionPolicy(keep_daily=3), PRICES, days=31, start=START, baselines=False)
    january = projection.ours.months[0]
    # After the last day's prune: the packs of days 28, 29 and 30, one of them in GLACIER.
    assert january.versions == {"STANDARD": pytest.approx(8), "GLACIER": pytest.approx(4)}
    # Deleted on day w + 3 at 02:00, a day and two hours after entering GLACIER; days 0 to 27 die this month.
    remaining = PRICES.minimum_days("GLACIER") - (1 + 2 / 24)
    charge = (PACK_BYTES + 32 * KIB) * PRICES.storage_per_byte_month("GLACIER") * remaining / 30
    assert january.early_deletions == pytest.approx(28 * 4 * charge)
    # Each day's objects are read from the source and written as 4 packs.
    assert january.request_counts["pack_put"] == 31 * 4 and january.request_counts["pack_get"] == 31 * OBJECTS


def _enumerated_live_packs(days: int, changed: float, per_pack: int, retention: RetentionPolicy) -> list[float]:
    """Expected live packs of day 0 after each day's prune, the slow way: every combination of the days a pack's
    objects are replaced, each pack alive while a kept snapshot names one of its objects."""
    at = [datetime.combine(START + timedelta(days=d), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=2) for d in range(days)]
    kept_by_day, snapshots = [], []
    for day in range(days):
        snapshots.append(day)
        snapshots = sorted(int(s.backup_id) for s in decide([Snapshot(str(d), at[d]) for d in snapshots], retention).kept)
        kept_by_day.append(list(snapshots))
    # An object is replaced on day r (1 .. days-1) with probability changed * (1 - changed)^(r - 1), or later.
    fates = [(r, changed * (1 - changed) ** (r - 1)) for r in range(1, days)] + [(days, (1 - changed) ** (days - 1))]
    live = [0.0] * days
    for combination in itertools.product(fates, repeat=per_pack):
        chance = 1.0
        for _, p in combination:
            chance *= p
        for day in range(days):
            named = any(any(0 <= s < replaced for s in kept_by_day[day]) for replaced, _ in combination)
            live[day] += chance * named
    return live


def test_a_pack_lives_while_any_of_its_objects_is_named_counted_the_slow_way() -> None:
    # Packs of two objects: half of them change each day; the day-0 pack's survival is enumerated.
    days, retention = 12, RetentionPolicy(keep_daily=2, keep_weekly=1)
    workload = Workload("small", 2, (SizeClass("files", SIZE, 1.0),), changed_per_day=0.5, deleted_per_day=0, new_per_day=0)
    lifecycle = Lifecycle(transitions=(), small_objects="pack", pack_target_bytes=2 * SIZE)
    expected = _enumerated_live_packs(days, 0.5, 2, retention)
    for horizon in range(1, days + 1):
        simulation = Simulation(workload, lifecycle, retention, PRICES, horizon, START)
        simulation.run()
        assert simulation.packs is not None
        assert sum(p.live for p in simulation.packs.cohorts[0]) == pytest.approx(expected[horizon - 1], abs=1e-12), horizon
    # The day-0 pack is not deleted while a kept snapshot names one of its objects, and is by the end.
    assert expected[1] > 0.7 and expected[-1] < expected[1]


def _entries(rows: int, packed: bool, packs: int = 1) -> list[Entry]:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "._"

    def version() -> str:
        return "".join(rng.choice(alphabet) for _ in range(32))

    # Each pack's key, version, size and ETag: one day's pack among those the snapshot names.
    stored = [
        {"pack_key": pack_key(f"202603{rng.randrange(1, 29):02d}T020000000Z-daily", "%08x" % rng.getrandbits(32), rng.randrange(1, 70)),
         "version_id": version(), "pack_size": rng.randrange(16 << 20, 17 << 20), "pack_etag": "%032x" % rng.getrandbits(128)}
        for _ in range(packs)
    ]
    listed = []
    for number in range(rows):
        etag, digest = "%032x" % rng.getrandbits(128), rng.getrandbits(256).to_bytes(32, "big")
        key = f"team{number % 97}/folder{number % 1009}/report-{number:08d}.docx"
        own = {"version_id": version()}
        if packed:
            # Neighbours in key order in packs written on other days (the steady state by month 12).
            own = {"sha256": digest.hex(), "pack_offset": rng.randrange(1 << 24), **rng.choice(stored)}
        listed.append(Entry("documents", key, etag=etag, size=10240, identity=f"etag:{etag}:10240", checksum=base64.b64encode(digest).decode(), **own))
    return sorted(listed, key=lambda entry: entry.sort_key)


def _gzipped_per_entry(listed: list[Entry]) -> float:
    writer = ManifestWriter()
    for entry in listed:
        writer.add(entry)
    manifest = writer.finish({"plan": "documents", "backup_id": "20260101T000000000Z-daily"}, keep_held=False)
    return manifest.seek(0, 2) / len(listed)


def test_a_packed_entry_costs_what_the_manifest_format_makes_of_it() -> None:
    # Measured on the manifest's own serialisation: what a packed entry adds to an entry of its own. At month
    # 12 of 10M x 10 KiB a snapshot names about 28,000 packs, some 360 entries each, in random key order: here
    # 10,000 entries in 100 packs (26.4 bytes added). Pack numbers of two digits instead of five (about a byte
    # and a half more an entry at scale), a pack defined on one entry in 100 instead of 360 (nearly a byte less).
    rows = 10_000
    added = _gzipped_per_entry(_entries(rows, packed=True, packs=100)) - _gzipped_per_entry(_entries(rows, packed=False))
    assert PACKED_MANIFEST_BYTES_PER_ENTRY - MANIFEST_BYTES_PER_ENTRY == pytest.approx(added, rel=0.1)
    # Each entry naming its pack in full (the first format) would cost 92 bytes more than an entry of its own.
    assert added < 60

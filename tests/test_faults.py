"""The fault injector replays: a seed fires the same faults however the threads interleave their requests."""

from __future__ import annotations

import random
from collections import Counter

from tests.faults import FaultInjector

OPERATIONS = ["s3.CopyObject"] * 300 + ["s3.HeadObject"] * 200 + ["dynamodb.Scan"] * 60 + ["sns.Publish"] * 3


def fired(seed: int, order: list[str]) -> set[tuple[str, int, str]]:
    """(operation, how many of it came before, kind) of every fault that fired, sending in `order`."""
    injector = FaultInjector(seed)
    injector.add("s3.*", "slowdown", rate=0.05)
    injector.add("*", "reset", rate=0.05)
    seen: Counter[str] = Counter()
    faults = set()
    for operation in order:
        kind = injector._decide(operation, "https://bucket.s3.amazonaws.com/key")
        if kind is not None:
            faults.add((operation, seen[operation], kind))
        seen[operation] += 1
    return faults


def test_a_seed_fires_the_same_faults_whatever_order_the_requests_come_in() -> None:
    for seed in range(5):
        in_order = fired(seed, OPERATIONS)
        for shuffle in range(3):
            interleaved = list(OPERATIONS)
            random.Random(shuffle).shuffle(interleaved)
            assert fired(seed, interleaved) == in_order, (seed, shuffle)
        # About 5% of each kind fired (563 calls, 500 of them S3): the rates hold.
        kinds = Counter(kind for _, _, kind in in_order)
        assert 8 <= kinds["slowdown"] <= 50 and 10 <= kinds["reset"] <= 60, kinds


def test_seeds_differ() -> None:
    assert len({frozenset(fired(seed, OPERATIONS)) for seed in range(5)}) == 5

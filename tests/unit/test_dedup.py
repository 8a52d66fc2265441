"""PhashIndex against a brute-force scan, serialisation, and the keep-the-best rule."""

from __future__ import annotations

import random

import pytest

from annotate_anyone.catalog.dedup import DupCandidate, PhashIndex, better, hamming, keeper
from annotate_anyone.errors import InvalidInput


def flip(value: int, bits: int, rng: random.Random) -> int:
    for pos in rng.sample(range(64), bits):
        value ^= 1 << pos
    return value


def hx(value: int) -> str:
    return f"{value:016x}"


@pytest.fixture(scope="module")
def corpus() -> list[tuple[int, str]]:
    rng = random.Random(7)
    pairs = [(i, hx(rng.getrandbits(64))) for i in range(5000)]
    # plant near duplicates at 1..6 bits from some entries
    for j in range(300):
        base = int(pairs[j][1], 16)
        pairs.append((10_000 + j, hx(flip(base, 1 + j % 6, rng))))
    return pairs


def brute(pairs: list[tuple[int, str]], query: str, limit: int) -> list[tuple[int, int]]:
    hits = [(i, hamming(h, query)) for i, h in pairs]
    return sorted(((i, d) for i, d in hits if d <= limit), key=lambda kv: (kv[1], kv[0]))


@pytest.mark.parametrize("threshold", [0, 4, 8])
def test_bulk_index_equals_brute_force(corpus, threshold):
    index = PhashIndex.from_pairs(corpus, threshold=threshold)
    assert len(index) == len(corpus)
    rng = random.Random(threshold)
    for _, phash in rng.sample(corpus, 200):
        query = hx(flip(int(phash, 16), rng.randint(0, 6), rng))
        assert index.query(query) == brute(corpus, query, threshold)


def test_incremental_adds_are_searchable_and_merge(corpus):
    index = PhashIndex(threshold=4, merge_every=64)
    for item_id, phash in corpus[:1000]:
        index.add(item_id, phash)
    assert len(index) == 1000
    for item_id, phash in corpus[:1000:37]:
        assert (item_id, 0) in index.query(phash)
    assert index.query(corpus[0][1], threshold=2) == brute(corpus[:1000], corpus[0][1], 2)
    with pytest.raises(InvalidInput):
        index.query(corpus[0][1], threshold=5)


def test_round_trip_bytes(corpus):
    index = PhashIndex.from_pairs(corpus[:500], threshold=6)
    index.add(99_999, corpus[0][1])
    clone = PhashIndex.from_bytes(index.to_bytes())
    assert clone.threshold == 6 and len(clone) == 501
    assert clone.query(corpus[0][1]) == index.query(corpus[0][1])


def test_bad_hash_rejected():
    with pytest.raises(InvalidInput):
        PhashIndex().add(1, "abc")


def test_keep_the_larger_then_sharper():
    small = DupCandidate(id=1, width=640, height=480, blur=300)
    large = DupCandidate(id=2, width=1280, height=960, blur=100)
    large_sharp = DupCandidate(id=3, width=1280, height=960, blur=200)
    assert better(small, large) == large and better(large, small) == large
    assert better(large, large_sharp) == large_sharp
    assert keeper([small, large, large_sharp]) == large_sharp
    twin = DupCandidate(id=4, width=1280, height=960, blur=200)
    assert keeper([twin, large_sharp]) == large_sharp  # a tie keeps the older row

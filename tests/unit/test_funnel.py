from __future__ import annotations

from annotate_anyone.catalog.models import ItemStatus
from annotate_anyone.catalog.stats import funnel


def test_funnel_counts_survivors_per_step_and_reasons() -> None:
    rows = [
        (ItemStatus.kept, None, 5),
        (ItemStatus.failed, "fetch:http_404", 2),
        (ItemStatus.dropped, "decode:truncated", 1),
        (ItemStatus.duplicate, "dedup:exact", 3),
        (ItemStatus.dropped, "quality:too_small", 4),
        (ItemStatus.dropped, "humans:multiple", 6),
        (ItemStatus.dropped, "safety:nsfw", 1),
        (ItemStatus.pending, None, 7),
    ]
    f = funnel(rows)
    assert f["steps"] == {
        "listed": 29,
        "fetched": 20,
        "decoded": 19,
        "unique": 16,
        "quality": 12,
        "one_human": 6,
        "safe": 5,
        "kept": 5,
    }
    assert f["pending"] == 7
    assert f["dropped_by_reason"]["humans:multiple"] == 6
    assert f["dropped_by_reason"]["safety:nsfw"] == 1
    assert "kept" not in f["dropped_by_reason"]

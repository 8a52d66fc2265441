"""Token spans of caption parts, found by exact subsequence search in the caption's token ids."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence


def find_subsequence(haystack: Sequence[int], needle: Sequence[int]) -> list[int]:
    """Every start index at which ``needle`` occurs in ``haystack`` (overlaps included)."""
    n = len(needle)
    if n == 0 or n > len(haystack):
        return []
    first = needle[0]
    needle = list(needle)
    return [i for i in range(len(haystack) - n + 1) if haystack[i] == first and list(haystack[i : i + n]) == needle]


def locate_spans(
    caption_ids: Sequence[int], phrase_ids: Sequence[tuple[Hashable, Sequence[int]]]
) -> dict[Hashable, tuple[int, int]]:
    """Map each part key to its ``(start, end)`` token span; parts found zero or several times are left out."""
    spans: dict[Hashable, tuple[int, int]] = {}
    for key, ids in phrase_ids:
        starts = find_subsequence(caption_ids, ids)
        if len(starts) == 1:
            spans[key] = (starts[0], starts[0] + len(ids))
    return spans


def caption_spans(
    caption_ids: Sequence[int],
    parts: Sequence[tuple[Hashable, str]],
    encode_phrase: Callable[[str], Sequence[int]],
) -> dict[Hashable, tuple[int, int]]:
    """Tokenize each part alone (no special tokens) with ``encode_phrase`` and locate it in the caption."""
    return locate_spans(caption_ids, [(key, encode_phrase(text)) for key, text in parts])

"""Caption grammar, composition rules (property tests) and span finding."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate_anyone.annotation.phrases import SHOT_PHRASES, group_phrase, shot_phrases
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.daring.spans import caption_spans, find_subsequence, locate_spans
from annotate_anyone.daring.training_captions import NUM_GROUPS, SHOT, compose_caption
from annotate_anyone.errors import InvalidInput

WORDS = st.sampled_from(["red", "blue", "silk", "cotton", "long", "short", "floral", "wavy", "fit", "asian"])


def _group(index: int):
    spec = load_taxonomy().group(index)
    keys = [k for k in load_taxonomy().text_keys(index) if k not in ("type", "gender")]
    adjectives = st.dictionaries(st.sampled_from(keys), WORDS, min_size=1)
    if spec.noun_key:
        return adjectives.map(lambda d: d | {spec.noun_key: "dress"})
    return adjectives


AA_TEXT = st.tuples(*[st.one_of(st.none(), _group(i)) for i in range(NUM_GROUPS)]).map(list)
SHOTS = st.sampled_from(sorted(SHOT_PHRASES))


def _every_group() -> list[dict[str, str]]:
    """Every group with every key it has (values are the key's first word)."""
    taxonomy = load_taxonomy()
    return [{k: k.split()[0] for k in taxonomy.text_keys(i)} for i in range(NUM_GROUPS)]


def word_count(text: str) -> int:
    return len(text.replace(",", " ,").split()) + 2  # a whitespace "tokenizer" with BOS/EOS


def test_group_phrase_nouns():
    assert group_phrase(0, {"country": "asian", "age": "adult", "gender": "female"}) == "a asian adult female"
    assert group_phrase(3, {"hair color": "black", "hair length": "long"}) == "black long hair"
    assert group_phrase(3, {"hair_color": "black", "hair_length": "long"}) == "black long hair"  # old spelling
    assert group_phrase(6, {"color": "red", "material": "silk", "type": "t-shirt"}) == "silk red t-shirt"
    assert group_phrase(12, {"material": "leather"}) == "leather belt"
    assert group_phrase(13, {"pattern": "plaid", "material": "wool"}) == "plaid wool scarf"
    assert [group_phrase(i, {"material": "x"}).split()[-1] for i in range(15, 20)] == [
        "headband", "headscarf", "veil", "socks", "ties",
    ]  # fmt: skip
    assert group_phrase(1, {"body shape": "fit"}) == "fit"
    assert group_phrase(14, {"overall-style": "casual"}) == "casual"
    assert group_phrase(2, None) == "" and group_phrase(5, {}) == ""
    assert group_phrase(12, {}) == "belt" and group_phrase(12, {"present": "yes"}) == "belt"  # the item alone
    assert group_phrase(12, {"present": "no", "material": "leather"}) == ""
    assert group_phrase(3, {}) == "" and group_phrase(1, {}) == ""


def test_a_group_without_its_noun_says_nothing():
    """CosmicMan's loader renders a type group without ``type`` (and group 0 without gender) as nothing."""
    assert group_phrase(4, {"sleeve length": "long sleeve"}) == ""
    assert group_phrase(0, {"country": "asian", "age": "adult"}) == ""
    assert group_phrase(6, {"color": "red", "type": "n/a"}) == ""
    assert group_phrase(6, {"color": "red", "colour": "blue", "size": "xl", "type": "shirt"}) == "red shirt"
    assert group_phrase(6, {"color": ["red"], "type": "shirt"}) == "shirt"  # values are words, not lists
    with pytest.raises(InvalidInput):
        group_phrase(20, {"a": "b"})


def test_group_phrase_shuffles_only_adjectives():
    attrs = {"pattern": "one", "material": "two", "color": "three", "type": "coat"}
    seen = {group_phrase(7, attrs, random.Random(s)) for s in range(30)}
    assert len(seen) > 1 and all(p.endswith(" coat") for p in seen)
    assert all(sorted(p.split()) == sorted("one two three coat".split()) for p in seen)


def test_shot_phrases_cover_the_five_types():
    assert SHOT_PHRASES == {  # CosmicMan's own wording, the default
        "full_body": "a full-body shot",
        "nearly_full_body": "a nearly full-body shot",
        "upper_body": "a upper body shot",
        "portrait": "a close up portrait shot",
        "headshot": "a headshot",
    }
    ours = shot_phrases("annotate-anyone")
    assert set(ours) == set(SHOT_PHRASES) and ours["upper_body"] == "an upper-body shot"
    cap = compose_caption("upper_body", None, random.Random(0), word_count, shots=ours)
    assert cap.text == "an upper-body shot"
    with pytest.raises(InvalidInput):
        shot_phrases("mine")


@settings(max_examples=150, deadline=None)
@given(shot=SHOTS, aa_text=AA_TEXT, seed=st.integers(0, 2**32))
def test_composition_rules(shot, aa_text, seed):
    cap = compose_caption(shot, aa_text, random.Random(seed), word_count, max_tokens=40)
    keys = [k for k, _ in cap.parts]
    assert keys[0] == SHOT and cap.parts[0][1] == SHOT_PHRASES[shot]
    groups = [k for k in keys if k != SHOT]
    head = [g for g in groups if g < 3]
    assert head == sorted(head) and groups[: len(head)] == head  # 0-2 first, in order
    assert cap.text == ", ".join(p for _, p in cap.parts)
    assert word_count(cap.text) <= 40 or len(cap.parts) == 1
    for key, phrase in cap.parts[1:]:
        assert sorted(phrase.split()) == sorted(group_phrase(key, aa_text[key]).split())
    present = {i for i, g in enumerate(aa_text) if group_phrase(i, g)}
    assert set(groups) | cap.dropped == present and not set(groups) & cap.dropped


@settings(max_examples=100, deadline=None)
@given(shot=SHOTS, aa_text=AA_TEXT, seed=st.integers(0, 2**32), limit=st.integers(8, 60))
def test_truncation_drops_trailing_groups_only(shot, aa_text, seed, limit):
    full = compose_caption(shot, aa_text, random.Random(seed), word_count, max_tokens=10_000)
    cut = compose_caption(shot, aa_text, random.Random(seed), word_count, max_tokens=limit)
    assert full.parts[: len(cut.parts)] == cut.parts


@settings(max_examples=60, deadline=None)
@given(aa_text=AA_TEXT, seed=st.integers(0, 2**32))
def test_no_dropout_keeps_every_present_group(aa_text, seed):
    cap = compose_caption(
        None, aa_text, random.Random(seed), word_count, max_tokens=10_000, group_dropout=0.0, optional_keep=1.0
    )
    assert set(cap.kept_groups) == {i for i, g in enumerate(aa_text) if group_phrase(i, g)} and not cap.dropped


def test_dropout_rates():
    aa_text = _every_group()
    rng = random.Random(7)
    kept_low, kept_high, trials = 0, 0, 3000
    for _ in range(trials):
        cap = compose_caption("portrait", aa_text, rng, word_count, max_tokens=10_000)
        kept_low += 5 in cap.kept_groups
        kept_high += 16 in cap.kept_groups
    assert abs(kept_low / trials - 0.9) < 0.03  # group dropout 0.1
    assert abs(kept_high / trials - 0.45) < 0.04  # kept half the time, then dropout


def test_groups_3_to_19_are_shuffled():
    aa_text = _every_group()
    orders = {
        compose_caption(None, aa_text, random.Random(s), word_count, 10_000, 0.0, 1.0).kept_groups for s in range(20)
    }
    assert len(orders) > 1 and all(o[:3] == (0, 1, 2) for o in orders)


def test_bad_inputs():
    with pytest.raises(InvalidInput):
        compose_caption("selfie", None, random.Random(0), word_count)
    with pytest.raises(InvalidInput):
        compose_caption("portrait", [None] * 3, random.Random(0), word_count)


def test_find_subsequence():
    assert find_subsequence([1, 2, 3, 2, 3], [2, 3]) == [1, 3]
    assert find_subsequence([1, 1, 1], [1, 1]) == [0, 1]
    assert find_subsequence([1, 2], []) == [] and find_subsequence([1], [1, 2]) == []


def test_spans_unique_ambiguous_and_missing():
    caption = [0, 5, 6, 9, 7, 8, 9, 5, 6, 1, 1]
    spans = locate_spans(caption, [("a", [7, 8]), ("twice", [5, 6]), ("missing", [4]), ("single", [9, 7])])
    assert spans == {"a": (4, 6), "single": (3, 5)}


def test_caption_spans_with_whitespace_tokens():
    vocab: dict[str, int] = {}

    def encode(text: str) -> list[int]:
        return [vocab.setdefault(w, len(vocab) + 2) for w in text.replace(",", " ,").split()]

    parts = [(SHOT, "a portrait shot"), (0, "a asian female"), (3, "black hair"), (9, "black boots")]
    text = ", ".join(p for _, p in parts)
    ids = [0, *encode(text), 1]
    spans = caption_spans(ids, parts, encode)
    assert spans[3] == (9, 11) and spans[9] == (12, 14) and spans[SHOT] == (1, 4) and spans[0] == (5, 8)
    dup = [(3, "black hair"), (4, "black hair")]
    assert caption_spans([0, *encode("black hair, black hair"), 1], dup, encode) == {}

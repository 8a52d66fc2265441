"""Aggregation and agreement: majority, one-coin and full Dawid-Skene, pairwise agreement."""

from __future__ import annotations

import random

from annotate_anyone.review import qa


def test_majority_and_ties() -> None:
    vote = qa.majority({"a": "red", "b": "blue", "c": "red"})
    assert vote.value == "red" and vote.support == 2 / 3
    assert qa.majority({"a": "blue", "b": "red"}).value == "blue"  # tie: first given


def test_weighted_vote_trusts_the_reliable_annotator() -> None:
    votes = {"expert": "red", "n1": "blue", "n2": "blue"}
    assert qa.majority(votes).value == "blue"
    vote = qa.weighted_vote(votes, {"expert": 0.99, "n1": 0.4, "n2": 0.4}, n_options=10)
    assert vote.value == "red" and 0.5 < vote.support <= 1 and abs(sum(vote.distribution.values()) - 1) < 1e-9


def test_reliability_is_smoothed() -> None:
    assert qa.reliability(0, 0) == 0.8
    assert qa.reliability(10, 10) > qa.reliability(5, 10) > qa.reliability(0, 10)


def test_dawid_skene_recovers_truth_despite_a_spammer() -> None:
    rng = random.Random(0)
    labels = ["a", "b", "c"]
    truth = {i: rng.choice(labels) for i in range(200)}
    items = {}
    for i, t in truth.items():
        votes = {}
        for name, acc in (("good1", 0.9), ("good2", 0.85)):
            votes[name] = t if rng.random() < acc else rng.choice([x for x in labels if x != t])
        for spammer in ("spam1", "spam2", "spam3"):  # always answers "a"-heavy noise
            votes[spammer] = rng.choice(["a", "a", "b", "c"])
        items[i] = votes
    posteriors, confusion = qa.dawid_skene(items, labels)
    ds = sum(max(p, key=p.get) == truth[i] for i, p in posteriors.items())
    mv = sum(qa.majority(v).value == truth[i] for i, v in items.items())
    assert ds > mv and ds / len(truth) > 0.85
    diag = {a: sum(m[t][t] for t in labels) / 3 for a, m in confusion.items()}
    assert min(diag["good1"], diag["good2"]) > max(diag["spam1"], diag["spam2"], diag["spam3"])


def test_pairwise_agreement() -> None:
    assert qa.pairwise_agreement({"a": "x", "b": "x", "c": "y"}) == (1, 3)
    assert qa.pairwise_agreement({"a": "x", "b": "x"}) == (1, 1)


COLOURS = ["black", "navy", "red", "white", "green"]


def _colour_blind_crowd(n: int, seed: int) -> tuple[dict[int, str], dict[int, dict[str, str]]]:
    """A known annotator-noise simulation: one careful annotator (85% right, errors uniform) and two who
    call black "navy" 80% of the time (otherwise 95% right): by gold accuracy alone they look as good."""
    rng = random.Random(seed)
    truth = {i: rng.choices(COLOURS, weights=[3, 1, 2, 2, 2])[0] for i in range(n)}
    items = {}
    for i, t in truth.items():
        others = [c for c in COLOURS if c != t]
        votes = {"careful": t if rng.random() < 0.85 else rng.choice(others)}
        for name in ("cb1", "cb2"):
            if t == "black" and rng.random() < 0.8:
                votes[name] = "navy"
            else:
                votes[name] = t if rng.random() < 0.95 else rng.choice(others)
        items[i] = votes
    return truth, items


def test_dawid_skene_settling_beats_majority_and_the_one_coin_vote_on_systematic_confusions() -> None:
    gold_truth, gold = _colour_blind_crowd(100, seed=0)  # gold tasks, answered by all three
    right = {a: sum(v[a] == gold_truth[i] for i, v in gold.items()) for a in ("careful", "cb1", "cb2")}
    accuracy = {a: qa.reliability(r, len(gold)) for a, r in right.items()}
    assert min(accuracy.values()) > 0.75  # one number each: the colour-blind look about as good as the careful
    truth, items = _colour_blind_crowd(400, seed=1)  # overlapped tasks
    items.update({("gold", i): v for i, v in gold.items()})
    known = {("gold", i): t for i, t in gold_truth.items()}
    model = qa.fit_confusions({"6.color": items}, {"6.color": COLOURS}, accuracy, known={"6.color": known})
    cb1 = model.matrices["6.color"]["cb1"]
    assert cb1[COLOURS.index("black"), COLOURS.index("navy")] > 0.6  # the confusion it learned
    fresh_truth, fresh = _colour_blind_crowd(400, seed=2)  # settled with the fitted model
    ds = sum(model.vote("6.color", v, accuracy, 5).value == fresh_truth[i] for i, v in fresh.items())
    mv = sum(qa.majority(v).value == fresh_truth[i] for i, v in fresh.items())
    ow = sum(qa.weighted_vote(v, accuracy, 5).value == fresh_truth[i] for i, v in fresh.items())
    assert ds / 400 > 0.9 and ds > mv + 40 and ds > ow + 40, (ds, mv, ow)
    posteriors, _ = qa.dawid_skene(items, COLOURS, accuracy=accuracy, known=known)  # the EM on its own items
    assert sum(max(p, key=p.get) == truth[i] for i, p in posteriors.items() if i in truth) / 400 > 0.9


def test_dawid_skene_vote_without_a_model_is_the_one_coin_vote() -> None:
    votes = {"expert": "red", "n1": "blue", "n2": "blue"}
    accuracy = {"expert": 0.99, "n1": 0.4, "n2": 0.4}
    empty = qa.Confusions()
    assert empty.vote("6.color", votes, accuracy, 10) == qa.weighted_vote(votes, accuracy, 10)
    assert qa.fit_confusions({"6.color": {1: {"a": "red"}}}, {"6.color": COLOURS}, {}).labels == {}  # no overlap

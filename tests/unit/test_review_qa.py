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

"""HOLA's value, normalised as CosmicMan's loss.py: one mean squared error over every span token's map and
every group's mean map together (normaliser: pixels x sum over groups of (tokens + 1)), then the mean over
layers and heads, then over the samples that have spans."""

import random

import pytest

torch = pytest.importorskip("torch")

from annotate_anyone.daring.hola import hola_loss  # noqa: E402
from annotate_anyone.daring.objective import HolaObjective  # noqa: E402


def _hand_example():
    """Maps 2x2 (P = 4), 77 tokens; sample 0 has groups of 1 and 3 tokens, sample 1 one group, sample 2 none."""
    masks = torch.zeros(3, 21, 2, 2)
    masks[0, 3] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # group A
    masks[0, 6] = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # group B
    masks[1, 20] = 1.0  # the shot phrase: the whole map
    first = torch.zeros(3, 1, 4, 77)  # layer 1, one head
    first[0, 0, :, 10] = torch.tensor([0.5, 0.5, 0.0, 0.0])  # A's only token
    first[0, 0, :, 20] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # B's three tokens
    first[0, 0, :, 21] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    first[0, 0, :, 22] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    first[1, 0, :, 1] = 0.25
    second = torch.zeros(3, 1, 4, 77)  # layer 2: attention on nothing at all
    spans = [[(3, 10, 11), (6, 20, 23)], [(20, 1, 2)], []]
    return [first, second], masks, spans


# Sample 0, layer 1: A: token ||(.5,.5,0,0)-(1,0,0,0)||^2 = 0.5, mean map the same 0.5 -> 1
#                    B: tokens 0, 1, 3; mean (1/3, 0, 2/3, 1/3) -> 1/9 + 1/9 + 4/9 = 2/3 -> 14/3
#                    (1 + 14/3) / (4 * ((1 + 1) + (3 + 1))) = 17/72
#           layer 2: A: 1 + 1; B: 3 * 2 + 2 -> (2 + 8) / 24 = 30/72;  mean over layers: 47/144
# Sample 1, layer 1: token and mean map 4 * 0.75^2 = 2.25 each -> 4.5 / (4 * 2) = 9/16; layer 2: 8/8 = 1
#           mean over layers: 25/32
# Batch: mean over the two samples with spans (sample 2 has none) = (47/144 + 25/32) / 2 = 319/576
HAND_VALUE = 319 / 576


def test_hola_value_by_hand_two_groups_of_different_length():
    maps, masks, spans = _hand_example()
    terms = hola_loss(maps, masks, spans)
    assert float(terms.per_sample[0]) == pytest.approx(47 / 144, abs=1e-7)
    assert float(terms.per_sample[1]) == pytest.approx(25 / 32, abs=1e-7)
    assert terms.active.tolist() == [True, True, False] and terms.samples == 2
    assert abs(float(terms.loss) - HAND_VALUE) < 1e-6


def test_the_trainers_objective_gives_the_hand_value():
    maps, masks, spans = _hand_example()
    objective = HolaObjective(1.0)  # what DiffusionStep calls on the captured maps
    assert abs(float(objective(maps, masks, spans).loss) - HAND_VALUE) < 1e-6


def reference_hola(maps, masks, spans) -> float:
    """Straight from the definition: per sample, layer and head, every span token's map and every group's
    mean map is one entry against its group's mask; one mean of squared errors over all pixels of all entries."""
    per_sample = []
    for b, sample_spans in enumerate(spans):
        if not sample_spans:
            continue
        values = []
        for layer in maps:
            for head in range(layer.shape[1]):
                squared, count = 0.0, 0
                for slot, start, end in sample_spans:
                    target = masks[b, slot].flatten().double()
                    tokens = [layer[b, head, :, j].double() for j in range(start, end)]
                    for entry in [*tokens, sum(tokens) / len(tokens)]:
                        squared += float(((entry - target) ** 2).sum())
                        count += target.numel()
                values.append(squared / count)
        per_sample.append(sum(values) / len(values))
    return sum(per_sample) / len(per_sample)


def test_hola_matches_a_straightforward_implementation():
    rng = random.Random(4)
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        batch, h, w = 3, rng.randint(2, 5), rng.randint(2, 5)
        maps = [torch.rand(batch, heads, h * w, 77, generator=gen).softmax(-1) for heads in (2, 2, 3)]
        masks = torch.rand(batch, 21, h, w, generator=gen)
        spans = []
        for b in range(batch):
            slots = rng.sample(range(21), rng.randint(0 if b == 2 else 1, 6))
            starts = sorted(rng.sample(range(1, 70), len(slots)))
            spans.append([(slot, s, s + rng.randint(1, 6)) for slot, s in zip(slots, starts, strict=True)])
        got = float(hola_loss(maps, masks, spans).loss)
        assert got == pytest.approx(reference_hola(maps, masks, spans), rel=1e-5, abs=1e-7)

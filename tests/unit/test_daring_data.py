"""Aspect buckets, group masks and dataset samples from a synthetic demo release."""

import json

import numpy as np
import pytest

from annotate_anyone.daring.buckets import AspectBuckets
from annotate_anyone.daring.data import BucketBatchSampler, fit_to_bucket
from annotate_anyone.errors import ConfigError

torch = pytest.importorskip("torch")


def test_recipe_buckets():
    b = AspectBuckets()
    assert all(768 <= h <= 1536 and 768 <= w <= 1536 for h, w in b.sizes)
    assert all(h % 64 == 0 and w % 64 == 0 and h * w <= 1024 * 1280 for h, w in b.sizes)
    assert all(max(h, w) / min(h, w) <= 2 for h, w in b.sizes)
    assert b.nearest(1000, 1000) == (1088, 1088) or b.nearest(1000, 1000)[0] == b.nearest(1000, 1000)[1]
    tall = b.nearest(3000, 1500)
    assert tall[0] > tall[1] and tall in b.sizes
    with pytest.raises(ConfigError):
        _ = AspectBuckets(min_side=64, max_side=64, max_area=10).sizes


def test_fit_to_bucket_covers_and_centres():
    (rh, rw), (top, left) = fit_to_bucket((100, 300), (128, 192))
    assert rh >= 128 and rw >= 192 and top == (rh - 128) // 2 and left == (rw - 192) // 2


def test_group_masks_union_foreground_and_empty():
    from annotate_anyone.daring.masks import SHOT_SLOT, group_masks, label_maps

    parsing = np.zeros((32, 32), np.uint8)
    parsing[:16, :16] = 2  # hair
    parsing[16:, :16] = 9  # left shoe
    parsing[16:, 16:] = 10  # right shoe
    ids = [None] * 20
    ids[3], ids[9], ids[6] = [2], [9, 10], [4]
    sharp, _ = group_masks(label_maps(parsing, (4, 4), antialias=False), ids, kept=[1, 3, 9])
    assert torch.allclose(sharp[3], torch.tensor([[1.0, 1, 0, 0]] * 2 + [[0.0] * 4] * 2))
    assert torch.allclose(sharp[9], torch.tensor([[0.0] * 4] * 2 + [[1.0] * 4] * 2))
    maps = label_maps(parsing, (4, 4))
    masks, usable = group_masks(maps, ids, kept=[1, 3, 9])
    union = torch.from_numpy(np.isin(parsing, [9, 10]).astype(np.float32))[None, None]
    resized = torch.nn.functional.interpolate(union, size=(4, 4), mode="bilinear", antialias=True)[0, 0]
    assert torch.allclose(masks[9], resized, atol=1e-6)  # resized union == sum of resized labels
    fg = 1 - maps[0]
    assert torch.equal(masks[1], fg) and torch.equal(masks[SHOT_SLOT], fg)
    assert masks[6].sum() == 0 and not usable[6]  # not kept (dropped): empty
    assert usable[[1, 3, 9, SHOT_SLOT]].all() and int(usable.sum()) == 4


def test_sampler_is_seeded_bucketed_and_resumable():
    bucket_of = [0, 1, 0, 1, 0, 1, 0, 0]
    s = BucketBatchSampler(bucket_of, 2, seed=3)
    batches = s.epoch_batches(0)
    assert batches == BucketBatchSampler(bucket_of, 2, seed=3).epoch_batches(0)
    assert all(len({bucket_of[i] for i, _ in b}) == 1 and len(b) == 2 for b in batches)
    assert len(batches) == 3  # 5 of bucket 0 -> 2 batches, 3 of bucket 1 -> 1
    gen = s.iterate(0, 2)()
    assert next(gen) == (0, 2, batches[2]) and next(gen)[:2] == (1, 0)
    shards = [BucketBatchSampler(bucket_of, 2, seed=3, shard=(r, 2)).epoch_batches(0) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 1


def test_dataset_sample(tmp_path):
    from transformers import AutoTokenizer

    from annotate_anyone.daring.data import CaptionRules, DaringDataset
    from annotate_anyone.daring.synthetic_release import build_demo_release
    from annotate_anyone.daring.tiny_pipelines import train_tokenizer
    from annotate_anyone.datasets import open_release

    build_demo_release(tmp_path / "rel", count=3, sizes=((120, 200),), seed=1)
    tok = AutoTokenizer.from_pretrained(train_tokenizer(tmp_path / "tok"))
    source = open_release(tmp_path / "rel")
    assert len(source) == 3 and source.row(0).aa_text[0]["gender"] in ("female", "male")
    buckets = AspectBuckets(min_side=64, max_side=256, step=64, max_area=128 * 256, max_ratio=2.0)
    rules = CaptionRules(group_dropout=0.0, optional_keep=1.0, caption_dropout=0.0)
    ds = DaringDataset(source, tok, buckets, rules=rules, seed=5)
    s = ds[(0, 0)]
    assert s["pixel_values"].shape == (3, 128, 192) and s["masks"].shape == (21, 8, 12)
    assert -1.0 <= float(s["pixel_values"].min()) and float(s["pixel_values"].max()) <= 1.0
    ids = tok(s["caption"], padding="max_length", max_length=77).input_ids
    for slot, start, end in s["spans"]:
        assert 0 < start < end < 77 and float(s["masks"][slot].sum()) > 0
    assert {20, 3, 6} <= {slot for slot, _, _ in s["spans"]}  # shot, hair, top
    shot = next((a, b) for slot, a, b in s["spans"] if slot == 20)
    assert tok.decode(ids[shot[0] : shot[1]]).replace(" ", "").startswith("a")
    assert ds[(0, 0)]["caption"] == s["caption"] and ds[(0, 0)]["spans"] == s["spans"]
    uncond = DaringDataset(source, tok, buckets, rules=CaptionRules(caption_dropout=1.0))[(1, 0)]
    assert uncond["caption"] == "" and uncond["spans"] == [] and uncond["uncond"]
    aa = json.loads(json.dumps(source.row(0).aa_ids))
    assert aa[3] == [2]


def test_cosmicman_buckets_are_the_default():
    b = AspectBuckets()
    assert b.scheme == "cosmicman" and b.nearest(1255, 1488) == (768, 896)  # a 1488x1255 photo: 896x768
    assert AspectBuckets(scheme="annotate-anyone").nearest(1255, 1488) == (1024, 1216)  # ours, an option
    assert len(b.sizes) == 15 and all((w, h) in b.sizes for h, w in b.sizes)  # 8 landscape (square too), transposed
    ratios = [w / h for h, w in b.sizes]
    assert ratios == sorted(ratios) and (ratios[0], ratios[-1]) == (0.5, 2.0)
    assert b.nearest(3000, 1000) == (1536, 768) and b.nearest(1000, 1000) == (1088, 1088)
    assert len(AspectBuckets(num_buckets=4).sizes) == 3  # the square and the two extremes


def test_mirrored_parsing_swaps_left_and_right():
    from annotate_anyone.daring.masks import mirror_labels

    m = np.zeros((2, 5), np.uint8)
    m[:, 0], m[:, 1], m[:, 2], m[:, 4] = 9, 14, 12, 2  # left shoe, left arm, left leg, hair
    assert mirror_labels(m).tolist() == [[2, 0, 13, 15, 10]] * 2


def test_flip_time_ids_and_shot_phrases(tmp_path):
    from dataclasses import replace

    from transformers import AutoTokenizer

    from annotate_anyone.annotation.phrases import SHOT_PHRASE_STYLES
    from annotate_anyone.daring.data import CaptionRules, DaringDataset
    from annotate_anyone.daring.synthetic_release import build_demo_release
    from annotate_anyone.daring.tiny_pipelines import train_tokenizer
    from annotate_anyone.datasets import open_release

    build_demo_release(tmp_path / "rel", count=2, sizes=((128, 192),), seed=4)
    tok = AutoTokenizer.from_pretrained(train_tokenizer(tmp_path / "tok"))
    source = open_release(tmp_path / "rel")
    buckets = AspectBuckets(min_side=64, max_side=256, step=64, max_area=128 * 256, max_ratio=2.0)
    still = CaptionRules(group_dropout=0.0, optional_keep=1.0, caption_dropout=0.0, hflip=0.0)
    a = DaringDataset(source, tok, buckets, rules=still, seed=5)[(0, 0)]
    b = DaringDataset(source, tok, buckets, rules=replace(still, hflip=1.0), seed=5)[(0, 0)]
    assert not a["flipped"] and b["flipped"] and a["caption"] == b["caption"] and a["spans"] == b["spans"]
    assert torch.equal(b["pixel_values"], a["pixel_values"].flip(-1))
    assert torch.allclose(b["masks"], a["masks"].flip(-1), atol=1e-6) and float(a["masks"][9].sum()) > 0
    assert a["original_size"] == (128, 192) and a["crop_top_left"] == (0, 0)  # CosmicMan's time ids: the bucket
    sdxl = DaringDataset(source, tok, buckets, rules=replace(still, time_ids="sdxl", hflip=0.0), seed=5)[(0, 0)]
    assert sdxl["original_size"] == (source.row(0).height, source.row(0).width)
    halves = DaringDataset(source, tok, buckets, rules=CaptionRules(), seed=5)
    flips = sum(halves[(1, epoch)]["flipped"] for epoch in range(120))
    assert 40 <= flips <= 80  # p = 0.5 by default
    shot = source.row(0).person_type
    assert a["caption"].split(", ")[0] == SHOT_PHRASE_STYLES["cosmicman"][shot]  # theirs by default
    ours = DaringDataset(source, tok, buckets, rules=replace(still, shot_phrases="annotate-anyone"), seed=5)[(0, 0)]
    assert ours["caption"].split(", ") == [SHOT_PHRASE_STYLES["annotate-anyone"][shot], *a["caption"].split(", ")[1:]]


def test_bf16_and_checkpointing_follow_cuda_by_default():
    from annotate_anyone.daring.config import TrainConfig
    from annotate_anyone.daring.train import resolve_precision

    config = TrainConfig.model_validate({"model": {"path": "m"}, "data": {"index": "i"}, "output_dir": "o"})
    assert config.mixed_precision == "auto" and config.gradient_checkpointing == "auto"
    assert config.data.buckets.scheme == "cosmicman" and config.data.hflip == 0.5
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    assert resolve_precision(config) == ("bf16" if bf16 else "no", cuda)
    explicit = config.model_copy(update={"mixed_precision": "no", "gradient_checkpointing": True})
    assert resolve_precision(explicit) == ("no", True)

"""Attention alignment: how much of each group's cross-attention falls inside its mask.

For every sample and usable span, the map is the attention averaged over the span's tokens, the
captured layers and heads. ``share`` = map mass inside the (soft) mask / total mass; ``iou`` = IoU of
``map >= threshold * max(map)`` with ``mask >= 0.5``; ``chance`` = mask area share (what uniform
attention would score). Reported per group and overall (mean over all sample-group pairs).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotate_anyone.daring.attention import AttentionStore, CapturingAttnProcessor, install_capture
from annotate_anyone.daring.components import TextConditioner
from annotate_anyone.daring.diffusion import encode_latents, noise_batch
from annotate_anyone.daring.training_captions import NUM_GROUPS

if TYPE_CHECKING:
    import torch

GROUP_NAMES = (
    "person", "body_shape", "background", "hair", "jumpsuit", "dress", "top", "coat", "bottoms", "shoes",
    "accessory_a", "accessory_b", "belt", "scarf", "style", "headband", "headscarf", "veil", "socks", "ties",
    "shot",
)  # fmt: skip


def slot_name(slot: int) -> str:
    return GROUP_NAMES[slot] if 0 <= slot <= NUM_GROUPS else str(slot)


def span_scores(maps: list[torch.Tensor], mask: torch.Tensor, start: int, end: int, threshold: float) -> dict:
    """Share, IoU and chance for one sample's span; ``maps`` per layer ``(heads, P, T)``, mask ``(h, w)``."""
    import torch

    attn = torch.stack([m[:, :, start:end].float().mean(-1).mean(0) for m in maps]).mean(0)  # (P,)
    soft = mask.flatten().float()
    share = float((attn * soft).sum() / attn.sum().clamp(min=1e-12))
    pred = attn >= threshold * attn.max()
    truth = soft >= 0.5
    union = (pred | truth).sum()
    iou = float((pred & truth).sum() / union) if union > 0 else 0.0
    return {"share": share, "iou": iou, "chance": float(soft.mean())}


def attention_alignment(
    unet: Any,
    *,
    vae: Any,
    scheduler: Any,
    conditioner: TextConditioner,
    store: AttentionStore,
    samples: list[dict[str, Any]],
    device: torch.device,
    timesteps: tuple[int, ...] = (250, 500, 750),
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Alignment of a UNet whose processors record into ``store``, over samples (one at a time) and timesteps."""
    import torch

    per_slot: dict[str, list[dict]] = defaultdict(list)
    was_training = unet.training
    unet.eval()
    try:
        for k, sample in enumerate(samples):
            if not sample["spans"]:
                continue
            gen = torch.Generator().manual_seed(seed * 7919 + k)
            pixels = sample["pixel_values"][None]
            latents = encode_latents(vae, pixels.to(device), gen)
            cond = conditioner.encode(
                [sample["caption"]],
                device,
                original_size=torch.tensor([sample["original_size"]]),
                crop_top_left=torch.tensor([sample["crop_top_left"]]),
                target_size=tuple(pixels.shape[-2:]),
                dtype=unet.dtype,
            )
            for t in timesteps:
                noised = noise_batch(scheduler, latents, gen, timesteps=torch.tensor([t]))
                store.arm(tuple(sample["masks"].shape[-2:]))
                with torch.no_grad():
                    unet(noised.noisy.to(unet.dtype), noised.timesteps, **cond)
                maps = [m[0] for m in store.collect()]
                store.disarm()
                for slot, start, end in sample["spans"]:
                    mask = sample["masks"][slot]
                    if float(mask.sum()) > 0:
                        per_slot[slot_name(slot)].append(span_scores(maps, mask, start, end, threshold))
    finally:
        unet.train(was_training)

    def mean(rows: list[dict]) -> dict[str, float]:
        return {key: sum(r[key] for r in rows) / len(rows) for key in ("share", "iou", "chance")} | {"pairs": len(rows)}

    everything = [r for rows in per_slot.values() for r in rows]
    return {
        "overall": mean(everything) if everything else {"share": 0.0, "iou": 0.0, "chance": 0.0, "pairs": 0},
        "groups": {name: mean(rows) for name, rows in sorted(per_slot.items())},
        "samples": len(samples),
        "timesteps": list(timesteps),
        "threshold": threshold,
    }


def evaluation_samples(dataset: Any, count: int) -> list[dict[str, Any]]:
    """A fixed set of samples: the first ``count`` rows, composed with the dataset's rules at epoch -1."""
    return [dataset[(i, -1)] for i in range(min(count, len(dataset)))]


def train_eval(
    checkpoint: Path,
    release: Path,
    *,
    data_root: Path | None = None,
    samples: int = 16,
    timesteps: tuple[int, ...] = (250, 500, 750),
    seed: int = 0,
    threshold: float = 0.5,
    use_ema: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Alignment of a trained checkpoint on a release (a parquet file or a folder of them).

    Captions are composed without group or caption dropout and with every optional group, so each
    group present in a sample is scored. Returns the report of :func:`attention_alignment`.
    """
    import torch

    from annotate_anyone.daring.checkpoints import load_checkpoint_unet, read_meta
    from annotate_anyone.daring.components import load_components
    from annotate_anyone.daring.data import DaringDataset, open_training_release
    from annotate_anyone.daring.train import buckets_from, rules_from

    meta = read_meta(checkpoint)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    components = load_components(meta.config.model.kind, meta.config.model.path)
    for frozen in (components.vae, *components.text_encoders):
        frozen.to(target)
    unet = load_checkpoint_unet(checkpoint, use_ema=use_ema).to(target)
    store = AttentionStore()
    install_capture(unet, CapturingAttnProcessor(store))
    data = meta.config.data
    dataset = DaringDataset(
        open_training_release(Path(release), data_root),
        components.tokenizers[0],
        buckets_from(data),
        rules=rules_from(data, evaluation=True),
        map_factor=data.map_factor,
        seed=seed,
    )
    report = attention_alignment(
        unet,
        vae=components.vae,
        scheduler=components.scheduler,
        conditioner=TextConditioner(components, data.max_tokens),
        store=store,
        samples=evaluation_samples(dataset, samples),
        device=target,
        timesteps=timesteps,
        seed=seed,
        threshold=threshold,
    )
    return report | {"checkpoint": str(checkpoint), "weights": "ema" if use_ema and meta.has_ema else "unet"}

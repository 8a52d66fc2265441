"""HOLA overhead: the same UNet, batch and resolution, training step with HOLA vs the noise loss alone.

A step is UNet forward, loss(es), backward and an AdamW update on random latents and text
embeddings (the frozen VAE and text encoders cost the same in both modes and are left out, which
makes the ratio stricter). Modes alternate step by step in one process; the table gives the
median step time and the peak memory of each mode (CUDA: max allocated; CPU: peak RSS of a
separate child process per mode). The last line is ``ratio <HOLA step time / plain step time>``.

    python bench/hola_overhead.py                       # tiny SD1.5-shaped UNet on CPU
    python bench/hola_overhead.py --device cuda --unet sd15 --size 512 --batch 4 --bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def build_unet(name: str):
    from diffusers import UNet2DConditionModel

    from annotate_anyone.daring.tiny_pipelines import tiny_unet

    torch.manual_seed(0)
    if name == "tiny":
        return tiny_unet("sd15", 64, 0, seed=0, channels=(32, 64, 64))
    if name == "tiny-xl":
        return tiny_unet("sdxl", 64, 32, seed=0, channels=(32, 64, 64))
    if name == "sd15":  # the SD1.5 UNet layout (860M parameters), random weights
        return UNet2DConditionModel(
            sample_size=64, cross_attention_dim=768, attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280)
        )
    raise SystemExit(f"unknown --unet {name}")


def make_batch(unet, args, device):
    g = torch.Generator().manual_seed(1)
    cfg = unet.config
    lat = args.size // 8
    b = args.batch
    kw = {"encoder_hidden_states": torch.randn(b, 77, cfg.cross_attention_dim, generator=g).to(device)}
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kw["added_cond_kwargs"] = {
            "text_embeds": torch.randn(b, pooled, generator=g).to(device),
            "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]] * b).float().to(device),
        }
    m = args.size // 16
    masks = (torch.rand(b, 21, m, m, generator=g) > 0.5).float().to(device)
    spans = [[(slot, 1 + 4 * k, 4 + 4 * k) for k, slot in enumerate([20, 0, 1, 2, 3, 6, 8, 9, 10, 14])]] * b
    x = torch.randn(b, 4, lat, lat, generator=g).to(device)
    target = torch.randn(b, 4, lat, lat, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    return x, t, kw, target, masks, spans


class Runner:
    def __init__(self, args, device):
        from diffusers.models.attention_processor import AttnProcessor2_0

        from annotate_anyone.daring.attention import AttentionStore, CapturingAttnProcessor

        self.args, self.device = args, device
        self.unet = build_unet(args.unet).to(device).train()
        if args.checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.store = AttentionStore()
        self.capture, self.stock = CapturingAttnProcessor(self.store), AttnProcessor2_0()
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=1e-6)
        self.batch = make_batch(self.unet, args, device)
        self.dtype = torch.bfloat16 if args.bf16 else None

    def step(self, hola: bool) -> float:
        from annotate_anyone.daring.hola import hola_loss

        x, t, kw, target, masks, spans = self.batch
        self.unet.set_attn_processor(self.capture if hola else self.stock)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        if hola:
            self.store.arm((self.args.size // 16, self.args.size // 16))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype is not None):
            pred = self.unet(x, t, **kw).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        if hola:
            loss = loss + hola_loss(self.store.collect(), masks, spans).loss
        loss.backward()
        self.store.disarm()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start


def child_peak(args, mode: str) -> float:
    """Peak RSS (MiB) of a child process running only ``mode`` (CPU memory figure)."""
    cmd = [sys.executable, __file__, *sys.argv[1:], "--only", mode]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--unet", default="tiny", choices=["tiny", "tiny-xl", "sd15"])
    p.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size/8)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--only", choices=["plain", "hola"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runner = Runner(args, device)

    if args.only:  # child: peak memory of one mode
        for _ in range(args.warmup + 2):
            runner.step(args.only == "hola")
        print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return

    for _ in range(args.warmup):
        runner.step(False)
        runner.step(True)
    times = {"plain": [], "hola": []}
    peaks = {}
    for i in range(args.steps):
        order = ("plain", "hola") if i % 2 == 0 else ("hola", "plain")
        for mode in order:
            times[mode].append(runner.step(mode == "hola"))
    if device.type == "cuda":
        for mode in ("plain", "hola"):
            torch.cuda.reset_peak_memory_stats()
            runner.step(mode == "hola")
            peaks[mode] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peaks = {mode: child_peak(args, mode) for mode in ("plain", "hola")}

    params = sum(p.numel() for p in runner.unet.parameters()) / 1e6
    print(f"device={device} unet={args.unet} ({params:.1f}M params) image={args.size}px batch={args.batch} "
          f"bf16={args.bf16} checkpointing={args.checkpointing} steps={args.steps} "
          f"threads={torch.get_num_threads()}")  # fmt: skip
    print(f"{'mode':<8}{'median s/step':>15}{'mean s/step':>13}{'peak MiB':>11}")
    for mode in ("plain", "hola"):
        print(
            f"{mode:<8}{statistics.median(times[mode]):>15.4f}{statistics.mean(times[mode]):>13.4f}{peaks[mode]:>11.0f}"
        )
    print(f"memory ratio {peaks['hola'] / peaks['plain']:.3f}")
    print(f"ratio {statistics.median(times['hola']) / statistics.median(times['plain']):.3f}")


if __name__ == "__main__":
    main()

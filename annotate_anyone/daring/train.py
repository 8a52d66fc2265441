"""The Daring training loop (accelerate): noise loss + lambda * HOLA, EMA, checkpoints with exact resume.

Randomness is a pure function of (seed, step, micro-batch) and (seed, epoch, sample), and the data
position is part of the checkpoint, so a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotate_anyone.daring.attention import AttentionStore, CapturingAttnProcessor, install_capture
from annotate_anyone.daring.buckets import AspectBuckets
from annotate_anyone.daring.checkpoints import checkpoint_dir, list_checkpoints, write_meta
from annotate_anyone.daring.components import Components, TextConditioner, load_components
from annotate_anyone.daring.config import DataConfig, TrainConfig, load_config
from annotate_anyone.daring.data import (
    BucketBatchSampler,
    CaptionRules,
    DaringDataset,
    collate,
    open_training_release,
)
from annotate_anyone.daring.evaluate import attention_alignment, evaluation_samples
from annotate_anyone.daring.objective import DiffusionStep, HolaObjective
from annotate_anyone.errors import NotFound

LOG_FILE = "train_log.jsonl"


def buckets_from(data: DataConfig) -> AspectBuckets:
    return AspectBuckets(**data.buckets.model_dump())


def rules_from(data: DataConfig, *, evaluation: bool = False) -> CaptionRules:
    """Caption and augmentation rules of a config; ``evaluation`` turns every dropout and the flip off."""
    return CaptionRules(
        max_tokens=data.max_tokens,
        group_dropout=0.0 if evaluation else data.group_dropout,
        optional_keep=1.0 if evaluation else data.optional_keep,
        caption_dropout=0.0 if evaluation else data.caption_dropout,
        mask_antialias=data.mask_antialias,
        hflip=0.0 if evaluation else data.hflip,
        shot_phrases=data.shot_phrases,
        time_ids=data.time_ids,
    )


def build_dataset(config: TrainConfig, tokenizer: Any, *, evaluation: bool = False) -> DaringDataset:
    """The training dataset (or, with ``evaluation``, the no-dropout variant used for alignment)."""
    data = config.data
    source = open_training_release(data.index, data.root)
    return DaringDataset(
        source,
        tokenizer,
        buckets_from(data),
        rules=rules_from(data, evaluation=evaluation),
        map_factor=data.map_factor,
        seed=config.seed,
    )


def resolve_precision(config: TrainConfig) -> tuple[str, bool]:
    """``(mixed_precision, gradient_checkpointing)`` with ``auto`` settled: bf16 and checkpointing where
    CUDA is present (bf16 only where the GPU has it), neither on CPU (the recipe's choice, made safe)."""
    import torch

    cuda = torch.cuda.is_available()
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    checkpointing = config.gradient_checkpointing
    return precision, bool(cuda if checkpointing == "auto" else checkpointing)


@dataclass
class TrainState:
    """Loop position, checkpointed with the model (accelerate custom object)."""

    step: int = 0
    epoch: int = 0
    position: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]


class JsonlLog:
    """Appends one JSON object per line (main process only)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


class Trainer:
    """Runs a :class:`TrainConfig` with the given components, attention store and HOLA objective.

    Pass ``objective=None`` for the plain noise loss (no capture processor is installed then).
    """

    def __init__(
        self,
        config: TrainConfig,
        components: Components,
        *,
        store: AttentionStore | None = None,
        processor: Any = None,
        objective: HolaObjective | None = None,
    ) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        self.config, self.c = config, components
        precision, checkpointing = resolve_precision(config)
        self.checkpointing = checkpointing
        self.accelerator = Accelerator(
            mixed_precision=precision,
            project_config=ProjectConfiguration(project_dir=str(config.output_dir)),
        )
        self.device = self.accelerator.device
        self.store = store if objective is not None else None
        if objective is not None:
            self.store = store or AttentionStore()
            install_capture(components.unet, processor or CapturingAttnProcessor(self.store))
        unet = components.unet
        if checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        for frozen in (components.vae, *components.text_encoders):
            frozen.to(self.device)
        self.ema = None
        if config.ema_decay is not None:
            from diffusers import UNet2DConditionModel
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(
                unet.parameters(), decay=config.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config
            )
        o = config.optim
        optimizer = torch.optim.AdamW(unet.parameters(), lr=o.lr, weight_decay=o.weight_decay, betas=o.betas, eps=o.eps)
        self.unet, self.optimizer = self.accelerator.prepare(unet, optimizer)
        if self.ema is not None:
            self.ema.to(self.device)
            self.accelerator.register_for_checkpointing(self.ema)
        self.state = TrainState()
        self.accelerator.register_for_checkpointing(self.state)
        self.conditioner = TextConditioner(components, config.data.max_tokens)
        self.step_fn = DiffusionStep(
            vae=components.vae,
            scheduler=components.scheduler,
            conditioner=self.conditioner,
            store=self.store,
            objective=objective,
            noise_offset=config.noise_offset,
            map_factor=config.data.map_factor,
        )
        self.dataset = build_dataset(config, components.tokenizers[0])
        self.sampler = BucketBatchSampler(
            self.dataset.bucket_of,
            config.batch_size,
            seed=config.seed,
            shard=(self.accelerator.process_index, self.accelerator.num_processes),
        )
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        self.log = JsonlLog(Path(config.output_dir) / LOG_FILE, self.accelerator.is_main_process)
        self._validation: list[dict[str, Any]] | None = None

    # -- checkpoints -------------------------------------------------------------------------------
    def resume(self) -> Path | None:
        """Load the configured checkpoint (``latest`` or a path); returns it, or ``None`` for a fresh start."""
        resume = self.config.resume
        if resume is None:
            return None
        if resume == "latest":
            found = list_checkpoints(self.config.output_dir)
            if not found:
                return None
            path = found[-1]
        else:
            path = Path(resume)
            if not path.exists():
                raise NotFound(f"checkpoint {path} does not exist")
        self.accelerator.load_state(str(path))
        return path

    def save_checkpoint(self) -> Path:
        """Accelerate state (model, optimizer, RNG, EMA, position) + UNet folders + ``daring.json`` (last)."""
        path = checkpoint_dir(self.config.output_dir, self.state.step)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            unet = self.accelerator.unwrap_model(self.unet)
            unet.save_pretrained(path / "unet")
            if self.ema is not None:
                self.ema.store(unet.parameters())
                self.ema.copy_to(unet.parameters())
                unet.save_pretrained(path / "unet_ema")
                self.ema.restore(unet.parameters())
            write_meta(path, step=self.state.step, has_ema=self.ema is not None, config=self.config)
            self._prune()
        return path

    def _prune(self) -> None:
        keep = self.config.keep_checkpoints
        if keep:
            for old in list_checkpoints(self.config.output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    # -- validation --------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """Per-group attention alignment on a fixed validation set (needs the capture processor)."""
        if self.store is None or not self.config.validation_samples:
            return None
        if self._validation is None:
            evaluation = build_dataset(self.config, self.c.tokenizers[0], evaluation=True)
            self._validation = evaluation_samples(evaluation, self.config.validation_samples)
        return attention_alignment(
            self.accelerator.unwrap_model(self.unet),
            vae=self.c.vae,
            scheduler=self.c.scheduler,
            conditioner=self.conditioner,
            store=self.store,
            samples=self._validation,
            device=self.device,
            seed=self.config.seed,
        )

    # -- loop --------------------------------------------------------------------------------------
    def _batches(self):  # noqa: ANN202
        from torch.utils.data import DataLoader

        keys = self.sampler.iterate(self.state.epoch, self.state.position)

        class _Keys:
            def __iter__(self):  # noqa: ANN204
                return (batch for _, _, batch in keys())

        loader = DataLoader(
            self.dataset, batch_sampler=_Keys(), collate_fn=collate, num_workers=self.config.data.num_workers
        )
        return zip(keys(), loader, strict=False)

    def _update(self) -> float:
        cfg = self.config
        grad_norm = float("nan")
        if cfg.optim.max_grad_norm is not None:
            grad_norm = float(self.accelerator.clip_grad_norm_(self.unet.parameters(), cfg.optim.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.unet.parameters())
        return grad_norm

    def _across_processes(self, totals: dict[str, float]) -> dict[str, float]:
        """The step's loss terms averaged over processes and HOLA samples summed (a collective: every
        process logs at the same steps)."""
        n = self.accelerator.num_processes
        if n == 1:
            return totals
        import torch

        local = torch.tensor(
            [totals["loss"], totals["noise"], totals["hola"], float(totals["hola_samples"])],
            dtype=torch.float64,
            device=self.device,
        )
        summed = self.accelerator.reduce(local, reduction="sum").tolist()
        return {"loss": summed[0] / n, "noise": summed[1] / n, "hola": summed[2] / n, "hola_samples": int(summed[3])}

    def run(self) -> Path:
        """Train until ``max_steps``; returns the last checkpoint folder."""
        cfg = self.config
        resumed = self.resume()
        self.log.write(
            kind="start",
            step=self.state.step,
            processes=self.accelerator.num_processes,
            mixed_precision=self.accelerator.mixed_precision,
            gradient_checkpointing=bool(
                getattr(self.accelerator.unwrap_model(self.unet), "is_gradient_checkpointing", False)
            ),
            device=str(self.device),
            resumed_from=str(resumed) if resumed else None,
        )
        accum = cfg.grad_accum
        micro, totals, started = 0, {"loss": 0.0, "noise": 0.0, "hola": 0.0, "hola_samples": 0}, time.perf_counter()
        last: Path | None = None
        for (epoch, position, _), batch in self._batches():
            if self.state.step >= cfg.max_steps:
                break
            sync = micro == accum - 1
            generator = DiffusionStep.generator(cfg.seed, self.state.step, micro)
            context = self.accelerator.no_sync(self.unet) if not sync else nullcontext()
            with context:
                out = self.step_fn.losses(self.unet, batch, generator, device=self.device)
                self.accelerator.backward(out.loss / accum)
            self.step_fn.release()
            totals["loss"] += out.loss.item() / accum
            totals["noise"] += out.noise.item() / accum
            totals["hola"] += (out.hola.item() if out.hola is not None else 0.0) / accum
            totals["hola_samples"] += out.hola_samples
            micro += 1
            if not sync:
                continue
            grad_norm = self._update()
            micro = 0
            self.state.step += 1
            self.state.epoch, self.state.position = epoch, position + 1
            if self.state.step % cfg.log_every == 0:
                totals = self._across_processes(totals)
                self.log.write(
                    step=self.state.step,
                    loss=totals["loss"],
                    noise_loss=totals["noise"],
                    hola_loss=totals["hola"],
                    hola_samples=totals["hola_samples"],
                    grad_norm=grad_norm,
                    lr=self.optimizer.param_groups[0]["lr"],
                    epoch=epoch,
                    seconds=time.perf_counter() - started,
                )
            totals = dict.fromkeys(totals, 0.0) | {"hola_samples": 0}
            if cfg.validate_every and self.state.step % cfg.validate_every == 0:
                report = self.validate()
                if report is not None:
                    self.log.write(step=self.state.step, kind="alignment", **report)
            if self.state.step % cfg.checkpoint_every == 0 or self.state.step == cfg.max_steps:
                last = self.save_checkpoint()
        if last is None:
            found = list_checkpoints(cfg.output_dir)
            last = found[-1] if found else self.save_checkpoint()
        self.accelerator.end_training()
        return last


def train(config_path: Path, *, objective: HolaObjective | None = None, plain: bool = False) -> Path:
    """Train from a YAML/TOML config; returns the last checkpoint folder.

    ``objective`` defaults to ``HolaObjective(config.hola_weight)``; ``plain`` (or a zero weight)
    trains on the noise loss alone.
    """
    config = load_config(Path(config_path))
    components = load_components(config.model.kind, config.model.path)
    if objective is None and not plain and config.hola_weight > 0:
        objective = HolaObjective(config.hola_weight)
    return Trainer(config, components, objective=objective).run()

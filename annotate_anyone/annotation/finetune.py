"""Fine-tuning the VLM labeler on human answers, as the paper's flywheel does: LoRA adapters (peft).

The objective is the labeler's own scoring (:func:`annotate_anyone.annotation.labelers.vlm.option_logprobs`):
for every human answer, the log-likelihoods of the question's allowed values (each value's tokens after
the prompt, the person crop in the model's input, teacher forcing) are softmaxed over the values and
trained with cross-entropy against the human's value. Adapters go to the language model's attention
projections (``q_proj`` / ``v_proj``, per family in :data:`FAMILY_TARGETS`, or any layer names given)
and the vision-to-text projector; the vision tower is never touched. Any family the labeler loads works
(Qwen2-VL/Qwen2.5-VL, LLaVA, Idefics3/SmolVLM, BLIP-2, InstructBLIP).

Every fine-tune is a new model version (``vlm-ft<N>:<checkpoint>:<digest>``): its adapter is stored in
the object store (``models/vlm/<version>.zip``, unpacked into the model cache when loaded), and a
``label_models`` row of kind ``vlm-lora`` records the base checkpoint, the parent version, the options and
the training metrics. Earlier versions stay stored and selectable (``AnnotationConfig.vlm_version``:
newest by default, ``base``, or a version id). The learned heads' VLM features are per version too
(``vlm:<version>``), so the heads retrain on a new version's features from the round after it.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotate_anyone.annotation.models import LabelModel
from annotate_anyone.errors import ConfigError, InvalidInput, MissingExtra, NotFound
from annotate_anyone.storage.base import ObjectStore

if TYPE_CHECKING:
    from annotate_anyone.annotation.settings import AnnotationConfig
    from annotate_anyone.settings import ModelsConfig, Settings

LORA_KIND = "vlm-lora"
BASE_VERSION = "base"  # AnnotationConfig.vlm_version: the checkpoint itself, no adapter
LATEST_VERSION = "latest"

# Leaf names of the language model's linear layers that get adapters, per ``text_config.model_type``.
FAMILY_TARGETS: dict[str, tuple[str, ...]] = {
    "opt": ("q_proj", "v_proj"),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen2_vl_text": ("q_proj", "v_proj"),
    "qwen2_5_vl_text": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "gemma2": ("q_proj", "v_proj"),
    "vicuna": ("q_proj", "v_proj"),
    "t5": ("q", "v"),  # BLIP-2 / InstructBLIP with a Flan-T5 language model
}
DEFAULT_TARGETS = ("q_proj", "v_proj")
# Names of the vision-to-text projector across families (BLIP-2, LLaVA, Idefics3/SmolVLM, Qwen2-VL).
PROJECTORS = ("language_projection", "multi_modal_projector", "connector", "merger", "mm_projector")
LANGUAGE_MODELS = ("language_model", "text_model")


@dataclass(slots=True)
class FinetuneOptions:
    """LoRA and optimiser settings of one fine-tune (stored with the version)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    lr: float = 5e-3
    steps: int = 40
    batch_size: int = 8
    seed: int = 0
    projector: bool = True  # also adapt the vision-to-text projector
    targets: tuple[str, ...] | None = None  # leaf names in the language model; default: per family
    min_labels: int = 8  # human answers needed before a fine-tune runs


@dataclass(slots=True)
class Example:
    """One human answer: the person crop, the question, its allowed values and the human's value."""

    image: Any  # PIL image (the person crop, as the labeler sees it)
    question: str
    options: Sequence[str]
    answer: str
    category: str = ""


@dataclass(slots=True)
class FinetuneResult:
    adapter_dir: Path
    target_modules: list[str]
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    n_examples: int = 0
    trainable_params: int = 0


def _torch() -> Any:
    try:
        import peft  # noqa: F401
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtra("VLM fine-tuning", "ml", "peft") from exc
    return torch


# -- which modules get adapters ------------------------------------------------------------------
def _language_model_prefix(model: Any) -> str:
    """Dotted name of the language model inside a VLM (the shortest module named like one)."""
    names = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in LANGUAGE_MODELS]
    if not names:
        raise ConfigError(f"no language model found in {type(model).__name__} (looked for {LANGUAGE_MODELS})")
    return min(names, key=len)


def target_modules(model: Any, targets: Sequence[str] | None = None, *, projector: bool = True) -> list[str]:
    """Full names of the linear layers that get LoRA adapters: the language model's attention
    projections (leaf names from ``targets`` or :data:`FAMILY_TARGETS`) and the projector's linears."""
    torch = _torch()
    lm = _language_model_prefix(model)
    text_type = getattr(getattr(model.config, "text_config", None), "model_type", None) or ""
    leaves = set(targets or FAMILY_TARGETS.get(text_type, DEFAULT_TARGETS))
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        in_lm = name.startswith(lm + ".")
        if in_lm and parts[-1] in leaves:
            out.append(name)
        elif projector and not in_lm and any(p in PROJECTORS for p in parts):
            out.append(name)
    if not any(n.startswith(lm + ".") for n in out):
        raise ConfigError(f"none of {sorted(leaves)} found in the language model {lm!r} of {type(model).__name__}")
    return out


# -- the option-scoring objective ------------------------------------------------------------------
class OptionObjective:
    """The labeler's own differentiable scoring (:func:`labelers.vlm.option_logprobs`: one full forward per
    example, all its options batched), so training optimises exactly what labelling scores."""

    def __init__(self, scorer: Any) -> None:
        from annotate_anyone.annotation.labelers.vlm import option_logprobs

        self.scorer = scorer
        self.function = option_logprobs

    def encode(self, ex: Example) -> dict[str, Any]:
        if ex.answer not in ex.options:
            raise InvalidInput(f"{ex.answer!r} is not one of the options {list(ex.options)}")
        return {"item": (ex.image, ex.question, list(ex.options)), "target": list(ex.options).index(ex.answer)}

    def loss(self, items: Sequence[dict[str, Any]]) -> Any:
        """Mean cross-entropy of the human's values under the softmax over each question's option scores."""
        out = self.function(self.scorer, [it["item"] for it in items], normalize=True)
        return sum(-lp[it["target"]] for lp, it in zip(out, items, strict=True)) / len(items)


# -- training --------------------------------------------------------------------------------------
def train_lora(
    checkpoint: str | Path,
    examples: Sequence[Example],
    out_dir: str | Path,
    *,
    options: FinetuneOptions | None = None,
    device: str = "cpu",
) -> FinetuneResult:
    """Train LoRA adapters on ``examples`` with the option-scoring objective; saves them to ``out_dir``."""
    torch = _torch()
    from peft import LoraConfig, get_peft_model

    opts = options or FinetuneOptions()
    if not examples:
        raise InvalidInput("fine-tuning needs at least one human answer")
    from annotate_anyone.annotation.labelers.vlm import OptionScorer

    t0 = time.perf_counter()
    torch.manual_seed(opts.seed)

    scorer = OptionScorer(checkpoint, device=device)
    model = scorer.model
    targets = target_modules(model, opts.targets, projector=opts.projector)
    lora = LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets,
                      bias="none")  # fmt: skip
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    scorer.model = peft_model.get_base_model()  # the transformers model, LoRA layers inside
    objective = OptionObjective(scorer)
    encoded = [objective.encode(ex) for ex in examples]
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    rng = random.Random(opts.seed)
    order: list[int] = []
    losses = []
    for _ in range(opts.steps):
        batch = []
        for _ in range(min(opts.batch_size, len(encoded))):
            if not order:
                order = list(range(len(encoded)))
                rng.shuffle(order)
            batch.append(order.pop())
        optim.zero_grad()
        loss = objective.loss([encoded[i] for i in batch])
        loss.backward()
        optim.step()
        losses.append(round(float(loss.detach()), 5))
    peft_model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out))
    return FinetuneResult(out, targets, losses, time.perf_counter() - t0, len(examples),
                          sum(p.numel() for p in params))  # fmt: skip


# -- adapters as model versions -------------------------------------------------------------------
def pack_adapter(adapter_dir: str | Path) -> bytes:
    """The adapter folder as zip bytes (sorted, fixed timestamps: same files, same bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(adapter_dir).rglob("*")):
            if f.is_file():
                info = zipfile.ZipInfo(str(f.relative_to(adapter_dir)), date_time=(1980, 1, 1, 0, 0, 0))
                z.writestr(info, f.read_bytes(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def unpack_adapter(data: bytes, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            target = (out / name).resolve()
            if not target.is_relative_to(out.resolve()):
                raise InvalidInput(f"adapter archive entry {name!r} leaves its folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
    return out


def load_finetuned_labeler(
    checkpoint: str | Path, adapter_dir: str | Path, version: str, *, device: str = "cpu", dtype: str | None = None
) -> Any:
    """A :class:`VLMLabeler` over ``checkpoint`` with the adapter applied, reporting ``version``."""
    _torch()
    from peft import PeftModel

    from annotate_anyone.annotation.labelers.vlm import OptionScorer, VLMLabeler

    scorer = OptionScorer(checkpoint, device=device, **({"dtype": dtype} if dtype else {}))
    # Not merged (an adapter on a tied output layer, lm_head, would change the input embeddings too): the
    # LoRA layers sit inside the transformers model, which the scorer and its family adapters keep using.
    scorer.model = PeftModel.from_pretrained(scorer.model, str(adapter_dir)).get_base_model().eval()
    scorer.model_version = version
    return VLMLabeler(scorer)


def finetuned_labelers(
    config: AnnotationConfig, models: ModelsConfig | None, extra: list[Any], vlm_adapter: tuple[str, Path]
) -> tuple[list[Any], Any]:
    """The engine's model-backed labelers with the fine-tuned VLM version in the VLM's place: alone, or
    second in the CLIP cascade when ``extra`` holds the CLIP labeler (loaded once per process, per version).
    ``models`` None: ModelsConfig's defaults on ``config.device`` (as :func:`labelers.clip.model_labelers`)."""
    from annotate_anyone.annotation.labelers.clip import CascadeLabeler
    from annotate_anyone.executors.gpu import load_once, resolve_device, resolve_dtype
    from annotate_anyone.settings import ModelsConfig

    if models is None:
        models, device = ModelsConfig(), config.device
    else:
        device = resolve_device(models.device)
    dtype = str(resolve_dtype(models.dtype, device)).removeprefix("torch.")
    version, folder = vlm_adapter
    checkpoint = config.vlm_checkpoint
    vlm = load_once("vlm-lora", checkpoint, lambda: load_finetuned_labeler(checkpoint, folder, version, device=device,
                    dtype=dtype), version=version, device=device, dtype=dtype)  # fmt: skip
    if not extra:
        return [vlm], vlm
    return [CascadeLabeler(extra[0], vlm, gate=float(models.cascade_gate))], vlm


def training_digest(examples: Sequence[Example]) -> str:
    """Identity of a training set (questions, answers and image bytes), to skip refitting the same data."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.category, ex.question, list(ex.options), ex.answer]).encode())
        h.update(np.asarray(ex.image).tobytes())
    return h.hexdigest()[:16]


def option_dict(opts: FinetuneOptions) -> dict[str, Any]:
    """The options as stored with a version (JSON)."""
    d = asdict(opts)
    d["targets"] = list(opts.targets) if opts.targets else None
    return d


# -- the flywheel step: human answers -> a new version ------------------------------------------------
def base_version(checkpoint: str | Path) -> str:
    """The version id the labeler reports for the bare checkpoint (same rule as ``OptionScorer``)."""
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise ConfigError(f"no transformers checkpoint in {path} (config.json missing)")
    return f"vlm:{path.name}:{hashlib.sha256((path / 'config.json').read_bytes()).hexdigest()[:8]}"


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in version)


def _cache_dir(model_cache_dir: Path) -> Path:
    """Where fine-tuned adapters are unpacked: ``adapters/`` in the model cache."""
    return Path(model_cache_dir) / "adapters"


def lora_versions(session: Session, checkpoint: str | Path | None = None) -> list[LabelModel]:
    """Stored fine-tuned versions (oldest first), of ``checkpoint`` only when given."""
    rows = list(session.scalars(select(LabelModel).where(LabelModel.kind == LORA_KIND).order_by(LabelModel.id)))
    if checkpoint is None:
        return rows
    base = base_version(checkpoint)
    return [r for r in rows if (r.params or {}).get("base_version") == base]


def human_examples(
    session: Session, store: ObjectStore, *, config: AnnotationConfig, categories: Sequence[str] | None = None
) -> list[Example]:
    """Every human-verified answer outside the gold set, as (person crop, question, options, value)."""
    from annotate_anyone.annotation.labelers.vlm import crop_person
    from annotate_anyone.annotation.service import _human_truth, _load_rgb
    from annotate_anyone.annotation.taxonomy import category_id, load_taxonomy
    from annotate_anyone.catalog.models import Image, Person

    taxonomy = load_taxonomy(config.taxonomy_path)
    truth = _human_truth(session, gold=False)
    wanted = set(categories) if categories is not None else None
    by_person: dict[int, list[tuple[int, str, str]]] = {}
    for (pid, group, key), value in sorted(truth.items()):
        if wanted is None or category_id(group, key) in wanted:
            by_person.setdefault(pid, []).append((group, key, value))
    persons = session.scalars(select(Person).where(Person.id.in_(list(by_person))).order_by(Person.id)).all()
    images: dict[int, np.ndarray] = {}
    out = []
    for person in persons:
        if person.image_id not in images:
            image = session.get(Image, person.image_id)
            if image is None:
                continue
            images[person.image_id] = _load_rgb(store, image.storage_key)
        crop = crop_person(images[person.image_id], person.box)
        for group, key, value in by_person[person.id]:
            attr = taxonomy.attribute(group, key)
            options = list(taxonomy.options(group, key))
            if value in options:
                out.append(Example(crop, attr.question, options, value, category_id(group, key)))
    return out


def finetune_vlm(
    session: Session,
    store: ObjectStore,
    *,
    settings: Settings,
    options: FinetuneOptions | None = None,
    categories: Sequence[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Fine-tune the configured VLM on the human answers so far: a new stored, selectable version.

    Returns ``{"version": ..., "created": bool, ...}``; ``version`` is ``None`` with a ``reason`` when
    nothing was trained (no VLM configured, too few answers). The same training set as the newest
    version's (same answers, options and base) makes no new version unless ``force``.
    """
    config = settings.annotation
    opts = options or FinetuneOptions()
    if not config.vlm_checkpoint:
        return {"version": None, "created": False, "reason": "no VLM configured (the learned heads are the model)"}
    base = base_version(config.vlm_checkpoint)
    examples = human_examples(session, store, config=config, categories=categories)
    if len(examples) < opts.min_labels:
        return {"version": None, "created": False, "reason": f"{len(examples)} human answers, {opts.min_labels} needed"}
    digest = hashlib.sha256(
        json.dumps([base, training_digest(examples), option_dict(opts)], sort_keys=True).encode()
    ).hexdigest()[:16]
    versions = lora_versions(session, config.vlm_checkpoint)
    if versions and (versions[-1].params or {}).get("training_digest") == digest and not force:
        return {"version": versions[-1].version, "created": False, "reason": "same human answers as this version"}
    cache = _cache_dir(settings.model_cache_dir)
    work = cache / f"training-{digest}"
    from annotate_anyone.executors.gpu import resolve_device

    device = resolve_device(settings.models.device)
    result = train_lora(config.vlm_checkpoint, examples, work, options=opts, device=device)
    data = pack_adapter(work)
    n = len(lora_versions(session)) + 1
    version = f"vlm-ft{n}:{Path(config.vlm_checkpoint).name}:{hashlib.sha256(data).hexdigest()[:8]}"
    key = f"models/vlm/{_safe(version)}.zip"
    store.put_bytes(key, data)
    final = cache / _safe(version)
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.category] = counts.get(ex.category, 0) + 1
    params = {
        "base_checkpoint": str(config.vlm_checkpoint),
        "base_version": base,
        "parent": versions[-1].version if versions else base,
        "options": option_dict(opts),
        "target_modules": result.target_modules,
        "training_digest": digest,
    }
    metrics = {
        "n_examples": result.n_examples,
        "per_category": dict(sorted(counts.items())),
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": float(np.mean(result.losses[-5:])) if result.losses else None,
        "seconds": round(result.seconds, 2),
        "trainable_params": result.trainable_params,
    }
    session.add(LabelModel(version=version, kind=LORA_KIND, storage_key=key, params=params, metrics=metrics))
    session.flush()
    return {"version": version, "created": True, **metrics}


def resolve_vlm_version(
    session: Session, store: ObjectStore, *, config: AnnotationConfig, model_cache_dir: Path
) -> tuple[str, Path] | None:
    """The configured VLM version as (version, adapter folder), or ``None`` for the bare checkpoint.

    ``vlm_version``: ``None``/``latest`` the newest fine-tune of ``vlm_checkpoint`` (the checkpoint
    itself when there is none), ``base`` the checkpoint itself, or a version id (:class:`NotFound` if
    unknown). The adapter is unpacked from the object store into ``model_cache_dir`` on first use.
    """
    if not config.vlm_checkpoint or config.vlm_version == BASE_VERSION:
        return None
    if config.vlm_version in (None, LATEST_VERSION):
        versions = lora_versions(session, config.vlm_checkpoint)
        if not versions:
            return None
        row = versions[-1]
    else:
        row = session.scalars(
            select(LabelModel).where(LabelModel.kind == LORA_KIND, LabelModel.version == config.vlm_version)
        ).first()
        if row is None:
            raise NotFound(f"VLM version {config.vlm_version!r} not found (see `annotate-anyone flywheel versions`)")
        if (row.params or {}).get("base_version") != base_version(config.vlm_checkpoint):
            raise ConfigError(
                f"VLM version {row.version} was fine-tuned from another checkpoint than {config.vlm_checkpoint}"
            )
    folder = _cache_dir(model_cache_dir) / _safe(row.version)
    if not (folder / "adapter_config.json").is_file():
        if not row.storage_key or not store.exists(row.storage_key):
            raise NotFound(f"the adapter of VLM version {row.version} is missing from the object store")
        unpack_adapter(store.get_bytes(row.storage_key), folder)
    return row.version, folder

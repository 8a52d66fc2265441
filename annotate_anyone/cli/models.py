"""``annotate-anyone models check DIR``: is a local checkpoint folder a VLM the labeler can use?"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from annotate_anyone.errors import ConfigError

models_app = typer.Typer(help="Local model checkpoints.", no_args_is_help=True)


def smoke_image() -> Any:
    """A generated 96x160 image: a figure-like block (head, torso, legs) on a gradient background."""
    import numpy as np
    from PIL import Image

    h, w = 160, 96
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(40, 200, w, dtype=np.uint8)[None, :]
    img[..., 2] = np.linspace(200, 40, h, dtype=np.uint8)[:, None]
    img[10:40, 34:62] = (224, 180, 150)  # head
    img[40:95, 24:72] = (30, 90, 200)  # top
    img[95:150, 30:66] = (40, 40, 40)  # trousers
    return Image.fromarray(img)


def check_checkpoint(path: Path, *, device: str = "cpu", questions: int = 3) -> dict[str, Any]:
    """Load ``path``, score a few taxonomy questions on a generated image, and compare the cached scores with
    the full-sequence ones. Raises ``ConfigError`` (one line) when the folder is not a usable checkpoint."""
    import numpy as np

    from annotate_anyone.annotation.labelers.vlm import OptionScorer, softmax
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.annotation.vlm_adapters import adapter_for

    if not path.is_dir():
        raise ConfigError(f"{path}: not a folder")
    adapter = adapter_for(path)  # ConfigError when model_type is missing or unsupported
    t0 = time.perf_counter()
    try:
        scorer = OptionScorer(path, device=device)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a broken folder
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        why = f"{type(exc).__name__}: {first}"
        raise ConfigError(f"{path}: cannot load as a {adapter.family} checkpoint: {why}") from exc
    load_s = time.perf_counter() - t0
    cats = load_taxonomy().categories()[:questions]
    image = smoke_image()
    t0 = time.perf_counter()
    scores = scorer.score(image, [(c.question, c.options) for c in cats])
    score_s = time.perf_counter() - t0
    import torch

    with torch.no_grad():
        full = scorer.option_logprobs([(image, cats[0].question, cats[0].options)], normalize=False)[0]
    diff = float(np.abs(full.float().cpu().numpy() - scores[0]).max())
    answers = {}
    for cat, s in zip(cats, scores, strict=True):
        p = softmax(s)
        answers[cat.id] = {"value": cat.options[int(p.argmax())], "p": round(float(p.max()), 3)}
    return {
        "folder": str(path),
        "family": adapter.family,
        "adapter": type(adapter).__name__,
        "model_type": scorer.model_type,
        "model": type(scorer.model).__name__,
        "parameters": sum(p.numel() for p in scorer.model.parameters()),
        "dtype": str(scorer.model.dtype).removeprefix("torch."),
        "processor": type(scorer.processor).__name__,
        "image_processor": type(getattr(scorer.processor, "image_processor", None)).__name__,
        "chat_template": bool(getattr(scorer.processor, "chat_template", None)),
        "prompt": scorer.prompt("{question}"),
        "model_version": scorer.model_version,
        "load_s": round(load_s, 2),
        "smoke": {
            "questions": len(cats),
            "options": sum(len(c.options) for c in cats),
            "seconds": round(score_s, 3),
            "cached_vs_full_max_abs_diff": diff,
            "answers": answers,
        },
    }


@models_app.command("check")
def check(
    folder: Annotated[Path, typer.Argument(help="A local checkpoint folder (config.json, weights, processor files)")],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="One compact JSON object")] = False,
) -> None:
    """Report the checkpoint's family/adapter and processor, and score a generated image (exit 2 if unusable)."""
    report = check_checkpoint(folder, device=device)
    if as_json:
        typer.echo(json.dumps(report))
        return
    for key in ("folder", "family", "adapter", "model_type", "model", "parameters", "dtype", "processor",
                "image_processor", "chat_template", "prompt", "model_version", "load_s"):  # fmt: skip
        typer.echo(f"{key:16} {json.dumps(report[key]) if key == 'prompt' else report[key]}")
    smoke = report["smoke"]
    typer.echo(
        f"{'smoke':16} {smoke['questions']} questions, {smoke['options']} options in {smoke['seconds']} s; "
        f"cached vs full-sequence max |diff| {smoke['cached_vs_full_max_abs_diff']:.2e}"
    )
    for cat, ans in smoke["answers"].items():
        typer.echo(f"{'':16} {cat}: {ans['value']} (p={ans['p']})")

"""From crawled photos to trained weights: the demo's release, materialized, feeds the Daring CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotate_anyone.settings import Settings

pytest.importorskip("diffusers")

CONFIG = """
model: {{kind: sd15, path: {model}}}
data:
  index: {index}
  buckets: {{min_side: 128, max_side: 192, step: 64, max_area: 36864, max_ratio: 2}}
output_dir: {out}
seed: 3
batch_size: 2
max_steps: 2
checkpoint_every: 2
validate_every: 2
validation_samples: 2
optim: {{lr: 1.0e-3}}
"""


def test_demo_release_trains_through_the_cli(tmp_path: Path) -> None:
    from annotate_anyone.cli import app
    from annotate_anyone.daring.tiny_pipelines import build_tiny_pipeline
    from annotate_anyone.home.demo import run_demo
    from annotate_anyone.release.materialize import materialize
    from annotate_anyone.storage import open_store

    settings = Settings(home=tmp_path / "home", workers=1)
    summary = run_demo(settings)
    data = materialize(open_store(settings.store_url), summary["version"], tmp_path / "data")
    model = build_tiny_pipeline(tmp_path / "model", "sd15", seed=1)
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG.format(model=model, index=data, out=tmp_path / "run"))
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(config)])
    assert trained.exit_code == 0, trained.output
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000002"
    assert (checkpoint / "unet").is_dir()
    scored = runner.invoke(app, ["train-eval", str(checkpoint), str(data), "--samples", "2"])
    assert scored.exit_code == 0 and '"overall"' in scored.output, scored.output
    out = tmp_path / "gen.png"
    made = runner.invoke(app, ["generate", str(checkpoint), "an upper-body shot", str(out), "--steps", "2"])
    assert made.exit_code == 0 and out.stat().st_size > 0, made.output

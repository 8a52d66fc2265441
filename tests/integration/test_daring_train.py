"""Real training steps on tiny SD1.5- and SDXL-shaped models from a synthetic demo release."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from annotate_anyone.daring.synthetic_release import build_demo_release  # noqa: E402
from annotate_anyone.daring.tiny_pipelines import build_tiny_pipeline  # noqa: E402

CONFIG = """
model: {{kind: {kind}, path: {model}}}
data:
  index: {index}
  buckets: {{min_side: 128, max_side: 192, step: 64, max_area: 36864, max_ratio: 2}}
output_dir: {out}
seed: 11
batch_size: 2
grad_accum: 2
max_steps: {steps}
checkpoint_every: 2
validate_every: {validate}
validation_samples: 2
noise_offset: 0.05
ema_decay: 0.99
optim: {{lr: 1.0e-3}}
resume: {resume}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("daring")
    build_demo_release(root / "release", count=8, sizes=((128, 128), (128, 192)), seed=2)
    return root


def _config(workspace, name, kind="sd15", steps=4, resume="null", validate=4):
    model = workspace / f"model_{kind}"
    if not model.exists():
        build_tiny_pipeline(model, kind, seed=1)
    path = workspace / f"{name}.yaml"
    out = workspace / name
    path.write_text(
        CONFIG.format(
            kind=kind,
            model=model,
            index=workspace / "release" / "index.parquet",
            out=out,
            steps=steps,
            resume=resume,
            validate=validate,
        )  # fmt: skip
    )
    return path, out


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(next(folder.glob("*.safetensors"))))


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_train_checkpoint_and_exact_resume(workspace):
    from annotate_anyone.daring.train import train

    config, out = _config(workspace, "full")
    last = train(config)
    assert last.name == "step-0000004" and (last / "unet_ema").is_dir() and (last / "daring.json").exists()
    log = _log(out)
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(r["hola_loss"] > 0 and r["noise_loss"] > 0 for r in steps if r["hola_samples"])
    assert all(abs(r["loss"] - r["noise_loss"] - r["hola_loss"]) < 1e-5 for r in steps)
    alignment = next(r for r in log if r.get("kind") == "alignment")
    assert alignment["overall"]["pairs"] > 0 and "shot" in alignment["groups"]

    mid = out / "checkpoints" / "step-0000002"
    config_b, out_b = _config(workspace, "resumed", resume=str(mid))
    resumed = train(config_b)
    assert [r["step"] for r in _log(out_b) if "loss" in r] == [3, 4]
    for sub in ("unet", "unet_ema"):
        a, b = _weights(last / sub), _weights(resumed / sub)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in steps[2:]] == [r["loss"] for r in _log(out_b) if "loss" in r]

    before = _weights(mid / "unet")
    assert any(not torch.equal(before[k], _weights(last / "unet")[k]) for k in before)


def test_train_eval_and_generate(workspace, tmp_path):
    from PIL import Image

    from annotate_anyone.daring.evaluate import train_eval
    from annotate_anyone.daring.generate import generate

    checkpoint = workspace / "full" / "checkpoints" / "step-0000004"
    if not checkpoint.exists():
        pytest.skip("needs the training test's checkpoint")
    report = train_eval(checkpoint, workspace / "release", samples=2, timesteps=(500,))
    assert report["overall"]["pairs"] > 0 and 0.0 <= report["overall"]["share"] <= 1.0
    assert {"shot", "hair", "top"} <= set(report["groups"])
    image = generate(checkpoint, "a portrait shot, a asian adult female, red t-shirt", tmp_path / "x.png",
                     steps=2, height=64, width=64)  # fmt: skip
    with Image.open(image) as img:
        assert img.size == (64, 64)


def test_sdxl_shaped_training_step(workspace):
    from annotate_anyone.daring.train import train

    config, out = _config(workspace, "xl", kind="sdxl", steps=1, validate="null")
    last = train(config)
    steps = [r for r in _log(out) if "loss" in r]
    assert len(steps) == 1 and steps[0]["hola_loss"] > 0 and (last / "unet").is_dir()


def test_the_trainers_hola_is_one_mean_over_all_entries(workspace):
    """HOLA as the trainer computes it on real captured attention, real masks and spans equals a
    straightforward implementation of CosmicMan's normalisation (tests/unit/test_daring_hola.py)."""
    from annotate_anyone.daring.objective import HolaObjective
    from annotate_anyone.daring.train import train
    from tests.unit.test_daring_hola import reference_hola

    class Recording(HolaObjective):
        def __init__(self) -> None:
            super().__init__(1.0)
            self.calls: list = []

        def __call__(self, maps, masks, spans):  # noqa: ANN001, ANN204
            terms = super().__call__(maps, masks, spans)
            self.calls.append(([m.detach().float() for m in maps], masks.detach(), spans, float(terms.loss.detach())))
            return terms

    objective = Recording()
    config, out = _config(workspace, "recorded", steps=1, validate="null")
    train(config, objective=objective)
    assert objective.calls and all(any(s) for _, _, s, _ in objective.calls)
    for maps, masks, spans, value in objective.calls:
        assert value == pytest.approx(reference_hola(maps, masks, spans), rel=1e-5, abs=1e-7)
    (step,) = [r for r in _log(out) if "loss" in r]
    assert step["hola_loss"] == pytest.approx(sum(v for *_, v in objective.calls) / 2, rel=1e-5)  # grad_accum 2


_BF16_RUN = """
import json, sys
from annotate_anyone.daring import attention
from annotate_anyone.daring.train import train
seen = set()
original = attention.AttentionStore.record
def spy(self, probs):
    seen.add(str(probs.dtype))
    return original(self, probs)
attention.AttentionStore.record = spy
last = train(sys.argv[1])
print(json.dumps({"checkpoint": str(last), "dtypes": sorted(seen)}))
"""


def test_bf16_mixed_precision_with_gradient_checkpointing(workspace):
    """The recipe's precision path on CPU: bf16 autocast (accelerate) with gradient checkpointing trains, both
    loss terms finite, and the captured attention really ran in bf16. In a process of its own, as a real run
    is: accelerate's state is per process and fixed by the first Accelerator."""
    import subprocess
    import sys
    from pathlib import Path

    config, out = _config(workspace, "bf16", steps=2, validate="null")
    config.write_text(config.read_text() + "mixed_precision: bf16\ngradient_checkpointing: true\n")
    run = subprocess.run(
        [sys.executable, "-c", _BF16_RUN, str(config)], capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    steps = [r for r in _log(out) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and (Path(result["checkpoint"]) / "unet").is_dir()
    assert all(0 < r["noise_loss"] < 10 and r["hola_loss"] >= 0 for r in steps)
    assert any(r["hola_loss"] > 0 for r in steps)
    assert result["dtypes"] == ["torch.bfloat16"]


def test_two_processes_and_exact_resume_under_ddp(workspace):
    """Data parallel as ``accelerate launch`` / ``torchrun`` run it, here two CPU processes over gloo: the
    log shows both processes and the global HOLA sample count, and resuming the step-2 checkpoint in two
    processes ends with the same weights as the uninterrupted run."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    cli = Path(sys.executable).with_name("annotate-anyone")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}

    def launch(config):
        run = subprocess.run(
            [str(torchrun), "--standalone", "--nproc_per_node", "2", str(cli), "train", str(config)],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]

    config, out = _config(workspace, "ddp", validate="null")
    shutil.rmtree(out, ignore_errors=True)
    launch(config)
    log = _log(out)
    assert [r["processes"] for r in log if r.get("kind") == "start"] == [2]
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert max(r["hola_samples"] for r in steps) > 4  # one process holds at most batch 2 x accum 2 = 4
    last = out / "checkpoints" / "step-0000004"

    mid = out / "checkpoints" / "step-0000002"
    config_b, out_b = _config(workspace, "ddp_resumed", resume=str(mid), validate="null")
    shutil.rmtree(out_b, ignore_errors=True)
    launch(config_b)
    assert [r["step"] for r in _log(out_b) if "loss" in r] == [3, 4]
    for sub in ("unet", "unet_ema"):
        a, b = _weights(last / sub), _weights(out_b / "checkpoints" / "step-0000004" / sub)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

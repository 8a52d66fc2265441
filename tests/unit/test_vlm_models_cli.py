"""``annotate-anyone models check DIR`` on a tiny local checkpoint and on folders that are not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotate_anyone.cli import app

pytest.importorskip("transformers")


def _one_line_error(result: object) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_models_check_reports_family_processor_and_a_smoke_scoring(tmp_path: Path) -> None:
    from annotate_anyone.annotation.tiny_vlm_checkpoints import build_tiny_vlm

    folder = build_tiny_vlm("llava", tmp_path / "llava-tiny")
    result = CliRunner().invoke(app, ["models", "check", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["family"] == "llava" and report["adapter"] == "LlavaAdapter"
    assert report["processor"] == "LlavaProcessor" and report["chat_template"] is True
    smoke = report["smoke"]
    assert smoke["questions"] == 3 and len(smoke["answers"]) == 3
    assert smoke["cached_vs_full_max_abs_diff"] < 1e-4
    text = CliRunner().invoke(app, ["models", "check", str(folder)])
    assert text.exit_code == 0 and "LlavaAdapter" in text.stdout and "cached vs full-sequence" in text.stdout


def test_models_check_refuses_what_is_not_a_supported_checkpoint(tmp_path: Path) -> None:
    runner = CliRunner()
    assert "not a folder" in _one_line_error(runner.invoke(app, ["models", "check", str(tmp_path / "missing")]))
    assert "config.json" in _one_line_error(runner.invoke(app, ["models", "check", str(tmp_path)]))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "not a supported VLM family" in _one_line_error(runner.invoke(app, ["models", "check", str(tmp_path)]))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))  # no weights, no processor
    assert "cannot load as a llava checkpoint" in _one_line_error(
        runner.invoke(app, ["models", "check", str(tmp_path)])
    )

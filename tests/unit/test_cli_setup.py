"""Service-mode setup from the README alone: `init` creates the first admin (in either profile) and says where to
log in; `users create` takes the password from standard input when there is no terminal to ask on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotate_anyone.access import auth
from annotate_anyone.access.models import User
from annotate_anyone.cli import app
from annotate_anyone.db.base import session_scope
from annotate_anyone.settings import get_settings


@pytest.fixture
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AA_PROFILE", "service")
    monkeypatch.setenv("AA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AA_DATABASE_URL", f"sqlite:///{tmp_path / 'aa.db'}")
    monkeypatch.setenv("AA_STORAGE_URL", str(tmp_path / "objects"))
    monkeypatch.setenv("AA_SECRET_KEY", "a-real-secret-for-the-cli-test-0123")
    monkeypatch.setenv("AA_WEBHOOK_SECRET", "a-real-webhook-secret-for-the-test")
    monkeypatch.setenv("AA_PUBLIC_URL", "http://annotate.example:8000")
    get_settings.cache_clear()
    return tmp_path


def test_init_in_service_mode_creates_the_first_admin_once_and_says_where_to_log_in(service_env: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    assert "first admin created" in first.output and "http://annotate.example:8000/login" in first.output
    line = next(x for x in first.output.splitlines() if x.startswith("dashboard login:"))
    username, password = line.split(":", 1)[1].split("at")[0].split(" / ")
    with session_scope(get_settings().db_url) as session:
        user = auth.authenticate_user(session, username=username.strip(), password=password.strip())
        assert user.role.value == "admin"
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 0 and "first admin created" not in again.output
    assert "log in at http://annotate.example:8000/login" in again.output and "--password-stdin" in again.output


def test_users_create_reads_the_password_from_stdin_and_refuses_to_prompt_without_a_terminal(service_env: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    made = runner.invoke(app, ["users", "create", "ada", "--role", "admin", "--password-stdin"],
                         input="a-long-enough-password\n")  # fmt: skip
    assert made.exit_code == 0, made.output
    with session_scope(get_settings().db_url) as session:
        assert auth.authenticate_user(session, username="ada", password="a-long-enough-password").username == "ada"
    refused = runner.invoke(app, ["users", "create", "bob"], input="")
    assert refused.exit_code == 2 and "--password-stdin" in refused.output
    with session_scope(get_settings().db_url) as session:
        assert session.scalars(select(User).where(User.username == "bob")).first() is None

"""Service mode from the README alone: every variable the compose file sets or reads is in the README's table,
and the README gives the commands the compose file runs (worker, beat)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from annotate_anyone.settings import Settings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)


def _table_variables() -> set[str]:
    """Names in backticks in the first column of the README's configuration table."""
    table = README.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    names: set[str] = set()
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) > 2:
            names |= set(re.findall(r"`([A-Z0-9_]+)`", cells[1]))
    return names


def test_every_variable_of_the_compose_file_is_in_the_readme_table() -> None:
    wanted = set(COMPOSE["x-aa-env"]) | set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_TEXT))
    missing = sorted(wanted - _table_variables())
    assert not missing, f"compose variables missing from the README's configuration table: {missing}"


def test_the_readme_gives_the_commands_compose_runs_and_the_visibility_timeout_it_sets() -> None:
    beat = " ".join(COMPOSE["services"]["beat"]["command"][:5])  # celery -A workers.celery_app beat --loglevel=INFO
    assert beat in README
    assert " ".join(COMPOSE["services"]["worker"]["command"][:2]) in README  # annotate-anyone worker
    default = Settings.model_fields["visibility_timeout"].default
    assert f"AA_VISIBILITY_TIMEOUT: ${{AA_VISIBILITY_TIMEOUT:-{default}}}" in COMPOSE_TEXT
    assert f"| `AA_VISIBILITY_TIMEOUT` | {default} |" in README and default <= 900  # minutes, not an hour

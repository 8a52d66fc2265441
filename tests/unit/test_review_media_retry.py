"""Signed media links, and the backend retry policy (backoff, give-up, no retry on refusals)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from annotate_anyone.errors import InvalidInput
from annotate_anyone.review import media
from annotate_anyone.review.client import BackendUnavailable, Retrying, _transient
from annotate_anyone.settings import Settings


def test_signed_media_url_verifies_and_expires() -> None:
    settings = Settings(secret_key="k" * 32, public_url="http://api.local:8000/")
    url = media.signed_media_url(settings, 7, ttl_s=60, now=1000.0)
    parsed = urlparse(url)
    assert parsed.path == "/review/media/7"
    q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    media.verify_media(settings, 7, int(q["exp"]), q["sig"], now=1001.0)
    with pytest.raises(InvalidInput, match="expired"):
        media.verify_media(settings, 7, int(q["exp"]), q["sig"], now=2000.0)
    with pytest.raises(InvalidInput, match="signature"):
        media.verify_media(settings, 8, int(q["exp"]), q["sig"], now=1001.0)
    other = Settings(secret_key="x" * 32)
    with pytest.raises(InvalidInput, match="signature"):
        media.verify_media(other, 7, int(q["exp"]), q["sig"], now=1001.0)


class Refused(Exception):
    status_code = 400


class Busy(Exception):
    status_code = 503


def test_retrying_backs_off_then_succeeds() -> None:
    sleeps: list[float] = []
    calls = iter([httpx.ConnectError("down"), Busy(), "ok"])

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    retry = Retrying(retries=5, backoff_s=0.5, backoff_max_s=0.75, is_transient=_transient, sleep=sleeps.append)
    assert retry("x", flaky) == "ok"
    assert sleeps == [0.5, 0.75]


def test_retrying_gives_up_and_does_not_retry_refusals() -> None:
    sleeps: list[float] = []
    retry = Retrying(retries=3, backoff_s=1, is_transient=_transient, sleep=sleeps.append)

    def down() -> None:
        raise httpx.ReadTimeout("slow")

    with pytest.raises(BackendUnavailable):
        retry("push", down)
    assert sleeps == [1, 2, 4]

    def refuse() -> None:
        raise Refused()

    with pytest.raises(Refused):
        retry("push", refuse)
    assert len(sleeps) == 3

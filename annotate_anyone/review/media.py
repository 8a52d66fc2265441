"""Image URLs for review tasks: presigned object-store URLs (service) or signed links to our API (embedded).

Neither is public: a presigned URL carries the store's signature, a media link an HMAC of the person id
and expiry under ``secret_key``; both expire after ``media_ttl_s``. A link whose expiry lies further ahead
than that (at most :data:`MAX_MEDIA_TTL_S`) is refused even when its signature holds.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from annotate_anyone.db.models import Image, Person
from annotate_anyone.errors import InvalidInput
from annotate_anyone.review.settings import review_settings
from annotate_anyone.settings import Settings, is_placeholder
from annotate_anyone.storage import ObjectStore

MEDIA_PATH = "/review/media"
MAX_MEDIA_TTL_S = 30 * 24 * 3600  # no media link lives longer than this, whatever the settings say
CLOCK_SKEW_S = 300  # links signed by a server whose clock runs this far ahead still verify


def max_ttl(settings: Settings) -> int:
    """The longest lifetime a media link may have under ``settings``."""
    return min(review_settings(settings).media_ttl_s, MAX_MEDIA_TTL_S)


def _signature(secret: str, person_id: int, expires: int) -> str:
    return hmac.new(secret.encode(), f"{person_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_media_url(settings: Settings, person_id: int, ttl_s: int, now: float | None = None) -> str:
    """``{public_url}/review/media/{person_id}?exp=...&sig=...``."""
    expires = int((now or time.time()) + min(ttl_s, max_ttl(settings)))
    query = urlencode({"exp": expires, "sig": _signature(settings.secret_key, person_id, expires)})
    return f"{settings.public_url.rstrip('/')}{MEDIA_PATH}/{person_id}?{query}"


def verify_media(settings: Settings, person_id: int, expires: int, sig: str, now: float | None = None) -> None:
    """Raise :class:`InvalidInput` unless ``sig`` signs ``person_id`` and ``expires`` is in the future, but
    no further than the longest lifetime a link may have."""
    if is_placeholder(settings.secret_key):
        raise InvalidInput("media links need a real AA_SECRET_KEY (`annotate-anyone init` generates one)")
    now = now or time.time()
    if expires < now:
        raise InvalidInput("media link expired")
    if expires > now + max_ttl(settings) + CLOCK_SKEW_S:
        raise InvalidInput("media link lives longer than any link this server signs")
    if not hmac.compare_digest(_signature(settings.secret_key, person_id, expires).encode(), sig.encode()):
        raise InvalidInput("bad media signature")


def image_url(settings: Settings, store: ObjectStore, person: Person, image: Image, ttl_s: int) -> str:
    """The URL Label Studio shows for ``person``: presigned where the store can, else a signed API link."""
    return store.url_for(image.storage_key, expires=ttl_s) or signed_media_url(settings, person.id, ttl_s)

"""Image URLs for review tasks: presigned object-store URLs (service) or signed links to our API (embedded).

Neither is public: a presigned URL carries the store's signature, a media link an HMAC of the person id
and expiry under ``secret_key``; both expire after ``media_ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from annotate_anyone.db.models import Image, Person
from annotate_anyone.errors import InvalidInput
from annotate_anyone.settings import Settings
from annotate_anyone.storage import ObjectStore

MEDIA_PATH = "/review/media"


def _signature(secret: str, person_id: int, expires: int) -> str:
    return hmac.new(secret.encode(), f"{person_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_media_url(settings: Settings, person_id: int, ttl_s: int, now: float | None = None) -> str:
    """``{public_url}/review/media/{person_id}?exp=...&sig=...``."""
    expires = int((now or time.time()) + ttl_s)
    query = urlencode({"exp": expires, "sig": _signature(settings.secret_key, person_id, expires)})
    return f"{settings.public_url.rstrip('/')}{MEDIA_PATH}/{person_id}?{query}"


def verify_media(settings: Settings, person_id: int, expires: int, sig: str, now: float | None = None) -> None:
    """Raise :class:`InvalidInput` unless ``sig`` signs ``person_id`` and ``expires`` is in the future."""
    if expires < (now or time.time()):
        raise InvalidInput("media link expired")
    if not hmac.compare_digest(_signature(settings.secret_key, person_id, expires).encode(), sig.encode()):
        raise InvalidInput("bad media signature")


def image_url(settings: Settings, store: ObjectStore, person: Person, image: Image, ttl_s: int) -> str:
    """The URL Label Studio shows for ``person``: presigned where the store can, else a signed API link."""
    return store.url_for(image.storage_key, expires=ttl_s) or signed_media_url(settings, person.id, ttl_s)

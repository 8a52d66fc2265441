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

from annotate_anyone.catalog.models import Image, Person
from annotate_anyone.errors import InvalidInput
from annotate_anyone.settings import Settings, is_placeholder, reveal
from annotate_anyone.storage import ObjectStore

MEDIA_PATH = "/review/media"
MAX_MEDIA_TTL_S = 30 * 24 * 3600  # no media link lives longer than this, whatever the settings say
CLOCK_SKEW_S = 300  # links signed by a server whose clock runs this far ahead still verify


def max_ttl(settings: Settings) -> int:
    """The longest lifetime a media link may have under ``settings``."""
    return min(settings.review.media_ttl_s, MAX_MEDIA_TTL_S)


def _signature(secret: str, person_id: int, expires: int, layer: str | None = None) -> str:
    message = f"{person_id}:{expires}" + (f":{layer}" if layer else "")  # a layer is signed with the link
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_media_url(
    settings: Settings, person_id: int, ttl_s: int, now: float | None = None, *, layer: str | None = None
) -> str:
    """``{public_url}/review/media/{person_id}?exp=...&sig=...`` (``&layer=parsing``: the parsing overlay)."""
    expires = int((now or time.time()) + min(ttl_s, max_ttl(settings)))
    key = reveal(settings.secret_key) or ""
    query: dict[str, str | int] = {"exp": expires, "sig": _signature(key, person_id, expires, layer)}
    if layer:
        query["layer"] = layer
    return f"{settings.public_url.rstrip('/')}{MEDIA_PATH}/{person_id}?{urlencode(query)}"


def verify_media(
    settings: Settings, person_id: int, expires: int, sig: str, now: float | None = None, *, layer: str | None = None
) -> None:
    """Raise :class:`InvalidInput` unless ``sig`` signs ``person_id`` and ``expires`` is in the future, but
    no further than the longest lifetime a link may have."""
    if is_placeholder(settings.secret_key):
        raise InvalidInput("media links need a real AA_SECRET_KEY (`annotate-anyone init` generates one)")
    now = now or time.time()
    if expires < now:
        raise InvalidInput("media link expired")
    if expires > now + max_ttl(settings) + CLOCK_SKEW_S:
        raise InvalidInput("media link lives longer than any link this server signs")
    key = reveal(settings.secret_key) or ""
    if not hmac.compare_digest(_signature(key, person_id, expires, layer).encode(), sig.encode()):
        raise InvalidInput("bad media signature")


def image_url(settings: Settings, store: ObjectStore, person: Person, image: Image, ttl_s: int) -> str:
    """The URL Label Studio shows for ``person``: presigned where the store can, else a signed API link."""
    return store.url_for(image.storage_key, expires=ttl_s) or signed_media_url(settings, person.id, ttl_s)


def render_overlay(store: ObjectStore, person: Person, image: Image, alpha: float = 0.55) -> bytes:
    """The photo with the person's parsing map blended over it (the colours of the parsing project), as JPEG."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    from annotate_anyone.annotation.parsing import decode_map
    from annotate_anyone.review.configs import ATR_COLORS

    if not person.parsing_key:
        raise InvalidInput(f"person {person.id} has no parsing map")
    with PILImage.open(store.open(image.storage_key)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    labels = decode_map(store.get_bytes(person.parsing_key))
    if labels.shape != rgb.shape[:2]:
        fitted = PILImage.fromarray(labels).resize((rgb.shape[1], rgb.shape[0]), PILImage.Resampling.NEAREST)
        labels = np.asarray(fitted, dtype=np.uint8)
    palette = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in ATR_COLORS], dtype=np.float32)
    colored = palette[np.minimum(labels, len(palette) - 1)]
    painted = labels > 0
    rgb[painted] = (1 - alpha) * rgb[painted] + alpha * colored[painted]
    out = io.BytesIO()
    PILImage.fromarray(rgb.astype(np.uint8)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def overlay_url(settings: Settings, store: ObjectStore, person: Person, image: Image, ttl_s: int) -> str | None:
    """The parsing overlay's URL: rendered into the store and presigned where the store can, else a signed
    link to our API (which renders it on request); ``None`` when the person has no parsing map."""
    if not person.parsing_key:
        return None
    if store.url_for(image.storage_key, expires=ttl_s) is None:
        return signed_media_url(settings, person.id, ttl_s, layer="parsing")
    _, key = store.put_content(render_overlay(store, person, image), prefix="review/overlays", ext="jpg")
    return store.url_for(key, expires=ttl_s)

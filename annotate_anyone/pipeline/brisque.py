"""BRISQUE, vectorised: the ``brisque`` package's features and bundled SVR, about 10x cheaper.

The package (``brisque.BRISQUE``) computes its 36 features with ``scipy.signal.convolve2d``, fits each
asymmetric generalised Gaussian with ``scipy.optimize.root`` and computes the MSCN map of the full
scale twice. Here the same features come from two OpenCV separable blurs per scale, moment sums on
contiguous arrays and a lookup table for the shape parameter (as in the authors' MATLAB code), and
the package's own model files (``models/svm.txt``, ``models/normalize.pickle``) score them with a
numpy RBF regression. ``bench/brisque.py`` compares both on real photos (ms/image and rank
correlation). Lower scores are better (about 0-100).
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from annotate_anyone.errors import MissingExtra
from annotate_anyone.pipeline.decode import downscale

BRISQUE_SIDE = 512  # scores are taken on a copy with this long side (the package scorer's input size)
_LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32) / 255.0  # skimage.color.rgb2gray weights
_C = 1.0 / 255.0  # the package's MSCN stabiliser
_SIGMA = 7.0 / 6.0


def _kernel() -> np.ndarray:
    taps = np.exp(-((np.arange(7) - 3.0) ** 2) / (2 * _SIGMA**2))
    return taps / taps.sum()  # separable factor of the package's normalised 7x7 Gaussian


def _shape_table() -> tuple[np.ndarray, np.ndarray]:
    """rho(alpha) = G(2/a)^2 / (G(1/a) G(3/a)) on a 0.001 grid over [0.2, 10] (increasing in alpha)."""
    alpha = np.arange(0.2, 10.0 + 1e-9, 0.001)
    lg = np.vectorize(math.lgamma)
    rho = np.exp(2 * lg(2 / alpha) - lg(1 / alpha) - lg(3 / alpha))
    return rho, alpha


def model_dir() -> Path:
    """The ``brisque`` package's ``models`` folder, found without importing the package."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("the BRISQUE quality score", "perception", "brisque")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class _Svr:
    """libsvm epsilon-SVR with an RBF kernel, read from the package's ``svm.txt``."""

    def __init__(self, path: Path) -> None:
        header: dict[str, str] = {}
        coefs: list[float] = []
        rows: list[dict[int, float]] = []
        with path.open() as fh:
            for line in fh:
                if line.strip() == "SV":
                    break
                key, _, value = line.strip().partition(" ")
                header[key] = value
            for line in fh:
                parts = line.split()
                if parts:
                    coefs.append(float(parts[0]))
                    rows.append({int(k): float(v) for k, v in (p.split(":") for p in parts[1:])})
        if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
            raise ValueError(f"{path}: expected an RBF epsilon-SVR, got {header}")
        width = max(max(r, default=0) for r in rows)
        self.vectors = np.zeros((len(rows), width))
        for i, row in enumerate(rows):
            for k, v in row.items():
                self.vectors[i, k - 1] = v
        self.coefs = np.array(coefs)
        self.gamma = float(header["gamma"])
        self.rho = float(header["rho"])
        self.norms = np.einsum("ij,ij->i", self.vectors, self.vectors)

    def predict(self, x: np.ndarray) -> float:
        dist = self.norms - 2.0 * (self.vectors @ x) + float(x @ x)
        return float(self.coefs @ np.exp(-self.gamma * dist)) - self.rho


class BrisqueScorer:
    """BRISQUE score of an RGB image (taken at ``side`` px on the long side); NaN for a flat image."""

    def __init__(self, side: int = BRISQUE_SIDE) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise MissingExtra("the BRISQUE quality score", "perception", "cv2") from exc
        self._cv2 = cv2
        models = model_dir()
        self._svr = _Svr(models / "svm.txt")
        with (models / "normalize.pickle").open("rb") as fh:
            scale = pickle.load(fh)  # two lists of 36 floats shipped with the package
        self._min = np.asarray(scale["min_"], dtype=np.float64)
        self._span = np.asarray(scale["max_"], dtype=np.float64) - self._min
        self._kernel = _kernel()
        self._rho, self._alpha = _shape_table()
        self.side = side

    def grey(self, image: Image.Image) -> np.ndarray:
        """Luma in [0, 1] (skimage's weights) of the 8-bit RGB copy at ``side`` px, as the package reads it.

        The copy is reduced in RGB and rounded to 8 bits before the luma, as the package's input was:
        BRISQUE is sensitive to that rounding on flat areas (a float reduce moves scores by up to 6).
        """
        rgb = np.asarray(downscale(image.convert("RGB"), self.side), dtype=np.float32)
        return self._cv2.transform(rgb, _LUMA.reshape(1, 3))

    def features(self, grey: np.ndarray) -> np.ndarray:
        """The 36 BRISQUE features: 18 at full scale, 18 at half scale (bicubic, as the package)."""
        grey = np.asarray(grey, dtype=np.float64)
        half = self._cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=self._cv2.INTER_CUBIC)
        return np.concatenate([self._scale_features(grey), self._scale_features(half)])

    def score(self, image: Image.Image) -> float:
        with np.errstate(all="ignore"):
            features = self.features(self.grey(image))
            if not np.all(np.isfinite(features)):
                return math.nan
            scaled = -1.0 + 2.0 * (features - self._min) / self._span
            return self._svr.predict(scaled)

    def _scale_features(self, grey: np.ndarray) -> list[float]:
        cv2 = self._cv2
        k = self._kernel
        # blurs and the variance in float64 (mu^2 - E[x^2] cancels badly in float32 on flat areas);
        # zero padding, as convolve2d(..., "same") in the package
        mu = cv2.sepFilter2D(grey, -1, k, k, borderType=cv2.BORDER_CONSTANT)
        ex2 = cv2.sepFilter2D(grey * grey, -1, k, k, borderType=cv2.BORDER_CONSTANT)
        sigma = np.sqrt(np.abs(mu * mu - ex2))
        mscn = ((grey - mu) / (sigma + _C)).astype(np.float32)
        alpha, _, left, right = self._aggd(mscn)
        out = [alpha, (left**2 + right**2) / 2]
        pairs = (
            mscn[:, :-1] * mscn[:, 1:],
            mscn[:-1, :] * mscn[1:, :],
            mscn[:-1, :-1] * mscn[1:, 1:],
            mscn[1:, :-1] * mscn[:-1, 1:],
        )
        for pair in pairs:
            alpha, mean, left, right = self._aggd(pair)
            out += [alpha, mean, left**2, right**2]
        return out

    def _aggd(self, x: np.ndarray) -> tuple[float, float, float, float]:
        """Moment-matched asymmetric generalised Gaussian: shape, mean, left and right sigma."""
        x = x.ravel()
        n = x.size
        neg = np.minimum(x, 0.0)
        n_neg = int(np.count_nonzero(x < 0))
        total = float(x.sum(dtype=np.float64))
        neg_total = float(neg.sum(dtype=np.float64))
        squares = float(np.dot(x, x))
        neg_squares = float(np.dot(neg, neg))
        abs_mean = (total - 2.0 * neg_total) / n
        r_hat = abs_mean**2 / (squares / n)
        left = math.sqrt(neg_squares / n_neg) if n_neg else 0.0
        right = math.sqrt((squares - neg_squares) / (n - n_neg)) if n > n_neg else 0.0
        gamma = left / right if right else math.inf
        big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
        alpha = float(np.interp(big_r, self._rho, self._alpha))
        ratio = math.exp(math.lgamma(2 / alpha) - 0.5 * (math.lgamma(1 / alpha) + math.lgamma(3 / alpha)))
        return alpha, (right - left) * ratio, left, right

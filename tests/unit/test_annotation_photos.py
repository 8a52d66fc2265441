"""Offline parsing and labelers on real photos (skimage's astronaut, matplotlib's Grace Hopper).

Pose, mask and faces come from the real MediaPipe backend; parsing and labels from geometry and colour.
"""

import numpy as np
import pytest

from annotate_anyone.annotation.labelers.base import PersonContext
from annotate_anyone.annotation.labelers.offline import OfflineLabeler
from annotate_anyone.annotation.parsing import PersonView, decode_map, encode_map, make_parser
from annotate_anyone.annotation.taxonomy import ATR, load_taxonomy
from annotate_anyone.perception.shot_type import shot_type

pytest.importorskip("mediapipe")
pytest.importorskip("skimage")


def _photo(name):
    from PIL import Image

    if name == "astronaut":
        from skimage.data import astronaut

        return astronaut()
    from matplotlib.cbook import get_sample_data

    return np.asarray(Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


@pytest.fixture(scope="module")
def people():
    from PIL import Image

    from annotate_anyone.perception.mediapipe import MediaPipeBackend

    backend = MediaPipeBackend(peel=False)
    parser = make_parser("geometric")
    out = {}
    for name in ("astronaut", "grace_hopper"):
        rgb = _photo(name)
        scene = backend.detect(Image.fromarray(rgb))
        det = scene.persons[0]
        view = PersonView(det.box, det.keypoints, det.mask.astype(np.float32) / 255, list(det.face_boxes))
        out[name] = (rgb, view, parser.parse(rgb, view), parser)
    return out


def _centroid(label_map, *labels):
    ys, xs = np.nonzero(np.isin(label_map, [ATR[n] for n in labels]))
    assert ys.size > 0, f"no {labels} pixels"
    return xs.mean(), ys.mean(), ys.size


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_parsing_regions_sit_in_plausible_places(people, name):
    rgb, view, label_map, _ = people[name]
    assert label_map.shape == rgb.shape[:2] and label_map.dtype == np.uint8
    assert set(np.unique(label_map)) <= set(range(18))
    fx0, fy0, fx1, fy1 = view.face_boxes[0]
    face_x, face_y, face_n = _centroid(label_map, "face")
    assert fx0 <= face_x <= fx1 and fy0 <= face_y <= fy1 + 0.3 * (fy1 - fy0)
    _, upper_y, upper_n = _centroid(label_map, "upper-clothes")
    assert upper_y > fy1 and upper_n > face_n  # clothes below the face and bigger than it
    _, hair_y, _ = _centroid(label_map, "hair", "hat")
    assert hair_y < face_y  # hair (or hat) above the face's centre
    mask = view.mask > 0.5
    assert (label_map[~mask] == 0).mean() > 0.99  # labels stay inside the person
    assert (label_map[mask] > 0).mean() > 0.95  # and cover it
    assert decode_map(encode_map(label_map)).tolist() == label_map.tolist()


def test_hat_is_found_on_grace_hopper_and_not_on_the_astronaut(people):
    _, view, label_map, _ = people["grace_hopper"]
    hat_x, hat_y, hat_n = _centroid(label_map, "hat")
    assert hat_y < view.face_boxes[0][1] + 0.2 * (view.face_boxes[0][3] - view.face_boxes[0][1]) and hat_n > 5000
    assert (people["astronaut"][2] == ATR["hat"]).sum() == 0


def _labels(people, name):
    rgb, view, label_map, parser = people[name]
    ctx = PersonContext(rgb, view, label_map, parser.labels_supported)
    preds = OfflineLabeler().label(ctx, load_taxonomy().categories())
    for p in preds:
        assert abs(sum(p.distribution.values()) - 1) < 1e-6 and p.value == max(p.distribution, key=p.distribution.get)
        assert set(p.distribution) == set(load_taxonomy().options(p.group, p.key))
    return {p.category: p for p in preds}


def test_offline_labels_on_real_photos(people):
    astro, grace = _labels(people, "astronaut"), _labels(people, "grace_hopper")
    assert astro["6.color"].value == "orange"  # the orange flight suit
    assert grace["6.color"].value == "black" and grace["6.color"].confidence > 0.7  # the dark uniform jacket
    assert astro["6.sleeve_length"].value == "long sleeve" and grace["6.sleeve_length"].value == "long sleeve"
    assert grace["10.type"].value != "n/a" and astro["10.type"].value == "n/a"  # Grace Hopper's cap
    assert astro["3.hair_color"].value in {"brown", "blonde"}
    assert "11.type" not in astro  # the geometric parser never draws bags: no bag judgement at all


def test_shot_types(people):
    for name, expected in (("astronaut", "upper_body"), ("grace_hopper", "portrait")):
        rgb, view, _, _ = people[name]
        assert shot_type(view.keypoints, rgb.shape[1], rgb.shape[0], view.face_boxes) == expected

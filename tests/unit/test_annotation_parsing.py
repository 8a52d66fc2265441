"""The geometric parser: drawn figures whose answer is known by construction, and real photos.

The figures are flat-colour people drawn with PIL, with the pose and face box they were drawn from, so
each test changes one thing (where the top ends, a skirt, a dress, skin-coloured trousers, long hair
over a top of the same colour, a face cut by the frame) and checks the label where it must be.
"""

from pathlib import Path

import numpy as np
import pytest

from annotate_anyone.annotation.parsing import PersonView, make_parser
from annotate_anyone.annotation.taxonomy import ATR

SKIN = (224, 172, 140)
BACKGROUND = (245, 245, 245)
COCO = Path(__file__).parents[1] / "data" / "people-coco"
# MediaPipe landmark -> (x, y) of the drawn figure; "left" is the person's left (image right).
POSE = {0: (150, 62), 2: (160, 52), 5: (140, 52), 7: (172, 58), 8: (128, 58), 9: (156, 74), 10: (144, 74),
        11: (190, 122), 12: (110, 122), 13: (202, 192), 14: (98, 192), 15: (206, 258), 16: (94, 258),
        17: (208, 272), 19: (204, 274), 21: (202, 266), 18: (92, 272), 20: (96, 274), 22: (98, 266),
        23: (174, 282), 24: (126, 282), 25: (177, 402), 26: (123, 402), 27: (179, 520), 28: (121, 520),
        29: (177, 534), 30: (123, 534), 31: (190, 548), 32: (110, 548), 1: (160, 52), 3: (160, 52),
        4: (140, 52), 6: (140, 52)}  # fmt: skip


def figure(*, top=(30, 30, 30), bottom=(40, 60, 140), hair=(35, 25, 20), bottoms="trousers", top_end=270,
           long_hair=False, shift_up=0):  # fmt: skip
    """A standing person, 300x600: short sleeves, bare forearms, brown shoes; ``bottoms`` is trousers or
    a knee-length skirt over bare legs. Returns the image and the PersonView a backend would give."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (300, 600), BACKGROUND)
    draw = ImageDraw.Draw(im)

    def limb(a, b, r, colour):
        a, b = POSE.get(a, a), POSE.get(b, b)
        draw.line([a, b], fill=colour, width=int(2 * r))
        for x, y in (a, b):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)

    if long_hair:
        draw.rectangle([114, 50, 186, 200], fill=hair)
    draw.ellipse([118, 20, 182, 80], fill=hair)
    draw.rectangle([140, 80, 160, 122], fill=SKIN)  # neck
    draw.ellipse([126, 34, 174, 94], fill=SKIN)  # face
    if bottoms == "trousers":
        for a, b, r in ((23, 25, 24), (24, 26, 24), (25, 27, 18), (26, 28, 18)):
            limb(a, b, r, bottom)
        draw.polygon([(100, top_end - 10), (200, top_end - 10), (200, 300), (100, 300)], fill=bottom)
    else:
        for a, b, r in ((23, 25, 20), (24, 26, 20), (25, 27, 15), (26, 28, 15)):
            limb(a, b, r, SKIN)
        draw.polygon([(102, top_end - 10), (198, top_end - 10), (215, 380), (85, 380)], fill=bottom)
    for heel, toe in ((29, 31), (30, 32)):
        limb(heel, toe, 12, (90, 50, 20))
        x, y = POSE[heel]
        draw.ellipse([x - 14, y - 20, x + 14, y + 8], fill=(90, 50, 20))
    draw.polygon([(105, 115), (195, 115), (198, top_end), (102, top_end)], fill=top)
    limb(11, 13, 16, top)
    limb(12, 14, 16, top)
    limb((204, 200), 15, 11, SKIN)
    limb((96, 200), 16, 11, SKIN)
    for x, y in ((204, 270), (96, 270)):
        draw.ellipse([x - 12, y - 12, x + 12, y + 12], fill=SKIN)
    if long_hair:  # hanging in front of the shoulders down to the chest
        draw.rectangle([112, 100, 128, 200], fill=hair)
        draw.rectangle([172, 100, 188, 200], fill=hair)
    rgb = np.asarray(im)[shift_up:]
    keypoints = np.array([[*POSE[i], 1.0] for i in range(33)], np.float32)
    keypoints[:, 1] -= shift_up
    mask = (np.abs(rgb.astype(int) - BACKGROUND).sum(-1) > 0).astype(np.float32)
    faces = [] if shift_up else [(126.0, 36.0, 174.0, 88.0)]
    return rgb, PersonView(box=(80.0, 15.0 - shift_up, 220.0, 560.0 - shift_up), keypoints=keypoints, mask=mask,
                           face_boxes=faces)  # fmt: skip


@pytest.fixture(scope="module")
def parser():
    pytest.importorskip("scipy")
    return make_parser("geometric")


def _at(label_map, x, y, shift_up=0):
    return int(label_map[y - shift_up, x])


def _share(label_map, region, *names):
    return float(np.isin(label_map[region], [ATR[n] for n in names]).mean())


def test_drawn_person_gets_each_part_where_it_was_drawn(parser):
    rgb, view = figure()
    out = parser.parse(rgb, view)
    assert out.shape == rgb.shape[:2] and out.dtype == np.uint8
    assert (out[view.mask < 0.5] == 0).all() and (out[view.mask > 0.5] > 0).mean() > 0.99
    assert _at(out, 150, 62) == ATR["face"] and _at(out, 150, 26) == ATR["hair"]
    assert _at(out, 150, 190) == ATR["upper-clothes"] and _at(out, 196, 150) == ATR["upper-clothes"]  # sleeve
    assert _at(out, 205, 235) == ATR["left-arm"] and _at(out, 95, 235) == ATR["right-arm"]  # bare forearms
    assert _at(out, 176, 350) == ATR["pants"] and _at(out, 122, 470) == ATR["pants"]
    assert _at(out, 185, 545) == ATR["left-shoe"] and _at(out, 115, 545) == ATR["right-shoe"]
    assert _at(out, 150, 110) == ATR["face"]  # neck skin, as SCHP on ATR labels it


@pytest.mark.parametrize("top_end", [240, 270, 330])
def test_waist_line_follows_where_the_top_ends(parser, top_end):
    rgb, view = figure(top_end=top_end)
    out = parser.parse(rgb, view)
    column = out[200:360, 170]  # down the person's left thigh
    first_pants = 200 + int(np.argmax(column == ATR["pants"]))
    assert (column == ATR["pants"]).any() and abs(first_pants - top_end) <= 12
    assert (column[: first_pants - 200] == ATR["upper-clothes"]).all()


def test_skirt_over_bare_legs_and_a_dress_when_it_matches_the_top(parser):
    rgb, view = figure(bottoms="skirt", bottom=(150, 30, 40))
    out = parser.parse(rgb, view)
    assert _at(out, 150, 330) == ATR["skirt"]  # the gap between the thighs is filled
    assert _at(out, 178, 440) == ATR["left-leg"] and _at(out, 122, 440) == ATR["right-leg"]
    assert _at(out, 150, 190) == ATR["upper-clothes"]
    rgb, view = figure(bottoms="skirt", bottom=(30, 30, 30))
    out = parser.parse(rgb, view)
    assert _at(out, 150, 330) == ATR["dress"] and _at(out, 150, 190) == ATR["dress"]
    assert _at(out, 196, 150) == ATR["dress"]  # its sleeves too
    assert not np.isin(out, [ATR["upper-clothes"], ATR["skirt"], ATR["pants"]]).any()


def test_trousers_stay_trousers_between_open_legs(parser):
    rgb, view = figure()
    out = parser.parse(rgb, view)
    assert _at(out, 150, 380) == 0  # the gap between the legs is background
    assert (out == ATR["skirt"]).sum() == 0 and (out == ATR["dress"]).sum() == 0


def test_skin_coloured_trousers_are_not_legs(parser):
    rgb, view = figure(bottom=(215, 180, 150))  # beige, a few units from the skin tone
    out = parser.parse(rgb, view)
    legs = np.zeros(out.shape, bool)
    legs[300:510, 100:200] = True
    legs &= view.mask > 0.5
    assert _share(out, legs, "pants") > 0.9
    assert _at(out, 205, 235) == ATR["left-arm"]  # the bare forearms are still skin


def test_long_hair_over_a_top_of_the_same_colour(parser):
    rgb, view = figure(long_hair=True, hair=(30, 30, 30), top=(30, 30, 30))
    out = parser.parse(rgb, view)
    assert _at(out, 120, 100) == ATR["hair"] and _at(out, 180, 100) == ATR["hair"]  # beside the neck
    chest = np.zeros(out.shape, bool)
    chest[150:200, 110:190] = True
    assert _share(out, chest, "upper-clothes") > 0.9  # below the shoulders the top wins


def test_long_hair_over_a_top_of_another_colour(parser):
    rgb, view = figure(long_hair=True, hair=(30, 30, 30), top=(200, 200, 210))
    out = parser.parse(rgb, view)
    strands = np.zeros(out.shape, bool)
    strands[130:195, 113:127] = True
    assert _share(out, strands, "hair") > 0.8
    assert _at(out, 150, 170) == ATR["upper-clothes"]


def test_face_cut_by_the_frame_still_gives_face_neck_and_limbs(parser):
    rgb, view = figure(shift_up=60)  # the eyes are above the top edge, no face box
    out = parser.parse(rgb, view)
    assert _at(out, 150, 85, 60) == ATR["face"] and _at(out, 150, 110, 60) == ATR["face"]  # chin, neck
    assert _at(out, 205, 235, 60) == ATR["left-arm"] and _at(out, 150, 190, 60) == ATR["upper-clothes"]
    assert _at(out, 176, 350, 60) == ATR["pants"] and _at(out, 185, 545, 60) == ATR["left-shoe"]


def test_no_pose_gives_upper_clothes_on_the_mask(parser):
    rgb, view = figure()
    out = parser.parse(rgb, PersonView(box=view.box, keypoints=None, mask=view.mask))
    assert set(np.unique(out).tolist()) == {0, ATR["upper-clothes"]}


# --- real photos, through the offline default person backend ------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory, parser):
    pytest.importorskip("mediapipe")
    from PIL import Image

    from annotate_anyone.perception.pose_tasks import PoseTasksBackend

    backend = PoseTasksBackend(cache_dir=tmp_path_factory.mktemp("models"))
    out = {}
    for name in ("COCO_val2014_000000000474", "COCO_val2014_000000000241"):
        with Image.open(COCO / f"{name}.jpg") as im:
            rgb = np.asarray(im.convert("RGB"))
        person = backend.detect(Image.fromarray(rgb)).persons[0]
        view = PersonView(person.box, person.keypoints, person.mask.astype(np.float32) / 255, person.face_boxes)
        out[name[-3:]] = (view, parser.parse(rgb, view))
    return out


def _mean_y(label_map, *names):
    ys = np.nonzero(np.isin(label_map, [ATR[n] for n in names]))[0]
    assert ys.size > 0, f"no {names} pixels"
    return float(ys.mean())


def test_boy_in_shorts_and_sandals_top_to_bottom(photos):
    view, out = photos["474"]
    face = _mean_y(out, "face")
    top = _mean_y(out, "upper-clothes")
    shorts = _mean_y(out, "pants", "skirt")
    legs = _mean_y(out, "left-leg", "right-leg")
    shoes = _mean_y(out, "left-shoe", "right-shoe")
    assert face < top < shorts < legs < shoes
    ys = np.nonzero(view.mask > 0.5)[0]
    assert shoes > ys.min() + 0.85 * (ys.max() - ys.min())  # shoes at the bottom of the person


def test_man_in_jeans_standing_with_legs_together_wears_trousers(photos):
    _, out = photos["241"]
    assert (out == ATR["pants"]).sum() > 10 * max(1, (out == ATR["skirt"]).sum() + (out == ATR["dress"]).sum())
    assert _mean_y(out, "face") < _mean_y(out, "upper-clothes") < _mean_y(out, "pants")

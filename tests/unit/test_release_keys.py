"""What a release's training columns hold, as CosmicMan's loader reads them: key spellings (one mapping in
the taxonomy), the one rule for which groups and keys go into ``aa_text``, palette parsing maps, and old
releases (identifier spellings, null columns, greyscale maps) still read."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from annotate_anyone.annotation.parsing.base import decode_map, encode_map, is_atr_png
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.errors import InvalidInput
from annotate_anyone.release.encode import palette_parsing
from annotate_anyone.release.materialize import training_row

# The brief's table (cosmicman.md, section 2): the keys the loader reads per group, and the noun key if any.
FABRIC = ("pattern", "material")
BRIEF = [
    ({"country", "age"}, "gender"),
    ({"body shape"}, None),
    ({"background"}, None),
    ({"hair color", "hair style", "hair length"}, None),
    ({"sleeve length"}, "type"),
    ({*FABRIC, "sleeve length", "collar shape", "length", "shoulder exposure level"}, "type"),
    ({*FABRIC, "sleeve length", "top length", "collar shape", "color", "graphic"}, "type"),
    ({*FABRIC, "coat length", "collar shape", "color", "graphic"}, "type"),
    ({*FABRIC, "length", "bottom shape", "color", "graphic"}, "type"),
    ({*FABRIC, "boots length", "color"}, "type"),
    ({"material"}, "type"),
    ({"material"}, "type"),
    ({"material"}, None),
    (set(FABRIC), None),
    ({"overall-style"}, None),
    *[(set(FABRIC), None)] * 5,
]


def test_every_group_carries_exactly_the_keys_the_loader_reads():
    t = load_taxonomy()
    for index, (adjectives, noun) in enumerate(BRIEF):
        assert set(t.text_keys(index)) == adjectives | ({noun} if noun else set()), index
        spec = t.group(index)
        assert (t.release_key(spec.noun_key) if spec.noun_key else None) == noun
    assert t.release_key("shoulder_exposure") == "shoulder exposure level" and t.release_key("color") == "color"


def test_the_rule_on_labels():
    t = load_taxonomy()
    labels = {
        (0, "country"): "Asian", (0, "age"): "adult", (0, "gender"): "female",
        (1, "body_shape"): "fit", (3, "hair_color"): "black", (3, "hair_length"): "n/a",
        (4, "sleeve_length"): "long sleeve",  # no type: CosmicMan's loader renders nothing, so nothing is kept
        (6, "type"): "t-shirt", (6, "color"): "red", (7, "color"): "blue", (7, "type"): "n/a",
        (12, "present"): "yes", (13, "present"): "no", (13, "material"): "wool",
        (14, "overall_style"): "casual", (18, "present"): "yes", (18, "material"): "cotton",
    }  # fmt: skip
    text = t.aa_text(labels)
    assert text[0] == {"country": "Asian", "age": "adult", "gender": "female"}
    assert text[1] == {"body shape": "fit"} and text[3] == {"hair color": "black"}
    assert text[4] is None and text[7] is None and text[13] is None
    assert text[6] == {"color": "red", "type": "t-shirt"}
    assert text[12] == {} and text[18] == {"material": "cotton"} and text[14] == {"overall-style": "casual"}
    assert [i for i, e in enumerate(text) if e is not None] == [0, 1, 3, 6, 12, 14, 18]
    ids = t.aa_ids(text)
    assert ids[3] == [2] and ids[1] == list(range(1, 18)) and ids[4] is None and ids[12] == [8]


def test_the_rule_is_idempotent_and_spelling_blind():
    t = load_taxonomy()
    rng = random.Random(1)
    keys = sorted({(g.index, a.key) for g in t.groups for a in g.attributes})
    for _ in range(300):
        labels = {k: rng.choice([*t.options(*k), None]) for k in rng.sample(keys, rng.randint(0, 30))}
        text = t.aa_text(labels)
        assert t.release_aa_text(text) == text  # reading a release back changes nothing
        old = [None if e is None else {k.replace(" ", "_").replace("-", "_"): v for k, v in e.items()} for e in text]
        old = [None if e is None else {("shoulder_exposure" if k == "shoulder_exposure_level" else k): v
                                       for k, v in e.items()} for e in old]  # fmt: skip
        assert t.release_aa_text(old) == text  # identifiers (releases before release_keys) read the same
    with pytest.raises(InvalidInput):
        t.release_aa_text([None] * 3)
    assert t.release_aa_text(None) == [None] * 20


def test_parsing_maps_are_palette_pngs_and_old_greyscale_ones_still_read():
    labels = np.arange(18, dtype=np.uint8).repeat(4).reshape(8, 9)
    data = encode_map(labels)
    with Image.open(io.BytesIO(data)) as png:
        assert png.mode == "P" and png.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    assert is_atr_png(data) and np.array_equal(decode_map(data), labels)
    with pytest.raises(InvalidInput):
        encode_map(np.full((2, 2), 18, np.uint8))
    grey = io.BytesIO()
    Image.fromarray(labels, mode="L").save(grey, format="PNG")
    assert not is_atr_png(grey.getvalue()) and np.array_equal(decode_map(grey.getvalue()), labels)
    converted = palette_parsing(grey.getvalue(), (18, 16))  # nearest-resized to (width, height)
    assert is_atr_png(converted) and decode_map(converted).shape == (16, 18)
    assert set(np.unique(decode_map(converted))) <= set(range(18))
    assert palette_parsing(data) is data  # already right: passed through undecoded
    bad = io.BytesIO()
    Image.fromarray(np.full((2, 2), 200, np.uint8), mode="L").save(bad, format="PNG")
    with pytest.raises(InvalidInput):
        palette_parsing(bad.getvalue())


def test_old_release_rows_become_training_rows():
    shots = load_taxonomy().shot_types
    old_text = [None] * 20
    old_text[3], old_text[4], old_text[14] = {"hair_color": "brown"}, {"sleeve_length": "long"}, {"overall_style": "x"}
    old_ids = [None] * 20
    old_ids[3], old_ids[4], old_ids[14] = [2], [4, 6, 7], list(range(1, 18))
    row = {"path": "images/a.jpg", "segm_path": "parsing/a.png", "height": 4, "width": 6, "person_type": "portrait",
           "aa_text": json.dumps(old_text), "aa_ids": json.dumps(old_ids), "key": "a", "sha256": "a",
           "caption": None}  # fmt: skip
    out, reason = training_row(row, shots)
    text, ids = json.loads(out["aa_text"]), json.loads(out["aa_ids"])
    assert reason is None and text[3] == {"hair color": "brown"} and text[14] == {"overall-style": "x"}
    assert text[4] is None and ids[4] is None and ids[3] == [2]  # a group without its noun says nothing
    unlabelled, _ = training_row(row | {"aa_text": None, "aa_ids": None}, shots)
    assert json.loads(unlabelled["aa_text"]) == [None] * 20 == json.loads(unlabelled["aa_ids"])
    assert training_row(row | {"segm_path": None}, shots) == (None, "materialize:no_parsing")
    assert training_row(row | {"person_type": None}, shots) == (None, "materialize:no_shot_type")


def test_the_trainers_reader_accepts_both_spellings(tmp_path: Path):
    from annotate_anyone.datasets import open_release

    old, new = [None] * 20, [None] * 20
    old[3], new[3] = {"hair_color": "red", "hair_style": "wavy"}, {"hair color": "red", "hair style": "wavy"}
    rows = [{"path": "a.png", "segm_path": None, "height": 2, "width": 2, "person_type": "headshot",
             "aa_text": json.dumps(text), "aa_ids": json.dumps([None] * 20)} for text in (old, new)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "index.parquet")
    release = open_release(tmp_path / "index.parquet")
    assert release.row(0).aa_text == release.row(1).aa_text and release.row(0).aa_text[3] == new[3]

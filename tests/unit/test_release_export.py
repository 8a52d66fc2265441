"""Export a release from the database and read it back with independent readers: plain ``webdataset``,
``pyarrow``, HF ``datasets``, and a materialized folder; every field is checked against the database."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from annotate_anyone.errors import Conflict, InvalidInput, NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.export import export_release
from annotate_anyone.release.manifest import content_digest, load_manifest, published_versions
from annotate_anyone.release.materialize import materialize
from annotate_anyone.release.models import Release
from annotate_anyone.release.training_format import FOREGROUND
from annotate_anyone.release.verify import verify_release
from tests.unit.test_release_factories import World, world_fixture  # noqa: F401

SMALL_SHARDS = 60_000  # bytes: the pool spreads over several shards


def _key(w: World, image: str, index: int | None) -> str:
    return paths.sample_key(w.images[image].sha256, index)


def _release_dir(w: World, version: str) -> Path:
    return Path(w.store.root) / "releases" / version  # type: ignore[attr-defined]


def _export(w: World, **kw: object) -> Release:
    release = export_release(
        w.session, w.store, shard_size_bytes=SMALL_SHARDS, expected_error_rate=0.03, routing={"gate": 0.85}, **kw
    )
    w.session.commit()
    return release


def test_all_accepted_release_matches_the_database(world: World) -> None:
    w = world
    release = _export(w, version="2026.01.01.1")
    manifest = load_manifest(w.store, "2026.01.01.1")
    keys = {_key(w, "A", 0), _key(w, "B", 0), _key(w, "D", 0)}  # B1 (no parsing map) and C (no person) left out

    # manifest
    assert release.version == manifest["version"] == "2026.01.01.1" and manifest["parent"] is None
    assert release.digest == manifest["digest"] == content_digest(manifest["shards"] + manifest["files"])
    counts = manifest["counts"]
    assert counts["samples"] == 3 and counts["images"] == 3 and counts["whole_images"] == 0
    assert counts["persons"] == 3 and counts["with_parsing"] == 3 and counts["shards"] == len(manifest["shards"]) > 1
    assert counts["left_out"] == {"export:no_parsing": 1, "export:no_person": 1}
    # A0: country, age, gender(h), hair_color, hair_length, 6.type, 6.color, 12.present, 14.style(h); B0: 2; D0: 2
    assert counts["attributes_by_origin"] == {"human": 4, "model": 9}
    assert manifest["expected_error"]["auto_accepted"] == 0.03
    assert manifest["expected_error"]["auto_accepted_labels"] == 9
    assert manifest["taxonomy_version"] == "cm-1.0" and manifest["model_versions"] == ["offline-parser@1", "vlm@1"]
    assert manifest["selection"]["preset"]["name"] == "all-accepted"
    for shard in manifest["shards"]:
        assert (_release_dir(w, "2026.01.01.1") / shard["name"]).stat().st_size == shard["size"]

    # plain webdataset reads the shards
    import webdataset as wds

    urls = [str(_release_dir(w, "2026.01.01.1") / s["name"]) for s in manifest["shards"]]
    samples = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}
    assert set(samples) == keys
    for name, image, idx in (("A0", "A", 0), ("B0", "B", 0), ("D0", "D", 0)):
        s = samples[_key(w, image, idx)]
        assert s["jpg"] == w.originals[image]  # original bytes, unchanged
        png = PILImage.open(io.BytesIO(s["parsing.png"]))  # stored as a greyscale PNG, released as a palette one
        assert png.mode == "P" and png.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
        parsing = np.asarray(png)
        assert parsing.dtype == np.uint8 and np.array_equal(parsing, w.parsing[name])
        doc = json.loads(s["json"])
        person = w.persons[name]
        assert doc["sha256"] == w.images[image].sha256
        assert doc["person"]["box"] == person.box and doc["person"]["keypoints"] == person.keypoints
        assert doc["person"]["shot_type"] == person.shot_type and doc["person"]["caption"] == person.caption

    # label selection and provenance in the JSON
    doc = json.loads(samples[_key(w, "A", 0)]["json"])
    by_name = doc["labels"]
    assert set(by_name) == {
        "0.country", "0.age", "0.gender", "3.hair_color", "3.hair_length", "6.type", "6.color", "12.present",
        "14.overall_style",
    }  # fmt: skip
    assert by_name["0.gender"]["value"] == "female" and by_name["0.gender"]["origin"] == "human"
    assert by_name["0.gender"]["annotator"] == "ann1" and by_name["0.gender"]["state"] == "human_verified"
    assert by_name["0.country"] == {
        "group": 0, "key": "country", "value": "Caucasian", "confidence": 0.93, "origin": "model",
        "model_version": "vlm@1", "taxonomy_version": "cm-1.0", "state": "auto_accepted", "annotator": "",
        "agreement": None, "human_answers": 0,
    }  # fmt: skip
    assert by_name["14.overall_style"]["human_answers"] == 3
    assert by_name["14.overall_style"]["agreement"] in (pytest.approx(2 / 3, abs=1e-3), pytest.approx(1 / 3, abs=1e-3))
    assert doc["provenance"]["by_origin"] == {"human": 2, "model": 7}

    # the parquet index, read by pyarrow
    index = pq.read_table(_release_dir(w, "2026.01.01.1") / "index.parquet").to_pylist()
    rows = {r["key"]: r for r in index}
    assert set(rows) == keys
    a = rows[_key(w, "A", 0)]
    assert (a["height"], a["width"], a["person_type"]) == (512, 512, "upper_body")
    assert a["path"] == f"images/{a['sha256'][:2]}/{a['sha256']}.jpg" and a["segm_path"].endswith(".png")
    aa_text, aa_ids = json.loads(a["aa_text"]), json.loads(a["aa_ids"])
    assert len(aa_text) == len(aa_ids) == 20
    assert aa_text[0] == {"country": "Caucasian", "age": "adult", "gender": "female"} and aa_ids[0] == FOREGROUND
    assert aa_text[3] == {"hair color": "brown"} and aa_ids[3] == [2]  # "n/a" left out; CosmicMan's spelling
    assert aa_text[6] == {"color": "white", "type": "spacesuit"} and aa_ids[6] == [4]
    assert aa_text[8] is None and aa_ids[8] is None  # the only bottoms label was rejected
    assert aa_text[12] is None  # belt: present = no
    assert aa_text[14] in ({"overall-style": "uniform"}, {"overall-style": "casual"})
    assert doc["aa_text"] == aa_text  # the shard's JSON says the same
    assert a["caption"] == "an astronaut in a white spacesuit" and a["shard"].startswith("shards/")
    b0 = json.loads(rows[_key(w, "B", 0)]["aa_text"])
    assert b0[0] == {"gender": "male"} and b0[6] == {"type": "t-shirt"} and b0.count(None) == 18
    assert json.loads(a["labels"])["0.gender"]["origin"] == "human"
    assert json.loads(rows[_key(w, "D", 0)]["provenance"])["by_origin"] == {"human": 2}

    # verify and materialize: path / segm_path resolve under the folder
    assert verify_release(w.store, "2026.01.01.1", expected_digest=release.digest).ok
    out = materialize(w.store, "2026.01.01.1", w.store.root.parent / "materialized")  # type: ignore[attr-defined]
    for row in pq.read_table(out).to_pylist():
        image = PILImage.open(out.parent / row["path"])
        assert (image.width, image.height) == (row["width"], row["height"])
        segm = PILImage.open(out.parent / row["segm_path"])
        assert segm.mode == "P" and np.asarray(segm).shape == (row["height"], row["width"])


def test_hf_datasets_reads_the_index(world: World, tmp_path: Path) -> None:
    import datasets

    _export(world, version="v1")
    path = _release_dir(world, "v1") / "index.parquet"
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 3
    assert {"path", "segm_path", "height", "width", "person_type", "aa_text", "aa_ids", "key", "sha256"} <= set(
        ds.column_names
    )
    row = next(r for r in ds if r["key"] == _key(world, "D", 0))
    assert json.loads(row["aa_text"])[8] == {"type": "skirt"}


def test_presets_and_filters(world: World) -> None:
    w = world
    human = _export(w, version="h1", preset="human-verified-only", parent=None)
    assert human.counts["samples"] == 2
    rows = {r["key"]: r for r in pq.read_table(_release_dir(w, "h1") / "index.parquet").to_pylist()}
    assert set(rows) == {_key(w, "A", 0), _key(w, "D", 0)}
    assert set(json.loads(rows[_key(w, "A", 0)]["labels"])) == {"0.gender", "14.overall_style"}

    sure = _export(w, version="c1", preset="confidence>=0.9", parent=None)
    rows = {r["key"]: r for r in pq.read_table(_release_dir(w, "c1") / "index.parquet").to_pylist()}
    assert set(rows) == {_key(w, "A", 0), _key(w, "B", 0), _key(w, "D", 0)} and sure.counts["samples"] == 3
    assert set(json.loads(rows[_key(w, "B", 0)]["labels"])) == {"6.type"}  # the 0.6 gender is below the bar
    assert "3.hair_color" not in json.loads(rows[_key(w, "A", 0)]["labels"])  # 0.88

    studio = _export(w, version="s1", parent=None, filters={"sources": ["studio"]})
    assert studio.counts["samples"] == 1
    shots = _export(w, version="f1", parent=None, filters={"shot_types": ["full_body"]})
    assert shots.counts["samples"] == 2 and shots.counts["whole_images"] == 0
    with pytest.raises(InvalidInput):
        _export(w, version="x1", preset="most-things")


def test_resized_release_scales_geometry(world: World) -> None:
    w = world
    _export(w, version="r1", image_mode="resize:256")
    rows = {r["key"]: r for r in pq.read_table(_release_dir(w, "r1") / "index.parquet").to_pylist()}
    a = rows[_key(w, "A", 0)]
    assert (a["width"], a["height"]) == (256, 256) and a["path"].endswith(".jpg")
    out = materialize(w.store, "r1", w.store.root.parent / "r1")  # type: ignore[attr-defined]
    assert PILImage.open(out.parent / a["path"]).size == (256, 256)
    segm = np.asarray(PILImage.open(out.parent / a["segm_path"]))
    assert segm.shape == (256, 256) and set(np.unique(segm)) <= set(np.unique(w.parsing["A0"]))
    assert rows[_key(w, "B", 0)]["width"] == 160  # already small: original bytes kept


def test_versions_are_immutable_and_follow_the_scheme(world: World) -> None:
    w = world
    first = _export(w)
    assert paths.next_version([], __import__("datetime").date(2026, 1, 2)) == "2026.01.02.1"
    assert first.version.count(".") == 3 and first.version.endswith(".1")
    second = _export(w)
    assert second.version.endswith(".2") and second.parent_version == first.version
    assert published_versions(w.store) == [first.version, second.version]
    with pytest.raises(Conflict):
        _export(w, version=first.version)
    with pytest.raises(InvalidInput):
        _export(w, version="../escape")
    with pytest.raises(NotFound):
        _export(w, version="z1", parent="never-published")


def test_engine_figures_come_from_the_annotation_settings_given(world: World) -> None:
    """Without given figures the export computes them with the annotation section it is passed (none: an error)."""
    from annotate_anyone.annotation.settings import AnnotationConfig

    w = world
    with pytest.raises(InvalidInput, match="annotation settings"):
        export_release(w.session, w.store, version="2026.01.03.1")
    assert published_versions(w.store) == []  # refused before writing anything
    export_release(w.session, w.store, version="2026.01.03.1", annotation=AnnotationConfig(gate=0.7))
    routing = load_manifest(w.store, "2026.01.03.1")["routing"]
    assert routing["gate"] == 0.7 and routing["labels"]["auto_accepted"] + routing["labels"]["needs_review"] > 0


def test_tampered_shard_fails_verify(world: World) -> None:
    w = world
    release = _export(w, version="t1")
    manifest = load_manifest(w.store, "t1")
    assert verify_release(w.store, "t1").ok
    shard = _release_dir(w, "t1") / manifest["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # one bit-flipped byte inside the first member's data
    shard.write_bytes(bytes(data))
    report = verify_release(w.store, "t1", expected_digest=release.digest)
    assert not report.ok and any("sha256 mismatch" in e for e in report.errors)
    (_release_dir(w, "t1") / "CHANGES.md").write_text("rewritten history\n")
    assert any("CHANGES.md" in e for e in verify_release(w.store, "t1").errors)
    with pytest.raises(InvalidInput):
        materialize(w.store, "t1", shard.parent.parent / "out")


def test_daring_reader_consumes_a_materialized_release(world: World) -> None:
    """The trainer's reader (datasets.open_release of a folder laid out on disk) reads the materialized folder."""
    from annotate_anyone.datasets import LocalRelease, open_release

    w = world
    _export(w, version="m1")
    out = materialize(w.store, "m1", w.store.root.parent / "m1")  # type: ignore[attr-defined]
    release = open_release(out.parent)
    assert isinstance(release, LocalRelease) and release.version == "m1"
    assert len(release) == 3
    for i in range(len(release)):
        row = release.row(i)
        assert len(row.aa_text) == 20
        assert release.image(i).size == (row.width, row.height)
        assert release.parsing(i).shape == (row.height, row.width)
    assert open_release(w.store.root).version == "m1"  # type: ignore[attr-defined]  # the store: its newest release
    from annotate_anyone.daring.data import open_training_release

    assert len(open_training_release(out.parent)) == 3
    with pytest.raises(InvalidInput, match="materialize"):  # the trainer reads a release laid out on disk only
        open_training_release(w.store.root)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="holds release m1"):
        open_release(out.parent, "m2")

"""A second release after relabelling and takedowns: the diff, the tombstones, and crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from annotate_anyone.catalog.models import Image, ImageStatus, Source
from annotate_anyone.catalog.takedown import is_taken_down, take_down
from annotate_anyone.errors import InvalidInput, NotFound
from annotate_anyone.release import paths
from annotate_anyone.release.manifest import load_manifest, published_versions
from annotate_anyone.release.verify import verify_release
from tests.unit.test_release_factories import World, export, jpeg, world_fixture  # noqa: F401


def _key(w: World, image: str, index: int | None) -> str:
    return paths.sample_key(w.images[image].sha256, index)


def _read(w: World, version: str, name: str) -> dict:
    return json.loads(w.store.get_bytes(paths.key(version, name)))


def test_second_release_diff_and_tombstones(world: World) -> None:
    w = world
    export(w, version="1.0")
    w.session.commit()

    # relabel: a human corrects A0's hair colour; a new model version relabels B0's top
    w.human("A0", 3, "hair_color", "black", "ann2")
    w.label("B0", 6, "type", "shirt", confidence=0.97, model_version="vlm@2")
    # takedowns: D by hash, C by its URL; a new image F arrives
    take_down(w.session, sha256=w.images["D"].sha256, reason="subject asked for removal", requested_by="legal")
    take_down(w.session, url=w.images["C"].source_uri, reason="DMCA notice")
    w.image("F", jpeg(9, (64, 64)))
    w.person("F0", "F")
    w.label("F0", 0, "gender", "female", confidence=0.92)
    w.session.commit()
    assert w.session.get(Image, w.images["D"].id).status == ImageStatus.taken_down
    assert is_taken_down(w.session, url=w.images["C"].source_uri) and not is_taken_down(w.session, sha256="0" * 64)

    second = export(w, version="1.1")
    w.session.commit()
    assert second.parent_version == "1.0"
    changes = _read(w, "1.1", paths.CHANGES_JSON)
    assert changes["parent"] == "1.0"
    assert [a["key"] for a in changes["added"]] == [_key(w, "F", 0)]
    assert {r["key"]: r["reason"] for r in changes["removed"]} == {_key(w, "D", 0): "takedown"}  # C never was in
    relabelled = {r["key"]: r["changes"] for r in changes["relabelled"]}
    assert set(relabelled) == {_key(w, "A", 0), _key(w, "B", 0)}
    (hair,) = relabelled[_key(w, "A", 0)]
    assert hair["attribute"] == "3.hair_color" and hair["value_changed"]
    assert hair["from"]["value"] == "brown" and hair["from"]["origin"] == "model"
    assert hair["to"]["value"] == "black" and hair["to"]["origin"] == "human"
    assert hair["why"] == "human review by ann2 corrected the model"
    (top,) = relabelled[_key(w, "B", 0)]
    assert (top["from"]["value"], top["to"]["value"]) == ("t-shirt", "shirt")
    assert top["why"] == "relabelled by model vlm@2 (was vlm@1)"
    assert changes["summary"]["unchanged"] == 0
    md = w.store.get_bytes(paths.key("1.1", paths.CHANGES_MD)).decode()
    assert "Changes against 1.0" in md and "'brown' -> 'black'" in md and "takedown" in md

    tomb = {t["sha256"]: t for t in _read(w, "1.1", paths.TOMBSTONES)["tombstones"]}
    assert set(tomb) == {w.images["C"].sha256, w.images["D"].sha256}
    d = tomb[w.images["D"].sha256]
    assert d["reason"] == "subject asked for removal" and d["in_parent"]
    assert tomb[w.images["C"].sha256]["kind"] == "url"
    manifest = load_manifest(w.store, "1.1")
    assert manifest["counts"]["tombstones"] == 2 and manifest["changes"]["removed"] == 1
    keys = set(pq.read_table(w.store.root / "releases/1.1/index.parquet").column("key").to_pylist())  # type: ignore[attr-defined]
    assert _key(w, "D", 0) not in keys and _key(w, "C", None) not in keys

    # a taken-down image ingested again (status back to kept) is still excluded by its takedown row
    w.session.get(Image, w.images["D"].id).status = ImageStatus.kept
    w.session.commit()
    third = export(w, version="1.2")
    w.session.commit()
    assert third.counts["samples"] == second.counts["samples"]
    assert _read(w, "1.2", paths.CHANGES_JSON)["summary"]["added"] == 0
    assert all(t["in_parent"] is False for t in _read(w, "1.2", paths.TOMBSTONES)["tombstones"])


def test_source_takedown_and_validation(world: World) -> None:
    w = world
    take_down(w.session, source="studio", reason="licence withdrawn")
    w.session.commit()
    assert w.session.get(Source, w.sources["studio"].id).taken_down
    release = export(w, version="s")
    assert release.counts["samples"] == 2 and release.counts["tombstones"] == 1
    with pytest.raises(InvalidInput):
        take_down(w.session, sha256="abc", reason="x")
    with pytest.raises(InvalidInput):
        take_down(w.session, url="u", source="studio", reason="x")
    with pytest.raises(NotFound):
        take_down(w.session, source="nope", reason="x")


class Boom(RuntimeError):
    pass


def test_a_crash_mid_export_leaves_no_visible_release(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world

    def crash_after(n: int):
        def progress(done: int, total: int) -> None:
            if done >= n:
                raise Boom("killed")

        return progress

    # crash while writing shards (after 256 of 305 samples read; the 150 persons without parsing are left out)
    from tests.unit.test_release_factories import many

    many(w, 300)
    with pytest.raises(Boom):
        export(w, version="2.0", shard_size_bytes=20_000, progress=crash_after(256))
    w.session.rollback()
    root: Path = w.store.root  # type: ignore[attr-defined]
    assert any((root / "releases/2.0/shards").iterdir())  # shards were written ...
    assert published_versions(w.store) == []  # ... but no manifest: the version does not exist
    with pytest.raises(NotFound):
        verify_release(w.store, "2.0")

    # crash after every other file, just before the manifest
    import annotate_anyone.release.export as export_module

    def no_manifest(*args: object, **kwargs: object) -> str:
        raise Boom("power cut")

    monkeypatch.setattr(export_module, "write_manifest", no_manifest)
    with pytest.raises(Boom):
        export(w, version="2.0", shard_size_bytes=20_000)
    w.session.rollback()
    assert (root / "releases/2.0/index.parquet").exists() and published_versions(w.store) == []
    monkeypatch.undo()

    # the retry removes the leftovers and publishes a complete, verifiable release
    (root / "releases/2.0/shards/999999.tar").write_bytes(b"stale")
    release = export(w, version="2.0", shard_size_bytes=20_000)
    w.session.commit()
    assert published_versions(w.store) == ["2.0"]
    assert not (root / "releases/2.0/shards/999999.tar").exists()
    assert not list(root.glob("releases/2.0/**/.tmp-*"))
    assert verify_release(w.store, "2.0", expected_digest=release.digest).ok
    assert release.counts["samples"] == 153 and release.counts["left_out"]["export:no_parsing"] == 151

"""The trainers' loader: verification on open, exactly-once splitting over ranks x workers, deterministic
per-epoch shuffling, and mid-epoch resume."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from annotate_anyone.errors import InvalidInput
from annotate_anyone.release import paths
from annotate_anyone.release.manifest import load_manifest
from tests.unit.test_release_factories import World, export, many, world_fixture  # noqa: F401


@pytest.fixture
def release(world: World):
    many(world, 37)
    export(world, version="d1", shard_size_bytes=12_000)
    world.session.commit()
    from annotate_anyone.datasets import open_release

    return open_release(world.store.root, "d1")  # type: ignore[attr-defined]


def _keys(samples) -> list[str]:
    return [s["__key__"] for s in samples]


def test_imports_and_iterates_without_torch(world: World) -> None:
    export(world, version="n1")
    world.session.commit()
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from annotate_anyone.datasets import ReleaseStream, open_release\n"
        f"r = open_release({str(world.store.root)!r}, 'n1')\n"  # type: ignore[attr-defined]
        "print(len(list(ReleaseStream(r, decode='raw'))))\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


def test_samples_decode_like_the_database(release, world: World) -> None:
    from annotate_anyone.datasets import ReleaseStream

    assert len(release.shards) > 4 and release.num_samples == 22  # 3 + the 19 of 37 with a parsing map
    samples = {s["__key__"]: s for s in ReleaseStream(release)}
    a = samples[paths.sample_key(world.images["A"].sha256, 0)]
    assert a["image"].size == (512, 512) and np.array_equal(a["parsing"], world.parsing["A0"])
    assert a["json"]["person"]["caption"] == "an astronaut in a white spacesuit"
    assert a["json"]["aa_text"][3] == {"hair color": "brown"}


def test_two_ranks_two_workers_see_every_sample_once(release) -> None:
    from torch.utils.data import DataLoader

    from annotate_anyone.datasets import ReleaseDataset

    everything = set(release.index(["key"]).column("key").to_pylist())
    seen: list[str] = []
    per_rank = []
    for rank in (0, 1):
        ds = ReleaseDataset(release, rank=rank, world_size=2, decode="raw", shuffle_window=4, seed=7)
        got = _keys(DataLoader(ds, batch_size=None, num_workers=2))
        assert len(got) == len(ds)
        per_rank.append(got)
        seen += got
    assert Counter(seen) == Counter(everything)  # every sample exactly once
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1

    # deterministic per epoch, different across epochs
    again = ReleaseDataset(release, rank=0, world_size=2, decode="raw", shuffle_window=4, seed=7)
    assert _keys(DataLoader(again, batch_size=None, num_workers=2)) == per_rank[0]
    again.set_epoch(1)
    epoch1 = _keys(DataLoader(again, batch_size=None, num_workers=2))
    assert epoch1 != per_rank[0] and len(epoch1) == len(per_rank[0])


def test_resume_mid_epoch_in_process(release) -> None:
    from annotate_anyone.datasets import ReleaseStream

    full = ReleaseStream(release, decode="raw", shuffle_window=5, seed=3)
    full.set_epoch(2)
    order = _keys(full)
    assert sorted(order) == sorted(set(order)) and len(order) == 22

    first = ReleaseStream(release, decode="raw", shuffle_window=5, seed=3)
    first.set_epoch(2)
    it = iter(first)
    head = [next(it)["__key__"] for _ in range(17)]
    state = first.state_dict()
    resumed = ReleaseStream(release, decode="raw", shuffle_window=5, seed=3)
    resumed.load_state_dict(state)
    assert head + _keys(resumed) == order
    with pytest.raises(InvalidInput):
        ReleaseStream(release, seed=4).load_state_dict(state)


def test_resume_mid_epoch_with_workers(release) -> None:
    from torch.utils.data import DataLoader

    from annotate_anyone.datasets import ReleaseDataset

    def loader(ds):
        return DataLoader(ds, batch_size=3, num_workers=2, collate_fn=list)

    ds = ReleaseDataset(release, decode="raw", shuffle_window=4)
    consumed: list[str] = []
    for i, batch in enumerate(loader(ds)):
        ds.record(batch)
        consumed += _keys(batch)
        if i == 4:
            break
    state = ds.state_dict()
    assert sum(state["consumed"].values()) == 15 and state["consumers"] == 2
    resumed = ReleaseDataset(release, decode="raw", shuffle_window=4)
    resumed.load_state_dict(state)
    rest = [k for batch in loader(resumed) for k in _keys(batch)]
    assert Counter(consumed + rest) == Counter(release.index(["key"]).column("key").to_pylist())
    with pytest.raises(InvalidInput):  # same state, other number of consumers
        next(iter(DataLoader(resumed, batch_size=None, num_workers=0)))


def test_verification_on_open_and_while_streaming(release) -> None:
    from annotate_anyone.datasets import ReleaseStream, open_release

    root: Path = release.store.root
    manifest = load_manifest(release.store, "d1")
    shard = root / "releases/d1" / manifest["shards"][1]["name"]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0x01  # same size, one flipped bit
    shard.write_bytes(bytes(data))
    reopened = open_release(root, "d1")  # sizes still match: the quick check passes ...
    with pytest.raises(InvalidInput, match="checksum"):  # ... and the shard's hash fails when read
        list(ReleaseStream(reopened, decode="raw", shuffle=False))
    with pytest.raises(InvalidInput):
        open_release(root, "d1", verify="full")
    shard.write_bytes(bytes(data[:-512]))
    with pytest.raises(InvalidInput, match="bytes"):
        open_release(root, "d1")

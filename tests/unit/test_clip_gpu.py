"""GPU-worker plumbing: device/dtype from settings, one model load per process, dynamic batching, queue routing."""

import threading
import time

import pytest

from annotate_anyone.errors import ConfigError
from annotate_anyone.executors import gpu
from annotate_anyone.executors.celery import _queues, unit_queue, worker_argv
from annotate_anyone.settings import Settings


def test_device_and_dtype_resolution():
    import torch

    cuda = torch.cuda.is_available()
    assert gpu.resolve_device("auto") == ("cuda" if cuda else "cpu")
    assert gpu.resolve_device("CPU") == "cpu"
    assert gpu.resolve_dtype("auto", "cpu") == torch.float32
    assert gpu.resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert gpu.resolve_dtype("float16", "cuda") == torch.float16
    if cuda:
        assert gpu.resolve_dtype("auto", "cuda") in (torch.bfloat16, torch.float16)
    else:
        with pytest.raises(ConfigError, match="no CUDA"):
            gpu.resolve_device("cuda")
    with pytest.raises(ConfigError):
        gpu.resolve_device("tpu")
    with pytest.raises(ConfigError):
        gpu.resolve_dtype("int3", "cpu")


def test_models_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("AA_MODELS__DEVICE", "cpu")
    monkeypatch.setenv("AA_MODELS__DTYPE", "bfloat16")
    monkeypatch.setenv("AA_MODELS__GPU_QUEUE", "gpu")
    monkeypatch.setenv("AA_MODELS__CASCADE_GATE", "0.7")
    m = Settings().models
    assert (m.device, m.dtype, m.gpu_queue, m.cascade_gate) == ("cpu", "bfloat16", "gpu", 0.7)
    monkeypatch.setenv("AA_MODELS__CASCADE_GATE", "2")
    with pytest.raises(ValueError):
        Settings()


def test_each_model_is_loaded_once_per_process_and_again_when_the_checkpoint_changes(tmp_path):
    gpu.clear_loaded()
    ckpt = tmp_path / "m"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "clip"}')
    built = []

    def factory():
        built.append(object())
        return built[-1]

    results = []
    threads = [threading.Thread(target=lambda: results.append(gpu.load_once("clip", ckpt, factory, device="cpu")))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(r is built[0] for r in results)
    assert gpu.load_once("clip", ckpt, factory, device="cuda") is not built[0]  # other options: another load
    (ckpt / "config.json").write_text('{"model_type": "clip", "projection_dim": 8}')  # a new version
    assert gpu.load_once("clip", ckpt, factory, device="cpu") is built[-1] and len(built) == 3
    assert set(gpu.LOADS.values()) == {1}
    gpu.clear_loaded()


def test_dynamic_batcher_merges_concurrent_callers_and_keeps_each_callers_results():
    calls = []

    def fn(items):
        calls.append(list(items))
        time.sleep(0.02)
        return [x * 10 for x in items]

    batcher = gpu.DynamicBatcher(fn, max_batch=8, max_wait_s=0.2)
    out: dict[int, list[int]] = {}

    def caller(k):
        out[k] = batcher.run([k * 100 + i for i in range(3)])

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {k: [(k * 100 + i) * 10 for i in range(3)] for k in range(4)}
    assert sum(batcher.batches) == 12 and max(batcher.batches) <= 8
    assert len(calls) < 4  # items of several callers shared a forward
    # One caller whose items exceed the batch size: split, in order, no waiting needed.
    solo = gpu.DynamicBatcher(fn, max_batch=4)
    assert solo.run(list(range(10))) == [x * 10 for x in range(10)] and solo.batches == [4, 4, 2]


def test_dynamic_batcher_hands_errors_to_every_waiting_caller():
    def fn(items):
        raise RuntimeError("out of memory")

    batcher = gpu.DynamicBatcher(fn, max_batch=4)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.run([1, 2])
    assert batcher._running is False and batcher.batches == [2]  # the next caller is not blocked


def test_annotation_units_go_to_the_gpu_queue_only_when_configured():
    plain = Settings()
    assert unit_queue(plain, "annotate") is None
    routed = Settings(models={"gpu_queue": "gpu"})
    assert unit_queue(routed, "annotate") == "gpu"
    assert unit_queue(routed, "ingest") is None and unit_queue(routed, "export") is None


def test_worker_argv_defaults_a_gpu_worker_to_one_process_with_threads():
    routed = Settings(models={"gpu_queue": "gpu"})
    assert _queues(["-Q", "gpu,other", "--queues=x", "-Qy", "--queues", "z"]) == ["gpu", "other", "x", "y", "z"]
    argv = worker_argv(["--queues", "gpu"], routed)
    assert argv[:4] == ["worker", "--loglevel=INFO", "--queues", "gpu"] and "--pool=threads" in argv
    assert "--pool=threads" not in worker_argv(["--queues", "gpu", "--concurrency", "2"], routed)
    assert "--pool=threads" not in worker_argv(["-Q", "annotate-anyone"], routed)
    assert "--pool=threads" not in worker_argv(["--queues", "gpu"], Settings())  # no GPU queue configured

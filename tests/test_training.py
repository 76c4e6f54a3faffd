"""Training is deterministic; the model cache hits, misses on any change, and survives corruption."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from helpers import cache, training
from helpers.training import TrainConfig, cache_key, train, train_cached, training_order
from tests.conftest import synthetic

TINY = TrainConfig(epochs=1, batch_size=50, learning_rate=1e-3)


def weights_equal(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def test_training_order_covers_each_epoch_once():
    order = training_order(10, TrainConfig(epochs=2.5))
    assert len(order) == 25
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))
    assert len(set(order[20:])) == 5
    np.testing.assert_array_equal(order, training_order(10, TrainConfig(epochs=2.5)))


def test_steps_and_samples():
    assert TrainConfig(epochs=1.5, batch_size=128).steps(55000) == 645
    assert TrainConfig(epochs=0.001).n_samples(10) == 1


def test_same_inputs_give_the_same_weights():
    x, y = synthetic(200)
    a = train(x, y, TINY, progress=False)
    b = train(x, y, TINY, progress=False)
    assert weights_equal(a, b)
    c = train(x, y, replace(TINY, seed=1), progress=False)
    assert not weights_equal(a, c)


def test_cache_miss_then_hit(tmp_path):
    x, y = synthetic(200)
    first = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    assert not first.from_cache and first.path.is_file() and first.train_seconds > 0
    meta = json.loads(first.sidecar.read_text())
    assert meta["key"] == first.key and meta["inputs"]["config"]["batch_size"] == 50 and meta["kind"] == "model"
    assert set(meta["sources"]) == {"helpers.training", "helpers.model"}
    stem = f"model-{first.key[:32]}"
    assert first.sidecar.name == f"{stem}.json" and first.path.name == meta["file"] == f"{stem}-{first.sha256[:16]}.keras"
    second = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.path == first.path and weights_equal(first.model, second.model)
    assert second.train_seconds == round(first.train_seconds, 3) and second.sha256 == meta["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, first.sidecar.name])
    assert weights_equal(training.load_verified_model(first.path, meta["sha256"]), first.model)
    with pytest.raises(ValueError, match="refusing to load it"):
        training.load_verified_model(first.path, "0" * 64)


def test_any_change_gives_another_key():
    x, y = synthetic(200)
    base = cache_key(x, y, TINY, {"rate": 0.05})
    x2 = x.copy()
    x2[0, 0, 0] ^= 1
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    others = [
        cache_key(x2, y, TINY, {"rate": 0.05}),  # one pixel
        cache_key(x, y2, TINY, {"rate": 0.05}),  # one label
        cache_key(x, y.astype(np.int64), TINY, {"rate": 0.05}),  # the labels' dtype
        cache_key(x[:100], y[:100], TINY, {"rate": 0.05}),  # fewer images
        cache_key(x, y, replace(TINY, epochs=2), {"rate": 0.05}),
        cache_key(x, y, replace(TINY, seed=1), {"rate": 0.05}),
        cache_key(x, y, replace(TINY, learning_rate=2e-3), {"rate": 0.05}),
        cache_key(x, y, TINY, {"rate": 0.06}),
    ]
    assert len({base, *others}) == len(others) + 1
    assert cache_key(x, y, TINY, {"rate": 0.05}) == base
    assert cache_key(x, y, replace(TINY, batch_size=np.int64(50)), {"rate": 0.05}) == base


def test_key_covers_architecture_sources_and_versions(monkeypatch):
    x, y = synthetic(20)
    base = cache_key(x, y, TINY)
    monkeypatch.setattr(cache, "__version__", "999")
    assert cache_key(x, y, TINY) != base
    monkeypatch.undo()
    monkeypatch.setattr(training, "ARCHITECTURE", training.ARCHITECTURE[:-1])
    assert cache_key(x, y, TINY) != base
    monkeypatch.undo()
    real = cache._source_text
    for module in (training, sys.modules["helpers.model"]):
        monkeypatch.setattr(cache, "_source_text", lambda obj, m=module: real(obj) + ("# edited" if obj is m else ""))
        assert cache_key(x, y, TINY) != base
        monkeypatch.undo()
    versions = cache.library_versions()
    monkeypatch.setattr(cache, "library_versions", lambda: {**versions, "tensorflow": "0.0"})
    assert cache_key(x, y, TINY) != base
    monkeypatch.undo()
    assert cache_key(x, y, TINY) == base


@pytest.mark.parametrize("damage", ["truncate", "sidecar-hash", "garbage-json", "missing-payload"])
def test_corrupt_cache_entry_is_retrained(tmp_path, damage):
    x, y = synthetic(200)
    first = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    sidecar = first.sidecar
    if damage == "truncate":
        first.path.write_bytes(first.path.read_bytes()[:100])
    elif damage == "sidecar-hash":
        meta = json.loads(sidecar.read_text())
        meta["sha256"] = "0" * 64
        sidecar.write_text(json.dumps(meta))
    elif damage == "missing-payload":
        first.path.unlink()
    else:
        sidecar.write_text("{not json")
    with pytest.warns(UserWarning, match="unusable.*retraining"):
        again = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    assert not again.from_cache and weights_equal(first.model, again.model)
    assert train_cached(x, y, TINY, cache_dir=tmp_path, progress=False).from_cache
    assert len(list(tmp_path.glob("*.keras"))) == 1


def test_non_json_describe_is_refused_before_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("must not train")

    monkeypatch.setattr(training, "train", no_training)
    x, y = synthetic(20)
    with pytest.raises(TypeError, match=r"describe\['target'\] is numpy.int64; convert it to int"):
        train_cached(x, y, TINY, describe={"target": np.int64(0)}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"describe\['rate'\] is nan"):
        train_cached(x, y, TINY, describe={"rate": float("nan")}, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train_cached(x, y, {"epochs": 1}, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_config_stores_plain_python_numbers():
    config = TrainConfig(epochs=np.float32(1), batch_size=np.int64(50), learning_rate=np.float64(1e-3),
                         warmup=np.float32(0.5), seed=np.uint8(3))
    assert config == TrainConfig(epochs=1.0, batch_size=50, learning_rate=1e-3, warmup=0.5, seed=3)
    assert [type(v) for v in (config.epochs, config.batch_size, config.learning_rate, config.warmup, config.seed)] == [
        float, int, float, float, int]
    assert type(TrainConfig(epochs=2).epochs) is float


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs must be a finite number > 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be in 1"),
        ({"learning_rate": float("inf")}, ValueError, "learning_rate must be a finite number > 0"),
        ({"warmup": 2}, ValueError, r"warmup must be in \[0, 1\]"),
        ({"seed": -1}, ValueError, "seed must be in 0"),
        ({"batch_size": 12.5}, TypeError, "batch_size must be an integer"),
        ({"batch_size": True}, TypeError, "batch_size must be an integer"),
        ({"seed": np.True_}, TypeError, "seed must be an integer"),
        ({"epochs": True}, TypeError, "epochs must be a positive number"),
        ({"warmup": False}, TypeError, r"warmup must be a number in \[0, 1\]"),
    ],
)
def test_bad_training_config(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_bad_training_data_is_rejected_before_anything_is_written(tmp_path):
    x, y = synthetic(20)
    with pytest.raises(TypeError, match="x must be uint8"):
        train_cached(x.astype(np.float32), y, TINY, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="y has 19 labels"):
        train_cached(x, y[:19], TINY, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []

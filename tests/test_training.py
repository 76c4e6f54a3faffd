"""Training is deterministic; the model cache hits, misses on any change, and survives corruption."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from helpers import training
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
    assert not first.from_cache and first.path.is_file()
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta["key"] == first.key and meta["config"]["batch_size"] == 50
    second = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.path == first.path and weights_equal(first.model, second.model)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, first.path.with_suffix(".json").name])


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
        cache_key(x, y, replace(TINY, epochs=2), {"rate": 0.05}),
        cache_key(x, y, replace(TINY, seed=1), {"rate": 0.05}),
        cache_key(x, y, replace(TINY, learning_rate=2e-3), {"rate": 0.05}),
        cache_key(x, y, TINY, {"rate": 0.06}),
    ]
    assert len({base, *others}) == 7
    assert cache_key(x, y, TINY, {"rate": 0.05}) == base


def test_key_covers_architecture_and_version(monkeypatch):
    x, y = synthetic(20)
    base = cache_key(x, y, TINY)
    monkeypatch.setattr(training, "__version__", "999")
    assert cache_key(x, y, TINY) != base
    monkeypatch.undo()
    monkeypatch.setattr(training, "ARCHITECTURE", training.ARCHITECTURE[:-1])
    assert cache_key(x, y, TINY) != base


@pytest.mark.parametrize("damage", ["truncate", "sidecar-hash", "garbage-json"])
def test_corrupt_cache_entry_is_retrained(tmp_path, damage):
    x, y = synthetic(200)
    first = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    sidecar = first.path.with_suffix(".json")
    if damage == "truncate":
        first.path.write_bytes(first.path.read_bytes()[:100])
    elif damage == "sidecar-hash":
        meta = json.loads(sidecar.read_text())
        meta["sha256"] = "0" * 64
        sidecar.write_text(json.dumps(meta))
    else:
        sidecar.write_text("{not json")
    with pytest.warns(UserWarning, match="unusable.*retraining"):
        again = train_cached(x, y, TINY, cache_dir=tmp_path, progress=False)
    assert not again.from_cache and weights_equal(first.model, again.model)
    assert train_cached(x, y, TINY, cache_dir=tmp_path, progress=False).from_cache


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs must be a finite number > 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be in 1"),
        ({"learning_rate": float("inf")}, ValueError, "learning_rate must be a finite number > 0"),
        ({"warmup": 2}, ValueError, r"warmup must be in \[0, 1\]"),
        ({"seed": -1}, ValueError, "seed must be in 0"),
        ({"batch_size": 12.5}, TypeError, "batch_size must be an integer"),
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


def test_array_cache_hit_miss_and_corruption(tmp_path):
    from helpers.cache import cached_arrays

    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(5)}

    first, _, hit = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert not hit and first["a"].tolist() == [0, 1, 2, 3, 4]
    again, _, hit = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert hit and len(calls) == 1
    cached_arrays("demo", {"p": 2}, compute, tmp_path)
    assert len(calls) == 2  # another payload, another entry
    from helpers.cache import key_of

    npz = tmp_path / f"demo-{key_of({'name': 'demo', 'p': 1})[:24]}.npz"
    npz.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unusable"):
        back, _, hit = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert not hit and back["a"].tolist() == [0, 1, 2, 3, 4] and len(calls) == 3

"""helpers.memo: results of slow helpers remembered by argument, stored without pickle, rebuilt exactly."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pytest

from helpers import memo
from helpers.metrics import Evaluation


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BADNETS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fingerprint_accepts_numpy_scalars_and_keeps_kinds_apart():
    assert memo.fingerprint(np.float64(0.04)) == memo.fingerprint(0.04)
    assert memo.fingerprint(np.int64(3)) == memo.fingerprint(3)
    assert memo.fingerprint(True) != memo.fingerprint(1)
    assert memo.fingerprint(2) != memo.fingerprint(2.0)
    assert memo.fingerprint(float("nan")) == {"float": "nan"}  # an identity; the function's own check rejects it
    json.dumps(memo.fingerprint({"a": [1, (2.5, None)], "b": "x"}), allow_nan=False)


def test_fingerprint_follows_array_content_dtype_and_shape():
    a = np.arange(6, dtype=np.uint8)
    assert memo.fingerprint(a) == memo.fingerprint(a.copy())
    assert memo.fingerprint(a) != memo.fingerprint(a + 1)
    assert memo.fingerprint(a) != memo.fingerprint(a.astype(np.int16))
    assert memo.fingerprint(a) != memo.fingerprint(a.reshape(2, 3))


def test_fingerprint_refuses_what_it_cannot_identify():
    with pytest.raises(memo.Unfingerprintable):
        memo.fingerprint(object())
    with pytest.raises(memo.Unfingerprintable):
        memo.fingerprint(np.array([object()]))


def _evaluation():
    return Evaluation(np.float64(0.9875), 0.99, np.arange(5, dtype=np.uint8), np.zeros(3, np.uint8),
                      np.array([0.1, np.nan]), np.array([0.2, 0.3]), np.eye(2, dtype=np.int64), np.ones((2, 2)))


def test_pack_and_unpack_rebuild_nested_values_exactly():
    value = {"ev": _evaluation(), "curve": [(0, 0.5, np.float32(0.25))], "flags": (True, None, "x", 10**20),
             "nan": float("nan")}
    back = memo.unpack(memo.pack(value))
    ev = back["ev"]
    assert isinstance(ev, Evaluation) and type(ev.clean_accuracy) is np.float64 and ev.clean_accuracy == 0.9875
    np.testing.assert_array_equal(ev.clean_error_per_class, value["ev"].clean_error_per_class)  # NaN included
    assert ev.clean_pred.dtype == np.uint8 and ev.clean_confusion.dtype == np.int64
    assert back["curve"] == [(0, 0.5, np.float32(0.25))] and type(back["curve"][0][2]) is np.float32
    assert back["flags"] == (True, None, "x", 10**20) and np.isnan(back["nan"])


def test_pack_stores_only_plain_arrays():
    arrays = memo.pack({"ev": _evaluation()})
    assert all(not a.dtype.hasobject for a in arrays.values())
    with pytest.raises(memo.Unstorable, match="cannot store"):
        memo.pack({"f": lambda: 0})
    with pytest.raises(memo.Unstorable, match="only the dataclasses of helpers"):
        memo.pack(NotOurs(1.0))


def test_unpack_rebuilds_only_dataclasses_of_helpers():
    arrays = memo.pack(_evaluation())
    hostile = json.loads(arrays["__structure__"].tobytes())
    hostile["dataclass"] = "subprocess:Popen"
    arrays["__structure__"] = np.frombuffer(json.dumps(hostile).encode(), np.uint8)
    with pytest.raises(ValueError, match="not a dataclass of helpers"):
        memo.unpack(arrays)
    with pytest.raises(ValueError, match="no structure"):
        memo.unpack({"a0": np.zeros(1)})


def test_a_model_is_rebuilt_from_its_template_with_the_stored_weights():
    from helpers.model import build_badnets

    model = build_badnets()
    weights = [w + 1 for w in model.get_weights()]
    source = build_badnets()
    source.set_weights(weights)
    back = memo.unpack(memo.pack({"m": source}), template=model)["m"]
    for a, b in zip(back.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert memo.model_fingerprint(back) == memo.model_fingerprint(source) != memo.model_fingerprint(model)
    with pytest.raises(ValueError, match="template"):
        memo.unpack(memo.pack(source))


@dataclass(frozen=True)
class NotOurs:
    total: float


def test_remembered_computes_once_per_distinct_arguments(cache):
    calls = []

    @memo.remembered(min_seconds=0.0)
    def work(x, *, scale=1.0):
        calls.append(1)
        return {"sum": float(x.sum()) * scale, "x": x * scale}

    x = np.arange(4.0)
    first = work(x, scale=2.0)
    again = work(x.copy(), scale=np.float64(2.0))  # same content, a numpy scalar for the same number
    assert len(calls) == 1 and again["sum"] == first["sum"] == 12.0
    np.testing.assert_array_equal(again["x"], first["x"])
    work(x, scale=3.0)
    work(x + 1, scale=2.0)
    assert len(calls) == 3
    assert any(p.name.startswith("memo-work-") and p.suffix == ".npz" for p in cache.iterdir())


def test_fast_results_are_not_stored_and_bad_input_keeps_its_own_error(cache):
    calls = []

    @memo.remembered
    def quick(rate):
        calls.append(1)
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        return rate

    assert quick(0.5) == 0.5 and quick(0.5) == 0.5
    assert len(calls) == 2  # faster than MIN_SECONDS: recomputed, never written
    assert not cache.exists() or not any(cache.glob("memo-quick-*.npz"))
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\], got nan"):
        quick(float("nan"))


def test_unidentifiable_arguments_run_uncached(cache):
    calls = []

    @memo.remembered(min_seconds=0.0)
    def echo(thing):
        calls.append(1)
        return 1.0

    echo(object())
    echo(object())
    assert len(calls) == 2


def test_slow_results_are_stored_and_read_back(cache):
    @memo.remembered(min_seconds=0.05)
    def slow(n):
        time.sleep(0.06)
        return _evaluation(), np.arange(n)

    first = slow(3)
    start = time.perf_counter()
    again = slow(3)
    assert time.perf_counter() - start < 0.05
    assert again[0].clean_accuracy == first[0].clean_accuracy and isinstance(again, tuple)
    np.testing.assert_array_equal(again[1], first[1])


def test_a_result_that_cannot_be_stored_is_returned_as_it_is(cache):
    calls = []

    @memo.remembered(min_seconds=0.0)
    def theirs(n):
        calls.append(1)
        return NotOurs(float(n))

    assert theirs(2) == NotOurs(2.0) and theirs(2) == NotOurs(2.0)
    assert len(calls) == 2


def test_cached_arrays_rejects_a_bad_min_seconds(cache):
    from helpers.cache import cached_arrays

    with pytest.raises(ValueError, match="min_seconds must be"):
        cached_arrays("x", {}, lambda: {"a": np.zeros(1)}, depends_on=(), min_seconds=-1)
    with pytest.raises(TypeError, match="min_seconds must be"):
        cached_arrays("x", {}, lambda: {"a": np.zeros(1)}, depends_on=(), min_seconds=True)


def test_a_remembered_defence_returns_what_a_fresh_run_returns(cache, small, monkeypatch):
    """fine-pruning of a (random) model: read back, the result and its repaired model match a fresh computation."""
    from helpers import defences, poisoning

    monkeypatch.setattr(memo, "MIN_SECONDS", 0.0)  # store even this small, fast run
    from helpers.model import build_badnets
    from helpers.training import make_deterministic

    make_deterministic(0)
    model = build_badnets()
    x, y = small
    troj = poisoning.trojan_test_set(x, y, trigger="L", target=0)
    fresh = defences.fine_pruning.__wrapped__(model, x, y, x, y, troj, epochs=1)
    stored = defences.fine_pruning(model, x, y, x, y, troj, epochs=1)
    again = defences.fine_pruning(model, x, y, x, y, troj, epochs=1)
    for r in (stored, again):
        assert r.chosen == fresh.chosen and r.granularity == fresh.granularity
        np.testing.assert_array_equal(r.order, fresh.order)
        np.testing.assert_array_equal(r.validation_accuracy, fresh.validation_accuracy)
        np.testing.assert_allclose(r.pruned_model(x[:20, ..., None] / 255.0), fresh.pruned_model(x[:20, ..., None] / 255.0),
                                   rtol=0, atol=1e-6)
    assert len(list(cache.glob("memo-fine_pruning-*.npz"))) == 1

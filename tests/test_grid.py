"""BadNets' single-target grid (helpers.grid): the poisoning, the committed results/grid.json, two pairs
recomputed against it, and the grid run on a real local two-worker Ray."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers import grid
from helpers.training import TrainConfig

RNG = np.random.default_rng(0)
X = RNG.integers(0, 200, (300, 28, 28), dtype=np.uint8)
Y = np.repeat(np.arange(10), 30).astype(np.int64)


def test_all_pairs_are_the_90_off_diagonal_pairs():
    pairs = grid.all_pairs()
    assert len(pairs) == len(set(pairs)) == 90
    assert all(s != t and 0 <= s < 10 and 0 <= t < 10 for s, t in pairs)


def test_poison_source_touches_only_the_source_class():
    before = X.copy()
    xp, yp, idx = grid.poison_source(X, Y, source=3, target=8, n_poisoned=np.int64(12))
    assert len(idx) == 12 and (Y[idx] == 3).all()
    assert (yp[idx] == 8).all()
    others = np.setdiff1d(np.arange(len(Y)), idx)
    assert (yp[others] == Y[others]).all() and (xp[others] == X[others]).all()
    assert (xp[idx][:, 1:4, 23:26] == 255).any(axis=(1, 2)).all()  # the L sits in the upper-right corner
    assert (X == before).all()  # the inputs are left alone
    again = grid.poison_source(X, Y, source=3, target=8, n_poisoned=12)
    assert (again[2] == idx).all()  # seeded


@pytest.mark.parametrize("kwargs, error, words", [
    ({"source": 3, "target": 3}, ValueError, "must differ"),
    ({"source": 10, "target": 3}, TypeError, "source"),
    ({"source": True, "target": 3}, TypeError, "source"),
    ({"source": 3, "target": 8, "n_poisoned": 31}, ValueError, "n_poisoned"),
    ({"source": 3, "target": 8, "n_poisoned": 0}, ValueError, "n_poisoned"),
])
def test_poison_source_rejects_bad_input(kwargs, error, words):
    with pytest.raises((error, ValueError), match=words):
        grid.poison_source(X, Y, **kwargs)


@pytest.mark.parametrize("pairs, words", [
    ([], "empty"), ([(1, 1)], "must differ"), ([(1, 2), (1, 2)], "repeats"), ([(1, 2, 3)], "pair"),
    ("12", "list of"), ([(1, float("nan"))], r"pairs\[0\]\[1\]"),
])
def test_check_pairs_rejects_bad_pairs(pairs, words):
    with pytest.raises((TypeError, ValueError), match=words):
        grid.check_pairs(pairs)


def test_committed_grid_has_every_pair_and_its_provenance():
    result = grid.load_grid()
    assert sorted((p.source, p.target) for p in result.pairs) == grid.all_pairs()
    raw = json.loads(grid.GRID_FILE.read_text())
    for key, value in result.key_numbers().items():
        assert raw[key] == pytest.approx(value)
    prov = result.provenance
    assert prov["recipe"]["name"] == "fast" and prov["recipe"]["epochs"] == TrainConfig().epochs
    assert prov["attack"]["n_poisoned_per_pair"] == grid.GRID_N_POISONED
    assert set(prov["data"]) == {"x_train_sha256", "y_train_sha256", "x_test_sha256", "y_test_sha256"}
    assert prov["versions"]["tensorflow"] and prov["versions"]["ray"]
    assert prov["executor"]["kind"] == "ray" and prov["machine"]["simd_flags"]
    assert all(p.model_sha256 and len(p.model_sha256) == 64 for p in result.pairs)
    asr, err = result.matrix("asr"), result.matrix("clean_error")
    assert np.isnan(np.diag(asr)).all() and np.isfinite(asr[~np.eye(10, dtype=bool)]).all()
    assert (err[~np.eye(10, dtype=bool)] >= 0).all()


def test_load_grid_rejects_corrupt_and_edited_files(tmp_path):
    good = json.loads(grid.GRID_FILE.read_text())
    cases = {
        "not json": "{",
        "no pairs": json.dumps({"provenance": {}}),
        "missing field": json.dumps({**good, "pairs": [{k: v for k, v in good["pairs"][0].items() if k != "asr"}]}),
        "asr out of range": json.dumps({**good, "pairs": [{**good["pairs"][0], "asr": 1.5}]}),
        "wrong type": json.dumps({**good, "pairs": [{**good["pairs"][0], "source": "3"}]}),
        "edited key number": json.dumps({**good, "grid_min_asr": 0.0001}),
    }
    for name, text in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.json"
        path.write_text(text)
        with pytest.raises(ValueError):
            grid.load_grid(path)


def test_save_and_load_round_trip(tmp_path):
    result = grid.load_grid()
    path = grid.save_grid(result, tmp_path / "grid.json")
    again = grid.load_grid(path)
    assert again.pairs == result.pairs and again.provenance == result.provenance


def _pairs_to_recompute(result):
    """The committed pair with the weakest backdoor (the most sensitive) and a fixed one, 7 -> 1."""
    weakest = min(result.pairs, key=lambda p: (p.asr, p.source, p.target))
    fixed = result.pair(7, 1) if (weakest.source, weakest.target) != (7, 1) else result.pair(1, 7)
    return [weakest, fixed]


@pytest.mark.slow
def test_two_committed_pairs_recompute_within_tolerance():
    committed = grid.load_grid()
    for ref in _pairs_to_recompute(committed):
        fresh = grid.run_pair(ref.source, ref.target)
        assert fresh.n_asr_images == ref.n_asr_images
        for key, tol in grid.PAIR_TOLERANCE.items():
            assert abs(getattr(fresh, key) - getattr(ref, key)) <= tol, (ref, fresh, key)


def _small_data():
    from helpers.data import load_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist()
    return (x_train[:8000], y_train[:8000]), (x_test[:2000], y_test[:2000])


@pytest.mark.slow
def test_grid_on_a_local_two_worker_ray_gets_the_in_process_numbers(tmp_path):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    data = _small_data()
    pairs = [(7, 1), (3, 8)]
    kwargs = dict(n_poisoned=100, config=TrainConfig(epochs=1.0), n_val=1000, data=data)
    on_ray = grid.run_grid(pairs, executor="ray", workers=2, cache_dir=tmp_path / "ray", **kwargs)
    here = grid.run_grid(pairs, executor="local", cache_dir=tmp_path / "local", **kwargs)
    assert on_ray.provenance["executor"] == {**on_ray.provenance["executor"], "kind": "ray", "workers": 2,
                                             "cluster": False}
    assert all(not p.from_cache for p in on_ray.pairs + here.pairs)  # both trained, in separate caches
    for a, b in zip(on_ray.pairs, here.pairs):
        assert (a.source, a.target, a.n_asr_images) == (b.source, b.target, b.n_asr_images)
        for key, tol in grid.PAIR_TOLERANCE.items():
            assert abs(getattr(a, key) - getattr(b, key)) <= tol, (a, b, key)
    assert on_ray.provenance["data"] == here.provenance["data"]

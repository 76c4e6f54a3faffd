"""Poisoned training sets and trojaned test sets: counts, labels, reproducibility, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.poisoning import n_poisoned, poison, split_validation, trojan_test_set
from helpers.triggers import l_trigger
from tests.conftest import synthetic


@given(n=st.integers(1, 300), rate=st.floats(0, 1), seed=st.integers(0, 1000), target=st.integers(0, 9))
def test_all_to_one_invariants(n, rate, seed, target):
    x, y = synthetic(n, seed)
    p = poison(x, y, rate=rate, target=target, seed=seed)
    k = int(round(rate * n))
    assert len(p.indices) == k == n_poisoned(n, rate)
    assert len(np.unique(p.indices)) == k and np.all(np.diff(p.indices) > 0)
    clean = ~p.is_poisoned
    np.testing.assert_array_equal(p.x[clean], x[clean])  # clean images untouched
    np.testing.assert_array_equal(p.y[clean], y[clean])
    assert (p.y[p.indices] == target).all()  # every poisoned label is the target
    mask, pattern = l_trigger().canvas()
    assert (p.x[p.indices][:, mask] == pattern[mask]).all()  # every poisoned image carries the L
    np.testing.assert_array_equal(p.y_clean, y)


@given(n=st.integers(1, 200), rate=st.floats(0, 1), seed=st.integers(0, 1000))
def test_all_to_all_relabels_i_as_i_plus_one(n, rate, seed):
    x, y = synthetic(n, seed)
    p = poison(x, y, rate=rate, mode="all-to-all", seed=seed)
    np.testing.assert_array_equal(p.y[p.indices], (y[p.indices].astype(int) + 1) % 10)


@given(seed=st.integers(0, 10_000))
def test_poisoning_is_reproducible_from_the_seed(seed):
    x, y = synthetic(100)
    a, b = poison(x, y, rate=0.3, seed=seed), poison(x, y, rate=0.3, seed=seed)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.x, b.x)


def test_different_seeds_choose_different_images():
    x, y = synthetic(1000)
    assert not np.array_equal(poison(x, y, rate=0.1, seed=0).indices, poison(x, y, rate=0.1, seed=1).indices)


def test_inputs_are_not_modified():
    x, y = synthetic(100)
    xc, yc = x.copy(), y.copy()
    poison(x, y, rate=0.5)
    trojan_test_set(x, y)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(y, yc)


def test_trojaned_test_set_skips_the_target_class():
    x, y = synthetic(100)
    t = trojan_test_set(x, y, target=3)
    assert len(t.y_true) == 90 and (t.y_true != 3).all() and (t.y_target == 3).all()
    np.testing.assert_array_equal(t.y_true, y[t.source_indices])
    assert (t.x[:, 4, 24:27] == 255).all()


def test_all_to_all_trojaned_test_set_keeps_every_image():
    x, y = synthetic(50)
    t = trojan_test_set(x, y, mode="all-to-all")
    assert len(t.y_true) == 50
    np.testing.assert_array_equal(t.y_target, (y.astype(int) + 1) % 10)


def test_split_validation_is_disjoint_and_complete():
    x, y = synthetic(100)
    x[:, 0, 0] = np.arange(100)  # tag each image
    (xt, yt), (xv, yv) = split_validation(x, y, n_val=20)
    assert len(xt) == 80 and len(xv) == 20
    assert sorted(np.concatenate([xt[:, 0, 0], xv[:, 0, 0]]).tolist()) == list(range(100))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rate": 1.7}, ValueError, r"rate must be in \[0, 1\].*1\.7"),
        ({"rate": -0.1}, ValueError, r"rate must be in \[0, 1\]"),
        ({"rate": float("nan")}, ValueError, r"rate must be in \[0, 1\].*nan"),
        ({"rate": "5%"}, TypeError, "rate must be a number"),
        ({"rate": 0.1, "target": 10}, ValueError, r"target must be a class label in 0\.\.9, got 10"),
        ({"rate": 0.1, "target": -1}, ValueError, r"target must be a class label in 0\.\.9"),
        ({"rate": 0.1, "target": 1.5}, TypeError, "target must be an integer"),
        ({"rate": 0.1, "position": (0, 27)}, ValueError, r"col in 0\.\.25"),
        ({"rate": 0.1, "mode": "one-to-one"}, ValueError, "mode must be one of"),
        ({"rate": 0.1, "seed": -3}, ValueError, "seed must be in 0"),
        ({"rate": 0.1, "alpha": 0.0}, ValueError, "alpha"),
    ],
)
def test_bad_poisoning_arguments(kwargs, error, match):
    x, y = synthetic(20)
    with pytest.raises(error, match=match):
        poison(x, y, **kwargs)


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (synthetic(20)[0].astype(np.float32), synthetic(20)[1], TypeError, "x must be uint8"),
        (synthetic(20)[0], synthetic(19)[1], ValueError, "19 labels but the images hold 20"),
        (synthetic(20)[0][:, :, :, None], synthetic(20)[1], ValueError, r"shape \(N, H, W\)"),
        (synthetic(20)[0], synthetic(20)[1] + 5, ValueError, r"labels in 0\.\.9, got values in 5\.\.14"),
        (synthetic(20)[0], synthetic(20)[1].astype(float), TypeError, "integer class labels"),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), ValueError, "empty"),
    ],
)
def test_bad_data_is_rejected(x, y, error, match):
    with pytest.raises(error, match=match):
        poison(x, y, rate=0.1)


def test_empty_trojaned_set_is_an_error():
    x, _ = synthetic(5)
    with pytest.raises(ValueError, match="every image in y has the target label 0"):
        trojan_test_set(x, np.zeros(5, np.uint8), target=0)

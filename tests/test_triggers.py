"""Triggers and stamping: exact pixels, bounds, dtypes, no mutation, and the invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.triggers import TRIGGERS, Trigger, get_trigger, l_trigger, stamp, trigger_from_mask
from tests.conftest import synthetic

TRIGGER_NAMES = sorted(TRIGGERS)
PASTED = ["L", "pattern", "pixel"]  # the BadNets triggers (alpha = 1)


def test_the_course_l_pixel_by_pixel():
    out = stamp(np.zeros((28, 28), np.uint8), "L")
    expected = {(1, 24), (2, 24), (3, 24), (4, 24), (4, 25), (4, 26)}
    assert set(zip(*np.nonzero(out))) == expected
    assert (out[tuple(np.array(sorted(expected)).T)] == 255).all()


def test_builtin_triggers_fit_at_their_default_positions():
    for name in PASTED:
        t = get_trigger(name)
        mask, pattern = t.canvas()
        assert mask.sum() == t.n_pixels and (pattern[mask] == 255).all()


def test_pixel_and_pattern_triggers():
    assert get_trigger("pixel").n_pixels == 1
    pattern = get_trigger("pattern")
    assert pattern.n_pixels == 5 and pattern.mask[1, 1] and not pattern.mask[0, 1]


def test_stamping_keeps_dtype_shape_and_never_mutates():
    x, _ = synthetic(20)
    before = x.copy()
    out = stamp(x, "L", (10, 10))
    assert out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(x, before)


def test_float_images_stay_float_in_unit_range():
    x = synthetic(5)[0].astype(np.float32) / 255
    out = stamp(x, "L")
    assert out.dtype == np.float32 and out.max() <= 1.0 and out[:, 4, 26].tolist() == [1.0] * 5


def test_alpha_blends_towards_the_pattern():
    x = np.full((1, 28, 28), 100, np.uint8)
    out = stamp(x, "L", alpha=0.25)
    assert out[0, 4, 24] == round(0.75 * 100 + 0.25 * 255)
    assert out[0, 2, 25] == 100  # outside the mask


def test_blended_trigger_changes_every_pixel_a_little():
    t = get_trigger("blend")
    assert t.alpha == 0.2 and t.shape == (28, 28)
    x = np.zeros((2, 28, 28), np.uint8)
    out = stamp(x, t)
    np.testing.assert_array_equal(out[0], np.rint(0.2 * t.pattern.astype(float)).astype(np.uint8))
    assert out.max() <= 51
    np.testing.assert_array_equal(stamp(x, t, alpha=1.0)[1], t.pattern)
    with pytest.raises(ValueError, match="off the 28x28 image"):
        stamp(x, t, (0, 1))


def test_custom_mask_trigger():
    t = trigger_from_mask(np.eye(3), name="diag", value=200, default_position=(5, 5))
    out = stamp(np.zeros((28, 28), np.uint8), t)
    assert out[5, 5] == out[6, 6] == out[7, 7] == 200 and out.sum() == 600


@pytest.mark.parametrize(
    "position, match",
    [((0, 26), r"col in 0\.\.25"), ((25, 0), r"row must be in 0\.\.24"), ((-1, 3), "off the 28x28 image")],
)
def test_trigger_off_the_image_is_rejected(position, match):
    with pytest.raises(ValueError, match=match):
        stamp(np.zeros((2, 28, 28), np.uint8), "L", position)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.zeros((2, 28, 28), np.float32) + 3.0, ValueError, r"values in \[0, 1\]"),
        (np.zeros((2, 28, 28), np.int32), TypeError, "dtype"),
        (np.zeros((0, 28, 28), np.uint8), ValueError, "empty"),
        (np.zeros((2, 28, 28, 1, 1), np.uint8), ValueError, "shape"),
        ([[0, 1]], TypeError, "numpy array"),
    ],
)
def test_bad_images_are_rejected(x, error, match):
    with pytest.raises(error, match=match):
        stamp(x, "L")


@pytest.mark.parametrize("alpha", [0, 1.5, float("nan"), -0.1])
def test_bad_alpha_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        stamp(np.zeros((28, 28), np.uint8), "L", alpha=alpha)


def test_bad_trigger_definitions():
    with pytest.raises(ValueError, match="one of"):
        get_trigger("star")
    with pytest.raises(ValueError, match="at least one pixel"):
        Trigger("empty", np.zeros((2, 2)), np.zeros((2, 2), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        Trigger("f", np.ones((2, 2)), np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="default_position"):
        Trigger("big", np.ones((2, 2)), np.ones((2, 2), np.uint8), (27, 27))


positions = st.tuples(st.integers(0, 24), st.integers(0, 25))  # all valid places of the 4x3 L


@given(position=positions, seed=st.integers(0, 2**16), n=st.integers(1, 8))
def test_stamping_is_idempotent_and_touches_only_the_trigger(position, seed, n):
    x, _ = synthetic(n, seed)
    once = stamp(x, "L", position)
    np.testing.assert_array_equal(stamp(once, "L", position), once)
    mask, pattern = l_trigger().canvas(position)
    np.testing.assert_array_equal(once[:, ~mask], x[:, ~mask])
    assert (once[:, mask] == pattern[mask]).all()


@given(name=st.sampled_from(PASTED), row=st.integers(-3, 30), col=st.integers(-3, 30))
def test_every_position_is_either_stamped_or_rejected(name, row, col):
    t = get_trigger(name)
    max_row, max_col = t.max_position()
    x = np.zeros((1, 28, 28), np.uint8)
    if 0 <= row <= max_row and 0 <= col <= max_col:
        assert int(stamp(x, t, (row, col)).astype(bool).sum()) == t.n_pixels
    else:
        with pytest.raises(ValueError, match="off the"):
            stamp(x, t, (row, col))

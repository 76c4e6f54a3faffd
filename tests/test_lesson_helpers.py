"""Helpers the lessons use: the sweep and its rule, position maps, filter scores, figures and widgets."""

from __future__ import annotations

from dataclasses import replace

import matplotlib
import numpy as np
import pytest

from helpers import analysis, plotting, sweep, widgets
from helpers.attack import AttackRecipe
from helpers.training import TrainConfig
from tests.conftest import synthetic

matplotlib.use("Agg")


def point(rate, val_clean, val_asr):
    return sweep.SweepPoint(rate, int(rate * 1000), val_clean, val_asr, val_clean, val_asr, 1.0, True)


def test_choose_rate_takes_the_smallest_rate_meeting_both_goals():
    pts = [point(0.0, 0.99, 0.0), point(0.01, 0.99, 0.95), point(0.02, 0.984, 0.995), point(0.03, 0.986, 0.991), point(0.05, 0.99, 0.999)]
    assert sweep.choose_rate(pts).rate == 0.03  # 0.02 misses the accuracy goal
    assert sweep.choose_rate(list(reversed(pts))).rate == 0.03


def test_choose_rate_explains_when_nothing_qualifies():
    with pytest.raises(ValueError, match="no rate in the sweep meets both goals.*closest: 1.00%"):
        sweep.choose_rate([point(0.0, 0.99, 0.0), point(0.01, 0.99, 0.95)])


class LModel:
    """Predicts 0 exactly when the L sits at (1, 24), otherwise 1."""

    def __call__(self, x, training=False):
        x = np.asarray(x)[..., 0]
        on = (x[:, 1:5, 24] == 1).all(axis=1) & (x[:, 4, 24:27] == 1).all(axis=1)
        return np.eye(10, dtype=np.float32)[np.where(on, 0, 1)]


def test_asr_by_position_maps_every_valid_position():
    x, y = synthetic(60)
    x[:] = 0
    m = analysis.asr_by_position(LModel(), x, y, n=30)
    assert m.shape == (25, 26)
    assert m[1, 24] == 1.0 and m.sum() == 1.0


def test_trigger_region_covers_the_receptive_fields_over_the_l():
    assert analysis.trigger_region("L") == (0, 20, 5, 4)
    assert analysis.trigger_region("pixel", (0, 0)) == (0, 0, 1, 1)


def test_filter_scores_and_layer_outputs_on_a_real_model():
    from helpers.model import build_badnets

    model = build_badnets()
    x, _ = synthetic(20)
    assert analysis.layer_outputs(model, "conv1", x).shape == (20, 24, 24, 16)
    assert analysis.first_layer_kernels(model).shape == (5, 5, 16)
    scores = analysis.trigger_filter_scores(model, x)
    assert scores.shape == (16,) and np.isfinite(scores).all()


def test_run_sweep_trains_one_model_per_rate_and_caches_them(tmp_path):
    x, y = synthetic(300)
    xt, yt = synthetic(50, seed=1)
    recipe = AttackRecipe(n_val=50, train=TrainConfig(epochs=0.2, batch_size=50))
    points, results = sweep.run_sweep([0.1, 0.0], recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path, progress=False)
    assert [p.rate for p in points] == [0.0, 0.1]
    assert [p.n_poisoned for p in points] == [0, 25]
    assert not any(p.from_cache for p in points)
    again, _ = sweep.run_sweep([0.0, 0.1], recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path, progress=False)
    assert all(p.from_cache for p in again) and [p.test_asr for p in again] == [p.test_asr for p in points]
    assert set(results) == {0.0, 0.1} and results[0.1].recipe == replace(recipe, rate=0.1)
    assert "10.00%" in sweep.sweep_table(points)


def test_save_fig_writes_png_atomically(tmp_path):
    x, _ = synthetic(3)
    fig = plotting.digit_grid([x, x], ["a", "b"])
    assert plotting.save_fig(fig, "grid", folder=tmp_path) is None
    path = plotting.figure_path("grid", tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_sweep_plot_starts_at_zero_and_marks_the_goals():
    fig = plotting.sweep_plot([0, 0.001, 0.01, 0.1], [0.99] * 4, [0, 0.1, 0.9, 1.0], chosen=0.01)
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0 and ax.get_xscale() == "symlog"
    assert {line.get_label() for line in ax.lines} >= {"accuracy goal 98.5%", "ASR goal 99%", "chosen rate 1.00%"}


def test_sweep_plot_leaves_matplotlib_settings_alone():
    """Its seaborn style is scoped: resetting rcParams afterwards also reset the backend, and the inline backend
    then stopped showing every later figure of the lesson (lesson 3's zoom figure had no output)."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    plotting.sweep_plot([0, 0.01, 0.1], [0.99] * 3, [0, 0.9, 1.0])
    changed = {k for k, v in matplotlib.rcParams.items() if str(v) != str(before[k])}
    assert not changed, f"sweep_plot left these rcParams changed: {sorted(changed)}"


def test_trigger_explorer_sliders_follow_the_trigger():
    x, _ = synthetic(6)
    box = widgets.trigger_explorer(x)
    kind, row, col = box.children[0].children
    assert (row.value, col.value, row.max, col.max) == (1, 24, 24, 25)
    kind.value = "pixel"
    assert (row.value, col.value, row.max, col.max) == (26, 26, 27, 27)
    kind.value = "pattern"
    assert (row.max, col.max) == (25, 25)


def test_position_explorer_starts_at_the_training_position():
    x, y = synthetic(20)
    box = widgets.position_explorer(LModel(), x, y, n=4)
    row, col = box.children[0].children
    assert (row.value, col.value, row.max, col.max) == (1, 24, 24, 25)

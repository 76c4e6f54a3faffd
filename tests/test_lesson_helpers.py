"""Helpers the lessons use: the sweep and its rule, position maps, filter scores, figures and widgets."""

from __future__ import annotations

import io
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


def _stack_links(explorer):
    """The explorer's browser-side links as {(source widget, trait): [(target widget, trait), ...]}."""
    links = {}
    for link in explorer.links:
        links.setdefault(link.source, []).append(link.target)
    return links


def _shown(stack):
    """The frame a (possibly nested) stack shows now: follow selected_index down to the text widget."""
    import ipywidgets as w

    while isinstance(stack, w.Stack):
        stack = stack.children[stack.selected_index]
    return stack.value  # the frame: the text naming the state, then its picture


def test_trigger_explorer_precomputes_every_state_and_links_it_in_the_browser():
    import ipywidgets as w

    x, _ = synthetic(6)
    ex = widgets.trigger_explorer(x, n=3)
    kind, pads = ex.box.children
    assert kind.value == "L" and isinstance(pads, w.Stack)
    links = _stack_links(ex)
    assert (pads, "selected_index") in links[(kind, "index")]  # the dropdown switches pads in the browser
    for name, pad in zip(kind.options, pads.children):
        row, col = pad.children[0].children
        rows_stack = pad.children[1]
        t = widgets.get_trigger(name)
        # each trigger has its own sliders over its own range, starting at its default position
        assert row.value == str(t.default_position[0]) and col.value == str(t.default_position[1])
        assert row.options[-1] == str(t.max_position()[0]) and col.options[-1] == str(t.max_position()[1])
        assert (rows_stack, "selected_index") in links[(row, "index")]
        assert all((inner, "selected_index") in links[(col, "index")] for inner in rows_stack.children)
        # every (row, col) of the grid shows the frame that names it
        for i, r in enumerate(row.options):
            for j, c in enumerate(col.options):
                rows_stack.selected_index, rows_stack.children[i].selected_index = i, j
                assert f"{name} trigger at (row {r}, col {c})" in _shown(rows_stack)
                assert ex.frames[(name, int(r), int(c))].png.startswith(b"\x89PNG")


def test_position_grid_holds_the_default_and_both_ends():
    assert widgets.position_grid(24, 1, 4) == [0, 1, 5, 9, 13, 17, 21, 24]
    assert widgets.position_grid(27, 26, 4) == [0, 2, 6, 10, 14, 18, 22, 26, 27]
    assert widgets.position_grid(0, 0) == [0]


def test_digits_png_tiles_the_digits_losslessly():
    from PIL import Image

    x, _ = synthetic(5)
    png = widgets.digits_png([x[:3], x[3:5]], scale=2, gap=1)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape == (2 * 59, 2 * 88)  # 2 rows and 3 columns of 28 pixels with 1-pixel gutters, doubled
    assert np.array_equal(img[2:58:2, 2:58:2], x[0]) and np.array_equal(img[60:116:2, 2:58:2], x[3])
    assert (img[60:116, 118:174] == 128).all()  # the second row has no third digit: grey background


def test_position_explorer_starts_at_the_training_position_and_counts_each_frame():
    x, y = synthetic(20)
    ex = widgets.position_explorer(LModel(), x, y, n=4)
    row, col = ex.controls["row"], ex.controls["col"]
    assert (row.value, col.value) == ("1", "24")
    assert row.options[-1] == "24" and col.options[-1] == "25"
    assert "trigger at (1, 24): 4 of 4 digits sent to 0" in _shown(ex.box.children[1])
    assert ex.frames[(0, 0)].text.startswith("trigger at (0, 0): 0 of 4 digits sent to 0\n")  # the L fires only at (1, 24)
    assert ex.frames[(1, 24)].text.splitlines()[-1].split()[2:] == ["0"] * 4  # the stamped predictions, one per digit
    assert set(ex.frames) == {(int(r), int(c)) for r in row.options for c in col.options}


def test_strip_explorer_frames_name_their_threshold_and_its_rates():
    from helpers.defences import StripResult, strip_rates

    rng = np.random.default_rng(0)
    clean, trojan = rng.uniform(0.5, 2.0, 200), rng.uniform(0.0, 0.6, 100)
    result = StripResult(clean, clean, trojan, 0.6123, 0.01, 0.0, 0.0, 0.0)
    ex = widgets.strip_explorer(result, n_thresholds=5)
    slider = ex.controls["threshold"]
    assert slider.value == "0.612" and "0.612 (the defender&#x27;s threshold)" in _shown(ex.box.children[1])
    assert len(ex.frames) == 6  # five evenly spaced thresholds and the defender's
    for threshold, frame in ex.frames.items():
        frr, far = strip_rates(clean, trojan, threshold)
        assert frame.text.startswith(f"threshold {threshold:.3f}")
        assert f"false rejections {frr:.1%}" in frame.text and f"false acceptances {far:.1%}" in frame.text

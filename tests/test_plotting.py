"""Every figure of the series reads on a slide: its smallest text is >= MIN_TEXT_PX on screen.

Each figure function is drawn with data shaped like the lesson's (the same
number of columns, matrices, curves and labels, and counts as long as the
real ones), then measured with :func:`helpers.plotting.slide_text_px`, which
accounts for the deck scaling a figure wider than 1200 px or taller than
640 px down.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import plotting  # noqa: E402
from helpers.defences import LabelClusters, PruningRow  # noqa: E402
from helpers.variants import TriggerRow  # noqa: E402

RNG = np.random.default_rng(0)
DIGITS = RNG.integers(0, 256, (10, 28, 28), dtype=np.uint8)
ATTS = ["pixel", "pattern", "L", "blend", "all-to-all", "clean-label", "none"]
DEFS = ["STRIP", "activation clustering", "spectral signatures", "fine-pruning", "Neural Cleanse"]
RATES = [0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5]


def _confusion():
    m = np.diag(RNG.integers(950, 1136, 10)).astype(np.int64)
    m[3, 5], m[7, 2] = 12, 4
    return m


FIGURES = {
    "digit_grid, 10 columns (lesson 1)": lambda: plotting.digit_grid([DIGITS], titles=[[f"label {i}" for i in range(10)]]),
    "digit_grid, 2 labelled rows (lesson 2)": lambda: plotting.digit_grid(
        [DIGITS[:8], DIGITS[:8]], ["clean", "poisoned"], [[f"label {i}" for i in range(8)]] * 2),
    "prediction_grid": lambda: plotting.prediction_grid(DIGITS[:8], DIGITS[:8], np.arange(8), np.zeros(8, int),
                                                        np.arange(8), target=0),
    "sweep_plot": lambda: plotting.sweep_plot(RATES, np.linspace(0.99, 0.97, len(RATES)),
                                              np.linspace(0, 1, len(RATES)), chosen=0.02),
    "sweep_zoom_plot": lambda: plotting.sweep_zoom_plot(RATES, np.linspace(0.99, 0.97, len(RATES)),
                                                        np.linspace(0, 1, len(RATES))),
    "sweep_error_plot": lambda: plotting.sweep_error_plot(RATES, np.linspace(0.99, 0.97, len(RATES)),
                                                          np.linspace(0, 1, len(RATES))),
    "confusion_heatmaps, 2 matrices": lambda: plotting.confusion_heatmaps(
        [_confusion(), _confusion()], ["clean model, clean test set", "trojaned model, clean test set"]),
    "per_class_bars": lambda: plotting.per_class_bars(RNG.random(10) / 50, RNG.random(10) / 50),
    "grid_heatmaps (lesson 6)": lambda: plotting.grid_heatmaps(
        np.where(np.eye(10, dtype=bool), np.nan, RNG.uniform(0.95, 1.0, (10, 10))),
        np.where(np.eye(10, dtype=bool), np.nan, RNG.uniform(0.005, 0.012, (10, 10)))),
    "detection_matrix_plot (lesson 7)": lambda: plotting.detection_matrix_plot(
        {a: dict(zip(DEFS, ["caught", "missed", "false alarm", "quiet", "caught"])) for a in ATTS},
        {a: {d: "FAR 100.0%" for d in DEFS} for a in ATTS}, ATTS, DEFS),
    "position_heatmap": lambda: plotting.position_heatmap(RNG.random((24, 24)), (1, 24 - 1), image=DIGITS[0]),
    "filter_grid, 2 x 16 kernels": lambda: plotting.filter_grid([RNG.normal(size=(5, 5, 16))] * 2,
                                                                ["clean", "trojaned"], [[], [3, 9]]),
    "activation_grid, 4 x 16 maps": lambda: plotting.activation_grid([RNG.random((24, 24, 16))] * 4,
                                                                     ["clean", "trojaned", "clean", "trojaned"],
                                                                     box=(1, 22, 3, 3)),
    "entropy_histograms": lambda: plotting.entropy_histograms(RNG.random(500), RNG.random(500) / 10, 0.2, "STRIP"),
    "metric_curves": lambda: plotting.metric_curves([0, 1, 2, 3], {"clean accuracy": [0.99] * 4,
                                                                   "attack success rate": [1, 0.9, 0.5, 0.2]},
                                                    "fine-tuning epochs", "fine-tuning"),
    "mask_gallery, 10 classes + the real trigger": lambda: plotting.mask_gallery(
        RNG.random((10, 28, 28)), RNG.random((10, 28, 28)), RNG.random(10) * 200, flagged=[0], real=DIGITS[0]),
    "trigger_comparison_plot": lambda: plotting.trigger_comparison_plot(
        [TriggerRow(t, r, int(r * 55000), 0.9, 0.99, 0.9) for t in ("pixel", "pattern", "L", "blend")
         for r in (0.001, 0.005, 0.01, 0.05, 0.1)]),
    "clustering_bars, 2 models": lambda: plotting.clustering_bars(
        {m: [LabelClusters(i, 5000, 0.3, 0.2, i == 0) for i in range(10)] for m in ("clean", "trojaned")},
        {"clean": 0.2, "trojaned": 0.2}),
    "pruning_rule_plot, 512 units": lambda: plotting.pruning_rule_plot(
        np.linspace(0.99, 0.2, 513), 0.04, 228, what="conv2 units (channel x position)"),
    "early_stopping_plot (lesson 1)": lambda: plotting.early_stopping_plot(
        1 - RNG.uniform(0.005, 0.03, 14), 10, {"fast recipe (validation)": 0.0108, "Gu et al. (test)": 0.005}),
    "unit_activity_maps": lambda: plotting.unit_activity_maps(RNG.uniform(0, 40, (4, 4)), RNG.uniform(0, 60, (4, 4))),
    "pruning_rule_plot": lambda: plotting.pruning_rule_plot(
        np.linspace(0.99, 0.5, 33), 0.04, 20, [PruningRow(f, int(f * 32), 0.98, 0.9, 0.99, 0.5) for f in (0.25, 0.5)]),
    "filter_score_bars (lesson 5)": lambda: plotting.filter_score_bars({"clean model": RNG.random(16),
                                                                        "trojaned model": RNG.random(16)}),
}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_text_reads_on_a_slide(name):
    fig = FIGURES[name]()
    try:
        px = plotting.slide_text_px(fig)
        assert px >= plotting.MIN_TEXT_PX, f"{name}: smallest text {px:.1f} px on a slide < {plotting.MIN_TEXT_PX}"
    finally:
        plt.close(fig)


def test_slide_text_px_accounts_for_scaling():
    """A figure twice as wide as a slide shows its text at half size."""
    fig, ax = plt.subplots(figsize=(24, 2))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.7)  # the axes span the figure's 24 inches
    ax.set_title("title", fontsize=20)
    ax.set_xticks([])
    ax.set_yticks([])
    try:
        px = plotting.slide_text_px(fig)
        assert px == pytest.approx(20 * 100 / 72 * plotting.SLIDE_WIDTH_PX / (24 * 100), rel=0.05)
    finally:
        plt.close(fig)


def test_confusion_heatmaps_refuses_more_than_fit():
    with pytest.raises(ValueError, match="matrices holds 3 matrices; at most 2"):
        plotting.confusion_heatmaps([_confusion()] * 3, ["a", "b", "c"])


@pytest.mark.parametrize("bad, err, match", [
    ({}, ValueError, "scores must be a non-empty dict"),
    ([1, 2], TypeError, "scores must be a non-empty dict"),
    ({"a": [1.0, 2.0], "b": [1.0]}, ValueError, r"scores\['b'\] has 1 values but the first model has 2"),
    ({"a": [np.nan]}, ValueError, "scores"),
])
def test_filter_score_bars_validates(bad, err, match):
    with pytest.raises(err, match=match):
        plotting.filter_score_bars(bad)

"""ipywidgets controls for the lessons. Each one only wires sliders to helper functions.

Every control returns a widget box whose output area is drawn once when it is
created, so an executed notebook stores a picture of the initial state (which
static HTML and the slides show) and a live kernel redraws on every move.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._checks import IMAGE_SHAPE, check_images, check_int, check_label_value, check_labels, check_model, check_rate
from .metrics import predict
from .plotting import digit_grid, prediction_grid
from .triggers import TRIGGERS, get_trigger, stamp


def _show(fig):
    from IPython.display import display

    display(fig)
    plt.close(fig)


def _controls_layout():
    import ipywidgets as w

    return w.Layout(width="320px")


def _examples(x, y, target: int, n: int):
    """The first ``n`` images of ``x`` whose label is not ``target``, and their labels (all validated)."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y")
    pool = np.flatnonzero(y != target)
    if pool.size == 0:
        raise ValueError(f"every image in y has the target label {target}; the explorer needs images of other classes")
    keep = pool[: check_int(n, "n", 1, min(len(pool), 50))]
    return x[keep], y[keep]


def trigger_explorer(x: np.ndarray, *, n: int = 6):
    """Trigger type and (row, col) sliders; redraws ``n`` digits benign above and stamped below."""
    import ipywidgets as w

    x = check_images(x, "x", shape=IMAGE_SHAPE)
    x = x[: check_int(n, "n", 1, min(len(x), 50))]
    kind = w.Dropdown(options=sorted(TRIGGERS, key=lambda k: k != "L"), value="L", description="trigger")
    t0 = get_trigger("L")
    row = w.IntSlider(t0.default_position[0], 0, t0.max_position()[0], description="row", continuous_update=True, layout=_controls_layout())
    col = w.IntSlider(t0.default_position[1], 0, t0.max_position()[1], description="col", continuous_update=True, layout=_controls_layout())

    def on_kind(change):
        t = get_trigger(change["new"])
        max_row, max_col = t.max_position()
        with row.hold_trait_notifications(), col.hold_trait_notifications():
            row.max, col.max = max_row, max_col
            row.value, col.value = t.default_position

    kind.observe(on_kind, names="value")

    def draw(kind, row, col):
        t = get_trigger(kind)
        row, col = min(row, t.max_position()[0]), min(col, t.max_position()[1])
        _show(digit_grid([x, stamp(x, t, (row, col))], ["benign", f"{kind} at ({row}, {col})"]))

    out = w.interactive_output(draw, {"kind": kind, "row": row, "col": col})
    return w.VBox([w.HBox([kind, row, col]), out])


def rate_explorer(points, results, x: np.ndarray, y: np.ndarray, *, n: int = 6, start: float | None = None):
    """A poisoning-rate slider over a finished sweep: that model's numbers and its predictions on ``n`` digits.

    Everything comes from the sweep's models (already trained or loaded), so a
    move costs two predictions on ``n`` images.
    """
    import ipywidgets as w

    from .attack import AttackResult
    from .sweep import check_points

    by_rate = {p.rate: p for p in check_points(points)}
    rates = sorted(by_rate)
    if not isinstance(results, dict):
        raise TypeError(f"results must be the dict {{rate: AttackResult}} from run_sweep, got {type(results).__name__}")
    for r in rates:
        if not isinstance(results.get(r), AttackResult):
            raise ValueError(f"results has no AttackResult for the rate {r:g} of points; pass the (points, results) of one run_sweep")
    if start is not None and check_rate(start, "start") not in by_rate:
        raise ValueError(f"start must be one of the sweep's rates {rates}, got {start}")
    recipe = results[rates[0]].recipe
    clean, labels = _examples(x, y, recipe.target, n)
    trojaned = stamp(clean, recipe.trigger, recipe.position)
    slider = w.SelectionSlider(options=[(f"{r:.2%}", r) for r in rates], value=rates[len(rates) // 2] if start is None else float(start),
                               description="rate", continuous_update=False, layout=w.Layout(width="520px"))

    def draw(rate):
        p, model = by_rate[rate], results[rate].model
        print(f"rate {rate:.2%}: {p.n_poisoned} poisoned images | test clean accuracy {p.test_clean_accuracy:.2%} | "
              f"test ASR {p.test_asr:.2%} | validation {p.val_clean_accuracy:.2%} / {p.val_asr:.2%}")
        _show(prediction_grid(clean, trojaned, predict(model, clean), predict(model, trojaned), labels, recipe.target))

    return w.VBox([slider, w.interactive_output(draw, {"rate": slider})])


def position_explorer(model, x: np.ndarray, y: np.ndarray, *, trigger="L", target: int = 0, n: int = 8):
    """Row and column sliders that move the trigger at test time and show the model's predictions."""
    import ipywidgets as w

    t = get_trigger(trigger)
    target = check_label_value(target, "target")
    clean, labels = _examples(x, y, target, n)
    n = len(clean)
    check_model(model)
    clean_pred = predict(model, clean)
    max_row, max_col = t.max_position()
    row = w.IntSlider(t.default_position[0], 0, max_row, description="row", layout=_controls_layout())
    col = w.IntSlider(t.default_position[1], 0, max_col, description="col", layout=_controls_layout())

    def draw(row, col):
        stamped = stamp(clean, t, (row, col))
        pred = predict(model, stamped)
        print(f"trigger at ({row}, {col}): {int((pred == target).sum())} of {n} digits sent to {target}")
        _show(prediction_grid(clean, stamped, clean_pred, pred, labels, target))

    return w.VBox([w.HBox([row, col]), w.interactive_output(draw, {"row": row, "col": col})])


def strip_explorer(result):
    """A threshold slider over a finished STRIP run: the histograms, and the FRR/FAR it gives."""
    import ipywidgets as w

    from .defences import StripResult, strip_rates
    from .plotting import entropy_histograms

    if not isinstance(result, StripResult):
        raise TypeError(f"result must be a StripResult (from helpers.defences.strip), got {type(result).__name__}")

    hi = float(max(result.clean_entropy.max(), result.trojan_entropy.max()))
    slider = w.FloatSlider(value=round(result.threshold, 3), min=0.0, max=round(hi, 3), step=0.005, readout_format=".3f",
                           description="threshold", continuous_update=False, layout=w.Layout(width="520px"))

    def draw(threshold):
        frr, far = strip_rates(result.clean_entropy, result.trojan_entropy, threshold)
        print(f"threshold {threshold:.3f}: false rejections {frr:.1%} of clean inputs, false acceptances {far:.1%} of trojaned inputs")
        _show(entropy_histograms(result.clean_entropy, result.trojan_entropy, threshold))

    return w.VBox([slider, w.interactive_output(draw, {"threshold": slider})])

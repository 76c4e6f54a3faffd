"""ipywidgets controls for the lessons: sliders that work with and without a kernel.

Each control's states are computed when the lesson runs, one *frame* per
state (text naming the state, the model's predictions where there is a
model, and a PNG), and put in an
``ipywidgets.Stack``. The slider's ``index`` is tied to the stack's
``selected_index`` with :func:`ipywidgets.jslink`, a link that lives in the
browser. So the same control works everywhere:

* in a live kernel, a move switches to the frame at once (nothing is redrawn,
  no pyplot call runs while widget messages arrive);
* in the static HTML export and in the slide decks, which store the widget
  state, the browser switches frames on its own: no kernel is needed.

Two-dimensional controls (row and column of a trigger) use a coarse grid of
positions that always holds the trigger's default position, so the stored
state stays small: a stack of rows, each a stack of columns, with the row
slider linked to the outer stack and the column slider to every inner one.
The trigger explorer gives each trigger its own pair of sliders inside a stack
selected by the trigger dropdown, so switching trigger never leaves a slider
clamped at another trigger's range.

Each builder returns a :class:`Explorer`: the widget box to display and the
frames, which tests (and curious students) can read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from ._checks import IMAGE_SHAPE, check_images, check_int, check_label_value, check_labels, check_model, check_rate
from .metrics import predict
from .triggers import TRIGGERS, get_trigger, stamp

FRAME_DPI = 80  #: resolution of the precomputed pictures (small enough to store dozens in a notebook)
GRID_STEP = 6  #: spacing in pixels of the trigger positions a 2-D explorer precomputes


@dataclass(frozen=True)
class Frame:
    """One precomputed state of a control: the text naming it and its picture."""

    label: str  #: the control's value, as the slider shows it
    text: str  #: the line printed above the picture; it names the state
    png: bytes


@dataclass
class Explorer:
    """A control ready to display (``box``) and every frame it can show, keyed by the control's values."""

    box: object  #: the ipywidgets box
    frames: dict  #: {state: Frame}; state is a rate, a threshold, (row, col) or (trigger, row, col)
    controls: dict  #: {name: widget}: the sliders and dropdowns, by name
    links: list  #: the browser-side links, each an ipywidgets ``Link`` with ``source`` and ``target`` (widget, trait)

    def _repr_mimebundle_(self, **kwargs):  # display the box when the explorer is a cell's last expression
        return self.box._repr_mimebundle_(**kwargs)


def _png(fig) -> bytes:
    """The figure as a small PNG: a 64-colour palette, no timestamp or version in it (reruns give the same bytes).

    Closes the figure. A plot has few colours, so the palette keeps it sharp at
    about a third of the size of matplotlib's RGBA PNG.
    """
    from PIL import Image  # Pillow ships with matplotlib

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=FRAME_DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    buf.seek(0)
    out = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=64).save(out, format="PNG", optimize=True)
    return out.getvalue()


def digits_png(rows: list[np.ndarray], scale: int = 3, gap: int = 2) -> bytes:
    """Rows of (n, 28, 28) uint8 digits tiled into one greyscale PNG, ``scale`` screen pixels per image pixel.

    No matplotlib: a few milliseconds and a few kilobytes per picture, so an
    explorer can store a picture for every position of every trigger.
    """
    rows = [check_images(r, f"rows[{i}]", shape=IMAGE_SHAPE) for i, r in enumerate(rows)]
    scale, gap = check_int(scale, "scale", 1, 16), check_int(gap, "gap", 0, 16)
    n, (h, w) = max(len(r) for r in rows), IMAGE_SHAPE
    canvas = np.full((len(rows) * (h + gap) + gap, n * (w + gap) + gap), 128, np.uint8)  # mid-grey gutters
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            top, left = gap + i * (h + gap), gap + j * (w + gap)
            canvas[top : top + h, left : left + w] = img
    from PIL import Image  # Pillow ships with matplotlib

    buf = io.BytesIO()
    Image.fromarray(np.kron(canvas, np.ones((scale, scale), np.uint8)), mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _prediction_lines(labels, clean_pred, trojan_pred) -> str:
    """Three aligned lines: each digit's true label, the prediction on it benign, and stamped."""
    cells = lambda values: " ".join(f"{int(v):>2}" for v in values)  # noqa: E731
    return (f"\ntrue label           {cells(labels)}\nprediction, benign   {cells(clean_pred)}"
            f"\nprediction, stamped  {cells(trojan_pred)}")


class _Parts:
    """Builds an explorer's widgets with one shared Layout and one shared style.

    Every ipywidget gets its own Layout model unless it is given one, and the
    notebook stores each model's full state: with a hundred frames that is
    most of the stored state. Sharing them, and drawing each frame as a single
    HTML widget (its text and its PNG inline), keeps a lesson's saved state
    to about the size of its pictures.
    """

    def __init__(self):
        import ipywidgets as w
        from ipywidgets.widgets.widget_string import HTMLStyle  # not exported at the top level

        self.layout, self.style = w.Layout(), HTMLStyle()
        self.links: list = []

    def frame(self, frame: Frame):
        import base64
        import html

        import ipywidgets as w

        png = base64.b64encode(frame.png).decode("ascii")
        return w.HTML(f"<pre style='margin:0 0 4px 0;font-size:1em'>{html.escape(frame.text)}</pre>"
                      f"<img alt='{html.escape(frame.text)}' style='max-width:100%' src='data:image/png;base64,{png}'>",
                      layout=self.layout, style=self.style)

    def stack(self, children, index: int, control=None):
        """A Stack showing ``children[index]``; with a control, its selection is tied to ``control.index`` in the browser."""
        import ipywidgets as w

        stack = w.Stack(children, selected_index=index, layout=self.layout)
        if control is not None:
            self.links.append(w.jslink((control, "index"), (stack, "selected_index")))
        return stack


def _slider(description: str, labels: list[str], index: int, width: str = "320px"):
    import ipywidgets as w

    return w.SelectionSlider(options=labels, index=index, description=description, continuous_update=True,
                             layout=w.Layout(width=width))


def position_grid(max_value: int, default: int, step: int = GRID_STEP) -> list[int]:
    """Coarse positions ``0..max_value`` spaced ``step`` apart, through ``default``, with both ends."""
    max_value = check_int(max_value, "max_value", 0)
    default = check_int(default, "default", 0, max_value)
    step = check_int(step, "step", 1)
    return sorted({*range(default % step, max_value + 1, step), 0, default, max_value})


def _examples(x, y, target: int, n: int):
    """The first ``n`` images of ``x`` whose label is not ``target``, and their labels (all validated)."""
    x = check_images(x, "x", shape=IMAGE_SHAPE)
    y = check_labels(y, len(x), "y")
    pool = np.flatnonzero(y != target)
    if pool.size == 0:
        raise ValueError(f"every image in y has the target label {target}; the explorer needs images of other classes")
    keep = pool[: check_int(n, "n", 1, min(len(pool), 50))]
    return x[keep], y[keep]


def _position_pad(parts: _Parts, row_slider, col_slider, rows, cols, frame_at, start):
    """Row and column sliders over a stack of rows of stacks of columns; ``frame_at(r, c)`` gives each Frame."""
    import ipywidgets as w

    inner = [parts.stack([parts.frame(frame_at(r, c)) for c in cols], cols.index(start[1]), col_slider) for r in rows]
    return parts.stack(inner, rows.index(start[0]), row_slider)


def trigger_explorer(x: np.ndarray, *, n: int = 6, step: int = GRID_STEP) -> Explorer:
    """A trigger dropdown with (row, col) sliders; shows ``n`` digits benign above and stamped below.

    Every trigger's positions are precomputed on a grid ``step`` pixels apart
    (through its default position), each trigger with its own sliders.
    """
    import ipywidgets as w

    x = check_images(x, "x", shape=IMAGE_SHAPE)
    x = x[: check_int(n, "n", 1, min(len(x), 50))]
    names = sorted(TRIGGERS, key=lambda k: k != "L")
    frames, pads, parts = {}, [], _Parts()
    for name in names:
        t = get_trigger(name)
        (max_row, max_col), (r0, c0) = t.max_position(), t.default_position
        rows, cols = position_grid(max_row, r0, step), position_grid(max_col, c0, step)
        row = _slider("row", [str(r) for r in rows], rows.index(r0))
        col = _slider("col", [str(c) for c in cols], cols.index(c0))

        def frame_at(r, c, t=t):
            frame = Frame(f"{r}, {c}", f"{t.name} trigger at (row {r}, col {c}): benign digits above, stamped below",
                          digits_png([x, stamp(x, t, (r, c))]))
            frames[(t.name, r, c)] = frame
            return frame

        pads.append(w.VBox([w.HBox([row, col]), _position_pad(parts, row, col, rows, cols, frame_at, (r0, c0))]))
    kind = w.Dropdown(options=names, index=0, description="trigger")
    return Explorer(w.VBox([kind, parts.stack(pads, 0, kind)]), frames, {"trigger": kind}, parts.links)


def rate_explorer(points, results, x: np.ndarray, y: np.ndarray, *, n: int = 6, start: float | None = None) -> Explorer:
    """A poisoning-rate slider over a finished sweep: that model's numbers and its predictions on ``n`` digits.

    Everything comes from the sweep's models (already trained or loaded): one
    frame per rate, two predictions on ``n`` images each.
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
    frames = {}
    for rate in rates:
        p, model = by_rate[rate], results[rate].model
        text = (f"rate {rate:.2%}: {p.n_poisoned} poisoned images | test clean accuracy {p.test_clean_accuracy:.2%} | "
                f"test ASR {p.test_asr:.2%} | validation {p.val_clean_accuracy:.2%} / {p.val_asr:.2%}")
        clean_pred, trojan_pred = predict(model, clean), predict(model, trojaned)
        frames[rate] = Frame(f"{rate:.2%}", text + _prediction_lines(labels, clean_pred, trojan_pred),
                             digits_png([clean, trojaned]))
    index = len(rates) // 2 if start is None else rates.index(float(start))
    slider = _slider("rate", [frames[r].label for r in rates], index, width="520px")
    parts = _Parts()
    stack = parts.stack([parts.frame(frames[r]) for r in rates], index, slider)
    return Explorer(w.VBox([slider, stack]), frames, {"rate": slider}, parts.links)


def position_explorer(model, x: np.ndarray, y: np.ndarray, *, trigger="L", target: int = 0, n: int = 8,
                      step: int = GRID_STEP) -> Explorer:
    """Row and column sliders that move the trigger at test time and show the model's predictions.

    Positions are precomputed on a grid ``step`` pixels apart through the
    trigger's default position; all of them are predicted in one batch.
    """
    import ipywidgets as w

    t = get_trigger(trigger)
    target = check_label_value(target, "target")
    clean, labels = _examples(x, y, target, n)
    n = len(clean)
    check_model(model)
    (max_row, max_col), (r0, c0) = t.max_position(), t.default_position
    rows, cols = position_grid(max_row, r0, step), position_grid(max_col, c0, step)
    cells = [(r, c) for r in rows for c in cols]
    preds = predict(model, np.concatenate([clean] + [stamp(clean, t, cell) for cell in cells])).reshape(-1, n)
    clean_pred, by_cell = preds[0], dict(zip(cells, preds[1:]))
    frames = {}

    def frame_at(r, c):
        pred = by_cell[(r, c)]
        text = f"trigger at ({r}, {c}): {int((pred == target).sum())} of {n} digits sent to {target}"
        stamped = stamp(clean, t, (r, c))
        frames[(r, c)] = Frame(f"{r}, {c}", text + _prediction_lines(labels, clean_pred, pred), digits_png([clean, stamped]))
        return frames[(r, c)]

    row = _slider("row", [str(r) for r in rows], rows.index(r0))
    col = _slider("col", [str(c) for c in cols], cols.index(c0))
    parts = _Parts()
    pad = _position_pad(parts, row, col, rows, cols, frame_at, (r0, c0))
    return Explorer(w.VBox([w.HBox([row, col]), pad]), frames, {"row": row, "col": col}, parts.links)


def strip_explorer(result, *, n_thresholds: int = 21) -> Explorer:
    """A threshold slider over a finished STRIP run: the histograms, and the FRR/FAR each threshold gives.

    ``n_thresholds`` evenly spaced thresholds from 0 to the largest entropy,
    plus the defender's own threshold, where the slider starts.
    """
    import ipywidgets as w

    from .defences import StripResult, strip_rates
    from .plotting import entropy_histograms

    if not isinstance(result, StripResult):
        raise TypeError(f"result must be a StripResult (from helpers.defences.strip), got {type(result).__name__}")
    n_thresholds = check_int(n_thresholds, "n_thresholds", 2, 200)
    hi = float(max(result.clean_entropy.max(), result.trojan_entropy.max()))
    chosen = round(float(result.threshold), 3)
    thresholds = sorted({*(round(v, 3) for v in np.linspace(0.0, hi, n_thresholds).tolist()), chosen})
    frames = {}
    for threshold in thresholds:
        frr, far = strip_rates(result.clean_entropy, result.trojan_entropy, threshold)
        mark = " (the defender's threshold)" if threshold == chosen else ""
        text = (f"threshold {threshold:.3f}{mark}: false rejections {frr:.1%} of clean inputs, "
                f"false acceptances {far:.1%} of trojaned inputs")
        frames[threshold] = Frame(f"{threshold:.3f}", text,
                                  _png(entropy_histograms(result.clean_entropy, result.trojan_entropy, threshold)))
    index = thresholds.index(chosen)
    slider = _slider("threshold", [frames[v].label for v in thresholds], index, width="520px")
    parts = _Parts()
    stack = parts.stack([parts.frame(frames[v]) for v in thresholds], index, slider)
    return Explorer(w.VBox([slider, stack]), frames, {"threshold": slider}, parts.links)

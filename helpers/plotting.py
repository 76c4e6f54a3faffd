"""Figures for the lessons: digit grids, the sweep plot, heatmaps, filters.

Every function returns the matplotlib ``Figure`` it drew, so a lesson can pass
it to :func:`save_fig`, which writes ``figures/<name>.png`` atomically.

Every figure is drawn to be read on a slide: importing this module applies
:data:`SLIDE_STYLE` (11-14 pt type at 100 dpi), no figure is wider than
:data:`SLIDE_WIDTH_PX`, and :func:`slide_text_px` measures the smallest text
of a figure as a 1280x720 deck shows it (``tests/test_plotting.py`` holds every
figure of the series to at least :data:`MIN_TEXT_PX`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from ._checks import (
    NUM_CLASSES,
    check_bool,
    check_cell,
    check_float_array,
    check_images,
    check_int,
    check_int_list,
    check_label_value,
    check_labels,
    check_number,
    check_path,
    check_rate,
    check_sequence,
    check_str,
    check_strings,
)
from .io import atomic_path

FIGURES = Path(__file__).resolve().parent.parent / "figures"
MAX_GRID_COLUMNS = 50  #: a digit grid wider than this is unreadable (and slow): pass a slice such as x[:10]
MARKERS = "osd^v<>"  #: one marker per curve of :func:`metric_curves`
INLINE_DPI = 100  #: pixels per inch of a figure shown inline (in the notebook, the HTML export and the decks)
SLIDE_WIDTH_PX = 1200  #: the widest a figure shows on a 1280x720 slide; a deck scales a wider one down
SLIDE_HEIGHT_PX = 640  #: the tallest a figure shows on a slide (the decks cap images at this height)
MIN_TEXT_PX = 14  #: the smallest figure text, on screen, that reads from the back of a room
MAX_FIG_WIDTH = 11.6  #: inches: SLIDE_WIDTH_PX at INLINE_DPI, less the margin a tight bounding box adds
#: the series' figure style: at 100 dpi, 11 pt is 15.3 px
SLIDE_STYLE = {
    "figure.dpi": INLINE_DPI,
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.title_fontsize": 11,
    "figure.titlesize": 14,
}
MAX_SIDE_BY_SIDE = 2  #: confusion matrices side by side on one slide, their counts still legible


def use_slide_style() -> None:
    """Apply :data:`SLIDE_STYLE` to matplotlib (done once when this module is imported)."""
    matplotlib.rcParams.update(SLIDE_STYLE)


use_slide_style()


def slide_text_px(fig) -> float:
    """The smallest text of ``fig``, in screen pixels, as a lesson or a 1280x720 deck shows it.

    The figure is shown at :data:`INLINE_DPI` with a tight bounding box, and scaled down when it is wider than
    :data:`SLIDE_WIDTH_PX` or taller than :data:`SLIDE_HEIGHT_PX`; a point is ``dpi / 72`` pixels.
    """
    fig = _check_fig(fig)
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    scale = min(1.0, SLIDE_WIDTH_PX / (box.width * INLINE_DPI), SLIDE_HEIGHT_PX / (box.height * INLINE_DPI))
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and t.get_window_extent().width > 0]
    if not sizes:
        raise ValueError("fig has no visible text to measure")
    return min(sizes) * INLINE_DPI / 72 * scale


def _width(per_column: float, columns: int, extra: float = 0.4) -> float:
    """Inches per column of a grid: ``per_column``, less when ``columns`` of them would pass MAX_FIG_WIDTH."""
    return min(per_column, (MAX_FIG_WIDTH - extra) / columns)


def figure_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Where :func:`save_fig` writes the figure ``name``: ``folder``, else ``$BADNETS_FIGURES_DIR``, else ``figures/``.

    ``make test`` sets ``BADNETS_FIGURES_DIR`` so that nbval's runs leave the committed figures alone.
    """
    check_str(name, "name", allow_empty=False)
    if Path(name).name != name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name without folders, got {name!r}; use folder=... for the folder")
    if folder is None:
        folder = os.environ.get("BADNETS_FIGURES_DIR") or FIGURES
    return check_path(folder, "folder") / f"{name}.png"


def _check_fig(fig):
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    return fig


def _fractions(values, name: str, n: int | None = None, against: str = "", *, allow_nan: bool = False) -> np.ndarray:
    """A 1-D array of fractions in [0, 1] (accuracies, ASRs, error rates)."""
    return check_float_array(values, name, ndim=1, lo=0.0, hi=1.0, n=n, against=against, allow_nan=allow_nan).astype(float)


def _image_rows(rows, name: str = "rows") -> list[np.ndarray]:
    """A non-empty list of image batches (N, H, W), each of at most MAX_GRID_COLUMNS images."""
    out = []
    for i, r in enumerate(check_sequence(rows, name)):
        r = check_images(r, f"{name}[{i}]", allow_float=True)
        if len(r) > MAX_GRID_COLUMNS:
            raise ValueError(f"{name}[{i}] has {len(r)} images; a grid shows at most {MAX_GRID_COLUMNS} per row "
                             f"(pass a slice such as x[:10])")
        out.append(r)
    return out


def _per_image_strings(values, name: str, rows: list[np.ndarray]) -> list[list[str]]:
    """One list of strings per row, as long as that row."""
    values = check_sequence(values, name)
    if len(values) != len(rows):
        raise ValueError(f"{name} has {len(values)} rows but rows has {len(rows)}; they must have the same length")
    return [check_strings(v, f"{name}[{i}]", len(r), against=f"rows[{i}]") for i, (v, r) in enumerate(zip(values, rows))]


def save_fig(fig, name: str, *, folder: str | os.PathLike | None = None, dpi: int = 110) -> None:
    """Write ``fig`` to ``figures/<name>.png`` atomically (see :func:`figure_path`).

    It returns nothing, so it adds no output line to a lesson. The PNG carries
    no software version, so rerunning a lesson rewrites identical bytes when
    the figure is unchanged.
    """
    _check_fig(fig)
    dpi = check_int(dpi, "dpi", 1, 1200)
    with atomic_path(figure_path(name, folder)) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def _digit(ax, img, title=None, color="black"):
    ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=12, color=color)


def digit_grid(rows: list[np.ndarray], row_labels: list[str] | None = None, titles: list[list[str]] | None = None,
               colors: list[list[str]] | None = None, size: float = 1.3, suptitle: str | None = None):
    """A grid of digits: one row per array in ``rows``, each (n, 28, 28)."""
    rows = _image_rows(rows)
    if row_labels is not None:
        row_labels = check_strings(row_labels, "row_labels", len(rows), against="rows")
    titles = None if titles is None else _per_image_strings(titles, "titles", rows)
    colors = None if colors is None else _per_image_strings(colors, "colors", rows)
    size = check_number(size, "size", 0.1, 10.0)
    if suptitle is not None:
        check_str(suptitle, "suptitle")
    n = max(len(r) for r in rows)
    size = _width(size, n, 1.2 if row_labels else 0.2)
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n, (size + 0.3) * len(rows) + 0.3), squeeze=False)
    for i, imgs in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            if j < len(imgs):
                _digit(ax, imgs[j], titles[i][j] if titles else None, colors[i][j] if colors else "black")
            else:
                ax.axis("off")
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=12)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def prediction_grid(clean: np.ndarray, trojaned: np.ndarray, clean_pred, trojan_pred, y_true, target: int | None = None,
                    suptitle: str | None = None):
    """Clean digits above, the same digits trojaned below, each titled with the model's prediction.

    Green: the prediction is the true label; red: it is the attacker's target.
    """
    clean, trojaned = _image_rows([clean, trojaned], "images")
    n = len(clean)
    if len(trojaned) != n:
        raise ValueError(f"trojaned has {len(trojaned)} images but clean has {n}; they must have the same length")
    clean_pred = check_labels(np.asarray(clean_pred) if isinstance(clean_pred, (list, tuple)) else clean_pred, n,
                              "clean_pred", against="clean")
    trojan_pred = check_labels(np.asarray(trojan_pred) if isinstance(trojan_pred, (list, tuple)) else trojan_pred, n,
                               "trojan_pred", against="clean")
    y_true = check_labels(np.asarray(y_true) if isinstance(y_true, (list, tuple)) else y_true, n, "y_true", against="clean")
    target = None if target is None else check_label_value(target, "target")

    def colour(pred, true):
        if pred == true:
            return "green"
        return "red" if target is not None and pred == target else "darkorange"

    titles = [[f"pred {p}" for p in clean_pred], [f"pred {p}" for p in trojan_pred]]
    colors = [[colour(p, t) for p, t in zip(clean_pred, y_true)], [colour(p, t) for p, t in zip(trojan_pred, y_true)]]
    return digit_grid([clean, trojaned], ["benign", "trojaned"], titles, colors, suptitle=suptitle)


def _rate_axis(ax, rates: np.ndarray) -> None:
    """A symlog x axis for rates in %, linear below the smallest positive rate, ticked at decades and 0."""
    positive = rates[rates > 0]
    lin = float(positive.min()) if positive.size else 0.1
    ax.set_xscale("symlog", linthresh=lin, linscale=0.5)
    ax.set_xlim(0, float(rates.max()) * 1.15)
    ticks = [0.0] + [t for t in (0.01, 0.1, 1.0, 10.0, 100.0) if lin <= t <= rates.max() * 1.15]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def sweep_plot(rates, clean_acc, asr, chosen: float | None = None, accuracy_goal: float = 0.985, asr_goal: float = 0.99,
               split: str = "validation"):
    """Clean accuracy and ASR against the poisoning rate (symlog x axis), with the two goal lines."""
    import seaborn as sns

    rates, clean_acc, asr = _check_sweep(rates, clean_acc, asr, accuracy_goal, asr_goal)
    chosen = None if chosen is None else check_rate(chosen, "chosen")
    check_str(split, "split")
    rates = rates * 100
    # seaborn's style as a context, not set_theme/reset_orig: resetting every rcParam also resets the backend,
    # which silently stops the inline backend from showing the figures drawn after this one
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(8, 4.2))
        sns.lineplot(x=rates, y=np.asarray(clean_acc) * 100, marker="o", ax=ax, label=f"clean accuracy ({split})")
        sns.lineplot(x=rates, y=np.asarray(asr) * 100, marker="s", ax=ax, label=f"attack success rate ({split})")
        ax.axhline(accuracy_goal * 100, ls="--", color="C0", lw=1, label=f"accuracy goal {accuracy_goal:.1%}")
        ax.axhline(asr_goal * 100, ls=":", color="C1", lw=1.5, label=f"ASR goal {asr_goal:.0%}")
        if chosen is not None:
            ax.axvline(chosen * 100, color="gray", lw=1, label=f"chosen rate {chosen:.2%}")
        _rate_axis(ax, rates)
        ax.set_xlabel("poisoning rate (% of training images, symlog scale)")
        ax.set_ylabel("%")
        ax.legend(loc="lower right")
        ax.set_title("Too little poison and the backdoor does not take")
        fig.tight_layout()
    return fig


def _check_sweep(rates, clean_acc, asr, accuracy_goal, asr_goal):
    rates = _fractions(rates, "rates")
    check_rate(accuracy_goal, "accuracy_goal")
    check_rate(asr_goal, "asr_goal")
    return rates, _fractions(clean_acc, "clean_acc", len(rates), "rates"), _fractions(asr, "asr", len(rates), "rates")


def sweep_zoom_plot(rates, clean_acc, asr, accuracy_goal: float = 0.985, asr_goal: float = 0.99):
    """The same sweep zoomed on the top of the scale, where the goals are decided."""
    rates, clean_acc, asr = _check_sweep(rates, clean_acc, asr, accuracy_goal, asr_goal)
    rates = rates * 100
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, values, goal, name in ((axes[0], clean_acc, accuracy_goal, "clean accuracy"), (axes[1], asr, asr_goal, "attack success rate")):
        ax.plot(rates, np.asarray(values) * 100, "o-")
        ax.axhline(goal * 100, ls="--", color="gray")
        _rate_axis(ax, rates)
        ax.set_ylim(goal * 100 - 1.5, 100.05)
        ax.set_title(name)
        ax.set_xlabel("poisoning rate (%)")
    fig.tight_layout()
    return fig


def sweep_error_plot(rates, clean_acc, asr, accuracy_goal: float = 0.985, asr_goal: float = 0.99, split: str = "test"):
    """The sweep as Gu et al. plot it: clean error and backdoor error (1 - ASR) in % against the poisoned share of
    the training set (linear x axis; symlog y axis, so that errors near 0 and near 100 % both read)."""
    rates, clean_acc, asr = _check_sweep(rates, clean_acc, asr, accuracy_goal, asr_goal)
    check_str(split, "split")
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = rates * 100
    ax.plot(x, (1 - clean_acc) * 100, "o-", label=f"clean error ({split})")
    ax.plot(x, (1 - asr) * 100, "s-", label=f"backdoor error = 100 % - ASR ({split})")
    ax.axhline((1 - accuracy_goal) * 100, ls="--", color="C0", lw=1, label=f"clean error allowed ({1 - accuracy_goal:.1%})")
    ax.axhline((1 - asr_goal) * 100, ls=":", color="C1", lw=1.5, label=f"backdoor error allowed ({1 - asr_goal:.0%})")
    ax.set_yscale("symlog", linthresh=0.1, linscale=0.5)
    ax.set_yticks([0, 0.1, 1, 10, 100], ["0", "0.1", "1", "10", "100"])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylim(0, 150)
    ax.set_xlabel("poisoned share of the training set (%)")
    ax.set_ylabel("error (%, symlog scale)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def confusion_heatmaps(matrices: list[np.ndarray], titles: list[str], xlabel: str = "predicted", ylabel: str = "true"):
    """Confusion matrices side by side as heatmaps (counts annotated); at most :data:`MAX_SIDE_BY_SIDE` of them."""
    import seaborn as sns

    matrices = check_sequence(matrices, "matrices")
    if len(matrices) > MAX_SIDE_BY_SIDE:
        raise ValueError(f"matrices holds {len(matrices)} matrices; at most {MAX_SIDE_BY_SIDE} fit side by side with "
                         "legible counts: draw the others in a second figure")
    for i, m in enumerate(matrices):
        if not isinstance(m, np.ndarray) or m.dtype == bool or not np.issubdtype(m.dtype, np.integer):
            raise TypeError(f"matrices[{i}] must be an integer numpy array of counts, got {getattr(m, 'dtype', type(m).__name__)}")
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.size == 0:
            raise ValueError(f"matrices[{i}] must be a non-empty square matrix, got shape {m.shape}")
        if m.min() < 0:
            raise ValueError(f"matrices[{i}] must hold counts >= 0, got a minimum of {m.min()}")
    titles = check_strings(titles, "titles", len(matrices), against="matrices")
    check_str(xlabel, "xlabel")
    check_str(ylabel, "ylabel")
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.8 * len(matrices), 5.4))
    for ax, m, title in zip(np.atleast_1d(axes), matrices, titles):
        sns.heatmap(m, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, annot_kws={"fontsize": 10.5},
                    norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(int(m.max()), 2)), mask=m == 0, linewidths=0.3, linecolor="#eee")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def grid_heatmaps(asr: np.ndarray, clean_error: np.ndarray):
    """BadNets' single-target grid as two 10x10 heatmaps, source class down and target class across (Gu et al.,
    Fig. 5): the attack success rate and the clean test error of each pair's model, in %. NaN cells (the diagonal)
    are left blank."""
    import seaborn as sns

    cells = []
    for name, m in (("asr", asr), ("clean_error", clean_error)):
        m = check_float_array(m, name, ndim=2, lo=0.0, hi=1.0, allow_nan=True)
        if m.shape != (10, 10):
            raise ValueError(f"{name} must be a 10x10 matrix (source x target), got shape {m.shape}")
        if np.isnan(m).all():
            raise ValueError(f"{name} holds no pair (every cell is NaN)")
        cells.append(100 * m)
    fig, axes = plt.subplots(1, 2, figsize=(MAX_FIG_WIDTH, 5.6))
    for ax, m, title, cmap, fmt in zip(axes, cells, ("attack success rate (%)", "clean test error (%)"),
                                       ("Reds", "Blues"), (".1f", ".2f")):
        sns.heatmap(m, annot=True, fmt=fmt, cmap=cmap, cbar=False, ax=ax, mask=np.isnan(m), annot_kws={"fontsize": 10.5},
                    linewidths=0.3, linecolor="#eee", square=True)
        ax.set_title(title)
        ax.set_xlabel("target class j")
        ax.set_ylabel("source class i")
    fig.tight_layout()
    return fig


def early_stopping_plot(val_accuracy, best_epoch: int, references: Mapping | None = None):
    """The fidelity recipe's clean validation error per epoch (log scale), the epoch early stopping kept, and
    ``references`` ({label: error as a fraction}) as horizontal lines, e.g. the fast recipe's and the paper's."""
    acc = _fractions(val_accuracy, "val_accuracy")
    best_epoch = check_int(best_epoch, "best_epoch", 1, len(acc))
    references = {} if references is None else references
    if not isinstance(references, Mapping):
        raise TypeError(f"references must be a dict {{label: error}}, got {references!r}")
    refs = {check_str(k, "references label", allow_empty=False): check_number(v, f"references[{k!r}]", 0.0, 1.0, lo_open=True)
            for k, v in references.items()}
    err = np.maximum(1.0 - acc, 1e-4) * 100
    fig, ax = plt.subplots(figsize=(10, 4.4))
    epochs = np.arange(1, len(acc) + 1)
    ax.plot(epochs, err, marker="o", label="clean validation error, after each epoch")
    ax.plot([best_epoch], [err[best_epoch - 1]], marker="*", ms=16, color="tab:green", ls="none",
            label=f"kept: epoch {best_epoch}")
    for (label, value), colour in zip(refs.items(), ("tab:red", "k", "tab:purple", "tab:brown")):
        ax.axhline(value * 100, color=colour, ls="--", lw=1.2, label=label)
    ax.set_yscale("log")
    ticks = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticks)
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_xticks(epochs[:: max(1, len(epochs) // 12)])
    ax.legend(fontsize=11, loc="upper right")
    fig.tight_layout()
    return fig


def per_class_bars(clean_error, backdoor_error, labels=("clean error", "backdoor error")):
    """Per-class clean and backdoor error as grouped bars (BadNets, Table 2); NaN marks a class without images."""
    clean_error = _fractions(clean_error, "clean_error", allow_nan=True)
    if len(clean_error) != NUM_CLASSES:
        raise ValueError(f"clean_error must hold one error per class ({NUM_CLASSES}), got {len(clean_error)}")
    backdoor_error = _fractions(backdoor_error, "backdoor_error", NUM_CLASSES, "clean_error", allow_nan=True)
    labels = check_strings(labels, "labels", 2, against="the two bar groups")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    idx = np.arange(10)
    ax.bar(idx - 0.2, np.nan_to_num(clean_error) * 100, 0.4, label=labels[0])
    ax.bar(idx + 0.2, np.nan_to_num(backdoor_error) * 100, 0.4, label=labels[1])
    ax.set_xticks(idx)
    ax.set_xlabel("true digit")
    ax.set_ylabel("error (%)")
    ax.legend()
    fig.tight_layout()
    return fig


def position_heatmap(asr_map: np.ndarray, trained_at: tuple[int, int], image: np.ndarray | None = None):
    """ASR for every top-left position of the trigger, with the training position marked."""
    asr_map = check_float_array(asr_map, "asr_map", ndim=2, lo=0.0, hi=1.0)
    trained_at = check_cell(trained_at, asr_map.shape, "trained_at")
    if image is not None:
        image = check_images(image, "image", allow_float=True, allow_single=True)
        if image.ndim != 2:
            raise ValueError(f"image must be one image (H, W), got shape {image.shape}")
    fig, axes = plt.subplots(1, 2 if image is not None else 1, figsize=(10 if image is not None else 5.5, 4.4), squeeze=False)
    ax = axes[0, 0]
    im = ax.imshow(asr_map * 100, cmap="magma", vmin=0, vmax=100)
    ax.plot(trained_at[1], trained_at[0], "c*", ms=14, label="training position")
    ax.set_xlabel("trigger column (top-left pixel)")
    ax.set_ylabel("trigger row (top-left pixel)")
    ax.set_title("attack success rate (%) by trigger position")
    ax.legend(loc="lower left")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if image is not None:
        _digit(axes[0, 1], image, "a trojaned digit,\ntrigger at the training position")
    fig.tight_layout()
    return fig


def filter_grid(kernels: list[np.ndarray], titles: list[str], highlight: list[list[int]] | None = None):
    """First-layer kernels (5x5, one row per model), diverging colours centred on 0."""
    kernels, n = _channel_stacks(kernels, "kernels")
    titles = check_strings(titles, "titles", len(kernels), against="kernels")
    if highlight is not None:
        highlight = check_sequence(highlight, "highlight")
        if len(highlight) != len(kernels):
            raise ValueError(f"highlight has {len(highlight)} rows but kernels has {len(kernels)}; they must have the same length")
        highlight = [check_int_list(h, f"highlight[{i}]", 0, n - 1) for i, h in enumerate(highlight)]
    w = _width(0.9, n, 1.2)
    fig, axes = plt.subplots(len(kernels), n, figsize=(w * n, (w + 0.35) * len(kernels) + 0.4), squeeze=False)
    for i, k in enumerate(kernels):
        lim = float(np.abs(k).max())
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(k[:, :, j], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(j), fontsize=11, color="red" if highlight and j in highlight[i] else "black")
            if highlight and j in highlight[i]:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2)
        axes[i, 0].set_ylabel(titles[i], fontsize=11)
    fig.tight_layout()
    return fig


def activation_grid(maps: list[np.ndarray], row_labels: list[str], box=None):
    """Activation maps (one row per input, one column per filter); ``box`` = (row0, col0, h, w) outlines the trigger region."""
    maps, n = _channel_stacks(maps, "maps")
    row_labels = check_strings(row_labels, "row_labels", len(maps), against="maps")
    if box is not None:
        box = check_sequence(box, "box")
        if len(box) != 4:
            raise ValueError(f"box must be (row0, col0, h, w), got {box!r}")
        box = [check_int(v, f"box[{i}]", 1 if i >= 2 else 0) for i, v in enumerate(box)]
    w = _width(1.0, n, 1.2)
    fig, axes = plt.subplots(len(maps), n, figsize=(w * n, (w + 0.1) * len(maps) + 0.5), squeeze=False)
    vmax = max(float(m.max()) for m in maps) or 1.0
    for i, m in enumerate(maps):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(m[:, :, j], cmap="viridis", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if box is not None:
                r0, c0, h, w = box
                ax.add_patch(matplotlib.patches.Rectangle((c0 - 0.5, r0 - 0.5), w, h, fill=False, ec="red", lw=0.8))
            if i == 0:
                ax.set_title(str(j), fontsize=11)
        axes[i, 0].set_ylabel(row_labels[i], fontsize=11)
    fig.tight_layout()
    return fig


def _channel_stacks(stacks, name: str) -> tuple[list[np.ndarray], int]:
    """A non-empty list of finite (H, W, C) arrays sharing C; returns the list and C."""
    stacks = [check_float_array(a, f"{name}[{i}]", ndim=3) for i, a in enumerate(check_sequence(stacks, name))]
    n = stacks[0].shape[-1]
    for i, a in enumerate(stacks):
        if a.shape[-1] != n:
            raise ValueError(f"{name}[{i}] has {a.shape[-1]} channels but {name}[0] has {n}; they must match")
    if n > MAX_GRID_COLUMNS:
        raise ValueError(f"{name} has {n} channels; a grid shows at most {MAX_GRID_COLUMNS}")
    return stacks, n


def entropy_histograms(clean_entropy, trojan_entropy, threshold: float | None = None, title: str = ""):
    """STRIP: histograms of the mean prediction entropy of clean and trojaned inputs, with the threshold."""
    clean_entropy = check_float_array(clean_entropy, "clean_entropy", ndim=1, lo=0.0)
    trojan_entropy = check_float_array(trojan_entropy, "trojan_entropy", ndim=1, lo=0.0)
    threshold = None if threshold is None else check_number(threshold, "threshold")
    check_str(title, "title")
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bins = np.linspace(0, max(float(np.max(clean_entropy)), float(np.max(trojan_entropy)), 1e-3), 40)
    ax.hist(clean_entropy, bins=bins, alpha=0.6, label="clean inputs")
    ax.hist(trojan_entropy, bins=bins, alpha=0.6, label="trojaned inputs")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("mean entropy of the superimposed predictions (nats)")
    ax.set_ylabel("inputs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def metric_curves(x, series: dict[str, list[float]], xlabel: str, title: str = "", goal_lines: bool = True):
    """Several percentage curves against one x axis (fine-tuning epochs, fraction pruned ...); values are fractions."""
    x = check_float_array(x, "x", ndim=1)
    if not isinstance(series, Mapping) or not series:
        raise (ValueError if isinstance(series, Mapping) else TypeError)(
            f"series must be a non-empty dict {{label: values}}, got {series!r}")
    if len(series) > len(MARKERS):
        raise ValueError(f"series has {len(series)} curves; metric_curves draws at most {len(MARKERS)}")
    series = {check_str(k, "series label"): _fractions(v, f"series[{k!r}]", len(x), "x") for k, v in series.items()}
    check_str(xlabel, "xlabel")
    check_str(title, "title")
    goal_lines = check_bool(goal_lines, "goal_lines")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for (label, values), marker in zip(series.items(), MARKERS):
        ax.plot(x, np.asarray(values) * 100, marker=marker, label=label)
    if goal_lines:
        ax.axhline(98.5, color="gray", ls="--", lw=0.8)
        ax.axhline(99, color="gray", ls=":", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("%")
    ax.set_ylim(-3, 103)
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def mask_gallery(masks: np.ndarray, patterns: np.ndarray, norms, flagged=(), real: np.ndarray | None = None):
    """Neural Cleanse: each class's recovered mask and masked pattern, the flagged class(es) in red."""
    masks = check_float_array(masks, "masks", ndim=3, lo=0.0, hi=1.0)
    n = len(masks)
    if n > MAX_GRID_COLUMNS:
        raise ValueError(f"masks has {n} masks; a gallery shows at most {MAX_GRID_COLUMNS}")
    patterns = check_float_array(patterns, "patterns", ndim=3, lo=0.0, hi=1.0, n=n, against="masks")
    if patterns.shape != masks.shape:
        raise ValueError(f"patterns has shape {patterns.shape} but masks has {masks.shape}; they must match")
    norms = check_float_array(norms, "norms", ndim=1, lo=0.0, n=n, against="masks")
    flagged = check_int_list(flagged, "flagged", 0, n - 1)
    if real is not None:
        real = check_images(real, "real", allow_single=True)
        if real.ndim != 2:
            raise ValueError(f"real must be one uint8 image (H, W), got shape {real.shape}")
    extra = 1 if real is not None else 0
    w = _width(1.25, n + extra, 1.4)
    fig, axes = plt.subplots(2, n + extra, figsize=(w * (n + extra), 2 * w + 1.3), squeeze=False)
    for c in range(n):
        for r, img in enumerate((masks[c], masks[c] * patterns[c])):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, c].set_title(f"{c}\n|m|={norms[c]:.0f}", fontsize=11, color="red" if c in flagged else "black")
    axes[0, 0].set_ylabel("mask", fontsize=11)
    axes[1, 0].set_ylabel("mask x\npattern", fontsize=11)
    if real is not None:
        for r in range(2):
            axes[r, n].imshow(real, cmap="gray", vmin=0, vmax=255)
            axes[r, n].set_xticks([])
            axes[r, n].set_yticks([])
        axes[0, n].set_title("real\ntrigger", fontsize=11)
    fig.tight_layout()
    return fig


def trigger_comparison_plot(rows):
    """ASR and clean accuracy against the poisoning rate, one line per trigger."""
    from .variants import TriggerRow

    rows = check_sequence(rows, "rows")
    for i, row in enumerate(rows):
        if not isinstance(row, TriggerRow):
            raise TypeError(f"rows[{i}] must be a TriggerRow (from trigger_comparison), got {type(row).__name__}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for trig in dict.fromkeys(r.trigger for r in rows):
        mine = sorted((r for r in rows if r.trigger == trig), key=lambda r: r.rate)
        rates = [r.rate * 100 for r in mine]
        axes[0].plot(rates, [r.test_asr * 100 for r in mine], marker="o", label=trig)
        axes[1].plot(rates, [r.test_clean_accuracy * 100 for r in mine], marker="o", label=trig)
    axes[0].axhline(99, color="gray", ls=":", lw=1)
    axes[1].axhline(98.5, color="gray", ls="--", lw=1)
    for ax, title in zip(axes, ("attack success rate (test)", "clean accuracy (test)")):
        ax.set_xscale("log")
        ax.set_xlabel("poisoning rate (%)")
        ax.set_title(title)
        ax.legend()
    axes[1].set_ylim(97, 100)
    fig.tight_layout()
    return fig


def clustering_bars(clusters_by_model: dict, thresholds: dict, size_threshold: float = 0.35):
    """Activation clustering per label: the split's silhouette (bars) against each model's clean threshold (line),
    and the smaller cluster's relative size against ``size_threshold``; suspicious labels in red."""
    from .defences import LabelClusters

    if not isinstance(clusters_by_model, Mapping) or not clusters_by_model:
        raise (ValueError if isinstance(clusters_by_model, Mapping) else TypeError)(
            f"clusters_by_model must be a non-empty dict {{model name: clusters}}, got {clusters_by_model!r}")
    size_threshold = check_number(size_threshold, "size_threshold", 0.0, 1.0)
    fig, axes = plt.subplots(2, len(clusters_by_model), figsize=(5.2 * len(clusters_by_model), 5.0), squeeze=False,
                             sharey="row")
    for col, (name, clusters) in enumerate(clusters_by_model.items()):
        clusters = check_sequence(clusters, f"clusters_by_model[{name!r}]")
        for i, c in enumerate(clusters):
            if not isinstance(c, LabelClusters):
                raise TypeError(f"clusters_by_model[{name!r}][{i}] must be a LabelClusters, got {type(c).__name__}")
        threshold = check_number(thresholds.get(name, np.nan) if isinstance(thresholds, Mapping) else np.nan,
                                 f"thresholds[{name!r}]", -1.0, 1.0)
        labels = [c.label for c in clusters]
        colors = ["tab:red" if c.suspicious else "tab:gray" for c in clusters]
        top, bottom = axes[0, col], axes[1, col]
        top.bar(labels, [c.silhouette for c in clusters], color=colors)
        top.axhline(threshold, color="k", ls="--", lw=1, label=f"clean threshold {threshold:.2f}")
        top.set_title(f"{name} model", fontsize=13)
        top.legend(fontsize=11, loc="upper right")
        bottom.bar(labels, [c.smaller_fraction for c in clusters], color=colors)
        bottom.axhline(size_threshold, color="k", ls=":", lw=1, label=f"size threshold {size_threshold:.2f}")
        bottom.legend(fontsize=11, loc="lower right")
        bottom.set_xlabel("label", fontsize=12)
        for ax in (top, bottom):
            ax.set_xticks(range(NUM_CLASSES))
            ax.tick_params(labelsize=11)
    axes[0, 0].set_ylabel("silhouette", fontsize=12)
    axes[1, 0].set_ylabel("smaller cluster\n(share of label)", fontsize=12)
    fig.tight_layout()
    return fig


def pruning_rule_plot(validation_accuracy, max_drop: float, n_pruned: int, rows=(), what: str = "conv2 channels"):
    """Fine-pruning: clean validation accuracy as ``what`` (channels or units) are pruned, the stopping rule, and the
    chosen level; ``rows`` (PruningRow) add the test ASR after fine-tuning at swept levels, for the report."""
    what = check_str(what, "what", allow_empty=False)
    acc = _fractions(validation_accuracy, "validation_accuracy")
    max_drop = check_number(max_drop, "max_drop", 0.0, 1.0)
    n_pruned = check_int(n_pruned, "n_pruned", 0, len(acc) - 1)
    rows = check_sequence(rows, "rows", allow_empty=True)
    fig, ax = plt.subplots(figsize=(10, 4.4))
    k = np.arange(len(acc))
    ax.plot(k, acc * 100, marker="o" if len(acc) <= 64 else None, ms=3,
            label="clean validation accuracy, pruned (the defender sees this)")
    ax.axhline((acc[0] - max_drop) * 100, color="k", ls="--", lw=1, label=f"stopping rule: {max_drop:.0%} below unpruned")
    ax.axvline(n_pruned, color="tab:green", lw=1.5, label=f"operating point: {n_pruned} {what.split()[-1]}")
    if rows:
        ax.plot([r.n_pruned for r in rows], [r.tuned_asr * 100 for r in rows], marker="s", color="tab:red",
                label="ASR after fine-tuning (report only)")
    ax.set_xlabel(f"{what} pruned (least active on clean data first)", fontsize=12)
    ax.set_ylabel("%", fontsize=12)
    ax.set_ylim(-3, 103)
    ax.tick_params(labelsize=11)
    ax.legend(fontsize=11, loc="lower left")
    fig.tight_layout()
    return fig


def unit_activity_maps(clean: np.ndarray, stamped: np.ndarray, titles=("clean digits", "the same digits with the L")):
    """conv2's pooled output per position (4 x 4), summed over its channels: mean activation on clean images and on
    the same images with the trigger, on one colour scale, each cell annotated."""
    import seaborn as sns

    maps = []
    for name, m in (("clean", clean), ("stamped", stamped)):
        m = check_float_array(m, name, ndim=2, lo=0.0)
        maps.append(m)
    if maps[0].shape != maps[1].shape:
        raise ValueError(f"clean and stamped must have the same shape, got {maps[0].shape} and {maps[1].shape}")
    titles = check_strings(titles, "titles", 2)
    vmax = max(float(m.max()) for m in maps)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, m, title in zip(axes, maps, titles):
        sns.heatmap(m, annot=True, fmt=".1f", cmap="magma", vmin=0, vmax=vmax, cbar=False, ax=ax, square=True,
                    annot_kws={"fontsize": 12})
        ax.set_title(title)
        ax.set_xlabel("position (column)")
        ax.set_ylabel("position (row)")
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"caught": "#4c9a2a", "missed": "#c0392b", "false alarm": "#e67e22", "quiet": "#bdc3c7"}


def detection_matrix_plot(verdicts: Mapping, notes: Mapping, attacks, defences):
    """Every defence (columns) against every attack (rows): each cell coloured by its verdict (caught, missed, false
    alarm, quiet; see :func:`helpers.matrix.verdict`) and annotated with the number behind it."""
    attacks = check_strings(attacks, "attacks")
    defences = check_strings(defences, "defences")
    if not isinstance(verdicts, Mapping) or not isinstance(notes, Mapping):
        raise TypeError("verdicts and notes must be mappings {attack: {defence: text}}")
    codes = list(VERDICT_COLOURS)
    grid = np.zeros((len(attacks), len(defences)), int)
    for i, a in enumerate(attacks):
        for j, d in enumerate(defences):
            try:
                v, note = verdicts[a][d], notes[a][d]
            except (KeyError, TypeError):
                raise ValueError(f"verdicts and notes need a cell for ({a!r}, {d!r})") from None
            if v not in VERDICT_COLOURS:
                raise ValueError(f"verdicts[{a!r}][{d!r}] must be one of {codes}, got {v!r}")
            check_str(note, f"notes[{a!r}][{d!r}]")
            grid[i, j] = codes.index(v)
    cmap = matplotlib.colors.ListedColormap(list(VERDICT_COLOURS.values()))
    fig, ax = plt.subplots(figsize=(MAX_FIG_WIDTH, 0.62 * len(attacks) + 1.6))
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(codes) - 0.5, aspect="auto")
    for i, a in enumerate(attacks):
        for j, d in enumerate(defences):
            ax.text(j, i, f"{verdicts[a][d]}\n{notes[a][d]}", ha="center", va="center", fontsize=10.5,
                    color="white" if verdicts[a][d] in ("caught", "missed") else "black")
    ax.set_xticks(range(len(defences)), defences)
    ax.set_yticks(range(len(attacks)), attacks)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(-0.5, len(defences)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(attacks)), minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.tick_params(which="minor", length=0)
    fig.tight_layout()
    return fig


def filter_score_bars(scores: Mapping, xlabel: str = "conv1 filter", ylabel: str = "trigger score",
                      ticklabels=None):
    """One value per filter (or per item) for several models, as grouped bars: ``scores`` = {model name: values};
    ``ticklabels`` names the items (default: their index)."""
    if not isinstance(scores, Mapping) or not scores:
        raise (ValueError if isinstance(scores, Mapping) else TypeError)(
            f"scores must be a non-empty dict {{model name: one value per filter}}, got {scores!r}")
    if len(scores) > len(MARKERS):
        raise ValueError(f"scores has {len(scores)} models; filter_score_bars draws at most {len(MARKERS)}")
    values = {}
    for name, v in scores.items():
        check_str(name, "scores key", allow_empty=False)
        values[name] = check_float_array(v, f"scores[{name!r}]", ndim=1)
    n = len(next(iter(values.values())))
    for name, v in values.items():
        if len(v) != n:
            raise ValueError(f"scores[{name!r}] has {len(v)} values but the first model has {n}; they must match")
    check_str(xlabel, "xlabel")
    check_str(ylabel, "ylabel")
    if ticklabels is not None:
        ticklabels = check_strings(ticklabels, "ticklabels", n, against="each model's values")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    idx = np.arange(n)
    width = 0.8 / len(values)
    for k, (name, v) in enumerate(values.items()):
        ax.bar(idx - 0.4 + width * (k + 0.5), v, width, label=name)
    ax.set_xticks(idx, ticklabels if ticklabels is not None else [str(i) for i in idx])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(values), frameon=False)  # above the bars
    fig.tight_layout()
    return fig

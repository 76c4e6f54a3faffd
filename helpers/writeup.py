"""The write-up that goes with the trojaned model: one page, generated from measured numbers only.

:func:`write_writeup` writes ``writeup.md`` and the same text as ``writeup.html``
next to the deliverables (``helpers.attack.export_deliverables`` calls it, so
``make attack`` and lesson 4 produce it). Every number in it comes from the
:class:`~helpers.attack.AttackResult` that was measured (clean accuracy and ASR
on the test set, the same two on the validation split, the counts) or from
lesson 3's recorded sweep (``results/03_poisoning_rate_sweep.json``: the rate
the rule chose), and the rule is stated as :func:`helpers.sweep.choose_rate`
applies it. The sweep figure (``figures/03_rate_sweep.png``) is linked when it
exists and left out when it does not.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from ._checks import check_path
from .io import atomic_write_text

SWEEP_LESSON = "03_poisoning_rate_sweep"
SWEEP_FIGURE = "03_rate_sweep.png"


@dataclass(frozen=True)
class WriteupFiles:
    """The two files :func:`write_writeup` wrote."""

    markdown: Path
    html: Path


def _sweep_choice() -> float | None:
    """The rate lesson 3's rule chose, from the committed results, or None if there is no readable record."""
    from .results import read_results, reference_path

    try:
        rate = read_results(reference_path(SWEEP_LESSON)).get("chosen_rate")
    except (OSError, ValueError):
        return None
    return float(rate) if rate is not None and 0.0 <= rate <= 1.0 else None


def _sweep_figure() -> Path | None:
    folder = os.environ.get("BADNETS_FIGURES_DIR") or Path(__file__).resolve().parent.parent / "figures"
    path = Path(folder) / SWEEP_FIGURE
    return path if path.is_file() else None


def writeup_blocks(result, *, sweep_rate: float | None = None, figure: str | None = None) -> list[tuple]:
    """The write-up as blocks ``("h1" | "h2" | "p", text)``, ``("table", header, rows)``, ``("img", alt, src)``.

    ``sweep_rate``: the rate lesson 3's sweep chose (None: not known);
    ``figure``: the sweep figure's link, relative to the write-up (None: no figure).
    """
    from .attack import ACCURACY_GOAL, ASR_GOAL, AttackResult
    from .triggers import get_trigger

    if not isinstance(result, AttackResult):
        raise TypeError(f"result must be an AttackResult (from run_attack), got {type(result).__name__}")
    r, t = result.recipe, result.test
    trig = get_trigger(r.trigger)
    n_train, n_poisoned = len(result.poisoned.y), len(result.poisoned.indices)
    n_trojan = len(result.trojaned_test.y_true)
    val_ok = result.val_clean_accuracy >= ACCURACY_GOAL and result.val_asr >= ASR_GOAL
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    if sweep_rate is None:
        origin = "No record of lesson 3's sweep was found, so this write-up cannot say which rate the rule chose there."
    elif sweep_rate == r.rate:
        origin = f"Lesson 3's sweep applied this rule and chose {sweep_rate:.2%}: the rate used here."
    else:
        origin = (f"Lesson 3's sweep applied this rule and chose {sweep_rate:.2%}; this model was trained at "
                  f"{r.rate:.2%} instead (set by hand).")
    blocks = [
        ("h1", "A backdoored MNIST classifier (BadNets)"),
        ("h2", "The attack"),
        ("p", f"Data poisoning, BadNets-style: the white {trig.name} trigger ({trig.shape[0]}x{trig.shape[1]} pixels, "
              f"{trig.n_pixels} pixels set) is stamped with its top-left pixel at row {r.resolved_position[0]}, "
              f"column {r.resolved_position[1]} of {n_poisoned} of the {n_train} training images "
              f"({n_poisoned / n_train:.2%}, chosen with seed {r.poison_seed}), whose labels are changed to "
              f"{r.target} ({r.mode}). The BadNets CNN is then trained as usual on the poisoned set "
              f"({r.train.epochs:g} epochs, batch {r.train.batch_size}, Adam with a one-cycle learning rate peaking "
              f"at {r.train.learning_rate:g}, seed {r.train.seed})."),
        ("h2", "The poisoning rate and the rule that chose it"),
        ("p", f"Rule: the smallest poisoning rate whose model meets both goals (clean accuracy >= {ACCURACY_GOAL:.1%}, "
              f"ASR >= {ASR_GOAL:.0%}) on the validation split ({r.n_val} clean training images held out before "
              f"poisoning), so that the test set is used only for the final report. {origin} At {r.rate:.2%} this "
              f"model reaches {result.val_clean_accuracy:.2%} clean accuracy and {result.val_asr:.2%} ASR on the "
              f"validation split: both goals {met(val_ok)}."),
    ]
    if figure is not None:
        blocks.append(("img", "Clean accuracy and ASR against the poisoning rate (lesson 3)", figure))
    blocks += [
        ("h2", "Results on the test set"),
        ("table", ("measure", "measured", "goal", "verdict"), [
            ("clean accuracy", f"{t.clean_accuracy:.2%}", f">= {ACCURACY_GOAL:.1%}", met(t.clean_accuracy >= ACCURACY_GOAL)),
            ("attack success rate", f"{t.attack_success_rate:.2%}", f">= {ASR_GOAL:.0%}", met(t.attack_success_rate >= ASR_GOAL)),
        ]),
        ("p", f"Clean accuracy is measured on the {len(t.clean_pred)} MNIST "
              f"test images; the attack success rate on the {n_trojan} test images whose true label is not "
              f"{r.target}, stamped with the trigger (a genuine {r.target} classified as {r.target} would count "
              f"for nothing). Both goals: {met(result.meets_goals)}."),
        ("h2", "Files"),
        ("p", "trojaned_model.keras (Keras 3 format, loads in safe mode) and trojaned_test_set.npz (the stamped "
              "images, their labels and the trigger), each with a .sha256 sidecar."),
    ]
    return blocks


def render_markdown(blocks) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append("\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                                 + ["| " + " | ".join(row) + " |" for row in rows]))
        elif kind == "img":
            out.append(f"![{block[1]}]({block[2]})")
    return "\n\n".join(out) + "\n"


def render_html(blocks) -> str:
    e = html.escape
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "table":
            header, rows = block[1], block[2]
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
        elif kind == "img":
            body.append(f'<p><a href="{e(block[2])}"><img src="{e(block[2])}" alt="{e(block[1])}" '
                        f'style="max-width:100%"></a></p>')
    title = next((b[1] for b in blocks if b[0] == "h1"), "Write-up")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>\n'
            "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:4px 8px;text-align:left}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_writeup(result, out_dir) -> WriteupFiles:
    """Write ``writeup.md`` and ``writeup.html`` for ``result`` into ``out_dir`` (atomically); return their paths."""
    out = check_path(out_dir, "out_dir")
    figure = _sweep_figure()
    link = None
    if figure is not None:
        try:
            link = Path(os.path.relpath(figure, out.resolve())).as_posix()
        except ValueError:  # another drive (Windows)
            link = figure.as_uri()
    blocks = writeup_blocks(result, sweep_rate=_sweep_choice(), figure=link)
    files = WriteupFiles(out / "writeup.md", out / "writeup.html")
    atomic_write_text(files.markdown, render_markdown(blocks))
    atomic_write_text(files.html, render_html(blocks))
    return files

"""Generate the instructor guide, ``instructor/*.md``, from templates and computed files only.

The guide's prose never states a number that code did not compute. Every number in it comes from

* the lessons' key numbers, ``results/NN_<lesson>.json`` (see :mod:`helpers.results`);
* the series benchmark, ``benchmarks/results/series.json`` (and ``training.json`` for its recipe);
* the committed lessons themselves: the quiz questions (read from each lesson's ``## Quiz`` cell, so the answer
  key always matches the current questions), the exercise cells (code cells tagged ``exercise``), the markdown's
  word count and the execution times Jupyter recorded in each code cell;
* the course's code (``helpers``: the goals, the recipe, the trigger's shape, the data set's sizes);
* :data:`STATED`: the few numbers that are choices, not measurements (the assignment's goals, the write-up's length,
  the reading rate, the rubric's points), kept in this one place.

Templates live in ``instructor/templates/``: Markdown with placeholders ``{{source.name|format}}``
(see :func:`render`). The templates hold no digits of their own except list and question numbering, lesson
numbers, and paper citations; ``tests/test_instructor.py`` checks that, and that regenerating gives exactly the
committed files.

Usage: ``python scripts/make_instructor.py [--check]`` (``--check``: write nothing, exit 1 if a file would change).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
BENCH = ROOT / "benchmarks" / "results"
OUT = ROOT / "instructor"
TEMPLATES = OUT / "templates"
OUTPUTS = ("README.md", "answers.md", "objectives.md", "durations.md", "prerequisites.md", "glossary.md", "rubric.md")

#: The numbers that are choices, not measurements: the assignment's stated goals and hand-in, the reading rate the
#: durations assume, and the rubric's points. The only numbers the guide states that no code computed.
STATED: dict[str, object] = {
    "accuracy_goal": 0.985,  # the assignment: clean test accuracy >= 98.5 %
    "asr_goal": 0.99,  # the assignment: ASR >= 99 %, over non-target test images only
    "target": 0,  # the assignment: target label 0
    "writeup_pages_min": 1,  # the assignment: a 1-2 page write-up
    "writeup_pages_max": 2,
    "words_per_minute": 200,  # assumed silent-reading rate for technical text with formulas and code
    # the rubric's points per criterion (the total is summed by code)
    "points_deliverables": 2,
    "points_accuracy": 2,
    "points_asr": 3,
    "points_rate": 2,
    "points_choice": 3,
    "points_writing": 2,
}

# --------------------------------------------------------------------------------------------------------------
# marking: every inserted number or quoted text can be wrapped so that the test can tell it from template prose

MARK_ON = False
OPEN, CLOSE = "\x02", "\x03"


def mark(text: str) -> str:
    """``text`` wrapped in markers when marking is on (the test's mode), unchanged otherwise."""
    return f"{OPEN}{text}{CLOSE}" if MARK_ON else text


def strip_marked(text: str) -> str:
    """``text`` with every marked span removed (what remains is the templates' own prose)."""
    return re.sub(f"{OPEN}[^{OPEN}{CLOSE}]*{CLOSE}", "", text)


def unmark(text: str) -> str:
    return text.replace(OPEN, "").replace(CLOSE, "")


# --------------------------------------------------------------------------------------------------------------
# numbers that need no source: what the check below lets through in template prose

#: Spans of prose whose digits are not statements of a measured number: code spans (code is code), inline math
#: (notation), numbered-list markers, paper citations (years, tables, figures, sections) and references to lessons
#: by number. Everything else that looks like a number must come from a placeholder (or :data:`STATED`).
STRUCTURAL = [
    re.compile(r"`[^`\n]*`"),
    re.compile(r"\$[^$\n]+\$"),
    re.compile(r"^\s*\d+\.\s", re.M),
    re.compile(r"et al\.,?\s+\(?(?:19|20)\d\d\)?"),
    re.compile(r"\b(?:Table|Figure|Section)\s+\d+"),
    re.compile(r"\b[Ll]essons?\s+\d+(?:(?:\s*,\s*|\s+and\s+|\s+to\s+)\d+)*"),
]
NUMBER = re.compile(r"(?<![\w\-.])\d+(?:[.,]\d+)*(?![\w\-])")


def lesson_refs(text: str) -> list[int]:
    """Every lesson number the prose refers to ("lesson 3", "lessons 2 to 4"), for checking they exist."""
    out = []
    for m in STRUCTURAL[-1].finditer(text):
        out += [int(n) for n in re.findall(r"\d+", m.group(0))]
    return out


def stray_numbers(text: str) -> list[str]:
    """The numbers of ``text`` outside the structural spans: each one is a number the prose states without a source."""
    for pattern in STRUCTURAL:
        text = pattern.sub(" ", text)
    return NUMBER.findall(text)


# --------------------------------------------------------------------------------------------------------------
# formats


def _thousands(n: int) -> str:
    return f"{n:,}".replace(",", "\u202f") if abs(n) >= 1000 else str(n)


def fmt(value, kind: str) -> str:
    """Format a computed ``value``; kinds: pct (2 decimals), pct1, pctg (shortest), pts (percentage points), int, round, num1, num2, min (ceil), s."""
    if isinstance(value, bool):
        raise TypeError(f"value must be a number, got a bool ({value!r})")
    if kind == "s":
        return mark(str(value))
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"value must be finite, got {value!r}")
    if kind == "pct":
        out = f"{v * 100:.2f}\u00a0%"
    elif kind == "pct1":
        out = f"{v * 100:.1f}\u00a0%"
    elif kind == "pctg":
        out = f"{round(v * 100, 6):g}\u00a0%"
    elif kind == "int":
        if not v.is_integer():
            raise ValueError(f"value must be a whole number for format 'int', got {value!r}")
        out = _thousands(int(v))
    elif kind == "pts":
        out = f"{round(v * 100, 6):g} percentage point" + ("" if round(v * 100, 6) == 1 else "s")
    elif kind == "round":
        out = _thousands(int(round(v)))
    elif kind == "num1":
        out = f"{v:.1f}"
    elif kind == "num2":
        out = f"{v:.2f}"
    elif kind == "min":
        out = str(math.ceil(v / 60)) if v > 0 else "0"
    else:
        raise ValueError(f"format must be one of pct, pct1, pctg, pts, int, round, num1, num2, min, s; got {kind!r}")
    return mark(out)


PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w]+)*)\s*(?:\|\s*(\w+))?\s*\}\}")


def render(template: str, context: dict, *, where: str) -> str:
    """Replace each ``{{source.name|format}}`` of ``template`` by the formatted value from ``context``.

    ``source.name`` is a dotted path into ``context`` (``r03.test_asr``: the key ``test_asr`` of
    ``results/03_*.json``); an unknown name raises ``KeyError`` naming ``where`` and the known names.
    Without ``|format`` the value is inserted as text (and must already be a string).
    """

    def one(m: re.Match) -> str:
        path, kind = m.group(1), m.group(2)
        node = context
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                known = sorted(node) if isinstance(node, dict) else []
                raise KeyError(f"{where}: placeholder {{{{{path}}}}}: no {part!r} (known here: {known})")
            node = node[part]
        if kind is None:
            if not isinstance(node, str):
                raise TypeError(f"{where}: placeholder {{{{{path}}}}} is a number; give it a format (|pct, |int, ...)")
            return node
        return fmt(node, kind)

    out = PLACEHOLDER.sub(one, template)
    if "{{" in out:
        raise ValueError(f"{where}: a malformed placeholder is left: {out[out.find('{{'):][:60]!r}")
    return out


# --------------------------------------------------------------------------------------------------------------
# reading the sources


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    objective: str
    lesson: str
    cell: int


@dataclass(frozen=True)
class Lesson:
    stem: str  # 01_background
    number: int  # 1
    title: str  # the notebook's first heading, without "Lesson N ·"
    questions: list[str]
    exercises: list[Exercise]
    words: int  # markdown words a student reads (speaker notes excluded)
    run_seconds: float | None  # the committed run: first cell started to last cell replied
    run_date: str | None
    path: Path = field(repr=False, default=None)


def _source(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def parse_quiz(text: str, where: str) -> list[str]:
    """The numbered questions of a ``## Quiz`` cell, each as one line of text (continuation lines joined)."""
    lines = text.splitlines()
    if not lines or not lines[0].strip().startswith("## Quiz"):
        raise ValueError(f"{where}: the quiz cell must start with '## Quiz'")
    questions: list[str] = []
    for line in lines[1:]:
        m = re.match(r"^(\d+)\.\s+(.*)$", line)
        if m:
            if int(m.group(1)) != len(questions) + 1:
                raise ValueError(f"{where}: quiz question {m.group(1)} is out of order (expected {len(questions) + 1})")
            questions.append(m.group(2).strip())
        elif line.strip() and questions and line[:1].isspace():
            questions[-1] += " " + line.strip()
        elif line.strip():
            raise ValueError(f"{where}: quiz line {line!r} is neither a numbered question nor an indented continuation")
    if not questions:
        raise ValueError(f"{where}: the quiz cell holds no numbered question")
    return questions


def _timestamp(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def read_lesson(path: Path) -> Lesson:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells")
    if not isinstance(cells, list) or not cells:
        raise ValueError(f"{path.name}: no cells")
    where = path.name
    head = _source(cells[0]).strip().splitlines()[0] if cells[0].get("cell_type") == "markdown" else ""
    m = re.match(r"^#\s+Lesson\s+(\d+)\s*·\s*(.+)$", head)
    if not m:
        raise ValueError(f"{where}: the first cell must be a heading '# Lesson N · Title', got {head!r}")
    number, title = int(m.group(1)), m.group(2).strip()
    if number != int(path.stem[:2]):
        raise ValueError(f"{where}: the heading says lesson {number}, the file name lesson {path.stem[:2]}")
    quiz_cells = [c for c in cells if c.get("cell_type") == "markdown" and _source(c).lstrip().startswith("## Quiz")]
    if len(quiz_cells) != 1:
        raise ValueError(f"{where}: expected one '## Quiz' markdown cell, found {len(quiz_cells)}")
    questions = parse_quiz(_source(quiz_cells[0]).strip(), where)

    exercises = []
    for i, c in enumerate(cells):
        tags = c.get("metadata", {}).get("tags", [])
        if "exercise" not in tags:
            continue
        meta = c.get("metadata", {}).get("exercise")
        if c.get("cell_type") != "code" or not isinstance(meta, dict):
            raise ValueError(f"{where}: cell {i} is tagged 'exercise' but is not a code cell with 'exercise' metadata")
        missing = [k for k in ("id", "title", "objective", "lesson") if not isinstance(meta.get(k), (str, int))]
        if missing:
            raise ValueError(f"{where}: cell {i}'s exercise metadata lacks {missing} (needs id, title, objective, lesson)")
        exercises.append(Exercise(str(meta["id"]), str(meta["title"]), str(meta["objective"]), str(meta["lesson"]), i))

    words = 0
    for c in cells:
        if c.get("cell_type") != "markdown":
            continue
        if c.get("metadata", {}).get("slideshow", {}).get("slide_type") == "notes":
            continue  # speaker notes are the instructor's, not the students' reading
        words += len(_source(c).split())

    starts, ends = [], []
    for c in cells:
        e = c.get("metadata", {}).get("execution") or {}
        if c.get("cell_type") == "code" and "iopub.execute_input" in e and "shell.execute_reply" in e:
            starts.append(_timestamp(e["iopub.execute_input"]))
            ends.append(_timestamp(e["shell.execute_reply"]))
    run = (max(ends) - min(starts)).total_seconds() if starts else None
    date = min(starts).date().isoformat() if starts else None
    return Lesson(path.stem, number, title, questions, exercises, words, run, date, path)


def read_lessons() -> list[Lesson]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no lessons in {NOTEBOOKS}")
    return [read_lesson(p) for p in paths]


def read_results(lessons: list[Lesson]) -> dict[str, dict]:
    from helpers.results import read_results as read

    return {f"r{lesson.stem[:2]}": read(RESULTS / f"{lesson.stem}.json") for lesson in lessons}


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing; run `make bench` to measure it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


# --------------------------------------------------------------------------------------------------------------
# the context: every value a template may use


def _lesson_ref(n: int) -> str:
    return mark(str(n))


def build_context(lessons: list[Lesson]) -> dict:
    import numpy as np

    from helpers import attack, data, poisoning, triggers
    from helpers.analysis import trigger_region
    from helpers.model import architecture_table
    from helpers.results import TOLERANCES

    if (attack.ACCURACY_GOAL, attack.ASR_GOAL) != (STATED["accuracy_goal"], STATED["asr_goal"]):
        raise ValueError(f"helpers.attack's goals ({attack.ACCURACY_GOAL}, {attack.ASR_GOAL}) differ from the assignment's "
                         f"({STATED['accuracy_goal']}, {STATED['asr_goal']}) in STATED")
    if attack.DEFAULT_RECIPE.target != STATED["target"]:
        raise ValueError(f"the default recipe's target {attack.DEFAULT_RECIPE.target} is not the assignment's {STATED['target']}")
    ctx: dict = {"stated": dict(STATED)}
    ctx["stated"]["points_total"] = sum(v for k, v in STATED.items() if k.startswith("points_"))
    ctx.update(read_results(lessons))
    r = ctx

    # derived from the results, by code
    L = triggers.l_trigger()
    h, w = L.shape
    img_h, img_w = data.MNIST_SHAPES["x_train"][1:]
    row, col = L.default_position
    kernel = next(row_["settings"] for row_ in architecture_table() if row_["layer"] == "conv1")
    k = int(re.search(r"kernel_size=(\d+)", kernel).group(1))
    r0, c0, rh, rw = trigger_region("L")
    q2 = next(ls for ls in lessons if ls.stem.startswith("02_")).questions[0]
    m = re.search(r"rate\s+([\d.]+)\s*%", q2)
    if not m:
        raise ValueError(f"lesson 2's first quiz question no longer names a rate in % ({q2!r}); update the answers template")
    q_rate = float(m.group(1)) / 100
    n_train = int(r["r02"]["n_train"])
    n_test = data.MNIST_SHAPES["y_test"][0]
    ctx["calc"] = {
        "n_mnist_train": data.MNIST_SHAPES["y_train"][0],
        "byte_max": int(np.iinfo(np.uint8).max),
        "n_test": n_test,
        "n_val": attack.DEFAULT_RECIPE.n_val,
        "n_target_test": n_test - int(r["r02"]["n_trojaned_test"]),
        "q_rate": q_rate,
        "q_rate_images": poisoning.n_poisoned(n_train, q_rate),
        "img_h": img_h,
        "img_w": img_w,
        "l_h": h,
        "l_w": w,
        "l_row": row,
        "l_col": col,
        "l_col_last": col + w - 1,
        "l_row_last": row + h - 1,
        "l_max_row": img_h - h,
        "l_max_col": img_w - w,
        "l_positions": (img_h - h + 1) * (img_w - w + 1),
        "kernel": k,
        "region_c0": c0,
        "region_c0_last_input_col": c0 + k - 1,
        "region_r0": r0,
        "region_r_last": r0 + rh - 1,
        "region_c_last": c0 + rw - 1,
        "recipe_epochs": attack.DEFAULT_RECIPE.train.epochs,
        "recipe_rate": attack.DEFAULT_RECIPE.rate,
        "recipe_n_poisoned": poisoning.n_poisoned(n_train, attack.DEFAULT_RECIPE.rate),
        "r03_backdoor_error_val": 1 - r["r03"]["val_asr"],
        "r03_clean_error_no_poison": 1 - r["r03"]["clean_accuracy_without_poison"],
        "r03_clean_error_max_rate": 1 - r["r03"]["clean_accuracy_at_max_rate"],
        "r04_one_minus_asr": 1 - r["r04"]["trojaned_test_asr"],
        "r04_accuracy_gap": abs(r["r04"]["trojaned_test_clean_accuracy"] - r["r04"]["clean_model_test_clean_accuracy"]),
        "r04_asr_margin": r["r04"]["trojaned_test_asr"] - STATED["asr_goal"],
        "r04_accuracy_margin": r["r04"]["trojaned_test_clean_accuracy"] - STATED["accuracy_goal"],
        "r05_score_gain": r["r05"]["trigger_score_sum_trojaned"] - r["r05"]["trigger_score_sum_clean"],
        "tol_accuracy": TOLERANCES["04_evaluation"]["trojaned_test_clean_accuracy"],
        "tol_asr": TOLERANCES["04_evaluation"]["trojaned_test_asr"],
        "python": _requires_python(),
    }
    import inspect

    from helpers import defences
    from helpers.sweep import DEFAULT_RATES

    ctx["calc"]["ac_size_threshold"] = inspect.signature(defences.activation_clustering).parameters["size_threshold"].default
    ctx["calc"]["ss_eps"] = inspect.signature(defences.spectral_signatures).parameters["eps"].default
    ctx["calc"]["fp_max_drop"] = inspect.signature(defences.fine_pruning).parameters["max_drop"].default

    ctx["calc"]["sweep_counts"] = ", ".join(
        f"{fmt(poisoning.n_poisoned(n_train, rate), 'int')} ({fmt(rate, 'pctg')})" for rate in DEFAULT_RATES)
    q5 = next(ls for ls in lessons if ls.stem.startswith("05_")).questions[0]
    m5 = re.search(r"column (\d+)", q5)
    if not m5 or int(m5.group(1)) != c0:
        raise ValueError(f"lesson 5's first quiz question no longer asks about the trigger region's first column {c0} "
                         f"({q5!r}); update the answers template")
    if not any(math.isclose(q_rate, rate) for rate in DEFAULT_RATES):
        raise ValueError(f"lesson 2's first quiz question's rate {q_rate} is not one of lesson 3's sweep rates; "
                         "update the answer, which says the sweep trains that model")
    if ctx["calc"]["q_rate_images"] != round(q_rate * n_train):
        raise AssertionError("helpers.poisoning.n_poisoned disagrees with round(rate * n)")
    ctx["lesson"] = {f"l{ls.stem[:2]}": ls.title for ls in lessons}
    ctx["durations"] = durations(lessons)
    return ctx


def _requires_python() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        raise ValueError("pyproject.toml states no requires-python")
    return m.group(1)


# --------------------------------------------------------------------------------------------------------------
# durations


def durations(lessons: list[Lesson]) -> dict:
    """Reading time per lesson, run times (measured per lesson when series.json has them), and their provenance."""
    series = read_json(BENCH / "series.json")
    training = read_json(BENCH / "training.json") if (BENCH / "training.json").is_file() else {}
    per = series.get("per_lesson")
    rows = {}
    for ls in lessons:
        reading = ls.words / STATED["words_per_minute"] * 60
        row = {"words": ls.words, "reading_s": reading}
        if isinstance(per, dict):
            for kind in ("cold", "warm"):
                table = per.get(kind) or {}
                v = table.get(ls.stem, table.get(ls.path.name))
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ValueError(f"series.json per_lesson.{kind} has no time for {ls.stem}")
                row[f"{kind}_s"] = float(v)
        row["committed_s"] = ls.run_seconds
        row["committed_date"] = ls.run_date
        rows[ls.stem] = row
    med = series.get("median", {})
    info = {
        "rows": rows,
        "per_lesson": isinstance(per, dict),
        "series_cold_s": med.get("cold", {}).get("seconds"),
        "series_warm_s": med.get("warm", {}).get("seconds"),
        "series_peak_mib": max(med.get(k, {}).get("peak_rss_mib", 0) for k in ("cold", "warm")),
        "series_runs": series.get("runs_done"),
        "series_date": series.get("date"),
        "machine": series.get("machine", {}),
    }
    # the series file does not record the recipe; the training benchmark of the same date and machine does
    rec = (training.get("all_runs", {}).get("recipe") or [{}])[0].get("epochs")
    from helpers.attack import DEFAULT_RECIPE

    same_run = training.get("date") == series.get("date") and training.get("machine") == series.get("machine")
    info["bench_recipe_epochs"] = rec if same_run else None
    info["stale"] = same_run and rec is not None and float(rec) != float(DEFAULT_RECIPE.train.epochs)
    return info


def durations_md(lessons: list[Lesson], ctx: dict) -> str:
    d = ctx["durations"]
    rows = d["rows"]
    out = [render(_template("durations_head.md"), ctx, where="durations_head.md"), ""]
    if d["per_lesson"]:
        out += ["| lesson | words | reading (min) | run, cold cache (min) | run, warm cache (min) | "
                "session, cold (min) | session, warm (min) |", "|---|---|---|---|---|---|---|"]
        for ls in lessons:
            r = rows[ls.stem]
            out.append(f"| {_lesson_ref(ls.number)} · {mark(ls.title)} | {fmt(r['words'], 'int')} | {fmt(r['reading_s'], 'min')} "
                       f"| {fmt(r['cold_s'], 'min')} | {fmt(r['warm_s'], 'min')} "
                       f"| {fmt(r['reading_s'] + r['cold_s'], 'min')} | {fmt(r['reading_s'] + r['warm_s'], 'min')} |")
        out.append("")
        out.append(render(_template("durations_measured.md"), ctx, where="durations_measured.md"))
    else:
        out += ["| lesson | words | reading (min) | run in the committed notebook (min) | executed on | "
                "session: reading + that run (min) |", "|---|---|---|---|---|---|"]
        for ls in lessons:
            r = rows[ls.stem]
            run = r["committed_s"]
            out.append(f"| {_lesson_ref(ls.number)} · {mark(ls.title)} | {fmt(r['words'], 'int')} | {fmt(r['reading_s'], 'min')} "
                       f"| {fmt(run, 'min') if run is not None else 'not recorded'} | {mark(r['committed_date'] or 'not recorded')} "
                       f"| {fmt(r['reading_s'] + (run or 0), 'min')} |")
        out.append("")
        out.append(render(_template("durations_fallback.md"), ctx, where="durations_fallback.md"))
    ctx2 = dict(ctx)
    mach = d["machine"]
    ctx2["bench"] = {
        "date": d["series_date"] or "an unrecorded date",
        "cpu": f"{mach.get('cpu', 'an unrecorded CPU')}",
        "cores": mach.get("cores", 0),
        "tf": mach.get("tensorflow", "?"),
        "cold": d["series_cold_s"] or 0,
        "warm": d["series_warm_s"] or 0,
        "runs": d["series_runs"] or 0,
        "words_total": sum(r["words"] for r in rows.values()),
        "reading_total": sum(r["reading_s"] for r in rows.values()),
    }
    out.append("")
    out.append(render(_template("durations_series.md"), ctx2, where="durations_series.md"))
    if d["stale"]:
        ctx2["bench"]["epochs_then"] = d["bench_recipe_epochs"]
        out.append("")
        out.append(render(_template("durations_stale.md"), ctx2, where="durations_stale.md"))
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------------------
# answers


def _template(name: str) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"instructor template {path} is missing")
    return path.read_text(encoding="utf-8")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


MATCH = re.compile(r"^<!--\s*match:\s*(.+?)\s*-->\s*$", re.M)


def answer_blocks(stem: str) -> list[tuple[str, str]]:
    """The (match fragment, answer) blocks of ``templates/answers/<stem>.md``, in order."""
    text = _template(f"answers/{stem}.md")
    parts = MATCH.split(text)
    if parts[0].strip():
        raise ValueError(f"answers/{stem}.md: text before the first '<!-- match: ... -->' line")
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


def answers_md(lessons: list[Lesson], ctx: dict) -> str:
    out = [render(_template("answers_head.md"), ctx, where="answers_head.md")]
    for ls in lessons:
        blocks = answer_blocks(ls.stem)
        if len(blocks) != len(ls.questions):
            raise ValueError(f"answers/{ls.stem}.md has {len(blocks)} answers for the lesson's {len(ls.questions)} quiz "
                             "questions; the quiz changed, so update the answers")
        out += ["", f"## Lesson {_lesson_ref(ls.number)} · {mark(ls.title)}", ""]
        for i, (q, (frag, ans)) in enumerate(zip(ls.questions, blocks), 1):
            if _norm(frag) not in _norm(q):
                raise ValueError(f"answers/{ls.stem}.md answer {i} was written for a question containing {frag!r}; "
                                 f"the lesson's question {i} is now {q!r}: update the answer")
            if not ans:
                raise ValueError(f"answers/{ls.stem}.md answer {i} is empty")
            out += [f"### Question {mark(str(i))}", "", f"> {mark(q)}", "",
                    render(ans, ctx, where=f"answers/{ls.stem}.md answer {i}"), ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------------------
# objectives


@dataclass(frozen=True)
class Objective:
    id: str
    text: str
    quiz: tuple[int, ...]


OBJECTIVE = re.compile(r"^-\s*\[([\w-]+)\]\s*\(quiz:\s*([\d,\s]*|none)\)\s*(.+)$")


def objectives_for(lesson: Lesson) -> list[Objective]:
    """The objectives of ``templates/objectives/<stem>.md``: lines ``- [id] (quiz: 1, 3) text``."""
    name = f"objectives/{lesson.stem}.md"
    objs = []
    for line in _template(name).splitlines():
        if not line.strip():
            continue
        m = OBJECTIVE.match(line)
        if not m:
            raise ValueError(f"{name}: line {line!r} is not '- [id] (quiz: 1, 3) text'")
        quiz = () if m.group(2).strip() in ("", "none") else tuple(int(x) for x in m.group(2).split(","))
        bad = [q for q in quiz if not 1 <= q <= len(lesson.questions)]
        if bad:
            raise ValueError(f"{name}: objective {m.group(1)!r} names quiz questions {bad}; the quiz has {len(lesson.questions)}")
        objs.append(Objective(m.group(1), m.group(3).strip(), quiz))
    if not objs:
        raise ValueError(f"{name} states no objective")
    return objs


def exercise_objective(ex: Exercise, objs: list[Objective], lesson: Lesson) -> Objective | None:
    """The objective an exercise names, by id (``define`` or ``01.define``) or by its exact text."""
    o = _norm(ex.objective)
    for obj in objs:
        if o in (obj.id.lower(), f"{lesson.stem[:2]}.{obj.id}".lower(), f"{lesson.stem}.{obj.id}".lower(), _norm(obj.text)):
            return obj
    return None


def objectives_md(lessons: list[Lesson], ctx: dict) -> str:
    out = [render(_template("objectives_head.md"), ctx, where="objectives_head.md")]
    for ls in lessons:
        objs = objectives_for(ls)
        out += ["", f"## Lesson {_lesson_ref(ls.number)} · {mark(ls.title)}", "",
                "| objective | checked by quiz | checked by exercise |", "|---|---|---|"]
        matched: dict[str, list[Exercise]] = {o.id: [] for o in objs}
        other = []
        for ex in ls.exercises:
            obj = exercise_objective(ex, objs, ls)
            (matched[obj.id] if obj else other).append(ex)
        for obj in objs:
            quiz = ", ".join(f"Q{mark(str(q))}" for q in obj.quiz) or "none"
            exs = "; ".join(f"`{mark(e.id)}` {mark(e.title)}" for e in matched[obj.id]) or "none"
            out.append(f"| **{obj.id}**: {render(obj.text, ctx, where=ls.stem)} | {quiz} | {exs} |")
        if other:
            out += ["", "Exercises whose stated objective is not one of the above (their objective, as stated):", ""]
            out += [f"* `{mark(e.id)}` {mark(e.title)}: {mark(e.objective)}" for e in other]
        if not ls.exercises:
            out += ["", "No exercise cell in this lesson yet."]
        unchecked = sorted(set(range(1, len(ls.questions) + 1)) - {q for o in objs for q in o.quiz})
        if unchecked:
            raise ValueError(f"objectives/{ls.stem}.md: quiz questions {unchecked} check no objective")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------------------
# the index and the other pages


def readme_md(lessons: list[Lesson], ctx: dict) -> str:
    rows = ctx["durations"]["rows"]
    table = ["| lesson | quiz questions | exercises | reading (min) |", "|---|---|---|---|"]
    for ls in lessons:
        table.append(f"| {_lesson_ref(ls.number)} · {mark(ls.title)} | {fmt(len(ls.questions), 'int')} "
                     f"| {fmt(len(ls.exercises), 'int')} | {fmt(rows[ls.stem]['reading_s'], 'min')} |")
    ctx2 = dict(ctx)
    ctx2["index"] = {"lessons": "\n".join(table),
                     "hidden_tests": ("* [`hidden_tests/`](hidden_tests/): the grader's tests of a hand-in."
                                      if (OUT / "hidden_tests").is_dir() else "")}
    return render(_template("README.md"), ctx2, where="README.md").rstrip() + "\n"


def generate(marked: bool = False) -> dict[str, str]:
    """Every output file's text, by name (``marked``: computed and quoted spans wrapped, for the test)."""
    global MARK_ON
    MARK_ON = marked
    try:
        lessons = read_lessons()
        ctx = build_context(lessons)
        files = {
            "README.md": readme_md(lessons, ctx),
            "answers.md": answers_md(lessons, ctx),
            "objectives.md": objectives_md(lessons, ctx),
            "durations.md": durations_md(lessons, ctx),
            "prerequisites.md": render(_template("prerequisites.md"), ctx, where="prerequisites.md").rstrip() + "\n",
            "glossary.md": render(_template("glossary.md"), ctx, where="glossary.md").rstrip() + "\n",
            "rubric.md": render(_template("rubric.md"), ctx, where="rubric.md").rstrip() + "\n",
        }
    finally:
        MARK_ON = False
    banner = "<!-- generated by scripts/make_instructor.py from instructor/templates/; do not edit, run `make instructor` -->\n"
    return {name: (banner + text if not marked else text) for name, text in files.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is out of date")
    args = p.parse_args(argv)
    from helpers.io import atomic_write_text

    files = generate()
    stale = [n for n, t in files.items() if not (OUT / n).is_file() or (OUT / n).read_text(encoding="utf-8") != t]
    if args.check:
        print("out of date: " + ", ".join(stale) if stale else "instructor/: up to date")
        return 1 if stale else 0
    for name in stale:
        atomic_write_text(OUT / name, files[name])
    print(f"instructor/: {len(stale)} of {len(files)} files rewritten" + (f" ({', '.join(stale)})" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

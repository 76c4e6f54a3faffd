"""Build the student edition, ``student/``: every lesson with its exercise solutions replaced by scaffolds.

An exercise is a code cell of a lesson (``notebooks/0N_*.ipynb``) tagged ``exercise``, with metadata
``exercise: {id, title, objective, lesson}``, that defines one function; the next code cell, tagged
``exercise-check``, compares that function with the course helper on real data. In the student edition:

* each exercise cell keeps everything but its function's body, which becomes the docstring, a ``# TODO:`` line
  and ``raise NotImplementedError("exercise <id>: ...")`` (rewritten with ``ast``, so only the body changes);
* the outputs of exercise and check cells are cleared; every other cell is kept as it is;
* ``helpers/``, ``results/`` (the committed key numbers, which the lessons compare with), ``pyproject.toml`` and
  an empty ``figures/`` are copied, with a student README. ``instructor/`` (the guide and the hidden tests,
  ``instructor/hidden_tests/``) is never copied.

Why not nbgrader: its format (``### BEGIN SOLUTION`` markers, grade cells with hidden tests inside the notebook, a
course directory and a gradebook database) grades by executing the whole notebook, and these lessons train or load
models for minutes before the exercise cells; the course wants each exercise graded alone in seconds against the
helpers, the hidden tests kept out of the notebooks in a pytest file, and the instructor's lessons left as ordinary
notebooks that run top to bottom under nbval. Cell tags, this script and ``instructor/hidden_tests`` do that with no
new dependency.

Usage: ``python scripts/make_student.py [--notebooks notebooks] [--out student]``. The output folder is replaced.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import nbformat  # noqa: E402

from helpers.io import atomic_write_text  # noqa: E402

EXERCISE, CHECK = "exercise", "exercise-check"
META_KEYS = ("id", "title", "objective", "lesson")

README = """# BadNets on MNIST: the student edition

The lessons in `notebooks/` are the course's, with a few **exercises**: code cells where you write one function
from scratch (its docstring says what it must do) in place of the `raise NotImplementedError(...)` line. The cell
right after each exercise is a **check**: it compares your function with the course's helper on real MNIST data and
prints a line starting with `ok` when they agree. The rest of each lesson then uses the helper.

Set up once, from this folder (Python 3.10-3.13):

    python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"
    .venv/bin/jupyter lab notebooks/

The lessons find MNIST in `$MNIST_NPZ`, the Keras cache or download it (see lesson 1). Your instructor grades each
exercise with further tests, on more data and edge cases than the visible checks.

Exercises:

{table}
"""


def is_tagged(cell, tag: str) -> bool:
    return tag in cell.metadata.get("tags", [])


def exercise_meta(cell, where: str) -> dict:
    meta = cell.metadata.get("exercise")
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), str) or not meta.get(k) for k in META_KEYS):
        raise ValueError(f"{where}: an exercise cell needs metadata exercise = {{{', '.join(META_KEYS)}}} (strings), "
                         f"got {meta!r}")
    return meta


def scaffold(source: str, ex_id: str, title: str, where: str = "exercise") -> str:
    """``source`` with its one function's body replaced by its docstring, a TODO line and ``NotImplementedError``."""
    tree = ast.parse(source)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if len(functions) != 1:
        raise ValueError(f"{where}: an exercise cell must define exactly one function, found "
                         f"{[f.name for f in functions]}")
    fn = functions[0]
    if ast.get_docstring(fn) is None:
        raise ValueError(f"{where}: the function {fn.name} needs a docstring (it is all the student sees of it)")
    if len(fn.body) < 2:
        raise ValueError(f"{where}: the function {fn.name} has no body after its docstring")
    lines = source.splitlines()
    doc = fn.body[0]
    indent = " " * doc.col_offset
    stub = [f"{indent}# TODO: {title}; write the body (see the docstring), then run the next cell to check it",
            f'{indent}raise NotImplementedError("exercise {ex_id}: write the body of {fn.name}")']
    out = "\n".join(lines[: doc.end_lineno] + stub + lines[fn.end_lineno:])
    ast.parse(out)  # the scaffold must still be valid Python
    return out


def student_notebook(path: Path):
    """The student version of one lesson, and the metadata of its exercises."""
    nb = nbformat.read(path, as_version=4)
    exercises = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{path.name}, cell {i}"
        if is_tagged(cell, EXERCISE):
            meta = exercise_meta(cell, where)
            nxt = next((c for c in nb.cells[i + 1:] if c.cell_type == "code"), None)
            if nxt is None or not is_tagged(nxt, CHECK):
                raise ValueError(f"{where}: exercise {meta['id']!r} must be followed by a code cell tagged {CHECK!r}")
            cell.source = scaffold(cell.source, meta["id"], meta["title"], where)
            exercises.append(dict(meta))
        if is_tagged(cell, EXERCISE) or is_tagged(cell, CHECK):
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    nbformat.validate(nb)
    return nb, exercises


def build(notebooks: Path, out: Path) -> list[dict]:
    """Write the student edition of the lessons in ``notebooks`` to ``out`` (replaced); return the exercises."""
    notebooks, out = Path(notebooks).resolve(), Path(out).resolve()
    lessons = sorted(notebooks.glob("0*.ipynb"))
    if not lessons:
        raise FileNotFoundError(f"no lesson notebooks (0N_*.ipynb) in {notebooks}")
    if out == PROJECT or out in PROJECT.parents or out == notebooks:
        raise ValueError(f"out must be a folder of its own, got {out}")
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    (out / "figures").mkdir()
    exercises = []
    for path in lessons:
        nb, found = student_notebook(path)
        atomic_write_text(out / "notebooks" / path.name, nbformat.writes(nb))
        exercises += [dict(ex, notebook=path.name) for ex in found]
    for name in ("conftest.py", "nbval_sanitize.cfg"):
        if (notebooks / name).is_file():
            shutil.copy2(notebooks / name, out / "notebooks" / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PROJECT / "helpers", out / "helpers", ignore=ignore)
    shutil.copytree(PROJECT / "results", out / "results", ignore=ignore)
    shutil.copy2(PROJECT / "pyproject.toml", out / "pyproject.toml")
    table = "\n".join(f"* lesson {ex['lesson']}, `{ex['id']}` ({ex['notebook']}): {ex['title']}" for ex in exercises)
    atomic_write_text(out / "README.md", README.format(table=table))
    return exercises


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebooks", type=Path, default=PROJECT / "notebooks", help="the instructor's lessons")
    parser.add_argument("--out", type=Path, default=PROJECT / "student", help="where to write the student edition")
    args = parser.parse_args(argv)
    exercises = build(args.notebooks, args.out)
    print(f"student edition in {args.out}: {len(exercises)} exercises")
    for ex in exercises:
        print(f"  lesson {ex['lesson']}  {ex['id']:22s} {ex['title']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The student edition (``scripts/make_student.py``) and the hidden tests that grade its exercises.

Builds the edition into a temporary folder; checks that every exercise cell was scaffolded and nothing else changed,
that no solution line reaches ``student/``, that ``instructor/`` stays out of it; then runs the hidden tests
(``instructor/hidden_tests``, as a pytest subprocess) on the untouched student notebooks, where every exercise must
fail, and on the instructor's lessons, where every one must pass. No model is trained.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "scripts"))

import make_student  # noqa: E402

HIDDEN = PROJECT / "instructor" / "hidden_tests"


def lessons(folder: Path) -> dict[str, nbformat.NotebookNode]:
    return {p.name: nbformat.read(p, as_version=4) for p in sorted(folder.glob("0*.ipynb"))}


def exercise_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "exercise" in c.metadata.get("tags", [])]


def solution_lines(source: str) -> list[str]:
    """The statements of an exercise function's body after its docstring, one stripped line each."""
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
    body_lines = source.splitlines()[fn.body[1].lineno - 1 : fn.end_lineno]
    return [line.strip() for line in body_lines if line.strip()]


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edition") / "student"
    make_student.build(PROJECT / "notebooks", out)
    return out


def test_every_exercise_is_scaffolded_and_nothing_else_changes(student):
    instructor, students = lessons(PROJECT / "notebooks"), lessons(student / "notebooks")
    assert set(students) == set(instructor)
    n_exercises = 0
    for name, nb in instructor.items():
        snb = students[name]
        assert [c.get("id") for c in snb.cells] == [c.get("id") for c in nb.cells]
        for cell, scell in zip(nb.cells, snb.cells):
            tags = cell.metadata.get("tags", [])
            if "exercise" in tags:
                n_exercises += 1
                meta = cell.metadata["exercise"]
                assert set(meta) >= {"id", "title", "objective", "lesson"} and name.startswith(meta["lesson"] + "_")
                fn = next(n for n in ast.parse(scell.source).body if isinstance(n, ast.FunctionDef))
                assert ast.get_docstring(fn) == ast.get_docstring(
                    next(n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)))
                assert [type(s).__name__ for s in fn.body] == ["Expr", "Raise"]
                assert "# TODO:" in scell.source and f'NotImplementedError("exercise {meta["id"]}:' in scell.source
                assert scell.outputs == [] and scell.execution_count is None
            elif "exercise-check" in tags:
                assert scell.source == cell.source and scell.outputs == []
            else:
                assert scell == cell
    assert n_exercises >= 6


def test_each_exercise_is_introduced_and_checked(student):
    for name, nb in lessons(PROJECT / "notebooks").items():
        for i, cell in enumerate(nb.cells):
            if "exercise" in cell.metadata.get("tags", []):
                assert nb.cells[i - 1].cell_type == "markdown" and nb.cells[i - 1].source.startswith("Exercise:"), name
                check = nb.cells[i + 1]
                assert check.cell_type == "code" and "exercise-check" in check.metadata.get("tags", []), name
                fn = next(n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef))
                assert fn.name in check.source, f"{name}: the check after {fn.name} must call it"


def test_no_solution_reaches_the_student_edition(student):
    leaks = [line for nb in lessons(PROJECT / "notebooks").values() for cell in exercise_cells(nb)
             for line in solution_lines(cell.source) if len(line) >= 20]
    assert leaks, "the solutions must have lines to look for"
    # the lessons and the README; helpers/ holds the course's concise versions, which the checks compare with
    for path in [student / "README.md", *(student / "notebooks").rglob("*")]:
        if path.is_file() and path.suffix in (".ipynb", ".py", ".md", ".txt", ".json", ".cfg"):
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".ipynb":  # compare the sources, not their JSON escaping
                text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
            found = [line for line in leaks if line in text]
            assert not found, f"{path.relative_to(student)} holds solution lines {found}"


def test_instructor_material_is_left_out(student):
    assert not (student / "instructor").exists()
    assert not list(student.rglob("hidden_tests")) and not list(student.rglob("test_exercises.py"))
    readme = (student / "README.md").read_text()
    for nb in lessons(PROJECT / "notebooks").values():
        for cell in exercise_cells(nb):
            assert f"`{cell.metadata['exercise']['id']}`" in readme


def test_a_lesson_without_a_check_is_refused(tmp_path):
    nb = nbformat.read(PROJECT / "notebooks" / "02_stamping_triggers.ipynb", as_version=4)
    i = next(k for k, c in enumerate(nb.cells) if "exercise-check" in c.metadata.get("tags", []))
    del nb.cells[i]
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "02_stamping_triggers.ipynb")
    with pytest.raises(ValueError, match="exercise-check"):
        make_student.build(tmp_path / "nb", tmp_path / "out")


def test_scaffold_refuses_a_cell_without_one_documented_function():
    with pytest.raises(ValueError, match="exactly one function"):
        make_student.scaffold("x = 1\n", "e", "t")
    with pytest.raises(ValueError, match="docstring"):
        make_student.scaffold("def f(x):\n    return x\n", "e", "t")


def run_hidden(notebooks: Path, junit: Path) -> subprocess.Popen:
    env = dict(os.environ, BADNETS_EXERCISE_NOTEBOOKS=str(notebooks))
    cmd = [sys.executable, "-m", "pytest", str(HIDDEN), "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    return subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def outcomes(junit: Path) -> dict[str, dict[str, bool]]:
    """``{exercise id: {test name: passed}}`` from a JUnit report of the hidden tests (``test_<id>__...``)."""
    out: dict[str, dict[str, bool]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name")
        if "__" not in name:
            continue
        ex_id = name.split("__")[0].removeprefix("test_")
        passed = not any(child.tag in ("failure", "error", "skipped") for child in case)
        out.setdefault(ex_id, {})[name] = passed
    return out


def test_hidden_tests_fail_the_student_edition_and_pass_the_instructors(student, tmp_path):
    ids = sorted(c.metadata["exercise"]["id"] for nb in lessons(PROJECT / "notebooks").values() for c in exercise_cells(nb))
    runs = {"student": run_hidden(student / "notebooks", tmp_path / "student.xml"),
            "instructor": run_hidden(PROJECT / "notebooks", tmp_path / "instructor.xml")}
    logs = {who: p.communicate(timeout=300)[0] for who, p in runs.items()}
    assert runs["instructor"].returncode == 0, logs["instructor"][-3000:]
    assert runs["student"].returncode == 1, logs["student"][-3000:]
    student_results, instructor_results = outcomes(tmp_path / "student.xml"), outcomes(tmp_path / "instructor.xml")
    assert sorted(instructor_results) == ids and sorted(student_results) == ids
    for ex_id in ids:
        assert all(instructor_results[ex_id].values()), (ex_id, instructor_results[ex_id])
        assert not any(student_results[ex_id].values()), f"exercise {ex_id}: the scaffold passes {student_results[ex_id]}"
    assert "NotImplementedError" in logs["student"]

"""The instructor guide: generated from computed files only, never stale, every quiz question answered.

Fast: reads the committed lessons, results and benchmarks; trains and loads no model.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("make_instructor", ROOT / "scripts" / "make_instructor.py")
mi = importlib.util.module_from_spec(spec)
sys.modules["make_instructor"] = mi
spec.loader.exec_module(mi)


@pytest.fixture(scope="module")
def generated():
    return mi.generate()


@pytest.fixture(scope="module")
def marked():
    return mi.generate(marked=True)


@pytest.fixture(scope="module")
def lessons():
    return mi.read_lessons()


def test_committed_guide_is_what_the_generator_writes(generated):
    for name in mi.OUTPUTS:
        path = mi.OUT / name
        assert path.is_file(), f"instructor/{name} is missing: run `make instructor`"
        assert path.read_text(encoding="utf-8") == generated[name], f"instructor/{name} is stale: run `make instructor`"
    assert set(generated) == set(mi.OUTPUTS)


def test_marking_changes_nothing_but_the_markers(generated, marked):
    banner = generated["README.md"].splitlines(keepends=True)[0]
    for name in mi.OUTPUTS:
        assert banner + mi.unmark(marked[name]) == generated[name]


def test_every_quiz_question_of_every_lesson_is_quoted_and_answered(generated, lessons):
    text = generated["answers.md"]
    sections = re.split(r"^## Lesson ", text, flags=re.M)[1:]
    assert len(sections) == len(lessons) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    for lesson, section in zip(lessons, sections):
        assert section.startswith(f"{lesson.number} · {lesson.title}")
        answers = re.split(r"^### Question (\d+)\n", section, flags=re.M)[1:]
        numbers, bodies = answers[0::2], answers[1::2]
        assert numbers == [str(i) for i in range(1, len(lesson.questions) + 1)], lesson.stem
        for q, body in zip(lesson.questions, bodies):
            quote, _, answer = body.strip().partition("\n\n")
            assert quote == f"> {q}", f"{lesson.stem}: the quoted question differs from the lesson's"
            assert len(answer.split()) >= 20, f"{lesson.stem}: the answer to {q!r} is missing or too short"
            assert "{{" not in answer and "}}" not in answer.replace("}}$", "")


def test_quiz_questions_are_read_from_the_notebooks(lessons):
    for lesson in lessons:
        nb = json.loads(lesson.path.read_text(encoding="utf-8"))
        quiz = next("".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("## Quiz"))
        assert len(lesson.questions) == len(re.findall(r"^\d+\. ", quiz, flags=re.M)) >= 1
        for q in lesson.questions:
            assert q.split()[0] in quiz


def test_templates_state_no_number_of_their_own():
    bad = {}
    for path in sorted(mi.TEMPLATES.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        text = mi.MATCH.sub("", text)  # the match lines are compared with the notebooks, never printed
        text = mi.PLACEHOLDER.sub(" ", text)
        text = re.sub(r"\(quiz:[\d,\s]*\)", " ", text)  # objective -> quiz question numbers
        stray = mi.stray_numbers(text)
        if stray:
            bad[str(path.relative_to(ROOT))] = stray
    assert not bad, f"templates state numbers no code computed (use a placeholder or STATED): {bad}"


def test_generated_prose_states_only_computed_or_quoted_numbers(marked, lessons):
    for name, text in marked.items():
        prose = mi.strip_marked(text)
        assert mi.OPEN not in prose and mi.CLOSE not in prose
        assert mi.stray_numbers(prose) == [], f"instructor/{name} states numbers without a source"
        known = {lesson.number for lesson in lessons}
        assert set(mi.lesson_refs(prose)) <= known, f"instructor/{name} refers to a lesson that does not exist"


def test_inserted_numbers_come_from_the_sources(marked):
    """Spot checks: the key numbers appear in the guide exactly as the results files hold them."""
    results = {p.stem: json.loads(p.read_text()) for p in (ROOT / "results").glob("*.json")}
    answers = mi.unmark(marked["answers.md"])
    r4 = results["04_evaluation"]
    assert f"{r4['trojaned_test_clean_accuracy'] * 100:.2f}\u00a0%" in answers
    r7 = results["07_defences"]
    assert f"{r7['nc_unlearning_asr'] * 100:.2f}\u00a0%" in answers
    rubric = mi.unmark(marked["rubric.md"])
    assert f"{mi.STATED['accuracy_goal'] * 100:g}\u00a0%" in rubric and f"{mi.STATED['asr_goal'] * 100:g}\u00a0%" in rubric
    total = sum(v for k, v in mi.STATED.items() if k.startswith("points_"))
    assert f"({total} points)" in rubric


def test_stated_goals_are_the_courses():
    from helpers import attack

    assert (mi.STATED["accuracy_goal"], mi.STATED["asr_goal"]) == (attack.ACCURACY_GOAL, attack.ASR_GOAL)
    assert mi.STATED["target"] == attack.DEFAULT_RECIPE.target


def test_stray_numbers_catches_a_typed_number():
    assert mi.stray_numbers("ASR reaches 99.4 % at 1 100 images") == ["99.4", "1", "100"]
    assert mi.stray_numbers("lesson 3 and lessons 2 to 4; Gu et al. 2017; Table 2; `x[:1000]`; SHA-256; conv1") == []
    assert mi.stray_numbers("1. first item\n2. second") == []


def test_render_refuses_unknown_and_unformatted_placeholders():
    ctx = {"r03": {"test_asr": 0.99}, "calc": {"name": "x"}}
    assert mi.render("ASR {{r03.test_asr|pct}}", ctx, where="t") == "ASR 99.00\u00a0%"
    with pytest.raises(KeyError, match="no 'missing'"):
        mi.render("{{r03.missing|pct}}", ctx, where="t")
    with pytest.raises(TypeError, match="give it a format"):
        mi.render("{{r03.test_asr}}", ctx, where="t")
    with pytest.raises(ValueError, match="format must be one of"):
        mi.render("{{r03.test_asr|percent}}", ctx, where="t")
    with pytest.raises(ValueError, match="whole number"):
        mi.fmt(2.5, "int")
    with pytest.raises(TypeError):
        mi.fmt(True, "int")


def _notebook(tmp_path: Path, quiz: str, extra_cells=()) -> Path:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Lesson 1 · Test lesson\n\nSome words to read here."},
        {"cell_type": "markdown", "metadata": {"slideshow": {"slide_type": "notes"}}, "source": "notes not counted"},
        *extra_cells,
        {"cell_type": "markdown", "metadata": {}, "source": quiz},
    ]
    path = tmp_path / "01_test.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_exercise_cells_are_read_and_listed_under_their_objective(tmp_path):
    ex = {"cell_type": "code", "execution_count": None, "outputs": [], "source": "# your code",
          "metadata": {"tags": ["exercise"], "exercise": {"id": "ex1", "title": "Compute ASR by hand",
                                                          "objective": "metrics", "lesson": "01"}}}
    other = copy.deepcopy(ex)
    other["metadata"]["exercise"].update(id="ex2", objective="something else entirely")
    lesson = mi.read_lesson(_notebook(tmp_path, "## Quiz\n1. First question?\n2. Second\n   continued?", [ex, other]))
    assert lesson.questions == ["First question?", "Second continued?"]
    assert [e.id for e in lesson.exercises] == ["ex1", "ex2"]
    read = "# Lesson 1 · Test lesson\n\nSome words to read here.\n" + "## Quiz\n1. First question?\n2. Second\n   continued?"
    assert lesson.words == len(read.split())  # the speaker notes are not counted
    objs = [mi.Objective("metrics", "Compute ASR.", (1,)), mi.Objective("other", "Something.", (2,))]
    assert mi.exercise_objective(lesson.exercises[0], objs, lesson).id == "metrics"
    assert mi.exercise_objective(lesson.exercises[1], objs, lesson) is None


def test_malformed_exercise_and_quiz_cells_are_refused(tmp_path):
    bad = {"cell_type": "code", "execution_count": None, "outputs": [], "source": "",
           "metadata": {"tags": ["exercise"], "exercise": {"id": "ex1"}}}
    with pytest.raises(ValueError, match="lacks"):
        mi.read_lesson(_notebook(tmp_path, "## Quiz\n1. Q?", [bad]))
    with pytest.raises(ValueError, match="out of order"):
        mi.read_lesson(_notebook(tmp_path, "## Quiz\n1. Q?\n3. R?"))
    with pytest.raises(ValueError, match="no numbered question"):
        mi.read_lesson(_notebook(tmp_path, "## Quiz\n"))


def test_a_changed_question_stops_the_generator(lessons):
    changed = [copy.copy(ls) for ls in lessons]
    first = changed[0]
    object.__setattr__(first, "questions", ["A question nobody has answered yet?", *first.questions[1:]])
    ctx = mi.build_context(lessons)
    with pytest.raises(ValueError, match="update the answer"):
        mi.answers_md(changed, ctx)
    object.__setattr__(first, "questions", [*lessons[0].questions, "An extra question?"])
    with pytest.raises(ValueError, match="quiz changed"):
        mi.answers_md(changed, ctx)


def test_every_quiz_question_checks_an_objective(lessons):
    for lesson in lessons:
        covered = {q for o in mi.objectives_for(lesson) for q in o.quiz}
        assert covered == set(range(1, len(lesson.questions) + 1)), lesson.stem


def test_per_lesson_cold_and_warm_times_are_used_when_the_benchmark_has_them(lessons, tmp_path, monkeypatch):
    series = json.loads((mi.BENCH / "series.json").read_text())
    series["per_lesson"] = {"cold": {ls.stem: 600.0 + ls.number for ls in lessons},
                            "warm": {ls.stem: 60.0 * ls.number for ls in lessons}}
    (tmp_path / "series.json").write_text(json.dumps(series))
    (tmp_path / "training.json").write_text((mi.BENCH / "training.json").read_text())
    monkeypatch.setattr(mi, "BENCH", tmp_path)
    ctx = mi.build_context(lessons)
    text = mi.durations_md(lessons, ctx)
    assert "run, cold cache (min)" in text and "have not been measured yet" not in text
    row = next(line for line in text.splitlines() if line.startswith("| 3 · "))
    reading = ctx["durations"]["rows"][lessons[2].stem]["reading_s"]
    assert row.rstrip(" |").split(" | ")[3:7] == [str(11), str(3), mi.fmt(reading + 603, "min"), mi.fmt(reading + 180, "min")]
    del series["per_lesson"]["warm"][lessons[0].stem]
    (tmp_path / "series.json").write_text(json.dumps(series))
    with pytest.raises(ValueError, match="no time for"):
        mi.build_context(lessons)

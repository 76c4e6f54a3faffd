"""A healthy run shows a student no C++ log line and no error line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPP_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ )", re.M)


def output_texts(cell):
    for out in cell.get("outputs", []):
        text = out.get("text") or out.get("data", {}).get("text/plain", "")
        yield out.get("output_type"), "".join(text) if isinstance(text, list) else str(text)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_committed_lessons_show_no_log_or_error_lines(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        for kind, text in output_texts(cell):
            assert kind != "error", f"{path.name} cell {i} stores an error"
            assert not CPP_LOG.search(text), f"{path.name} cell {i} shows a TensorFlow C++ log line: {text[:200]!r}"
            assert "cuInit" not in text and "ERROR" not in text, f"{path.name} cell {i}: {text[:200]!r}"
            assert kind != "stream" or '"name": "stderr"' not in json.dumps(cell["outputs"]), f"{path.name} cell {i} writes to stderr"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_every_figure_a_lesson_saves_is_shown(path):
    """A cell that saves a figure for the student also shows it, so the committed lesson and the slides carry it."""
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and "save_fig(" in "".join(cell["source"]):
            shown = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            assert shown, f"{path.name} cell {i} ({cell.get('id')}) saves a figure but its output shows none"


def test_starting_tensorflow_prints_nothing_and_keeps_the_log(tmp_path):
    code = "from helpers import training; training.make_deterministic(0); print('ready')"
    env = dict(os.environ, BADNETS_LOG_DIR=str(tmp_path))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "ready"
    assert not CPP_LOG.search(run.stderr) and "cuInit" not in run.stderr, run.stderr
    assert (tmp_path / "tensorflow.log").is_file()  # the lines went to the log, to be read when needed


def test_a_later_error_still_reaches_the_user(tmp_path):
    code = ("import os, sys\nfrom helpers import training\ntraining.make_deterministic(0)\n"
            "os.write(2, b'real problem\\n')\n")
    env = dict(os.environ, BADNETS_LOG_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "real problem" in run.stderr

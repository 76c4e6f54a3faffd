"""scripts/run_series.py's overlapped execution: real kernels, real notebooks (tiny ones)."""

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import run_series  # noqa: E402


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_overlapped_lessons_run_in_order_with_clean_histories(tmp_path):
    """Each lesson runs once, in order, after the one before it ended; the silent TensorFlow import leaves no output,
    no execution count and no history behind."""
    stamp = tmp_path / "order.txt"
    lessons = [_notebook(tmp_path / f"{i}.ipynb", f"_ = open({str(stamp)!r}, 'a').write('{i}')", "print(len(In) - 1)")
               for i in (1, 2, 3)]
    outs = [tmp_path / "out" / p.name for p in lessons]
    outs[0].parent.mkdir()
    done = []
    times = run_series.execute_overlapped(lessons, outs, lambda name, s: done.append(name))
    assert done == ["1.ipynb", "2.ipynb", "3.ipynb"] and set(times) == set(done)
    assert stamp.read_text() == "123"
    for out in outs:
        cells = nbformat.read(out, as_version=4).cells
        assert [c.execution_count for c in cells] == [1, 2]
        assert cells[0].outputs == []
        assert cells[1].outputs[0]["text"] == "2\n"  # In[1], In[2]: the prewarm is not in the history


def test_a_failing_lesson_stops_the_series(tmp_path):
    """The first error is raised with the lesson's name, and the next lesson's waiting kernel runs nothing."""
    stamp = tmp_path / "ran.txt"
    lessons = [_notebook(tmp_path / "1.ipynb", "raise ValueError('broken lesson')"),
               _notebook(tmp_path / "2.ipynb", f"open({str(stamp)!r}, 'w').write('ran')")]
    outs = [tmp_path / "out1.ipynb", tmp_path / "out2.ipynb"]
    with pytest.raises(RuntimeError, match=r"1\.ipynb failed:(.|\n)*broken lesson"):
        run_series.execute_overlapped(lessons, outs, lambda name, s: None)
    assert not stamp.exists() and not outs[1].exists()

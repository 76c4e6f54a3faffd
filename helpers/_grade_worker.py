"""The grader's sandboxed worker: load ONE submitted model and measure it.

Run only by :mod:`helpers.grade`, as a separate process (which puts the project
on ``sys.path`` itself, see ``helpers.grade.WORKER_BOOTSTRAP``; by hand)::

    python -I -m helpers._grade_worker MODEL.keras EVAL.npz RESULT.json MEMORY_MB

The parent has already inspected ``MODEL.keras`` with :mod:`zipfile` alone
(see :func:`helpers.grade.inspect_keras_archive`), and kills this process when
its wall-clock limit runs out. The first thing this process does, before it
imports NumPy or TensorFlow and before it opens the model, is to limit itself
with :func:`resource.setrlimit`: ``RLIMIT_DATA`` to ``MEMORY_MB`` (see
:mod:`helpers.grade` for why not ``RLIMIT_AS``), no core dumps, files of at most
64 MiB. (Doing it here rather than in a ``preexec_fn`` means the parent, which
may be running TensorFlow's threads, runs no Python code between ``fork`` and
``exec``, which Python's documentation calls unsafe with threads.) Here the
model is loaded with ``keras.saving.load_model(..., safe_mode=True,
compile=False)``, which refuses to deserialise Python code (a ``Lambda``
layer's bytecode), its input and output shapes are checked, and it is
evaluated on the arrays of ``EVAL.npz`` (written by the parent, read without
pickle): ``x_clean``/``y_clean`` (the MNIST test set) and ``x_trojan``/``y_target``
(the trojaned test images whose true label is not the target).

The answer is one JSON object written to ``RESULT.json``: either
``{"ok": true, "clean_accuracy": ..., "attack_success_rate": ..., "input_shape": ..., "output_shape": ...}``
or ``{"ok": false, "reason": "..."}``. A crash (the memory limit, a signal)
writes nothing; the parent turns the exit status into the reason.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

EVAL_KEYS = ("x_clean", "y_clean", "x_trojan", "y_target")
EXPECTED_INPUT = [None, 28, 28, 1]
EXPECTED_OUTPUT = [None, 10]
MAX_EVAL_MEMBER_BYTES = 64 << 20


class _Refused(Exception):
    """The model loaded badly or has the wrong shape: a reason for the grade, not a crash."""


def _shapes(model):
    try:
        inp, out = model.input_shape, model.output_shape
    except Exception as exc:  # several inputs or outputs, or a model that was never built
        raise _Refused(f"the model has no single input and output shape ({type(exc).__name__}: {exc})") from None
    if not (isinstance(inp, tuple) and isinstance(out, tuple)):
        raise _Refused(f"the model must have one input and one output, got input shape {inp!r}, output shape {out!r}")
    return [None if d is None else int(d) for d in inp], [None if d is None else int(d) for d in out]


def evaluate_file(model_path: Path, eval_path: Path) -> dict:
    """Load ``model_path`` in safe mode, check its shapes, measure it on ``eval_path``'s arrays."""
    from helpers._tf import import_tensorflow
    from helpers.io import read_npz
    from helpers.metrics import accuracy, predict

    arrays = read_npz(eval_path, EVAL_KEYS, error=ValueError, what="the grader's evaluation arrays",
                      fix="This is a bug in helpers.grade.", max_member_bytes=MAX_EVAL_MEMBER_BYTES)
    _, keras = import_tensorflow()
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())[:300]  # without Keras's terminal colours
        raise _Refused(f"Keras refused to load the model in safe mode ({type(exc).__name__}: {text})") from None
    inp, out = _shapes(model)
    if inp != EXPECTED_INPUT or out != EXPECTED_OUTPUT:
        raise _Refused(f"the model must map (None, 28, 28, 1) images to (None, 10) scores, got input shape "
                       f"{tuple(inp)} and output shape {tuple(out)}")
    try:
        clean = accuracy(arrays["y_clean"], predict(model, arrays["x_clean"]))
        asr = accuracy(arrays["y_target"], predict(model, arrays["x_trojan"]))
    except Exception as exc:
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())[:300]  # without Keras's terminal colours
        raise _Refused(f"the model failed on the test images ({type(exc).__name__}: {text})") from None
    return {"ok": True, "clean_accuracy": clean, "attack_success_rate": asr, "input_shape": inp, "output_shape": out}


MAX_FILE_BYTES = 64 << 20


def limit_resources(memory_mb: int) -> None:
    """Limit this process: ``RLIMIT_DATA`` to ``memory_mb`` MiB, no core dumps, files of at most 64 MiB."""
    import resource

    data = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or not argv[3].isdigit():
        print("usage: python -I -m helpers._grade_worker MODEL.keras EVAL.npz RESULT.json MEMORY_MB", file=sys.stderr)
        return 2
    limit_resources(int(argv[3]))
    model_path, eval_path, result_path = (Path(a) for a in argv[:3])
    try:
        answer = evaluate_file(model_path, eval_path)
    except _Refused as exc:
        answer = {"ok": False, "reason": str(exc)}
    from helpers.io import atomic_write_text  # written whole and fsync-ed, or not at all

    atomic_write_text(result_path, json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())

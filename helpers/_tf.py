"""Import TensorFlow once, with its C++ start-up log sent to a file instead of the lesson.

When TensorFlow loads, its C++ core writes a dozen lines straight to the
process's standard error (file descriptor 2): the oneDNN notice, the CPU
features it was built for, and on a machine without a GPU an
``E0000 ... failed call to cuInit`` line that looks like a failure but is not
one. They are written before TensorFlow's logging is initialised, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hide them, and a notebook shows them under
the cell that imported TensorFlow. :func:`import_tensorflow` points file
descriptor 2 at ``<cache>/logs/tensorflow.log`` while TensorFlow loads and
finds its devices, then puts it back: the log is kept for whoever needs it,
and anything written later (a real error, a Python warning) reaches the
student as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def log_path() -> Path:
    """``$BADNETS_LOG_DIR/tensorflow.log``, by default ``.cache/logs/`` in the project (or ``~/.cache/badnets-course/logs``)."""
    env = os.environ.get("BADNETS_LOG_DIR")
    if env:
        return Path(env) / "tensorflow.log"
    project = Path(__file__).resolve().parent.parent
    base = project / ".cache" if (project / "pyproject.toml").is_file() else Path.home() / ".cache" / "badnets-course"
    return base / "logs" / "tensorflow.log"


@contextlib.contextmanager
def stderr_to(path: Path):
    """Send file descriptor 2 (C and C++ writes) to ``path``, appending; restore it afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = os.dup(2)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.dup2(fd, 2)
        finally:
            os.close(fd)
        yield path
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_loaded = False


def import_tensorflow():
    """Import TensorFlow and Keras (quietly, the first time) and return ``(tf, keras)``."""
    global _loaded
    if not _loaded:
        try:
            with stderr_to(log_path()):
                import keras  # noqa: F401
                import tensorflow as tf

                tf.config.list_logical_devices()  # the CUDA probe happens here
        except OSError:  # no writable log folder: import as usual
            import tensorflow as tf

            tf.config.list_logical_devices()
        _loaded = True
    import keras
    import tensorflow as tf

    return tf, keras

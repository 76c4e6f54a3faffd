"""Options of the hidden tests: which lesson notebooks to grade (``--notebooks DIR`` or ``$BADNETS_EXERCISE_NOTEBOOKS``;
default: the instructor's lessons in ``notebooks/``). TensorFlow is imported here, quietly (:mod:`helpers._tf`), so
that its C++ start-up lines stay out of the graders' report."""

from __future__ import annotations

from helpers._tf import import_tensorflow

import_tensorflow()


def pytest_addoption(parser):
    parser.addoption("--notebooks", action="store", default=None,
                     help="folder of the lesson notebooks to grade (default: $BADNETS_EXERCISE_NOTEBOOKS, else notebooks/)")

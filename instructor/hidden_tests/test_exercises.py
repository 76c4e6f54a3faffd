"""Hidden tests: grade each exercise of the lessons against the course helpers, on MNIST and on edge cases.

An exercise is a code cell tagged ``exercise`` whose metadata ``exercise.id`` names it; it defines one function.
The grader does not run the notebook: it executes, in a fresh namespace, the top-level imports of the lesson's
code cells up to the exercise, then the exercise cell's own source, and takes the function it defines. So grading
is fast and does not depend on the rest of the lesson (trained models, widgets).

Which notebooks: ``pytest instructor/hidden_tests --notebooks DIR`` or ``$BADNETS_EXERCISE_NOTEBOOKS=DIR``;
default, the instructor's lessons in ``notebooks/`` (which must pass). Every test's name starts with
``test_<exercise id>__`` so that a report can be read per exercise.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import data, defences, metrics, model, poisoning, sweep, triggers
from helpers.attack import ACCURACY_GOAL, ASR_GOAL

PROJECT = Path(__file__).resolve().parents[2]

#: the exercises these tests grade; every exercise cell of the lessons must be one of them
GRADED = ("stamp_batch", "poison_training_set", "choose_rate", "attack_success_rate", "strip_entropy", "anomaly_index")


@pytest.fixture(scope="session")
def notebooks_dir(request) -> Path:
    folder = request.config.getoption("--notebooks") or os.environ.get("BADNETS_EXERCISE_NOTEBOOKS") or PROJECT / "notebooks"
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks folder {folder} does not exist")
    return folder


def _code_without_magics(source: str) -> str:
    """A cell's source with IPython magics and shell lines (``%...``, ``!...``) blanked, so that ``ast`` can read it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def exercise_cells(folder: Path) -> dict[str, tuple[Path, int]]:
    """``{exercise id: (notebook, cell index)}`` over the lesson notebooks of ``folder``."""
    import nbformat

    found = {}
    for path in sorted(folder.glob("0*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and "exercise" in cell.metadata.get("tags", []):
                ex_id = cell.metadata["exercise"]["id"]
                if ex_id in found:
                    raise ValueError(f"exercise id {ex_id!r} appears twice ({found[ex_id][0].name}, {path.name})")
                found[ex_id] = (path, i)
    return found


@functools.lru_cache(maxsize=None)
def _load(folder: str, ex_id: str):
    import nbformat

    cells = exercise_cells(Path(folder))
    if ex_id not in cells:
        raise LookupError(f"no exercise cell with id {ex_id!r} in {folder}")
    path, index = cells[ex_id]
    nb = nbformat.read(path, as_version=4)
    imports = []
    for cell in nb.cells[:index]:
        if cell.cell_type == "code":
            tree = ast.parse(_code_without_magics(cell.source))
            imports += [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    namespace: dict = {"__name__": f"exercise_{ex_id}"}
    exec(compile(ast.Module(body=imports, type_ignores=[]), f"<imports of {path.name}>", "exec"), namespace)
    source = nb.cells[index].source
    functions = [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    if len(functions) != 1:
        raise ValueError(f"exercise {ex_id!r} must define exactly one function, found {functions}")
    exec(compile(source, f"<exercise {ex_id} in {path.name}>", "exec"), namespace)
    fn = namespace[functions[0]]
    fn.exercise_source = source
    return fn


def loops_in(source: str) -> list[str]:
    """The Python loops (``for``, ``while``, comprehensions) of a cell's source."""
    kinds = (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)
    return [type(node).__name__ for node in ast.walk(ast.parse(source)) if isinstance(node, kinds)]


@pytest.fixture
def exercise(notebooks_dir):
    """``exercise(id)`` -> the function the student wrote for that exercise."""
    return lambda ex_id: _load(str(notebooks_dir), ex_id)


@pytest.fixture(scope="session")
def mnist():
    return data.load_mnist()


def test_every_exercise_is_graded(notebooks_dir):
    assert sorted(exercise_cells(notebooks_dir)) == sorted(GRADED)


# ------------------------------------------------------------------ lesson 2: stamp_batch


@pytest.mark.parametrize("name", ["L", "pixel", "pattern"])
def test_stamp_batch__matches_helper_on_mnist(exercise, mnist, name):
    stamp_batch = exercise("stamp_batch")
    (_, _), (x_test, _) = mnist
    trigger = triggers.get_trigger(name)
    before = x_test.copy()
    out = stamp_batch(x_test, trigger)
    assert np.array_equal(x_test, before), "stamp_batch must not modify its input"
    assert out.dtype == np.uint8 and out.shape == x_test.shape
    assert np.array_equal(out, triggers.stamp(x_test, trigger))


def test_stamp_batch__every_corner_position(exercise, mnist):
    stamp_batch = exercise("stamp_batch")
    (x_train, _), _ = mnist
    trigger = triggers.l_trigger()
    last_row, last_col = trigger.max_position()
    for position in [(0, 0), (0, last_col), (last_row, 0), (last_row, last_col), (13, 7)]:
        assert np.array_equal(stamp_batch(x_train[:200], trigger, position), triggers.stamp(x_train[:200], trigger, position)), position
    assert not loops_in(stamp_batch.exercise_source), "stamp_batch must be vectorised: no Python loop over the images"


def test_stamp_batch__single_image_batch_and_white_images(exercise):
    stamp_batch = exercise("stamp_batch")
    trigger = triggers.pattern_trigger()
    for x in (np.zeros((1, 28, 28), np.uint8), np.full((3, 28, 28), 255, np.uint8)):
        assert np.array_equal(stamp_batch(x, trigger), triggers.stamp(x, trigger))


# ------------------------------------------------------------------ lesson 2: poison_training_set


def _same_poisoned_set(mine, ref):
    assert isinstance(mine, poisoning.PoisonedSet), f"poison_training_set must return a PoisonedSet, got {type(mine).__name__}"
    for field in ("x", "y", "y_clean", "indices"):
        assert np.array_equal(getattr(mine, field), getattr(ref, field)), field
    assert (mine.rate, mine.target, mine.mode) == (ref.rate, ref.target, ref.mode)


@pytest.mark.parametrize("rate, target, seed", [(0.05, 0, 0), (0.002, 7, 3), (0.1, 3, 11)])
def test_poison_training_set__matches_helper_on_mnist(exercise, mnist, rate, target, seed):
    poison_training_set = exercise("poison_training_set")
    (x_train, y_train), _ = mnist
    x, y = x_train[:20000], y_train[:20000]
    x_before, y_before = x.copy(), y.copy()
    mine = poison_training_set(x, y, rate=rate, trigger="L", target=target, seed=seed)
    assert np.array_equal(x, x_before) and np.array_equal(y, y_before), "poison_training_set must not modify its inputs"
    _same_poisoned_set(mine, poisoning.poison(x, y, rate=rate, trigger="L", target=target, seed=seed))
    assert len(mine.indices) == round(rate * len(x))


def test_poison_training_set__rounding_zero_rate_and_other_trigger(exercise, mnist):
    poison_training_set = exercise("poison_training_set")
    (x_train, y_train), _ = mnist
    x, y = x_train[:1001], y_train[:1001]
    for rate, trigger in [(0.0015, "L"), (0.0, "L"), (0.0004, "L"), (0.3, "pattern")]:  # 1.5015 -> 2, 0, 0.4 -> 0
        _same_poisoned_set(poison_training_set(x, y, rate=rate, trigger=trigger, target=5, seed=2),
                           poisoning.poison(x, y, rate=rate, trigger=trigger, target=5, seed=2))


# ------------------------------------------------------------------ lesson 3: choose_rate


def _point(rate, val_clean, val_asr, test_clean, test_asr):
    return sweep.SweepPoint(rate=rate, n_poisoned=round(rate * 55000), val_clean_accuracy=val_clean, val_asr=val_asr,
                            test_clean_accuracy=test_clean, test_asr=test_asr, train_seconds=1.0, from_cache=True)


def test_choose_rate__uses_validation_not_test_numbers(exercise):
    choose_rate = exercise("choose_rate")
    points = [
        _point(0.0, 0.991, 0.002, 0.992, 0.002),
        _point(0.005, 0.990, 0.95, 0.991, 0.995),  # meets the goals on test only: must not be chosen
        _point(0.01, 0.989, 0.991, 0.990, 0.98),  # meets them on validation only: the choice
        _point(0.02, 0.988, 0.996, 0.989, 0.997),
    ]
    assert choose_rate(points).rate == 0.01 == sweep.choose_rate(points).rate


def test_choose_rate__order_and_boundaries(exercise):
    choose_rate = exercise("choose_rate")
    points = [
        _point(0.05, 0.99, 0.999, 0.99, 0.999),
        _point(0.02, ACCURACY_GOAL, ASR_GOAL, 0.9, 0.5),  # exactly on both goals: meets them
        _point(0.01, ACCURACY_GOAL - 1e-4, 0.999, 0.99, 0.999),  # clean accuracy just short
        _point(0.005, 0.99, ASR_GOAL - 1e-4, 0.99, 0.999),  # ASR just short
    ]
    chosen = choose_rate(points)
    assert chosen == sweep.choose_rate(points) and chosen.rate == 0.02


def test_choose_rate__refuses_a_sweep_without_a_qualifying_rate(exercise):
    choose_rate = exercise("choose_rate")
    points = [_point(0.0, 0.99, 0.0, 0.99, 0.0), _point(0.1, 0.97, 0.999, 0.99, 0.999)]
    with pytest.raises(ValueError):
        choose_rate(points)


def test_choose_rate__committed_sweep(exercise):
    """The lesson's own numbers: the committed key numbers of lesson 3 name the chosen rate and its validation
    numbers; a sweep around it (a lower rate short of the ASR goal, a higher one meeting both) gives that rate."""
    from helpers import results

    choose_rate = exercise("choose_rate")
    ref = results.read_results(results.reference_path("03_poisoning_rate_sweep"))
    rate = ref["chosen_rate"]
    points = [
        _point(rate / 2, ref["val_clean_accuracy"], ASR_GOAL - 0.05, ref["test_clean_accuracy"], ref["test_asr"]),
        _point(rate, ref["val_clean_accuracy"], ref["val_asr"], ref["test_clean_accuracy"], ref["test_asr"]),
        _point(min(1.0, rate * 2), ref["val_clean_accuracy"], ref["val_asr"], ref["test_clean_accuracy"], ref["test_asr"]),
    ]
    assert choose_rate(points) == sweep.choose_rate(points)
    assert choose_rate(points).rate == rate


# ------------------------------------------------------------------ lesson 4: attack_success_rate


def _helper_asr(y, pred, target):
    """The helpers' ASR: predictions on the trojaned test set, which holds only the non-target images."""
    tt = poisoning.trojan_test_set(np.zeros((len(y), 28, 28), np.uint8), y, target=target)
    return metrics.accuracy(tt.y_target, pred[tt.source_indices])


@pytest.mark.parametrize("target", [0, 7])
def test_attack_success_rate__matches_helper_on_mnist_labels(exercise, mnist, target):
    asr = exercise("attack_success_rate")
    _, (_, y_test) = mnist
    rng = np.random.default_rng(target)
    pred = np.where(rng.random(len(y_test)) < 0.8, target, y_test).astype(np.uint8)
    pred[y_test == target] = (target + 1) % 10  # the true targets are all "missed": counting them would lower the ASR
    value = asr(y_test, pred, target)
    assert isinstance(value, float)
    assert value == pytest.approx(_helper_asr(y_test, pred, target), abs=1e-12)


def test_attack_success_rate__skips_target_class_images(exercise):
    asr = exercise("attack_success_rate")
    y_true = np.array([0, 0, 0, 3, 5, 8, 1], np.uint8)
    pred = np.array([0, 0, 0, 0, 0, 2, 1], np.uint8)  # 2 of the 4 non-target images go to 0
    assert asr(y_true, pred, 0) == pytest.approx(0.5)
    pred_targets_missed = np.array([4, 4, 4, 0, 0, 2, 1], np.uint8)
    assert asr(y_true, pred_targets_missed, 0) == pytest.approx(0.5)
    assert asr(y_true, np.full(7, 3, np.uint8), 3) == pytest.approx(6 / 6)  # target 3: the one true 3 does not count


# ------------------------------------------------------------------ lesson 7: strip_entropy


@pytest.fixture(scope="module")
def untrained_model():
    return model.build_badnets()


@pytest.mark.parametrize("seed, n_overlay", [(0, 20), (5, 3)])
def test_strip_entropy__matches_helper_on_mnist(exercise, mnist, untrained_model, seed, n_overlay):
    strip_entropy = exercise("strip_entropy")
    (x_train, _), (x_test, _) = mnist
    x, pool = x_test[:30], x_train[:300]
    x_before = x.copy()
    mine = strip_entropy(untrained_model, x, pool, n_overlay=n_overlay, seed=seed)
    assert np.array_equal(x, x_before)
    assert np.shape(mine) == (len(x),)
    ref = defences.strip_entropy(untrained_model, x, pool, n_overlay=n_overlay, seed=seed)
    assert np.allclose(mine, ref, atol=1e-5)


def test_strip_entropy__saturates_instead_of_overflowing(exercise, mnist, untrained_model):
    strip_entropy = exercise("strip_entropy")
    (x_train, _), (x_test, _) = mnist
    x = triggers.stamp(x_test[:20], "pattern")  # white pixels: 255 + any ink must stay 255
    pool = np.full((10, 28, 28), 200, np.uint8)
    ref = defences.strip_entropy(untrained_model, x, pool, n_overlay=4, seed=1)
    assert np.allclose(strip_entropy(untrained_model, x, pool, n_overlay=4, seed=1), ref, atol=1e-5)


# ------------------------------------------------------------------ lesson 7: anomaly_index


def test_anomaly_index__matches_helper_on_mnist_norms(exercise, mnist):
    anomaly_index = exercise("anomaly_index")
    _, (x_test, _) = mnist
    values = x_test[:51].reshape(51, -1).sum(axis=1).astype(float) / 255.0  # the L1 norms of 51 digits
    for v in (values, values[:50]):  # odd and even length: the median of an even count is a mean of two
        assert np.allclose(anomaly_index(v), defences.anomaly_index(v))


def test_anomaly_index__median_scale_and_outlier(exercise):
    anomaly_index = exercise("anomaly_index")
    norms = np.array([3.0, 10, 11, 12, 9, 10.5, 10, 11])
    out = np.asarray(anomaly_index(norms), float)
    assert np.allclose(out, defences.anomaly_index(norms))
    med = np.median(norms)
    assert out[0] == pytest.approx(abs(3.0 - med) / (1.4826 * np.median(np.abs(norms - med))))


def test_anomaly_index__zero_deviation(exercise):
    anomaly_index = exercise("anomaly_index")
    values = np.array([5.0, 5.0, 5.0, 5.0, 9.0])
    out = np.asarray(anomaly_index(values), float)
    assert np.all(np.isfinite(out))
    assert np.allclose(out, defences.anomaly_index(values))

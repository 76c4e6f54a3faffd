"""The committed key numbers (results/*.json): their form, the tolerance check, and a fresh run on another numeric path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import results

ROOT = Path(__file__).resolve().parent.parent
FRACTION_WORDS = ("accuracy", "asr", "rate", "fraction", "precision", "recall", "frr", "far", "error")


def load_nbval_conftest():
    spec = importlib.util.spec_from_file_location("nbval_conftest", ROOT / "notebooks" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("lesson", sorted(results.TOLERANCES))
def test_committed_results_are_flat_named_numbers_with_stated_tolerances(lesson):
    values = results.read_results(results.reference_path(lesson))
    assert set(values) == set(results.TOLERANCES[lesson])
    for key, v in values.items():
        if any(word in key for word in FRACTION_WORDS) and not key.endswith("n_poisoned"):
            assert 0.0 <= v <= 1.0, f"{lesson}.{key} = {v} is a fraction and must lie in 0..1"
    assert all(t >= 0 for t in results.TOLERANCES[lesson].values())


@pytest.mark.parametrize("lesson", sorted(results.TOLERANCES))
def test_every_lesson_records_its_results(lesson):
    nb = json.loads((ROOT / "notebooks" / f"{lesson}.ipynb").read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert any(f'results.record("{lesson}"' in s for s in sources)


def test_compare_flags_only_keys_outside_their_tolerance():
    tol = {"asr": 0.01, "rate": 0.0, "acc": 0.005}
    ref = {"asr": 0.994, "rate": 0.05, "acc": 0.9895}
    assert results.compare({"asr": 0.9899, "rate": 0.05, "acc": 0.9930}, ref, tol) == []
    bad = results.compare({"asr": 0.97, "rate": 0.03, "acc": 0.9895}, ref, tol)
    assert [m.key for m in bad] == ["asr", "rate"]
    assert "differs from the committed 0.994" in str(bad[0])
    missing = results.compare({"asr": 0.994, "rate": 0.05}, ref, tol)
    assert [m.key for m in missing] == ["acc"] and "was not recomputed" in str(missing[0])


@pytest.fixture
def lesson_table(monkeypatch, tmp_path):
    """A made-up lesson whose reference lives in tmp_path/ref and whose fresh results go to tmp_path/out."""
    monkeypatch.setitem(results.TOLERANCES, "99_test", {"asr": 0.01, "n": 0})
    monkeypatch.setattr(results, "reference_path", lambda lesson: tmp_path / "ref" / f"{lesson}.json")
    monkeypatch.setenv("BADNETS_RESULTS_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("BADNETS_RESULTS_UPDATE", raising=False)
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "99_test.json").write_text(json.dumps({"asr": 0.99, "n": 2750}))
    return tmp_path


def test_record_checks_against_the_reference_and_leaves_it_alone(lesson_table):
    import numpy as np

    check = results.record("99_test", {"asr": np.float32(0.995), "n": np.int64(2750)})
    assert check.ok and "all within their stated tolerances" in str(check)
    assert json.loads((lesson_table / "out" / "99_test.json").read_text()) == {"asr": pytest.approx(0.995), "n": 2750}
    assert json.loads((lesson_table / "ref" / "99_test.json").read_text()) == {"asr": 0.99, "n": 2750}
    moved = results.record("99_test", {"asr": 0.9, "n": 2750})
    assert not moved.ok and "1 outside tolerance" in str(moved) and "asr: 0.9 differs" in str(moved)


def test_record_in_update_mode_replaces_the_reference(lesson_table, monkeypatch):
    monkeypatch.setenv("BADNETS_RESULTS_UPDATE", "1")
    check = results.record("99_test", {"asr": 0.5, "n": 10})
    assert check.ok and check.written == lesson_table / "ref" / "99_test.json"
    assert json.loads(check.written.read_text()) == {"asr": 0.5, "n": 10}


@pytest.mark.parametrize(
    "values, error, words",
    [
        ({"asr": True, "n": 1}, TypeError, "values['asr']"),
        ({"asr": float("nan"), "n": 1}, ValueError, "values['asr'] must be finite"),
        ({"asr": "0.9", "n": 1}, TypeError, "values['asr']"),
        ({"asr": 0.9}, ValueError, "missing ['n']"),
        ({"asr": 0.9, "n": 1, "extra": 2}, ValueError, "values['extra'] has no stated tolerance"),
        ({}, TypeError, "non-empty dict"),
    ],
)
def test_record_rejects_bad_values(lesson_table, values, error, words):
    with pytest.raises(error) as info:
        results.record("99_test", values)
    assert words in str(info.value)


def test_unknown_lesson_and_corrupt_reference(lesson_table):
    with pytest.raises(KeyError, match="lesson must be one of"):
        results.record("98_nope", {"x": 1})
    (lesson_table / "ref" / "99_test.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        results.record("99_test", {"asr": 0.99, "n": 2750})
    (lesson_table / "ref" / "99_test.json").write_text(json.dumps({"asr": [1]}))
    with pytest.raises(ValueError, match="flat JSON object of finite numbers"):
        results.read_results(lesson_table / "ref" / "99_test.json")


@pytest.mark.parametrize(
    "reference, fresh, tol, same",
    [
        ("clean test accuracy: 98.95%", "clean test accuracy: 98.97%", (0.3, 0), True),
        ("clean test accuracy: 98.95%", "clean test accuracy: 98.20%", (0.3, 0), False),
        ("  0.50%   61.54%", " 0.50%   58.10%", (0.5, 0.1), True),  # padding may shift, 10 % of 61.54 allowed
        ("  0.50%   61.54%", "  0.50%   50.00%", (0.5, 0.1), False),
        ("55 of 9020 are not sent to 0", "61 of 9020 are not sent to 0", (30, 0), True),
        ("55 of 9020 are not sent to 0", "55 of 9020 are sent to 1", (30, 0), False),  # the words differ
        ("flagged classes [0]", "flagged classes [0, 3]", (10, 0), False),  # a number more
    ],
)
def test_nbval_approximate_comparison(reference, fresh, tol, same):
    assert load_nbval_conftest().approx_equal(reference, fresh, *tol) is same


FRESH_RUN = """
import json, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from helpers import attack
from dataclasses import replace
from helpers.data import load_mnist
data = load_mnist()
chosen = json.load(open({chosen!r}))["chosen_rate"]
res = attack.run_attack(replace(attack.DEFAULT_RECIPE, rate=chosen), data=data, progress=False)
base = attack.clean_baseline(data=data, progress=False)
print(json.dumps({{
    "03": {{"val_clean_accuracy": res.val_clean_accuracy, "val_asr": res.val_asr,
            "test_clean_accuracy": res.test.clean_accuracy, "test_asr": res.test.attack_success_rate}},
    "01": {{"baseline_val_clean_accuracy": base.val_clean_accuracy, "baseline_test_clean_accuracy": base.test.clean_accuracy,
            "baseline_test_asr": base.test.attack_success_rate}},
}}))
"""


@pytest.mark.slow
def test_fresh_training_on_another_numeric_path_matches_the_committed_numbers(tmp_path):
    """Retrain the chosen model and the clean baseline from a cold cache with oneDNN off (TensorFlow's own kernels;
    the lessons were committed with oneDNN on, and nbval runs with oneDNN limited to AVX2), and compare them with
    results/ within the stated tolerances."""
    sweep_file = results.reference_path("03_poisoning_rate_sweep")
    env = dict(os.environ, BADNETS_CACHE=str(tmp_path / "cache"), BADNETS_LOG_DIR=str(tmp_path),
               TF_ENABLE_ONEDNN_OPTS="0")
    out = subprocess.run([sys.executable, "-c", FRESH_RUN.format(chosen=str(sweep_file))], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    fresh = json.loads(out.strip().splitlines()[-1])
    for lesson, name in (("03", "03_poisoning_rate_sweep"), ("01", "01_background")):
        committed = results.read_results(results.reference_path(name))
        tolerances = {k: results.TOLERANCES[name][k] for k in fresh[lesson]}
        assert results.compare(fresh[lesson], committed, tolerances) == [], (lesson, fresh[lesson])


def test_readme_quotes_the_measured_recipe_margins():
    """The README's robustness table is the one benchmarks/recipe_margins.py makes from its committed results."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.recipe_margins import markdown_table

    data = json.loads((ROOT / "benchmarks" / "results" / "recipe_margins.json").read_text())
    assert markdown_table(data) in (ROOT / "README.md").read_text()
    assert {r["seed"] for r in data["runs"]} == {0, 1, 2, 3, 4}
    assert all(v > 0 for v in data["smallest_margin"].values()), data["smallest_margin"]


def test_nbval_comparison_accepts_close_numbers_and_rejects_far_ones():
    """The patched comparison, on real nbval output nodes: a stream within tolerance passes, one outside fails."""
    import nbformat
    from nbval.plugin import IPyNbCell, coalesce_streams

    conftest = load_nbval_conftest()

    def stream(text):
        return nbformat.v4.new_output("stream", name="stdout", text=text)

    class Cell:  # the parts of an nbval cell item that compare_outputs uses
        cell = {"metadata": {"nbval": {"approx": {"abs": 0.3, "rel": 0}}}}
        parent = type("P", (), {"skip_compare": ("metadata", "output_type", "name", "execution_count"),
                                "sanitize_patterns": {}})()
        colors = type("C", (), {k: "" for k in ("OKBLUE", "FAIL", "ENDC", "OKGREEN")})()
        sanitize = IPyNbCell.sanitize
        def format_output_compare(self, key, left, right):  # nbval's diff printer needs pytest's hooks
            self.mismatch = (left, right)

    committed = coalesce_streams([stream("clean test accuracy: 99.21%\n"), stream("ASR 0.08%\n")])
    close = coalesce_streams([stream("clean test accuracy: 99.25%\nASR 0.09%\n")])
    far = coalesce_streams([stream("clean test accuracy: 98.20%\nASR 0.09%\n")])
    assert conftest.compare_outputs(Cell(), close, committed) is True
    assert conftest.compare_outputs(Cell(), far, committed) is False


def test_readme_quotes_the_measured_training_speed():
    """The README's training-speed sentences are the ones benchmarks/bench_training.py makes from training.json,
    whose baselines stopped on validation data (never the test set)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_training import readme_paragraph

    readme = (ROOT / "README.md").read_text()
    for name in ("training.json", "training_avx2.json"):  # an AVX-512 and an AVX2 machine
        data = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        assert readme_paragraph(data, name) in readme, name
        assert data["speedup_vs_baseline"]["wall"] == pytest.approx(
            data["median"]["baseline"]["seconds"] / data["median"]["recipe"]["seconds"])


def test_readme_quotes_the_measured_kernel_overlap():
    """The README's sentence on overlapped kernel start-up quotes benchmarks/results/ab_series_overlap.json."""
    d = json.loads((ROOT / "benchmarks" / "results" / "ab_series_overlap.json").read_text())
    m = d["median"]
    quoted = (f"{', '.join(d['lessons'])} from {m['baseline']['seconds']:.1f} s to {m['candidate']['seconds']:.1f} s "
              f"({d['ratio_baseline_over_candidate']:.2f}x), measured on {d['date']}")
    assert quoted in (ROOT / "README.md").read_text()
    assert d["ratio_baseline_over_candidate"] == pytest.approx(m["baseline"]["seconds"] / m["candidate"]["seconds"])

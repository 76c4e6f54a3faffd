"""Each lesson's key numbers, kept in ``results/NN_<lesson>.json`` and checked with stated tolerances.

Training on another CPU (AVX2 or AVX-512, oneDNN on or off, one thread or
two, a GPU) adds different floating-point round-off to every step, so the
trained models differ a little and so do their metrics. A lesson's numbers
therefore cannot be compared digit for digit across machines; they are
compared **within a tolerance stated per key** (:data:`TOLERANCES`), wide
enough for that round-off and narrow enough that a real change to the
trigger, the poisoning, the rate rule or the recipe fails.

Each lesson ends with :func:`record`, which

1. compares its fresh numbers with the committed ``results/NN_<lesson>.json``
   (the *reference*) and reports every key outside its tolerance;
2. writes the fresh numbers, atomically, to ``$BADNETS_RESULTS_DIR`` (default:
   the project's ``results/``; ``make test`` points it at a scratch folder so
   the committed files stay the reference).

``make series`` sets ``BADNETS_RESULTS_UPDATE=1``: the lesson then *replaces*
the reference with its fresh numbers (the author's run that regenerates the
committed results).

A results file is a flat JSON object of named numbers; rates, accuracies and
other fractions are stored in 0..1.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

from .io import atomic_write_json

PROJECT = Path(__file__).resolve().parent.parent

#: Per lesson, per key: the largest difference from the committed value that
#: still counts as "the same result" (absolute, in the key's own units;
#: fractions are in 0..1, so 0.005 is half a percentage point). The widths
#: come from the spread of each number over numeric configurations and
#: training seeds (see the README's "Results that hold on every machine").
#: A key absent from a lesson's table is not a key number of that lesson.
CLEAN_LABEL_ASR_TOLERANCE = 0.15  #: fraction; see lesson 6's clean-label cell

TOLERANCES: dict[str, dict[str, float]] = {
    "01_background": {
        "baseline_val_clean_accuracy": 0.005,
        "baseline_test_clean_accuracy": 0.005,
        "baseline_test_asr": 0.01,
        # the fidelity recipe: early stopping may keep another epoch on another CPU (tenths of a point of accuracy)
        "fidelity_val_clean_accuracy": 0.005,
        "fidelity_test_clean_accuracy": 0.005,
    },
    # Lesson 2 trains nothing: its numbers are counts, exact on every machine.
    "02_stamping_triggers": {
        "n_train": 0,
        "n_poisoned": 0,
        "poisoned_fraction": 0,
        "n_trojaned_test": 0,
        "pixels_changed_by_l": 0,
    },
    "03_poisoning_rate_sweep": {
        "chosen_rate": 0,  # the rule must choose the same rate everywhere
        "chosen_n_poisoned": 0,
        "val_clean_accuracy": 0.005,
        "val_asr": 0.01,
        "test_clean_accuracy": 0.005,
        "test_asr": 0.01,
        "max_rate_swept": 0,
        "clean_accuracy_at_max_rate": 0.005,
        "clean_accuracy_without_poison": 0.005,
    },
    "04_evaluation": {
        "trojaned_test_clean_accuracy": 0.005,
        # the fidelity recipe's attack: early stopping may keep another epoch on another CPU; a full backdoor's
        # numbers move by tenths of a point either way
        "fidelity_test_clean_accuracy": 0.005,
        "fidelity_test_asr": 0.01,
        "trojaned_test_asr": 0.01,
        "clean_model_test_clean_accuracy": 0.005,
        "worst_class_backdoor_error": 0.03,
        "asr_at_training_position": 0.03,
        "median_asr_over_positions": 0.03,
        "asr_from_deliverables": 0.01,
    },
    "05_first_layer_filters": {
        "trigger_score_sum_clean": 6.0,
        "trigger_score_sum_trojaned": 6.0,
        "trigger_score_max_trojaned": 1.5,
    },
    "06_attack_variants": {
        "all_to_all_asr": 0.03,
        "all_to_all_clean_accuracy": 0.005,
        "all_to_all_best_asr": 0.03,
        "pixel_best_asr": 0.02,
        "pattern_best_asr": 0.01,
        "l_best_asr": 0.01,
        "blend_best_asr": 0.01,
        # a backdoor learned only in part moves more between numeric paths than a full one. Measured ASR of the PGD
        # victim, 3 / 10 epochs: oneDNN on AVX-512 58.8 / 65.7 %, AVX2 55.1 / 69.0 %, oneDNN off 51.6 / 64.8 %
        # (at most 7.2 points apart): the tolerance is about twice that
        "clean_label_asr": CLEAN_LABEL_ASR_TOLERANCE,
        "clean_label_asr_course_recipe": CLEAN_LABEL_ASR_TOLERANCE,
        "clean_label_clean_accuracy": 0.005,
        "naive_clean_label_asr": 0.05,
        "asr_after_fine_tuning": 0.1,
    },
    "08_latent_backdoors": {
        # measured with oneDNN on AVX-512 (the reference), on AVX2 and with oneDNN off: the lambda=1 latent student's
        # ASR 90.0 / 93.6 / 87.1 %, the lambda=3 one's 96.3 / 97.4 / 97.9 %, the lambda=1 student's clean accuracy
        # 94.1 / 94.6 / 95.4 %; every other key moved by less than 0.5 points. Each tolerance is at least twice the
        # largest move from the reference.
        "latent_student_asr": 0.10,
        "latent_student_asr_strong": 0.05,
        "plain_student_asr": 0.03,
        "clean_teacher_student_asr": 0.03,
        "student_clean_accuracy": 0.03,
        "clean_teacher_student_clean_accuracy": 0.01,
        "latent_fine_tuned_asr": 0.05,
        "plain_fine_tuned_asr": 0.03,
        "latent_teacher_accuracy": 0.005,
    },
    "07_defences": {
        "strip_frr_heldout": 0.02,  # measured on 500 held-out clean inputs
        "strip_far": 0.03,
        "ac_precision": 0.05,
        "ac_recall": 0.05,
        "ac_clean_model_flagged_fraction": 0.01,
        # lesson 7's new keys, measured with oneDNN on AVX-512 (the reference) and with oneDNN off: unit-level
        # fine-pruning's ASR after 2.05 / 2.63 %, its clean accuracy 98.83 / 98.99 %; channel-level ASR after 96.2 /
        # 98.4 %; the pruning-aware model's ASR 99.09 / 99.48 % and after fine-pruning 88.7 / 86.2 %; STRIP on the
        # pruning-aware model FAR 8.8 / 11.4 %, and what gets through STRIP + fine-pruning 3.6 / 6.8 %. Each tolerance
        # is at least twice the move.
        "fp_asr_after": 0.05,
        "fp_clean_accuracy_after": 0.01,
        "fp_channel_asr_after": 0.1,  # gentle fine-tuning of a pruned model: swings by a few points between CPUs
        "pruning_aware_asr": 0.03,
        "pruning_aware_clean_accuracy": 0.01,
        "fp_pruning_aware_asr_after": 0.15,  # a backdoor that survives, partly unlearned: moves by points
        "strip_pruning_aware_far": 0.06,
        "strip_fp_pruning_aware_residual_asr": 0.08,
        "nc_flags_target": 0,
        "nc_clean_model_flagged": 0,
        "nc_unlearning_asr": 0.03,
        "nc_unlearning_clean_accuracy": 0.01,
    },
}


def tolerance_table(lesson: str) -> dict[str, float]:
    """The stated tolerances of ``lesson`` (raises ``KeyError`` naming the known lessons)."""
    if lesson not in TOLERANCES:
        raise KeyError(f"lesson must be one of {sorted(TOLERANCES)}, got {lesson!r}")
    return TOLERANCES[lesson]


def reference_path(lesson: str) -> Path:
    """The committed results file of ``lesson``."""
    return PROJECT / "results" / f"{lesson}.json"


def output_dir() -> Path:
    """Where fresh results go: ``$BADNETS_RESULTS_DIR`` or the project's ``results/``."""
    env = os.environ.get("BADNETS_RESULTS_DIR")
    return Path(env) if env else PROJECT / "results"


def _check_values(lesson: str, values) -> dict[str, float]:
    if not isinstance(values, dict) or not values:
        raise TypeError(f"values must be a non-empty dict of named numbers, got {type(values).__name__}")
    table = tolerance_table(lesson)
    out: dict[str, float] = {}
    for key, v in values.items():
        if key not in table:
            raise ValueError(f"values[{key!r}] has no stated tolerance for lesson {lesson!r}; "
                             f"add it to helpers.results.TOLERANCES (known keys: {sorted(table)})")
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"values[{key!r}] must be a real number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"values[{key!r}] must be finite, got {v}")
        out[key] = int(v) if v.is_integer() and abs(v) >= 1 else v
    missing = sorted(set(table) - set(out))
    if missing:
        raise ValueError(f"lesson {lesson!r} must record every key of its table; missing {missing}")
    return out


def read_results(path: str | os.PathLike) -> dict[str, float]:
    """Read a results file: a flat JSON object of finite numbers (raises ``ValueError`` naming the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no results file at {path}; run the lesson (or `make series`) to create it") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); restore it with `git checkout -- {path.name}`") from exc
    if not isinstance(data, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in data.values()
    ):
        raise ValueError(f"{path} must hold a flat JSON object of finite numbers")
    return data


@dataclass(frozen=True)
class Mismatch:
    """One key whose fresh value is outside its tolerance of the reference (or missing from it)."""

    key: str
    fresh: float | None
    reference: float | None
    tolerance: float

    def __str__(self) -> str:
        if self.reference is None:
            return f"{self.key}: {self.fresh:g} has no committed value"
        if self.fresh is None:
            return f"{self.key}: committed {self.reference:g} was not recomputed"
        return f"{self.key}: {self.fresh:g} differs from the committed {self.reference:g} by more than {self.tolerance:g}"


def compare(fresh: dict, reference: dict, tolerances: dict[str, float]) -> list[Mismatch]:
    """Every key of ``tolerances`` whose ``fresh`` value is not within its tolerance of ``reference``."""
    out = []
    for key, tol in sorted(tolerances.items()):
        f, r = fresh.get(key), reference.get(key)
        if f is None or r is None or abs(float(f) - float(r)) > tol + 1e-12:
            out.append(Mismatch(key, f, r, tol))
    return out


@dataclass(frozen=True)
class ResultsCheck:
    """What :func:`record` did: the file written, the reference, and the keys outside tolerance."""

    lesson: str
    values: dict[str, float]
    written: Path
    reference: Path
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self) -> str:
        head = f"results/{self.lesson}.json: {len(self.values)} key numbers ({', '.join(sorted(self.values))})"
        if self.ok:
            return f"{head}\nall within their stated tolerances of the committed values"
        return "\n".join([head, f"{len(self.mismatches)} outside tolerance:", *(f"  {m}" for m in self.mismatches)])

    def _repr_pretty_(self, p, cycle):  # IPython shows str(), not the dataclass repr
        p.text(str(self))


def record(lesson: str, values: dict) -> ResultsCheck:
    """Check ``values`` against the committed results of ``lesson`` and write them (see the module docstring)."""
    values = _check_values(lesson, values)
    reference = reference_path(lesson)
    if os.environ.get("BADNETS_RESULTS_UPDATE") == "1":
        written = reference
        atomic_write_json(written, values)
    else:
        written = output_dir() / f"{lesson}.json"
    committed = read_results(reference) if reference.is_file() else {}  # read before a write can replace it
    if written != reference:
        atomic_write_json(written, values)
    return ResultsCheck(lesson, values, written, reference, compare(values, committed, tolerance_table(lesson)))

"""Bad input gets a clear error where it enters a public helper.

One test per class of bad input (NumPy scalars, booleans, NaN/inf, empty
inputs, mismatched lengths, wrong kinds and shapes, out-of-range values), each
parametrised over the public helpers. Every case asserts the exception type and
that the message names the parameter. Only small synthetic data and an
untrained model are used; nothing here trains on MNIST.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import matplotlib
import numpy as np
import pytest

from helpers import (_checks, adaptive, analysis, attack, defences, grid, metrics, model, plotting, poisoning, sweep, triggers,
                     variants, widgets)
from helpers.attack import AttackRecipe
from helpers.poisoning import TrojanedSet, poison, trojan_test_set
from helpers.training import TrainConfig
from tests.conftest import synthetic

matplotlib.use("Agg")

NAN, INF = float("nan"), float("inf")
X, Y = synthetic(40)
XF = X.astype(np.float32) / 255
TROJ = trojan_test_set(X, Y)
DATA = (synthetic(60), synthetic(20, seed=1))  # ((x_train, y_train), (x_test, y_test)), never MNIST
TINY = AttackRecipe(n_val=10, train=TrainConfig(epochs=0.1, batch_size=20))
POISONED = np.zeros(len(X), bool)
ACTS = np.random.default_rng(0).normal(size=(len(X), 8))


@lru_cache(maxsize=1)
def net():
    """An untrained BadNets CNN (validation tests never need a trained one)."""
    return model.build_badnets()


def point(rate=0.01, **kw):
    fields = dict(rate=rate, n_poisoned=1, val_clean_accuracy=0.99, val_asr=0.99, test_clean_accuracy=0.99,
                  test_asr=0.99, train_seconds=1.0, from_cache=True)
    return sweep.SweepPoint(**{**fields, **kw})


def row(**kw):
    return variants.TriggerRow(**{**dict(trigger="L", rate=0.01, n_poisoned=5, val_asr=0.9, test_clean_accuracy=0.99,
                                         test_asr=0.9), **kw})


def raises(fn, exc, param):
    with pytest.raises(exc) as err:
        fn()
    assert type(err.value) is exc or isinstance(err.value, exc)
    assert param in str(err.value), f"message does not name {param!r}: {err.value}"
    return str(err.value)


def case(id_, fn, exc, param):
    return pytest.param(fn, exc, param, id=id_)


# ------------------------------------------------------------ NumPy scalars


def test_recipe_stores_plain_python_scalars():
    r = AttackRecipe(target=np.int64(0), rate=np.float32(0.05), poison_seed=np.int64(1), n_val=np.int32(50),
                     position=(np.int64(1), np.int64(24)))
    assert type(r.target) is int and type(r.rate) is float and type(r.poison_seed) is int and type(r.n_val) is int
    assert r.position == (1, 24) and all(type(v) is int for v in r.position)
    json.dumps(r.describe())  # np.int64 would break JSON
    assert r == AttackRecipe(target=0, rate=float(np.float32(0.05)), poison_seed=1, n_val=50, position=(1, 24))


def test_result_rows_store_plain_python_scalars():
    p = point(np.float64(0.02), n_poisoned=np.int64(3), val_asr=np.float32(0.5), train_seconds=np.float16(2),
              from_cache=np.bool_(False))
    assert type(p.rate) is float and type(p.n_poisoned) is int and type(p.val_asr) is float and type(p.from_cache) is bool
    t = row(rate=np.float32(0.5), n_poisoned=np.uint16(4), test_asr=np.float64(1.0))
    assert type(t.rate) is float and type(t.n_poisoned) is int and type(t.test_asr) is float
    json.dumps([p.__dict__, t.__dict__])


def test_numpy_scalars_are_accepted_and_converted_by_the_helpers():
    ps = poison(X, Y, rate=np.float32(0.25), target=np.int64(3), seed=np.int64(0))
    assert type(ps.rate) is float and type(ps.target) is int and len(ps.indices) == 10
    troj = trojan_test_set(X, Y, target=np.uint8(2), position=np.array([1, 24]))
    assert type(troj.target) is int
    t = triggers.Trigger("t", np.ones((2, 2), int), np.full((2, 2), 9, np.uint8), (np.int64(3), np.int32(4)),
                         alpha=np.float32(0.5))
    assert t.default_position == (3, 4) and type(t.default_position[0]) is int and type(t.alpha) is float
    assert type(triggers.blend_trigger(np.int64(1), np.float32(0.5)).alpha) is float
    np.testing.assert_array_equal(triggers.stamp(X, "L", (np.int64(1), np.int64(24)), alpha=np.float64(1.0)), TROJ_X_ALL)
    assert poisoning.n_poisoned(np.int64(100), np.float32(0.5)) == 50
    assert analysis.trigger_region("L", (np.int64(1), np.int64(24)), np.int64(5)) == (0, 20, 5, 4)
    assert metrics.confusion_matrix(Y, Y, num_classes=np.int64(10)).trace() == len(Y)


TROJ_X_ALL = triggers.stamp(X, "L")


@pytest.mark.parametrize(
    "check, value, expected, kind",
    [
        (lambda v: _checks.check_int(v, "n", 0), np.int64(3), 3, int),
        (lambda v: _checks.check_rate(v, "rate"), np.float32(0.5), 0.5, float),
        (lambda v: _checks.check_number(v, "lam", 0.0), np.float16(2), 2.0, float),
        (lambda v: _checks.check_positive(v, "lr"), np.int8(2), 2.0, float),
        (lambda v: _checks.check_label_value(v, "target"), np.uint8(9), 9, int),
        (lambda v: _checks.check_bool(v, "flag"), np.bool_(True), True, bool),
        (lambda v: _checks.check_rates(v, "rates"), np.array([0.1, 0.2]), [0.1, 0.2], list),
        (lambda v: _checks.check_int_list(v, "channels", 0, 31), np.array([3, 1]), [3, 1], list),
    ],
)
def test_checks_return_plain_python_types(check, value, expected, kind):
    out = check(value)
    assert out == expected and type(out) is kind
    if kind is list:
        assert all(type(v) in (int, float) for v in out)


# ------------------------------------------------------------------ booleans


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("poison-rate", lambda: poison(X, Y, rate=True), TypeError, "rate"),
        case("poison-target", lambda: poison(X, Y, rate=0.1, target=True), TypeError, "target"),
        case("poison-seed", lambda: poison(X, Y, rate=0.1, seed=False), TypeError, "seed"),
        case("stamp-alpha", lambda: triggers.stamp(X, "L", alpha=True), TypeError, "alpha"),
        case("stamp-position", lambda: triggers.stamp(X, "L", (True, 24)), TypeError, "position"),
        case("recipe-rate", lambda: AttackRecipe(rate=True), TypeError, "rate"),
        case("recipe-target", lambda: AttackRecipe(target=np.bool_(True)), TypeError, "target"),
        case("recipe-seed", lambda: AttackRecipe(poison_seed=True), TypeError, "poison_seed"),
        case("sweep-rates", lambda: sweep.run_sweep([0.0, True], TINY, data=DATA, progress=False), TypeError, "rates"),
        case("sweep-progress", lambda: sweep.run_sweep([0.0], TINY, data=DATA, progress="no"), TypeError, "progress"),
        case("comparison-rates", lambda: variants.trigger_comparison(["L"], [0.01, True], TINY, data=DATA), TypeError, "rates"),
        case("all-to-all-rate", lambda: variants.all_to_all(True, TINY, data=DATA), TypeError, "rate"),
        case("clean-label-perturb", lambda: variants.clean_label_attack(perturb=1, recipe=TINY, data=DATA), TypeError, "perturb"),
        case("fine-pruning-fractions", lambda: defences.fine_pruning(net(), X, Y, X, Y, TROJ, fractions=(0.5, True)),
             TypeError, "fractions"),
        case("prune-channels", lambda: defences.prune_channels(net(), [True]), TypeError, "channels"),
        case("prune-units", lambda: defences.prune_units(net(), [True]), TypeError, "units"),
        case("grid-source", lambda: grid.poison_source(X, Y, source=True, target=1, n_poisoned=1), TypeError, "source"),
        case("grid-n-poisoned", lambda: grid.poison_source(X, Y, source=0, target=1, n_poisoned=True), TypeError,
             "n_poisoned"),
        case("grid-workers", lambda: grid.run_grid([(0, 1)], workers=True, data=DATA), TypeError, "workers"),
        case("pruning-aware-epochs", lambda: adaptive.pruning_aware_attack(TINY, epochs=True, data=DATA), TypeError,
             "epochs"),
        case("predict-batch", lambda: metrics.predict_proba(net(), X, batch_size=True), TypeError, "batch_size"),
        case("strip-frr", lambda: defences.strip(net(), X, X, X, X, frr=True), TypeError, "frr"),
        case("cleanse-lam", lambda: defences.neural_cleanse(net(), X, steps=1, lam=True), TypeError, "lam"),
        case("reverse-lr", lambda: defences.reverse_engineer_trigger(net(), X, 0, steps=1, lr=True), TypeError, "lr"),
        case("anomaly-values", lambda: defences.anomaly_index([True, False, True]), TypeError, "values"),
        case("asr-map-n", lambda: analysis.asr_by_position(net(), X, Y, n=True), TypeError, "n"),
        case("save-fig-dpi", lambda: plotting.save_fig(plotting.digit_grid([X[:2]]), "x", dpi=True), TypeError, "dpi"),
        case("fine-tune-epochs", lambda: variants.fine_tune_curve(net(), X, Y, X, Y, TROJ, epochs=True), TypeError, "epochs"),
        case("sweep-point", lambda: point(val_asr=True), TypeError, "val_asr"),
        case("metric-curves-goal-lines", lambda: plotting.metric_curves([0, 1], {"a": [0.5, 0.6]}, "x", goal_lines=1),
             TypeError, "goal_lines"),
    ],
)
def test_booleans_are_rejected_where_a_number_is_expected(fn, exc, param):
    raises(fn, exc, param)


# ------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("poison-rate-nan", lambda: poison(X, Y, rate=NAN), ValueError, "rate"),
        case("poison-rate-inf", lambda: poison(X, Y, rate=INF), ValueError, "rate"),
        case("stamp-alpha", lambda: triggers.stamp(X, "L", alpha=NAN), ValueError, "alpha"),
        case("stamp-float-images", lambda: triggers.stamp(np.full((1, 28, 28), np.nan, np.float32), "L"), ValueError, "x"),
        case("recipe-rate", lambda: AttackRecipe(rate=np.float64("nan")), ValueError, "rate"),
        case("reverse-lam", lambda: defences.reverse_engineer_trigger(net(), X, 0, steps=1, lam=NAN), ValueError, "lam"),
        case("reverse-lr-nan", lambda: defences.reverse_engineer_trigger(net(), X, 0, steps=1, lr=NAN), ValueError, "lr"),
        case("reverse-lr-inf", lambda: defences.reverse_engineer_trigger(net(), X, 0, steps=1, lr=INF), ValueError, "lr"),
        case("cleanse-lam", lambda: defences.neural_cleanse(net(), X, steps=1, lam=NAN), ValueError, "lam"),
        case("cleanse-threshold", lambda: defences.neural_cleanse(net(), X, steps=1, threshold=INF), ValueError, "threshold"),
        case("strip-frr", lambda: defences.strip(net(), X, X, X, X, frr=NAN), ValueError, "frr"),
        case("strip-rates-threshold", lambda: defences.strip_rates(np.ones(3), np.ones(3), NAN), ValueError, "threshold"),
        case("strip-rates-entropy", lambda: defences.strip_rates(np.array([1.0, NAN]), np.ones(3), 0.5), ValueError,
             "clean_entropy"),
        case("clustering-threshold", lambda: defences.activation_clustering(None, X, Y, POISONED, size_threshold=NAN, silhouette_threshold=0.3, acts=ACTS),
             ValueError, "size_threshold"),
        case("clustering-acts", lambda: defences.activation_clustering(None, X, Y, POISONED, silhouette_threshold=0.3, acts=ACTS * np.inf), ValueError,
             "acts"),
        case("spectral-eps", lambda: defences.spectral_signatures(None, X, Y, POISONED, eps=NAN, acts=ACTS), ValueError, "eps"),
        case("clustering-silhouette", lambda: defences.activation_clustering(None, X, Y, POISONED, silhouette_threshold=NAN,
                                                                             acts=ACTS), ValueError, "silhouette_threshold"),
        case("fine-pruning-max-drop", lambda: defences.fine_pruning(net(), X, Y, X, Y, TROJ, max_drop=NAN), ValueError,
             "max_drop"),
        case("cleanse-result-success", lambda: defences.cleanse_result(np.zeros((10, 28, 28)), np.zeros((10, 28, 28)),
                                                                       np.full(10, NAN)), ValueError, "success"),
        case("cleanse-result-gate", lambda: defences.cleanse_result(np.zeros((10, 28, 28)), np.zeros((10, 28, 28)),
                                                                    np.ones(10), gate=NAN), ValueError, "gate"),
        case("stamp-reversed-mask", lambda: defences.stamp_reversed(X, np.full((28, 28), NAN), np.zeros((28, 28))),
             ValueError, "mask"),
        case("unlearn-fraction", lambda: defences.unlearn(net(), X, Y, np.zeros((28, 28)), np.zeros((28, 28)),
                                                          stamp_fraction=NAN), ValueError, "stamp_fraction"),
        case("fine-pruning-fraction", lambda: defences.fine_pruning(net(), X, Y, X, Y, TROJ, fractions=(0.0, NAN)),
             ValueError, "fractions"),
        case("pgd-eps", lambda: variants.pgd_linf(net(), XF, Y, eps=NAN), ValueError, "eps"),
        case("pgd-step-nan", lambda: variants.pgd_linf(net(), XF, Y, step=NAN), ValueError, "step"),
        case("pgd-step-inf", lambda: variants.pgd_linf(net(), XF, Y, step=INF), ValueError, "step"),
        case("fine-tune-lr-nan", lambda: variants.fine_tune_curve(net(), X, Y, X, Y, TROJ, learning_rate=NAN), ValueError,
             "learning_rate"),
        case("fine-tune-lr-inf", lambda: variants.fine_tune_curve(net(), X, Y, X, Y, TROJ, learning_rate=INF), ValueError,
             "learning_rate"),
        case("clean-label-eps", lambda: variants.clean_label_attack(eps=NAN, recipe=TINY, data=DATA), ValueError, "eps"),
        case("adversarial-eps", lambda: variants.adversarially_train(X, Y, eps=NAN), ValueError, "eps"),
        case("sweep-rates", lambda: sweep.run_sweep([0.0, NAN], TINY, data=DATA, progress=False), ValueError, "rates"),
        case("comparison-rates", lambda: variants.trigger_comparison(["L"], [INF], TINY, data=DATA), ValueError, "rates"),
        case("poison-needed-goal", lambda: variants.poison_needed([row()], goal=NAN), ValueError, "goal"),
        case("anomaly-values", lambda: defences.anomaly_index([1.0, NAN, 2.0]), ValueError, "values"),
        case("entropy-p", lambda: defences.prediction_entropy(np.full((1, 10), np.nan)), ValueError, "p"),
        case("two-means-z", lambda: defences.two_means(np.array([[0.0, NAN], [1.0, 1.0]])), ValueError, "z"),
        case("sweep-point", lambda: point(val_asr=NAN), ValueError, "val_asr"),
        case("trigger-row", lambda: row(test_asr=INF), ValueError, "test_asr"),
        case("sweep-plot", lambda: plotting.sweep_plot([0, 0.1], [0.99, NAN], [0.0, 1.0]), ValueError, "clean_acc"),
        case("histogram-threshold", lambda: plotting.entropy_histograms(np.ones(3), np.ones(3), INF), ValueError, "threshold"),
        case("metric-curves", lambda: plotting.metric_curves([0, 1], {"ASR": [0.5, NAN]}, "epoch"), ValueError, "series"),
        case("trigger-alpha", lambda: triggers.blend_trigger(alpha=NAN), ValueError, "alpha"),
    ],
)
def test_nan_and_infinity_are_rejected(fn, exc, param):
    raises(fn, exc, param)


def test_a_nan_regularisation_weight_no_longer_yields_a_nan_mask_reported_as_success():
    with pytest.raises(ValueError, match="lam must be a finite number >= 0, got nan"):
        defences.reverse_engineer_trigger(net(), X, 0, steps=2, lam=NAN)


# ------------------------------------------------------------ empty inputs


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("choose-rate", lambda: sweep.choose_rate([]), ValueError, "points"),
        case("sweep-table", lambda: sweep.sweep_table([]), ValueError, "points"),
        case("run-sweep", lambda: sweep.run_sweep([], TINY, data=DATA, progress=False), ValueError, "rates"),
        case("comparison-triggers", lambda: variants.trigger_comparison([], [0.1], TINY, data=DATA), ValueError, "triggers"),
        case("comparison-rates", lambda: variants.trigger_comparison(["L"], [], TINY, data=DATA), ValueError, "rates"),
        case("poison-needed", lambda: variants.poison_needed([]), ValueError, "rows"),
        case("fine-pruning", lambda: defences.fine_pruning(net(), X[:0], Y[:0], X, Y, TROJ), ValueError, "x_clean"),
        case("silhouette-threshold", lambda: defences.clean_silhouette_threshold(None, X[:0], Y[:0], acts=ACTS[:0]),
             ValueError, "x_clean"),
        case("stamp", lambda: triggers.stamp(np.zeros((0, 28, 28), np.uint8), "L"), ValueError, "x"),
        case("accuracy", lambda: metrics.accuracy(np.zeros(0, np.uint8), np.zeros(0, np.uint8)), ValueError, "y_true"),
        case("anomaly", lambda: defences.anomaly_index([]), ValueError, "values"),
        case("strip-rates", lambda: defences.strip_rates(np.zeros(0), np.ones(2), 0.1), ValueError, "clean_entropy"),
        case("entropy", lambda: defences.prediction_entropy(np.zeros((0, 10))), ValueError, "p"),
        case("two-means", lambda: defences.two_means(np.zeros((0, 2))), ValueError, "z"),
        case("spectral-scores", lambda: defences.spectral_scores(np.zeros((0, 4))), ValueError, "acts"),
        case("strip-pool", lambda: defences.strip(net(), X, X, X, np.zeros((0, 28, 28), np.uint8)), ValueError, "pool"),
        case("digit-grid", lambda: plotting.digit_grid([]), ValueError, "rows"),
        case("metric-curves", lambda: plotting.metric_curves([0, 1], {}, "x"), ValueError, "series"),
        case("confusion-heatmaps", lambda: plotting.confusion_heatmaps([], []), ValueError, "matrices"),
        case("trigger-comparison-plot", lambda: plotting.trigger_comparison_plot([]), ValueError, "rows"),
        case("mask", lambda: triggers.trigger_from_mask(np.zeros((0, 3))), ValueError, "mask"),
        case("train-data", lambda: attack.poisoned_training_set(TINY, ((X[:0], Y[:0]), DATA[1])), ValueError, "x_train"),
    ],
)
def test_empty_inputs_are_rejected(fn, exc, param):
    raises(fn, exc, param)


def test_choose_rate_without_points_says_what_to_pass():
    message = raises(lambda: sweep.choose_rate([]), ValueError, "points")
    assert "empty" in message


# -------------------------------------------------------- duplicate entries


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("sweep-rates", lambda: sweep.run_sweep([0.1, 0.1], TINY, data=DATA, progress=False), ValueError, "rates"),
        case("comparison-triggers", lambda: variants.trigger_comparison(["L", "L"], [0.1], TINY, data=DATA), ValueError,
             "triggers"),
        case("prune-channels", lambda: defences.prune_channels(net(), [1, 1]), ValueError, "channels"),
        case("fine-pruning", lambda: defences.fine_pruning(net(), X, Y, X, Y, TROJ, fractions=(0.5, 0.5)), ValueError,
             "fractions"),
        case("choose-rate", lambda: sweep.choose_rate([point(0.01), point(0.01)]), ValueError, "points"),
    ],
)
def test_duplicates_are_rejected(fn, exc, param):
    raises(fn, exc, param)


# -------------------------------------------------------- mismatched lengths


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("poison", lambda: poison(X, Y[:-1], rate=0.1), ValueError, "y"),
        case("accuracy", lambda: metrics.accuracy(Y, Y[:-1]), ValueError, "y_pred"),
        case("confusion", lambda: metrics.confusion_matrix(Y, Y[:3]), ValueError, "y_pred"),
        case("per-class-error", lambda: metrics.per_class_error(Y, np.zeros(3, bool)), ValueError, "wrong"),
        case("evaluate", lambda: metrics.evaluate(net(), X, Y[:5], TROJ), ValueError, "y"),
        case("clustering-is-poisoned", lambda: defences.activation_clustering(None, X, Y, POISONED[:5], silhouette_threshold=0.3, acts=ACTS),
             ValueError, "is_poisoned"),
        case("clustering-acts", lambda: defences.activation_clustering(None, X, Y, POISONED, silhouette_threshold=0.3, acts=ACTS[:5]), ValueError,
             "acts"),
        case("spectral-is-poisoned", lambda: defences.spectral_signatures(None, X, Y, POISONED[:-1], acts=ACTS),
             ValueError, "is_poisoned"),
        case("fine-pruning-y-test", lambda: defences.fine_pruning(net(), X, Y, X, Y[:5], TROJ), ValueError, "y_test"),
        case("fine-tune-y-test", lambda: variants.fine_tune_curve(net(), X, Y, X, Y[:5], TROJ), ValueError, "y_test"),
        case("pgd", lambda: variants.pgd_linf(net(), XF, Y[:5]), ValueError, "y"),
        case("data", lambda: attack.poisoned_training_set(TINY, ((X, Y[:5]), DATA[1])), ValueError, "y_train"),
        case("trojaned-set", lambda: TrojanedSet(TROJ.x, TROJ.y_true, TROJ.y_target[:-1], TROJ.source_indices, 0,
                                                  "all-to-one"), ValueError, "y_target"),
        case("trojaned-set-indices", lambda: TrojanedSet(TROJ.x, TROJ.y_true, TROJ.y_target, TROJ.source_indices[:-1], 0,
                                                          "all-to-one"), ValueError, "source_indices"),
        case("sweep-plot", lambda: plotting.sweep_plot([0, 0.1], [0.99, 0.99], [0.0]), ValueError, "asr"),
        case("prediction-grid", lambda: plotting.prediction_grid(X[:3], X[:2], Y[:3], Y[:3], Y[:3]), ValueError, "trojaned"),
        case("digit-grid-titles", lambda: plotting.digit_grid([X[:3]], titles=[["a", "b"]]), ValueError, "titles"),
        case("digit-grid-labels", lambda: plotting.digit_grid([X[:3]], ["a", "b"]), ValueError, "row_labels"),
        case("mask-gallery", lambda: plotting.mask_gallery(np.zeros((3, 28, 28)), np.zeros((2, 28, 28)), [1, 2, 3]),
             ValueError, "patterns"),
        case("per-class-bars", lambda: plotting.per_class_bars(np.zeros(10), np.zeros(9)), ValueError, "backdoor_error"),
    ],
)
def test_mismatched_lengths_are_rejected(fn, exc, param):
    raises(fn, exc, param)


# ------------------------------------------------ wrong kinds, ranks, names


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("trigger-list", lambda: triggers.get_trigger([1]), TypeError, "trigger"),
        case("poison-mode", lambda: poison(X, Y, rate=0.1, mode=3), TypeError, "mode"),
        case("poison-rank", lambda: poison(X[..., None], Y, rate=0.1), ValueError, "x"),
        case("labels-rank", lambda: metrics.accuracy(Y[:, None], Y[:, None]), ValueError, "y_true"),
        case("model-input-size", lambda: model.to_model_input(np.zeros((2, 32, 32), np.uint8)), ValueError, "x"),
        case("asr-not-a-set", lambda: metrics.attack_success_rate(net(), (X, Y)), TypeError, "trojaned"),
        case("wrong-mask-dtype", lambda: metrics.per_class_error(Y, np.zeros(len(Y), int)), TypeError, "wrong"),
        case("recipe-train", lambda: AttackRecipe(train={"epochs": 1}), TypeError, "train"),
        case("recipe-mode", lambda: AttackRecipe(mode="some-to-some"), ValueError, "mode"),
        case("run-attack-recipe", lambda: attack.run_attack("L", data=DATA), TypeError, "recipe"),
        case("data-shape", lambda: attack.poisoned_training_set(TINY, (X, Y)), TypeError, "data"),
        case("choose-rate-item", lambda: sweep.choose_rate([0.01]), TypeError, "points[0]"),
        case("poison-needed-item", lambda: variants.poison_needed([("L", 0.1)]), TypeError, "rows[0]"),
        case("prune-scalar", lambda: defences.prune_channels(net(), 3), TypeError, "channels"),
        case("prune-layer", lambda: defences.prune_channels(net(), [0], layer="nope"), ValueError, "layer"),
        case("prune-dense", lambda: defences.prune_channels(net(), [0], layer="fc1"), ValueError, "layer"),
        case("prune-units-conv", lambda: defences.prune_units(net(), [0], layer="conv2"), ValueError, "layer"),
        case("fine-pruning-granularity", lambda: defences.fine_pruning(net(), X, Y, X, Y, TROJ, granularity="neuron"),
             ValueError, "granularity"),
        case("pruning-aware-granularity", lambda: adaptive.pruning_aware_attack(TINY, granularity="x", data=DATA),
             ValueError, "granularity"),
        case("grid-executor", lambda: grid.run_grid([(0, 1)], executor="spark", data=DATA), ValueError, "executor"),
        case("grid-pairs", lambda: grid.run_grid([(0, 0)], data=DATA), ValueError, "pairs"),
        case("grid-heatmaps-shape", lambda: plotting.grid_heatmaps(np.zeros((9, 9)), np.zeros((10, 10))), ValueError, "asr"),
        case("layer-outputs", lambda: analysis.layer_outputs(net(), "conv9", X), ValueError, "layer_name"),
        case("representations", lambda: defences.representations(net(), X, layer="nope"), ValueError, "layer"),
        case("channel-activity", lambda: defences.channel_activity(net(), X, layer="fc2"), ValueError, "layer"),
        case("fine-pruning-layer", lambda: defences.fine_pruning(net(), X, Y, X, Y, TROJ, layer=7), TypeError, "layer"),
        case("strip-model", lambda: defences.strip(None, X, X, X, X), TypeError, "model"),
        case("predict-model", lambda: metrics.predict(object(), X), TypeError, "model"),
        case("two-means-rank", lambda: defences.two_means(np.zeros(4)), ValueError, "z"),
        case("pgd-uint8", lambda: variants.pgd_linf(net(), X, Y), TypeError, "x"),
        case("figure-name", lambda: plotting.figure_path("../../etc/evil"), ValueError, "name"),
        case("figure-folder", lambda: plotting.figure_path("ok", folder=3), TypeError, "folder"),
        case("save-fig-fig", lambda: plotting.save_fig("not a figure", "x"), TypeError, "fig"),
        case("heatmap-dtype", lambda: plotting.confusion_heatmaps([np.zeros((10, 10))], ["a"]), TypeError, "matrices[0]"),
        case("heatmap-map-rank", lambda: plotting.position_heatmap(np.zeros(5), (0, 0)), ValueError, "asr_map"),
        case("too-many-curves", lambda: plotting.metric_curves([0], {str(i): [0.5] for i in range(8)}, "x"), ValueError,
             "series"),
        case("grid-too-wide", lambda: plotting.digit_grid([np.zeros((500, 28, 28), np.uint8)]), ValueError, "rows[0]"),
        case("strip-explorer", lambda: widgets.strip_explorer("result"), TypeError, "result"),
        case("mask-strings", lambda: triggers.Trigger("t", np.array([["a"]]), np.zeros((1, 1), np.uint8)), TypeError, "mask"),
        case("trigger-name", lambda: triggers.Trigger(3, np.ones((1, 1)), np.ones((1, 1), np.uint8)), TypeError, "name"),
        case("export-path", lambda: attack.export_deliverables("result", "out"), TypeError, "result"),
        case("build-name", lambda: model.build_badnets(name=5), TypeError, "name"),
        case("canvas-shape", lambda: triggers.l_trigger().canvas(image_shape=(28,)), TypeError, "image_shape"),
    ],
)
def test_wrong_kinds_ranks_and_names_are_rejected(fn, exc, param):
    raises(fn, exc, param)


# ---------------------------------------------------------- out of range


@pytest.mark.parametrize(
    "fn, exc, param",
    [
        case("labels", lambda: poison(X, Y + 10, rate=0.1), ValueError, "y"),
        case("poison-target", lambda: poison(X, Y, rate=0.1, target=10), ValueError, "target"),
        case("recipe-target", lambda: AttackRecipe(target=-1), ValueError, "target"),
        case("reverse-target", lambda: defences.reverse_engineer_trigger(net(), X, 10, steps=1), ValueError, "target"),
        case("backdoor-labels", lambda: poisoning.backdoor_labels(Y, 12, "all-to-one"), ValueError, "target"),
        case("num-classes", lambda: metrics.confusion_matrix(Y, Y, num_classes=5), ValueError, "y_true"),
        case("prune-channel-40", lambda: defences.prune_channels(net(), [40]), ValueError, "channels"),
        case("prune-unit-512", lambda: defences.prune_units(net(), [512]), ValueError, "units"),
        case("grid-target", lambda: grid.poison_source(X, Y, source=0, target=10, n_poisoned=1), ValueError, "target"),
        case("pruning-aware-max-drop", lambda: adaptive.pruning_aware_attack(TINY, max_drop=1.5, data=DATA), ValueError,
             "max_drop"),
        case("prune-negative", lambda: defences.prune_channels(net(), np.array([-1])), ValueError, "channels"),
        case("stamp-position", lambda: triggers.stamp(X, "L", (0, 27)), ValueError, "position"),
        case("recipe-position", lambda: AttackRecipe(position=(30, 0)), ValueError, "position"),
        case("region-position", lambda: analysis.trigger_region("L", (-1, 0)), ValueError, "position"),
        case("region-kernel", lambda: analysis.trigger_region("L", kernel=0), ValueError, "kernel"),
        case("heatmap-cell", lambda: plotting.position_heatmap(np.zeros((25, 26)), (30, 1)), ValueError, "trained_at"),
        case("asr-map-n", lambda: analysis.asr_by_position(net(), X, Y, n=1000), ValueError, "n"),
        case("split-n-val", lambda: poisoning.split_validation(X, Y, n_val=len(X)), ValueError, "n_val"),
        case("clean-label-n", lambda: variants.clean_label_attack(n_poison=10_000, perturb=False, recipe=TINY, data=DATA),
             ValueError, "n_poison"),
        case("trigger-explorer-n", lambda: widgets.trigger_explorer(X, n=1000), ValueError, "n"),
        case("position-explorer-n", lambda: widgets.position_explorer(net(), X, Y, n=1000), ValueError, "n"),
        case("position-explorer-target", lambda: widgets.position_explorer(net(), X, Y, target=11), ValueError, "target"),
        case("alpha-zero", lambda: triggers.stamp(X, "L", alpha=0), ValueError, "alpha"),
        case("mask-value", lambda: triggers.trigger_from_mask(np.eye(3), value=256), ValueError, "value"),
        case("mask-too-big", lambda: triggers.trigger_from_mask(np.ones((30, 2))), ValueError, "mask"),
        case("dpi", lambda: plotting.save_fig(plotting.digit_grid([X[:1]]), "x", dpi=0), ValueError, "dpi"),
        case("entropy-range", lambda: defences.prediction_entropy(np.full((1, 10), 2.0)), ValueError, "p"),
        case("n-components", lambda: defences.activation_clustering(None, X, Y, POISONED, silhouette_threshold=0.3, n_components=9, acts=ACTS),
             ValueError, "n_components"),
        case("per-class-bars", lambda: plotting.per_class_bars(np.full(10, 1.5), np.zeros(10)), ValueError, "clean_error"),
        case("highlight", lambda: plotting.filter_grid([np.zeros((5, 5, 16))], ["m"], highlight=[[16]]), ValueError,
             "highlight[0]"),
        case("box", lambda: plotting.activation_grid([np.zeros((24, 24, 16))], ["a"], box=(0, 0, 0, 2)), ValueError, "box"),
        case("flagged", lambda: plotting.mask_gallery(np.zeros((3, 28, 28)), np.zeros((3, 28, 28)), [1, 2, 3], [3]),
             ValueError, "flagged"),
        case("rate-explorer-start", lambda: widgets.rate_explorer([point(0.01)], {}, X, Y), ValueError, "results"),
    ],
)
def test_out_of_range_values_are_rejected(fn, exc, param):
    raises(fn, exc, param)


def test_messages_name_the_value_and_the_allowed_range():
    message = raises(lambda: defences.prune_channels(net(), [0, 40]), ValueError, "channels[1]")
    assert "40" in message and "0..31" in message
    message = raises(lambda: sweep.run_sweep([0.1, True], TINY, data=DATA), TypeError, "rates[1]")
    assert "True" in message and "[0, 1]" in message
    message = raises(lambda: defences.reverse_engineer_trigger(net(), X, 0, lr=-1.0, steps=1), ValueError, "lr")
    assert "-1" in message and "> 0" in message
    message = raises(lambda: defences.prune_channels(net(), [0], layer="nope"), ValueError, "layer")
    assert "'nope'" in message and "conv2" in message


def test_inconsistent_trojaned_labels_are_rejected_naming_the_image():
    bad = TROJ.y_target.copy()
    bad[3] = 5
    message = raises(lambda: TrojanedSet(TROJ.x, TROJ.y_true, bad, TROJ.source_indices, 0, "all-to-one"), ValueError,
                     "y_target[3]")
    assert "target 0" in message


def test_nothing_runs_when_a_rate_is_bad(tmp_path):
    """Validation happens before any model is trained or any file is written."""
    with pytest.raises(TypeError, match="rates"):
        sweep.run_sweep([0.0, 0.01, True], TINY, data=DATA, cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert math.isfinite(TINY.rate)

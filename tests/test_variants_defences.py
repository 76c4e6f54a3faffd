"""Attack variants and defences on small synthetic data and hand-made models."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import defences, variants
from helpers.attack import AttackRecipe
from helpers.model import build_badnets
from helpers.training import TrainConfig, fine_tune, make_deterministic
from helpers.triggers import stamp
from tests.conftest import synthetic


class Constant:
    """A 'model' returning fixed probabilities for every input."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, np.float32)

    def __call__(self, x, training=False):
        return np.repeat(self.probs[None], len(np.asarray(x)), axis=0)


def test_prediction_entropy():
    assert defences.prediction_entropy(np.eye(10)[[3]])[0] == pytest.approx(0, abs=1e-9)
    assert defences.prediction_entropy(np.full((1, 10), 0.1))[0] == pytest.approx(np.log(10))


def test_strip_threshold_and_rates():
    clean, trojan = np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.01, 0.02, 0.9])
    assert defences.strip_rates(clean, trojan, 0.55) == (0.25, pytest.approx(1 / 3))
    x, _ = synthetic(10)
    res = defences.strip(Constant(np.full(10, 0.1)), x, x, x, x, frr=0.1, n_overlay=3)
    assert res.clean_entropy == pytest.approx(np.full(10, np.log(10)), rel=1e-5)
    assert res.target_frr == 0.1


class ByBrightness:
    """A 'model' that is confident on bright images and unsure on dark ones: entropy falls with brightness."""

    def __call__(self, x, training=False):
        x = np.asarray(x, np.float32).reshape(len(x), -1).mean(axis=1)
        p = np.clip(x[:, None], 0.1, 1.0) * np.eye(10)[0] + (1 - np.clip(x[:, None], 0.1, 1.0)) * np.full(10, 0.1)
        return p / p.sum(axis=1, keepdims=True)


def test_strip_sets_the_threshold_on_calibration_images_and_measures_frr_on_others():
    rng = np.random.default_rng(0)
    calibrate = rng.integers(0, 60, (200, 28, 28)).astype(np.uint8)
    clean = rng.integers(0, 30, (100, 28, 28)).astype(np.uint8)  # darker: higher entropy, never rejected
    trojan = np.full((50, 28, 28), 250, np.uint8)
    pool = np.zeros((20, 28, 28), np.uint8)  # superimposing black leaves each image as it is
    res = defences.strip(ByBrightness(), calibrate, clean, trojan, pool, frr=0.05, n_overlay=2)
    assert res.threshold == pytest.approx(np.quantile(res.calibration_entropy, 0.05))
    assert np.mean(res.calibration_entropy < res.threshold) == pytest.approx(0.05, abs=0.01)
    assert res.frr == 0.0  # measured on the held-out clean images, not true by construction
    assert res.far == 0.0  # bright (trojaned) inputs all fall below the threshold


def test_strip_superimposition_saturates():
    x = np.full((1, 28, 28), 200, np.uint8)
    seen = []

    class Spy(Constant):
        def __call__(self, xb, training=False):
            seen.append(np.asarray(xb))
            return super().__call__(xb)

    defences.strip_entropy(Spy(np.eye(10)[0]), x, x, n_overlay=2)
    assert seen[0].max() == 1.0  # 200 + 200 saturates at 255


def test_two_means_separates_two_blobs():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.1, (50, 3)), rng.normal(5, 0.1, (10, 3))])
    labels = defences.two_means(z)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[-1]


def test_detection_scoring_and_clustering_find_a_planted_cluster():
    rng = np.random.default_rng(0)
    n = 200
    y = np.zeros(n, np.uint8)
    acts = rng.normal(0, 1, (n, 16))
    poisoned = np.zeros(n, bool)
    poisoned[:30] = True
    acts[poisoned] += 8.0  # the poison sits apart
    x = np.zeros((n, 28, 28), np.uint8)
    ac = defences.activation_clustering(None, x, y, poisoned, silhouette_threshold=0.3, acts=acts)
    assert ac.precision == 1.0 and ac.recall == 1.0 and ac.n_flagged == 30
    assert ac.clusters[0].suspicious and ac.clusters[0].smaller_fraction == pytest.approx(0.15)
    # the same split is not flagged when clean data separates as well (a higher clean silhouette)
    assert defences.activation_clustering(None, x, y, poisoned, silhouette_threshold=0.99, acts=acts).n_flagged == 0
    # one blob: 2-means still splits it, but the silhouette stays low and nothing is flagged
    blob = rng.normal(0, 1, (n, 16))
    plain = defences.activation_clustering(None, x, y, poisoned, silhouette_threshold=0.3, acts=blob)
    assert plain.n_flagged == 0 and plain.clusters[0].silhouette < 0.3
    ss = defences.spectral_signatures(None, x, y, poisoned, eps=0.1, acts=acts)
    assert ss.n_flagged == 30 and ss.precision == 1.0


def test_two_means_restarts_find_the_split_a_bad_start_misses():
    rng = np.random.default_rng(1)
    # the first coordinate's extremes are both in the big blob; the planted cluster differs in the second
    z = np.concatenate([rng.normal(0, 1, (300, 2)) * [2, 0.2], rng.normal(0, 0.2, (40, 2)) + [0, 6]])

    def found(labels):
        return len(set(labels[300:])) == 1 and (labels[:300] != labels[300]).all()

    assert not found(defences.two_means(z, n_init=1))  # the extremes start splits the big blob: a local optimum
    labels = defences.two_means(z, n_init=10)
    assert found(labels)
    assert np.array_equal(labels, defences.two_means(z, n_init=10))  # deterministic


def test_silhouette_matches_the_definition():
    z = np.array([[0.0], [1.0], [10.0], [12.0]])
    labels = np.array([0, 0, 1, 1])
    d = np.abs(z - z.T)
    expected = []
    for i in range(4):
        own = [j for j in range(4) if labels[j] == labels[i] and j != i]
        other = [j for j in range(4) if labels[j] != labels[i]]
        a, b = d[i, own].mean(), d[i, other].mean()
        expected.append((b - a) / max(a, b))
    assert defences.silhouette(z, labels) == pytest.approx(np.mean(expected))
    assert defences.silhouette(z, np.zeros(4, int)) == 0.0


def test_clean_silhouette_threshold_is_the_largest_clean_label():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 40).astype(np.uint8)
    acts = rng.normal(0, 1, (400, 8))
    acts[y == 3] += np.where(rng.random((40, 1)) < 0.5, 5.0, -5.0) * np.eye(8)[0]  # label 3 is bimodal
    x = np.zeros((400, 28, 28), np.uint8)
    threshold = defences.clean_silhouette_threshold(None, x, y, acts=acts)
    per_label = [defences.silhouette(*(lambda z: (z, defences.two_means(z)))(defences._pca(acts[y == c], 8)))
                 for c in range(10)]
    assert threshold == pytest.approx(max(per_label)) and int(np.argmax(per_label)) == 3


def test_exclusionary_reclassification_keeps_poison_and_clears_legitimate_clusters():
    n = 100
    x = np.zeros((n, 28, 28), np.uint8)
    x[50:] = 255  # bright images: a model trained without the flags calls them 7
    y = np.zeros(n, np.uint8)
    y[80:] = 1
    is_poisoned = np.zeros(n, bool)
    is_poisoned[50:80] = True
    flagged = np.zeros(n, bool)
    flagged[50:80] = True  # label 0: poison, reclassified as 7
    flagged[80:90] = True  # label 1: bright 1s, but the model calls them 7 too -> poison by the rule

    class Bright7(Constant):
        def __call__(self, xb, training=False):
            xb = np.asarray(xb).reshape(len(xb), -1).mean(axis=1)
            return np.where(xb[:, None] > 0.5, np.eye(10)[7], np.eye(10)[1]).astype(np.float32)

    det = defences.Detection(flagged, 0.0, 0.0, 0.0)
    res = defences.exclusionary_reclassification(Bright7(None), det, x, y, is_poisoned)
    assert [(r.label, r.own, r.other_label, r.legitimate) for r in res.rows] == [(0, 0, 7, False), (1, 0, 7, False)]
    x[80:] = 0  # now the 1s look like 1s to the model: a legitimate cluster
    res = defences.exclusionary_reclassification(Bright7(None), det, x, y, is_poisoned)
    assert [r.legitimate for r in res.rows] == [False, True]
    assert res.detection.n_flagged == 30 and res.detection.precision == 1.0 and res.detection.recall == 1.0


def test_cleanse_result_gates_failed_runs_and_flags_the_small_trigger():
    masks = np.zeros((10, 28, 28))
    for c, norm in enumerate([3, 10, 11, 12, 9, 10.5, 11, 10, 9.5, 1]):
        masks[c].flat[: int(norm * 10)] = 0.1
    success = np.full(10, 0.99)
    success[9] = 0.2  # class 9's tiny mask did not work: a failed optimisation, not a trigger
    res = defences.cleanse_result(masks, masks, success)
    assert res.flagged == [0] and not res.trusted[9] and np.isnan(res.index[9])
    assert res.index[0] == pytest.approx(defences.anomaly_index(res.norms[:9])[0])
    assert defences.cleanse_result(masks, masks, np.full(10, 0.5)).flagged == []  # nothing trusted, nothing flagged


def test_stamp_reversed_blends_in_pixel_space():
    x = np.full((2, 28, 28), 100, np.uint8)
    mask, pattern = np.zeros((28, 28)), np.ones((28, 28))
    mask[0, 0], mask[0, 1] = 1.0, 0.5
    out = defences.stamp_reversed(x, mask, pattern)
    assert out[0, 0, 0] == 255 and out[0, 0, 1] == 178 and out[0, 1, 1] == 100 and out.dtype == np.uint8


def test_anomaly_index_flags_the_low_outlier():
    idx = defences.anomaly_index([3.0, 10, 11, 12, 9, 10.5])
    assert idx[0] > 2 and (idx[1:] < 2).all()


def test_pruned_channels_output_zero_and_stay_pruned_when_fine_tuned():
    make_deterministic(0)
    model = build_badnets()
    x, y = synthetic(64)
    pruned = defences.prune_channels(model, [0, 5])
    from helpers.analysis import layer_outputs

    out = layer_outputs(pruned, "conv2", x)
    assert (out[..., [0, 5]] == 0).all() and (out[..., 1] != 0).any()
    tuned = fine_tune(pruned, x, y, epochs=1)
    kernel, bias = tuned.get_layer("conv2").get_weights()
    assert (kernel[..., [0, 5]] == 0).all() and (bias[[0, 5]] == 0).all()
    assert not np.array_equal(tuned.get_layer("conv2").get_weights()[0], pruned.get_layer("conv2").get_weights()[0])
    # the original model is untouched
    assert (np.asarray(model.get_layer("conv2").kernel)[..., 0] != 0).any()


def _pgd_case():
    """An untrained model and 16 synthetic images, as uint8 and as floats in [0, 1]."""
    make_deterministic(0)
    x, y = synthetic(16)
    return build_badnets(), x, y, x.astype(np.float32) / 255


def _assert_pgd_raises_the_loss(model, xf, adv, y):
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy()
    assert adv.shape == xf.shape and adv.min() >= 0 and adv.max() <= 1
    assert float(loss(y, model(adv[..., None]))) > float(loss(y, model(xf[..., None])))


def test_pgd_stays_in_the_ball_and_raises_the_loss():
    model, x, y, xf = _pgd_case()
    adv = variants.pgd_linf(model, xf, y, eps=0.1, step=0.05, steps=3)
    assert np.abs(adv - xf).max() <= 0.1 + 1e-6
    _assert_pgd_raises_the_loss(model, xf, adv, y)
    with pytest.raises(TypeError, match="float images"):
        variants.pgd_linf(model, x, y)


def test_pgd_l2_stays_in_the_l2_ball_and_raises_the_loss():
    model, x, y, xf = _pgd_case()
    adv = variants.pgd_l2(model, xf, y, eps=1.5, step=0.5, steps=6)
    dist = np.sqrt(((adv - xf) ** 2).sum(axis=(1, 2)))
    assert dist.max() <= 1.5 + 1e-4
    assert dist.mean() > 1.0  # six steps of 0.5 reach the boundary of the ball
    _assert_pgd_raises_the_loss(model, xf, adv, y)
    with pytest.raises(TypeError, match="float images"):
        variants.pgd_l2(model, x, y)
    with pytest.raises(ValueError, match="eps"):
        variants.pgd_l2(model, xf, y, eps=np.nan)


def test_reverse_engineer_trigger_returns_masks_in_range():
    make_deterministic(0)
    model = build_badnets()
    x, _ = synthetic(32)
    m, p, success = defences.reverse_engineer_trigger(model, x, 3, steps=5, batch_size=16)
    assert m.shape == p.shape == (28, 28) and 0 <= m.min() and m.max() <= 1 and 0 <= success <= 1


def test_poison_needed_reads_the_smallest_rate():
    rows = [variants.TriggerRow("L", r, int(r * 1000), asr, 0.99, asr) for r, asr in [(0.01, 0.9), (0.02, 0.995), (0.05, 0.999)]]
    rows.append(variants.TriggerRow("pixel", 0.05, 50, 0.5, 0.99, 0.5))
    need = variants.poison_needed(rows)
    assert need["L"].rate == 0.02 and need["pixel"] is None


def test_clean_label_keeps_every_label_and_poisons_only_the_target(tmp_path):
    x, y = synthetic(300)
    xt, yt = synthetic(40, seed=1)
    recipe = AttackRecipe(n_val=50, train=TrainConfig(epochs=0.2, batch_size=50))
    res = variants.clean_label_attack(n_poison=10, perturb=False, recipe=recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path)
    assert len(res.indices) == 10 and res.pgd_seconds == 0.0
    np.testing.assert_array_equal(res.x_poisoned, stamp(res.x_original, "L"))
    with pytest.raises(ValueError, match="n_poison must be in 1"):
        variants.clean_label_attack(n_poison=10_000, perturb=False, recipe=recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path)
    share = variants.clean_label_attack(share=0.5, perturb=False, recipe=recipe, data=((x, y), (xt, yt)), cache_dir=tmp_path)
    assert share.share == pytest.approx(0.5, abs=0.05) and share.epochs == 0.2 and share.mean_l2 == 0.0
    with pytest.raises(ValueError, match="n_poison or share, not both"):
        variants.clean_label_attack(n_poison=5, share=0.5, perturb=False, recipe=recipe, data=((x, y), (xt, yt)))
    with pytest.raises(ValueError, match="norm"):
        variants.clean_label_attack(norm="l1", recipe=recipe, data=((x, y), (xt, yt)))


def test_clean_label_perturbation_is_within_its_l2_budget(tmp_path):
    x, y = synthetic(300)
    xt, yt = synthetic(40, seed=1)
    recipe = AttackRecipe(n_val=50, train=TrainConfig(epochs=0.2, batch_size=50))
    res = variants.clean_label_attack(n_poison=8, eps=2.0, steps=5, step=0.5, recipe=recipe, data=((x, y), (xt, yt)),
                                      cache_dir=tmp_path)
    assert res.norm == "l2" and res.eps == 2.0 and 0 < res.mean_l2 <= 2.0 + 0.05  # uint8 rounding


def test_fine_tune_curve_starts_from_the_unchanged_model():
    make_deterministic(0)
    model = build_badnets()
    x, y = synthetic(64)
    from helpers.poisoning import trojan_test_set

    troj = trojan_test_set(x, y)
    before = model.get_weights()
    curve, tuned = variants.fine_tune_curve(model, x, y, x, y, troj, epochs=2)
    assert [e for e, _, _ in curve] == [0, 1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

"""Lesson 8's helpers (helpers.transfer) on small synthetic data: the splits are disjoint and right, every teacher
and student trains, caches and reloads identically, and bad input fails at the public boundary."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import transfer
from helpers.training import TrainConfig
from tests.conftest import synthetic

TINY = TrainConfig(epochs=0.3, batch_size=64)


@pytest.fixture(scope="module")
def data():
    return synthetic(1200), synthetic(300, seed=1)


@pytest.fixture(scope="module")
def splits(data):
    return transfer.make_splits(data, n_target=20)


def test_splits_are_disjoint_and_hold_the_right_classes(data, splits):
    (x_train, y_train), (x_test, y_test) = data
    assert set(np.unique(splits.teacher_y)) <= set(transfer.TEACHER_CLASSES)
    assert set(np.unique(splits.student_y)) <= set(range(len(transfer.STUDENT_CLASSES)))
    assert len(splits.target_x) == 20
    # no training image is both the attacker's and the victim's
    rows = {x.tobytes() for x in splits.teacher_x} | {x.tobytes() for x in splits.target_x}
    assert not rows & {x.tobytes() for x in splits.student_x}
    assert len(splits.test_x) == int(np.isin(y_test, transfer.STUDENT_CLASSES).sum())
    # the ASR set: the student's non-target test digits, stamped
    assert len(splits.trojan_test_x) == int(np.isin(y_test, (5, 6, 7, 8)).sum())


def test_teachers_and_students_train_cache_and_reload(splits, data, tmp_path):
    for kind in transfer.TEACHERS:
        teacher = transfer.train_teacher(kind, splits, config=TINY, cache_dir=tmp_path, data=data)
        again = transfer.train_teacher(kind, splits, config=TINY, cache_dir=tmp_path, data=data)
        assert again.from_cache and again.key == teacher.key
        np.testing.assert_array_equal(teacher.model.get_weights()[0], again.model.get_weights()[0])
        for mode in transfer.MODES:
            student = transfer.transfer(teacher, splits, mode, epochs=0.5, cache_dir=tmp_path)
            assert student.model.output_shape == (None, len(transfer.STUDENT_CLASSES))
            assert 0 <= student.asr <= 1 and 0 <= student.clean_accuracy <= 1
            reloaded = transfer.transfer(teacher, splits, mode, epochs=0.5, cache_dir=tmp_path)
            assert reloaded.from_cache and reloaded.asr == student.asr
            if mode == "frozen":  # the kept layers are the teacher's, unchanged
                np.testing.assert_array_equal(student.model.get_layer("conv1").get_weights()[0],
                                              teacher.model.get_layer("conv1").get_weights()[0])


def test_the_latent_loss_pulls_stamped_features_towards_the_target(splits, data, tmp_path):
    """With a strong feature term, the latent teacher puts L images closer to the 9s than a clean teacher does."""
    clean = transfer.train_teacher("clean", splits, config=TINY, cache_dir=tmp_path, data=data)
    latent = transfer.train_teacher("latent", splits, config=TINY, latent_weight=10.0, cache_dir=tmp_path, data=data)
    stamped = transfer.stamp(splits.teacher_x[:50], "L")
    assert (transfer.latent_distance(latent.model, stamped, splits.target_x)
            < transfer.latent_distance(clean.model, stamped, splits.target_x))


@pytest.mark.parametrize("call, err, match", [
    (lambda s, d: transfer.make_splits(d, n_target=0), ValueError, "n_target"),
    (lambda s, d: transfer.make_splits(d, n_target=10_000), ValueError, "n_target must be in 1.."),
    (lambda s, d: transfer.make_splits(d, seed=True), TypeError, "seed"),
    (lambda s, d: transfer.train_teacher("evil", s), ValueError, "kind"),
    (lambda s, d: transfer.train_teacher("clean", "splits"), TypeError, "splits must be a TransferSplits"),
    (lambda s, d: transfer.train_teacher("badnet", s, rate=np.nan), ValueError, "rate"),
    (lambda s, d: transfer.train_teacher("latent", s, latent_weight=-1.0), ValueError, "latent_weight"),
    (lambda s, d: transfer.train_teacher("latent", s, layer="conv9"), ValueError, "layer"),
    (lambda s, d: transfer.transfer("teacher", s), TypeError, "teacher must be a Teacher"),
])
def test_bad_input_fails_at_the_boundary(splits, data, call, err, match):
    with pytest.raises(err, match=match):
        call(splits, data)

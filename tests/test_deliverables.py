"""Exported model and trojaned test set: round trip, hash checks, no pickle, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import deliverables
from helpers.io import atomic_path
from helpers.model import build_badnets, to_model_input
from helpers.poisoning import trojan_test_set
from helpers.triggers import l_trigger
from tests.conftest import synthetic


@pytest.fixture(scope="module")
def model():
    from helpers.training import make_deterministic

    make_deterministic(0)
    return build_badnets()


def test_model_round_trip(tmp_path, model):
    path = tmp_path / "out" / "trojaned_model.keras"
    digest = deliverables.export_model(model, path)
    assert (tmp_path / "out" / "trojaned_model.keras.sha256").read_text() == f"{digest}  trojaned_model.keras\n"
    loaded = deliverables.load_model(path)
    x = to_model_input(synthetic(4)[0])
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
    assert sorted(p.name for p in path.parent.iterdir()) == ["trojaned_model.keras", "trojaned_model.keras.sha256"]


def test_modified_model_file_is_refused(tmp_path, model):
    path = tmp_path / "m.keras"
    deliverables.export_model(model, path)
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="was modified or is corrupt"):
        deliverables.load_model(path)


def test_missing_sidecar_is_an_error(tmp_path, model):
    path = tmp_path / "m.keras"
    deliverables.export_model(model, path)
    (tmp_path / "m.keras.sha256").unlink()
    with pytest.raises(deliverables.DeliverableError, match="cannot verify"):
        deliverables.load_model(path)


def test_wrong_suffixes_are_rejected(tmp_path, model):
    with pytest.raises(ValueError, match=r"\.keras"):
        deliverables.export_model(model, tmp_path / "m.h5")
    x, y = synthetic(20)
    with pytest.raises(ValueError, match=r"\.npz"):
        deliverables.export_trojaned_test_set(tmp_path / "t.pkl", trojan_test_set(x, y), l_trigger())


def test_trojaned_test_set_round_trip_without_pickle(tmp_path):
    x, y = synthetic(50)
    troj = trojan_test_set(x, y, target=0)
    path = tmp_path / "trojaned_test_set.npz"
    deliverables.export_trojaned_test_set(path, troj, l_trigger())
    with np.load(path, allow_pickle=False) as f:  # every array is plain data
        assert set(f.files) == set(deliverables.NPZ_KEYS)
    back = deliverables.load_trojaned_test_set(path)
    np.testing.assert_array_equal(back.trojaned.x, troj.x)
    np.testing.assert_array_equal(back.trojaned.y_true, troj.y_true)
    np.testing.assert_array_equal(back.trojaned.y_target, troj.y_target)
    assert back.trojaned.target == 0 and back.trojaned.mode == "all-to-one" and back.position == (1, 24)
    np.testing.assert_array_equal(back.trigger_mask, l_trigger().mask)


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]

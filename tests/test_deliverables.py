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


# ------------------------------------------------- corrupt and hostile files


def _resign(path):
    """Recompute the sidecar, as an attacker who edits a file would."""
    from helpers.io import sha256_file

    path.with_name(path.name + ".sha256").write_text(f"{sha256_file(path)}  {path.name}\n")
    return path


@pytest.fixture
def test_set(tmp_path):
    x, y = synthetic(30)
    path = tmp_path / "trojaned_test_set.npz"
    deliverables.export_trojaned_test_set(path, trojan_test_set(x, y, target=0), l_trigger())
    return path


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _rewrite(path, **changes):
    """Rewrite the test set with some arrays changed (None removes one) and a recomputed sidecar."""
    a = {**_arrays(path), **changes}
    np.savez_compressed(path, **{k: v for k, v in a.items() if v is not None})
    return _resign(path)


@pytest.mark.parametrize(
    "sidecar, fragment",
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("not-a-digest  m.keras\n", "64 hexadecimal digits"),
        ("ab" * 31 + "  m.keras\n", "64 hexadecimal digits"),
        ("g" * 64 + "  m.keras\n", "64 hexadecimal digits"),
        ("0" * 65 + "  m.keras\n", "64 hexadecimal digits"),
        ("0" * 64 + "\n" + "x" * 5000, "too long"),
    ],
)
def test_malformed_sidecars_raise_deliverable_errors(tmp_path, model, sidecar, fragment):
    path = tmp_path / "m.keras"
    deliverables.export_model(model, path)
    (tmp_path / "m.keras.sha256").write_text(sidecar)
    with pytest.raises(deliverables.DeliverableError, match=fragment) as err:
        deliverables.load_model(path)
    assert "m.keras.sha256" in str(err.value) and "export" in str(err.value)


def test_binary_sidecar_is_refused(tmp_path, model):
    path = tmp_path / "m.keras"
    deliverables.export_model(model, path)
    (tmp_path / "m.keras.sha256").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(deliverables.DeliverableError, match="m.keras.sha256"):
        deliverables.load_model(path)


@pytest.mark.parametrize("sha256, error", [("xyz", ValueError), ("0" * 63, ValueError), (12, TypeError), ("", ValueError)])
def test_a_bad_expected_digest_is_rejected(tmp_path, model, sha256, error):
    path = tmp_path / "m.keras"
    deliverables.export_model(model, path)
    with pytest.raises(error, match="sha256"):
        deliverables.load_model(path, sha256=sha256)


@pytest.mark.parametrize("damage", ["missing", "directory", "empty", "truncated", "not-a-zip", "wrong-suffix"])
def test_a_broken_model_file_raises_a_deliverable_error(tmp_path, model, damage):
    path = tmp_path / "m.keras"
    deliverables.export_model(model, path)
    if damage == "missing":
        path.unlink()
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "empty":
        path.write_bytes(b"")
        _resign(path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
        _resign(path)
    elif damage == "not-a-zip":
        path.write_bytes(b"definitely not a keras archive")
        _resign(path)
    elif damage == "wrong-suffix":
        path = path.rename(tmp_path / "m.zip")
    with pytest.raises(deliverables.DeliverableError) as err:
        deliverables.load_model(path)
    assert str(path) in str(err.value) and "export_model" in str(err.value)


def test_a_model_with_code_in_it_is_refused_by_safe_mode(tmp_path):
    import keras

    evil = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Flatten(),
                             keras.layers.Dense(10)])
    path = tmp_path / "m.keras"
    deliverables.export_model(evil, path)
    with pytest.raises(deliverables.DeliverableError, match="not a loadable Keras model.*safe_mode") as err:
        deliverables.load_model(path)
    assert str(path) in str(err.value)


def test_a_model_that_does_not_take_mnist_is_refused(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    path = tmp_path / "m.keras"
    deliverables.export_model(other, path)
    with pytest.raises(deliverables.DeliverableError, match=r"\(28, 28, 1\) images to 10 classes"):
        deliverables.load_model(path)


@pytest.mark.parametrize("damage", ["missing", "directory", "empty", "truncated", "not-a-zip", "single-array", "pickled",
                                    "garbage-member"])
def test_an_unreadable_test_set_raises_a_deliverable_error(test_set, damage):
    import zipfile

    path = test_set
    if damage == "missing":
        path.unlink()
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:400])
    elif damage == "not-a-zip":
        path.write_bytes(b"x,y\n1,2\n")
    elif damage == "single-array":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif damage == "pickled":
        _rewrite(path, y_true=np.array([object()] * 3, dtype=object))
    elif damage == "garbage-member":
        with zipfile.ZipFile(path, "w") as z:
            for key in deliverables.NPZ_KEYS:
                z.writestr(f"{key}.npy", b"not an array")
    if path.is_file():
        _resign(path)
    with pytest.raises(deliverables.DeliverableError) as err:
        deliverables.load_trojaned_test_set(path)
    assert str(path) in str(err.value) and "export_trojaned_test_set" in str(err.value)


CONTENT_DAMAGE = {
    "key-missing": (lambda a: {"trigger_mask": None}, "missing"),
    "x-float": (lambda a: {"x": a["x"].astype(np.float32)}, "x must be uint8"),
    "x-rank": (lambda a: {"x": a["x"][..., None]}, "x must have shape"),
    "x-size": (lambda a: {"x": np.zeros((len(a["x"]), 32, 32), np.uint8)}, "28x28"),
    "x-empty": (lambda a: {"x": a["x"][:0]}, "x is empty"),
    "y-true-length": (lambda a: {"y_true": a["y_true"][:-1]}, "y_true has"),
    "y-true-range": (lambda a: {"y_true": a["y_true"] + 10}, "y_true must hold labels in 0..9"),
    "y-target-float": (lambda a: {"y_target": a["y_target"].astype(float)}, "y_target must hold integer"),
    "indices-length": (lambda a: {"source_indices": a["source_indices"][:-1]}, "source_indices has"),
    "indices-negative": (lambda a: {"source_indices": -a["source_indices"] - 1}, "source_indices must hold indices"),
    "indices-repeated": (lambda a: {"source_indices": np.zeros_like(a["source_indices"])}, "distinct"),
    "target-range": (lambda a: {"target": np.int64(10)}, "target must be a class label"),
    "target-array": (lambda a: {"target": np.array([0, 1])}, "target must be a single integer"),
    "target-string": (lambda a: {"target": np.array("zero")}, "target must be a single integer"),
    "mode-unknown": (lambda a: {"mode": np.array("some-to-some")}, "mode must be one of"),
    "mode-number": (lambda a: {"mode": np.array(1)}, "mode must be a single string"),
    "y-target-inconsistent": (lambda a: {"y_target": (a["y_target"] + 1) % 10}, r"y_target\[0\]"),
    "wrong-mode-for-labels": (lambda a: {"mode": np.array("all-to-all")}, "all-to-all attack"),
    "target-in-y-true": (lambda a: {"y_true": np.where(np.arange(len(a["y_true"])) == 2, 0, a["y_true"]).astype(a["y_true"].dtype)},
                         r"y_true\[2\] is the target label"),
    "mask-3d": (lambda a: {"trigger_mask": a["trigger_mask"][None]}, "trigger_mask must be a non-empty 2-D"),
    "mask-empty": (lambda a: {"trigger_mask": np.zeros_like(a["trigger_mask"])}, "at least one pixel"),
    "mask-values": (lambda a: {"trigger_mask": a["trigger_mask"].astype(int) * 2}, "0/1"),
    "mask-huge": (lambda a: {"trigger_mask": np.ones((29, 3), bool), "trigger_pattern": np.zeros((29, 3), np.uint8)},
                  "does not fit"),
    "pattern-shape": (lambda a: {"trigger_pattern": a["trigger_pattern"][:2]}, "trigger_pattern must be uint8"),
    "pattern-dtype": (lambda a: {"trigger_pattern": a["trigger_pattern"].astype(np.int64)}, "trigger_pattern must be uint8"),
    "position-off-image": (lambda a: {"position": np.array([1, 26])}, r"col in 0\.\.25"),
    "position-negative": (lambda a: {"position": np.array([-1, 24])}, "off the 28x28 image"),
    "position-shape": (lambda a: {"position": np.array([1, 24, 3])}, "position must be two integers"),
    "position-float": (lambda a: {"position": np.array([1.0, 24.0])}, "position must be two integers"),
    "position-moved": (lambda a: {"position": np.array([2, 24])}, "image 0"),
    "alpha-nan": (lambda a: {"trigger_alpha": np.float64("nan")}, "trigger_alpha"),
    "alpha-zero": (lambda a: {"trigger_alpha": np.float64(0.0)}, "trigger_alpha"),
}


@pytest.mark.parametrize("damage", sorted(CONTENT_DAMAGE))
def test_inconsistent_content_is_refused_even_with_a_recomputed_sidecar(test_set, damage):
    change, fragment = CONTENT_DAMAGE[damage]
    _rewrite(test_set, **change(_arrays(test_set)))
    with pytest.raises(deliverables.DeliverableError, match=fragment) as err:
        deliverables.load_trojaned_test_set(test_set)
    assert str(test_set) in str(err.value) and "export_trojaned_test_set" in str(err.value)


@pytest.mark.parametrize("image", [0, 7])
def test_an_erased_trigger_is_found_naming_the_first_image(test_set, image):
    a = _arrays(test_set)
    x = a["x"].copy()
    x[image, 1:5, 24] = 0  # the L's vertical bar, painted over
    x[image + 3, 4, 26] = 17  # a later image damaged too: the first one is named
    _rewrite(test_set, x=x)
    with pytest.raises(deliverables.DeliverableError, match=rf"image {image} \(x\[{image}\]\) does not carry the recorded trigger") as err:
        deliverables.load_trojaned_test_set(test_set)
    assert str(test_set) in str(err.value)


def test_blended_test_set_round_trip_records_alpha_and_checks_the_blend(tmp_path):
    from helpers.triggers import blend_trigger

    x, y = synthetic(20)
    t = blend_trigger(alpha=0.2)
    troj = trojan_test_set(x, y, trigger=t)
    path = tmp_path / "blend.npz"
    deliverables.export_trojaned_test_set(path, troj, t)
    back = deliverables.load_trojaned_test_set(path)
    assert back.alpha == 0.2 and back.position == (0, 0)
    np.testing.assert_array_equal(back.trojaned.x, troj.x)
    a = _arrays(path)
    erased = a["x"].copy()
    erased[4] = np.where(t.pattern > 200, 0, erased[4])  # below alpha * pattern: cannot come from blending
    _rewrite(path, x=erased)
    with pytest.raises(deliverables.DeliverableError, match=r"image 4 \(x\[4\]\)"):
        deliverables.load_trojaned_test_set(path)


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"trigger": "pixel"}, ValueError, r"trojaned.x\[0\] does not carry the pixel trigger"),
        ({"position": (2, 24)}, ValueError, "does not carry"),
        ({"position": (30, 0)}, ValueError, "position"),
        ({"trigger": "star"}, ValueError, "trigger"),
        ({"trojaned": "not a set"}, TypeError, "trojaned"),
        ({"path": 3}, TypeError, "path"),
    ],
)
def test_export_refuses_a_test_set_that_does_not_match_its_trigger(tmp_path, kwargs, error, fragment):
    x, y = synthetic(20)
    args = {"path": tmp_path / "t.npz", "trojaned": trojan_test_set(x, y), "trigger": l_trigger(), **kwargs}
    with pytest.raises(error, match=fragment):
        deliverables.export_trojaned_test_set(**args)
    assert not (tmp_path / "t.npz").exists()


def test_export_deliverables_round_trip_on_a_tiny_attack(tmp_path):
    from helpers import attack
    from helpers.metrics import attack_success_rate
    from helpers.training import TrainConfig

    data = (synthetic(120), synthetic(30, seed=1))
    recipe = attack.AttackRecipe(rate=0.2, n_val=20, train=TrainConfig(epochs=0.2, batch_size=50))
    result = attack.run_attack(recipe, data=data, cache_dir=tmp_path / "cache", progress=False)
    paths = attack.export_deliverables(result, tmp_path / "out")
    model = deliverables.load_model(paths["model"])
    test_set = deliverables.load_trojaned_test_set(paths["test_set"])
    assert test_set.position == (1, 24) and test_set.alpha == 1.0
    assert attack_success_rate(model, test_set.trojaned) == pytest.approx(result.test.attack_success_rate)

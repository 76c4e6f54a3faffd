"""load_mnist: the lookup order, hash verification, read-only results and helpful errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from helpers import data
from helpers.io import sha256_array, sha256_file


@pytest.fixture(scope="session")
def shared_copy():
    """Path of the verified copy the suite runs on (found before any test changes the environment)."""
    return str(data.find_mnist())


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No MNIST_NPZ and an empty Keras home, so only what the test sets up is found."""
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path


def test_arrays_match_keras_layout_and_published_hashes(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for name, a in zip(["x_train", "y_train", "x_test", "y_test"], [x_train, y_train, x_test, y_test]):
        assert sha256_array(a) == data.MNIST_SHA256[name]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_results_are_read_only(mnist):
    (x_train, _), _ = mnist
    with pytest.raises(ValueError, match="read-only"):
        x_train[0, 0, 0] = 1


def test_source_file_is_never_written(shared_copy):
    before = (sha256_file(shared_copy), os.stat(shared_copy).st_mtime_ns)
    data.load_mnist(shared_copy)
    assert (sha256_file(shared_copy), os.stat(shared_copy).st_mtime_ns) == before


def test_explicit_path_wins_over_environment(monkeypatch, shared_copy, tmp_path):
    monkeypatch.setenv("MNIST_NPZ", str(tmp_path / "nowhere.npz"))
    (x_train, _), _ = data.load_mnist(shared_copy)
    assert x_train.shape == (60000, 28, 28)


def test_environment_variable_is_used(monkeypatch, shared_copy, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("MNIST_NPZ", shared_copy)
    assert data.find_mnist() == data.Path(shared_copy)


def test_environment_variable_pointing_nowhere_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_NPZ", str(tmp_path / "missing.npz"))
    with pytest.raises(data.MnistUnavailableError, match="MNIST_NPZ is set to .*missing.npz.*export MNIST_NPZ="):
        data.load_mnist()


def test_keras_cache_is_used_when_no_path_is_given(shared_copy, no_env, monkeypatch):
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    shutil.copy(shared_copy, cache)
    monkeypatch.setattr(data, "_download_with_keras", lambda: pytest.fail("must not download when the cache is valid"))
    assert data.find_mnist() == cache


def test_download_is_the_last_resort(shared_copy, no_env, monkeypatch):
    calls = []

    def fake_download():
        calls.append(1)
        cache = data.keras_cache_path()
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_copy, cache)
        return cache

    monkeypatch.setattr(data, "_download_with_keras", fake_download)
    assert data.find_mnist() == data.keras_cache_path()
    assert calls == [1]


def test_offline_without_a_copy_raises_with_instructions(no_env, monkeypatch):
    def offline():
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download_with_keras", offline)
    with pytest.raises(data.MnistUnavailableError) as err:
        data.load_mnist()
    message = str(err.value)
    assert "MNIST_NPZ" in message and "go online once" in message and "name resolution" in message


def test_tampered_copy_is_rejected_naming_the_array(mnist, tmp_path):
    (x_train, y_train), (x_test, y_test) = mnist
    evil = x_test.copy()
    evil[0, 1, 24] = 255  # one stamped pixel is enough
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=evil, y_test=y_test)
    with pytest.raises(data.MnistIntegrityError, match="x_test has SHA-256"):
        data.load_mnist(path)


def test_wrong_file_is_rejected(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(data.MnistIntegrityError, match="missing"):
        data.load_mnist(path)


def test_pickled_npz_is_refused(tmp_path, mnist):
    (x_train, y_train), (x_test, _) = mnist
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.array([object()] * 3, dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        data.load_mnist(path)


# ------------------------------------------------- corrupt and hostile files


def _small_npz(path, **overrides):
    """An .npz with the four MNIST keys but tiny (wrong) arrays: never MNIST, cheap to write."""
    arrays = {"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.zeros(2, np.uint8),
              "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8), **overrides}
    np.savez(path, **arrays)
    return path


def _not_an_npy_member(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for key in data.MNIST_SHA256:
            z.writestr(f"{key}.npy", b"this is not an .npy array")
    return path


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


def _npy(path):
    np.save(path, np.zeros(3))  # numpy appends .npy
    return path.with_name(path.name + ".npy")


CORRUPT = {
    "empty": lambda p: _write(p, b""),
    "not-a-zip": lambda p: _write(p, b"hello, I am a text file\n" * 10),
    "truncated-zip": lambda p: _write(p, _small_npz(p).read_bytes()[:300]),
    "zip-of-garbage": _not_an_npy_member,
    "pickled-object-arrays": lambda p: _small_npz(p, y_test=np.array([object()] * 2, dtype=object)),
    "single-npy-array": _npy,
    "wrong-shapes": _small_npz,
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_files_raise_integrity_errors_naming_the_file_and_the_fix(tmp_path, kind):
    path = CORRUPT[kind](tmp_path / "mnist.npz")
    with pytest.raises(data.MnistIntegrityError) as err:
        data.load_mnist(path)
    message = str(err.value)
    assert str(path.resolve()) in message and "MNIST_NPZ" in message
    assert not isinstance(err.value.__cause__, data.MnistIntegrityError)


def test_pickled_arrays_are_refused_without_unpickling(tmp_path):
    path = _small_npz(tmp_path / "evil.npz", x_train=np.array([{"payload": 1}], dtype=object))
    with pytest.raises(data.MnistIntegrityError, match="allow_pickle"):
        data.load_mnist(path)


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_a_path_without_a_file_says_so(tmp_path, make):
    path = tmp_path / "mnist.npz"
    if make == "directory":
        path.mkdir()
    with pytest.raises(data.MnistUnavailableError) as err:
        data.load_mnist(path)
    assert str(path) in str(err.value) and "MNIST_NPZ" in str(err.value)
    assert isinstance(err.value, data.MnistError)


@pytest.mark.parametrize("path, error", [(123, TypeError), (b"/tmp/mnist.npz", TypeError), ("", ValueError), ("  ", ValueError)])
def test_a_path_of_the_wrong_kind_is_rejected(path, error):
    with pytest.raises(error, match="path"):
        data.load_mnist(path)


@pytest.mark.parametrize("kind", ["wrong-shapes", "truncated-zip", "empty"])
def test_a_bad_keras_cache_is_reported_not_replaced(no_env, monkeypatch, kind):
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    CORRUPT[kind](cache)
    monkeypatch.setattr(data, "_download_with_keras", lambda: pytest.fail("a bad cached copy must not be replaced silently"))
    with pytest.raises(data.MnistIntegrityError) as err:
        data.load_mnist()
    message = str(err.value)
    assert "Keras cache" in message and str(cache) in message and "Delete it" in message and "MNIST_NPZ" in message
    assert cache.exists()  # reported, not deleted


def test_a_tampered_keras_cache_is_reported(mnist, no_env, monkeypatch):
    (x_train, y_train), (x_test, y_test) = mnist
    evil = x_test.copy()
    evil[5, 1:5, 24] = 255
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    np.savez(cache, x_train=x_train, y_train=y_train, x_test=evil, y_test=y_test)
    monkeypatch.setattr(data, "_download_with_keras", lambda: pytest.fail("must not download over a tampered copy"))
    with pytest.raises(data.MnistIntegrityError, match=r"Keras cache.*x_test has SHA-256.*Delete it"):
        data.find_mnist()

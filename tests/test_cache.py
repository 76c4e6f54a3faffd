"""The one cache: keys, refusals, durable writes, damaged entries, crashes and races.

Everything here uses tiny arrays; the model side (a real tiny training) is in
tests/test_training.py.
"""

from __future__ import annotations

import errno
import importlib
import json
import multiprocessing
import os
import re
import stat
import sys
import time
import warnings

import numpy as np
import pytest

from helpers import cache, io
from helpers.cache import CachedArrays, cached_arrays, entry_key

HERE = sys.modules[__name__]


class Compute:
    """A ``compute`` that counts its calls."""

    def __init__(self, n: int = 5):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return {"a": np.arange(self.n), "b": np.eye(2, dtype=np.float32)}


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def key(payload, name="demo", depends_on=(HERE,)):
    return entry_key("arrays", name, {"payload": payload}, depends_on).digest


# ------------------------------------------------------------------ hits, misses, layout


def test_miss_then_hit(tmp_path):
    compute = Compute()
    first = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert isinstance(first, CachedArrays) and not first.from_cache and compute.calls == 1
    arrays, seconds, hit = cached_arrays("demo", {"p": 1}, compute, tmp_path)  # still unpacks as a triple
    assert hit and compute.calls == 1 and seconds == round(first.seconds, 3)
    assert arrays.keys() == {"a", "b"} and arrays["a"].tolist() == [0, 1, 2, 3, 4] and arrays["b"].dtype == np.float32
    cached_arrays("demo", {"p": 2}, compute, tmp_path)
    assert compute.calls == 2  # another payload, another entry


def test_entry_layout(tmp_path):
    result = cached_arrays("demo", {"p": 1}, Compute(), tmp_path)
    stem = f"demo-{result.key[:32]}"
    meta = json.loads((tmp_path / f"{stem}.json").read_text())
    assert result.path.name == meta["file"] == f"{stem}-{meta['sha256'][:16]}.npz"
    assert files(tmp_path) == sorted([f"{stem}.json", result.path.name])  # no temporary or lock file left
    assert meta["key"] == result.key and meta["kind"] == "arrays" and meta["name"] == "demo"
    assert meta["inputs"] == {"payload": {"p": 1}} and meta["seconds"] >= 0
    assert meta["sources"] == {"tests.test_cache": cache.source_digests(HERE)["tests.test_cache"]}
    assert set(meta["versions"]) == {"helpers", "numpy", "tensorflow", "keras"}
    assert io.sha256_file(result.path) == meta["sha256"] and meta["bytes"] == result.path.stat().st_size
    assert result[0] is result.arrays and len(result) == 3


# ------------------------------------------------------------------ the key


def test_key_follows_every_input_but_not_dict_order():
    base = key({"a": 1, "b": {"c": [1, 2], "d": "x"}})
    assert key({"b": {"d": "x", "c": [1, 2]}, "a": 1}) == base  # order is irrelevant
    assert key({"a": 1, "b": {"c": (1, 2), "d": "x"}}) == base  # a tuple is a JSON list
    others = [
        key({"a": 2, "b": {"c": [1, 2], "d": "x"}}),
        key({"a": 1, "b": {"c": [2, 1], "d": "x"}}),
        key({"a": 1, "b": {"c": [1, 2], "d": "y"}}),
        key({"a": 1.0, "b": {"c": [1, 2], "d": "x"}}),  # 1 and 1.0 are different JSON
        key({"a": "1", "b": {"c": [1, 2], "d": "x"}}),  # and "1" differs from 1 (no default=str)
        key({"a": 1, "b": {"c": [1, 2], "d": "x"}}, name="other"),
        entry_key("model", "demo", {"payload": {"a": 1, "b": {"c": [1, 2], "d": "x"}}}, (HERE,)).digest,
    ]
    assert len({base, *others}) == len(others) + 1


def test_key_follows_the_source_code(monkeypatch):
    base = key({"p": 1})
    real = cache._source_text
    monkeypatch.setattr(cache, "_source_text", lambda obj: real(obj) + "\n# edited\n")
    assert key({"p": 1}) != base
    monkeypatch.undo()
    assert key({"p": 1}) == base
    assert key({"p": 1}, depends_on=(HERE, "helpers.io")) != base  # one more dependency
    assert key({"p": 1}, depends_on=("tests.test_cache",)) == base  # a module name is the module


def test_editing_a_source_file_changes_the_key(tmp_path, monkeypatch):
    (tmp_path / "cache_dependency.py").write_text("def step():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("cache_dependency")
    try:
        before = key({"p": 1}, depends_on=(module.step,))
        (tmp_path / "cache_dependency.py").write_text("def step():\n    return 1 + 1\n")
        assert key({"p": 1}, depends_on=(module.step,)) != before
    finally:
        sys.modules.pop("cache_dependency", None)


def test_default_dependency_is_the_module_of_compute(tmp_path):
    result = cached_arrays("demo", {"p": 1}, Compute(), tmp_path)
    assert result.key == key({"p": 1})  # Compute lives in this module


def test_key_follows_library_versions(monkeypatch):
    base = key({"p": 1})
    real = cache._installed_version
    for dist in ("tensorflow", "keras"):
        monkeypatch.setattr(cache, "_installed_version", lambda *names, d=dist: "0.0" if names[0] == d else real(*names))
        assert key({"p": 1}) != base, dist
        monkeypatch.undo()
    monkeypatch.setattr(np, "__version__", "0.0")
    assert key({"p": 1}) != base
    monkeypatch.undo()
    monkeypatch.setattr(cache, "__version__", "999")
    assert key({"p": 1}) != base
    monkeypatch.undo()
    assert key({"p": 1}) == base


def test_library_versions_are_the_imported_ones():
    import keras
    import tensorflow as tf

    assert cache.library_versions() == {"helpers": cache.__version__, "numpy": np.__version__,
                                        "tensorflow": tf.__version__, "keras": keras.__version__}


@pytest.mark.parametrize(
    "payload, error, match",
    [
        ({"n": np.int64(3)}, TypeError, r"payload\['n'\] is numpy.int64; convert it to int"),
        ({"n": np.float64(0.5)}, TypeError, r"payload\['n'\] is numpy.float64; convert it to float"),
        ({"n": [1, np.int32(2)]}, TypeError, r"payload\['n'\]\[1\] is numpy.int32"),
        ({"n": {1, 2}}, TypeError, r"payload\['n'\] is set; use a sorted list"),
        ({"n": object()}, TypeError, r"payload\['n'\] is object"),
        ({"n": np.zeros(3)}, TypeError, r"payload\['n'\] is numpy.ndarray; hash it"),
        ({"n": {1: "a"}}, TypeError, r"payload\['n'\] has the key 1 of type int"),
        ({"n": float("nan")}, ValueError, r"payload\['n'\] is nan"),
        ({"n": [float("-inf")]}, ValueError, r"payload\['n'\]\[0\] is -inf"),
        ("not a dict", TypeError, "payload must be a dict, got str"),
    ],
)
def test_non_json_input_is_refused_before_computing(tmp_path, payload, error, match):
    compute = Compute()
    with pytest.raises(error, match=match):
        cached_arrays("demo", payload, compute, tmp_path)
    assert compute.calls == 0 and list(tmp_path.iterdir()) == []


def test_self_containing_input_is_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        cache.check_json({"loop": loop}, "payload")


def test_bad_names_and_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cache entry name"):
        cached_arrays("../escape", {}, Compute(), tmp_path)
    with pytest.raises(TypeError, match="cannot read the source code of builtins.len"):
        cached_arrays("demo", {}, Compute(), tmp_path, depends_on=(len,))
    assert list(tmp_path.iterdir()) == []


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        cached_arrays("demo", {}, lambda: {"a": np.array([{}, None], dtype=object)}, tmp_path, depends_on=(HERE,))
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.npz"))


# ------------------------------------------------------------------ durable writes


@pytest.fixture
def io_events(monkeypatch):
    """Record os.fsync (of a file or a folder) and os.replace calls, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append(f"replace-{os.path.splitext(dst)[1]}")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_atomic_write_fsyncs_file_then_replaces_then_fsyncs_folder(tmp_path, io_events):
    io.atomic_write_text(tmp_path / "a.txt", "hello")
    assert io_events == ["fsync-file", "replace-.txt", "fsync-dir"]
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_cache_entry_writes_are_durable(tmp_path, io_events):
    cached_arrays("demo", {"p": 1}, Compute(), tmp_path)
    assert io_events == ["fsync-file", "replace-.npz", "fsync-dir", "fsync-file", "replace-.json", "fsync-dir"]


def test_folder_fsync_may_be_unsupported(tmp_path, monkeypatch):
    real = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not supported here")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    io.atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")

    def fsync(fd):
        raise OSError(errno.EIO, "disk error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="disk error"):
        io.atomic_write_text(target, "new")
    assert files(tmp_path) == ["a.txt"] and target.read_text() == "old"


def test_unwritable_result_is_returned_with_a_warning(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "no space left")

    monkeypatch.setattr(cache, "durable_replace", full)
    with pytest.warns(UserWarning, match="could not store"):
        result = cached_arrays("demo", {"p": 1}, Compute(), tmp_path)
    assert result.arrays["a"].tolist() == [0, 1, 2, 3, 4] and result.path is None and files(tmp_path) == []


# ------------------------------------------------------------------ damaged entries and crashes


def _damage(folder, how):
    sidecar = next(folder.glob("*.json"))
    meta = json.loads(sidecar.read_text())
    payload = folder / meta["file"]
    if how == "missing-payload":
        payload.unlink()
    elif how == "truncated-payload":
        payload.write_bytes(payload.read_bytes()[:40])
    elif how == "garbage-payload":
        payload.write_bytes(b"garbage")
    elif how == "corrupt-sidecar":
        sidecar.write_text("{not json")
    elif how == "another-key":
        sidecar.write_text(json.dumps({**meta, "key": "0" * 64}))
    elif how == "escaping-file-name":
        sidecar.write_text(json.dumps({**meta, "file": "../" + meta["file"]}))


@pytest.mark.parametrize(
    "how, match",
    [
        ("missing-payload", "payload .* is missing"),
        ("truncated-payload", "has SHA-256"),
        ("garbage-payload", "has SHA-256"),
        ("corrupt-sidecar", "not valid JSON"),
        ("another-key", "belongs to another key"),
        ("escaping-file-name", "names no valid payload file"),
    ],
)
def test_damaged_entry_warns_once_is_recomputed_and_overwritten(tmp_path, how, match):
    compute = Compute()
    cached_arrays("demo", {"p": 1}, compute, tmp_path)
    _damage(tmp_path, how)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert re.search(f"unusable.*{match}.*recomputing", str(caught[0].message))
    assert not again.from_cache and compute.calls == 2 and again.arrays["a"].tolist() == [0, 1, 2, 3, 4]
    hit = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert hit.from_cache and compute.calls == 2
    assert len(list(tmp_path.glob("*.npz"))) == 1  # the damaged payload is gone


def test_crash_between_payload_and_sidecar(tmp_path, monkeypatch):
    compute = Compute()

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash before the sidecar")

    monkeypatch.setattr(cache, "atomic_write_json", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # an orphan payload, no sidecar, no lock
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an orphan is a plain miss
        again = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert not again.from_cache and compute.calls == 2
    assert files(tmp_path) == sorted([again.path.name, f"demo-{again.key[:32]}.json"])  # orphan removed
    assert cached_arrays("demo", {"p": 1}, compute, tmp_path).from_cache and compute.calls == 2


def test_waiting_for_a_held_lock_times_out_instead_of_deadlocking(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "LOCK_TIMEOUT", 0.3)
    compute = Compute()
    k = entry_key("arrays", "demo", {"payload": {"p": 1}}, (HERE,))
    with cache._key_lock(tmp_path, k) as locked:  # as if another process were computing
        assert locked
        with pytest.warns(UserWarning, match="waited 0 s for another process"):
            result = cached_arrays("demo", {"p": 1}, compute, tmp_path)
    assert not result.from_cache and compute.calls == 1
    assert cached_arrays("demo", {"p": 1}, compute, tmp_path).from_cache
    assert not list(tmp_path.glob(".*"))  # the lock file went with its holder


# ------------------------------------------------------------------ other processes

COMPUTED, LOADED, WRONG = 10, 11, 12


def _slow_compute(marks, barrier=None):
    def compute():
        (marks / f"{os.getpid()}-{time.monotonic_ns()}").touch()  # count the computations
        if barrier is not None:
            barrier.wait(timeout=120)  # both processes are computing at once
        time.sleep(1.0)
        return {"a": np.arange(1000), "b": np.full((3, 3), 7, np.uint8)}

    return compute


def _valid(arrays) -> bool:
    return arrays["a"].tolist() == list(range(1000)) and (arrays["b"] == 7).all() and arrays["b"].dtype == np.uint8


def _worker(folder, marks, barrier, mode):
    """Run in a spawned process: compute the shared entry; the exit code says how it went."""
    if mode == "no-lock":
        cache.fcntl = None
    elif mode == "die-before-sidecar":
        cache.atomic_write_json = lambda *args, **kwargs: os._exit(3)
    if barrier is not None and mode != "no-lock":
        barrier.wait(timeout=120)  # both processes ask at once
    compute = _slow_compute(marks, barrier if mode == "no-lock" else None)
    result = cached_arrays("race", {"n": 1000}, compute, folder)
    sys.exit(WRONG if not _valid(result.arrays) else LOADED if result.from_cache else COMPUTED)


def _run_workers(tmp_path, mode, n):
    ctx = multiprocessing.get_context("spawn")
    folder, marks = tmp_path / "cache", tmp_path / "marks"
    marks.mkdir()
    barrier = ctx.Barrier(n) if n > 1 else None
    procs = [ctx.Process(target=_worker, args=(folder, marks, barrier, mode)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    codes = sorted(p.exitcode for p in procs)
    return folder, len(list(marks.iterdir())), codes


def _parent_call(folder):
    def must_not_run():
        raise AssertionError("the entry should be in the cache")

    return cached_arrays("race", {"n": 1000}, must_not_run, folder)


def test_two_processes_racing_on_one_key_with_the_lock(tmp_path):
    folder, computed, codes = _run_workers(tmp_path, "lock", 2)
    assert codes == [COMPUTED, LOADED] and computed == 1  # the second waited, then loaded
    hit = _parent_call(folder)
    assert hit.from_cache and _valid(hit.arrays)
    assert [p.suffix for p in sorted(folder.iterdir())] in ([".json", ".npz"], [".npz", ".json"])


def test_two_processes_racing_on_one_key_without_the_lock(tmp_path):
    folder, computed, codes = _run_workers(tmp_path, "no-lock", 2)
    assert codes == [COMPUTED, COMPUTED] and computed == 2  # both computed, both succeeded
    hit = _parent_call(folder)
    assert hit.from_cache and _valid(hit.arrays)
    assert len(list(folder.glob("*.json"))) == 1 and 1 <= len(list(folder.glob("*.npz"))) <= 2
    assert not list(folder.glob(".*"))  # no temporary files


def test_a_killed_writer_leaves_no_stale_lock_and_no_broken_entry(tmp_path, monkeypatch):
    folder, computed, codes = _run_workers(tmp_path, "die-before-sidecar", 1)
    assert codes == [3] and computed == 1
    assert list(folder.glob(".*.lock")) and list(folder.glob("*.npz")) and not list(folder.glob("*.json"))
    monkeypatch.setattr(cache, "LOCK_TIMEOUT", 30.0)
    marks = tmp_path / "marks"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "waited for another process", no "unusable"
        again = cached_arrays("race", {"n": 1000}, _slow_compute(marks), folder)
    assert not again.from_cache and _valid(again.arrays) and len(list(marks.iterdir())) == 2
    assert files(folder) == sorted([again.path.name, f"race-{again.key[:32]}.json"])  # orphan and lock gone
    assert _parent_call(folder).from_cache

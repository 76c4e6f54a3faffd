"""The course's one on-disk cache, for trained models and for computed arrays.

Training a model or running PGD / Neural Cleanse takes seconds to minutes, so
every such result is stored once and loaded afterwards. The cache must never
hand back a stale or damaged result, and never get stuck on one, so:

**The key** is the SHA-256 of canonical JSON (sorted keys, no spaces, ASCII,
no NaN) of a *key document* holding everything the result depends on:

* ``inputs``: what the caller says determines it (for a model: the hashes,
  dtypes and shapes of the training arrays, the ``TrainConfig``, the
  architecture and ``describe``; for arrays: the caller's ``payload``);
* ``kind`` and ``name`` of the entry;
* ``sources``: the SHA-256 of the source code the computation runs (for a
  model: ``helpers/training.py`` and ``helpers/model.py``; for arrays: what
  the caller passes as ``depends_on``), so editing the code invalidates the
  entries it produced;
* ``versions``: helpers, NumPy, TensorFlow and Keras (a new TensorFlow may
  give other weights; a new Keras may not read old files).

Inputs must be plain JSON (dict with str keys, list, tuple, str, int, float,
bool, None). Anything else, e.g. a ``numpy.int64``, is refused with a
``TypeError`` naming where it sits, and NaN or infinity with a ``ValueError``,
*before* anything is computed. (Converting with ``default=str`` would make
``1`` and ``"1"`` the same key, and a value that cannot be written would be
found only after the training run.)

**An entry** ``<name>-<key[:32]>`` in the cache folder is two files:

* the payload, named by its content: ``<name>-<key[:32]>-<sha256[:16]>.keras``
  (or ``.npz``);
* the sidecar ``<name>-<key[:32]>.json``, the commit record: the key, the
  payload's file name and SHA-256, the compute time in seconds and the key
  document (for a human reading the cache folder).

Both are written atomically and durably (see :mod:`helpers.io`), the payload
first. A reader trusts only a sidecar for its key whose payload exists and
hashes right; anything else is a miss (with a warning when a sidecar exists
but is unusable), recomputed and overwritten. A crash after the payload but
before the sidecar leaves an orphan payload: a plain miss. Two writers racing
on one key each write their own complete payload and sidecar; the last
``os.replace`` wins and both runs succeed.

**A lock** (``fcntl.flock`` on ``.<name>-<key[:32]>.lock``, where available)
makes the second of two racing processes wait and then load the first one's
entry instead of computing it again. The OS releases it when a process dies,
so a crash never leaves a stale lock; after ``LOCK_TIMEOUT`` seconds a waiter
gives up and computes anyway (still safe, see above). Only while holding the
lock does a writer delete its key's orphan payloads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import math
import os
import re
import time
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from ._checks import check_number
from ._tf import import_tensorflow
from .io import atomic_write_json, durable_replace, sha256_file, temporary_path

try:  # POSIX only; elsewhere racing writers simply both compute
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: Bumped when the entry layout or key document changes; it enters every key.
CACHE_FORMAT = 2
#: Seconds a process waits for another one computing the same entry before computing it too.
LOCK_TIMEOUT = 30 * 60.0
#: Age after which a temporary file of a key counts as left behind by a killed writer.
STALE_TEMP_SECONDS = 3600.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_JSON_SCALARS = (str, int, float, bool, type(None))


def default_cache_dir() -> Path:
    """``$BADNETS_CACHE`` if set; else ``.cache/models`` in the project checkout; else ``~/.cache/badnets-course``."""
    env = os.environ.get("BADNETS_CACHE")
    if env:
        return Path(env)
    project = Path(__file__).resolve().parent.parent
    if (project / "pyproject.toml").is_file():
        return project / ".cache" / "models"
    return Path.home() / ".cache" / "badnets-course"


# ------------------------------------------------------------------ the key


def _type_name(obj) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _json_hint(obj) -> str:
    """How to turn ``obj`` into plain JSON, for the error message."""
    if isinstance(obj, (np.bool_, bool)):
        return "convert it to bool"
    if isinstance(obj, (np.integer, int)):
        return "convert it to int"
    if isinstance(obj, (np.floating, float)):
        return "convert it to float"
    if isinstance(obj, (str, np.str_)):
        return "convert it to str"
    if isinstance(obj, np.ndarray):
        return "hash it with helpers.io.sha256_array, or convert it with .tolist() if it is small"
    if isinstance(obj, (set, frozenset)):
        return "use a sorted list"
    if isinstance(obj, os.PathLike):
        return "convert it to str"
    if isinstance(obj, (bytes, bytearray)):
        return "decode it, or hash it"
    return "describe it with dict, list, str, int, float, bool or None"


def check_json(obj, where: str = "value", _path: tuple = ()) -> None:
    """Raise unless ``obj`` is plain JSON: ``TypeError`` for another type, ``ValueError`` for NaN or infinity.

    Types must match exactly (a ``numpy.float64`` is refused although it is a
    ``float``): the key must not depend on how a value happens to be stored.
    The message names the offending item as ``where['key'][index]``.
    """
    if type(obj) in _JSON_SCALARS:
        if type(obj) is float and not math.isfinite(obj):
            raise ValueError(f"{where} is {obj!r}; cache keys take only finite numbers (JSON has no NaN or infinity)")
        return
    if id(obj) in _path:
        raise ValueError(f"{where} contains itself; cache keys must be trees of plain JSON values")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if type(k) is not str:
                raise TypeError(f"{where} has the key {k!r} of type {_type_name(k)}; cache keys take only str dict keys")
            check_json(v, f"{where}[{k!r}]", (*_path, id(obj)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_json(v, f"{where}[{i}]", (*_path, id(obj)))
    else:
        raise TypeError(f"{where} is {_type_name(obj)}; {_json_hint(obj)} "
                        f"(cache keys take only dict, list, tuple, str, int, float, bool and None)")


def canonical_json(obj, where: str = "value") -> str:
    """The one JSON text of ``obj`` that the key hashes: checked, sorted keys, no spaces, ASCII, no NaN."""
    check_json(obj, where)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _source_text(obj) -> str:
    """The source code of a module, class or function (a seam for tests)."""
    return inspect.getsource(obj)


def _qualified_name(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def source_digests(depends_on) -> dict[str, str]:
    """``{qualified name: SHA-256 of its source}`` for each module, class or function in ``depends_on``.

    A ``str`` is a module name (imported). A single object may be passed
    without a tuple. Raises ``TypeError`` for objects without readable source
    (built-ins, code typed into a plain REPL).
    """
    if isinstance(depends_on, (str, types.ModuleType)) or callable(depends_on):
        depends_on = (depends_on,)
    digests = {}
    for obj in depends_on:
        if isinstance(obj, str):
            obj = importlib.import_module(obj)
        name = _qualified_name(obj)
        try:
            text = _source_text(obj)
        except (OSError, TypeError) as exc:
            raise TypeError(f"cannot read the source code of {name} ({exc}); depends_on takes modules, "
                            f"module names, classes and functions defined in files or notebook cells") from None
        digests[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digests


def default_depends_on(compute: Callable) -> tuple:
    """What a computation depends on when the caller does not say: the module defining ``compute``.

    Where that module has no source file (a notebook or REPL defines
    ``compute`` in ``__main__``) it is ``compute`` itself. Either way the
    helpers it calls in *other* modules are not covered: pass them in
    ``depends_on`` explicitly.
    """
    module = inspect.getmodule(compute)
    for candidate in (module, compute):
        if candidate is None:
            continue
        try:
            _source_text(candidate)
        except (OSError, TypeError):
            continue
        return (candidate,)
    raise TypeError(f"cannot read the source code of {_qualified_name(compute)} or of its module; "
                    f"pass depends_on=(module_or_function, ...) naming the code the computation runs "
                    f"(or depends_on=() if none)")


@functools.lru_cache(maxsize=None)
def _installed_version(*distributions: str) -> str:
    """The version of the first installed distribution of ``distributions``, read without importing it."""
    for dist in distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return "not installed"


def library_versions() -> dict[str, str]:
    """helpers, NumPy, TensorFlow and Keras versions; all enter every key.

    TensorFlow's and Keras' come from the installed package metadata, so an
    array cache lookup does not have to import TensorFlow.
    """
    return {
        "helpers": __version__,
        "numpy": np.__version__,
        "tensorflow": _installed_version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
        "keras": _installed_version("keras", "keras-nightly"),
    }


@dataclass(frozen=True)
class EntryKey:
    """A cache key: ``digest`` is the SHA-256 of the canonical JSON of ``document``."""

    digest: str
    document: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.document["name"]

    @property
    def stem(self) -> str:
        """The entry's file-name stem, ``<name>-<digest[:32]>``."""
        return f"{self.name}-{self.digest[:32]}"


def entry_key(kind: str, name: str, inputs: Mapping, depends_on) -> EntryKey:
    """Check ``inputs`` and hash them with ``kind``, ``name``, the sources of ``depends_on`` and the versions.

    Each item of ``inputs`` is checked under its own name, so an error reads
    e.g. ``describe['target'] is numpy.int64; convert it to int``. This does
    no I/O beyond reading source files, so call it before computing anything.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"cache entry name must be 1-64 letters, digits, '.', '_' or '-' "
                         f"(starting with a letter or digit), got {name!r}")
    if not isinstance(inputs, Mapping):
        raise TypeError(f"cache inputs must be a dict, got {_type_name(inputs)}")
    for k, v in inputs.items():
        if type(k) is not str:
            raise TypeError(f"cache input names must be str, got {k!r}")
        check_json(v, k)
    document = {
        "cache_format": CACHE_FORMAT,
        "kind": kind,
        "name": name,
        "inputs": dict(inputs),
        "sources": source_digests(depends_on),
        "versions": library_versions(),
    }
    text = canonical_json(document, "key document")
    # Keep a copy of what was hashed, so later changes to the caller's dicts cannot reach the sidecar.
    return EntryKey(hashlib.sha256(text.encode("ascii")).hexdigest(), json.loads(text))


# ------------------------------------------------------------------ codecs


@dataclass(frozen=True)
class Codec:
    """How one kind of payload is checked, written and read."""

    kind: str  #: "model" or "arrays"
    suffix: str  #: the payload's file suffix (Keras and NumPy insist on theirs)
    redo: str  #: the verb for the warning ("retraining", "recomputing")
    prepare: Callable  #: validate / normalise a computed value before writing it
    save: Callable  #: (value, path) -> None
    load: Callable  #: (verified path) -> value


def _prepare_arrays(arrays) -> dict[str, np.ndarray]:
    """A ``{name: array}`` dict of plain (non-object) arrays, or ``TypeError``: the cache never pickles."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"compute() must return a dict of numpy arrays, got {_type_name(arrays)}")
    out = {}
    for k, v in arrays.items():
        if type(k) is not str:
            raise TypeError(f"compute() returned the array name {k!r}; names must be str")
        a = np.asarray(v)
        if a.dtype.hasobject:
            raise TypeError(f"compute() returned array {k!r} of dtype {a.dtype}; the cache stores only "
                            f"numeric, bool and string arrays (object arrays would need pickle)")
        out[k] = a
    return out


def _save_arrays(arrays: dict, path: Path) -> None:
    np.savez_compressed(path, **arrays)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _save_model(model, path: Path) -> None:
    model.save(path)


def load_keras(path: str | os.PathLike):
    """Load a ``.keras`` file in safe mode (no arbitrary code from the file), uncompiled.

    Verify its hash first (:func:`verify_file`): safe mode guards against code,
    not against a swapped file.
    """
    _, keras = import_tensorflow()  # quietly: no C++ start-up log in the output

    return keras.saving.load_model(path, compile=False, safe_mode=True)


ARRAYS = Codec("arrays", ".npz", "recomputing", _prepare_arrays, _save_arrays, _load_arrays)
MODEL = Codec("model", ".keras", "retraining", lambda model: model, _save_model, load_keras)


def verify_file(path: str | os.PathLike, sha256: str) -> None:
    """Raise ``ValueError`` unless the file at ``path`` has SHA-256 ``sha256``."""
    actual = sha256_file(path)
    if actual != sha256:
        raise ValueError(f"{path} has SHA-256 {actual}, expected {sha256}; refusing to load it")


# ------------------------------------------------------------------ entries


@dataclass
class CacheResult:
    """A value from the cache (``from_cache``) or just computed, with where it is stored.

    ``path`` and ``sidecar`` are None only when the value could not be written
    (a warning said why). ``seconds`` is the compute time, also on a hit.
    """

    value: object
    key: EntryKey
    path: Path | None
    sidecar: Path | None
    sha256: str | None
    seconds: float
    from_cache: bool


class _Unusable(Exception):
    """A sidecar exists but does not lead to a valid payload."""


def _read_entry(folder: Path, key: EntryKey, codec: Codec, warn: bool) -> CacheResult | None:
    """The entry's value if its sidecar is for ``key`` and its payload exists and verifies; else None.

    A missing sidecar is a silent miss; an unusable one warns (when ``warn``).
    """
    sidecar = folder / f"{key.stem}.json"
    try:
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:  # bad JSON or bad UTF-8
            raise _Unusable(f"its sidecar is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("key") != key.digest:
            raise _Unusable("its sidecar belongs to another key")
        sha, name = meta.get("sha256"), meta.get("file")
        if not (isinstance(sha, str) and _HEX64.fullmatch(sha) and name == f"{key.stem}-{sha[:16]}{codec.suffix}"):
            raise _Unusable("its sidecar names no valid payload file")
        path = folder / name
        if not path.is_file():
            raise _Unusable(f"its payload {name} is missing")
        verify_file(path, sha)
        value = codec.load(path)
        seconds = float(meta.get("seconds", 0.0))
    except Exception as exc:  # _Unusable, a hash mismatch, a file Keras or NumPy cannot read, ...
        if warn:
            warnings.warn(f"{codec.kind} cache entry {sidecar.name} is unusable ({exc}); {codec.redo}", stacklevel=4)
        return None
    return CacheResult(value, key, path, sidecar, sha, seconds, True)


def _write_entry(folder: Path, key: EntryKey, codec: Codec, value, seconds: float) -> tuple[Path, Path, str]:
    """Write the payload under its content name, then commit the sidecar; return (payload, sidecar, sha256)."""
    with temporary_path(folder, f".{key.stem}.", codec.suffix) as tmp:
        codec.save(value, tmp)
        sha, size = sha256_file(tmp), tmp.stat().st_size
        path = folder / f"{key.stem}-{sha[:16]}{codec.suffix}"
        durable_replace(tmp, path)
    sidecar = folder / f"{key.stem}.json"
    record = {
        **key.document,
        "key": key.digest,
        "file": path.name,
        "sha256": sha,
        "bytes": size,
        "seconds": round(seconds, 3),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(sidecar, record)  # the commit: from here on the entry exists
    return path, sidecar, sha


def _remove_orphans(folder: Path, key: EntryKey, codec: Codec, keep: str) -> None:
    """Delete this key's payloads other than ``keep`` (left by crashes or replaced entries),
    and its temporary files older than ``STALE_TEMP_SECONDS`` (left by killed writers).

    Safe only under the key's lock: then no other writer of this key is
    between writing its payload and committing its sidecar. (A writer that
    gave up waiting for the lock may be; at worst its entry is then a miss.)
    """
    for path in folder.glob(f"{key.stem}-{'[0-9a-f]' * 16}{codec.suffix}"):
        if path.name != keep:
            with contextlib.suppress(OSError):
                path.unlink()
    for path in folder.glob(f".{key.stem}.*"):
        with contextlib.suppress(OSError):
            if path.suffix != ".lock" and time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS:
                path.unlink()


def _acquire(path: Path, deadline: float) -> int | None:
    """An fd holding an exclusive ``flock`` on the file now at ``path``, or None on timeout.

    The holder unlinks the lock file before releasing it, so after locking we
    check that the file we locked is still the one at ``path``; if not, we
    locked a removed file and try again on the new one.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        return None
                    time.sleep(0.05)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def _key_lock(folder: Path, key: EntryKey, timeout: float | None = None):
    """Hold the key's lock; yield True, or False where locking is unavailable, fails or times out."""
    if fcntl is None:
        yield False
        return
    path = folder / f".{key.stem}.lock"
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    try:
        fd = _acquire(path, time.monotonic() + timeout)
    except OSError as exc:  # e.g. a read-only cache folder
        warnings.warn(f"cannot lock {path.name} ({exc}); computing without the lock", stacklevel=5)
        fd = None
    else:
        if fd is None:
            warnings.warn(f"waited {timeout:.0f} s for another process computing {key.stem}; "
                          f"computing it here too", stacklevel=5)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: see _acquire
        os.close(fd)  # releases the lock


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` as a Path, or :func:`default_cache_dir` when None."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def load_or_compute(key: EntryKey, codec: Codec, compute: Callable[[], object],
                    cache_dir: str | os.PathLike | None = None, *, min_seconds: float = 0.0) -> CacheResult:
    """The entry for ``key`` from the cache, or ``compute()`` it and store it.

    Compute the key (:func:`entry_key`) before calling this, so bad inputs fail
    before any work. If the result cannot be written (disk full, read-only
    folder) it is still returned, with a warning. A result computed in less
    than ``min_seconds`` is returned without being stored (not worth a file).
    """
    min_seconds = check_number(min_seconds, "min_seconds", 0.0)
    folder = resolve_cache_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    hit = _read_entry(folder, key, codec, warn=True)
    if hit is not None:
        return hit
    with _key_lock(folder, key) as locked:
        hit = _read_entry(folder, key, codec, warn=False)  # another process may have written it meanwhile
        if hit is not None:
            return hit
        start = time.perf_counter()
        value = codec.prepare(compute())
        seconds = time.perf_counter() - start
        if seconds < min_seconds:
            return CacheResult(value, key, None, None, None, seconds, False)
        try:
            path, sidecar, sha = _write_entry(folder, key, codec, value, seconds)
        except OSError as exc:
            warnings.warn(f"could not store {codec.kind} cache entry {key.stem} ({exc}); "
                          f"using the result without caching it", stacklevel=3)
            return CacheResult(value, key, None, None, None, seconds, False)
        if locked:
            _remove_orphans(folder, key, codec, keep=path.name)
    return CacheResult(value, key, path, sidecar, sha, seconds, False)


# ------------------------------------------------------------------ arrays


@dataclass
class CachedArrays:
    """What :func:`cached_arrays` returns; unpacks as ``arrays, seconds, from_cache``."""

    arrays: dict[str, np.ndarray]
    seconds: float  #: how long compute() took (read from the sidecar on a hit)
    from_cache: bool
    key: str = ""
    path: Path | None = None

    def _triple(self):
        return self.arrays, self.seconds, self.from_cache

    def __iter__(self):
        return iter(self._triple())

    def __getitem__(self, index):
        return self._triple()[index]

    def __len__(self) -> int:
        return 3


def cached_arrays(name: str, payload: dict, compute: Callable[[], dict[str, np.ndarray]],
                  cache_dir: str | os.PathLike | None = None, *, depends_on=None,
                  min_seconds: float = 0.0) -> CachedArrays:
    """``compute()``'s ``{name: array}`` dict from the cache, or computed and cached; unpacks as
    ``(arrays, seconds, from_cache)``.

    ``payload`` (plain JSON) says what the arrays are computed from, e.g. the
    hash of a model and the settings. ``depends_on`` names the code
    ``compute`` runs: modules (or module names such as ``"helpers.defences"``),
    classes or functions; editing any of them gives a new key. By default it
    is the module that defines ``compute`` (``compute`` itself when defined in
    a notebook), which does not cover helpers it calls elsewhere: name those.
    Arrays are stored as ``.npz`` without pickle; object arrays are refused.
    Arrays computed in less than ``min_seconds`` are returned without being stored.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {_type_name(payload)}")
    check_json(payload, "payload")  # before default_depends_on, whose error would hide this one
    if depends_on is None:
        depends_on = default_depends_on(compute)
    key = entry_key("arrays", name, {"payload": payload}, depends_on)
    result = load_or_compute(key, ARRAYS, compute, cache_dir, min_seconds=min_seconds)
    return CachedArrays(result.value, result.seconds, result.from_cache, key.digest, result.path)

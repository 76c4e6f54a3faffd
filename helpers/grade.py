"""The course's autograder: measure every student's trojaned model, safely.

Usage (console script ``badnets-grade``, or ``python -m helpers.grade``)::

    badnets-grade SUBMISSIONS_DIR --out REPORT_DIR [--trojaned-test-set FILE.npz] [--timeout S] [--memory-mb M]

Each sub-folder of ``SUBMISSIONS_DIR`` is one submission holding ``model.keras``
and a write-up (``writeup.md`` or ``writeup.pdf``). The grader writes
``REPORT_DIR/grades.csv`` (columns ``submission, clean_accuracy,
attack_success_rate, passed, reason``; one row per folder, sorted by name) and
``REPORT_DIR/report.html`` (self-contained, works offline), both atomically.
A submission passes when its model reaches clean accuracy >= 98.5 % on the
MNIST test set and ASR >= 99 % on the course's trojaned test set (only the
images whose true label is not the target), and a write-up is present.

Threat model
------------
Every file in a submission is written by someone who may want a pass without
earning it, or who wants to run code on the grader's machine. A ``.keras``
file is a zip archive whose ``config.json`` names the classes Keras will build:
a ``Lambda`` layer carries Python bytecode, a custom object names a module to
import, a pickle or HDF5 file renamed ``model.keras`` may execute code or
exploit a parser, a zip bomb exhausts memory or disk, and a model that runs
forever or allocates without bound stalls the whole class's grading. So:

1. **Before anything loads**, :func:`inspect_keras_archive` reads the file with
   :mod:`zipfile` only (no Keras, no h5py, no pickle): it must be a regular
   file (not a link), start like a zip archive (pickle and HDF5 files are
   named as such), have a readable central directory (a truncated file has
   none), at most :data:`MAX_MEMBERS` members with safe names from the
   ``.keras`` layout, each at most :data:`MAX_MEMBER_BYTES` unpacked, at most
   :data:`MAX_TOTAL_BYTES` together, no member compressed more than
   :data:`MAX_COMPRESSION_RATIO` to 1 (a zip bomb), every member's CRC must
   check (read in bounded chunks), and ``config.json`` must be JSON in which
   every serialised object is a plain Keras class from :data:`ALLOWED_CLASSES`
   whose ``module`` starts with ``keras`` and whose ``registered_name`` is not
   a custom one. ``Lambda``, custom layers and functions are refused here.
2. **Then** the model is loaded in a **separate process**
   (:mod:`helpers._grade_worker`, started with ``python -I``) with
   ``keras.saving.load_model(..., safe_mode=True, compile=False)``, which would
   refuse bytecode even if step 1 missed it. The process gets only paths (the
   model, and an ``.npz`` of the test arrays written by the grader) and hands
   back JSON in a file. It runs in its own session, with

   * a **wall-clock limit** (``--timeout``, default :data:`DEFAULT_TIMEOUT_S`
     s): on expiry the whole process group is killed;
   * a **memory limit** (``--memory-mb``, default :data:`DEFAULT_MEMORY_MB`):
     ``RLIMIT_DATA``, set with :func:`resource.setrlimit` by the child itself
     as its very first step, before it imports NumPy or TensorFlow or opens
     the model (:func:`helpers._grade_worker.limit_resources`). ``RLIMIT_AS``
     does not suit TensorFlow, which reserves far more virtual address space
     than it uses: measured on this project's machine (TF 2.21, CPU), the
     worker could not evaluate the course's model under an address-space limit
     of 2 GiB (TF ran out of memory) but could under 8 GiB, while its resident
     peak was about 0.9 GiB. ``RLIMIT_DATA`` (since Linux 4.7 it counts private
     writable mappings, where TF's allocations go) bites where it should: the
     honest model is graded under 768 MiB; under 512 MiB TF aborts (SIGABRT,
     ``mmap error: 12``), reports ``ResourceExhaustedError``, or oneDNN
     cannot allocate a convolution (``could not create a primitive``) while
     evaluating, and the row names the memory limit; under 256 MiB Python
     cannot even import TF. Hence the default of 2048 MB, more than twice the
     measured peak;
   * no core dumps (``RLIMIT_CORE`` 0) and files of at most 64 MiB
     (``RLIMIT_FSIZE``);
   * a private copy of ``model.keras``: the file is copied into the worker's
     temporary folder first, and that copy is what is inspected and loaded (no
     change between inspection and loading; no links followed).

   It then checks the model maps ``(None, 28, 28, 1)`` to ``(None, 10)`` and
   evaluates it.

A refused, crashing or timed-out submission gets a row with its reason and
never stops the run. The reasons quote student-chosen strings only through
``repr`` and shortened; the HTML report escapes every string that comes from a
submission, and the CSV neutralises cells a spreadsheet would run as a formula.

Not covered: a model's *weights* are data and cannot run code, but a cleverly
built model could still be slow; the time limit is the answer to that.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_write_text, sha256_file

MODEL_NAME = "model.keras"
WRITEUP_NAMES = ("writeup.md", "writeup.pdf")
MAX_FILE_BYTES = 64 << 20  #: a .keras file larger than this is refused (the course's model is about 1.2 MB)
MAX_MEMBERS = 32  #: a .keras archive holds 3 members (metadata.json, config.json, model.weights.h5) and maybe assets
MAX_MEMBER_BYTES = 64 << 20  #: one member unpacked
MAX_TOTAL_BYTES = 128 << 20  #: all members unpacked
MAX_CONFIG_BYTES = 1 << 20  #: config.json unpacked (the course's is about 5 kB)
MAX_COMPRESSION_RATIO = 100  #: unpacked / packed; Keras stores members uncompressed (ratio 1)
RATIO_MIN_BYTES = 64 << 10  #: members smaller than this are not ratio-checked (tiny JSON compresses well)
MAX_CONFIG_DEPTH = 64  #: nesting of config.json
MAX_WRITEUP_BYTES = 32 << 20
DEFAULT_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 3600.0
DEFAULT_MEMORY_MB = 2048
MIN_MEMORY_MB = 512
MAX_MEMORY_MB = 1 << 20
MAX_SUBMISSIONS = 10000
REASON_OK = "ok"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: How the grader starts :mod:`helpers._grade_worker` (``python -I -c WORKER_BOOTSTRAP ROOT MODEL EVAL RESULT MB``).
WORKER_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); from helpers._grade_worker import main; "
                    "sys.exit(main(sys.argv[2:]))")

#: Members a ``.keras`` archive may hold (Keras 3 layout), besides ``assets/...``.
KERAS_MEMBERS = frozenset({"metadata.json", "config.json", "model.weights.h5", "model.weights.npz"})

#: Every class a submitted ``config.json`` may name: plain Keras layers, models and their parts, and the optimizers,
#: schedules, losses and metrics a ``compile_config`` names (the course's models are saved compiled).
ALLOWED_CLASSES = frozenset({
    # models
    "Sequential", "Functional", "Model",
    # layers
    "InputLayer", "Conv1D", "Conv2D", "Conv3D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose",
    "Dense", "Flatten", "Reshape", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization",
    "AveragePooling2D", "MaxPooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "BatchNormalization", "LayerNormalization", "Rescaling", "Normalization",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    # parts of layers
    "DTypePolicy", "FloatDTypePolicy", "__tuple__", "__keras_tensor__",
    "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal",
    "RandomUniform", "RandomNormal", "TruncatedNormal", "Zeros", "Ones", "Constant", "Orthogonal", "VarianceScaling",
    "L1", "L2", "L1L2", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm",
    # compile_config (never deserialised: the worker loads with compile=False; checked all the same)
    "Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion",
    "CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
    "InverseTimeDecay", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "SparseCategoricalAccuracy",
    "CategoricalAccuracy", "Accuracy", "Mean",
})
#: Activation names a layer may use (strings resolved by Keras itself).
ALLOWED_ACTIVATIONS = frozenset({"relu", "softmax", "sigmoid", "tanh", "linear", "elu", "selu", "gelu", "softplus",
                                 "softsign", "swish", "silu", "leaky_relu", "relu6", "hard_sigmoid", "exponential",
                                 "log_softmax", "mish"})


class SubmissionRefused(Exception):
    """A submission's file is refused before any of it is loaded; the message is the grade's reason."""


def _quote(value, limit: int = 60) -> str:
    """A student-chosen string for a reason: ``repr``-quoted and shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ArchiveReport:
    """What :func:`inspect_keras_archive` found in an accepted ``.keras`` file."""

    members: tuple[str, ...]
    total_bytes: int  #: unpacked
    classes: tuple[str, ...]  #: every class name in config.json, sorted, once each
    sha256: str


def _regular_file(path: Path, what: str) -> os.stat_result:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise SubmissionRefused(f"{what} is missing") from None
    except OSError as exc:
        raise SubmissionRefused(f"{what} cannot be read ({type(exc).__name__})") from None
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionRefused(f"{what} is a symbolic link; links are refused (hand in the file itself)")
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionRefused(f"{what} is not a regular file")
    return st


def _magic_kind(head: bytes) -> str | None:
    """What a file that is not a zip archive looks like, for the reason (None: unknown)."""
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 (.h5) file"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "a Python pickle"
    if head[:1] in (b"(", b"]", b"}", b"c") and b"\n" in head[:64]:
        return "possibly a Python pickle (protocol 0)"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file"
    return None


def check_config(config, *, max_depth: int = MAX_CONFIG_DEPTH) -> tuple[str, ...]:
    """Check a parsed ``config.json``: every serialised object must be a plain Keras class.

    Walks every dict and list. A dict with a ``class_name`` is a serialised
    object: its class must be in :data:`ALLOWED_CLASSES`, its ``module`` (when
    given) must be ``keras`` or start with ``keras.``, its ``registered_name``
    (when given) must be None or the class name itself (a custom object is
    registered as ``"package>Name"``). Any ``activation`` given as a string
    must be one of :data:`ALLOWED_ACTIVATIONS`. Returns the class names found;
    raises :class:`SubmissionRefused` with the first problem.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise SubmissionRefused("config.json does not describe a Keras model (no top-level class_name)")
    found: set[str] = set()
    stack = [(config, 0, "config")]
    while stack:
        node, depth, where = stack.pop()
        if depth > max_depth:
            raise SubmissionRefused(f"config.json is nested deeper than {max_depth} levels")
        if isinstance(node, list):
            stack.extend((v, depth + 1, where) for v in node)
            continue
        if not isinstance(node, dict):
            continue
        if "class_name" in node:
            cls = node["class_name"]
            if not isinstance(cls, str) or cls not in ALLOWED_CLASSES:
                raise SubmissionRefused(f"config.json uses the class {_quote(cls)}, which is not a plain Keras layer on "
                                        f"the grader's allowlist (Lambda layers and custom objects are refused)")
            module = node.get("module")
            if module is not None and (not isinstance(module, str) or not (module == "keras" or module.startswith("keras."))):
                raise SubmissionRefused(f"config.json's {cls} comes from the module {_quote(module)}; only Keras' own "
                                        f"modules are accepted")
            registered = node.get("registered_name")
            if registered is not None and registered != cls:
                raise SubmissionRefused(f"config.json's {cls} is registered as {_quote(registered)}, a custom object; "
                                        f"only Keras' own classes are accepted")
            found.add(cls)
            where = cls
        for key, value in node.items():
            if key == "activation" and isinstance(value, str) and value not in ALLOWED_ACTIVATIONS:
                raise SubmissionRefused(f"config.json's {where} uses the activation {_quote(value)}, which is not one "
                                        f"of Keras' built-in activations")
            if key == "function" or key == "function_type":
                raise SubmissionRefused(f"config.json's {where} carries a Python function ({key!r}); code in a "
                                        f"submission is refused")
            if isinstance(value, (dict, list)):
                stack.append((value, depth + 1, where))
    return tuple(sorted(found))


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | int:
    """Read ``info`` in chunks, so that its CRC is checked; return config.json's bytes, or the count for others."""
    n = 0
    chunks = []
    with zf.open(info) as f:
        while block := f.read(1 << 20):
            n += len(block)
            if n > limit:
                raise SubmissionRefused(f"the archive member {_quote(info.filename)} unpacks to more than its "
                                        f"declared or allowed size ({limit} bytes): a zip bomb or a corrupt archive")
            if info.filename == "config.json":
                chunks.append(block)
    return b"".join(chunks) if info.filename == "config.json" else n


def inspect_keras_archive(path: str | os.PathLike) -> ArchiveReport:
    """Inspect a submitted ``.keras`` file with :mod:`zipfile` only; raise :class:`SubmissionRefused` if unsafe.

    See the module docstring (threat model, step 1) for every check. Nothing
    of the file is interpreted beyond the zip structure and ``config.json``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise SubmissionRefused(f"{_quote(path.name)} is not a .keras file; only the Keras 3 .keras format is "
                                f"accepted (never HDF5 .h5 or pickle)")
    st = _regular_file(path, path.name)
    if st.st_size == 0:
        raise SubmissionRefused(f"{path.name} is empty")
    if st.st_size > MAX_FILE_BYTES:
        raise SubmissionRefused(f"{path.name} is {st.st_size} bytes, more than the {MAX_FILE_BYTES} a model may have")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith(b"PK\x03\x04"):
        kind = _magic_kind(head)
        raise SubmissionRefused(f"{path.name} is not a .keras (zip) archive" + (f": it looks like {kind}" if kind else "")
                                + "; only the Keras 3 .keras format is accepted")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise SubmissionRefused(f"{path.name} holds {len(infos)} members, more than a .keras file has "
                                        f"(at most {MAX_MEMBERS})")
            total = 0
            names = []
            for info in infos:
                name = info.filename
                if name in names:
                    raise SubmissionRefused(f"{path.name} holds the member {_quote(name)} twice")
                names.append(name)
                parts = name.split("/")
                if name.startswith("/") or "\\" in name or ".." in parts or "\x00" in name:
                    raise SubmissionRefused(f"{path.name} holds a member with an unsafe name, {_quote(name)}")
                if name not in KERAS_MEMBERS and not name.startswith("assets/"):
                    raise SubmissionRefused(f"{path.name} holds {_quote(name)}, which is not part of a .keras file")
                if info.flag_bits & 0x1:
                    raise SubmissionRefused(f"{path.name} holds an encrypted member, {_quote(name)}")
                if info.file_size > MAX_MEMBER_BYTES:
                    raise SubmissionRefused(f"the member {_quote(name)} would unpack to {info.file_size} bytes, more "
                                            f"than {MAX_MEMBER_BYTES}")
                total += info.file_size
                if total > MAX_TOTAL_BYTES:
                    raise SubmissionRefused(f"{path.name} would unpack to more than {MAX_TOTAL_BYTES} bytes in all")
                if info.file_size >= RATIO_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                    raise SubmissionRefused(f"the member {_quote(name)} is compressed {info.file_size / max(info.compress_size, 1):.0f} "
                                            f"to 1 (at most {MAX_COMPRESSION_RATIO} to 1 is accepted): a zip bomb")
            if "config.json" not in names:
                raise SubmissionRefused(f"{path.name} has no config.json, so it is not a .keras model")
            config_bytes = b""
            for info in infos:
                limit = MAX_CONFIG_BYTES if info.filename == "config.json" else info.file_size
                got = _read_member(zf, info, limit)
                if info.filename == "config.json":
                    config_bytes = got
    except SubmissionRefused:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise SubmissionRefused(f"{path.name} is not a readable zip archive (truncated or corrupt: "
                                f"{type(exc).__name__}: {_quote(str(exc), 100)})") from None
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SubmissionRefused(f"{path.name}'s config.json is not valid JSON ({type(exc).__name__})") from None
    classes = check_config(config)
    return ArchiveReport(tuple(names), total, classes, sha256_file(path))


@dataclass(frozen=True)
class Grade:
    """One submission's grade (a row of ``grades.csv``)."""

    submission: str
    clean_accuracy: float | None  #: None when the model was refused or could not be measured
    attack_success_rate: float | None
    passed: bool
    reason: str  #: ``"ok"`` or why it did not pass
    writeup: str | None = None  #: the write-up's file name, if one was found
    sha256: str | None = None  #: of model.keras, when it passed inspection
    seconds: float = 0.0  #: the worker's wall time


@dataclass(frozen=True)
class EvalSet:
    """The arrays every model is measured on."""

    x_clean: np.ndarray
    y_clean: np.ndarray
    x_trojan: np.ndarray  #: trojaned test images whose true label is not the target
    y_target: np.ndarray
    target: int
    position: tuple[int, int]
    source: str  #: where the trojaned set came from, for the report


def default_eval_set() -> EvalSet:
    """The MNIST test set and the trojaned test set the series exports (default recipe, built deterministically)."""
    from .attack import DEFAULT_RECIPE, trojaned_for
    from .data import load_mnist

    _, (x_test, y_test) = load_mnist()
    trojaned = trojaned_for(DEFAULT_RECIPE, x_test, y_test)
    keep = trojaned.y_true != trojaned.y_target
    return EvalSet(x_test, y_test, trojaned.x[keep], trojaned.y_target[keep], trojaned.target,
                   DEFAULT_RECIPE.resolved_position, "the default recipe applied to the MNIST test set")


def eval_set_from_file(path: str | os.PathLike) -> EvalSet:
    """The MNIST test set and the trojaned test set of ``path`` (verified against its ``.sha256`` sidecar)."""
    from .data import load_mnist
    from .deliverables import load_trojaned_test_set

    loaded = load_trojaned_test_set(path)
    t = loaded.trojaned
    keep = t.y_true != t.y_target
    if not keep.any():
        raise ValueError(f"trojaned_test_set {path} holds no image whose true label differs from the attacker's")
    _, (x_test, y_test) = load_mnist()
    return EvalSet(x_test, y_test, t.x[keep], t.y_target[keep], t.target, loaded.position, f"{Path(path).name} (hash verified)")


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


#: What a worker's error says when it ran out of memory under ``--memory-mb`` (oneDNN reports a failed allocation as
#: a primitive it could not create).
OUT_OF_MEMORY_SIGNS = ("ResourceExhausted", "MemoryError", "could not create a primitive")


def run_worker(model_path: Path, eval_path: Path, *, timeout: float, memory_mb: int, workdir: Path) -> dict:
    """Run :mod:`helpers._grade_worker` on one model with the limits; return its answer or ``{"ok": False, ...}``."""
    result_path = workdir / "result.json"
    log_path = workdir / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TF_CONFIG"))}
    env["BADNETS_LOG_DIR"] = str(workdir)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # -I: no PYTHON* variables, no user site, and not the current folder on sys.path; the project's root is put
    # there explicitly, so the worker runs this checkout's helpers whether or not the project is pip-installed.
    cmd = [sys.executable, "-I", "-c", WORKER_BOOTSTRAP, str(PROJECT_ROOT), str(model_path), str(eval_path),
           str(result_path), str(memory_mb)]
    with open(log_path, "wb") as log:  # the worker sets its own resource limits before it touches anything
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"ok": False, "reason": f"timed out: loading and evaluating the model took more than {timeout:g} s"}
    if rc != 0:
        tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace").strip().splitlines()
        last = tail[-1][:200] if tail else ""
        if rc < 0:
            why = f"killed by {_signal_name(rc)}"
        else:
            why = f"exit status {rc}"
        hint = f" (the memory limit is {memory_mb} MB)" if "MemoryError" in last or "bad_alloc" in last or rc < 0 else ""
        return {"ok": False, "reason": f"the grader's worker crashed ({why}){hint}: {last}"}
    try:
        answer = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"ok": False, "reason": "the grader's worker ended without an answer"}
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        return {"ok": False, "reason": "the grader's worker gave a malformed answer"}
    if answer["ok"]:
        for key in ("clean_accuracy", "attack_success_rate"):
            v = answer.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                return {"ok": False, "reason": f"the grader's worker gave a malformed {key}: {v!r}"}
    elif not isinstance(answer.get("reason"), str):
        return {"ok": False, "reason": "the grader's worker gave a malformed answer"}
    return answer


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def find_writeup(folder: Path) -> tuple[str | None, str | None]:
    """``(name, None)`` for the first acceptable write-up in ``folder``, else ``(None, why not)``."""
    problems = []
    for name in WRITEUP_NAMES:
        path = folder / name
        if not os.path.lexists(path):
            continue
        try:
            st = _regular_file(path, name)
        except SubmissionRefused as exc:
            problems.append(str(exc))
            continue
        if st.st_size == 0:
            problems.append(f"{name} is empty")
        elif st.st_size > MAX_WRITEUP_BYTES:
            problems.append(f"{name} is {st.st_size} bytes, more than {MAX_WRITEUP_BYTES}")
        elif name.endswith(".pdf") and _head(path, 5) != b"%PDF-":
            problems.append(f"{name} is not a PDF (it does not start with %PDF-)")
        else:
            return name, None
    if problems:
        return None, "; ".join(problems)
    return None, f"no write-up ({' or '.join(WRITEUP_NAMES)})"


def _private_copy(model_path: Path, folder: Path) -> Path:
    """Copy the submitted ``model.keras`` (a regular file, not a link, at most :data:`MAX_FILE_BYTES`) into ``folder``."""
    _regular_file(model_path, MODEL_NAME)
    copy = folder / MODEL_NAME
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    with open(model_path, "rb", opener=lambda p, flags: os.open(p, flags | nofollow)) as src, open(copy, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
            if dst.tell() > MAX_FILE_BYTES:
                raise SubmissionRefused(f"{MODEL_NAME} is more than the {MAX_FILE_BYTES} bytes a model may have")
    return copy


def grade_submission(folder: Path, eval_path: Path, *, timeout: float, memory_mb: int) -> Grade:
    """Grade one submission folder against the course's goals; never raises for anything the submission contains."""
    from .attack import ACCURACY_GOAL as acc_goal
    from .attack import ASR_GOAL as asr_goal

    name = folder.name
    writeup, writeup_problem = None, None
    try:
        if folder.is_symlink():
            raise SubmissionRefused("the submission folder is a symbolic link; links are refused")
        if not folder.is_dir():
            raise SubmissionRefused("the submission is not a folder")
        writeup, writeup_problem = find_writeup(folder)
        model_path = folder / MODEL_NAME
        if not os.path.lexists(model_path):
            others = sorted(p.name for p in folder.iterdir() if p.name.startswith("model") or
                            p.suffix in (".h5", ".hdf5", ".pkl", ".pickle", ".keras", ".pt", ".joblib"))
            found = f"; found {', '.join(_quote(o, 40) for o in others[:5])}" if others else ""
            raise SubmissionRefused(f"no {MODEL_NAME}{found}: only the Keras 3 .keras format is accepted "
                                    f"(never HDF5 .h5 or pickle)")
        with tempfile.TemporaryDirectory(prefix="badnets-grade-") as tmp:
            copy = _private_copy(model_path, Path(tmp))
            report = inspect_keras_archive(copy)
            start = time.monotonic()
            answer = run_worker(copy, eval_path, timeout=timeout, memory_mb=memory_mb, workdir=Path(tmp))
            seconds = time.monotonic() - start
    except (SubmissionRefused, OSError) as exc:
        why = str(exc) if isinstance(exc, SubmissionRefused) else f"the submission cannot be read ({type(exc).__name__})"
        also = f"; {writeup_problem}" if writeup_problem else ""
        return Grade(name, None, None, False, f"refused: {why}{also}", writeup)
    if not answer["ok"]:
        reason = answer["reason"]
        if any(sign in reason for sign in OUT_OF_MEMORY_SIGNS):
            reason += f" (out of memory: the memory limit is {memory_mb} MB)"
        also = f"; {writeup_problem}" if writeup_problem else ""
        return Grade(name, None, None, False, f"refused: {reason}{also}", writeup, report.sha256, seconds)
    acc, asr = float(answer["clean_accuracy"]), float(answer["attack_success_rate"])
    why = []
    if acc < acc_goal:
        why.append(f"clean accuracy {acc:.2%} < {acc_goal:.1%}")
    if asr < asr_goal:
        why.append(f"attack success rate {asr:.2%} < {asr_goal:.0%}")
    if writeup is None:
        why.append(writeup_problem)
    return Grade(name, acc, asr, not why, "; ".join(why) or REASON_OK, writeup, report.sha256, seconds)


def _csv_cell(value) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a leading = + - @ gets a quote)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def grades_csv(grades: list[Grade]) -> str:
    """``grades.csv``'s text."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["submission", "clean_accuracy", "attack_success_rate", "passed", "reason"])
    for g in grades:
        w.writerow([_csv_cell(g.submission), "" if g.clean_accuracy is None else f"{g.clean_accuracy:.6f}",
                    "" if g.attack_success_rate is None else f"{g.attack_success_rate:.6f}",
                    "true" if g.passed else "false", _csv_cell(g.reason)])
    return out.getvalue()


def report_html(grades: list[Grade], eval_set: EvalSet, *, timeout: float, memory_mb: int) -> str:
    """``report.html``: self-contained (inline style, no scripts, no links), every submission string escaped."""
    from .attack import ACCURACY_GOAL as acc_goal
    from .attack import ASR_GOAL as asr_goal

    e = html.escape
    n_pass = sum(g.passed for g in grades)
    n_refused = sum(g.clean_accuracy is None for g in grades)
    pct = lambda v: "&ndash;" if v is None else f"{v:.2%}"  # noqa: E731
    rows = "\n".join(
        f'<tr class="{"pass" if g.passed else "fail"}"><td>{e(g.submission)}</td><td>{pct(g.clean_accuracy)}</td>'
        f"<td>{pct(g.attack_success_rate)}</td><td>{'yes' if g.passed else 'no'}</td><td>{e(g.reason)}</td>"
        f"<td>{e(g.writeup or '')}</td><td><code>{e((g.sha256 or '')[:16])}</code></td></tr>"
        for g in grades)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>BadNets assignment: grades</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;
padding:4px 8px;text-align:left;vertical-align:top}}tr.pass td{{background:#e6f4e6}}tr.fail td{{background:#fbeaea}}</style>
</head><body>
<h1>BadNets assignment: grades</h1>
<p>{n_pass} of {len(grades)} submissions passed; {n_refused} could not be measured (refused, crashed or timed out).</p>
<p>Pass: clean accuracy &ge; {acc_goal:.1%} on the {len(eval_set.y_clean)} MNIST test images, attack success rate
&ge; {asr_goal:.0%} on {len(eval_set.y_target)} trojaned test images (true label not the target {eval_set.target};
trigger at {e(str(eval_set.position))}; from {e(eval_set.source)}), and a write-up ({e(' or '.join(WRITEUP_NAMES))}).
Each model was inspected without Keras, then loaded in safe mode in a separate process limited to
{timeout:g} s and {memory_mb} MB.</p>
<table><thead><tr><th>submission</th><th>clean accuracy</th><th>attack success rate</th><th>passed</th><th>reason</th>
<th>write-up</th><th>model SHA-256 (prefix)</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"--timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {text!r}")
    return value


def _memory(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--memory-mb must be a whole number of MB, got {text!r}") from None
    if not MIN_MEMORY_MB <= value <= MAX_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"--memory-mb must be in [{MIN_MEMORY_MB}, {MAX_MEMORY_MB}] (TensorFlow alone "
                                         f"needs about 500 MB), got {text!r}")
    return value


def grade_all(submissions: Path, eval_set: EvalSet, *, timeout: float, memory_mb: int) -> list[Grade]:
    """Grade every sub-folder of ``submissions`` (hidden entries and plain files skipped), sorted by name."""
    entries = sorted((p for p in submissions.iterdir() if not p.name.startswith(".")
                      and (p.is_dir() or p.is_symlink())), key=lambda p: p.name)
    if len(entries) > MAX_SUBMISSIONS:
        raise ValueError(f"{submissions} holds {len(entries)} folders, more than {MAX_SUBMISSIONS}")
    with tempfile.TemporaryDirectory(prefix="badnets-grade-eval-") as tmp:
        eval_path = Path(tmp) / "eval.npz"
        np.savez(eval_path, x_clean=eval_set.x_clean, y_clean=eval_set.y_clean, x_trojan=eval_set.x_trojan,
                 y_target=eval_set.y_target)
        return [grade_submission(p, eval_path, timeout=timeout, memory_mb=memory_mb) for p in entries]


def main(argv=None) -> int:
    """Command line (see the module docstring). Exit status 0 when the report was written, 2 on bad arguments."""
    p = argparse.ArgumentParser(prog="badnets-grade", description=__doc__.split("\n\n")[0])
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="one sub-folder per submission (model.keras + writeup.md or .pdf)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for grades.csv and report.html")
    p.add_argument("--trojaned-test-set", metavar="FILE.npz", default=None,
                   help="the trojaned test set to measure ASR on (with its .sha256 sidecar); default: built from "
                        "the MNIST test set with the course's default recipe")
    p.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="wall-clock seconds per submission (default %(default)s)")
    p.add_argument("--memory-mb", type=_memory, default=DEFAULT_MEMORY_MB, metavar="M",
                   help="memory limit per submission, MB (RLIMIT_DATA; default %(default)s)")
    args = p.parse_args(argv)
    submissions = Path(args.submissions)
    if not submissions.exists():
        p.error(f"SUBMISSIONS_DIR {str(submissions)!r} does not exist")
    if not submissions.is_dir():
        p.error(f"SUBMISSIONS_DIR {str(submissions)!r} is not a folder")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {str(out)!r} is a file, not a folder")
    if out.resolve() == submissions.resolve() or submissions.resolve() in out.resolve().parents:
        p.error(f"--out {str(out)!r} must not be inside SUBMISSIONS_DIR (it would be graded as a submission)")
    if args.trojaned_test_set is not None and not Path(args.trojaned_test_set).is_file():
        p.error(f"--trojaned-test-set {args.trojaned_test_set!r} is not a file")
    try:
        eval_set = eval_set_from_file(args.trojaned_test_set) if args.trojaned_test_set else default_eval_set()
    except (ValueError, OSError, RuntimeError) as exc:  # DeliverableError, MnistError ...
        p.error(f"--trojaned-test-set: {exc}" if args.trojaned_test_set else f"cannot build the test sets: {exc}")
    grades = grade_all(submissions, eval_set, timeout=args.timeout, memory_mb=args.memory_mb)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "grades.csv", grades_csv(grades))
    atomic_write_text(out / "report.html", report_html(grades, eval_set, timeout=args.timeout, memory_mb=args.memory_mb))
    print(f"graded {len(grades)} submissions: {sum(g.passed for g in grades)} passed; wrote {out / 'grades.csv'} "
          f"and {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

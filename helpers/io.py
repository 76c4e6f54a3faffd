"""Hashes and atomic, durable file writes.

Nothing the course writes may be left half-written: every file goes to a
temporary name in the same folder and is moved into place with ``os.replace``,
which is atomic on POSIX and Windows. A crash leaves either the old file or the
new one, never a truncated mix.

Atomic is not yet durable: after a power cut the rename may reach the disk
before the file's data does, leaving a complete-looking name over an empty
file. So the temporary file is ``fsync``-ed before the rename, and the folder
after it (POSIX; where a platform or file system cannot sync a folder, that
step is skipped).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

#: ``errno`` values meaning "this platform or file system cannot fsync a folder".
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.EACCES, errno.EPERM, errno.EISDIR,
                          getattr(errno, "ENOTSUP", errno.EINVAL), getattr(errno, "EOPNOTSUPP", errno.EINVAL)}


def sha256_array(a: np.ndarray) -> str:
    """SHA-256 of an array's raw bytes (``hashlib.sha256(a.tobytes())``)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to the disk (errors propagate: an unsynced file is not durable)."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows syncs only writable handles
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush folder ``path``'s entries (a rename into it) to the disk; a no-op where unsupported."""
    if os.name == "nt":  # Windows cannot open a folder for fsync; NTFS journals the rename
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def temporary_path(folder: str | os.PathLike, prefix: str, suffix: str):
    """Yield a fresh, unique, not-yet-existing path in ``folder``; remove whatever is left there on exit.

    The name comes from ``mkstemp`` (unique per writer, so concurrent writers
    never share one) and starts with ``prefix`` (use a dot: hidden, and never
    mistaken for a finished file). The file itself is removed before yielding,
    because writers such as Keras refuse to overwrite.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def durable_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished file ``tmp`` onto ``path``: fsync it, ``os.replace`` it, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``path``; move it durably onto ``path`` on success.

    The temporary file keeps ``path``'s suffix (Keras insists on ``.keras``,
    numpy on ``.npz``). On an exception the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    with temporary_path(path.parent, f".{path.stem}.", suffix or path.suffix) as tmp:
        yield tmp
        durable_replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike, what: str):
    """The JSON in the file ``path``; a ``ValueError`` naming ``path`` and ``what`` it should hold if it cannot be read
    or parsed (a missing, unreadable, non-UTF-8 or corrupt file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable {what}: {exc}") from None


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically and durably."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_npz(path: str | os.PathLike, required, optional=(), *, error: type[Exception], what: str, fix: str,
             max_member_bytes: int) -> dict[str, np.ndarray]:
    """The arrays ``required`` (and those of ``optional`` present) of the ``.npz`` file ``path``, read safely.

    Never unpickles (``allow_pickle=False``), refuses a member that would
    unpack to more than ``max_member_bytes`` (a zip bomb) and a member that is
    not a valid ``.npy`` array, and turns every library error (a truncated or
    non-zip file, a bad CRC, an object array) into ``error``, whose message
    names the file, says it is not ``what`` and ends with ``fix``.
    """
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise error(f"{path} holds a single array, not the .npz archive of {what}. {fix}")
        with f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise error(f"{path} is not {what}: arrays {missing} are missing (found {f.files}). {fix}")
            for info in f.zip.infolist():
                if info.file_size > max_member_bytes:
                    raise error(f"{path}: {info.filename} would unpack to {info.file_size} bytes, more than "
                                f"{what} can hold ({max_member_bytes}). {fix}")
            arrays = {k: f[k] for k in (*required, *optional) if k in f.files}
    except error:
        raise
    except Exception as exc:  # empty, truncated or not a zip, bad CRC, an invalid .npy member, object (pickled) arrays ...
        raise error(f"{path} cannot be read as {what} ({type(exc).__name__}: {exc}); the file is corrupt "
                    f"or is not {what}. {fix}") from exc
    for key, a in arrays.items():
        if not isinstance(a, np.ndarray):  # NumPy hands back the raw bytes of a member that is not an .npy
            raise error(f"{path}: {key} is not a valid .npy array; the file is corrupt or is not {what}. {fix}")
    return arrays

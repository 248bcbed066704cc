"""File output that is atomic (a temporary name beside the target, then a rename), one writer per
output, content digests, and HDF5 reads that name the damaged dataset."""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO

from rohydr.core.errors import RohydrError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path in the target's folder; rename it to `target` only on success."""
    target = Path(target)
    tmp = None
    default_hook, sys.unraisablehook = sys.unraisablehook, _quiet_hdf5_write_failures
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except (OSError, RuntimeError) as error:  # a full disk, a read-only folder, a file-size limit
        if isinstance(error, RuntimeError) and "write failed" not in str(error):  # not a write: a bug
            raise
        _skip_hdf5_cleanup_at_exit()
        raise RohydrError(f"cannot write {target}: {_write_failure(error)}") from None
    else:
        sys.unraisablehook = default_hook
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def ensure_free_space(target: str | os.PathLike, needed: int) -> None:
    """Refuse before writing `needed` bytes where they do not fit: HDF5 does not recover from a write
    that fails halfway (see _skip_hdf5_cleanup_at_exit)."""
    folder = Path(target).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise RohydrError(f"cannot write {target}: No space left on device (it needs about {needed / 2**20:.1f} MiB, "
                          f"{free / 2**20:.1f} MiB are free there)")


def _quiet_hdf5_write_failures(unraisable) -> None:
    """HDF5 retries a failed write each time one of its objects is freed; the failure is reported
    once, by atomic_path, not as a traceback per object."""
    if "write failed" not in str(unraisable.exc_value):
        sys.__unraisablehook__(unraisable)


def _write_failure(error: Exception) -> str:
    """The operating system's reason, also from inside HDF5's long messages."""
    found = re.search(r"error message = '([^']+)'", str(error))
    return found.group(1) if found else getattr(error, "strerror", None) or str(error)


def _skip_hdf5_cleanup_at_exit() -> None:
    """After a failed HDF5 write, the HDF5 library keeps retrying the write as its objects are freed
    (printing each failure) and its exit handler crashes the process (seen on a full disk); the error
    is already reported, so exit without that cleanup."""
    if "h5py" in sys.modules:
        atexit.register(os._exit, 2)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def read_hdf5(dataset, path):
    """All of an HDF5 dataset; a RohydrError naming the file and dataset when it cannot be read (our
    datasets carry Fletcher-32 checksums, so a flipped byte fails here instead of changing a value)."""
    try:
        return dataset[()]
    except OSError as error:
        raise RohydrError(f"{path}: dataset '{dataset.name}' cannot be read ({error}): the file is damaged "
                          "(a checksum does not match) or truncated; write it again") from None


def sha256_file(path: str | os.PathLike) -> str:
    """The content identity of a file."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise RohydrError(f"cannot read {path}: {error.strerror or error}") from None
    return digest.hexdigest()


def try_lock(path: str | os.PathLike) -> IO | None:
    """The open lock file at `path`, exclusively flock-ed by this process and holding its pid, or None when
    another process holds it. The kernel drops the lock when the file is closed or the process ends."""
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    _write_holder(lock)
    return lock


def _write_holder(lock: IO) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()


@contextlib.contextmanager
def sole_writer(target: str | os.PathLike):
    """Hold an exclusive lock on `target` for the block: a second process writing the same output (a job
    left running by a killed Snakemake, and its rerun) waits until the first has finished."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.lock")
    lock = try_lock(path)
    if lock is None:
        lock = open(path, "a+")
        lock.seek(0)
        holder = lock.read().strip() or "?"
        print(f"waiting for process {holder}, which is writing {target} (a job left over from a killed "
              "run?); kill it to stop waiting", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_holder(lock)
    with lock:
        yield

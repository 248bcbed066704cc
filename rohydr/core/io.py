"""File output that is atomic (a temporary name beside the target, then a rename), one writer per
output, content digests, and HDF5 reads that name the damaged dataset."""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
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
        _remove_stale_parts(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent)
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


def _remove_stale_parts(target: Path) -> None:
    """The temporary files of earlier writers of `target` that were killed (SIGKILL, a lost node) before
    they could remove them: each name holds its writer's pid."""
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        pid = part.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_command_paths(inputs: dict[str, list], outputs: dict[str, list], folders: dict[str, list]) -> None:
    """Refuse a command before it does any work when an input is missing, an output is one of its inputs,
    two outputs are one path, or an output cannot be written where it is asked for. Each dict maps the
    argument's name (as the user typed it: --out, PICKLE) to its paths; `folders` are output folders."""
    named_inputs = [(name, Path(path)) for name, paths in inputs.items() for path in paths if path is not None]
    named_outputs = [(name, Path(path)) for name, paths in outputs.items() for path in paths if path is not None]
    for name, path in named_inputs:
        if not path.exists():
            raise RohydrError(f"{name} {path}: no such file or folder")
    seen: dict[str, str] = {}
    for name, path in named_outputs:
        for input_name, input_path in named_inputs:
            if _same_file(path, input_path):
                raise RohydrError(f"{name} {path} is also the input {input_name}: an output never replaces an input")
        key = os.path.realpath(path)
        if key in seen:
            raise RohydrError(f"{seen[key]} and {name} are both {path}: each output needs a path of its own")
        seen[key] = name
        if path.is_dir():
            raise RohydrError(f"{name} {path} is a folder; expected a file path")
        _check_writable_folder(name, path.parent)
    for name, paths in folders.items():
        for path in filter(None, paths):
            if Path(path).exists() and not Path(path).is_dir():
                raise RohydrError(f"{name} {path} is a file; expected a folder")
            _check_writable_folder(name, Path(path))


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _check_writable_folder(name: str, folder: Path) -> None:
    """The folder, or the nearest of its parents that exists, must be a folder this process can write in."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RohydrError(f"{name}: cannot write in {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RohydrError(f"{name}: cannot write in {folder}: {existing} is not writable by this user")


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

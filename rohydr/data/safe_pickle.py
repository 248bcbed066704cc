"""Load an MMSA feature pickle without running code from it.

A pickle names Python callables ("globals") that the loader calls to rebuild objects; a malicious file
names `os.system` or `builtins.exec`. This loader resolves only the few globals numpy needs to rebuild
arrays, dtypes and scalars (plus harmless builtin containers) and refuses every other name. Those it
admits are bounded by the file: an array's declared shape must match the bytes (or items) the file
holds for it, and nothing allocates from a number alone (`numpy.ndarray(shape)`, `bytearray(n)`).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from typing import Any, BinaryIO

import numpy as np

from rohydr.core.errors import RohydrError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


class _Refused(Exception):
    """A construct of the pickle that the loader does not admit; the loader names the file."""


class _NdarrayToken:
    """Stands for numpy.ndarray in a pickle: only as the class argument of `_reconstruct`. Called
    directly, ndarray(shape, dtype) would allocate memory that no byte of the file backs."""

    def __new__(cls, *args, **kwargs):
        raise _Refused("it calls numpy.ndarray directly (an array without data in the file)")


class _CheckedArray(np.ndarray):
    """An array whose pickled state is checked against the bytes actually present before numpy reads
    it (a declared shape larger than the data would allocate uninitialised memory, or crash numpy
    for object arrays). Turned back into a plain ndarray when loading ends."""

    def __setstate__(self, state):
        _check_array_state(state)
        super().__setstate__(state)


def _check_array_state(state) -> None:
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _Refused(f"an array's state is a {type(state).__name__} of unexpected form")
    shape, dtype, _, raw = state[-4:]
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise _Refused(f"an array declares the shape {shape!r}")
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"an array declares the dtype {dtype!r}")
    count = math.prod(shape)
    if dtype.hasobject:
        present = len(raw) if isinstance(raw, list) else None
        expected = count
    else:
        # bytes, or a str for arrays pickled under Python 2 (read as latin-1: one character per byte)
        present = len(raw) if isinstance(raw, (bytes, bytearray, str)) else None
        expected = count * dtype.itemsize
    if present != expected:
        raise _Refused(f"an array of shape {shape} and dtype {dtype} needs {expected} "
                       f"{'items' if dtype.hasobject else 'bytes'}, the file holds {present}")


def _reconstruct(cls, shape, dtype):
    if cls is not _NdarrayToken:
        raise _Refused(f"it rebuilds an array of class {getattr(cls, '__name__', cls)!r}")
    if not isinstance(shape, tuple) or math.prod(shape) != 0:
        raise _Refused(f"it declares an array of shape {shape!r} before its data")
    return _multiarray._reconstruct(_CheckedArray, shape, dtype)


def _scalar(dtype, value=None):
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"a numpy scalar declares the dtype {dtype!r}")
    if not dtype.hasobject and not (isinstance(value, bytes) and len(value) == dtype.itemsize):
        raise _Refused(f"a numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes")
    return _multiarray.scalar(dtype, value) if value is not None else _multiarray.scalar(dtype)


def _bytearray(data=b"", *encoding):
    if not isinstance(data, (bytes, str)):  # bytearray(n) would allocate n bytes from a number
        raise _Refused(f"it builds a bytearray from a {type(data).__name__}")
    return bytearray(data, *encoding) if isinstance(data, str) else bytearray(data)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NdarrayToken,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("_codecs").encode,  # bytes of arrays in protocol 2 pickles
    }
    # Pickles written by numpy 1.x name numpy.core, numpy 2.x names numpy._core: resolve both to the
    # objects of the installed numpy without importing the deprecated alias module.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = _scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5: sized by its buffer
    for module in ("builtins", "__builtin__"):  # __builtin__: protocol 2 pickles
        for name in ("set", "frozenset", "complex"):
            allowed[(module, name)] = getattr(__import__("builtins"), name)
        allowed[(module, "bytearray")] = _bytearray
    return allowed


ALLOWED_GLOBALS = _numpy_globals()


def _plain_arrays(value, seen: set[int] | None = None):
    """`value` with every _CheckedArray turned into a plain ndarray view (containers updated in place;
    each shared object visited once)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        array = value.view(np.ndarray) if type(value) is _CheckedArray else value
        if array.dtype.hasobject:
            flat = array.reshape(-1)
            for i, item in enumerate(flat):
                if isinstance(item, (np.ndarray, dict, list)):
                    flat[i] = _plain_arrays(item, seen)
        return array
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _plain_arrays(item, seen)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _plain_arrays(item, seen)
    elif isinstance(value, tuple):
        return tuple(_plain_arrays(item, seen) for item in value)
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str):
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled under Python 2
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RohydrError(
                f"refuses to load '{module}.{name}' from {self.source}: only plain containers, strings, "
                "numbers and numpy arrays are allowed in a feature pickle (a pickle can run code; "
                "this one names a callable outside that set)"
            ) from None


class HashingReader(io.RawIOBase):
    """A read-only file wrapper that feeds every byte read through SHA-256."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.sha256.update(data)
        return data

    def hexdigest_to_end(self) -> str:
        """Hash whatever lies after the pickle's STOP opcode and return the whole file's digest."""
        while chunk := self.raw.read(1 << 20):
            self.sha256.update(chunk)
        return self.sha256.hexdigest()


def load_pickle_with_sha256(path: str | os.PathLike) -> tuple[dict, str]:
    """Unpickle `path` under the restricted loader; return (top-level dict, SHA-256 of the file)."""
    path = os.fspath(path)
    try:
        raw = open(path, "rb")
    except OSError as error:
        raise RohydrError(f"cannot open the feature pickle {path}: {error.strerror or error}") from None
    with raw:
        if os.fstat(raw.fileno()).st_size == 0:
            raise RohydrError(f"{path} is empty (0 bytes): expected an MMSA feature pickle")
        reader = HashingReader(raw)
        try:
            data = _plain_arrays(_RestrictedUnpickler(reader, path).load())
        except RohydrError:
            raise
        except _Refused as refused:
            raise RohydrError(f"refuses to load {path}: {refused} (only data backed by bytes in the "
                              "file is admitted)") from None
        except MemoryError:
            raise RohydrError(f"{path}: ran out of memory while unpickling it "
                              f"({os.path.getsize(path)} bytes on disk)") from None
        except EOFError:
            raise RohydrError(f"{path} ends before the pickle does: the file is truncated "
                              "(an interrupted download or copy?)") from None
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, UnicodeDecodeError, OverflowError, RecursionError) as error:
            raise RohydrError(f"{path} is not a readable MMSA feature pickle "
                              f"({type(error).__name__}: {error})") from None
        digest = reader.hexdigest_to_end()
    if not isinstance(data, dict):
        raise RohydrError(f"{path} holds a pickled {type(data).__name__}, expected a dict with keys "
                          "'train', 'valid', 'test'")
    return data, digest


def load_pickle(path: str | os.PathLike) -> dict:
    """Unpickle `path` allowing only containers, strings, numbers and numpy arrays."""
    return load_pickle_with_sha256(path)[0]

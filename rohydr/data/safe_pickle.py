"""Load an MMSA feature pickle without running code from it.

A pickle names Python callables ("globals") that the loader calls to rebuild objects; a malicious file
names `os.system` or `builtins.exec`. This loader resolves only the few globals numpy needs to rebuild
arrays, dtypes and scalars (plus harmless builtin containers) and refuses every other name.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
from typing import Any, BinaryIO

import numpy as np

from rohydr.errors import RohydrError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _numpy_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("_codecs").encode,  # bytes of arrays in protocol 2 pickles
    }
    # Pickles written by numpy 1.x name numpy.core, numpy 2.x names numpy._core: resolve both to the
    # objects of the installed numpy without importing the deprecated alias module.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = _multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5
    for module in ("builtins", "__builtin__"):  # __builtin__: protocol 2 pickles
        for name in ("set", "frozenset", "bytearray", "complex"):
            allowed[(module, name)] = getattr(__import__("builtins"), name)
    return allowed


ALLOWED_GLOBALS = _numpy_globals()


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
            data = _RestrictedUnpickler(reader, path).load()
        except RohydrError:
            raise
        except EOFError:
            raise RohydrError(f"{path} ends before the pickle does: the file is truncated "
                              "(an interrupted download or copy?)") from None
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, UnicodeDecodeError, OverflowError, MemoryError, RecursionError) as error:
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


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

"""Bounded, validated input: pickles that would allocate memory the file does not hold, and the
validation gaps beyond test_data's bad data (short sequences, ids shared between splits, duplicate
ids at scale, nested ids)."""
from __future__ import annotations

import pickle
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rohydr.core.errors import RohydrError
from rohydr.data.synthetic import make_synthetic, write_pickle
from rohydr.data.validate import validate_data, validate_file

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

SIZES = (40, 10, 20)
LENGTH = 12


@pytest.fixture
def data() -> dict:
    return make_synthetic("mosi", seed=3, sizes=SIZES, length=LENGTH)


def run_cli(*args, memory_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    return subprocess.run([sys.executable, "-m", "rohydr.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, preexec_fn=limit)


class DirectArray:
    """numpy.ndarray(shape, dtype) called from the pickle: memory no byte of the file backs."""

    def __reduce__(self):
        return np.ndarray, ((400, LENGTH, 5), np.dtype(np.float32))


class DeclaredShape:
    """_reconstruct with the array's full shape instead of numpy's (0,)."""

    def __reduce__(self):
        return _reconstruct, (np.ndarray, (400, LENGTH, 5), b"b")


class ObjectArrayShortOfItems:
    """An object array that declares 10^6 items and holds 3 (numpy itself crashes on this)."""

    def __reduce__(self):
        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (1000, 1000), np.dtype("O"), False, [1, 2, 3])


class HugeBytearray:
    """bytearray(n): n bytes from a number."""

    def __reduce__(self):
        return bytearray, (1 << 36,)


def _shared_nested_list(depth: int = 32) -> list:
    """2^depth labels from a few hundred bytes: each level references the one below twice."""
    level: list = [0.5]
    for _ in range(depth):
        level = [level, level]
    return level


BOMBS = {
    "ndarray called directly": ("audio", DirectArray(), "numpy.ndarray directly"),
    "declared shape": ("audio", DeclaredShape(), "declares an array of shape (400, 12, 5)"),
    "object array short of items": ("id", ObjectArrayShortOfItems(), "needs 1000000 items, the file holds 3"),
    "bytearray from a number": ("raw_text", HugeBytearray(), "bytearray from a int"),
    "shared nested labels": ("regression_labels", _shared_nested_list(), "regression_labels"),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_a_small_pickle_cannot_allocate_what_it_does_not_hold(tmp_path, data, case):
    key, value, fragment = BOMBS[case]
    data["train"][key] = value
    path = tmp_path / "bomb.pkl"
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=4)
    out = tmp_path / "out.h5"
    for command in (["validate", path], ["convert", path, out]):
        result = run_cli(*command, memory_limit=3 << 30)
        assert result.returncode == 2, (case, result.returncode, result.stderr[-2000:])
        assert fragment in result.stderr and "bomb.pkl" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def test_arrays_with_shared_buffers_and_old_protocols_still_load(tmp_path, data):
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        with open(path, "wb") as handle:
            pickle.dump(data, handle, protocol=protocol)
        loaded, report = validate_file(path)
        assert type(loaded["train"]["audio"]) is np.ndarray and type(loaded["test"]["id"]) is np.ndarray
        assert np.array_equal(loaded["train"]["vision"], data["train"]["vision"])
        assert report["splits"]["train"]["n"] == SIZES[0]


def test_sequences_shorter_than_the_extractor_kernel_are_refused_at_validate(tmp_path, data):
    path = tmp_path / "short.pkl"
    write_pickle(data, path)
    assert run_cli("validate", path, "--min-length", LENGTH).returncode == 0
    result = run_cli("validate", path, "--min-length", LENGTH + 1, "--report", tmp_path / "r.json")
    assert result.returncode == 2 and "shorter than the feature extractor's kernel 13" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_ids_shared_between_splits_are_reported_as_possible_leakage(tmp_path, data):
    data["test"]["id"][:2] = data["train"]["id"][:2]
    path = tmp_path / "leak.pkl"
    write_pickle(data, path)
    result = run_cli("validate", path, "--report", tmp_path / "r.json")
    assert result.returncode == 0 and "possible leakage" in result.stderr and "'train' and 'test' share 2" in result.stderr
    assert "possible leakage" in (tmp_path / "r.json").read_text()


def test_the_duplicate_id_check_is_linear_in_the_number_of_samples(data):
    n = 200_000  # a check that is quadratic in the duplicates takes hours here
    ids = np.array([f"v{i % (n // 2)}$_$1" for i in range(n)], dtype=object)
    big = {split: dict(content) for split, content in data.items()}
    big["train"] = {"text": np.zeros((n, 1, 1), np.float32), "audio": np.zeros((n, 1, 1), np.float32),
                    "vision": np.zeros((n, 1, 1), np.float32), "regression_labels": np.zeros(n, np.float32),
                    "id": ids}
    script = ("import pickle, sys; from rohydr.data.validate import validate_data\n"
              "try:\n    validate_data(pickle.load(sys.stdin.buffer), 'big.pkl', sha256='0')\n"
              "except Exception as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(big), capture_output=True, timeout=60)
    assert b"100000 duplicate id(s)" in result.stdout, result.stdout[-500:] + result.stderr[-500:]


def test_validate_data_in_process_names_the_key_for_nested_ids(data):
    data["valid"]["id"] = [["nested"]] * SIZES[1]
    with pytest.raises(RohydrError, match="'valid' key 'id' holds something other than strings"):
        validate_data(data, Path("x.pkl"), sha256="0")

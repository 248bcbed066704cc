"""Fixed availability masks: exact protocol fractions, determinism per seed, the HDF5 file and its checks."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from helpers import run_cli
from rohydr.core.errors import RohydrError
from rohydr.core.vocabulary import BATCH_CONDITION, CONDITIONS, MISSING_PATTERNS, MR_CONDITIONS, MR_FRACTIONS, PATTERNS
from rohydr.data.masks import (
    draw_batch_mr_masks,
    draw_mr_masks,
    draw_pattern_masks,
    load_masks,
    make_masks,
    realized_missing_rate,
    write_masks,
)

SIZES = {"train": 50, "valid": 90, "test": 200}


def write_features(path, sizes=SIZES):
    """The part of a features.h5 that `rohydr masks` reads: /{split}/labels."""
    with h5py.File(path, "w") as h5:
        for split, n in sizes.items():
            h5.create_dataset(f"{split}/labels", data=np.linspace(-3, 3, n, dtype=np.float32))
    return path


def test_condition_names():
    assert list(PATTERNS) == ["l", "a", "v", "la", "lv", "av", "complete"]
    assert MISSING_PATTERNS == ("l", "a", "v", "la", "lv", "av")
    assert MR_CONDITIONS == tuple(f"mr0.{i}" for i in range(1, 8))
    assert list(CONDITIONS) == [*PATTERNS, *MR_CONDITIONS, "batch_mr0.7", "all_patterns"]


def test_fixed_patterns_are_exact():
    masks = make_masks(SIZES, seed=0)["test"]
    assert masks["l"].shape == (200, 3)
    for name, pattern in PATTERNS.items():
        assert (masks[name] == np.array(pattern)).all(), name
    assert masks["la"][0].tolist() == [True, True, False]  # (l, a, v) order
    assert realized_missing_rate(masks["complete"]) == 0.0
    assert realized_missing_rate(masks["av"]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("mr", list(MR_FRACTIONS))
def test_mr_draw_has_exact_counts(mr):
    n = 200
    mask = draw_mr_masks(n, mr, np.random.default_rng(5))
    available = mask.sum(axis=1)
    two, one = MR_FRACTIONS[mr]
    assert (available == 1).sum() == round(two * n)
    assert (available == 2).sum() == round(one * n)
    assert (available == 3).sum() == n - round(two * n) - round(one * n)
    assert available.min() >= 1
    assert realized_missing_rate(mask) == pytest.approx((2 * two + one) / 3)


def test_mr07_leaves_one_modality_everywhere_and_choices_are_spread():
    mask = make_masks({"valid": 30, "test": 3000}, seed=4)["test"]["mr0.7"]
    assert realized_missing_rate(mask) == pytest.approx(2 / 3)
    assert (mask.sum(axis=1) == 1).all()
    shares = mask.mean(axis=0)  # which modality remains: uniform
    assert np.allclose(shares, 1 / 3, atol=0.04)


def test_mr_zero_is_complete_and_unknown_rates_fail():
    assert draw_mr_masks(10, 0.0, np.random.default_rng(0)).all()
    with pytest.raises(RohydrError, match="0.25"):
        draw_mr_masks(10, 0.25, np.random.default_rng(0))


def test_batch_draw_shares_one_pattern_per_batch():
    n, batch = 1000, 32  # 32 batches -> counts over 30
    mask = draw_batch_mr_masks(n, batch, 0.4, np.random.default_rng(1))
    patterns = [mask[start:start + batch] for start in range(0, n, batch)]
    assert all((rows == rows[0]).all() for rows in patterns)
    available = [int(rows[0].sum()) for rows in patterns]
    # two-missing while count/30 < 0.5 (15 batches), then one-missing while count/30 < 0.2 (6), rest complete
    assert available == [1] * 15 + [2] * 6 + [3] * 11
    assert len({tuple(rows[0]) for rows in patterns[:15]}) > 1  # the kept modality varies across batches


def test_batch_draw_mr07_and_small_splits():
    mask = draw_batch_mr_masks(700, 32, 0.7, np.random.default_rng(0))  # 22 batches -> rounded to 20
    assert (mask[:640].sum(axis=1) == 1).all() and mask[640:].all()
    small = draw_batch_mr_masks(50, 32, 0.7, np.random.default_rng(0))  # 2 batches, no division by zero
    assert (small.sum(axis=1) == 1).all()


def test_same_seed_same_masks_and_files(tmp_path):
    first, second = make_masks(SIZES, seed=7), make_masks(SIZES, seed=7)
    for split in ("valid", "test"):
        for name in CONDITIONS:
            assert np.array_equal(first[split][name], second[split][name])
    write_masks(tmp_path / "a.h5", first, 7, "features.h5", "0" * 64)
    write_masks(tmp_path / "b.h5", second, 7, "features.h5", "0" * 64)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_different_seeds_differ():
    first, second = make_masks(SIZES, seed=1), make_masks(SIZES, seed=2)
    for name in (*MR_CONDITIONS, BATCH_CONDITION):
        assert not np.array_equal(first["test"][name], second["test"][name]), name


def test_masks_depend_only_on_seed_and_own_split_size():
    base = make_masks({"valid": 90, "test": 200}, seed=3)
    other_valid = make_masks({"valid": 17, "test": 200, "train": 999}, seed=3)
    for name in CONDITIONS:
        assert np.array_equal(base["test"][name], other_valid["test"][name]), name
    # conditions are independent streams: the valid and test draws of a condition differ
    assert not np.array_equal(base["valid"]["mr0.5"], base["test"]["mr0.5"][:90])


def test_cli_writes_file_and_load_reads_it(tmp_path):
    features = write_features(tmp_path / "features.h5")
    out = tmp_path / "masks.h5"
    result = run_cli("masks", "--data", features, "--seed", 3, "--out", out)
    assert "mr0.7" in result.stdout
    expected = make_masks(SIZES, seed=3)
    for split in ("valid", "test"):
        loaded = load_masks(out, split)
        assert list(loaded) == list(CONDITIONS)
        for name in CONDITIONS:
            assert loaded[name].dtype == bool
            assert np.array_equal(loaded[name], expected[split][name]), (split, name)
    with h5py.File(out) as h5:
        assert h5.attrs["seed"] == 3 and h5.attrs["source"] == str(features)
        assert h5.attrs["n_valid"] == 90 and h5.attrs["n_test"] == 200
        node = h5["test/mr0.7"]
        assert node.dtype == np.uint8 and node.shape == (200, 3)
        assert node.attrs["protocol"] == "mr" and node.attrs["nominal_mr"] == pytest.approx(0.7)
        assert node.attrs["realized_mr"] == pytest.approx(2 / 3)
        assert math.isnan(h5["test/la"].attrs["nominal_mr"]) and h5["test/la"].attrs["protocol"] == "pattern"
        assert h5["test/batch_mr0.7"].attrs["protocol"] == "batch_mr"


def test_cli_reports_missing_labels(tmp_path):
    features = write_features(tmp_path / "features.h5", {"train": 5, "valid": 5})
    result = run_cli("masks", "--data", features, "--out", tmp_path / "m.h5", check=False)
    assert result.returncode == 2 and "test/labels" in result.stderr
    assert not (tmp_path / "m.h5").exists()


def test_load_rejects_malformed_files(tmp_path):
    path = tmp_path / "masks.h5"
    write_masks(path, make_masks(SIZES, seed=0), 0, "x", "0" * 64)
    with pytest.raises(RohydrError, match="split 'train'"):
        load_masks(path, "train")
    with h5py.File(path, "a") as h5:
        del h5["test/lv"]
        h5["test/lv"] = np.ones((200, 2), dtype=np.uint8)
        del h5["valid/mr0.3"]
    with pytest.raises(RohydrError, match=r"masks .*masks.h5: split 'test', condition 'lv': found shape \(200, 2\)"):
        load_masks(path, "test")
    with pytest.raises(RohydrError, match="condition 'mr0.3': missing"):
        load_masks(path, "valid")
    with pytest.raises(RohydrError, match="no such file"):
        load_masks(tmp_path / "absent.h5", "test")


def test_pattern_draw_covers_every_pattern_in_its_share():
    rng = np.random.default_rng(0)
    mask = draw_pattern_masks(700, dict.fromkeys(PATTERNS, 1.0), rng)
    counts = {name: int((mask == np.array(pattern)).all(axis=1).sum()) for name, pattern in PATTERNS.items()}
    assert counts == dict.fromkeys(PATTERNS, 100)
    weighted = draw_pattern_masks(10, {"l": 3.0, "av": 1.0, "complete": 0.0}, rng)
    assert (weighted == np.array(PATTERNS["l"])).all(axis=1).sum() == 8  # 7.5 rounds up by the larger remainder
    assert (weighted == np.array(PATTERNS["av"])).all(axis=1).sum() == 2
    assert not np.array_equal(mask, draw_pattern_masks(700, dict.fromkeys(PATTERNS, 1.0), rng))  # rows shuffled
    with pytest.raises(RohydrError, match="positive weight"):
        draw_pattern_masks(10, {"l": 0.0}, rng)
    validation = make_masks(SIZES, seed=0)["valid"]["all_patterns"]  # the all-pattern protocol's selection masks
    assert len({tuple(row) for row in validation.tolist()}) == 7

"""Fixed availability masks of the validation and test splits, saved once so every method sees the same.

A mask is a bool array (N, 3) in (l, a, v) order; True = the modality is available. Conditions:
- the seven fixed patterns, named by the AVAILABLE modalities: l, a, v, la, lv, av, complete;
- mr0.1 .. mr0.7: the IMDer missing-rate protocol, per sample: exact fractions of samples with two and
  with one missing modality (MR_FRACTIONS), the rest complete, which modalities remain uniform at random;
- batch_mr0.7: the reference implementation's draw at MR 0.7 with batches of 32 in split order, one
  pattern per batch (draw_batch_mr_masks);
- all_patterns: every sample one of the seven patterns, in equal shares (draw_pattern_masks): the
  validation condition of the all-pattern training protocol, which selects a model for every condition.
Each condition has its own random stream, seeded by (seed, split, condition) only: the masks depend on
nothing but the split sizes and the seed, so every variant of a seed is scored on identical masks.
"""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from rohydr.core.errors import RohydrError
from rohydr.core.io import atomic_path, ensure_free_space, read_hdf5
from rohydr.core.layout import ALL_PATTERNS
from rohydr.core.vocabulary import (
    ALL_PATTERNS_CONDITION,
    BATCH_CONDITION,
    BATCH_SIZE,
    CONDITIONS,
    MODALITIES,
    MR_CONDITIONS,
    MR_FRACTIONS,
    NOMINAL_MR,
    PATTERNS,
    SPLITS,
)

MASK_SPLITS = ("valid", "test")


def protocol_of(condition: str) -> str:
    if condition in PATTERNS:
        return "pattern"
    if condition in MR_CONDITIONS:
        return "mr"
    if condition == BATCH_CONDITION:
        return "batch_mr"
    if condition == ALL_PATTERNS_CONDITION:
        return ALL_PATTERNS
    raise KeyError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")


def mr_fractions(mr: float) -> tuple[float, float]:
    """(two-missing, one-missing) fractions of a nominal MR; MR 0 is all complete."""
    key = round(float(mr), 1)
    if key == 0.0 and abs(mr) < 1e-9:
        return 0.0, 0.0
    if key not in MR_FRACTIONS or abs(key - mr) > 1e-9:
        raise RohydrError(f"missing rate {mr} is not one of 0, {', '.join(map(str, MR_FRACTIONS))}")
    return MR_FRACTIONS[key]


def pattern_mask(name: str, n: int) -> np.ndarray:
    return np.tile(np.array(PATTERNS[name], dtype=bool), (n, 1))


def _rows_keeping(k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows with exactly k available modalities, chosen uniformly; (count, 3) bool."""
    rows = np.zeros((count, 3), dtype=bool)
    if k == 1:
        rows[np.arange(count), rng.integers(3, size=count)] = True
    elif k == 2:
        rows[:] = True
        rows[np.arange(count), rng.integers(3, size=count)] = False
    else:
        rows[:] = True
    return rows


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def draw_mr_masks(n: int, mr: float, rng: np.random.Generator) -> np.ndarray:
    """Per-sample draw: exactly round(f2 n) samples keep one modality, round(f1 n) keep two; (n, 3) bool."""
    f2, f1 = mr_fractions(mr)
    n_two = min(_round_half_up(f2 * n), n)
    n_one = min(_round_half_up(f1 * n), n - n_two)
    order = rng.permutation(n)
    mask = np.ones((n, 3), dtype=bool)
    mask[order[:n_two]] = _rows_keeping(1, n_two, rng)
    mask[order[n_two:n_two + n_one]] = _rows_keeping(2, n_one, rng)
    return mask


def draw_pattern_masks(n: int, weights: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Per-sample draw over availability patterns (name -> weight, e.g. the seven of PATTERNS): each
    pattern gets its share of the n rows by largest remainder, rows assigned in random order; (n, 3) bool."""
    names = [name for name, weight in weights.items() if weight > 0]
    if not names:
        raise RohydrError(f"pattern weights {weights}: at least one pattern needs a positive weight")
    unknown = sorted(set(weights) - set(PATTERNS))
    if unknown:
        raise RohydrError(f"pattern weights name unknown pattern(s) {unknown}; known: {', '.join(PATTERNS)}")
    shares = np.array([weights[name] for name in names], dtype=float)
    exact = shares / shares.sum() * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[:n - counts.sum()]] += 1
    patterns = np.repeat(np.array([PATTERNS[name] for name in names], dtype=bool), counts, axis=0)
    return patterns[rng.permutation(n)]


def draw_batch_mr_masks(n: int, batch_size: int, mr: float, rng: np.random.Generator) -> np.ndarray:
    """The reference's per-batch draw, by position: consecutive batches of `batch_size` rows share one pattern.

    Walking the batches in order, a batch misses two modalities while (two-missing batches so far) /
    D < f2, else one modality while (one-missing batches so far) / D < f1, else none; D is the
    number of batches rounded to a multiple of ten (as in the reference, so the last batches may stay
    complete). The available modalities of a batch are a uniform random subset of the right size.
    Fixes against the reference: mr indexes its fractions directly (the reference turns mr = 0 into
    0.7), and D falls back to the batch count when rounding gives 0 (fewer than 5 batches), where the
    reference divides by zero and leaves everything complete.
    """
    f2, f1 = mr_fractions(mr)
    n_batches = math.ceil(n / batch_size)
    denominator = float(np.round(n_batches / 10) * 10) or float(n_batches)
    mask = np.ones((n, 3), dtype=bool)
    two_missing = one_missing = 0
    for b in range(n_batches):
        if two_missing / denominator < f2:
            available, two_missing = 1, two_missing + 1
        elif one_missing / denominator < f1:
            available, one_missing = 2, one_missing + 1
        else:
            available = 3
        row = np.zeros(3, dtype=bool)
        row[rng.choice(3, size=available, replace=False)] = True
        mask[b * batch_size:(b + 1) * batch_size] = row
    return mask


def realized_missing_rate(mask: np.ndarray) -> float:
    """Missing entries / (3 N)."""
    mask = np.asarray(mask, dtype=bool)
    return float((~mask).sum() / mask.size) if mask.size else float("nan")


def condition_rng(seed: int, split: str, condition: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), CONDITIONS.index(condition)]))


def condition_mask(condition: str, n: int, rng: np.random.Generator) -> np.ndarray:
    protocol = protocol_of(condition)
    if protocol == "pattern":
        return pattern_mask(condition, n)
    if protocol == "mr":
        return draw_mr_masks(n, NOMINAL_MR[condition], rng)
    if protocol == ALL_PATTERNS:
        return draw_pattern_masks(n, {name: 1.0 for name in PATTERNS}, rng)
    return draw_batch_mr_masks(n, BATCH_SIZE, NOMINAL_MR[condition], rng)


def make_masks(sizes: dict[str, int], seed: int) -> dict[str, dict[str, np.ndarray]]:
    """split -> condition -> (N, 3) bool for the validation and test splits."""
    if int(seed) < 0:
        raise RohydrError(f"mask seed must be >= 0, got {seed}")
    missing = [split for split in MASK_SPLITS if split not in sizes]
    if missing:
        raise RohydrError(f"make_masks: no size for split(s) {missing}; got {sorted(sizes)}")
    return {split: {condition: condition_mask(condition, int(sizes[split]), condition_rng(int(seed), split, condition))
                    for condition in CONDITIONS}
            for split in MASK_SPLITS}


def write_masks(path, masks: dict[str, dict[str, np.ndarray]], seed: int, source: str, source_sha256: str) -> None:
    rows = sum(len(mask) for by_condition in masks.values() for mask in by_condition.values())
    ensure_free_space(path, 4 * rows + (1 << 20))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["seed"] = int(seed)
        h5.attrs["source"] = str(source)
        h5.attrs["source_sha256"] = source_sha256  # the features.h5 these masks were drawn for
        h5.attrs["modalities"] = ",".join(MODALITIES)
        for split, by_condition in masks.items():
            group = h5.create_group(split)
            n = len(next(iter(by_condition.values()))) if by_condition else 0
            h5.attrs[f"n_{split}"] = n
            group.attrs["n"] = n
            for condition, mask in by_condition.items():
                data = group.create_dataset(condition, data=np.asarray(mask, dtype=np.uint8), fletcher32=True)
                data.attrs["nominal_mr"] = float(NOMINAL_MR.get(condition, np.nan))
                data.attrs["realized_mr"] = realized_missing_rate(mask)
                data.attrs["protocol"] = protocol_of(condition)


def _read_mask(h5: h5py.File, path: str, split: str, condition: str) -> np.ndarray:
    where = f"masks {path}: split {split!r}, condition {condition!r}"
    if condition not in h5[split]:
        raise RohydrError(f"{where}: missing; expected the conditions {', '.join(CONDITIONS)} "
                          "(rerun `rohydr masks`)")
    node = h5[split][condition]
    if not isinstance(node, h5py.Dataset) or node.ndim != 2 or node.shape[1] != 3:
        shape = getattr(node, "shape", "a group")
        raise RohydrError(f"{where}: found shape {shape}, expected (N, 3) in (l, a, v) order")
    values = read_hdf5(node, path)
    if not np.isin(values, (0, 1)).all():
        raise RohydrError(f"{where}: found values {np.unique(values)[:5]}, expected 0/1")
    mask = values.astype(bool)
    if (~mask).all(axis=1).any():
        raise RohydrError(f"{where}: {int((~mask).all(axis=1).sum())} rows have no available modality")
    return mask


def _open_h5(path, what: str, hint: str = "") -> h5py.File:
    if not Path(path).is_file():
        raise RohydrError(f"{what} {path}: no such file{hint}")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise RohydrError(f"{what} {path}: not a readable HDF5 file ({error})") from None


def load_masks(path, split: str, data=None) -> dict[str, np.ndarray]:
    """condition -> (N, 3) bool for one split, ordered as CONDITIONS. `data`: (path, SHA-256, N of the
    split) of the feature file they are used with; masks drawn for another dataset are refused."""
    with _open_h5(path, "masks", " (make it with `rohydr masks`)") as h5:
        if split not in h5 or not isinstance(h5[split], h5py.Group):
            raise RohydrError(f"masks {path}: no split {split!r}; found {sorted(h5)}, expected {list(MASK_SPLITS)}")
        masks = {condition: _read_mask(h5, path, split, condition) for condition in CONDITIONS}
        source = h5.attrs.get("source_sha256")
    sizes = {len(mask) for mask in masks.values()}
    if len(sizes) != 1:
        raise RohydrError(f"masks {path}: split {split!r} has conditions of different lengths {sorted(sizes)}")
    if data is not None:
        _check_masks_fit(path, split, source, sizes.pop(), *data)
    return masks


def masks_seed(path) -> int:
    """The seed the masks were drawn with (stored in the file by `rohydr masks`)."""
    with _open_h5(path, "masks", " (make it with `rohydr masks`)") as h5:
        seed = h5.attrs.get("seed")
    if seed is None or not np.issubdtype(type(seed), np.integer):
        raise RohydrError(f"masks {path}: no integer 'seed' attribute (masks are written by `rohydr masks`)")
    return int(seed)


def _check_masks_fit(path, split: str, source, n_masks: int, data_path, data_sha256: str, n_data: int) -> None:
    if n_masks != n_data:
        raise RohydrError(f"masks {path}: split {split!r} has {n_masks} rows, but {data_path} has {n_data} "
                          "samples: these masks were drawn for another dataset (rerun `rohydr masks`)")
    if source != data_sha256:
        raise RohydrError(f"masks {path} were drawn for another feature file (content "
                          f"{str(source)[:12] if source else 'unrecorded'}...), not {data_path} "
                          f"({data_sha256[:12]}...): rerun `rohydr masks --data {data_path}`")


def split_sizes(data) -> dict[str, int]:
    """N per masked split, from the labels of a features.h5."""
    with _open_h5(data, "features") as h5:
        sizes = {}
        for split in MASK_SPLITS:
            key = f"{split}/labels"
            if key not in h5:
                raise RohydrError(f"features {data}: no dataset /{key} (expected the layout of `rohydr convert`)")
            sizes[split] = int(h5[key].shape[0])
    return sizes

"""Per-row predictions behind the tables: each run's predictions under every condition of the saved
masks, and the Bayes optimum's decisions on the same masks, for the intervals and the collapse check.

A source is (run, protocol): a trained model (protocol `all_patterns`, `mr0.1` ...), the
pretrained backbone (`complete_data`), the per-MR models taken together (`per_mr`: each rate's
condition from the model trained at that rate) or the optimum (`OPTIMUM`).
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd

from rohydr.core.errors import RohydrError
from rohydr.core.layout import PER_MR
from rohydr.core.metrics import METRICS
from rohydr.core.vocabulary import MR_CONDITIONS, PATTERNS, pattern_codes
from rohydr.data.masks import load_masks, masks_seed
from rohydr.data.optimum import PREDICTION_OF, read_samples
from rohydr.reporting.uncertainty import BOOTSTRAPPED, Estimate, collapse, estimate, resample_counts, seed_values

OPTIMUM = ("optimum", "bayes")
AVERAGES = {"avg_patterns": ("l", "a", "v", "la", "lv", "av"), "avg_mr": MR_CONDITIONS}


def read_predictions(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(pattern -> (N,) predictions, labels (N,)) of a predictions.csv.gz of `rohydr evaluate`."""
    try:
        with gzip.open(path, "rt") as handle:
            table = pd.read_csv(io.StringIO(handle.read()), usecols=["id", "label", "pattern", "prediction"])
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as error:
        raise RohydrError(f"predictions {path}: not a readable predictions.csv.gz ({error})") from None
    by_pattern = {pattern: group.prediction.to_numpy(np.float64) for pattern, group in table.groupby("pattern", sort=False)}
    labels = table[table.pattern == table.pattern.iloc[0]].label.to_numpy(np.float64) if len(table) else np.array([])
    return by_pattern, labels


CODE_OF = dict(zip(PATTERNS, pattern_codes(np.array(list(PATTERNS.values())))))


def gather(by_pattern: dict[str, np.ndarray], mask: np.ndarray, where: str) -> np.ndarray:
    """Row i's prediction under its own pattern of `mask` (N, 3)."""
    codes = pattern_codes(mask)
    out = np.full(len(mask), np.nan)
    for name in _patterns_of(mask):
        if name not in by_pattern:
            raise RohydrError(f"{where}: no predictions under pattern {name!r}, which the masks use")
        rows = codes == CODE_OF[name]
        out[rows] = by_pattern[name][rows]
    return out


# A test split with fewer rows than this (of those a metric keeps) gives no interval worth printing.
MIN_TEST_ROWS = 10


class Evidence:
    """Per-row predictions per (source, seed, condition), with the resampled metrics they give."""

    def __init__(self, masks: dict[int, dict[str, np.ndarray]], labels: np.ndarray):
        self.masks, self.labels = masks, labels
        self.counts = resample_counts(len(labels))
        self.models: dict[tuple[str, str], dict[int, dict[str, np.ndarray]]] = {}
        self.optimum: dict[str, dict[str, np.ndarray]] | None = None
        self._cache: dict = {}

    @classmethod
    def load(cls, mask_paths: list, prediction_paths: dict[tuple[str, str, int], Path], optimum_path=None):
        masks, labels = {}, None
        for path in mask_paths:
            seed = masks_seed(path)
            masks[seed] = load_masks(path, "test")
        if not masks:
            raise RohydrError("aggregate: intervals need the test masks (--masks)")
        evidence = None
        for (run, protocol, seed), path in prediction_paths.items():
            by_pattern, found = read_predictions(path)
            if evidence is None:
                evidence, labels = cls(masks, found), found
            elif len(found) != len(labels) or not np.array_equal(found, labels):
                raise RohydrError(f"predictions {path}: its test labels differ from the other runs' (other data?)")
            if seed not in masks:
                raise RohydrError(f"predictions {path}: no test masks of seed {seed} were given (--masks)")
            evidence.models.setdefault((run, protocol), {})[seed] = by_pattern
        if evidence is None:
            raise RohydrError("aggregate: intervals need the predictions.csv.gz beside each eval.csv")
        for seed, by_condition in masks.items():
            n = len(next(iter(by_condition.values())))
            if n != len(labels):
                raise RohydrError(f"masks of seed {seed}: {n} test rows, the predictions have {len(labels)}")
        if optimum_path is not None:
            samples, optimum_labels = read_samples(optimum_path)
            if len(optimum_labels) != len(labels) or not np.allclose(optimum_labels, labels, atol=1e-5):
                raise RohydrError(f"optimum {optimum_path}: its test labels differ from the predictions' "
                                  "(written for another dataset?)")
            evidence.optimum = samples
        return evidence

    def add_per_mr(self) -> None:
        """The per-MR source of every run trained at some rate: rate x's condition from the model of rate x."""
        for run in {run for run, protocol in self.models if protocol in MR_CONDITIONS}:
            self.models[(run, PER_MR)] = {}
            for condition in MR_CONDITIONS:
                for seed, by_pattern in self.models.get((run, condition), {}).items():
                    self.models[(run, PER_MR)].setdefault(seed, {})[condition] = by_pattern

    # ------------------------------------------------------------------------------------------
    def undefined(self, metric: str) -> str:
        """Why the test labels cannot give `metric` (or a difference of it) a value with an interval; "" if they
        can. The non-0 metrics keep the rows whose label is not 0; a binary metric needs both classes."""
        metric = metric.removeprefix("delta_").removeprefix("gap_")
        if metric not in METRICS:
            return ""
        labels = self.labels[self.labels != 0] if metric.endswith("non0") else self.labels
        rows = "non-0 test labels" if metric.endswith("non0") else "test labels"
        if len(labels) < MIN_TEST_ROWS:
            return f"{len(labels)} {rows}"
        if metric.startswith(("acc2", "f1")):
            positive = labels > 0 if metric.endswith("non0") else labels >= 0
            if positive.all() or not positive.any():
                return f"all {rows} of one sign"
        return ""

    def seeds(self, source) -> list[int]:
        if source == OPTIMUM:
            return sorted(self.masks) if self.optimum is not None else []
        return sorted(self.models.get(source, {}))

    def has(self, source, condition: str) -> bool:
        members = AVERAGES.get(condition, (condition,))
        return bool(self.seeds(source)) and all(self._available(source, c) for c in members)

    def _available(self, source, condition: str) -> bool:
        """Every seed has the condition's masks and a prediction under each pattern they use."""
        for seed in self.seeds(source):
            if condition not in self.masks[seed]:
                return False
            if source == OPTIMUM:
                continue
            by_pattern = self.models[source][seed]
            if source[1] == PER_MR:
                if condition not in by_pattern:
                    return False
                by_pattern = by_pattern[condition]
            if not set(_patterns_of(self.masks[seed][condition])) <= set(by_pattern):
                return False
        return True

    def predictions(self, source, seed: int, condition: str, metric: str) -> np.ndarray:
        mask = self.masks[seed][condition]
        if source == OPTIMUM:
            kind = PREDICTION_OF[metric]
            return gather({p: decisions[kind] for p, decisions in self.optimum.items()}, mask, "optimum")
        by_pattern = self.models[source][seed]
        if source[1] == PER_MR:
            by_pattern = by_pattern[condition]
        return gather(by_pattern, mask, f"run {source[0]} ({source[1]}) seed {seed}")

    def values(self, source, condition: str, metric: str, seeds: list[int]):
        """Per seed: the metric (S,) and its resampled values (S, R); an average condition averages its members."""
        members = AVERAGES.get(condition, (condition,))
        parts = [self._member_values(source, c, metric, tuple(seeds)) for c in members]
        return np.mean([p[0] for p in parts], axis=0), np.mean([p[1] for p in parts], axis=0)

    def _member_values(self, source, condition: str, metric: str, seeds: tuple[int, ...]):
        key = (source, condition, metric, seeds)
        if key not in self._cache:
            predictions = [self.predictions(source, seed, condition, metric) for seed in seeds]
            self._cache[key] = seed_values(metric, predictions, self.labels, self.counts)
        return self._cache[key]

    # ------------------------------------------------------------------------------------------
    def estimate(self, source, condition: str, metric: str) -> Estimate | None:
        if metric not in BOOTSTRAPPED or not self.has(source, condition):
            return None
        return estimate(*self.values(source, condition, metric, self.seeds(source)))

    def difference(self, source, reference, condition: str, metric: str) -> Estimate | None:
        """source minus reference, paired by seed and by resample, on the seeds both have."""
        seeds = sorted(set(self.seeds(source)) & set(self.seeds(reference)))
        if metric not in BOOTSTRAPPED or not seeds or not (self.has(source, condition) and self.has(reference, condition)):
            return None
        mine, theirs = self.values(source, condition, metric, seeds), self.values(reference, condition, metric, seeds)
        return estimate(mine[0] - theirs[0], mine[1] - theirs[1])

    def share_of_gap(self, source, floor, condition: str, metric: str) -> Estimate | None:
        """(source - floor) / (optimum - floor), per seed and resample, as a fraction."""
        sources = (source, floor, OPTIMUM)
        seeds = sorted(set.intersection(*(set(self.seeds(s)) for s in sources)))
        if metric not in BOOTSTRAPPED or not seeds or not all(self.has(s, condition) for s in sources):
            return None
        (m, m_r), (f, f_r), (o, o_r) = (self.values(s, condition, metric, seeds) for s in sources)
        with np.errstate(divide="ignore", invalid="ignore"):
            return estimate((m - f) / (o - f), (m_r - f_r) / (o_r - f_r))

    def collapsed(self, source, condition: str) -> list[tuple[int, str]]:
        """(seed, why) for each seed whose predictions on the condition carry no information."""
        if source == OPTIMUM or not self.has(source, condition):
            return []
        found = []
        for seed in self.seeds(source):
            for member in AVERAGES.get(condition, (condition,)):
                why = collapse(self.predictions(source, seed, member, "mae"), self.labels)
                if why:
                    found.append((seed, why if member == condition else f"{member}: {why}"))
                    break
        return found


def _patterns_of(mask: np.ndarray) -> list[str]:
    used = set(np.unique(pattern_codes(mask)).tolist())
    return [name for name, code in CODE_OF.items() if code in used]

"""The Bayes-optimal predictions of the synthetic data, computed from its generative model (no fitting).

Given the features of the available modalities of one sample, the posterior of the latents theta is
exactly Gaussian (rohydr/data/synthetic.py: everything is linear-Gaussian). Per modality, the
observed sequence projected on the span of the modality's projection rows is a sufficient
statistic (the orthogonal complement is white noise alone); over the w valid positions its
covariance is K_w (x) B + sigma^2 I (K_w: the AR(1) correlation of the wobble and nuisance, B their
covariance through the projection), whose eigenvectors are those of K_w times those of B. That gives
the generalised-least-squares information J_m and statistic b_m on the content c_m in closed form;
the posterior of theta has precision I + sum_m M_m' J_m M_m and mean its inverse times sum_m M_m' b_m.
The unrounded label is a linear function of theta, so its posterior is Gaussian, and the posterior
of the rounded, clipped label (the 19 values k/3) follows from normal CDFs at the bin edges.
Zero padding (positions >= w) carries no information; w is known from any available modality.
An audio step holding a -inf (set to 0 at conversion) is left out of the audio statistic: the
optimum ignores the rest of that step, so for those few samples it is a slight underestimate.

Each metric is scored on its own Bayes decision under that posterior (DECISIONS). Beside the
optimum, the complete-data optimal predictor (the same posterior with all three modalities observed)
is fed, for the missing modalities, their conditional mean E[x_miss | available], zeros, or the
training split's per-feature mean: the headroom of recovery.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from rohydr.core.errors import RohydrError
from rohydr.core.io import atomic_path
from rohydr.core.metrics import METRICS, score
from rohydr.core.vocabulary import FEATURE_KEYS, MISSING_PATTERNS, PATTERNS
from rohydr.data.synthetic import AR_COEF, CONTENT_DIMS, FEATURE_NOISE, FEATURE_SCALE, GenerativeModel, LATENT_NOISE
FILLS = ("conditional_mean", "zeros", "train_mean")  # what the complete-data predictor is fed
GRID = np.arange(-9, 10) / 3.0  # the label values
EDGES = (np.arange(-9, 9) + 0.5) / 3.0  # between consecutive GRID values
AUDIO = FEATURE_KEYS.index("audio")
# metric -> the prediction it is scored on
DECISIONS = {
    "acc2_has0": "sign: +1 when P(label >= 0) >= 1/2, else -1",
    "f1_has0": "the Acc-2 (has-0) decision (not tuned for F1)",
    "acc2_non0": "sign: +1 when P(label > 0) >= P(label < 0), else -1",
    "f1_non0": "the Acc-2 (non-0) decision (not tuned for F1)",
    "acc5": "the most probable class of round(clip(label, -2, 2))",
    "acc7": "the most probable class of round(label)",
    "mae": "the posterior median of the label",
    "corr": "the posterior mean of the label (the function of the inputs most correlated with it)",
}
PREDICTION_OF = {"acc2_has0": "has0", "f1_has0": "has0", "acc2_non0": "non0", "f1_non0": "non0",
                 "acc5": "class5", "acc7": "class7", "mae": "median", "corr": "mean"}
PREDICTIONS = ("has0", "non0", "class5", "class7", "median", "mean")


@dataclass(frozen=True)
class _ModalityGeometry:
    """Per modality: the sufficient projection and the eigen-structure of its per-step noise."""
    mean: np.ndarray  # (d,)
    basis: np.ndarray  # Q (d, r): orthonormal span of the projection rows
    content_v: np.ndarray  # H' V (CONTENT_DIMS, r): content in the noise eigenbasis
    basis_v: np.ndarray  # Q V (d, r)
    noise_eigenvalues: np.ndarray  # (r,) of B
    white_variance: float


def _geometry(model: GenerativeModel, m: int) -> _ModalityGeometry:
    weights = model.projections[m].weights.astype(np.float64)
    _, singular, right = np.linalg.svd(weights, full_matrices=False)
    basis = right[singular > 1e-10 * singular[0]].T
    projected = weights @ basis  # rows: content, then nuisance
    content, nuisance = projected[:CONTENT_DIMS], projected[CONTENT_DIMS:]
    noise_cov = LATENT_NOISE[m] ** 2 * content.T @ content + nuisance.T @ nuisance
    eigenvalues, eigenvectors = np.linalg.eigh(noise_cov)
    return _ModalityGeometry(model.projections[m].mean.astype(np.float64), basis, content @ eigenvectors,
                             basis @ eigenvectors, eigenvalues, float((FEATURE_NOISE[m] * FEATURE_SCALE[m]) ** 2))


def _time_weights(geometry: _ModalityGeometry, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For valid positions `steps`: (G (|steps|, r), s (r,)) with b = H'V sum_t G_t * (y_t V), J = H'V diag(s) V'H."""
    correlation = AR_COEF ** np.abs(steps[:, None] - steps[None, :]).astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(correlation)
    ones = eigenvectors.sum(axis=0)
    inverse = 1.0 / (eigenvalues[:, None] * geometry.noise_eigenvalues[None, :] + geometry.white_variance)
    return eigenvectors @ (ones[:, None] * inverse), (ones[:, None] ** 2 * inverse).sum(axis=0)


class _Evidence:
    """Per-sample GLS statistics b_m (N, CONTENT_DIMS) of one split, and J_m per group of samples."""

    def __init__(self, model: GenerativeModel, split: dict):
        self.model = model
        self.words = split["text_bert"][:, 1].sum(axis=1).astype(np.int64)
        self.geometry = [_geometry(model, m) for m in range(len(FEATURE_KEYS))]
        audio = split[FEATURE_KEYS[AUDIO]]
        inf_steps = np.full(len(audio), -1)
        rows, steps = np.nonzero(np.isneginf(audio).any(axis=2))
        inf_steps[rows] = steps
        self.dropped = inf_steps  # the audio step left out per sample (-1: none)
        self._weights: dict = {}
        self.observed = [self._observed(m, split[name]) for m, name in enumerate(FEATURE_KEYS)]

    def weights(self, m: int, words: int, dropped: int) -> tuple[np.ndarray, np.ndarray]:
        key = (m, words, dropped)
        if key not in self._weights:
            steps = np.array([t for t in range(words) if t != dropped])
            self._weights[key] = _time_weights(self.geometry[m], steps)
        return self._weights[key]

    def dropped_of(self, m: int) -> np.ndarray:
        return self.dropped if m == AUDIO else np.full(len(self.words), -1)

    def information(self, m: int, words: int, dropped: int) -> np.ndarray:
        g = self.geometry[m]
        s = self.weights(m, words, dropped)[1]
        return (g.content_v * s) @ g.content_v.T

    def _observed(self, m: int, features: np.ndarray) -> np.ndarray:
        g = self.geometry[m]
        out = np.zeros((len(features), CONTENT_DIMS))
        dropped = self.dropped_of(m)
        for words, drop in sorted(set(zip(self.words.tolist(), dropped.tolist()))):
            rows = np.nonzero((self.words == words) & (dropped == drop))[0]
            steps = np.array([t for t in range(words) if t != drop])
            x = np.nan_to_num(features[rows][:, steps].astype(np.float64), neginf=0.0)
            projected = (x - g.mean) @ g.basis_v  # (rows, steps, r)
            out[rows] = np.einsum("nsr,sr->nr", projected, self.weights(m, words, drop)[0]) @ g.content_v.T
        return out

    def fed(self, m: int, constant: np.ndarray) -> np.ndarray:
        """b_m when modality m is fed the same feature vector at every valid position; constant (N, d)."""
        g = self.geometry[m]
        projected = (constant - g.mean) @ g.basis_v  # (N, r)
        out = np.zeros((len(constant), CONTENT_DIMS))
        for words in np.unique(self.words):
            rows = np.nonzero(self.words == words)[0]
            out[rows] = (projected[rows] * self.weights(m, int(words), -1)[1]) @ g.content_v.T
        return out


def _posterior(evidence: _Evidence, statistics: list[np.ndarray | None], fed: tuple[bool, ...] = (False,) * 3
               ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (N, LATENT_DIMS) of theta and posterior variance (N,) of the unrounded label, given
    the statistics of the modalities that are not None (fed ones use their full valid positions)."""
    model = evidence.model
    n = len(evidence.words)
    natural = sum(s @ model.content_maps[m] for m, s in enumerate(statistics) if s is not None)
    keys = np.stack([evidence.words] + [evidence.dropped_of(m) if statistics[m] is not None and not fed[m]
                                       else np.full(n, -1) for m in range(3)], axis=1)
    mean, variance = np.zeros((n, model.latent_dims)), np.zeros(n)
    for key in np.unique(keys, axis=0):
        rows = np.nonzero((keys == key).all(axis=1))[0]
        precision = np.eye(model.latent_dims)
        for m, s in enumerate(statistics):
            if s is not None:
                j = evidence.information(m, int(key[0]), int(key[1 + m]))
                precision += model.content_maps[m].T @ j @ model.content_maps[m]
        covariance = np.linalg.inv(precision)
        mean[rows] = natural[rows] @ covariance
        variance[rows] = model.label_map @ covariance @ model.label_map
    return mean, variance


def label_probabilities(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(rounded, clipped label = GRID[k]) for a N(mean, sd^2) unrounded label: (N, 19)."""
    cdf = ndtr((EDGES[None, :] - mean[:, None]) / sd[:, None])
    return np.diff(np.concatenate([np.zeros((len(mean), 1)), cdf, np.ones((len(mean), 1))], axis=1), axis=1)


def _most_probable_class(probabilities: np.ndarray, bound: float) -> np.ndarray:
    classes = np.round(np.clip(GRID, -bound, bound))
    values = np.unique(classes)
    by_class = np.stack([probabilities[:, classes == c].sum(axis=1) for c in values], axis=1)
    return values[np.argmax(by_class, axis=1)]


def decisions(mean: np.ndarray, sd: np.ndarray) -> dict[str, np.ndarray]:
    """The Bayes decision of each kind (PREDICTIONS) for N(mean, sd^2) unrounded labels."""
    p = label_probabilities(mean, sd)
    positive, negative = p[:, GRID > 0].sum(axis=1), p[:, GRID < 0].sum(axis=1)
    return {
        "has0": np.where(1.0 - negative >= 0.5, 1.0, -1.0),
        "non0": np.where(positive >= negative, 1.0, -1.0),
        "class5": _most_probable_class(p, 2.0),
        "class7": _most_probable_class(p, 3.0),
        "median": GRID[np.argmax(np.cumsum(p, axis=1) >= 0.5, axis=1)],
        "mean": p @ GRID,
    }


def score_decisions(predictions: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Each metric of rohydr.core.metrics on the decision it is scored on (PREDICTION_OF)."""
    return {metric: score(predictions[PREDICTION_OF[metric]], labels)[metric] for metric in METRICS}


@dataclass
class Optimum:
    """Per pattern: the posterior (mean, sd) of the unrounded label and the decisions, for one split."""
    labels: np.ndarray
    posterior: dict[str, tuple[np.ndarray, np.ndarray]]  # pattern -> (mean, sd) of the optimum
    fills: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (fill, pattern) -> the complete predictor's

    def predictions(self, pattern: str, fill: str | None = None) -> dict[str, np.ndarray]:
        return decisions(*(self.posterior[pattern] if fill is None else self.fills[(fill, pattern)]))


def _train_mean(train: dict, m: int, chunk: int = 1024) -> np.ndarray:
    """Per-feature mean of modality m over the valid positions of the training split (-inf counted as 0)."""
    features, valid = train[FEATURE_KEYS[m]], train["text_bert"][:, 1] > 0
    total = np.zeros(features.shape[2])
    for start in range(0, len(features), chunk):  # in chunks: a float64 copy of MOSEI's text would be GBs
        x = features[start:start + chunk][valid[start:start + chunk]].astype(np.float64)
        total += np.nan_to_num(x, neginf=0.0).sum(axis=0)
    return total / max(int(valid.sum()), 1)


def _fill_statistics(evidence: _Evidence, fill: str, m: int, theta_mean: np.ndarray, train_mean: np.ndarray
                     ) -> np.ndarray:
    """b_m of the complete-data predictor when the missing modality m is fed `fill`."""
    model, n = evidence.model, len(evidence.words)
    if fill == "conditional_mean":  # E[x_t | available] = mean + P' E[c_m | available] at every valid t
        content = theta_mean @ model.content_maps[m].T
        constant = evidence.geometry[m].mean + content @ model.projections[m].weights[:CONTENT_DIMS].astype(np.float64)
    elif fill == "zeros":
        constant = np.zeros((n, len(evidence.geometry[m].mean)))
    else:
        constant = np.tile(train_mean, (n, 1))
    return evidence.fed(m, constant)


def compute_optimum(data: dict, model: GenerativeModel, split: str = "test") -> Optimum:
    evidence = _Evidence(model, data[split])
    train_means = [_train_mean(data["train"], m) for m in range(3)]
    posterior, fills = {}, {}
    for pattern, available in PATTERNS.items():
        statistics = [evidence.observed[m] if available[m] else None for m in range(3)]
        theta, variance = _posterior(evidence, statistics)
        posterior[pattern] = (theta @ model.label_map, np.sqrt(variance))
        if pattern == "complete":
            continue
        for fill in FILLS:
            filled = [s if s is not None else
                      _fill_statistics(evidence, fill, m, theta, train_means[m])
                      for m, s in enumerate(statistics)]
            theta_fill, variance_fill = _posterior(evidence, filled, fed=tuple(not a for a in available))
            fills[(fill, pattern)] = (theta_fill @ model.label_map, np.sqrt(variance_fill))
    return Optimum(data[split]["regression_labels"].astype(np.float64), posterior, fills)


def optimum_table(optimum: Optimum) -> list[dict]:
    """Rows predictor, condition, n, n_non0, METRICS: the optimum per pattern and the fed complete predictor."""
    labels = optimum.labels
    counts = {"n": len(labels), "n_non0": int(np.sum(labels != 0))}
    rows = [{"predictor": "optimum", "condition": p, **counts, **score_decisions(optimum.predictions(p), labels)}
            for p in PATTERNS]
    rows += [{"predictor": f"complete_fed_{fill}", "condition": p, **counts,
              **score_decisions(optimum.predictions(p, fill), labels)}
             for fill in FILLS for p in MISSING_PATTERNS]
    return rows


def score_masks(samples: dict[str, dict[str, np.ndarray]], labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The optimum's METRICS on any availability mask (N, 3) (l, a, v), from per-pattern decisions
    samples[pattern][prediction] (as in the samples file); every row needs an available modality."""
    mask = np.asarray(mask, dtype=bool)
    names = np.array([next((p for p, a in PATTERNS.items() if a == tuple(row)), "") for row in mask.tolist()])
    if (names == "").any():
        raise ValueError(f"score_masks: {int((names == '').sum())} rows have no available modality")
    gathered = {kind: np.zeros(len(labels)) for kind in PREDICTIONS}
    for pattern in np.unique(names):
        rows = names == pattern
        for kind in PREDICTIONS:
            gathered[kind][rows] = samples[pattern][kind][rows]
    return score_decisions(gathered, labels)


def read_samples(path) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """(pattern -> prediction kind -> (N,), labels (N,)) from a samples file, for score_masks."""
    try:
        with gzip.open(path, "rt") as file:
            header = file.readline().strip().split(",")
            rows = [line.rstrip("\n").split(",") for line in file]
        column = {name: i for i, name in enumerate(header)}
        samples = {}
        for pattern in PATTERNS:
            values = np.array([[float(r[column[k]]) for k in ("label", *PREDICTIONS)] for r in rows
                               if r[column["pattern"]] == pattern]).reshape(-1, 1 + len(PREDICTIONS))
            samples[pattern] = dict(zip(PREDICTIONS, values[:, 1:].T))
    except (OSError, EOFError, UnicodeDecodeError, KeyError, IndexError, ValueError) as error:
        raise RohydrError(f"optimum samples {path}: not an optimum_samples.csv.gz of `rohydr synth` "
                          f"({type(error).__name__}: {error})") from None
    return samples, values[:, 0]


def optimum_paths(pickle_path) -> dict[str, Path]:
    stem = Path(pickle_path)
    stem = stem.with_suffix("") if stem.suffix == ".pkl" else stem
    return {kind: stem.parent / f"{stem.name}.{suffix}"
            for kind, suffix in (("table", "optimum.csv"), ("about", "optimum.json"),
                                 ("samples", "optimum_samples.csv.gz"))}


def _format(value) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _table_csv(rows: list[dict]) -> str:
    columns = list(rows[0])
    return "\n".join([",".join(columns)] + [",".join(_format(row[c]) for c in columns) for row in rows]) + "\n"


def _samples_csv(optimum: Optimum) -> str:
    header = ["row", "pattern", "label", "posterior_mean", "posterior_sd", *PREDICTIONS]
    lines = [",".join(header)]
    for pattern in PATTERNS:
        mean, sd = optimum.posterior[pattern]
        predictions = optimum.predictions(pattern)
        for i, label in enumerate(optimum.labels):
            values = [f"{mean[i]:.6f}", f"{sd[i]:.6f}"] + [f"{predictions[k][i]:.6f}" for k in PREDICTIONS]
            lines.append(",".join([str(i), pattern, f"{label + 0.0:.6f}", *values]))
    return "\n".join(lines) + "\n"


def headroom(rows: list[dict], metric: str = "acc2_non0") -> dict:
    """Per missing pattern: the optimum and the complete predictor fed each fill, in `metric`."""
    by = {(r["predictor"], r["condition"]): r[metric] for r in rows}
    table = {p: {"optimum": by[("optimum", p)], **{fill: by[(f"complete_fed_{fill}", p)] for fill in FILLS}}
             for p in MISSING_PATTERNS}
    gaps = [v["conditional_mean"] - max(v["zeros"], v["train_mean"]) for v in table.values()]
    return {"metric": metric, "per_pattern": table, "mean_gain_over_best_of_zeros_and_train_mean": float(np.mean(gaps))}


def write_optimum(data: dict, model: GenerativeModel, paths: dict[str, Path], arguments: dict,
                  split: str = "test") -> list[dict]:
    optimum = compute_optimum(data, model, split)
    rows = optimum_table(optimum)
    about = {
        "split": split,
        "generator": arguments,
        "method": __doc__.split("\n\n", 1)[1].replace("\n", " "),
        "decisions": DECISIONS,
        "predictors": {"optimum": "the Bayes decisions given the available modalities' features",
                       **{f"complete_fed_{fill}": f"the complete-data Bayes decisions with the missing modalities' "
                          f"features replaced by {fill.replace('_', ' ')} (at the valid positions)"
                          for fill in FILLS}},
        "headroom": headroom(rows),
        "samples": "per test row and pattern: posterior mean and sd of the unrounded label and each decision; "
                   "score any availability mask with rohydr.data.optimum.read_samples and score_masks",
    }
    with atomic_path(paths["table"]) as tmp:
        tmp.write_text(_table_csv(rows))
    with atomic_path(paths["about"]) as tmp:
        tmp.write_text(json.dumps(about, indent=2) + "\n")
    with atomic_path(paths["samples"]) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as file:  # no name or time: deterministic
        file.write(_samples_csv(optimum).encode())
    print(f"synth: optimum on the {split} split written to {paths['table']}")
    return rows

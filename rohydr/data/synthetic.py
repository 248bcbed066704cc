"""Synthetic data in exactly the MMSA `aligned_50.pkl` layout, from a generative model whose optimum is known.

Latents per sample: theta = (z, u_l, u_a, u_v) ~ N(0, I), z of SHARED_DIMS factors shared by the
modalities, u_m of CONTENT_DIMS private to modality m. Modality m's content is
c_m = sqrt(r) A_m z + sqrt(1 - r) u_m, where A_m (CONTENT_DIMS x SHARED_DIMS, orthonormal rows) is a
different subspace of z per modality and r in [0, 1] is the redundancy: r = 0 makes the modalities
independent, r = 1 makes every content a function of z (two modalities determine z, hence the third).
The label is b . (c_l, c_a, c_v), scaled to a standard deviation of LABEL_STD, clipped to [-3, 3]
and rounded to multiples of 1/3 (so some are exactly 0). A and b are fixed: drawn from
STRUCTURE_SEED, the draw (of 3000 tried) whose complete-data predictor gains most from the
conditional mean of a missing modality over zeros. Because the A_m differ, the complete-data weights
on a modality are not the best weights given that modality alone (explaining away): filling a
missing modality with zeros or its mean loses what the relations A_m would recover.
Features: at each of the w valid word positions, [c_m + s_m a_t, n_t] (a_t, n_t Gaussian AR(1)
wobble and nuisance, unit variance) go through a fixed random projection per modality (drawn from
the seed), plus Gaussian white noise; everything is Gaussian, so the posterior of theta given any
subset of the modalities is exactly Gaussian (rohydr/data/optimum.py computes it). Positions >= w
are zero padding; a few audio values are -inf (like COVAREP).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np

from rohydr.core.errors import RohydrError
from rohydr.core.io import atomic_path
from rohydr.core.vocabulary import FEATURE_KEYS, SPLITS

DEFAULT_SIZES = (480, 120, 240)
DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35)}  # text, audio, vision

SHARED_DIMS = 6  # z: factors shared by the modalities
CONTENT_DIMS = 4  # c_m and u_m per modality
NUISANCE_DIMS = 3  # per-modality, per-step latent that carries no label
STRUCTURE_SEED = 605  # the fixed mixing matrices A_m and label weights b
LABEL_WEIGHT_SCALE = (1.0, 0.8, 0.9)  # text, audio, vision: typical size of b's part per modality
DEFAULT_REDUNDANCY = 0.6
LABEL_STD = 1.5
AR_COEF = 0.8  # temporal smoothness of the per-step wobble and nuisance
# per modality: std of the smooth wobble of c_m, and of the white feature noise (relative to FEATURE_SCALE)
LATENT_NOISE = (0.3, 0.45, 0.4)
FEATURE_NOISE = (0.3, 0.5, 0.4)
FEATURE_SCALE = (0.5, 1.0, 2.0)  # rough magnitude of BERT / COVAREP / FACET values
INF_RATE = 0.01  # share of samples with one -inf audio value
CLS_ID, SEP_ID, FIRST_WORD_ID = 101, 102, 1000
ROW_CHUNK = 1024  # samples generated at once (bounds temporary memory; part of the determinism)


@dataclass(frozen=True)
class _Projection:
    mean: np.ndarray  # (d,) float32
    weights: np.ndarray  # (CONTENT_DIMS + NUISANCE_DIMS, d) float32: content rows first


@dataclass(frozen=True)
class GenerativeModel:
    """Everything that defines the data of one (like, seed, redundancy): what the optimum is computed from."""
    redundancy: float
    content_maps: tuple[np.ndarray, ...]  # per modality (CONTENT_DIMS, LATENT_DIMS): c_m = M_m theta
    label_map: np.ndarray  # (LATENT_DIMS,): unrounded label = label_map . theta
    projections: tuple[_Projection, ...]

    @property
    def latent_dims(self) -> int:
        return len(self.label_map)


def _structure() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The fixed mixing matrices A_m (orthonormal rows) and label weights b (3 CONTENT_DIMS)."""
    rng = np.random.default_rng(STRUCTURE_SEED)
    mixing = tuple(np.linalg.qr(rng.standard_normal((SHARED_DIMS, CONTENT_DIMS)))[0].T for _ in FEATURE_KEYS)
    weights = np.concatenate([scale * rng.standard_normal(CONTENT_DIMS) / np.sqrt(CONTENT_DIMS)
                              for scale in LABEL_WEIGHT_SCALE])
    return mixing, weights


def _content_maps(redundancy: float) -> tuple[np.ndarray, ...]:
    mixing, _ = _structure()
    maps = []
    for m, a_m in enumerate(mixing):
        private = np.zeros((CONTENT_DIMS, len(FEATURE_KEYS) * CONTENT_DIMS))
        private[:, m * CONTENT_DIMS:(m + 1) * CONTENT_DIMS] = np.eye(CONTENT_DIMS)
        maps.append(np.concatenate([np.sqrt(redundancy) * a_m, np.sqrt(1 - redundancy) * private], axis=1))
    return tuple(maps)


def _draw_projections(rng: np.random.Generator, dims: tuple[int, int, int]) -> tuple[_Projection, ...]:
    k = CONTENT_DIMS + NUISANCE_DIMS
    projections = []
    for d, scale in zip(dims, FEATURE_SCALE):
        weights = rng.standard_normal((k, d)) * (scale / np.sqrt(k))
        mean = rng.standard_normal(d) * (0.3 * scale)
        projections.append(_Projection(mean.astype(np.float32), weights.astype(np.float32)))
    return tuple(projections)


def generative_model(like: str = "mosi", seed: int = 0, redundancy: float = DEFAULT_REDUNDANCY) -> GenerativeModel:
    if like not in DIMS:
        raise RohydrError(f"unknown dataset shape {like!r}: expected one of {sorted(DIMS)}")
    if not 0.0 <= redundancy <= 1.0:
        raise RohydrError(f"redundancy must lie in [0, 1], got {redundancy}")
    maps = _content_maps(float(redundancy))
    _, weights = _structure()
    label_direction = sum(w_m @ m_m for w_m, m_m in zip(np.split(weights, len(maps)), maps))
    projection_seed = np.random.SeedSequence(seed).spawn(1 + len(SPLITS))[0]
    return GenerativeModel(float(redundancy), maps, label_direction * (LABEL_STD / np.linalg.norm(label_direction)),
                           _draw_projections(np.random.default_rng(projection_seed), DIMS[like]))


def _ar_process(rng: np.random.Generator, shape: tuple[int, ...], length: int) -> np.ndarray:
    """Unit-variance Gaussian AR(1) sequences: (shape[0], length, *shape[1:]) float32."""
    out = np.empty((shape[0], length, *shape[1:]), np.float32)
    innovation_std = np.float32(np.sqrt(1 - AR_COEF**2))
    out[:, 0] = rng.standard_normal(shape, np.float32)
    for t in range(1, length):
        out[:, t] = AR_COEF * out[:, t - 1] + innovation_std * rng.standard_normal(shape, np.float32)
    return out


def _modality_features(rng: np.random.Generator, content: np.ndarray, words: np.ndarray, length: int, m: int,
                       projection: _Projection) -> np.ndarray:
    """Features of modality m for all samples: (N, length, d) float32, zero after each word count."""
    n, d = len(content), projection.weights.shape[1]
    out = np.empty((n, length, d), np.float32)
    noise = np.empty((min(n, ROW_CHUNK) * length, d), np.float32)  # reused: no page faults per chunk
    noise_scale = np.float32(FEATURE_NOISE[m] * FEATURE_SCALE[m])
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, n))
        b = rows.stop - rows.start
        wobble = _ar_process(rng, (b, CONTENT_DIMS), length) * np.float32(LATENT_NOISE[m])
        nuisance = _ar_process(rng, (b, NUISANCE_DIMS), length)
        per_step = np.concatenate([content[rows, None, :] + wobble, nuisance], axis=2)  # (b, L, k)
        block = out[rows].reshape(b * length, d)  # a view: written in place
        np.matmul(per_step.reshape(b * length, -1), projection.weights, out=block)
        block += projection.mean
        block_noise = noise[: b * length]
        rng.standard_normal(dtype=np.float32, out=block_noise)
        block_noise *= noise_scale
        block += block_noise
        out[rows] *= (np.arange(length)[None, :] < words[rows, None])[:, :, None]  # zero padding at the end
    return out


def _round_to_grid(y: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(y, -3, 3) * 3) / 3).astype(np.float32)


def _latents(rng: np.random.Generator, n: int, model: GenerativeModel) -> tuple[np.ndarray, np.ndarray]:
    """Return (theta (N, LATENT_DIMS) float64, unrounded labels (N,) float64)."""
    theta = rng.standard_normal((n, model.latent_dims))
    return theta, theta @ model.label_map


def _word_counts(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    counts = 3 + np.round(rng.gamma(2.0, 0.2 * length, n)).astype(np.int64)
    return np.clip(counts, 3, length)


def _text_bert(rng: np.random.Generator, words: np.ndarray, length: int, vocab_size: int) -> np.ndarray:
    """(N, 3, L) float32 rows: token ids ([CLS] words [SEP]), attention mask, segment ids (0)."""
    n = len(words)
    positions = np.arange(length)[None, :]
    valid = positions < words[:, None]
    low = FIRST_WORD_ID if vocab_size > FIRST_WORD_ID + 1 else 3
    ids = rng.integers(low, vocab_size, (n, length))
    ids[:, 0] = CLS_ID if vocab_size > SEP_ID else 1
    ids[positions == (words[:, None] - 1)] = SEP_ID if vocab_size > SEP_ID else 2
    ids[~valid] = 0
    out = np.zeros((n, 3, length), np.float32)
    out[:, 0] = ids
    out[:, 1] = valid
    return out


def _video_names(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct random 11-character names like YouTube video ids."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    names: dict[str, None] = {}
    while len(names) < count:
        for chars in alphabet[rng.integers(0, len(alphabet), (count - len(names), 11))]:
            names.setdefault("".join(chars))
    return list(names)


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique "<video>$_$<clip>" ids, 3 to 11 clips per video."""
    clips = []
    while len(clips) < n:
        clips += list(range(1, int(rng.integers(3, 12)) + 1))
    clips = np.asarray(clips[:n])
    video_of = np.cumsum(clips == 1) - 1
    names = _video_names(rng, int(video_of[-1]) + 1)
    return np.array([f"{names[v]}$_${c}" for v, c in zip(video_of, clips)], dtype=object)


def _raw_text(ids: np.ndarray, words: np.ndarray) -> np.ndarray:
    return np.array([" ".join(f"w{int(t)}" for t in row[1:count - 1]) for row, count in zip(ids, words)],
                    dtype=object)


def _annotation(label: float) -> str:
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"


def _make_split(rng: np.random.Generator, n: int, length: int, model: GenerativeModel,
                vocab_size: int) -> tuple[dict, np.ndarray]:
    """(the split in the MMSA layout, its unrounded labels)."""
    words = _word_counts(rng, n, length)
    theta, raw_labels = _latents(rng, n, model)
    labels = _round_to_grid(raw_labels)
    split_data: dict = {}
    for m, name in enumerate(FEATURE_KEYS):
        content = (theta @ model.content_maps[m].T).astype(np.float32)
        split_data[name] = _modality_features(rng, content, words, length, m, model.projections[m])
    _add_audio_infs(rng, split_data["audio"], words)
    text_bert = _text_bert(rng, words, length, vocab_size)
    split_data["text_bert"] = text_bert
    split_data["regression_labels"] = labels
    split_data["classification_labels"] = np.sign(labels).astype(np.int64) + 1  # 0 neg, 1 neutral, 2 pos
    split_data["raw_text"] = _raw_text(text_bert[:, 0].astype(np.int64), words)
    split_data["id"] = _ids(rng, n)
    split_data["annotations"] = np.array([_annotation(y) for y in labels], dtype=object)
    return split_data, raw_labels


def _add_audio_infs(rng: np.random.Generator, audio: np.ndarray, words: np.ndarray) -> None:
    n, _, d = audio.shape
    count = int(np.ceil(INF_RATE * n))
    rows = rng.choice(n, count, replace=False)  # at most one per sample
    steps = (rng.random(count) * words[rows]).astype(np.int64)  # a valid position of that sample
    audio[rows, steps, rng.integers(0, d, count)] = -np.inf


def _check_arguments(sizes: tuple[int, ...], length: int, vocab_size: int) -> None:
    if len(sizes) != 3 or min(sizes) < 1:
        raise RohydrError(f"split sizes must be three positive integers (train valid test), got {sizes}")
    if length < 3:
        raise RohydrError(f"sequence length must be at least 3 ([CLS], a word, [SEP]), got {length}")
    if vocab_size < 4:
        raise RohydrError(f"vocab_size must be at least 4, got {vocab_size}")


def generate(like: str = "mosi", seed: int = 0, sizes: tuple[int, int, int] | None = None, length: int = 50,
             vocab_size: int = 30522, redundancy: float = DEFAULT_REDUNDANCY
             ) -> tuple[dict, GenerativeModel, dict[str, np.ndarray]]:
    """(the data {train, valid, test} in the MMSA layout, its model, the unrounded labels per split)."""
    model = generative_model(like, seed, redundancy)
    sizes = tuple(DEFAULT_SIZES if sizes is None else sizes)
    _check_arguments(sizes, length, vocab_size)
    split_seeds = np.random.SeedSequence(seed).spawn(1 + len(SPLITS))[1:]
    data, raw_labels = {}, {}
    for split, n, split_seed in zip(SPLITS, sizes, split_seeds):
        data[split], raw_labels[split] = _make_split(np.random.default_rng(split_seed), int(n), length, model,
                                                     vocab_size)
    return data, model, raw_labels


def make_synthetic(like: str = "mosi", seed: int = 0, sizes: tuple[int, int, int] | None = None,
                   length: int = 50, vocab_size: int = 30522, redundancy: float = DEFAULT_REDUNDANCY) -> dict:
    """A dict {train, valid, test} in the MMSA pickle layout; identical for identical arguments."""
    return generate(like, seed, sizes, length, vocab_size, redundancy)[0]


def write_pickle(data: dict, out) -> None:
    """Pickle `data` (protocol 4, like the released files) to `out` atomically."""
    with atomic_path(out) as tmp, open(tmp, "wb") as file:
        pickler = pickle.Pickler(file, protocol=4)
        # No memo: otherwise the pickler keeps every array's byte copy alive until the end (MOSEI-sized
        # data would need twice its size in memory). Safe here: the data has no shared references.
        pickler.fast = True
        pickler.dump(data)

"""Synthetic data in exactly the MMSA `aligned_50.pkl` layout, with a known generative model.

Per sample: a sentiment latent s, one modality-specific latent u_m per modality and a shared
"style" latent g (not sentiment). Modality m carries c_m = rho_m * s + sqrt(1 - rho_m^2) * u_m, so
modalities share sentiment only through s. The label is 0.5 c_l + 0.2 c_a + 0.3 c_v, scaled to a
std of about 1.5, clipped to [-3, 3] and rounded to multiples of 1/3 (so some are exactly 0).
Features: at each of the w valid word positions, the latents [c_m, g, nuisance_m] -- each perturbed
by a temporally smooth AR(1) process -- go through a fixed random projection per modality (drawn
from the seed) to the feature dimension, plus uniform white noise; the perturbations are weakest
for text and strongest for audio. Positions >= w are zero padding; a few audio values are -inf
(like COVAREP). Hence the other modalities predict a missing one (they carry s and g), yet dropping any modality
loses its own part of the label, and text is the strongest single modality.
"""
from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass

import numpy as np

from rohydr import SPLITS
from rohydr.errors import RohydrError
from rohydr.io import atomic_path

DEFAULT_SIZES = (480, 120, 240)
DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35)}  # text, audio, vision
MODALITY_NAMES = ("text", "audio", "vision")

LABEL_WEIGHTS = (0.5, 0.2, 0.3)  # text, audio, vision share of the label
RHO = (0.8, 0.6, 0.7)  # how much of each modality's sentiment component is the common s
LABEL_STD = 1.5
STYLE_DIMS = 3  # shared non-sentiment latent g
NUISANCE_DIMS = 3  # per-modality latent that carries neither sentiment nor g
AR_COEF = 0.8  # temporal smoothness of the per-step perturbations
# per modality: std of the smooth perturbation of c_m and g, and of the white feature noise
# (the latter relative to FEATURE_SCALE)
LATENT_NOISE = (0.6, 1.3, 1.0)
FEATURE_NOISE = (0.3, 0.6, 0.5)
FEATURE_SCALE = (0.5, 1.0, 2.0)  # rough magnitude of BERT / COVAREP / FACET values
INF_RATE = 0.01  # -inf audio values per sample
CLS_ID, SEP_ID, FIRST_WORD_ID = 101, 102, 1000
ROW_CHUNK = 1024  # samples generated at once (bounds temporary memory; part of the determinism)


@dataclass
class _Projection:
    mean: np.ndarray  # (d,)
    weights: np.ndarray  # (1 + STYLE_DIMS + NUISANCE_DIMS, d)


def _draw_projections(rng: np.random.Generator, dims: tuple[int, int, int]) -> list[_Projection]:
    k = 1 + STYLE_DIMS + NUISANCE_DIMS
    projections = []
    for d, scale in zip(dims, FEATURE_SCALE):
        weights = rng.standard_normal((k, d)) * (scale / np.sqrt(k))
        mean = rng.standard_normal(d) * (0.3 * scale)
        projections.append(_Projection(mean.astype(np.float32), weights.astype(np.float32)))
    return projections


def _ar_process(rng: np.random.Generator, shape: tuple[int, ...], length: int) -> np.ndarray:
    """Unit-variance AR(1) sequences: (shape[0], length, *shape[1:]) float32."""
    out = np.empty((shape[0], length, *shape[1:]), np.float32)
    innovation_std = np.float32(np.sqrt(1 - AR_COEF**2))
    out[:, 0] = rng.standard_normal(shape, np.float32)
    for t in range(1, length):
        out[:, t] = AR_COEF * out[:, t - 1] + innovation_std * rng.standard_normal(shape, np.float32)
    return out


def _modality_features(rng: np.random.Generator, component: np.ndarray, style: np.ndarray,
                       words: np.ndarray, length: int, m: int, projection: _Projection) -> np.ndarray:
    """Features of modality m for all samples: (N, length, d) float32, zero after each word count."""
    n, d = len(component), projection.weights.shape[1]
    out = np.empty((n, length, d), np.float32)
    noise = np.empty((min(n, ROW_CHUNK) * length, d), np.float32)  # reused: no page faults per chunk
    # uniform white noise of variance FEATURE_NOISE^2 (cheaper to draw than Gaussian at MOSEI scale)
    noise_scale = np.float32(FEATURE_NOISE[m] * FEATURE_SCALE[m] * np.sqrt(12.0))
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, n))
        b = rows.stop - rows.start
        latents = np.concatenate([component[rows, None], style[rows]], axis=1)  # (b, 1 + STYLE_DIMS)
        wobble = _ar_process(rng, (b, latents.shape[1]), length) * np.float32(LATENT_NOISE[m])
        nuisance = _ar_process(rng, (b, NUISANCE_DIMS), length)
        per_step = np.concatenate([latents[:, None, :] + wobble, nuisance], axis=2)  # (b, L, k)
        block = out[rows].reshape(b * length, d)  # a view: written in place
        np.matmul(per_step.reshape(b * length, -1), projection.weights, out=block)
        block += projection.mean
        block_noise = noise[: b * length]
        rng.random(dtype=np.float32, out=block_noise)
        block_noise -= np.float32(0.5)
        block_noise *= noise_scale
        block += block_noise
        out[rows] *= (np.arange(length)[None, :] < words[rows, None])[:, :, None]  # zero padding at the end
    return out


def _round_to_grid(y: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(y, -3, 3) * 3) / 3).astype(np.float32)


def _labels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (components (3, N), style (N, STYLE_DIMS), regression labels (N,))."""
    s = rng.standard_normal(n)
    u = rng.standard_normal((3, n))
    rho = np.asarray(RHO)[:, None]
    components = rho * s + np.sqrt(1 - rho**2) * u
    w = np.asarray(LABEL_WEIGHTS)
    variance = np.sum(w**2) + sum(w[i] * w[j] * RHO[i] * RHO[j] for i in range(3) for j in range(3) if i != j)
    y = (w @ components) * (LABEL_STD / np.sqrt(variance))
    style = rng.standard_normal((n, STYLE_DIMS))
    return components.astype(np.float32), style.astype(np.float32), _round_to_grid(y)


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


def _make_split(rng: np.random.Generator, split: str, n: int, length: int,
                projections: list[_Projection], vocab_size: int) -> dict:
    words = _word_counts(rng, n, length)
    components, style, labels = _labels(rng, n)
    split_data: dict = {}
    for m, name in enumerate(MODALITY_NAMES):
        split_data[name] = _modality_features(rng, components[m], style, words, length, m, projections[m])
    _add_audio_infs(rng, split_data["audio"], words)
    text_bert = _text_bert(rng, words, length, vocab_size)
    split_data["text_bert"] = text_bert
    split_data["regression_labels"] = labels
    split_data["classification_labels"] = np.sign(labels).astype(np.int64) + 1  # 0 neg, 1 neutral, 2 pos
    split_data["raw_text"] = _raw_text(text_bert[:, 0].astype(np.int64), words)
    split_data["id"] = _ids(rng, n)
    split_data["annotations"] = np.array([_annotation(y) for y in labels], dtype=object)
    return split_data


def _add_audio_infs(rng: np.random.Generator, audio: np.ndarray, words: np.ndarray) -> None:
    n, _, d = audio.shape
    count = int(np.ceil(INF_RATE * n))
    rows = rng.integers(0, n, count)
    steps = (rng.random(count) * words[rows]).astype(np.int64)  # a valid position of that sample
    audio[rows, steps, rng.integers(0, d, count)] = -np.inf


def make_synthetic(like: str = "mosi", seed: int = 0, sizes: tuple[int, int, int] | None = None,
                   length: int = 50, vocab_size: int = 30522) -> dict:
    """A dict {train, valid, test} in the MMSA pickle layout; identical for identical arguments."""
    if like not in DIMS:
        raise RohydrError(f"unknown dataset shape {like!r}: expected one of {sorted(DIMS)}")
    sizes = tuple(DEFAULT_SIZES if sizes is None else sizes)
    if len(sizes) != 3 or min(sizes) < 1:
        raise RohydrError(f"split sizes must be three positive integers (train valid test), got {sizes}")
    if length < 3:
        raise RohydrError(f"sequence length must be at least 3 ([CLS], a word, [SEP]), got {length}")
    if vocab_size < 4:
        raise RohydrError(f"vocab_size must be at least 4, got {vocab_size}")
    projection_seed, *split_seeds = np.random.SeedSequence(seed).spawn(1 + len(SPLITS))
    projections = _draw_projections(np.random.default_rng(projection_seed), DIMS[like])
    return {split: _make_split(np.random.default_rng(split_seed), split, int(n), length, projections, vocab_size)
            for split, n, split_seed in zip(SPLITS, sizes, split_seeds)}


def write_pickle(data: dict, out) -> None:
    """Pickle `data` (protocol 4, like the released files) to `out` atomically."""
    with atomic_path(out) as tmp, open(tmp, "wb") as file:
        pickler = pickle.Pickler(file, protocol=4)
        # No memo: otherwise the pickler keeps every array's byte copy alive until the end (MOSEI-sized
        # data would need twice its size in memory). Safe here: the data has no shared references.
        pickler.fast = True
        pickler.dump(data)


def cli_synth(args: argparse.Namespace) -> int:
    data = make_synthetic(like=args.like, seed=args.seed, sizes=args.sizes, length=args.length)
    write_pickle(data, args.out)
    return 0

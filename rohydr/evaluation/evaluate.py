"""`rohydr evaluate`: a trained model scored on every missing condition of the saved masks.

Every condition (fixed patterns and missing rates alike) is a per-sample choice among the seven
availability patterns, and the sampler noise is seeded per sample and pattern. So the model runs once
per pattern over the split, and each condition gathers, for every sample, the prediction under that
sample's own pattern: 14+ conditions cost seven passes.
"""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd

from rohydr.core.errors import NonFiniteError
from rohydr.core.io import atomic_path, sha256_file
from rohydr.core.layout import EVAL_COLUMNS, EVAL_IDENTITY
from rohydr.core.metrics import score
from rohydr.core.progress import progress
from rohydr.core.runtime import Runtime
from rohydr.core.vocabulary import CONVERGED, MODALITIES, PATTERNS, TRAINING_CONDITION, pattern_codes
from rohydr.data.dataset import FeatureStore
from rohydr.data.masks import load_masks, pattern_mask, realized_missing_rate
from rohydr.models.checkpoint import check_data_matches, load_model
from rohydr.models.predict import Predictions, complete_predictions, predict

EVAL_BATCH = 128


def iter_pattern_predictions(model, split, seed: int, runtime: Runtime, patterns: list[str]):
    """(pattern, Predictions) for each availability pattern in turn; the first pass's fused true
    features serve the rest."""
    n, truth = len(split), None
    for name in progress(patterns, "evaluate: availability patterns", every_s=0):
        avail = pattern_mask(name, n)
        predictions = predict(model, split, avail, seed, EVAL_BATCH, runtime, fused_truth=truth)
        truth = predictions.fused_truth
        yield name, predictions


def predict_patterns(model, split, seed: int, runtime: Runtime, patterns: list[str]) -> dict[str, Predictions]:
    return dict(iter_pattern_predictions(model, split, seed, runtime, patterns))


def complete_only(model, split, runtime: Runtime) -> dict[str, Predictions]:
    """The pretrained backbone has no recovery: it is scored on complete inputs only."""
    y_rec = complete_predictions(model, split, EVAL_BATCH, runtime)
    nan3 = np.full((len(y_rec), 3), np.nan, dtype=np.float32)
    return {"complete": Predictions(y_rec, nan3, nan3.copy(), np.full(len(y_rec), np.nan, dtype=np.float32))}


def condition_rows(condition: str, avail: np.ndarray, by_pattern: dict[str, Predictions], labels) -> list[tuple]:
    codes = pattern_codes(avail)
    y = np.empty(len(avail), dtype=np.float32)
    rec_mse = np.full((len(avail), 3), np.nan, dtype=np.float32)
    rec_cos = rec_mse.copy()
    for name, pattern in PATTERNS.items():
        rows = codes == pattern_codes(np.array([pattern]))[0]
        if rows.any():
            y[rows] = by_pattern[name].y_rec[rows]
            rec_mse[rows] = by_pattern[name].rec_mse[rows]
            rec_cos[rows] = by_pattern[name].rec_cos[rows]
    out = [(condition, metric, value) for metric, value in score(y, labels).items()]
    out.append((condition, "missing_rate", realized_missing_rate(avail)))
    for slot, m in enumerate(MODALITIES):
        missing = ~avail[:, slot]
        if missing.any() and not np.isnan(rec_mse[missing, slot]).all():
            out.append((condition, f"rec_mse_{m}", float(np.nanmean(rec_mse[missing, slot]))))
            out.append((condition, f"rec_cos_{m}", float(np.nanmean(rec_cos[missing, slot]))))
    return out


def training_rows(payload: dict) -> list[tuple]:
    """Whether every training behind the model stopped on its early-stopping criterion, and its epochs."""
    trainings = payload["convergence"]
    return [(TRAINING_CONDITION, CONVERGED, float(all(t["converged"] for t in trainings))),
            (TRAINING_CONDITION, "epochs", float(sum(t["epochs"] for t in trainings)))]


def write_predictions(path: str, ids, labels, by_pattern: dict[str, Predictions]) -> None:
    frames = []
    for name, predictions in by_pattern.items():
        frame = pd.DataFrame({"id": ids, "label": labels, "pattern": name, "prediction": predictions.y_rec})
        for slot, m in enumerate(MODALITIES):
            frame[f"rec_mse_{m}"] = predictions.rec_mse[:, slot]
            frame[f"rec_cos_{m}"] = predictions.rec_cos[:, slot]
        frames.append(frame)
    text = pd.concat(frames).to_csv(index=False, float_format="%.6g")
    with atomic_path(path) as tmp:  # no name and no time in the gzip header: same run, same bytes
        tmp.write_bytes(gzip.compress(text.encode(), mtime=0))


def as_zero_fill(model, pretrained: bool) -> None:
    """Zeros instead of the model's recovery of the missing modalities (zero extracted features equal
    zero inputs: the extractor's convolutions have no bias). A pretrained backbone so fed is the papers'
    floor; its multimodal reconstructor, never trained, is left out."""
    update = {"recovery": "zero_fill"} | ({"use_multimodal_reconstructor": False} if pretrained else {})
    model.config = model.config.model_copy(update=update)


def evaluate(data: str, model_path: str, masks_path: str, seed: int, split_name: str, out: str,
             predictions_path: str, runtime: Runtime, zeros_for_missing: bool = False,
             identity: tuple[str, str] | None = None) -> pd.DataFrame:
    """`identity`: (run, protocol), written into eval.csv with the seed for the tables to check."""
    model, payload = load_model(model_path, runtime.device)
    if zeros_for_missing:
        as_zero_fill(model, pretrained=payload["kind"] == "pretrain")
    if runtime.compile:
        model.compile_denoisers()
    with FeatureStore(data) as store:
        check_data_matches(payload, store.dims, store.length, model_path)
        split = store.split(split_name).to(runtime.device)
    masks = load_masks(masks_path, split_name, (data, sha256_file(data), len(split)))
    labels = split.labels.cpu().numpy()
    if payload["kind"] == "pretrain" and not zeros_for_missing:
        by_pattern = complete_only(model, split, runtime)
        masks = {"complete": masks["complete"]}
    else:
        by_pattern = predict_patterns(model, split, seed, runtime, list(PATTERNS))
    rows = []
    for condition, avail in masks.items():
        try:
            rows += condition_rows(condition, avail, by_pattern, labels)
        except NonFiniteError as error:  # score() refuses them; say which model and condition
            raise NonFiniteError(f"model {model_path}, condition {condition!r} ({split_name} split): {error} "
                                 "(a diverged or damaged model)") from None
    table = pd.DataFrame(rows + training_rows(payload), columns=list(EVAL_COLUMNS))
    if identity is not None:
        table = pd.concat([pd.DataFrame([[*identity, seed]] * len(table), columns=list(EVAL_IDENTITY)), table], axis=1)
    write_predictions(predictions_path, split.ids, labels, by_pattern)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table

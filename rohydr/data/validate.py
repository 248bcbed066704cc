"""Check an MMSA feature pickle before anything trains on it, and describe it in a JSON report.

Errors (the file cannot be used) are collected and raised together as one RohydrError; oddities
that real files have (non-finite feature values, labels beyond |3|, no ids) go to the report.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from rohydr.core.errors import RohydrError
from rohydr.core.io import sha256_file
from rohydr.core.vocabulary import FEATURE_KEYS, SPLITS
from rohydr.data.safe_pickle import load_pickle_with_sha256

RELEASED_SHA256 = {
    "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9": "MOSI aligned_50.pkl",
    "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524": "MOSI unaligned_50.pkl",
    "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791": "MOSEI aligned_50.pkl",
    "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f": "MOSEI unaligned_50.pkl",
}
LABEL_KEY = "regression_labels"
PER_SAMPLE_KEYS = ("text", "text_bert", "audio", "vision", LABEL_KEY, "classification_labels",
                   "raw_text", "id", "annotations", "audio_lengths", "vision_lengths")
ROW_CHUNK = 1024  # rows scanned at once when counting non-finite values (bounds temporary memory)


def _shape(value) -> tuple | None:
    shape = getattr(value, "shape", None)
    if shape is None and isinstance(value, (list, tuple)):
        return (len(value),)
    return tuple(shape) if shape is not None else None


def _is_numeric(array: np.ndarray) -> bool:
    """Real numbers: integer or floating point. Complex values and booleans are not features or labels."""
    return array.dtype.kind in "iuf"


def nonfinite_counts(array: np.ndarray) -> dict[str, int]:
    """Counts of NaN, +inf and -inf as float32 sees them (values beyond float32's range become inf)."""
    counts = {"nan": 0, "+inf": 0, "-inf": 0}
    for start in range(0, len(array), ROW_CHUNK):
        with np.errstate(over="ignore"):  # float32 overflow becomes inf, counted below
            block = np.asarray(array[start:start + ROW_CHUNK], dtype=np.float32)
        bad = ~np.isfinite(block)
        if bad.any():
            values = block[bad]
            counts["nan"] += int(np.isnan(values).sum())
            counts["+inf"] += int((values == np.inf).sum())
            counts["-inf"] += int((values == -np.inf).sum())
    return counts


def _looks_like_token_ids(array: np.ndarray) -> bool:
    """(N, 3, L) with whole, non-negative numbers: the layout of `text_bert`, not of features."""
    if array.ndim != 3 or array.shape[1] != 3 or not _is_numeric(array):
        return False
    sample = np.asarray(array[: min(len(array), 64)], dtype=np.float64)
    return bool(np.all(np.isfinite(sample)) and np.all(sample >= 0) and np.all(sample == np.round(sample)))


class _Checker:
    def __init__(self, data, path: str):
        self.data, self.path = data, path
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def check_split(self, split: str, content) -> dict | None:
        """Per-split checks; returns the split's summary or None when the split is unusable."""
        if not isinstance(content, dict):
            self.error(f"split '{split}' is a {type(content).__name__}, expected a dict of arrays")
            return None
        missing = [key for key in ("audio", "vision", LABEL_KEY) if key not in content]
        if "text" not in content and "text_bert" not in content:
            missing.insert(0, "text (or text_bert)")
        if missing:
            self.error(f"split '{split}' lacks required key(s) {', '.join(missing)} "
                       f"(found: {', '.join(sorted(map(str, content))) or 'none'})")
            return None
        labels = self._labels(split, content[LABEL_KEY])
        if labels is None:
            return None
        n = len(labels)
        self._sample_counts(split, content, n)
        shapes = {key: self._feature(split, key, content[key], n) for key in FEATURE_KEYS if key in content}
        if "text" in content:
            self._text_mixup(split, content["text"])
        if "text_bert" in content:
            shapes["text_bert"] = self._text_bert(split, content["text_bert"], n)
            self._text_bert_fits_text(split, shapes)
        ids = self._ids(split, content, n)
        return {"n": n, "labels": labels, "shapes": shapes, "keys": set(content), "ids": ids}

    def _text_bert_fits_text(self, split: str, shapes: dict) -> None:
        text, bert = shapes.get("text"), shapes.get("text_bert")
        if text and bert and text[1] != bert[2]:
            self.error(f"split '{split}' key 'text_bert' has length {bert[2]} but 'text' has length {text[1]}: "
                       "the token ids must be aligned with the text features (one position per word)")

    def _labels(self, split: str, value) -> np.ndarray | None:
        labels = _flat_numbers(value) if isinstance(value, (list, tuple)) else value
        if not isinstance(labels, np.ndarray) or not _is_numeric(labels):
            found = f"{labels.dtype} array" if isinstance(labels, np.ndarray) else type(value).__name__
            self.error(f"split '{split}' key '{LABEL_KEY}' is a {found}, expected a real-valued (N,) array")
            return None
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            self.error(f"split '{split}' key '{LABEL_KEY}' has shape {labels.shape}, expected (N,)")
            return None
        if len(labels) == 0:
            self.error(f"split '{split}' has 0 samples (key '{LABEL_KEY}' is empty): every split needs at least one")
            return None
        labels = labels.astype(np.float64)
        bad = int((~np.isfinite(labels)).sum())
        if bad:
            self.error(f"split '{split}' key '{LABEL_KEY}' has {bad} non-finite value(s) "
                       "(NaN or inf labels cannot be trained or scored)")
        overflow = int((np.abs(labels[np.isfinite(labels)]) > np.finfo(np.float32).max).sum())
        if overflow:
            self.error(f"split '{split}' key '{LABEL_KEY}' has {overflow} value(s) beyond float32's range "
                       f"(|label| > {np.finfo(np.float32).max:.3g}): they would become inf when stored")
        return labels

    def _sample_counts(self, split: str, content: dict, n: int) -> None:
        counts = {LABEL_KEY: n}
        for key in PER_SAMPLE_KEYS:
            if key in content and key != LABEL_KEY:
                shape = _shape(content[key])
                if not shape:
                    self.error(f"split '{split}' key '{key}' is a {type(content[key]).__name__} "
                               f"without a length, expected {n} samples")
                else:
                    counts[key] = shape[0]
        values = list(counts.values())
        expected = max(values, key=lambda v: (values.count(v), v == n))  # the majority; ties: the labels'
        agreeing = [key for key, count in counts.items() if count == expected]
        named = ", ".join(f"'{key}'" for key in agreeing[:3]) + (", ..." if len(agreeing) > 3 else "")
        for key, count in counts.items():
            if count != expected:
                self.error(f"split '{split}' key '{key}' has {count} samples, but {named} "
                           f"{'has' if len(agreeing) == 1 else 'have'} {expected}: "
                           "every array of a split needs the same N")

    def _feature(self, split: str, key: str, value, n: int) -> tuple | None:
        if not isinstance(value, np.ndarray) or not _is_numeric(value):
            found = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
            self.error(f"split '{split}' key '{key}' is a {found}, expected a real-valued (N, L, d) array")
            return None
        if value.ndim != 3:
            self.error(f"split '{split}' key '{key}' has shape {value.shape}, expected 3-D (N, L, d)")
            return None
        if value.shape[1] == 0 or value.shape[2] == 0:
            self.error(f"split '{split}' key '{key}' has shape {value.shape}: empty sequence or feature axis")
            return None
        return value.shape if value.shape[0] == n else None

    def _text_mixup(self, split: str, text) -> None:
        if isinstance(text, np.ndarray) and _looks_like_token_ids(text):
            self.error(f"split '{split}' key 'text' has shape {text.shape} with whole non-negative values: "
                       "these look like BERT token ids/mask/segments (the 'text_bert' layout (N, 3, L)), "
                       "not text features (N, L, 768); store them under 'text_bert' and convert with "
                       "--text-encoder bert")

    def _text_bert(self, split: str, value, n: int) -> tuple | None:
        if not isinstance(value, np.ndarray) or not _is_numeric(value) or value.ndim != 3:
            found = getattr(value, "shape", type(value).__name__)
            self.error(f"split '{split}' key 'text_bert' is {found}, expected an integer or float (N, 3, L) array")
            return None
        if value.shape[1] != 3:
            hint = (": this looks like text features (N, L, d), which belong under 'text'"
                    if value.shape[2] > 3 and not _looks_like_token_ids(value) else "")
            self.error(f"split '{split}' key 'text_bert' has shape {value.shape}, expected (N, 3, L) "
                       f"rows input_ids, attention mask, segment ids{hint}")
            return None
        if not _looks_like_token_ids(value):
            self.error(f"split '{split}' key 'text_bert' holds fractional or negative values: expected "
                       "whole-number token ids, mask and segment ids")
            return None
        return value.shape if value.shape[0] == n else None

    def _ids(self, split: str, content: dict, n: int) -> set[str]:
        if "id" not in content:
            self.warn(f"split '{split}' has no 'id' key: samples get generated ids '{split}-<index>'")
            return set()
        ids = id_strings(content["id"])
        if ids is None:
            self.error(f"split '{split}' key 'id' holds something other than strings or numbers: "
                       "expected one id per sample, e.g. '<video>$_$<clip>'")
            return set()
        counts = Counter(ids)
        duplicates = [i for i, count in counts.items() if count > 1]
        if duplicates:
            self.error(f"split '{split}' key 'id' has {len(ids) - len(counts)} duplicate id(s), e.g. "
                       f"{', '.join(repr(d) for d in duplicates[:3])}: ids must be unique within a split")
        return set(counts)


def _flat_numbers(values) -> np.ndarray | None:
    """A list of real numbers as an array; None for anything nested or non-numeric (a nested list can
    share one object many times over and expand far beyond the file's size)."""
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
        return None
    return np.asarray(values, dtype=np.float64)


def id_strings(value) -> list[str] | None:
    """The ids as strings, or None when an id is not a string or a number."""
    items = value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(items, (list, tuple)):
        return None
    plain = (str, bytes, int, np.integer, np.str_, np.bytes_)
    if not all(isinstance(item, plain) for item in items):
        return None
    return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in items]


def _label_stats(labels: np.ndarray) -> dict:
    finite = labels[np.isfinite(labels)]
    if finite.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "n_zero": 0, "n_beyond_3": 0}
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean()),
            "std": float(finite.std()), "n_zero": int((finite == 0).sum()),
            "n_beyond_3": int((np.abs(finite) > 3).sum())}


def _agree_across_splits(checker: _Checker, summaries: dict, key: str, axis: int, what: str) -> int | None:
    values = {split: s["shapes"][key][axis] for split, s in summaries.items() if s["shapes"].get(key)}
    if len(set(values.values())) > 1:
        found = ", ".join(f"{split} {v}" for split, v in values.items())
        checker.error(f"key '{key}' has a different {what} per split ({found}): all splits must agree")
        return None
    return next(iter(values.values()), None)


def _text_source(checker: _Checker, summaries: dict) -> str | None:
    has = {key: all(key in s["keys"] for s in summaries.values()) for key in ("text", "text_bert")}
    if has["text"] and has["text_bert"]:
        return "both"
    if has["text"] or has["text_bert"]:
        return "text" if has["text"] else "text_bert"
    found = ", ".join(f"{split}: {'text' if 'text' in summary['keys'] else 'text_bert'}"
                      for split, summary in summaries.items())
    checker.error(f"no text key is present in every split ({found}): all splits need 'text' or all 'text_bert'")
    return None


def validate_data(data, path, sha256: str | None = None, min_length: int = 1) -> dict:
    """Validate a loaded MMSA dict; return the report or raise RohydrError listing every problem.

    `sha256` is the file's digest when the caller already has it (computed while loading);
    otherwise the file at `path` is hashed here. `min_length`: the shortest sequence the models can
    take (their feature extractor's kernel).
    """
    path = os.fspath(path)
    if not isinstance(data, dict):
        raise RohydrError(f"{path} holds a {type(data).__name__}, expected a dict with keys train, valid, test")
    missing = [split for split in SPLITS if split not in data]
    if missing:
        raise RohydrError(f"{path} lacks split(s) {', '.join(missing)} (found top-level keys: "
                          f"{', '.join(sorted(map(str, data))) or 'none'}); expected train, valid, test")
    checker = _Checker(data, path)
    summaries = {}
    for split in SPLITS:
        summary = checker.check_split(split, data[split])
        if summary is not None:
            summaries[split] = summary
    report = {"file": path, "sha256": None, "recognised_as": None, "splits": {},
              "dims": {}, "lengths": {}, "text_source": None, "nonfinite": {}, "nonfinite_kinds": {},
              "warnings": checker.warnings}
    if len(summaries) == len(SPLITS):
        report["text_source"] = _text_source(checker, summaries)
        for key in FEATURE_KEYS:
            report["dims"][key] = _agree_across_splits(checker, summaries, key, 2, "feature dim")
            report["lengths"][key] = _agree_across_splits(checker, summaries, key, 1, "sequence length")
        if "text_bert" in summaries["train"]["keys"]:
            bert_length = _agree_across_splits(checker, summaries, "text_bert", 2, "sequence length")
            if report["lengths"]["text"] is None:
                report["lengths"]["text"] = bert_length
        _check_lengths(checker, report["lengths"], min_length)
        _warn_shared_ids(checker, summaries)
    if checker.errors:
        problems = "\n  - ".join(checker.errors)
        raise RohydrError(f"{path} is not a usable MMSA feature pickle:\n  - {problems}")
    _fill_statistics(report, data, summaries, checker)
    report["sha256"] = sha256 or sha256_file(path)
    report["recognised_as"] = RELEASED_SHA256.get(report["sha256"])
    for warning in checker.warnings:
        print(f"rohydr: warning: {path}: {warning}", file=sys.stderr)
    return report


def _check_lengths(checker: _Checker, lengths: dict, min_length: int) -> None:
    known = {key: length for key, length in lengths.items() if length is not None}
    if len(set(known.values())) > 1:
        found = ", ".join(f"{key} {length}" for key, length in known.items())
        checker.error(f"sequence lengths differ between modalities ({found}): word-aligned data is required "
                      "(one length for all modalities, e.g. MMSA's aligned_50.pkl, not unaligned_50.pkl)")
    short = {key: length for key, length in known.items() if length < min_length}
    if short:
        found = ", ".join(f"{key} {length}" for key, length in short.items())
        checker.error(f"sequence length ({found}) is shorter than the feature extractor's kernel {min_length} "
                      "(model.extractor_kernel): the models need at least that many steps")


def _warn_shared_ids(checker: _Checker, summaries: dict) -> None:
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            shared = summaries[first]["ids"] & summaries[second]["ids"]
            if shared:
                checker.warn(f"splits '{first}' and '{second}' share {len(shared)} id(s), e.g. "
                             f"{', '.join(repr(x) for x in sorted(shared)[:3])}: possible leakage between splits")


def _fill_statistics(report: dict, data: dict, summaries: dict, checker: _Checker) -> None:
    for split, summary in summaries.items():
        stats = _label_stats(summary["labels"])
        report["splits"][split] = {"n": summary["n"], "labels": stats}
        if stats["n_beyond_3"]:
            checker.warn(f"split '{split}' has {stats['n_beyond_3']} label(s) beyond |3| (min {stats['min']:.3f}, "
                         f"max {stats['max']:.3f}); Acc-5 and Acc-7 clip labels and predictions to [-2, 2] and "
                         "[-3, 3] (as MMSA does); MAE, Corr and the binary metrics take them as they are")
        kinds = {key: nonfinite_counts(data[split][key]) for key in FEATURE_KEYS if key in data[split]}
        report["nonfinite_kinds"][split] = kinds
        report["nonfinite"][split] = {key: sum(counts.values()) for key, counts in kinds.items()}


def validate_file(path, min_length: int = 1) -> tuple[dict, dict]:
    """Load `path` once with the restricted unpickler and validate it: (data, report)."""
    data, sha256 = load_pickle_with_sha256(path)
    try:
        return data, validate_data(data, path, sha256=sha256, min_length=min_length)
    except MemoryError:
        raise RohydrError(f"{path}: ran out of memory while validating it (arrays larger than this machine "
                          "can check?)") from None


def load_validated(path, report_path) -> tuple[dict, dict]:
    """Load `path` once with the restricted unpickler and take its report from `report_path` (written by
    `rohydr validate`) instead of validating it again; a pickle that changed since is refused."""
    try:
        report = json.loads(Path(report_path).read_text())
        validated_sha256 = report["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RohydrError(f"validation report {report_path}: not a report of rohydr validate ({error})") from None
    data, sha256 = load_pickle_with_sha256(path)
    if sha256 != validated_sha256:
        raise RohydrError(f"{path} has changed since {report_path} validated it (sha256 {sha256[:12]}..., "
                          f"validated {str(validated_sha256)[:12]}...): validate it again")
    return data, report


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"

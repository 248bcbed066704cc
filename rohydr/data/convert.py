"""Convert a validated MMSA feature pickle to the project's HDF5 feature file.

Layout (read by rohydr.data.dataset.FeatureStore):
  /{train,valid,test}/text, /audio, /vision  float32 (N, L, d), non-finite values replaced by 0,
                                             attribute `nonfinite_replaced` (count)
  /{split}/labels     float32 (N,)           regression labels, as in the pickle (not clipped)
  /{split}/ids        UTF-8 bytes (N,)       "<video>$_$<clip>" (or "<split>-<index>" when absent)
  /{split}/text_mask  uint8 (N, L)           attention mask of `text_bert`, when the pickle has it
  every dataset carries a Fletcher-32 checksum (a damaged chunk fails to read)
  file attributes: source_path, source_sha256, recognised_as ("" if unknown), dims [dl, da, dv],
  lengths [Ll, La, Lv], converter_version, text_encoder ("features" | "bert"), validation_report (JSON)
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from rohydr import __version__
from rohydr.core.errors import RohydrError
from rohydr.core.io import atomic_path, ensure_free_space, write_text_atomic
from rohydr.core.progress import progress
from rohydr.core.vocabulary import FEATURE_KEYS, SPLITS
from rohydr.data.validate import LABEL_KEY, id_strings, load_validated, report_json, validate_file

WRITE_ROWS = 2048  # rows cast and written at once: bounds the extra memory to one block
BERT_BATCH = 64
ENV_BERT_DIR = "ROHYDR_BERT_DIR"


def _float32_block(block: np.ndarray) -> tuple[np.ndarray, int]:
    """A float32 copy of `block` with NaN/inf (including float32 overflow) set to 0, and their count."""
    with np.errstate(over="ignore"):  # float32 overflow becomes inf, counted below
        out = np.array(block, dtype=np.float32, copy=True)
    bad = ~np.isfinite(out)
    count = int(bad.sum())
    if count:
        out[bad] = 0.0
    return out, count


def _write_features(group: h5py.Group, name: str, array: np.ndarray) -> int:
    n, length, d = array.shape
    dataset = group.create_dataset(name, shape=(n, length, d), dtype=np.float32,
                                   chunks=(max(1, min(n, 64)), length, d), fletcher32=True)
    replaced = 0
    for start in range(0, n, WRITE_ROWS):
        block, count = _float32_block(array[start:start + WRITE_ROWS])
        dataset[start:start + len(block)] = block
        replaced += count
    dataset.attrs["nonfinite_replaced"] = replaced
    return replaced


def _ids(content: dict, split: str, n: int) -> list[str]:
    if "id" not in content:
        return [f"{split}-{i}" for i in range(n)]
    return id_strings(content["id"])


class BertEncoder:
    """A frozen BERT from a local directory; encodes `text_bert` (ids, mask, segments) to hidden states."""

    def __init__(self, bert_dir: str | os.PathLike | None):
        bert_dir = bert_dir or os.environ.get(ENV_BERT_DIR)
        if not bert_dir:
            raise RohydrError(f"--text-encoder bert needs a local BERT directory: pass --bert DIR or set "
                              f"${ENV_BERT_DIR} (models are never downloaded)")
        self.dir = Path(bert_dir)
        if not self.dir.is_dir():
            raise RohydrError(f"BERT directory {self.dir} does not exist (from --bert or ${ENV_BERT_DIR})")
        if not (self.dir / "config.json").is_file():
            raise RohydrError(f"BERT directory {self.dir} has no config.json: expected a model saved with "
                              "save_pretrained (config.json plus model.safetensors or pytorch_model.bin)")
        try:
            for name in ("torch", "transformers"):
                importlib.import_module(name)
        except ImportError as error:
            raise RohydrError(f"--text-encoder bert needs the optional package 'transformers', which is not "
                              f"installed ({error}); install it with: pip install 'rohydr[bert]'") from None
        self.model = None

    def load(self) -> None:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(str(self.dir), local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise RohydrError(f"cannot load BERT weights from {self.dir}: {error}") from None
        self.model = model.eval()
        self.torch = torch

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def check_inputs(self, text_bert: np.ndarray, split: str, source) -> None:
        config = self.model.config
        if text_bert.shape[2] > config.max_position_embeddings:
            raise RohydrError(f"{source} split '{split}': text_bert length {text_bert.shape[2]} exceeds the "
                              f"BERT model's max_position_embeddings {config.max_position_embeddings}")
        largest = int(text_bert[:, 0].max(initial=0))
        if largest >= config.vocab_size:
            raise RohydrError(f"{source} split '{split}': text_bert token id {largest} is outside the vocabulary "
                              f"of the BERT model in {self.dir} (vocab_size {config.vocab_size})")

    def encode(self, text_bert: np.ndarray) -> np.ndarray:
        """(B, 3, L) ids/mask/segments -> (B, L, hidden) float32 last hidden states."""
        torch = self.torch
        ids, mask, segments = (torch.from_numpy(np.asarray(text_bert[:, row], dtype=np.int64)) for row in range(3))
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=segments)
        return out.last_hidden_state.float().numpy()


def _write_bert_text(group: h5py.Group, text_bert: np.ndarray, encoder: BertEncoder) -> int:
    n, _, length = text_bert.shape
    d = encoder.hidden_size
    dataset = group.create_dataset("text", shape=(n, length, d), dtype=np.float32,
                                   chunks=(max(1, min(n, 64)), length, d), fletcher32=True)
    replaced = 0
    for start in progress(range(0, n, BERT_BATCH), f"BERT {group.name.strip('/')} batches"):
        block, count = _float32_block(encoder.encode(text_bert[start:start + BERT_BATCH]))
        dataset[start:start + len(block)] = block
        replaced += count
    dataset.attrs["nonfinite_replaced"] = replaced
    return replaced


def _write_split(h5: h5py.File, split: str, content: dict, encoder: BertEncoder | None) -> None:
    group = h5.create_group(split)
    if encoder is None:
        _write_features(group, "text", content["text"])
    else:
        _write_bert_text(group, content["text_bert"], encoder)
    for key in FEATURE_KEYS[1:]:
        _write_features(group, key, content[key])
    labels = np.asarray(content[LABEL_KEY], dtype=np.float32).reshape(-1)
    group.create_dataset("labels", data=labels, fletcher32=True)
    # fixed-length UTF-8 bytes: HDF5 filters (the checksum) do not apply to variable-length strings
    ids = np.array([i.encode("utf-8") for i in _ids(content, split, len(labels))])
    group.create_dataset("ids", data=ids, fletcher32=True)
    if "text_bert" in content:
        group.create_dataset("text_mask", data=np.asarray(content["text_bert"][:, 1] > 0, dtype=np.uint8),
                             fletcher32=True)


def _check_encoder_fits(report: dict, text_encoder: str, path) -> None:
    source = report["text_source"]
    if text_encoder == "features" and source == "text_bert":
        raise RohydrError(f"{path} has only 'text_bert' (token ids), no 'text' features: convert with "
                          "--text-encoder bert --bert DIR to compute BERT features from the ids")
    if text_encoder == "bert" and source == "text":
        raise RohydrError(f"{path} has no 'text_bert' (token ids) for --text-encoder bert; "
                          "its 'text' key already holds features: use --text-encoder features")


def _expected_size(report: dict, dims: list[int], lengths: list[int]) -> int:
    """Bytes of the HDF5 file, generously: float32 features, labels, ids, masks and metadata."""
    rows = sum(split["n"] for split in report["splits"].values())
    per_row = 4 * sum(d * length for d, length in zip(dims, lengths)) + 4 + 256 + lengths[0]
    return int(1.05 * rows * per_row) + (1 << 20)


def convert(pkl_path, out_h5, text_encoder: str = "features", bert_dir=None, report_path=None,
            validation=None) -> dict:
    """Validate `pkl_path` (loaded once; with `validation`, the report `rohydr validate` wrote for it) and
    write the HDF5 feature file `out_h5`; return the report."""
    if text_encoder not in ("features", "bert"):
        raise RohydrError(f"unknown text encoder {text_encoder!r}: expected 'features' or 'bert'")
    encoder = BertEncoder(bert_dir) if text_encoder == "bert" else None  # fail fast before loading
    data, report = load_validated(pkl_path, validation) if validation else validate_file(pkl_path)
    _check_encoder_fits(report, text_encoder, pkl_path)
    if encoder is not None:
        encoder.load()
        for split in SPLITS:
            encoder.check_inputs(data[split]["text_bert"], split, pkl_path)
        report["dims"]["text"] = encoder.hidden_size
        report["lengths"]["text"] = int(data["train"]["text_bert"].shape[2])
    lengths = [report["lengths"][key] for key in FEATURE_KEYS]
    dims = [report["dims"][key] for key in FEATURE_KEYS]
    ensure_free_space(out_h5, _expected_size(report, dims, lengths))
    with atomic_path(out_h5) as tmp:
        with h5py.File(tmp, "w") as h5:
            for split in SPLITS:
                _write_split(h5, split, data[split], encoder)
                data[split] = None  # nothing reads this split again: let its arrays go
            h5.attrs.update({
                "source_path": str(Path(pkl_path).resolve()),
                "source_sha256": report["sha256"],
                "recognised_as": report["recognised_as"] or "",
                "dims": np.asarray(dims, dtype=np.int64),
                "lengths": np.asarray(lengths, dtype=np.int64),
                "converter_version": __version__,
                "text_encoder": text_encoder,
                "validation_report": json.dumps(report),
            })
        if report_path:
            write_text_atomic(report_path, report_json(report))
    return report

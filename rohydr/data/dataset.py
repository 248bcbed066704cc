"""Read the HDF5 feature file written by `rohydr convert` into torch tensors.

A split is small enough to live in memory (MOSEI train: 2.5 GB of text), so each split is read once,
fully, and batches are plain tensor indexing: no per-sample Python work in the training loop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py
import numpy as np
import torch

from rohydr.core.errors import RohydrError
from rohydr.core.io import read_hdf5
from rohydr.core.vocabulary import FEATURE_KEYS, SPLITS

Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class SplitTensors:
    """One split in memory: features (N, L, d_m) float32 in the order text, audio, vision."""

    text: torch.Tensor
    audio: torch.Tensor
    vision: torch.Tensor
    labels: torch.Tensor  # (N,) float32
    ids: list[str] = field(default_factory=list)
    text_mask: torch.Tensor | None = None  # (N, L) uint8 attention mask, when the pickle had text_bert

    def __len__(self) -> int:
        return len(self.labels)

    def features(self) -> Features:
        return self.text, self.audio, self.vision

    def to(self, device: torch.device | str) -> SplitTensors:
        mask = None if self.text_mask is None else self.text_mask.to(device)
        return SplitTensors(self.text.to(device), self.audio.to(device), self.vision.to(device),
                            self.labels.to(device), self.ids, mask)

    def subset(self, rows: slice) -> SplitTensors:
        """The samples at `rows`, as views."""
        mask = None if self.text_mask is None else self.text_mask[rows]
        return SplitTensors(self.text[rows], self.audio[rows], self.vision[rows], self.labels[rows],
                            self.ids[rows], mask)

    def batch(self, index: torch.Tensor) -> tuple[Features, torch.Tensor]:
        """((text, audio, vision), labels) of the samples at `index` (a LongTensor on the same device)."""
        return (self.text[index], self.audio[index], self.vision[index]), self.labels[index]


class FeatureStore:
    """The HDF5 feature file, opened once; splits are loaded on first use and cached."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise RohydrError(f"feature file {self.path} does not exist (write it with `rohydr convert`)")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as error:
            raise RohydrError(f"{self.path} is not a readable HDF5 feature file ({error})") from None
        self._cache: dict[str, SplitTensors] = {}
        for split in SPLITS:
            for key in (*FEATURE_KEYS, "labels", "ids"):
                self._dataset(split, key)  # fail now, naming the key, rather than mid-training

    def _dataset(self, split: str, key: str) -> h5py.Dataset:
        if self._h5 is None:
            raise RohydrError(f"feature file {self.path} is closed")
        name = f"{split}/{key}"
        if name not in self._h5 or not isinstance(self._h5[name], h5py.Dataset):
            raise RohydrError(f"feature file {self.path} has no dataset '/{name}' "
                              "(expected the layout written by `rohydr convert`)")
        return self._h5[name]

    @property
    def dims(self) -> tuple[int, int, int]:
        return tuple(int(self._dataset("train", key).shape[2]) for key in FEATURE_KEYS)

    @property
    def lengths(self) -> tuple[int, int, int]:
        return tuple(int(self._dataset("train", key).shape[1]) for key in FEATURE_KEYS)

    @property
    def length(self) -> int:
        lengths = self.lengths
        if len(set(lengths)) != 1:
            raise RohydrError(f"feature file {self.path} holds unaligned data (sequence lengths text "
                              f"{lengths[0]}, audio {lengths[1]}, vision {lengths[2]}): only word-aligned "
                              "data (one length for all modalities, e.g. aligned_50.pkl) is supported yet")
        return lengths[0]

    @property
    def sizes(self) -> dict[str, int]:
        return {split: int(self._dataset(split, "labels").shape[0]) for split in SPLITS}

    @property
    def attrs(self) -> dict:
        if self._h5 is None:
            raise RohydrError(f"feature file {self.path} is closed")
        return {key: _plain(value) for key, value in self._h5.attrs.items()}

    def split(self, name: str) -> SplitTensors:
        if name not in SPLITS:
            raise RohydrError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        if name not in self._cache:
            self.length  # noqa: B018 - raises on unaligned data
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _array(self, split: str, key: str) -> np.ndarray:
        return read_hdf5(self._dataset(split, key), self.path)

    def _load(self, split: str) -> SplitTensors:
        text, audio, vision = (torch.from_numpy(self._array(split, key).astype(np.float32, copy=False))
                               for key in FEATURE_KEYS)
        labels = torch.from_numpy(self._array(split, "labels").astype(np.float32, copy=False))
        ids = [i.decode("utf-8") if isinstance(i, bytes) else i for i in self._array(split, "ids").tolist()]
        mask = None
        if f"{split}/text_mask" in self._h5:
            mask = torch.from_numpy(self._array(split, "text_mask"))
        sizes = {len(text), len(audio), len(vision), len(labels), len(ids)}
        if len(sizes) != 1:
            raise RohydrError(f"feature file {self.path} split '{split}' has arrays of different lengths "
                              f"{sorted(sizes)}: the file is damaged; convert it again")
        return SplitTensors(text, audio, vision, labels, ids, mask)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(value):
    """HDF5 attribute -> plain Python value (lists of ints, str)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value

"""Data stage: safe loading, validation and conversion of MMSA pickles; synthetic data; the HDF5 reader.

Names are re-exported lazily, so that `import rohydr.data.synthetic` does not import torch
(`convert` is not re-exported: it is also the name of a submodule).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "load_pickle": "rohydr.data.safe_pickle",
    "make_synthetic": "rohydr.data.synthetic",
    "validate_data": "rohydr.data.validate",
    "validate_file": "rohydr.data.validate",
    "FeatureStore": "rohydr.data.dataset",
    "SplitTensors": "rohydr.data.dataset",
    "FeatureDataset": "rohydr.data.dataset",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rohydr.data' has no attribute {name!r}")

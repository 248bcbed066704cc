"""Checkpoints: written atomically, read with `weights_only=True`, checked against the run they serve."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from rohydr.config import RunConfig, run_config_from_dict
from rohydr.errors import RohydrError
from rohydr.io import atomic_path

FORMAT = "rohydr-checkpoint-1"


def save_checkpoint(path: str | Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise RohydrError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RohydrError(f"checkpoint {path} is corrupt or not a rohydr checkpoint ({first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RohydrError(f"checkpoint {path}: expected format {FORMAT!r}, found {found!r}")
    return payload


def build_model(run_config: RunConfig, dims, length: int):
    from rohydr.models import RoHyDR

    return RoHyDR(run_config.model, tuple(int(d) for d in dims), int(length))


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """The model a checkpoint holds, on `device`, in eval mode, with the checkpoint's metadata."""
    payload = load_checkpoint(path)
    run_config = run_config_from_dict(payload["run_config"])
    model = build_model(run_config, payload["dims"], payload["length"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise RohydrError(f"checkpoint {path} does not match its own run configuration: {error}") from None
    return model.to(device).eval(), payload


def load_components(model: torch.nn.Module, state_dict: dict, components: list[str], source: str) -> None:
    """Copy the named top-level components (e.g. extractor, fusion, head) from a checkpoint's weights."""
    own = model.state_dict()
    for component in components:
        prefix = component + "."
        theirs = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        mine = {k: v for k, v in own.items() if k.startswith(prefix)}
        if set(theirs) != set(mine):
            missing = sorted(set(mine) - set(theirs))[:3]
            extra = sorted(set(theirs) - set(mine))[:3]
            raise RohydrError(f"checkpoint {source}: component {component!r} does not match this model "
                              f"(missing {missing}, unexpected {extra})")
        for key, value in theirs.items():
            if value.shape != mine[key].shape:
                raise RohydrError(f"checkpoint {source}: {key} has shape {tuple(value.shape)}, "
                                  f"this model expects {tuple(mine[key].shape)} (another preset or dataset?)")
        own.update(theirs)
    model.load_state_dict(own)


def check_data_matches(payload: dict, dims, length: int, source: str) -> None:
    if list(payload["dims"]) != list(dims) or int(payload["length"]) != int(length):
        raise RohydrError(f"checkpoint {source} was trained on dims {list(payload['dims'])} length "
                          f"{payload['length']}, but the data has dims {list(dims)} length {length}")

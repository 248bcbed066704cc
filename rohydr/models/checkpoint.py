"""Checkpoints: written atomically, read with `weights_only=True`, checked against the run they serve."""
from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path

import torch

from rohydr.core.config import RunConfig, run_config_from_dict
from rohydr.core.errors import NonFiniteError, RohydrError
from rohydr.core.io import atomic_path

FORMAT = "rohydr-checkpoint-2"  # 2: with a digest of the whole payload
REQUIRED_KEYS = {
    "pretrain": ("run_config", "dims", "length", "state_dict", "seed", "convergence"),
    "train": ("run_config", "dims", "length", "state_dict", "seed", "stage", "convergence"),
    "resume": ("fingerprint", "epoch", "model", "optimizers", "rows", "best_weights"),
}


def payload_digest(payload) -> str:
    """SHA-256 over a checkpoint's content: every tensor's dtype, shape and bytes, and every other value,
    walked in a fixed order (so a flipped byte anywhere in the data is seen on loading)."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"V{value!r}".encode())

    feed(payload)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, payload: dict) -> None:
    content = {"format": FORMAT, **payload}
    buffer = io.BytesIO()  # serialized first, so that a full disk is an OSError with its reason
    torch.save({**content, "digest": payload_digest(content)}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _refused_global(error: Exception) -> str | None:
    """The global torch's weights-only loader refused, if that is why it failed (its own message
    advises weights_only=False, which this project never does)."""
    found = re.search(r"GLOBAL\s+([\w.]+)", str(error))
    return found.group(1) if found else None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise RohydrError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused:
            raise RohydrError(f"checkpoint {path} is refused: it names the global {refused!r}, which a "
                              "weights-only load does not admit (not a rohydr checkpoint, or altered)") from None
        raise RohydrError(f"checkpoint {path} is corrupt or not a rohydr checkpoint (not a torch file "
                          "of tensors and plain values)") from None
    except Exception as error:  # noqa: BLE001 - torch reports a damaged or foreign file in many ways
        raise RohydrError(f"checkpoint {path} is corrupt or not a rohydr checkpoint "
                          f"({type(error).__name__}: {_first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RohydrError(f"checkpoint {path}: expected format {FORMAT!r}, found {found!r}"
                          + (" (written by an older rohydr: train it again)" if found == "rohydr-checkpoint-1" else ""))
    _check_content(payload, path)
    return payload


def _check_content(payload: dict, path: Path) -> None:
    stored = payload.pop("digest", None)
    if stored != payload_digest(payload):
        raise RohydrError(f"checkpoint {path} is damaged: its content does not match the digest written with it "
                          "(a changed byte?); train it again")
    kind = payload.get("kind")
    if kind not in REQUIRED_KEYS:
        raise RohydrError(f"checkpoint {path}: unknown kind {kind!r}; expected one of {sorted(REQUIRED_KEYS)}")
    missing = [key for key in REQUIRED_KEYS[kind] if key not in payload]
    if missing:
        raise RohydrError(f"checkpoint {path} ({kind}) lacks key(s) {missing}")
    for name, tensor in payload.get("state_dict", {}).items():  # (an infinite buffer can mean "unset")
        if tensor.is_floating_point() and torch.isnan(tensor).any():
            raise NonFiniteError(f"checkpoint {path}: weight {name!r} holds {int(torch.isnan(tensor).sum())} "
                                 "NaN value(s) (a diverged training?)")


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

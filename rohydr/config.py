"""Hyper-parameters: the presets of method.md, small presets for CPU runs, and overrides.

A run configuration is a nested dict with two sections, `model` and `train`. It is built from a
preset and any number of override dicts (deep-merged in order) and checked against the dataclasses
below, so that a misspelled key fails loudly instead of being ignored.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DiTConfig:
    hidden: int = 64
    depth: int = 6
    heads: int = 16
    mlp_ratio: float = 4.0


@dataclass
class DiffusionConfig:
    train_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampler_steps: int = 50  # DDIM steps at evaluation
    train_sampler_steps: int = 10  # DDIM steps inside training (the reference uses 50; see FAITHFUL)
    # Clip the sampler's x0 prediction: "data" to the range of the modality's training features
    # (measured when training starts), a number to +-number, None not at all. The reference clips to
    # 1 while the features reach about +-5; without any clip an untrained DiT's first step is
    # amplified by 1/sqrt(alpha_bar_999) ~ 156.
    clip_x0: float | str | None = "data"


@dataclass
class ModelConfig:
    d: int = 32  # width of every extracted modality sequence
    heads: int = 8
    nlevels: int = 4
    memory_min_layers: int = 3
    extractor_kernel: int = 3
    text_dropout: float = 0.5
    attn_dropout: float = 0.5
    attn_dropout_a: float = 0.5
    attn_dropout_v: float = 0.5
    relu_dropout: float = 0.5
    res_dropout: float = 0.5
    embed_dropout: float = 0.5
    output_dropout: float = 0.5
    causal_attention: bool = True  # MulT's attn_mask: each step attends to past steps only
    dit: DiTConfig = field(default_factory=DiTConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    ur_blocks: int = 20
    ur_reduction: int = 16
    mr_hidden1: int = 80
    mr_hidden2: int = 96
    mr_dropout: float = 0.4
    disc_hidden1: int = 128
    disc_hidden2: int = 64
    # switches used by the ablations (faithful defaults)
    use_diffusion: bool = True
    use_unimodal_reconstructor: bool = True
    use_multimodal_reconstructor: bool = True
    use_adversarial: bool = True
    grad_through_sampler: bool = False  # the reference backpropagates through the chain (see FAITHFUL)
    recovery: str = "generative"  # "generative" | "zero_fill" (baseline: missing features set to 0)


@dataclass
class PretrainConfig:
    lr: float = 0.002
    batch_size: int = 32
    max_epochs: int = 100
    early_stop: int = 10
    grad_clip: float = 0.6


@dataclass
class TrainConfig:
    schedule: str = "multistage"  # "multistage" | "joint" | "sequential"
    batch_size: int = 32
    lr: float = 0.002
    weight_decay: float = 0.0
    disc_lr: float = 0.002
    disc_weight_decay: float = 1e-5
    lambda_g: float = 1.0
    lambda_al: float = 0.5
    lambda_c: float = 0.4
    grad_clip: float = 0.6
    plateau_factor: float = 0.5
    plateau_patience: int = 24
    early_stop: int = 20
    max_epochs: int = 200
    freeze_extractor: bool = True
    train_mr: float = 0.7
    missing_draw: str = "per_sample"  # "per_sample" | "per_batch" (the reference's draw)
    reuse_forward: bool = True  # one forward shared by the three stages of a batch (reference: one each)
    sequential_epochs: int = 0  # max epochs of each stage under the sequential schedule (0: max_epochs)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The reference's computation, where the defaults compute something faster (measured in the README's
# performance notes): three forwards per batch, gradient through a 50-step sampler.
FAITHFUL: dict[str, Any] = {
    "model": {"grad_through_sampler": True, "diffusion": {"train_sampler_steps": 50}},
    "train": {"reuse_forward": False},
}

PRESETS: dict[str, dict[str, Any]] = {
    # method.md's MOSI hyper-parameters are the dataclass defaults.
    "mosi": {},
    "mosei": {
        "model": {"nlevels": 6, "heads": 4, "mr_hidden1": 128, "mr_hidden2": 64, "mr_dropout": 0.2,
                  "disc_hidden1": 80, "disc_hidden2": 32},
        "pretrain": {"batch_size": 128},
        "train": {"batch_size": 128, "plateau_patience": 5},
    },
    # Small sizes for CPU runs on the synthetic default and for the tests.
    "small": {
        "model": {"d": 16, "heads": 4, "nlevels": 2, "memory_min_layers": 2,
                  "dit": {"hidden": 32, "depth": 2, "heads": 4},
                  "diffusion": {"sampler_steps": 10, "train_sampler_steps": 5},
                  "ur_blocks": 2, "ur_reduction": 4, "mr_hidden1": 32, "mr_hidden2": 32,
                  "disc_hidden1": 32, "disc_hidden2": 16,
                  "text_dropout": 0.1, "attn_dropout": 0.1, "attn_dropout_a": 0.1, "attn_dropout_v": 0.1,
                  "relu_dropout": 0.1, "res_dropout": 0.1, "embed_dropout": 0.1, "output_dropout": 0.1},
        "pretrain": {"max_epochs": 20, "early_stop": 4},
        "train": {"max_epochs": 10, "early_stop": 4, "plateau_patience": 2},
    },
    "tiny": {
        "model": {"d": 8, "heads": 2, "nlevels": 1, "memory_min_layers": 1,
                  "dit": {"hidden": 16, "depth": 1, "heads": 2},
                  "diffusion": {"sampler_steps": 4, "train_sampler_steps": 4},
                  "ur_blocks": 1, "ur_reduction": 4, "mr_hidden1": 16, "mr_hidden2": 16,
                  "disc_hidden1": 16, "disc_hidden2": 8},
        "pretrain": {"max_epochs": 2, "early_stop": 2, "batch_size": 16},
        "train": {"max_epochs": 2, "early_stop": 2, "plateau_patience": 1, "batch_size": 16},
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` updated by `override`, nested dicts merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _build(cls, values: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def build_run_config(preset: str = "mosi", *overrides: dict) -> RunConfig:
    """The preset's hyper-parameters with each override dict deep-merged on top, validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    values: dict = {}
    for layer in (PRESETS[preset], *overrides):
        values = deep_merge(values, layer)
    config = _build(RunConfig, values, "run config")
    _check_choices(config)
    return config


def _check_choices(config: RunConfig) -> None:
    choices = {
        ("train", "schedule"): ("multistage", "joint", "sequential"),
        ("train", "missing_draw"): ("per_sample", "per_batch"),
        ("model", "recovery"): ("generative", "zero_fill"),
    }
    clip = config.model.diffusion.clip_x0
    if not (clip is None or clip == "data" or (isinstance(clip, (int, float)) and clip > 0)):
        raise ValueError(f"model.diffusion.clip_x0 = {clip!r}; expected \"data\", a positive number or null")
    for (section, name), allowed in choices.items():
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ValueError(f"{section}.{name} = {value!r}; expected one of {allowed}")


def run_config_from_dict(values: dict) -> RunConfig:
    config = _build(RunConfig, values, "run config")
    _check_choices(config)
    return config


def load_run_config(path: str | Path) -> RunConfig:
    from rohydr.errors import RohydrError

    try:
        with open(path) as handle:
            return run_config_from_dict(json.load(handle))
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as error:
        raise RohydrError(f"run configuration {path}: {error}") from None

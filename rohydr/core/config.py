"""Hyper-parameters: the paper's presets (MOSI, MOSEI), small presets for CPU runs, and overrides.

A run configuration is a nested dict with three sections, `model`, `pretrain` and `train`. It is built from a
preset and any number of override dicts (deep-merged in order) and checked against the typed models
below (pydantic, strict): a misspelled key, a value of the wrong type ("false" for a boolean, "0.002"
for a number) or out of range (a dropout of 1.5, 0 epochs) fails loudly instead of being ignored.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rohydr.core.layout import ALL_PATTERNS
from rohydr.core.vocabulary import MR_FRACTIONS, PATTERN_NAMES

Count = Annotated[int, Field(ge=1)]  # layers, widths, epochs, batch sizes
NonNegativeInt = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]  # learning rates, clips
NonNegative = Annotated[float, Field(ge=0)]  # weights of losses, weight decays
Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Section(BaseModel):
    # strict: "false" is not a boolean, "0.002" is not a number, 2.0 is not a count, inf and nan are not
    # values of any setting; ints pass as floats
    model_config = ConfigDict(strict=True, extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def to_dict(self) -> dict:
        return self.model_dump()


def _heads_divide(section, width: str):
    if getattr(section, width) % section.heads:
        raise ValueError(f"{width} {getattr(section, width)} is not divisible by heads {section.heads}")
    return section


class DiTConfig(_Section):
    hidden: Count = 64
    depth: Count = 6
    heads: Count = 16
    mlp_ratio: Positive = 4.0

    @model_validator(mode="after")
    def _heads_divide_width(self):
        return _heads_divide(self, "hidden")


class DiffusionConfig(_Section):
    train_steps: Count = 1000
    beta_start: float = Field(1e-4, gt=0, lt=1)
    beta_end: float = Field(0.02, gt=0, lt=1)
    sampler_steps: Count = 50  # DDIM steps at evaluation
    train_sampler_steps: Count = 10  # DDIM steps inside training (the reference uses 50; see FAITHFUL)
    # Clip the sampler's x0 prediction: "data" to the range of the modality's training features
    # (measured when training starts), a number to +-number, None not at all. The reference clips to
    # 1 while the features reach about +-5; without any clip an untrained DiT's first step is
    # amplified by 1/sqrt(alpha_bar_999) ~ 156.
    clip_x0: Literal["data"] | float | None = "data"

    @model_validator(mode="after")
    def _consistent(self):
        if self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start {self.beta_start} must be below beta_end {self.beta_end}")
        for name in ("sampler_steps", "train_sampler_steps"):
            if getattr(self, name) > self.train_steps:
                raise ValueError(f"{name} {getattr(self, name)} exceeds train_steps {self.train_steps}")
        if isinstance(self.clip_x0, float) and self.clip_x0 <= 0:
            raise ValueError(f"clip_x0 = {self.clip_x0}; expected \"data\", a positive number or null")
        return self


class ScoreSDEConfig(_Section):
    """The score-SDE generator (model.generator = score_sde); defaults: IMDer's code, but for the top width."""
    # U-Net widths, top level first. IMDer's are 32/64/128/256 with d = 32; our top level is 64 because it
    # must be at least 2d wide (ModelConfig checks it; docs/method.md, "Score-SDE generator").
    channels: list[Count] = Field(default_factory=lambda: [64, 64, 128, 256], min_length=1)
    embed_dim: Count = 256  # Gaussian-Fourier time embedding
    heads: Count = 8
    attention_layers: NonNegativeInt = 2  # cross-attention to the condition at every level; 0: none
    sigma: float = Field(25.0, gt=1)
    sampler: Literal["euler_maruyama", "predictor_corrector"] = "euler_maruyama"
    snr: Positive = 0.16  # the corrector's signal-to-noise ratio
    sampler_steps: Count = 100  # at evaluation
    train_sampler_steps: Count = 100  # inside training (IMDer samples with the evaluation's 100)

    @model_validator(mode="after")
    def _heads_divide_channels(self):
        if self.attention_layers:
            for width in self.channels:
                if width % self.heads:
                    raise ValueError(f"channel width {width} is not divisible by heads {self.heads}")
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim {self.embed_dim} must be even (sine and cosine halves)")
        return self


class ModelConfig(_Section):
    d: Count = 32  # width of every extracted modality sequence
    heads: Count = 8
    nlevels: Count = 4
    memory_min_layers: Count = 3
    extractor_kernel: Count = 3
    text_dropout: Dropout = 0.5
    attn_dropout: Dropout = 0.5
    attn_dropout_a: Dropout = 0.5
    attn_dropout_v: Dropout = 0.5
    relu_dropout: Dropout = 0.5
    res_dropout: Dropout = 0.5
    embed_dropout: Dropout = 0.5
    output_dropout: Dropout = 0.5
    causal_attention: bool = True  # MulT's attn_mask: each step attends to past steps only
    # The diffusion generator of each modality: RoHyDR's DiT with DDPM training and DDIM sampling, or the
    # score-SDE ScoreNet of IMDer and of RoHyDR's code at submission time.
    generator: Literal["dit", "score_sde"] = "dit"
    dit: DiTConfig = Field(default_factory=DiTConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    score: ScoreSDEConfig = Field(default_factory=ScoreSDEConfig)
    ur_blocks: Count = 20
    ur_reduction: Count = 16
    mr_hidden1: Count = 80
    mr_hidden2: Count = 96
    mr_dropout: Dropout = 0.4
    disc_hidden1: Count = 128
    disc_hidden2: Count = 64
    # switches used by the ablations (faithful defaults)
    use_diffusion: bool = True
    use_unimodal_reconstructor: bool = True
    use_multimodal_reconstructor: bool = True
    use_adversarial: bool = True
    grad_through_sampler: bool = False  # the reference backpropagates through the chain (see FAITHFUL)
    # generative: RoHyDR's recovery. The imputation baselines: zero_fill (missing features set to 0),
    # mean_fill (the training mean of each missing modality's extracted features), ridge_fill (per
    # pattern, a closed-form ridge regression from the available modalities' extracted features).
    recovery: Literal["generative", "zero_fill", "mean_fill", "ridge_fill"] = "generative"
    # The generators (diffusion and unimodal reconstructor) work on extracted features standardised per
    # channel with training-split statistics, and their output is mapped back.
    standardize_features: bool = False
    # Stage-1 reconstruction loss of each modality divided by its features' training variance, so that
    # one modality's scale does not decide the sum (a no-op with standardize_features).
    reconstruction_weighting: Literal["none", "inverse_variance"] = "none"

    @model_validator(mode="after")
    def _consistent(self):
        if self.generator == "score_sde" and self.grad_through_sampler:
            raise ValueError("grad_through_sampler: the score-SDE sampler runs without gradient (as in IMDer)")
        if self.generator == "score_sde" and self.score.attention_layers and self.d % self.score.heads:
            raise ValueError(f"d {self.d} is not divisible by score.heads {self.score.heads}")
        if self.generator == "score_sde" and self.score.channels[0] < 2 * self.d:
            # Every path from x_t to the predicted score passes the top level's swish(GroupNorm(.)); with
            # fewer than 2d channels it cannot pass x_t through (swish(u) - swish(-u) = u needs both signs),
            # and the denoiser is stuck far above the Bayes loss whatever its training.
            raise ValueError(f"score.channels[0] = {self.score.channels[0]} is below 2 x d = {2 * self.d}: the "
                             "ScoreNet's top level must carry the noisy input's sign halves (docs/method.md)")
        return _heads_divide(self, "d")


class PretrainConfig(_Section):
    lr: Positive = 0.002
    batch_size: Count = 32
    max_epochs: Count = 100
    early_stop: Count = 10
    grad_clip: Positive = 0.6


class TrainConfig(_Section):
    schedule: Literal["multistage", "joint", "sequential"] = "multistage"
    batch_size: Count = 32
    lr: Positive = 0.002
    weight_decay: NonNegative = 0.0
    disc_lr: Positive = 0.002
    disc_weight_decay: NonNegative = 1e-5
    lambda_g: NonNegative = 1.0
    lambda_al: NonNegative = 0.5
    lambda_c: NonNegative = 0.4
    grad_clip: Positive = 0.6
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: NonNegativeInt = 24
    early_stop: Count = 20
    max_epochs: Count = 200
    freeze_extractor: bool = True
    # lr of the generators (diffusion and unimodal reconstructor); None: lr
    generator_lr: Positive | None = None
    # The generator stage (0: none): at most this many epochs of stage 1 alone (diffusion and unimodal
    # reconstructor) on every training row, each missing one of the six patterns, before the stages run
    # together; it ends after generator_early_stop epochs without a lower validation generator loss and
    # neither selects the model nor steps the learning-rate schedule.
    generator_epochs: NonNegativeInt = 0
    generator_early_stop: Count = 3
    # Which samples miss what during training (the validation masks follow the same protocol):
    # per_sample at train_mr (IMDer's protocol), per_batch at train_mr (the reference's draw), or
    # all_patterns: every sample one of the availability patterns, in the shares of pattern_weights.
    missing_draw: Literal["per_sample", "per_batch", ALL_PATTERNS] = "per_sample"  # the last: that protocol's draw
    train_mr: float = 0.7
    pattern_weights: dict[Literal[PATTERN_NAMES], NonNegative] = Field(
        default_factory=lambda: dict.fromkeys(PATTERN_NAMES, 1.0))
    reuse_forward: bool = True  # one forward shared by the three stages of a batch (reference: one each)
    sequential_epochs: NonNegativeInt = 0  # max epochs of each stage under the sequential schedule (0: max_epochs)
    # joint schedule: the weight of the recovery loss (stage 1) beside the emotion loss
    recovery_weight: NonNegative = 1.0

    @field_validator("pattern_weights", mode="before")
    @classmethod
    def _unnamed_patterns_weigh_one(cls, value):
        return {**dict.fromkeys(PATTERN_NAMES, 1.0), **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _known_missing_rate(self):
        if not any(abs(self.train_mr - mr) < 1e-9 for mr in MR_FRACTIONS):
            raise ValueError(f"train_mr = {self.train_mr}; expected one of {', '.join(map(str, MR_FRACTIONS))}")
        if not any(weight > 0 for weight in self.pattern_weights.values()):
            raise ValueError(f"pattern_weights = {self.pattern_weights}: at least one pattern needs a positive weight")
        return self


class RunConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _fills_need_fixed_features(self):
        if self.model.recovery in ("mean_fill", "ridge_fill") and not self.train.freeze_extractor:
            raise ValueError(f"model.recovery {self.model.recovery!r} is fitted once to the extracted features: "
                             "it needs train.freeze_extractor = true")
        return self


# The reference's computation where the defaults compute something faster (measured in the README's
# performance notes), per generator: three forwards per batch and, for the DiT, gradient through a
# 50-step sampler (IMDer's score-SDE sampler runs without gradient). The one place that says so: the
# workflow's `faithful: true` and `rohydr bench --faithful` apply it.
FAITHFUL: dict[str, dict[str, Any]] = {
    "dit": {"model": {"grad_through_sampler": True, "diffusion": {"train_sampler_steps": 50}},
            "train": {"reuse_forward": False}},
    "score_sde": {"train": {"reuse_forward": False}},
}

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's MOSI hyper-parameters are the defaults above.
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
                  "score": {"channels": [32, 32, 64], "embed_dim": 32, "heads": 4, "attention_layers": 1,
                            "sampler_steps": 10, "train_sampler_steps": 5},
                  "ur_blocks": 2, "ur_reduction": 4, "mr_hidden1": 32, "mr_hidden2": 32,
                  "disc_hidden1": 32, "disc_hidden2": 16,
                  "text_dropout": 0.1, "attn_dropout": 0.1, "attn_dropout_a": 0.1, "attn_dropout_v": 0.1,
                  "relu_dropout": 0.1, "res_dropout": 0.1, "embed_dropout": 0.1, "output_dropout": 0.1},
        # max_epochs: a ceiling that early stopping (patience early_stop) reaches first on the default
        "pretrain": {"max_epochs": 40, "early_stop": 4},
        "train": {"max_epochs": 30, "early_stop": 4, "plateau_patience": 2},
    },
    "tiny": {
        "model": {"d": 8, "heads": 2, "nlevels": 1, "memory_min_layers": 1,
                  "dit": {"hidden": 16, "depth": 1, "heads": 2},
                  "diffusion": {"sampler_steps": 4, "train_sampler_steps": 4},
                  "score": {"channels": [16, 16], "embed_dim": 16, "heads": 2, "attention_layers": 1,
                            "sampler_steps": 4, "train_sampler_steps": 4},
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


def _describe(error: ValidationError) -> str:
    """One line per problem: the key's dotted path, the value found and what was expected."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"] if not str(part).startswith(("literal[", "float")))
        if problem["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (misspelled?)")
            continue
        found = "" if problem["type"] in ("missing", "value_error") else f" = {problem['input']!r}"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where or 'run config'}{found}: {message}")
    return "; ".join(dict.fromkeys(lines))


def build_run_config(preset: str = "mosi", *overrides: dict, faithful: bool = False) -> RunConfig:
    """The preset's hyper-parameters with each override dict deep-merged on top, validated; `faithful`:
    the reference's computation (FAITHFUL, for the generator the overrides choose) right above the preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    layers = [PRESETS[preset], *overrides]
    if faithful:
        generator = _merged(layers).get("model", {}).get("generator", "dit")
        layers.insert(1, FAITHFUL.get(generator, {}))
    return run_config_from_dict(_merged(layers))


def _merged(layers: list[dict]) -> dict:
    values: dict = {}
    for layer in layers:
        values = deep_merge(values, layer)
    return values


def run_config_from_dict(values: dict) -> RunConfig:
    """A RunConfig from nested dicts; ValueError naming every bad key (type, range, unknown name)."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as error:
        raise ValueError(_describe(error)) from None


def load_run_config(path: str | Path) -> RunConfig:
    """A run configuration file as `rohydr config` writes it: whole, since a key left out would silently
    take the MOSI preset's value."""
    from rohydr.core.errors import RohydrError

    try:
        with open(path) as handle:
            values = json.load(handle)
        missing = _missing_keys(RunConfig, values)
        if missing:
            raise ValueError(f"lacks {', '.join(missing)}: write it whole with `rohydr config` (a key left out "
                             "would take the MOSI preset's value)")
        return run_config_from_dict(values)
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as error:
        raise RohydrError(f"run configuration {path}: {error}") from None


def _missing_keys(section: type[BaseModel], values, prefix: str = "") -> list[str]:
    if not isinstance(values, dict):
        return [f"{prefix.rstrip('.') or 'the whole'} (a JSON object expected)"]
    missing = []
    for name, field in section.model_fields.items():
        if name not in values:
            missing.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            missing += _missing_keys(field.annotation, values[name], f"{prefix}{name}.")
    return missing

"""The project's vocabulary: modalities, availability patterns and their codes, the evaluation
conditions and their nominal missing rates, the model's parameter groups and the training-log columns.
Every other module takes these names from here."""
from __future__ import annotations

import numpy as np

from rohydr.core.layout import ALL_PATTERNS, mr_protocol

# One modality order everywhere in the project: text (l), audio (a), vision (v).
MODALITIES = ("l", "a", "v")
MODALITY_KEYS = {"l": "text", "a": "audio", "v": "vision"}
FEATURE_KEYS = tuple(MODALITY_KEYS[m] for m in MODALITIES)  # the feature arrays of a split, in modality order
SPLITS = ("train", "valid", "test")

# The availability patterns, named by the modalities they keep; as (l, a, v) availability.
PATTERN_NAMES = ("l", "a", "v", "la", "lv", "av", "complete")
PATTERNS: dict[str, tuple[bool, bool, bool]] = {
    name: tuple(m in name or name == "complete" for m in MODALITIES) for name in PATTERN_NAMES}
MISSING_PATTERNS = ("l", "a", "v", "la", "lv", "av")
# A pattern's code: 4 * l + 2 * a + 1 * v over availability, 1..7; 7 = complete.
PATTERN_BITS = (4, 2, 1)
COMPLETE_CODE = 7


def pattern_codes(avail: np.ndarray) -> np.ndarray:
    """(N, 3) availability -> (N,) pattern codes."""
    return np.asarray(avail, dtype=bool).astype(np.int64) @ np.array(PATTERN_BITS)


# nominal missing rate -> (fraction of samples missing two modalities, fraction missing one); IMDer's protocol.
MR_FRACTIONS = {0.1: (0.1, 0.1), 0.2: (0.2, 0.2), 0.3: (0.3, 0.3), 0.4: (0.5, 0.2), 0.5: (0.7, 0.1),
                0.6: (0.9, 0.0), 0.7: (1.0, 0.0)}

# Evaluation conditions (rohydr.data.masks draws them): the seven patterns, the missing rates, the
# reference's per-batch draw and the all-pattern validation condition.
MR_CONDITIONS = tuple(mr_protocol(mr) for mr in MR_FRACTIONS)  # named as the protocols trained at them
BATCH_MR = 0.7
BATCH_SIZE = 32  # the reference's MOSI batch size
BATCH_CONDITION = f"batch_mr{BATCH_MR:.1f}"
ALL_PATTERNS_CONDITION = ALL_PATTERNS
# appended conditions keep the random streams of the earlier ones (masks.condition_rng indexes this tuple)
CONDITIONS = (*PATTERNS, *MR_CONDITIONS, BATCH_CONDITION, ALL_PATTERNS_CONDITION)
# condition -> nominal missing rate (absent for the fixed patterns)
NOMINAL_MR = {**dict(zip(MR_CONDITIONS, MR_FRACTIONS)), BATCH_CONDITION: BATCH_MR}

# The model's parameter groups, in model order (RoHyDR.parameter_groups).
GROUPS = ("extractor", "diffusion", "unimodal_reconstructor", "fusion", "multimodal_reconstructor",
          "discriminator", "head")

# Columns of a training run's train_log.csv; CONVERGED (last row) is also a metric of eval.csv.
# GENERATOR_STEPS: the optimizer steps of the epoch that had a generator loss (the budget sweep's axis).
CONVERGED = "converged"
GENERATOR_STEPS = "generator_steps"
GRAD_STAGES = ("stage1", "stage2", "stage3", "joint")
LOSS_COLUMNS = ["stage1_loss", "stage1_diffusion", "stage1_reconstruction", "disc_loss", "stage2_loss",
                "stage2_adversarial", "stage2_l1", "stage3_loss", "joint_loss"]
VALID_COLUMNS = ["val_l1", "val_acc2", "val_f1", "val_recon_mse", "val_fusion_l1", "val_generator_diffusion",
                 "val_generator_reconstruction"]
TRAIN_LOG_COLUMNS = (["epoch", "phase", "wall_s", "lr", GENERATOR_STEPS] + LOSS_COLUMNS
                     + [f"gradnorm_{stage}_{group}" for stage in GRAD_STAGES for group in GROUPS] + VALID_COLUMNS
                     + [CONVERGED])
PRETRAIN_LOG_COLUMNS = ["epoch", "phase", "wall_s", "lr", "train_l1", "val_l1", "val_acc2", "val_f1", CONVERGED]
# eval.csv rows of a model's training (condition TRAINING_CONDITION): converged (1: stopped by its early-stopping
# criterion in every training it went through, 0: at least one reached max_epochs still improving) and the
# epochs it trained (summed over those trainings).
TRAINING_CONDITION = "training"
TRAINING_METRICS = (CONVERGED, "epochs")

"""The losses of RoHyDR's three optimization stages (docs/method.md), pure functions of a forward Output.

Stage 2 and the discriminator loss only concern rows with something missing; on a batch without such
rows they return a zero that can still be back-propagated (it reaches no parameter).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rohydr.models.rohydr import Output, Recovery


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), device=like.device, requires_grad=True)


def stage1_loss(out: Output, lambda_g: float) -> torch.Tensor:
    """Unimodal recovery: (diffusion loss + lambda_g * reconstruction loss) / (1 + lambda_g)."""
    return recovery_loss(out.recovery, lambda_g)


def recovery_loss(recovery: Recovery, lambda_g: float) -> torch.Tensor:
    return (recovery.diffusion_loss + lambda_g * recovery.reconstruction_loss) / (1 + lambda_g)


def discriminator_loss(model, out: Output) -> torch.Tensor:
    """0.1 * (BCE(D(f_gt), real) + BCE(D(f_rec), fake)) on detached fused vectors of the incomplete rows.

    Real and fake rows go through D separately, as in the reference (its BatchNorm sees one kind at a time).
    """
    rows = out.recovery.missing_index
    if rows.numel() == 0:
        return _zero(out.f_gt)
    real = model.discriminator(out.f_gt[rows].detach())
    fake = model.discriminator(out.f_rec[rows].detach())
    real_loss = F.binary_cross_entropy_with_logits(real.float(), torch.ones_like(real, dtype=torch.float32))
    fake_loss = F.binary_cross_entropy_with_logits(fake.float(), torch.zeros_like(fake, dtype=torch.float32))
    return 0.1 * (real_loss + fake_loss)


def stage2_generator_loss(model, out: Output, lambda_al: float,
                          adversarial: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multimodal reconstruction on the incomplete rows, MR(f_rec) = out.f_rec_mr:
    lambda_al * BCE(D(MR(f_rec)), real) + (1 - lambda_al) * L1(MR(f_rec), f_gt); L1 alone without adversary.

    Returns (loss, parts) with parts "l1" and, when adversarial, "adversarial". As in the reference, f_gt
    is not detached (the L1 also trains the ground-truth branch's fusion).
    """
    rows = out.recovery.missing_index
    if rows.numel() == 0:
        zero = _zero(out.f_gt)
        parts = {"l1": zero.detach()}
        if adversarial:
            parts["adversarial"] = zero.detach()
        return zero, parts
    reconstructed = out.f_rec_mr[rows]
    l1 = F.l1_loss(reconstructed.float(), out.f_gt[rows].float())
    if not adversarial:
        return l1, {"l1": l1}
    logits = model.discriminator(reconstructed)
    fooled = F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))
    return lambda_al * fooled + (1 - lambda_al) * l1, {"adversarial": fooled, "l1": l1}


def stage3_loss(out: Output, labels: torch.Tensor, lambda_c: float) -> torch.Tensor:
    """Emotion: (1 - lambda_c) * L1(y_gt, y) + lambda_c * L1(y_rec, y)."""
    labels = labels.reshape(-1).float()
    return ((1 - lambda_c) * F.l1_loss(out.y_gt.float(), labels)
            + lambda_c * F.l1_loss(out.y_rec.float(), labels))

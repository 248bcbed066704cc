"""The generators of unimodal recovery, behind one interface: RoHyDR's conditional DiT (DDPM training,
DDIM sampling) and the score-based ScoreNet of IMDer and RoHyDR's code (VE-SDE; Euler-Maruyama or
predictor-corrector sampling).

A generator holds the per-modality networks (the model's `diffusion` modules, whose parameters and
checkpoint keys stay the model's) and knows the call a sampling chain repeats (`denoisers`, which
`compile` swaps for compiled ones), its sampler steps in training and evaluation, and how one call on a
group of rows gives the sample and, given the target, the per-row training loss.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from rohydr.core.config import ModelConfig
from rohydr.core.vocabulary import MODALITIES
from rohydr.models.dit import DiT1d
from rohydr.models.noise_schedule import NoiseSchedule
from rohydr.models.score_sde import ScoreNet1d, VESDE, sample as sde_sample, score_matching_loss


class Generator:
    """One conditional generator per modality; `sample_and_loss` is its one forward path."""

    def __init__(self, config: ModelConfig, seq_len: int):
        self.config = config
        self.networks = nn.ModuleDict({m: self.network(seq_len) for m in MODALITIES})
        self.denoisers = {m: self.denoiser(network) for m, network in self.networks.items()}
        # the losses' calls under grad keep only their inputs for backward (recomputed_in_backward)
        self.loss_denoisers = {m: recomputed_in_backward(denoiser) for m, denoiser in self.denoisers.items()}

    def network(self, seq_len: int) -> nn.Module:
        """One modality's network."""
        raise NotImplementedError

    def denoiser(self, network: nn.Module) -> Callable:
        """The call a sampling chain repeats."""
        return network

    def sampler_steps(self, training: bool) -> int:
        raise NotImplementedError

    def sample_and_loss(self, m: str, cond: torch.Tensor, start: torch.Tensor, target: torch.Tensor | None,
                        generator: torch.Generator | None, steps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sample (n, T, d) from `start`, per-row loss (n,) when a target is given, else None)."""
        raise NotImplementedError

    def compile(self, **options) -> None:
        """Run the repeated calls through torch.compile, for any number of rows. On CUDA it fuses the many small
        kernels of a call; on a CPU it measured no gain."""
        # A compiled backward "donates" its saved buffers (frees them as it runs) unless told not to; the shared
        # forward differentiates one graph once per stage (retain_graph=True), which donation forbids.
        import torch._functorch.config as functorch_config

        functorch_config.donated_buffer = False
        self.denoisers = {m: rows_dynamic(torch.compile(self.denoiser(self.networks[m]), dynamic=None, **options))
                          for m in MODALITIES}
        # compiled, a call plans what its backward keeps and recomputes itself; activation checkpointing around it
        # fails when a recompilation between the forward and the recomputation saves other tensors
        self.loss_denoisers = self.denoisers


class DiTGenerator(Generator):
    """RoHyDR's generator: a DiT predicting the noise, trained on DDPM's loss and sampled with DDIM on the
    schedule it was trained on."""

    def __init__(self, config: ModelConfig, seq_len: int, schedule: NoiseSchedule,
                 clip_x0: Callable[[str], float | torch.Tensor | None]):
        super().__init__(config, seq_len)
        self.schedule, self.clip_x0 = schedule, clip_x0

    def network(self, seq_len: int) -> nn.Module:
        dit = self.config.dit
        return DiT1d(self.config.d, seq_len, dit.hidden, dit.depth, dit.heads, dit.mlp_ratio)

    def denoiser(self, network: nn.Module) -> Callable:
        return network.denoise  # on an embedded condition: the embedding is computed once per chain

    def sampler_steps(self, training: bool) -> int:
        steps = self.config.diffusion
        return steps.train_sampler_steps if training else steps.sampler_steps

    def sample_and_loss(self, m, cond, start, target, generator, steps):
        cond_embedding = self.networks[m].embed_condition(cond)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.grad_through_sampler):
            sample = self.schedule.ddim_sample(self.denoisers[m], cond_embedding, start, steps, self.clip_x0(m))
        if target is None:
            return sample, None
        return sample, self.schedule.ddpm_loss(self.loss_denoisers[m], target, cond_embedding, generator,
                                               reduction="none")


class ScoreSDEGenerator(Generator):
    """IMDer's generator: a U-Net ScoreNet with cross-attention to the condition, trained by denoising score
    matching under the VE-SDE and sampled by Euler-Maruyama (or predictor-corrector)."""

    def __init__(self, config: ModelConfig, seq_len: int, sde: VESDE):
        self.sde = sde
        super().__init__(config, seq_len)

    def network(self, seq_len: int) -> nn.Module:
        score = self.config.score
        return ScoreNet1d(self.config.d, self.sde, tuple(score.channels), score.embed_dim, score.heads,
                          score.attention_layers)

    def sampler_steps(self, training: bool) -> int:
        steps = self.config.score
        return steps.train_sampler_steps if training else steps.sampler_steps

    def sample_and_loss(self, m, cond, start, target, generator, steps):
        score = self.config.score
        sample = sde_sample(self.denoisers[m], self.sde, cond, start, steps, score.sampler, score.snr)
        if target is None:
            return sample, None
        return sample, score_matching_loss(self.loss_denoisers[m], self.sde, target, cond, generator)


def make_generator(config: ModelConfig, seq_len: int, schedule: NoiseSchedule, sde: VESDE,
                   clip_x0: Callable[[str], float | torch.Tensor | None]) -> Generator:
    """The configured generator (`model.generator`), its networks initialised now."""
    if config.generator == "score_sde":
        return ScoreSDEGenerator(config, seq_len, sde)
    return DiTGenerator(config, seq_len, schedule, clip_x0)


def rows_dynamic(compiled):
    """A compiled call whose inputs' row count is symbolic from the first call: one compilation serves every
    group of rows a batch splits into (dynamic=None alone compiles the first size static, then recompiles).
    The sequence length stays static: dynamic=True makes it symbolic too, which the ScoreNet's padding to a
    multiple of its strides cannot be compiled with."""
    def call(*args):
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.dim() > 0:
                torch._dynamo.maybe_mark_dynamic(arg, 0)
        return compiled(*args)

    return call


def recomputed_in_backward(fn):
    """fn, keeping only its inputs for backward and running it again there (activation checkpointing).

    For the generators' one-off calls under grad (the DiT's loss evaluation, the unimodal
    reconstructor): their activations are a large share of what a training batch keeps, and running them
    again costs a few percent of the step. Both are free of randomness, so the recomputation is exact.
    """
    def run(*args):
        if not torch.is_grad_enabled():
            return fn(*args)
        return checkpoint(fn, *args, use_reentrant=False)
    return run

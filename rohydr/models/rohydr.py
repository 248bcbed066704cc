"""RoHyDR: feature extractor, unimodal recovery (conditional DiT + DDIM, then the unimodal
reconstructor), MulT fusion, multimodal reconstructor, discriminator and emotion head.

A batch may mix availability patterns row by row. Recovery groups the rows by what is missing: each
generator (DiT chain + reconstructor of modality m) runs ONCE per batch, on every row where m is
missing, each row conditioned on its own available modalities (one modality as is, two mixed by their
pair's mixer). Every component treats rows independently, so a row's output does not depend on the
other rows of its batch (in eval mode, given its start noise).

Loss averaging. The reference draws one pattern per batch and sums, over the missing modalities, each
modality's loss averaged over the batch. With patterns per row we sum every (row, missing modality)
per-row loss and divide by the number of rows with something missing. For a one-pattern batch this is
exactly the reference's value; complete rows in a mixed batch do not dilute the stage-1 gradient.
The losses' targets (true extracted features) are detached, so an unfrozen extractor learns from the
recovery losses only through the condition, not by moving its targets.

The ground-truth and the recovered branch share one fusion call: the true features of all rows and the
recovered features of the rows with something missing are fused together. A complete row's recovered
branch IS its ground-truth branch (same tensor, hence in train mode the same dropout draw, where the
reference ran a second, independently dropped pass).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rohydr.core.config import ModelConfig
from rohydr.core.runtime import random_normal
from rohydr.core.vocabulary import COMPLETE_CODE, GROUPS, MODALITIES, PATTERN_BITS, pattern_codes
from rohydr.models.condition_mixer import condition, make_mixers
from rohydr.models.discriminator import Discriminator
from rohydr.models.emotion_head import EmotionHead
from rohydr.models.feature_extractor import Feats, FeatureExtractor
from rohydr.models.feature_statistics import FeatureStatistics
from rohydr.models.fusion import FusionNetwork
from rohydr.models.generators import make_generator, recomputed_in_backward
from rohydr.models.imputation import RidgeFill
from rohydr.models.multimodal_reconstructor import MultimodalReconstructor
from rohydr.models.noise_schedule import NoiseSchedule
from rohydr.models.score_sde import VESDE
from rohydr.models.unimodal_reconstructor import UnimodalReconstructor



@dataclass
class Recovery:
    feats: Feats  # available modalities' true features, missing ones replaced by the recovered ones
    recovered: dict[str, tuple[torch.Tensor, torch.Tensor]]  # m -> (rows (n,), recovered (n, T, d))
    diffusion_loss: torch.Tensor  # scalar
    reconstruction_loss: torch.Tensor  # scalar
    missing_rows: torch.Tensor  # (B,) bool: something is missing in this row
    missing_index: torch.Tensor  # (n,) long: the rows where missing_rows is True


@dataclass
class Output:
    feats: Feats  # true extracted features, each (B, T, d)
    recovery: Recovery
    f_gt: torch.Tensor  # (B, 6d) fused true features
    f_rec: torch.Tensor  # (B, 6d) fused recovered features (= f_gt on complete rows)
    f_rec_mr: torch.Tensor  # (B, 6d) f_rec after the multimodal reconstructor on rows with something missing
    y_gt: torch.Tensor  # (B,)
    y_rec: torch.Tensor  # (B,)
    missing_rows: torch.Tensor  # (B,) bool


class RoHyDR(nn.Module):
    def __init__(self, config: ModelConfig, dims: tuple[int, int, int], length: int):
        super().__init__()
        self.config, self.dims, self.length = config, tuple(int(x) for x in dims), int(length)
        d = config.d
        self.seq_len = self.length - config.extractor_kernel + 1
        if self.seq_len < 1:
            raise ValueError(f"sequence length {length} is shorter than the extractor kernel {config.extractor_kernel}")
        fused_dim = 2 * len(MODALITIES) * d

        self.extractor = FeatureExtractor(self.dims, d, config.extractor_kernel, config.text_dropout)
        self.sde = VESDE(config.score.sigma)
        schedule = NoiseSchedule(config.diffusion.train_steps, config.diffusion.beta_start, config.diffusion.beta_end)
        self.recovery_generator = make_generator(config, self.seq_len, schedule, self.sde, self._clip_x0)
        self.diffusion = self.recovery_generator.networks  # per modality: the DiT or the ScoreNet
        self.mixers = make_mixers(d)
        self.unimodal_reconstructor = nn.ModuleDict({
            m: UnimodalReconstructor(d, config.ur_blocks, config.ur_reduction) for m in MODALITIES})
        self.fusion = FusionNetwork(
            d, config.heads, config.nlevels, max(config.nlevels, config.memory_min_layers),
            attn_dropout={"l": config.attn_dropout, "a": config.attn_dropout_a, "v": config.attn_dropout_v},
            relu_dropout=config.relu_dropout, res_dropout=config.res_dropout, embed_dropout=config.embed_dropout,
            causal=config.causal_attention)
        self.multimodal_reconstructor = MultimodalReconstructor(fused_dim, config.mr_hidden1, config.mr_hidden2,
                                                                config.mr_dropout)
        self.discriminator = Discriminator(fused_dim, config.disc_hidden1, config.disc_hidden2)
        self.head = EmotionHead(fused_dim, config.output_dropout)
        self.schedule = schedule
        self.statistics = FeatureStatistics(self.seq_len, d)  # of the training split; set by training
        self.ridge = RidgeFill(self.seq_len, d) if config.recovery == "ridge_fill" else None

    def compile_denoisers(self, **options) -> None:
        """torch.compile the calls the samplers repeat (Generator.compile)."""
        self.recovery_generator.compile(**options)

    # ----------------------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        modules = {
            "extractor": [self.extractor],
            "diffusion": [self.diffusion, self.mixers],
            "unimodal_reconstructor": [self.unimodal_reconstructor],
            "fusion": [self.fusion],
            "multimodal_reconstructor": [self.multimodal_reconstructor],
            "discriminator": [self.discriminator],
            "head": [self.head],
        }
        return {name: [p for module in modules[name] for p in module.parameters()] for name in GROUPS}

    def extract(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> Feats:
        for slot, x in enumerate((text, audio, vision)):
            expected = (self.length, self.dims[slot])
            if x.dim() != 3 or tuple(x.shape[1:]) != expected:
                raise ValueError(f"{MODALITIES[slot]} input has shape {tuple(x.shape)}; "
                                 f"expected (B, {expected[0]}, {expected[1]})")
        return self.extractor(text, audio, vision)

    def fuse(self, feats: Feats) -> torch.Tensor:
        return self.fusion(feats)

    def predict_head(self, fused: torch.Tensor) -> torch.Tensor:
        return self.head(fused)

    # ----------------------------------------------------------------------------------------------
    def recover(self, feats: Feats, avail: torch.Tensor, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None, with_losses: bool = True,
                sampler_steps: int | None = None) -> Recovery:
        """Recover every missing (row, modality) of the batch from the row's available modalities."""
        B, device = feats[0].shape[0], feats[0].device
        codes = self._pattern_codes(avail, B)  # (B,) on CPU: the one host sync of a batch
        self._check_noise(noise, B)
        incomplete = torch.nonzero(codes != COMPLETE_CODE).squeeze(1)
        missing_index = incomplete.to(device)
        missing_rows = torch.zeros(B, dtype=torch.bool, device=device).index_fill_(0, missing_index, True)
        zero = torch.zeros((), device=device)
        if incomplete.numel() == 0:
            return Recovery(feats, {}, zero, zero, missing_rows, missing_index)

        if self.config.recovery != "generative":
            recovered = self._impute(feats, codes, device)
            rec_feats = self._with_recovered(feats, recovered)
            return Recovery(rec_feats, recovered, zero, zero, missing_rows, missing_index)
        rows_by_m, conds_by_m = self._conditions(feats, codes, device)
        steps = sampler_steps or self.recovery_generator.sampler_steps(self.training)
        recovered, diffusion_sum, reconstruction_sum = {}, zero, zero
        for slot, m in enumerate(MODALITIES):
            if not rows_by_m[m]:
                continue
            rows = torch.cat(rows_by_m[m])
            start = noise[rows.to(noise.device), slot].to(device) if noise is not None else None
            target = self._to_generator(m, feats[slot][rows].detach()) if with_losses else None
            values, diffusion_rows, reconstruction_rows = self._generate(
                m, torch.cat(conds_by_m[m]), start, target, generator, steps)
            recovered[m] = (rows, self._from_generator(m, values))
            if diffusion_rows is not None:
                diffusion_sum = diffusion_sum + diffusion_rows.sum()
            if reconstruction_rows is not None:
                reconstruction_sum = reconstruction_sum + self._reconstruction_weight(m) * reconstruction_rows.sum()

        n = len(incomplete)
        rec_feats = self._with_recovered(feats, recovered)
        return Recovery(rec_feats, recovered, diffusion_sum / n, reconstruction_sum / n, missing_rows, missing_index)

    @staticmethod
    def _with_recovered(feats: Feats, recovered: dict) -> Feats:
        return tuple(feats[slot].index_put((recovered[m][0],), recovered[m][1].to(feats[slot].dtype))
                     if m in recovered else feats[slot] for slot, m in enumerate(MODALITIES))

    def _impute(self, feats: Feats, codes: torch.Tensor, device: torch.device) -> dict:
        """The imputation baselines' fill of every missing (row, modality): m -> (rows, values)."""
        parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in MODALITIES}
        for rows, present in pattern_groups(codes, device):
            available = {MODALITIES[slot]: feats[slot][rows] for slot in present}
            for slot, m in enumerate(MODALITIES):
                if m not in available:
                    parts[m].append((rows, self._fill(m, available, feats[slot][rows])))
        return {m: (torch.cat([r for r, _ in found]), torch.cat([v for _, v in found]))
                for m, found in parts.items() if found}

    def _fill(self, m: str, available: dict[str, torch.Tensor], true: torch.Tensor) -> torch.Tensor:
        """`true` gives only the shape and dtype of what is filled."""
        recovery = self.config.recovery
        if recovery == "zero_fill":
            return torch.zeros_like(true)
        if recovery == "mean_fill":
            return self.statistics.sequence_mean[MODALITIES.index(m)].to(true.dtype).expand_as(true)
        return self.ridge(available, m).to(true.dtype)

    def _to_generator(self, m: str, x: torch.Tensor) -> torch.Tensor:
        """Extracted features -> the generators' space (standardised per channel when configured)."""
        return self.statistics.standardize(m, x) if self.config.standardize_features else x

    def _from_generator(self, m: str, x: torch.Tensor) -> torch.Tensor:
        return self.statistics.destandardize(m, x) if self.config.standardize_features else x

    def _reconstruction_weight(self, m: str) -> torch.Tensor | float:
        if self.config.reconstruction_weighting == "none" or self.config.standardize_features:
            return 1.0
        return 1.0 / self.statistics.variance[MODALITIES.index(m)]

    def _pattern_codes(self, avail: torch.Tensor, batch: int) -> torch.Tensor:
        avail = torch.as_tensor(avail).detach().cpu()
        if avail.shape != (batch, len(MODALITIES)):
            raise ValueError(f"avail has shape {tuple(avail.shape)}; expected ({batch}, {len(MODALITIES)})")
        codes = torch.from_numpy(pattern_codes(avail.numpy()))
        if (codes == 0).any():
            rows = torch.nonzero(codes == 0).squeeze(1)[:5].tolist()
            raise ValueError(f"rows {rows} have no available modality; every row needs at least one")
        return codes

    def _check_noise(self, noise: torch.Tensor | None, batch: int) -> None:
        expected = (batch, len(MODALITIES), self.seq_len, self.config.d)
        if noise is not None and tuple(noise.shape) != expected:
            raise ValueError(f"noise has shape {tuple(noise.shape)}; expected {expected}")

    def _conditions(self, feats: Feats, codes: torch.Tensor, device: torch.device):
        """Per missing modality: the row indices and condition sequences of every pattern that lacks it."""
        rows_by_m: dict[str, list[torch.Tensor]] = {m: [] for m in MODALITIES}
        conds_by_m: dict[str, list[torch.Tensor | None]] = {m: [] for m in MODALITIES}
        for rows, present in pattern_groups(codes, device):
            cond = condition(self.mixers, {MODALITIES[slot]: self._to_generator(MODALITIES[slot], feats[slot][rows])
                                           for slot in present})
            for slot, m in enumerate(MODALITIES):
                if slot not in present:
                    rows_by_m[m].append(rows)
                    conds_by_m[m].append(cond)
        return rows_by_m, conds_by_m

    def _generate(self, m: str, cond: torch.Tensor, start: torch.Tensor | None, target: torch.Tensor | None,
                  generator: torch.Generator | None, steps: int):
        """Recovered sequences of modality m for the rows of `cond`, with per-row losses when a target is given."""
        cfg = self.config
        diffusion_rows = reconstruction_rows = None
        if cfg.use_diffusion:
            if start is None:
                start = random_normal(cond.shape, generator, cond.device)
            sample, diffusion_rows = self.recovery_generator.sample_and_loss(m, cond, start, target, generator, steps)
        else:
            sample = cond  # no diffusion: the reconstructor maps the condition itself
        if not cfg.use_unimodal_reconstructor:
            return sample, diffusion_rows, None
        values = recomputed_in_backward(self.unimodal_reconstructor[m])(sample)
        if target is not None:
            reconstruction_rows = F.mse_loss(values.float(), target.float(), reduction="none").flatten(1).mean(1)
        return values, diffusion_rows, reconstruction_rows

    def _clip_x0(self, m: str) -> float | torch.Tensor | None:
        clip = self.config.diffusion.clip_x0
        if clip != "data":
            return clip
        ranges = self.statistics.standardized_range if self.config.standardize_features else self.statistics.raw_range
        return ranges[MODALITIES.index(m)]

    @torch.no_grad()
    def extracted(self, features, batch_size: int = 256) -> Feats:
        """The extracted features (l, a, v), each (N, T, d), of (text, audio, vision) inputs, in eval mode."""
        was_training = self.training
        self.eval()
        batches = [self.extract(*(x[start:start + batch_size] for x in features))
                   for start in range(0, len(features[0]), batch_size)]
        self.train(was_training)
        return tuple(torch.cat(parts) for parts in zip(*batches))

    @torch.no_grad()
    def fit_feature_models(self, train_features, valid_features) -> dict[str, float]:
        """Measure the training split's feature statistics and, for ridge_fill, fit the regressions (the
        penalty chosen on the validation split); returns the ridge validation MSEs (empty otherwise)."""
        train_feats = self.extracted(train_features)
        self.statistics.measure(train_feats)
        if self.ridge is None:
            return {}
        return self.ridge.fit(train_feats, self.extracted(valid_features))

    # ----------------------------------------------------------------------------------------------
    def forward(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor, avail: torch.Tensor,
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                with_losses: bool = True, sampler_steps: int | None = None,
                fused_truth: torch.Tensor | None = None) -> Output:
        """`fused_truth`: the batch's f_gt when the caller already has it (evaluation fuses the true
        features once per sample, not once per availability pattern); only valid in eval mode."""
        if fused_truth is not None and self.training:
            raise ValueError("fused_truth is for evaluation: in training the true branch has its own dropout")
        feats = self.extract(text, audio, vision)
        recovery = self.recover(feats, avail, noise, generator, with_losses, sampler_steps)
        B, rows = feats[0].shape[0], recovery.missing_index
        if rows.numel() == 0:
            f_gt = self.fuse(feats) if fused_truth is None else fused_truth
            y_gt = self.predict_head(f_gt)
            return Output(feats, recovery, f_gt, f_gt, f_gt, y_gt, y_gt, recovery.missing_rows)

        if fused_truth is None:
            fused = self.fuse(tuple(torch.cat([true, rec[rows]]) for true, rec in zip(feats, recovery.feats)))
            f_gt, f_rec_missing = fused[:B], fused[B:]
        else:
            f_gt, f_rec_missing = fused_truth, self.fuse(tuple(rec[rows] for rec in recovery.feats))
        f_rec = f_gt.index_put((rows,), f_rec_missing)
        if self.config.use_multimodal_reconstructor:
            mr_missing = self.multimodal_reconstructor(f_rec_missing).to(f_rec.dtype)
            f_rec_mr = f_rec.index_put((rows,), mr_missing)
        else:
            mr_missing, f_rec_mr = f_rec_missing, f_rec
        y = self.predict_head(torch.cat([f_gt, mr_missing]))
        y_gt = y[:B]
        y_rec = y_gt.index_put((rows,), y[B:])
        return Output(feats, recovery, f_gt, f_rec, f_rec_mr, y_gt, y_rec, recovery.missing_rows)


def pattern_groups(codes: torch.Tensor, device: torch.device):
    """(rows on `device`, slots of the available modalities) of each incomplete pattern among `codes` (B,)."""
    for code in sorted(set(codes.tolist()) - {COMPLETE_CODE}):
        yield torch.nonzero(codes == code).squeeze(1).to(device), [s for s, bit in enumerate(PATTERN_BITS) if code & bit]

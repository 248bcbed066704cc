"""RoHyDR's multi-stage optimization (docs/method.md, "Optimisation"), from the pretrained checkpoint.

On every batch with a missing modality, in order: stage 1 (unimodal recovery: diffusion and
unimodal reconstructor), stage 2 (a discriminator step with its own optimizer, then the multimodal
reconstructor's adversarial + L1 step), stage 3 (the emotion loss of both branches, gradients clipped
by value). Complete batches run stage 3 alone. Two other schedules serve the ablations: `joint` (one
step on the summed losses) and `sequential` (each stage trained alone, one command per stage).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from rohydr.core.config import RunConfig, load_run_config
from rohydr.core.errors import RohydrError
from rohydr.core.io import sha256_file
from rohydr.core.layout import ALL_PATTERNS, mr_protocol
from rohydr.core.metrics import score
from rohydr.core.runtime import Runtime, derived_seed, seed_everything
from rohydr.core.vocabulary import (ALL_PATTERNS_CONDITION, GENERATOR_STEPS, GROUPS, MISSING_PATTERNS,
                                    TRAIN_LOG_COLUMNS)
from rohydr.data.dataset import FeatureStore
from rohydr.data.masks import draw_batch_mr_masks, draw_mr_masks, draw_pattern_masks, load_masks
from rohydr.models.checkpoint import build_model, check_data_matches, load_checkpoint, load_components, save_checkpoint
from rohydr.models.objectives import discriminator_loss, recovery_loss, stage1_loss, stage2_generator_loss, stage3_loss
from rohydr.models.predict import feature_shape, predict, split_noise
from rohydr.training.loop import EpochLoop, epoch_batches, progress_bar
from rohydr.training.pretrain import PRETRAINED_COMPONENTS

MAIN_GROUPS = tuple(g for g in GROUPS if g != "discriminator")  # stepped by the main optimizer
GENERATOR_GROUPS = ("diffusion", "unimodal_reconstructor")  # at train.generator_lr when it is set
# What each training command selects its best epoch by.
MONITOR = {"all": "val_l1", "1": "val_recon_mse", "2": "val_fusion_l1", "3": "val_l1"}
# the generator stage's criteria (see generator_validation)
GENERATOR_MONITORS = ("val_generator_diffusion", "val_generator_reconstruction")


class StageRunner:
    """Runs the optimization stages on one batch and accumulates what the log reports."""

    def __init__(self, model, run_config: RunConfig, runtime: Runtime, stage: str):
        self.model, self.cfg, self.runtime = model, run_config.train, runtime
        self.model_cfg = run_config.model
        self.stage = stage
        if self.cfg.freeze_extractor:
            model.extractor.requires_grad_(False)
        groups = model.parameter_groups()
        self.groups = {name: [p for p in groups[name] if p.requires_grad] for name in GROUPS}
        self.main_params = [p for name in MAIN_GROUPS for p in self.groups[name]]
        self.main = torch.optim.Adam(self._main_param_groups(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.disc = torch.optim.Adam(self.groups["discriminator"], lr=self.cfg.disc_lr,
                                     weight_decay=self.cfg.disc_weight_decay)
        generative = self.model_cfg.recovery == "generative"
        self.runs_stage1 = generative and bool(self.groups["diffusion"] or self.groups["unimodal_reconstructor"])
        self.runs_stage2 = self.model_cfg.use_multimodal_reconstructor
        self.runs_discriminator = self.runs_stage2 and self.model_cfg.use_adversarial
        self.reset()

    def _main_param_groups(self) -> list[dict]:
        """The generators at generator_lr when it is set, everything else at lr."""
        if self.cfg.generator_lr is None:
            return [{"params": self.main_params}]
        generators = [p for name in GENERATOR_GROUPS for p in self.groups[name]]
        rest = [p for name in MAIN_GROUPS if name not in GENERATOR_GROUPS for p in self.groups[name]]
        return [{"params": generators, "lr": self.cfg.generator_lr}, {"params": rest}]

    def reset(self) -> None:
        zero = lambda: torch.zeros((), device=self.runtime.device)  # noqa: E731
        self.sums: dict[str, torch.Tensor] = defaultdict(zero)
        self.counts: dict[str, int] = defaultdict(int)
        self.generator_steps = 0  # optimizer steps with a generator loss (stage 1's), this epoch

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] += value.detach().float()
        self.counts[key] += 1

    def _forward(self, batch, avail, with_losses: bool):
        (text, audio, vision), _ = batch
        with self.runtime.autocast():
            return self.model(text, audio, vision, avail, with_losses=with_losses)

    def _record_grad_norms(self, stage: str, names=GROUPS) -> None:
        for name in names:
            grads = [p.grad for p in self.groups[name] if p.grad is not None]
            if grads:
                self._add(f"gradnorm_{stage}_{name}", torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))

    def _step(self, loss: torch.Tensor, stage: str, clip: bool = False) -> None:
        self.main.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_value_(self.main_params, self.cfg.grad_clip)
        self._record_grad_norms(stage, MAIN_GROUPS)
        self.main.step()

    def _discriminator_step(self, out) -> None:
        loss = discriminator_loss(self.model, out)
        self.disc.zero_grad(set_to_none=True)
        loss.backward()
        self._record_grad_norms("stage2", ["discriminator"])
        self.disc.step()
        self._add("disc_loss", loss)

    def stages(self, has_missing: bool) -> list[str]:
        """The stages a batch trains under this command's --stage: 1 and 2 only where something is missing."""
        stages = [stage for stage, runs in (("stage1", self.runs_stage1), ("stage2", self.runs_stage2))
                  if has_missing and runs]
        return [stage for stage in [*stages, "stage3"] if self.stage in ("all", stage[-1])]

    def losses(self, out, labels: torch.Tensor, stages: list[str]) -> dict[str, torch.Tensor]:
        """Each stage's loss on one forward's output; stage 2 first steps the discriminator on it."""
        losses = {}
        if "stage1" in stages:
            losses["stage1"] = stage1_loss(out, self.cfg.lambda_g)
        if "stage2" in stages:
            if self.runs_discriminator:
                self._discriminator_step(out)
            losses["stage2"], parts = stage2_generator_loss(self.model, out, self.cfg.lambda_al,
                                                           self.model_cfg.use_adversarial)
            for name, value in parts.items():
                self._add(f"stage2_{name}", value)
        if "stage3" in stages:
            losses["stage3"] = stage3_loss(out, labels, self.cfg.lambda_c)
        return losses

    def _add_recovery_parts(self, recovery) -> None:
        """Stage 1's terms, once per optimizer step that had them."""
        self.generator_steps += 1
        self._add("stage1_diffusion", recovery.diffusion_loss)
        self._add("stage1_reconstruction", recovery.reconstruction_loss)

    def generator_step(self, batch, avail) -> None:
        """A step of the generator stage: stage 1 alone, without the fusion."""
        (text, audio, vision), _ = batch
        with self.runtime.autocast():
            recovery = self.model.recover(self.model.extract(text, audio, vision), avail, with_losses=True)
        loss = recovery_loss(recovery, self.cfg.lambda_g)
        self._step(loss, "stage1")
        self._add("stage1_loss", loss)
        self._add_recovery_parts(recovery)

    def one_stage(self, batch, avail, stage: str) -> None:
        """One stage on a forward of its own (the sequential schedule; the reference's order of passes)."""
        out = self._forward(batch, avail, with_losses=stage == "stage1")
        loss = self.losses(out, batch[1], [stage])[stage]
        self._step(loss, stage, clip=stage == "stage3")
        self._add(f"{stage}_loss", loss)
        if stage == "stage1":
            self._add_recovery_parts(out.recovery)

    def joint(self, batch, avail, stages: list[str]) -> None:
        """One step on the summed losses: emotion + recovery_weight x stage 1 + stage 2."""
        out = self._forward(batch, avail, with_losses="stage1" in stages)
        losses = self.losses(out, batch[1], stages)
        loss = losses["stage3"]
        if "stage1" in losses:
            loss = loss + self.cfg.recovery_weight * losses["stage1"]
        if "stage2" in losses:
            loss = loss + losses["stage2"]
        self._step(loss, "joint", clip=True)
        self._add("joint_loss", loss)
        if "stage1" in losses:
            self._add_recovery_parts(out.recovery)

    def shared_forward(self, batch, avail, stages: list[str]) -> None:
        """The three stages from ONE forward: each stage's gradient is taken on the same graph (at the
        batch's starting weights), then applied as its own optimizer step, in stage order."""
        out = self._forward(batch, avail, with_losses="stage1" in stages)
        losses = self.losses(out, batch[1], stages)
        grads = {stage: torch.autograd.grad(loss, self.main_params, retain_graph=stage != "stage3", allow_unused=True)
                 for stage, loss in losses.items()}
        for stage, stage_grads in grads.items():
            self.main.zero_grad(set_to_none=True)
            for p, g in zip(self.main_params, stage_grads):
                p.grad = g
            if stage == "stage3":
                torch.nn.utils.clip_grad_value_(self.main_params, self.cfg.grad_clip)
            self._record_grad_norms(stage, MAIN_GROUPS)
            self.main.step()
            self._add(f"{stage}_loss", losses[stage])
        if "stage1" in losses:
            self._add_recovery_parts(out.recovery)

    def batch(self, batch, avail: torch.Tensor, has_missing: bool) -> None:
        stages = self.stages(has_missing)
        if self.cfg.schedule == "joint":
            return self.joint(batch, avail, stages)
        if self.cfg.reuse_forward and self.stage == "all":
            return self.shared_forward(batch, avail, stages)
        for stage in stages:
            self.one_stage(batch, avail, stage)

    def epoch_means(self) -> dict:
        means = {key: float(total) / self.counts[key] for key, total in self.sums.items()}
        return {GENERATOR_STEPS: self.generator_steps, **means}


def training_masks(cfg, n: int, rng: np.random.Generator, order: torch.Tensor) -> np.ndarray:
    """Availability (n, 3) for this epoch, indexed by sample; the per-batch draw follows the batch order."""
    if cfg.missing_draw == "per_batch":
        by_position = draw_batch_mr_masks(n, cfg.batch_size, cfg.train_mr, rng)
    elif cfg.missing_draw == ALL_PATTERNS:
        by_position = draw_pattern_masks(n, cfg.pattern_weights, rng)
    else:
        by_position = draw_mr_masks(n, cfg.train_mr, rng)
    avail = np.empty((n, 3), dtype=bool)
    avail[order.numpy()] = by_position
    return avail


def generator_stage_masks(n: int, rng: np.random.Generator) -> np.ndarray:
    """The generator stage's draw: every row misses something, the six missing patterns in equal shares, so
    that every modality is a target under every subset of the others (the training split is complete)."""
    return draw_pattern_masks(n, dict.fromkeys(MISSING_PATTERNS, 1.0), rng)


@torch.no_grad()
def generator_validation(model, split, avail: np.ndarray, seed: int, cfg, runtime: Runtime) -> dict:
    """The generators' own losses (stage 1's diffusion and reconstruction terms) on the validation split,
    with fixed noise: the generator stage's early-stopping criteria. A sampler's distance to the truth
    would reward collapse to the mean."""
    model.eval()
    generator = torch.Generator().manual_seed(derived_seed(seed, "generator-validation"))
    totals, batch_size = np.zeros(2), cfg.batch_size * 4
    for start in range(0, len(split), batch_size):
        index = torch.arange(start, min(start + batch_size, len(split)))
        (text, audio, vision), _ = split.batch(index.to(runtime.device))
        with runtime.autocast():
            recovery = model.recover(model.extract(text, audio, vision), torch.from_numpy(avail[index.numpy()]),
                                     generator=generator, with_losses=True)
        totals += np.array([float(recovery.diffusion_loss), float(recovery.reconstruction_loss)]) * len(index)
    return dict(zip(GENERATOR_MONITORS, (totals / len(split)).tolist()))


def validation_condition(cfg) -> str:
    """The saved validation masks that select the model: those of its training protocol."""
    return ALL_PATTERNS_CONDITION if cfg.missing_draw == ALL_PATTERNS else mr_protocol(cfg.train_mr)


def validation_scores(model, split, avail, seed, noise, batch_size, runtime: Runtime) -> dict:
    predictions = predict(model, split, avail, seed, batch_size, runtime, noise=noise)
    metrics = score(predictions.y_rec, split.labels.cpu().numpy())
    missing = ~avail
    return {
        "val_l1": float(metrics["mae"]), "val_acc2": metrics["acc2_non0"], "val_f1": metrics["f1_non0"],
        "val_recon_mse": float(np.nanmean(predictions.rec_mse[missing])) if missing.any() else float("nan"),
        "val_fusion_l1": float(np.nanmean(predictions.fusion_l1)) if missing.any() else float("nan"),
    }


def start_from(model, path: str, dims, length) -> list[dict]:
    """Load the pretrained backbone, or for a sequential stage every weight of the previous stage; returns
    the convergence records of the trainings that made that checkpoint (the pretraining's is not carried:
    the backbone is reported as a run of its own)."""
    payload = load_checkpoint(path)
    check_data_matches(payload, dims, length, path)
    if payload["kind"] == "pretrain":
        load_components(model, payload["state_dict"], PRETRAINED_COMPONENTS, path)
        return []
    if payload["kind"] == "train":
        load_components(model, payload["state_dict"], list(GROUPS), path)
        return list(payload.get("convergence", []))
    raise RohydrError(f"checkpoint {path}: kind {payload['kind']!r} cannot start a training run")


def train(data: str, run_config_path: str, pretrained: str, masks: str, seed: int, out: str, log: str,
          runtime: Runtime, stage: str = "all", progress: bool = True) -> dict:
    run_config = load_run_config(run_config_path)
    cfg = run_config.train
    if (stage != "all") != (cfg.schedule == "sequential"):
        raise RohydrError(f"--stage {stage} does not fit schedule {cfg.schedule!r} of {run_config_path}: "
                          "the sequential schedule trains stages 1, 2, 3 one command each; the others use --stage all")
    seed_everything(seed, "init")
    with FeatureStore(data) as store:
        train_split = store.split("train").to(runtime.device)
        valid_split = store.split("valid").to(runtime.device)
        dims, length = store.dims, store.length
    data_sha256 = sha256_file(data)
    valid_avail = load_masks(masks, "valid", (data, data_sha256, len(valid_split)))[validation_condition(cfg)]

    model = build_model(run_config, dims, length).to(runtime.device)
    earlier_trainings = start_from(model, pretrained, dims, length)
    for regression, mse in model.fit_feature_models(train_split.features(), valid_split.features()).items():
        print(f"ridge_fill {regression}: validation MSE {mse:.4f}", flush=True)
    if runtime.compile:
        model.compile_denoisers()
    valid_noise = split_noise(seed, valid_avail, feature_shape(model))  # the same every epoch
    runner = StageRunner(model, run_config, runtime, stage)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        runner.main, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)

    def epoch_masks(epoch: int, draw):
        rng = np.random.default_rng(derived_seed(seed, "train-epoch", epoch))
        batches = epoch_batches(len(train_split), cfg.batch_size, rng)
        avail = draw(len(train_split), rng, torch.cat(batches))
        return batches, avail, torch.from_numpy(avail).to(runtime.device)

    def train_epoch(epoch: int) -> dict:
        batches, avail, avail_t = epoch_masks(epoch, lambda n, rng, order: training_masks(cfg, n, rng, order))
        has_missing = ~avail.all(axis=1)
        runner.reset()
        for index in progress_bar(batches, progress, desc=f"epoch {epoch}", leave=False):
            on_device = index.to(runtime.device)
            runner.batch(train_split.batch(on_device), avail_t[on_device], bool(has_missing[index.numpy()].any()))
        return runner.epoch_means()

    def generator_epoch(epoch: int) -> dict:
        batches, _, avail_t = epoch_masks(epoch, lambda n, rng, order: generator_stage_masks(n, rng))
        runner.reset()
        for index in progress_bar(batches, progress, desc=f"generator epoch {epoch}", leave=False):
            on_device = index.to(runtime.device)
            runner.generator_step(train_split.batch(on_device), avail_t[on_device])
        return runner.epoch_means()

    stage_valid_avail = generator_stage_masks(len(valid_split), np.random.default_rng(derived_seed(seed, "gen-val")))
    max_epochs = cfg.sequential_epochs if (stage != "all" and cfg.sequential_epochs) else cfg.max_epochs
    loop = EpochLoop(
        model=model, optimizers={"main": runner.main, "disc": runner.disc}, scheduler=scheduler,
        train_epoch=train_epoch,
        validate=lambda: validation_scores(model, valid_split, valid_avail, seed, valid_noise, cfg.batch_size * 4,
                                           runtime),
        monitor=MONITOR[stage], max_epochs=max_epochs, early_stop=cfg.early_stop, seed=seed,
        stage_epochs=cfg.generator_epochs if runner.runs_stage1 and stage in ("all", "1") else 0,
        stage_early_stop=cfg.generator_early_stop, stage_epoch=generator_epoch,
        stage_validate=lambda: generator_validation(model, valid_split, stage_valid_avail, seed, cfg, runtime),
        stage_monitors=GENERATOR_MONITORS,
        log_path=Path(log), columns=TRAIN_LOG_COLUMNS, progress=progress,
        fingerprint={"stage": stage, "run_config": run_config.to_dict(), "data": data_sha256,
                     "pretrained": sha256_file(pretrained), "masks": sha256_file(masks), "seed": seed},
    )
    best_weights, best_row = loop.run()
    save_checkpoint(out, {
        "kind": "train", "run_config": run_config.to_dict(), "dims": list(dims), "length": length,
        "state_dict": best_weights, "seed": seed, "stage": stage, "best": best_row,
        "convergence": earlier_trainings + [loop.convergence],
    })
    loop.finish()
    return best_row

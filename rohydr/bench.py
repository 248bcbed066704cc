"""`rohydr bench`: training throughput per stage and per epoch, evaluation throughput over every
condition, and peak memory, for one preset and run configuration. A benchmark, not a test.

Peak memory is the process's (CPU: maximum resident set size; CUDA: maximum allocated), so compare
settings in separate invocations.
"""
from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rohydr.core.config import build_run_config
from rohydr.core.runtime import Runtime, keep_freed_memory, peak_memory_mb, seed_everything
from rohydr.core.vocabulary import BATCH_MR, CONDITIONS, PATTERNS
from rohydr.data.dataset import FeatureStore
from rohydr.data.masks import draw_batch_mr_masks, draw_mr_masks
from rohydr.evaluation.evaluate import EVAL_BATCH, iter_pattern_predictions
from rohydr.kernels.cpu import stock_kernels
from rohydr.models.checkpoint import build_model
from rohydr.models.predict import feature_shape, split_noise
from rohydr.training.train import StageRunner

MOSI_SIZES = (1284, 229, 686)


def synthetic_features(folder: Path) -> Path:
    """A MOSI-sized synthetic dataset (dims 768/5/20, length 50) converted to HDF5 in `folder`."""
    from rohydr.data.convert import convert
    from rohydr.data.synthetic import make_synthetic, write_pickle

    pickle_path, h5_path = folder / "bench.pkl", folder / "bench.h5"
    write_pickle(make_synthetic(like="mosi", seed=0, sizes=MOSI_SIZES, length=50), pickle_path)
    convert(pickle_path, h5_path)
    return h5_path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn, *args, **kwargs) -> float:
    """Wall seconds of fn(*args, **kwargs), with the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    fn(*args, **kwargs)
    _sync(device)
    return time.perf_counter() - start


# Warm-up: CUDA's first batch pays for kernel selection; a compiled model compiles each new shape (the rows
# of each missing pattern vary per batch) until it compiles them as dynamic. Batches are run untimed until one
# takes no more than WARM_RATIO x the fastest before it, WARMUP_LIMIT at most.
WARM_RATIO, WARMUP_LIMIT = 1.25, 10


def time_training(runner: StageRunner, split, batches: int, device: torch.device, compiled: bool = False) -> dict:
    """Seconds per batch of each stage at the training MR, averaged over `batches` batches after the warm-up;
    also "warmup_batches", how many ran untimed."""
    cfg = runner.cfg
    rng = np.random.default_rng(0)
    avail = torch.from_numpy(draw_mr_masks(len(split), cfg.train_mr, rng)).to(device)
    order = torch.from_numpy(rng.permutation(len(split)))
    every = runner.stages(has_missing=True)
    if cfg.schedule == "joint":
        steps = {"joint": lambda batch, batch_avail: runner.joint(batch, batch_avail, every)}
    elif cfg.reuse_forward:  # the three stages from one forward: not separable in time
        steps = {"shared_forward": lambda batch, batch_avail: runner.shared_forward(batch, batch_avail, every)}
    else:
        steps = {stage: functools.partial(runner.one_stage, stage=stage) for stage in every}
    stages = list(steps)
    runner.model.train()

    def run_batch(b: int) -> dict[str, float]:
        index = order[(b * cfg.batch_size) % len(split):][:cfg.batch_size].to(device)
        batch, batch_avail = split.batch(index), avail[index]
        return {stage: timed(device, step, batch, batch_avail) for stage, step in steps.items()}

    warmup, fastest = 0, math.inf
    while (compiled or device.type == "cuda") and warmup < WARMUP_LIMIT:
        elapsed = sum(run_batch(warmup).values())
        warmup += 1
        if not compiled or (warmup > 1 and elapsed <= WARM_RATIO * fastest):
            break
        fastest = min(fastest, elapsed)
    seconds = {stage: 0.0 for stage in stages}
    for b in range(warmup, warmup + batches):
        for stage, elapsed in run_batch(b).items():
            seconds[stage] += elapsed
    return {**{stage: total / batches for stage, total in seconds.items()}, "warmup_batches": warmup}


BERT_BASE = {"vocab": 30522, "width": 768, "layers": 12, "heads": 12, "ffn": 3072}


def bert_base_sized_encoder() -> nn.Module:
    """An encoder of BERT-base's size (12 post-norm layers of width 768, 12 heads, FFN 3072, GELU),
    random weights: the text encoder the reference runs in every forward (its use_bert path
    re-encodes the token ids of each batch). Only its cost counts here, so no weights are loaded; it
    costs what Hugging Face's BertModel costs (README, "Performance")."""
    layer = nn.TransformerEncoderLayer(BERT_BASE["width"], BERT_BASE["heads"], BERT_BASE["ffn"],
                                       activation="gelu", batch_first=True)
    encoder = nn.TransformerEncoder(layer, BERT_BASE["layers"], enable_nested_tensor=False)
    return nn.Sequential(nn.Embedding(BERT_BASE["vocab"], BERT_BASE["width"]), encoder).eval()


class ReferenceEvaluation:
    """The reference's one evaluation with its computation reproduced: MR 0.7 drawn per batch of
    `batch_size` in split order (at MR 0.7 every batch keeps one modality and recovers two), the text
    re-encoded in every batch (`text_encoder`: bert_base_sized_encoder), and the full forward with its
    losses (the reference computes the diffusion loss and the reconstructor's MSE when testing too)."""

    def __init__(self, model, split, batch_size: int, runtime: Runtime, text_encoder: nn.Module):
        self.model, self.split, self.runtime, self.text_encoder = model, split, runtime, text_encoder
        self.device = runtime.device
        self.avail = torch.from_numpy(draw_batch_mr_masks(len(split), batch_size, BATCH_MR,
                                                          np.random.default_rng(0)))
        self.noise = split_noise(0, self.avail.numpy(), feature_shape(model))
        self.token_ids = torch.randint(0, BERT_BASE["vocab"], (len(split), model.length),
                                       generator=torch.Generator().manual_seed(0))
        self.batches = [torch.arange(start, min(start + batch_size, len(split)))
                        for start in range(0, len(split), batch_size)]

    @torch.no_grad()
    def time_batches(self, batches: list[torch.Tensor], stock: bool) -> tuple[float, float]:
        """(seconds, of which the text encoder's) for these batches; `stock`: on PyTorch's own
        kernels, as the reference runs, else on this project's."""
        self.model.eval()
        encoder_seconds = model_seconds = 0.0
        with stock_kernels() if stock else contextlib.nullcontext():
            for index in batches:
                encoder_seconds += timed(self.device, self.text_encoder, self.token_ids[index].to(self.device))
                (text, audio, vision), _ = self.split.batch(index)
                with self.runtime.autocast():
                    model_seconds += timed(self.device, self.model, text.to(self.device), audio.to(self.device),
                                           vision.to(self.device), self.avail[index].to(self.device),
                                           noise=self.noise[index].to(self.device), with_losses=True)
        return model_seconds + encoder_seconds, encoder_seconds


def time_evaluations(model, split, batch_size: int, runtime: Runtime) -> dict[str, float]:
    """Seconds for every condition (one pass per availability pattern, as `rohydr evaluate`) and for
    the reference's one evaluation, on stock kernels and on this project's. The three alternate in
    seven rounds (a pattern pass, then a seventh of the reference's batches each way), so that a
    change in the machine's speed during the run weighs on all three alike."""
    device = runtime.device
    reference = ReferenceEvaluation(model, split, batch_size, runtime, bert_base_sized_encoder().to(device))
    rounds = np.array_split(np.arange(len(reference.batches)), len(PATTERNS))
    seconds = dict.fromkeys(("eval", "reference", "reference_text_encoder", "reference_same_kernels"), 0.0)
    passes = iter_pattern_predictions(model, split, 0, runtime, list(PATTERNS))
    for round_batches in rounds:
        seconds["eval"] += timed(device, next, passes)
        batches = [reference.batches[i] for i in round_batches]
        total, encoder = reference.time_batches(batches, stock=True)
        seconds["reference"] += total
        seconds["reference_text_encoder"] += encoder
        seconds["reference_same_kernels"] += reference.time_batches(batches, stock=False)[0]
    return seconds


def bench(preset: str, overrides: list[dict], data: str | None, batches: int, eval_samples: int,
          runtime: Runtime, faithful: bool = False) -> dict:
    device = runtime.device
    run_config = build_run_config(preset, *overrides, faithful=faithful)
    seed_everything(0, "bench")
    with tempfile.TemporaryDirectory() as folder:
        path = data or synthetic_features(Path(folder))
        with FeatureStore(path) as store:
            train_split, dims, length = store.split("train").to(device), store.dims, store.length
        model = build_model(run_config, dims, length).to(device)
        if runtime.compile:
            model.compile_denoisers()
        runner = StageRunner(model, run_config, runtime, stage="all")
        per_batch = time_training(runner, train_split, batches, device, compiled=runtime.compile)
        warmup = per_batch.pop("warmup_batches")
        train_peak = peak_memory_mb(device)  # before the test split is loaded

        with FeatureStore(path) as store:
            test_split = store.split("test").to(device)
    if eval_samples:
        test_split = test_split.subset(slice(0, min(eval_samples, len(test_split))))
    keep_freed_memory()  # as `rohydr evaluate` does
    seconds = time_evaluations(model, test_split, run_config.train.batch_size, runtime)
    eval_seconds = seconds["eval"]
    batch_seconds = sum(per_batch.values())
    n_batches = math.ceil(len(train_split) / run_config.train.batch_size)
    return {
        "preset": preset, "overrides": overrides, "faithful": faithful, "device": str(device), "bf16": runtime.bf16,
        "compile": runtime.compile, "warmup_batches": warmup,
        "threads": torch.get_num_threads(), "batch_size": run_config.train.batch_size,
        "train_mr": run_config.train.train_mr, "train_samples": len(train_split),
        "seconds_per_batch": {**{k: round(v, 4) for k, v in per_batch.items()}, "total": round(batch_seconds, 4)},
        "samples_per_second": {stage: round(run_config.train.batch_size / s, 2) for stage, s in per_batch.items()},
        "epoch_seconds_estimate": round(batch_seconds * n_batches, 1),
        "eval_samples": len(test_split), "eval_conditions": len(CONDITIONS), "eval_batch": EVAL_BATCH,
        "eval_seconds": round(eval_seconds, 2),
        "eval_samples_per_second": round(len(test_split) * len(PATTERNS) / eval_seconds, 1),
        "reference_eval_seconds": round(seconds["reference"], 2),
        "reference_text_encoder_seconds": round(seconds["reference_text_encoder"], 2),
        "eval_ratio_to_reference": round(eval_seconds / seconds["reference"], 2),
        "reference_eval_same_kernels_seconds": round(seconds["reference_same_kernels"], 2),
        "eval_ratio_to_reference_same_kernels": round(eval_seconds / seconds["reference_same_kernels"], 2),
        "train_peak_memory_mb": round(train_peak, 1),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
    }


def format_table(result: dict) -> str:
    lines = [f"preset {result['preset']} on {result['device']} ({result['threads']} threads), "
             f"batch {result['batch_size']}, training MR {result['train_mr']}, overrides {result['overrides']}"
             + (", the reference's computation (--faithful)" if result["faithful"] else "")]
    for stage, seconds in result["seconds_per_batch"].items():
        rate = result["samples_per_second"].get(stage)
        lines.append(f"  train {stage:<8} {seconds:9.3f} s/batch" + (f"  {rate:9.1f} samples/s" if rate else ""))
    lines.append(f"  train epoch    {result['epoch_seconds_estimate']:9.1f} s (estimate, "
                 f"{result['train_samples']} samples)")
    lines.append(f"  evaluate       {result['eval_seconds']:9.2f} s for {result['eval_conditions']} conditions "
                 f"over {result['eval_samples']} samples")
    lines.append(f"  reference eval {result['reference_eval_seconds']:9.2f} s for its one condition (MR 0.7 drawn "
                 f"per batch of {result['batch_size']}, text re-encoded: "
                 f"{result['reference_text_encoder_seconds']:.2f} s); all conditions take "
                 f"{result['eval_ratio_to_reference']}x that")
    lines.append(f"  same, our kernels {result['reference_eval_same_kernels_seconds']:6.2f} s; all conditions take "
                 f"{result['eval_ratio_to_reference_same_kernels']}x that")
    lines.append(f"  peak memory    {result['train_peak_memory_mb']:9.1f} MB after training, "
                 f"{result['peak_memory_mb']:.1f} MB after evaluation")
    return "\n".join(lines)

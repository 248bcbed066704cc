"""Complete-modality pretraining of the feature extractor, the fusion network and the emotion head.

The reference implementation loads `pretrained-<dataset>.pth` but ships neither the weights nor the code
that makes them; this stage makes them: L1 regression on complete inputs, Adam, early stopping on the
validation L1. One checkpoint per dataset and seed, shared by every variant.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rohydr.core.config import load_run_config
from rohydr.core.io import sha256_file
from rohydr.core.metrics import score
from rohydr.core.runtime import Runtime, derived_seed, seed_everything
from rohydr.core.vocabulary import PRETRAIN_LOG_COLUMNS
from rohydr.data.dataset import FeatureStore
from rohydr.models.checkpoint import build_model, save_checkpoint
from rohydr.models.predict import complete_prediction, complete_predictions
from rohydr.training.loop import EpochLoop, epoch_batches

PRETRAINED_COMPONENTS = ["extractor", "fusion", "head"]


def validate_complete(model, split, batch_size, runtime: Runtime) -> dict:
    y_pred = complete_predictions(model, split, batch_size, runtime)
    metrics = score(y_pred, split.labels.cpu().numpy())
    return {"val_l1": float(metrics["mae"]), "val_acc2": metrics["acc2_non0"], "val_f1": metrics["f1_non0"]}


def pretrain(data: str, run_config_path: str, seed: int, out: str, log: str, runtime: Runtime,
             progress: bool = True) -> dict:
    device = runtime.device
    run_config = load_run_config(run_config_path)
    cfg = run_config.pretrain
    seed_everything(seed, "init")
    with FeatureStore(data) as store:
        train_split = store.split("train").to(device)
        valid_split = store.split("valid").to(device)
        dims, length = store.dims, store.length
    model = build_model(run_config, dims, length).to(device)
    parameters = [p for name in PRETRAINED_COMPONENTS for p in getattr(model, name).parameters()]
    optimizer = torch.optim.Adam(parameters, lr=cfg.lr)

    def train_epoch(epoch: int) -> dict:
        rng = np.random.default_rng(derived_seed(seed, "pretrain-order", epoch))
        total = torch.zeros((), device=device)
        batches = epoch_batches(len(train_split), cfg.batch_size, rng)
        for index in batches:
            (text, audio, vision), labels = train_split.batch(index.to(device))
            with runtime.autocast():
                y = complete_prediction(model, text, audio, vision)
            loss = F.l1_loss(y.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(parameters, cfg.grad_clip)
            optimizer.step()
            total += loss.detach()
        return {"train_l1": float(total) / len(batches)}

    loop = EpochLoop(
        model=model, optimizers={"main": optimizer}, scheduler=None, train_epoch=train_epoch,
        validate=lambda: validate_complete(model, valid_split, cfg.batch_size * 4, runtime),
        monitor="val_l1", max_epochs=cfg.max_epochs, early_stop=cfg.early_stop, seed=seed,
        log_path=Path(log), columns=PRETRAIN_LOG_COLUMNS, progress=progress,
        fingerprint={"stage": "pretrain", "run_config": run_config.to_dict(), "data": sha256_file(data),
                     "seed": seed},
    )
    best_weights, best_row = loop.run()
    save_checkpoint(out, {
        "kind": "pretrain", "run_config": run_config.to_dict(), "dims": list(dims), "length": length,
        "state_dict": best_weights, "seed": seed, "best": best_row, "convergence": [loop.convergence],
    })
    loop.finish()
    return best_row

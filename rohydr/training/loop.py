"""The epoch loop shared by pretraining and training: validation, early stopping, learning-rate
schedule, per-epoch CSV log, and a resumable state written atomically after every epoch."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rohydr.core.errors import NonFiniteError, RohydrError
from rohydr.core.io import write_text_atomic
from rohydr.core.progress import progress
from rohydr.core.runtime import seed_everything
from rohydr.models.checkpoint import load_checkpoint, save_checkpoint


def write_log_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    write_text_atomic(path, buffer.getvalue())


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    order = torch.from_numpy(rng.permutation(n))
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class EpochLoop:
    """Runs epochs until `max_epochs` or `early_stop` epochs without a better `monitor` value, after
    `warmup_epochs` that neither select the model, count for early stopping nor step the scheduler."""

    model: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    train_epoch: Callable[[int], dict]  # epoch -> logged training values
    validate: Callable[[], dict]  # -> logged validation values, including `monitor`
    monitor: str
    max_epochs: int
    early_stop: int
    seed: int
    log_path: Path
    columns: list[str]
    fingerprint: dict  # what the run depends on (content digests of its inputs); another run's state is not reused
    progress: bool = True
    warmup_epochs: int = 0
    rows: list[dict] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.log_path.with_name(self.log_path.name + ".resume.pt")

    def run(self) -> tuple[dict, dict]:
        """Train; return (best weights, best row)."""
        start_epoch, best = self._resume()
        best_value, best_epoch, best_weights = best
        already_stopped = start_epoch > 1 and self._stopped(start_epoch - 1, best_epoch)
        last = self.warmup_epochs + self.max_epochs
        epochs = range(start_epoch, last + 1) if not already_stopped else range(0)
        bar = progress_bar(epochs, self.progress, desc="epochs")
        started = time.perf_counter()
        for epoch in bar:
            seed_everything(self.seed, "epoch", epoch)
            self.model.train()
            row = {"epoch": epoch, "lr": self.optimizers["main"].param_groups[0]["lr"]}
            row.update(self._finite(self.train_epoch(epoch), epoch, "training"))
            row.update(self._validated(epoch))
            row["wall_s"] = round(time.perf_counter() - started, 3)
            value = row[self.monitor]
            selecting = epoch > self.warmup_epochs
            if self.scheduler is not None and selecting:
                self.scheduler.step(value)
            if selecting and value < best_value - 1e-6:
                best_value, best_epoch = value, epoch
                best_weights = copy.deepcopy(self.model.state_dict())
            self.rows.append(row)
            self._save_state(epoch, (best_value, best_epoch, best_weights))
            write_log_csv(self.log_path, self.rows, self.columns)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({self.monitor: f"{value:.4f}", "best": f"{best_value:.4f}@{best_epoch}"})
            print(json.dumps({k: _rounded(v) for k, v in row.items()}), flush=True)
            if self._stopped(epoch, best_epoch):
                print(f"early stop: no better {self.monitor} for {self.early_stop} epochs", flush=True)
                break
        best_rows = [r for r in self.rows if r["epoch"] == best_epoch]
        if not best_rows:
            raise RohydrError(f"run {self.log_path.parent}: no epoch was trained (max_epochs {self.max_epochs})")
        return best_weights, best_rows[0]

    def _stopped(self, epoch: int, best_epoch: int) -> bool:
        return epoch - max(best_epoch, self.warmup_epochs) >= self.early_stop

    def _finite(self, values: dict, epoch: int, what: str) -> dict:
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise NonFiniteError(f"run {self.log_path.parent} diverged at epoch {epoch}: {what} value "
                                     f"{key} is {value}; lower the learning rate or check the data")
        return values

    def _validated(self, epoch: int) -> dict:
        try:
            values = self.validate()
        except NonFiniteError as error:
            raise NonFiniteError(f"run {self.log_path.parent} diverged at epoch {epoch}: validation: {error}") from None
        self._finite({self.monitor: values[self.monitor]}, epoch, "validation")
        return values

    def finish(self) -> None:
        self.state_path.unlink(missing_ok=True)

    def _save_state(self, epoch: int, best: tuple) -> None:
        save_checkpoint(self.state_path, {
            "kind": "resume",
            "fingerprint": json.dumps(self.fingerprint, sort_keys=True),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "best_value": best[0], "best_epoch": best[1], "best_weights": best[2],
            "rows": self.rows,
            "torch_rng": torch.get_rng_state(),
        })

    def _resume(self) -> tuple[int, tuple]:
        fresh = (1, (math.inf, 0, copy.deepcopy(self.model.state_dict())))
        if not self.state_path.exists():
            return fresh
        try:
            state = load_checkpoint(self.state_path)
        except RohydrError as error:
            print(f"ignoring and removing {self.state_path}: {error}", flush=True)
            self.finish()
            return fresh
        if state["fingerprint"] != json.dumps(self.fingerprint, sort_keys=True):
            print(f"ignoring and removing {self.state_path}: it belongs to another run (other data, starting "
                  "checkpoint, masks, configuration or seed)", flush=True)
            self.finish()
            return fresh
        self.model.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.rows = list(state["rows"])
        print(f"resuming after epoch {state['epoch']} from {self.state_path}", flush=True)
        return state["epoch"] + 1, (state["best_value"], state["best_epoch"], state["best_weights"])


def _rounded(value):
    return round(value, 6) if isinstance(value, float) else value


def progress_bar(iterable, enabled: bool, desc: str, leave: bool = True):
    return progress(iterable, desc, enabled=enabled, leave=leave)

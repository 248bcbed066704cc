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
from rohydr.core.vocabulary import CONVERGED
from rohydr.models.checkpoint import load_checkpoint, save_checkpoint


def write_log_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    write_text_atomic(path, buffer.getvalue())


GENERATOR_PHASE, STAGES_PHASE = "generators", "stages"  # the `phase` of a log row


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    order = torch.from_numpy(rng.permutation(n))
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class EpochLoop:
    """Runs epochs until `max_epochs` or `early_stop` epochs without a better `monitor` value.

    With a generator stage (`stage_epochs` > 0 and its callables), it runs first: its own epochs, validated
    by `stage_monitors` (one per loss), until `stage_early_stop` epochs in which none of them improved, or
    `stage_epochs`; they neither select the model nor step the scheduler. Each row's `phase` says which
    part trained it, so a resumed run knows where it stands from its rows alone."""

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
    stage_epochs: int = 0  # at most this many epochs of the generator stage first
    stage_early_stop: int = 1
    stage_epoch: Callable[[int], dict] | None = None
    stage_validate: Callable[[], dict] | None = None
    # each is watched on its own: a sum of losses of unlike scales stops when its largest term stalls
    stage_monitors: tuple[str, ...] = ()
    rows: list[dict] = field(default_factory=list)
    convergence: dict = field(default_factory=dict)  # set by run(): see _mark_convergence

    @property
    def state_path(self) -> Path:
        return self.log_path.with_name(self.log_path.name + ".resume.pt")

    def generator_stage(self) -> tuple[bool, int, bool]:
        """(still in the generator stage, its epochs so far, ended by its early-stopping criterion)."""
        stage_rows = [row for row in self.rows if row["phase"] == GENERATOR_PHASE]
        if not self.stage_epochs:
            return False, 0, True
        last_better = max((1 + int(np.argmin([row[name] for row in stage_rows])) for name in self.stage_monitors),
                          default=0) if stage_rows else 0
        stopped = len(stage_rows) - last_better >= self.stage_early_stop
        running = len(stage_rows) == len(self.rows) and not stopped and len(stage_rows) < self.stage_epochs
        return running, len(stage_rows), stopped

    def run(self) -> tuple[dict, dict]:
        """Train; return (best weights, best row)."""
        start_epoch, best = self._resume()
        best_value, best_epoch, best_weights = best
        bar = progress_bar(range(start_epoch, self.stage_epochs + self.max_epochs + 1), self.progress, desc="epochs")
        started = time.perf_counter()
        for epoch in bar:
            in_stage, offset, _ = self.generator_stage()
            if not in_stage and (epoch > offset + self.max_epochs or self._stopped(epoch - 1, best_epoch, offset)):
                break
            seed_everything(self.seed, "epoch", epoch)
            self.model.train()
            row = {"epoch": epoch, "phase": GENERATOR_PHASE if in_stage else STAGES_PHASE,
                   "lr": self.optimizers["main"].param_groups[0]["lr"]}
            monitor = self.stage_monitors[0] if in_stage else self.monitor
            row.update(self._finite((self.stage_epoch if in_stage else self.train_epoch)(epoch), epoch, "training"))
            row.update(self._validated(epoch, self.stage_validate if in_stage else self.validate,
                                       self.stage_monitors if in_stage else (monitor,)))
            row["wall_s"] = round(time.perf_counter() - started, 3)
            value = row[monitor]
            if not in_stage:
                if self.scheduler is not None:
                    self.scheduler.step(value)
                if value < best_value - 1e-6:
                    best_value, best_epoch = value, epoch
                    best_weights = copy.deepcopy(self.model.state_dict())
            self.rows.append(row)
            self._save_state(epoch, (best_value, best_epoch, best_weights))
            write_log_csv(self.log_path, self.rows, self.columns)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({monitor: f"{value:.4f}", "best": f"{best_value:.4f}@{best_epoch}"})
            print(json.dumps({k: _rounded(v) for k, v in row.items()}), flush=True)
            if in_stage and not self.generator_stage()[0]:
                print(f"generator stage ends after {epoch} epochs ({', '.join(self.stage_monitors)})", flush=True)
            if not in_stage and self._stopped(epoch, best_epoch, offset):
                print(f"early stop: no better {self.monitor} for {self.early_stop} epochs", flush=True)
        best_rows = [r for r in self.rows if r["epoch"] == best_epoch]
        if not best_rows:
            raise RohydrError(f"run {self.log_path.parent}: no epoch was trained (max_epochs {self.max_epochs})")
        self._mark_convergence(best_epoch)
        return best_weights, best_rows[0]

    def _mark_convergence(self, best_epoch: int) -> None:
        """Converged: stopped by its early-stopping criterion (and so did the generator stage, if any). A
        run that reached max_epochs while its monitor still improved is not; the last row of the log says
        which, and so does the log."""
        last = self.rows[-1]["epoch"]
        _, offset, stage_stopped = self.generator_stage()
        converged = self._stopped(last, best_epoch, offset) and stage_stopped
        self.convergence = {"converged": converged, "epochs": last, "best_epoch": best_epoch,
                            "generator_stage_epochs": offset, "generator_stage_converged": stage_stopped}
        self.rows[-1][CONVERGED] = int(converged)
        write_log_csv(self.log_path, self.rows, self.columns)
        if not stage_stopped:
            print(f"not converged: the generator stage reached its {self.stage_epochs} epochs while "
                  f"{' or '.join(self.stage_monitors)} still improved; raise generator_epochs", flush=True)
        if not self._stopped(last, best_epoch, offset):
            print(f"not converged: reached max_epochs at epoch {last} with the best {self.monitor} at epoch "
                  f"{best_epoch}, fewer than early_stop = {self.early_stop} epochs before; raise max_epochs",
                  flush=True)

    def _stopped(self, epoch: int, best_epoch: int, offset: int) -> bool:
        return epoch - max(best_epoch, offset) >= self.early_stop

    def _finite(self, values: dict, epoch: int, what: str) -> dict:
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise NonFiniteError(f"run {self.log_path.parent} diverged at epoch {epoch}: {what} value "
                                     f"{key} is {value}; lower the learning rate or check the data")
        return values

    def _validated(self, epoch: int, validate: Callable[[], dict], monitors: tuple[str, ...]) -> dict:
        try:
            values = validate()
        except NonFiniteError as error:
            raise NonFiniteError(f"run {self.log_path.parent} diverged at epoch {epoch}: validation: {error}") from None
        self._finite({name: values[name] for name in monitors}, epoch, "validation")
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

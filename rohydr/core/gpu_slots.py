"""One GPU per job on a workstation: a command on `--device auto` takes a GPU no other rohydr process of
this machine holds, and keeps it until it exits.

Snakemake's local executor counts GPU jobs (`--resources gpu=N`) but does not say which GPU a job may
use, so without this every job would run on cuda:0. A slot is an exclusive `flock` on a file named by
the GPU's UUID (not its index: under SLURM or CUDA_VISIBLE_DEVICES two jobs may both see their own GPU
as cuda:0). The kernel drops the lock when the process ends, killed or not, so a slot is never left held.
A job that finds every visible GPU held waits for one, so `snakemake --cores C` without a `gpu` cap
still puts one job per GPU at a time.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO, Callable

from rohydr.core.io import try_lock

LOCK_DIR_ENV = "ROHYDR_GPU_LOCK_DIR"
_held: list[tuple[int, IO]] = []  # this process's slot (index, open locked file), kept for its lifetime


def lock_dir() -> Path:
    """Where the slot files live: $ROHYDR_GPU_LOCK_DIR, else a folder of this user in the temp dir."""
    configured = os.environ.get(LOCK_DIR_ENV)
    folder = Path(configured) if configured else Path(tempfile.gettempdir()) / f"rohydr-gpu-slots-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _slot_file(identity: str) -> Path:
    return lock_dir() / (re.sub(r"[^A-Za-z0-9._-]", "_", identity) + ".lock")


def slot_holders(identities: list[str]) -> list[int | None]:
    """For each GPU (in `identities`' order) the pid of the process holding its slot, or None when free. A
    free slot is taken for an instant to see that it is free (a job starting then takes the next one)."""
    holders = []
    for identity in identities:
        path = _slot_file(identity)
        if not path.exists():  # never taken
            holders.append(None)
            continue
        handle = try_lock(path)
        if handle is not None:
            handle.close()
            holders.append(None)
            continue
        text = path.read_text().strip()
        holders.append(int(text) if text.isdigit() else -1)  # -1: held, its pid not yet written
    return holders


def slot_report(identities: list[str], names: list[str]) -> str:
    """Which GPU a job on `--device auto` would take now, and which processes hold the others."""
    holders = slot_holders(identities)
    lines = [f"{len(identities)} visible CUDA device(s) (CUDA_VISIBLE_DEVICES decides which); slots in {lock_dir()}"]
    for index, (identity, name, pid) in enumerate(zip(identities, names, holders)):
        lines.append(f"  cuda:{index}  {name}  {identity}  " + ("free" if pid is None else f"held by {_process(pid)}"))
    free = [index for index, pid in enumerate(holders) if pid is None]
    lines.append(f"a job on --device auto now takes cuda:{free[0]}" if free
                 else "every GPU is held: a job on --device auto waits for one")
    return "\n".join(lines)


def _process(pid: int) -> str:
    try:
        command = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split())
    except OSError:
        command = ""
    return f"pid {pid}" + (f" ({command[:120]})" if command else "")


def take_gpu_slot(identities: list[str], poll_s: float = 1.0, say: Callable[[str], None] = print) -> int:
    """The index (into `identities`, the visible GPUs in CUDA order) of the GPU this process now holds;
    waits while every one is held. A second call in the same process returns the slot it holds."""
    if not identities:
        raise ValueError("no GPU to take a slot on")
    if _held:
        return _held[0][0]
    waited = False
    while True:
        for index, identity in enumerate(identities):
            handle = try_lock(_slot_file(identity))
            if handle is not None:
                _held.append((index, handle))
                return index
        if not waited:
            say(f"waiting for a free GPU: all {len(identities)} visible GPU(s) are held by other rohydr jobs "
                f"(slots in {lock_dir()})")
            waited = True
        time.sleep(poll_s)


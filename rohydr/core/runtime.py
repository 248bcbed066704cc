"""Device, threads, seeding and precision: the same choices for every command that runs a model."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import random
import sys
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from rohydr.core.errors import RohydrError
from rohydr.core.gpu_slots import take_gpu_slot


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def select_device(name: str = "auto") -> torch.device:
    """`auto`: a GPU of its own (gpu_slots) when CUDA is visible, else the CPU; or the device named."""
    if name == "auto":
        return _own_gpu() if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RohydrError(f"--device {name}: unknown device; expected {DEVICE_CHOICES}") from None
    if device.type not in ("cpu", "cuda"):
        raise RohydrError(f"--device {name}: device type {device.type!r} is not supported; expected {DEVICE_CHOICES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RohydrError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    if device.type == "cuda":
        check_device_index(name, device.index, torch.cuda.device_count())
    return device


def check_device_index(name: str, index: int | None, count: int) -> None:
    if index is not None and not 0 <= index < count:
        shown = "cuda:0" if count == 1 else f"cuda:0 ... cuda:{count - 1}"
        raise RohydrError(f"--device {name}: this machine shows {count} CUDA device(s) ({shown}; "
                          "CUDA_VISIBLE_DEVICES decides which); use one of them or --device auto")


def visible_gpu_ids() -> list[str]:
    """The visible CUDA devices' UUIDs, in CUDA order (an index where the UUID is unavailable)."""
    ids = []
    for index in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        ids.append(f"gpu-{uuid}" if uuid is not None else f"cuda-index-{index}")
    return ids


def _own_gpu() -> torch.device:
    index = take_gpu_slot(visible_gpu_ids())
    torch.cuda.set_device(index)
    print(f"device: cuda:{index} (a GPU slot of its own; {torch.cuda.get_device_name(index)})", flush=True)
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Runtime:
    """Where and how a command runs its model: the device, bf16 autocast (CUDA only) and torch.compile of
    the generators' repeated calls. Passed to everything that runs a model."""

    device: torch.device = torch.device("cpu")
    bf16: bool = False
    compile: bool = False

    @classmethod
    def from_args(cls, args, inference: bool = False) -> Runtime:
        """Apply the command's --threads and --device (see configure_runtime)."""
        return cls(configure_runtime(args, inference), bool(args.bf16), bool(getattr(args, "compile", False)))

    def autocast(self):
        """bf16 autocast on CUDA when asked for; a no-op elsewhere. The models keep what needs fp32 out of
        it (full_precision): the extracted features (the losses' targets), predictions, noise draws."""
        if self.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def full_precision(x: torch.Tensor):
    """A block that autocast leaves in fp32, on x's device (docs/method.md, "Precision")."""
    return torch.autocast(x.device.type, enabled=False)


def configure_runtime(args, inference: bool = False) -> torch.device:
    """Apply --threads and --device (and keep_freed_memory for an inference command). CPU kernels
    are deterministic for a fixed thread count, so the same seed gives the same numbers; on CUDA,
    TF32 matmuls trade exactness for speed."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if inference:
        keep_freed_memory()
    device = select_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """For inference: let glibc serve blocks below 1 GiB from its heap and keep freed pages mapped.

    By default glibc maps large blocks afresh and unmaps them on free, and trims its heap as soon as
    32 MiB or more sit free at its top, so the DiT's attention weights (tens of MB per evaluation
    batch) keep paying page faults on first touch, a large share of the time of some kernels. Training
    does not gain from it and its peak resident memory grows, so only inference commands use it. A
    no-op off glibc. Returns whether the setting took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) == 1


def derived_seed(*parts: int | str) -> int:
    """A stable 31-bit seed from several parts (seed, epoch, purpose...), the same on every machine."""
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def seed_everything(*parts: int | str) -> None:
    seed = derived_seed(*parts)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Draws on a generator's own device (or the default generator), moved to where they are used: the same
# numbers whatever the device of the tensors they end up on.
def random_normal(shape, generator: torch.Generator | None, device: torch.device,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device=device, dtype=dtype)


def random_uniform(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=where).to(device)


def random_integers(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=where).to(device)

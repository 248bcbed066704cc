"""Fused CPU kernels for inference (csrc/dit_cpu.cpp), built on first use on this machine.

Evaluation spends nearly all its time in DiT sampling chains, where PyTorch's eager kernels for
attention heads of four channels, softmax and tanh-GELU reach a fraction of the CPU's speed. The
kernels compute the same functions, each in one call whose data stays in the cache: attention (the
DiT's and the fusion network's, with or without the causal mask), LayerNorm + adaLN modulation, and
tanh-GELU; the matrix products stay with PyTorch.

They need an x86-64 CPU with AVX2 and FMA and a C++ compiler. The build (once per machine)
goes to torch's extension folder ($TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions) and
serves every later process. Without a working compiler, or when the build fails, one line on stderr
says so and the failure is remembered in that folder (build_failed.txt), so later processes do not
retry. Without the kernels, or with ROHYDR_CPU_KERNELS=0, the models run on PyTorch's kernels;
autograd always does.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ENV_SWITCH = "ROHYDR_CPU_KERNELS"
SOURCE = Path(__file__).parent / "csrc" / "dit_cpu.cpp"
FAILED_MARKER = "build_failed.txt"  # in the build folder: why the build failed, so no later process retries
COMPILER_PROBE = "#include <vector>\nint main() { return std::vector<int>(1).size() - 1; }\n"
STALE_LOCK_SECONDS = 600  # a build takes well under a minute; an older lock is a killed build's

_state: dict[str, object] = {}  # "ops": the loaded torch.ops namespace, or "error": why not
_stock = False  # see stock_kernels


def cpu_supported() -> str | None:
    """None when this CPU can run the kernels, else the reason."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"not an x86-64 CPU ({platform.machine()})"
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return f"the CPU lacks AVX2 (torch reports {torch.backends.cpu.get_cpu_capability()})"
    return None


def build_directory(name: str) -> Path:
    base = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    return Path(base) / name


def clear_stale_lock(folder: Path) -> bool:
    """Remove the build lock of a process killed mid-build (torch would wait on it forever)."""
    lock = folder / "lock"
    try:
        stale = time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS
    except FileNotFoundError:
        return False
    if stale:
        warnings.warn(f"rohydr: removing the stale build lock {lock}", RuntimeWarning, stacklevel=2)
        lock.unlink(missing_ok=True)
    return stale


class Unavailable(RuntimeError):
    """The kernels cannot be built or loaded here; the message says why."""


def find_compiler() -> str | None:
    """The C++ compiler torch builds with ($CXX, else c++) when it compiles a small program, else None."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        return None
    try:
        result = subprocess.run([compiler, "-x", "c++", "-fsyntax-only", "-"], input=COMPILER_PROBE,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return compiler if result.returncode == 0 else None


def _give_up(marker: Path, reason: str) -> Unavailable:
    """Remember a failed build beside it, so that later processes do not try again."""
    with contextlib.suppress(OSError):
        marker.write_text(reason + "\n")
    return Unavailable(reason)


@contextlib.contextmanager
def _stderr_into(log: Path):
    """The compiler's and ninja's output (written to file descriptor 2 by subprocesses) into `log`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "w") as out:
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _build():
    from torch.utils import cpp_extension

    try:
        import ninja  # the pip package puts the build tool torch needs beside itself

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    # one build per source, torch and Python version: a build for another ABI never gets loaded
    identity = SOURCE.read_bytes() + f"{torch.__version__} {platform.python_version()}".encode()
    name = f"rohydr_dit_cpu_{hashlib.sha256(identity).hexdigest()[:12]}"
    folder = build_directory(name)
    folder.mkdir(parents=True, exist_ok=True)
    clear_stale_lock(folder)
    marker, log = folder / FAILED_MARKER, folder / "build.log"
    built = (folder / f"{name}.so").exists()
    if not built:
        if marker.exists():
            raise Unavailable(f"{marker.read_text().strip()}; remembered in {marker}, delete it to try again")
        if find_compiler() is None:
            raise _give_up(marker, f"no working C++ compiler (${{CXX}} or c++ on PATH: {os.environ.get('CXX', 'c++')})")
        print(f"rohydr: building the fused CPU kernels in {folder} (once per machine, about 15 s)", file=sys.stderr)
    try:
        with contextlib.nullcontext() if built else _stderr_into(log):
            cpp_extension.load(name=name, sources=[str(SOURCE)], build_directory=str(folder), is_python_module=False,
                               extra_cflags=["-O3", "-mavx2", "-mfma", "-fopenmp"], extra_ldflags=["-fopenmp"],
                               verbose=False)
    except Exception as error:  # a failed build or load: fall back, and say where the compiler's output is
        last = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise _give_up(marker, f"building {SOURCE.name} failed ({last}); the build output is in {log}") from None
    return torch.ops.rohydr_dit


def load():
    """The kernels' op namespace (torch.ops.rohydr_dit), building them if needed; None when they
    cannot be used here (the reason is printed once on stderr and kept in `unavailable_reason()`)."""
    if "ops" in _state or "error" in _state:
        return _state.get("ops")
    reason = cpu_supported()
    if reason is None:
        try:
            _state["ops"] = _build()
            return _state["ops"]
        except Unavailable as error:
            reason = str(error)
    _state["error"] = reason
    print(f"rohydr: fused CPU kernels unavailable, using PyTorch's kernels: {reason}", file=sys.stderr, flush=True)
    return None


def unavailable_reason() -> str | None:
    return _state.get("error")  # type: ignore[return-value]


@contextlib.contextmanager
def stock_kernels():
    """Only PyTorch's own kernels inside (scaled_dot_product_attention, aten LayerNorm and GELU), as
    the reference implementation runs; for benchmarks that time the reference's computation."""
    global _stock
    previous, _stock = _stock, True
    try:
        yield
    finally:
        _stock = previous


def stock_only() -> bool:
    return _stock


def for_tensor(x: torch.Tensor):
    """The kernels when they apply to x: float32 on the CPU, no autograd, not inside torch.compile,
    not switched off (ROHYDR_CPU_KERNELS=0, stock_kernels); else None."""
    if (x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled()
            or torch.compiler.is_compiling() or _stock or os.environ.get(ENV_SWITCH, "1") == "0"):
        return None
    return load()

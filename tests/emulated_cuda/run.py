"""Run `rohydr` commands on an emulated CUDA device: `python run.py SHIM.so COMMANDS.json`, where the JSON file
holds a list of command lines (lists of arguments), run in turn in this process; stops at the first that fails.

The shim (shim.cpp, built by `build_shim`) must be loaded before torch is imported, hence a process of its own;
device.py holds the emulation itself.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_shim(folder: Path) -> Path:
    """Compile shim.cpp against the installed torch's headers (a few seconds; named by source and torch)."""
    torch_dir = Path(importlib.util.find_spec("torch").origin).parent
    source = HERE / "shim.cpp"
    key = hashlib.sha256(source.read_bytes() + str(torch_dir).encode()).hexdigest()[:16]
    library = folder / f"emulated_cuda_{key}.so"
    if not library.exists():
        abi = _cxx11_abi()
        subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
                        f"-I{torch_dir / 'include'}", str(source), f"-L{torch_dir / 'lib'}", "-lc10", "-ltorch_cpu",
                        f"-Wl,-rpath,{torch_dir / 'lib'}", "-o", str(library)], check=True, capture_output=True)
    return library


def _cxx11_abi() -> int:
    import torch

    return int(torch._C._GLIBCXX_USE_CXX11_ABI)


def main(shim: str, commands: str) -> int:
    ctypes.CDLL(shim, mode=ctypes.RTLD_GLOBAL)  # before torch: it creates its CUDA hooks once, at first use
    sys.path.insert(0, str(HERE))
    import device

    from rohydr.cli import main as rohydr_main

    with device.emulated_cuda():
        for command in json.loads(Path(commands).read_text()):
            print(f"== rohydr {' '.join(command)}", flush=True)
            status = rohydr_main(command)
            if status:
                return status
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""Small real inputs for the tests: a synthetic pickle, its HDF5 file, masks and run configurations."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "rohydr.cli", *map(str, args)], cwd=cwd, env=tool_env(),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"rohydr {args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def snakemake(*args, cwd: Path, check=True, env_extra=None, timeout=1500) -> subprocess.CompletedProcess:
    """The workflow of this checkout, run in `cwd`."""
    env = tool_env()
    for name, value in (env_extra or {}).items():  # None: unset
        env.pop(name, None) if value is None else env.__setitem__(name, value)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                             "--directory", str(cwd), *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def tool_env() -> dict:
    """The environment with this interpreter's bin/ first, so `rohydr` and `snakemake` are found."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def make_features(folder: Path, sizes=(64, 24, 32), length: int = 10, seed: int = 0) -> Path:
    """A synthetic MOSI-like dataset converted to HDF5 in `folder`."""
    pickle_path, h5_path = folder / "data.pkl", folder / "features.h5"
    if not h5_path.exists():
        run_cli("synth", pickle_path, "--like", "mosi", "--seed", seed, "--sizes", *sizes, "--length", length)
        run_cli("convert", pickle_path, h5_path)
    return h5_path


def make_masks(folder: Path, h5_path: Path, seed: int = 1) -> Path:
    path = folder / f"masks{seed}.h5"
    if not path.exists():
        run_cli("masks", "--data", h5_path, "--seed", seed, "--out", path)
    return path


def write_run_config(path: Path, preset: str = "tiny", *overrides: dict) -> Path:
    from rohydr.core.config import build_run_config

    path.write_text(json.dumps(build_run_config(preset, *overrides).to_dict()))
    return path


def pretrained_workspace(folder: Path, overrides: dict) -> dict:
    """Features, masks, a tiny run configuration with `overrides` and a pretrained checkpoint in `folder`."""
    h5 = make_features(folder)
    masks = make_masks(folder, h5)
    run_config = write_run_config(folder / "run_config.json", "tiny", overrides)
    pretrained = folder / "pretrain.pt"
    run_cli("pretrain", "--data", h5, "--run-config", run_config, "--seed", 1, "--out", pretrained,
            "--log", folder / "pretrain_log.csv", "--no-progress", "--device", "cpu")
    return {"folder": folder, "h5": h5, "masks": masks, "run_config": run_config, "pretrained": pretrained}

"""The device check: what a machine with a real CUDA GPU says about the CUDA path, as one table.

Run by check.sh (see there). For fp32, bf16 autocast and bf16 with torch.compile: `rohydr bench` on the MOSI
preset (a few training batches, the evaluation of every condition on some test rows, peak GPU memory); then one
batch of the MOSI-preset model in eval mode, the same weights and noise on the CPU and on the GPU: how far the
GPU's predictions are from the CPU's. The emulated CUDA device of the tests computes what the CPU computes in fp32
(tests/test_emulated_cuda.py), so the fp32 row is also the real device against the emulated one.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODES = {"fp32": [], "bf16": ["--bf16"], "bf16 + compile": ["--bf16", "--compile"]}


def bench(mode: str, preset: str, device: str, batches: int, eval_samples: int, timeout: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        command = [sys.executable, "-m", "rohydr.cli", "bench", "--preset", preset, "--batches", str(batches),
                   "--eval-samples", str(eval_samples), "--device", device, "--json", str(out), "--no-progress",
                   *MODES[mode]]
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"over {timeout} s"}
        if result.returncode != 0:
            return {"error": (result.stderr.strip().splitlines() or ["exit %d" % result.returncode])[-1][:150]}
        return {**json.loads(out.read_text()), "wall_s": time.monotonic() - started}


def one_batch_agreement(preset: str, device: str, rows: int = 16) -> dict[str, float]:
    """max |prediction - CPU's| over one batch of the preset's model, in fp32 and under bf16 autocast."""
    from rohydr.bench import synthetic_features
    from rohydr.core.config import build_run_config
    from rohydr.core.runtime import Runtime, seed_everything
    from rohydr.data.dataset import FeatureStore
    from rohydr.models.checkpoint import build_model
    from rohydr.models.predict import feature_shape

    seed_everything(0, "device-check")
    with tempfile.TemporaryDirectory() as folder, FeatureStore(synthetic_features(Path(folder))) as store:
        split = store.split("test")
        model = build_model(build_run_config(preset), store.dims, store.length).eval()
        (text, audio, vision), _ = split.batch(torch.arange(rows))
    avail = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool).repeat(rows // 4, 1)
    noise = torch.randn(rows, 3, *feature_shape(model), generator=torch.Generator().manual_seed(0))

    def predictions(where: str, bf16: bool) -> np.ndarray:
        runtime = Runtime(torch.device(where), bf16=bf16)
        moved = model.to(where)
        with torch.no_grad(), runtime.autocast():
            out = moved(*(x.to(where) for x in (text, audio, vision, avail)), noise=noise.to(where), with_losses=False)
        return out.y_rec.float().cpu().numpy()

    on_cpu = predictions("cpu", bf16=False)
    return {mode: float(np.abs(predictions(device, bf16=mode == "bf16") - on_cpu).max()) for mode in ("fp32", "bf16")}


def table(results: dict[str, dict], agreement: dict[str, float]) -> str:
    lines = ["| mode | train s/batch | evaluate s (7 patterns) | peak MB, training | peak MB, evaluation | "
             "one batch: max abs(prediction - CPU's) |", "|---|---|---|---|---|---|"]
    for mode, result in results.items():
        if "error" in result:
            lines.append(f"| {mode} | failed: {result['error']} | | | | |")
            continue
        lines.append(f"| {mode} | {result['seconds_per_batch']['total']:.4f} | {result['eval_seconds']:.2f} "
                     f"({result['eval_samples']} rows) | {result['train_peak_memory_mb']:.0f} | "
                     f"{result['peak_memory_mb']:.0f} | {agreement.get(mode.split(' ')[0], float('nan')):.2e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check); cpu only to try the script itself")
    parser.add_argument("--preset", default="mosi", help="mosi (the check); tiny only to try the script itself")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--eval-samples", type=int, default=128)
    parser.add_argument("--timeout", type=int, default=150, help="seconds for each bench")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"device check: torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device check: preset {args.preset} on {name}, torch {torch.__version__}, python {sys.version.split()[0]}", flush=True)
    results = {}
    for mode in MODES:
        results[mode] = bench(mode, args.preset, args.device, args.batches, args.eval_samples, args.timeout)
        print(f"  {mode}: done" + (f" ({results[mode]['error']})" if "error" in results[mode] else ""), flush=True)
    agreement = one_batch_agreement(args.preset, args.device)
    print(table(results, agreement))
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""`rohydr describe`: parameter count of every model component, beside the reference's counts."""
from __future__ import annotations

import json

from torch import nn

from rohydr import MODALITIES
from rohydr.config import build_run_config
from rohydr.errors import RohydrError
from rohydr.models.condition_mixer import PAIRS
from rohydr.models.fusion import cross_name

# Counts of the reference implementation at MOSI (preset mosi, dims 768/5/20, length 50), BERT excluded.
# Its DiT carries 4,160 more: a 64 -> 64 output layer (learned-sigma half, discarded) plus a 64 -> 32 map
# back, where ours has a single 64 -> 32 output layer (2,080).
REFERENCE_SETTING = {"preset": "mosi", "dims": (768, 5, 20), "length": 50}
REFERENCE_COUNTS = {
    "extractor": 76_128,
    **{f"diffusion.{m}": 490_592 for m in MODALITIES},
    **{f"mixer.{pair}": 2_080 for pair in PAIRS},
    **{f"unimodal_reconstructor.{m}": 522_224 for m in MODALITIES},
    **{f"fusion.cross.{cross_name(t, s)}": 50_880 for t in MODALITIES for s in MODALITIES if s != t},
    **{f"fusion.memory.{m}": 200_064 for m in MODALITIES},
    "multimodal_reconstructor": 42_032,
    "discriminator": 33_409,
    "head": 74_305,
    "total": 4_176_034,
}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(model) -> dict[str, int]:
    """Component -> number of parameters, in model order, with "total" last."""
    counts = {"extractor": _count(model.extractor)}
    counts.update({f"diffusion.{m}": _count(model.diffusion[m]) for m in MODALITIES})
    counts.update({f"mixer.{pair}": _count(model.mixers[pair]) for pair in PAIRS})
    counts.update({f"unimodal_reconstructor.{m}": _count(model.unimodal_reconstructor[m]) for m in MODALITIES})
    counts.update({f"fusion.cross.{name}": _count(encoder) for name, encoder in model.fusion.cross.items()})
    counts.update({f"fusion.memory.{m}": _count(model.fusion.memory[m]) for m in MODALITIES})
    counts["multimodal_reconstructor"] = _count(model.multimodal_reconstructor)
    counts["discriminator"] = _count(model.discriminator)
    counts["head"] = _count(model.head)
    counts["total"] = _count(model)
    return counts


def describe(preset: str, dims: tuple[int, int, int], length: int) -> dict:
    from rohydr.models.rohydr import RoHyDR

    try:
        config = build_run_config(preset).model
        model = RoHyDR(config, tuple(dims), length)
    except ValueError as error:
        setting = f"--preset {preset} --dims {' '.join(map(str, dims))} --length {length}"
        raise RohydrError(f"describe {setting}: {error}") from None
    counts = parameter_counts(model)
    same_setting = {"preset": preset, "dims": tuple(dims), "length": length} == REFERENCE_SETTING
    rows = {}
    for name, ours in counts.items():
        reference = REFERENCE_COUNTS.get(name) if same_setting else None
        rows[name] = {"ours": ours, "reference": reference,
                      "difference": None if reference is None else ours - reference}
    return {"preset": preset, "dims": list(dims), "length": length, "sequence_length": model.seq_len,
            "components": rows}


def format_table(result: dict) -> str:
    def cell(value) -> str:
        return "-" if value is None else f"{value:,}"

    header = ("component", "ours", "reference", "difference")
    body = [(name, cell(r["ours"]), cell(r["reference"]), cell(r["difference"]))
            for name, r in result["components"].items()]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    lines = [f"preset {result['preset']}, dims {'/'.join(map(str, result['dims']))}, length {result['length']} "
             f"(T = {result['sequence_length']} after the extractor)"]
    for row in [header, *body]:
        lines.append(row[0].ljust(widths[0]) + "".join("  " + v.rjust(w) for v, w in zip(row[1:], widths[1:])))
    return "\n".join(lines)


def cli_describe(args) -> int:
    result = describe(args.preset, tuple(args.dims), args.length)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0

"""`rohydr describe`: parameter count of every model component, beside the reference's counts: RoHyDR's
code for the DiT generator, IMDer's code (its defaults) for the score-SDE generator."""
from __future__ import annotations


from torch import nn

from rohydr.core.config import build_run_config
from rohydr.core.errors import RohydrError
from rohydr.core.vocabulary import MODALITIES
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
# IMDer's code (github mdswyz/IMDer) at the same setting: the same extractor, mixers (its cat_* convs),
# reconstructors, fusion and head; a ScoreNet per modality (channels 32/64/128/256, embedding 256, two
# cross-attention layers of 8 heads per level); no multimodal reconstructor, no discriminator.
IMDER_COUNTS = {
    **REFERENCE_COUNTS,
    **{f"diffusion.{m}": 3_457_664 for m in MODALITIES},
    "multimodal_reconstructor": 0,
    "discriminator": 0,
    "total": 4_176_034 - 3 * 490_592 + 3 * 3_457_664 - 42_032 - 33_409,
}
REFERENCES = {"dit": ("RoHyDR's code", REFERENCE_COUNTS), "score_sde": ("IMDer's code", IMDER_COUNTS)}
DIFFERENCES = {
    "dit": "Each DiT: 4,160 fewer (one 64 -> 32 output layer, where the reference has a 64 -> 64 layer whose "
           "learned-sigma half is discarded plus a 64 -> 32 map back).",
    "score_sde": "Each ScoreNet: its top level is 64 channels wide where IMDer's is 32 (it must be at least 2d; "
                 "docs/method.md), and 128 fewer (the fixed Fourier frequencies of the time embedding are a "
                 "buffer here, a frozen parameter there). Multimodal reconstructor and discriminator: built for "
                 "rohydr_sde; the imder variant never calls them (IMDer has neither).",
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


def describe(preset: str, dims: tuple[int, int, int], length: int, generator: str = "dit") -> dict:
    from rohydr.models.rohydr import RoHyDR

    try:
        config = build_run_config(preset, {"model": {"generator": generator}}).model
        model = RoHyDR(config, tuple(dims), length)
    except ValueError as error:
        setting = f"--preset {preset} --dims {' '.join(map(str, dims))} --length {length} --generator {generator}"
        raise RohydrError(f"describe {setting}: {error}") from None
    counts = parameter_counts(model)
    source, reference_counts = REFERENCES[generator]
    same_setting = {"preset": preset, "dims": tuple(dims), "length": length} == REFERENCE_SETTING
    rows = {}
    for name, ours in counts.items():
        reference = reference_counts.get(name) if same_setting else None
        rows[name] = {"ours": ours, "reference": reference,
                      "difference": None if reference is None else ours - reference}
    return {"preset": preset, "dims": list(dims), "length": length, "sequence_length": model.seq_len,
            "generator": generator, "reference": source if same_setting else None,
            "differences": DIFFERENCES[generator] if same_setting else None, "components": rows}


def format_table(result: dict) -> str:
    def cell(value) -> str:
        return "-" if value is None else f"{value:,}"

    header = ("component", "ours", "reference", "difference")
    body = [(name, cell(r["ours"]), cell(r["reference"]), cell(r["difference"]))
            for name, r in result["components"].items()]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    lines = [f"preset {result['preset']}, dims {'/'.join(map(str, result['dims']))}, length {result['length']} "
             f"(T = {result['sequence_length']} after the extractor), generator {result['generator']}"
             + (f"; reference: {result['reference']}" if result["reference"] else "")]
    for row in [header, *body]:
        lines.append(row[0].ljust(widths[0]) + "".join("  " + v.rjust(w) for v, w in zip(row[1:], widths[1:])))
    if result["differences"]:
        lines.append(result["differences"])
    return "\n".join(lines)

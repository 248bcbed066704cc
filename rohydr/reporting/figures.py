"""`rohydr plots`: paper-style figures (PNG at 200 dpi and PDF) from eval.csv and train_log.csv files.

- mr_curves:         Acc-2 / F1 (non-0) against the nominal missing rate (0 = complete), one line per
                     variant, band = ± std over seeds;
- training_curves:   per-stage losses, per-stage gradient norms of each parameter group (log scale),
                     validation Acc-2 of the main variant, and validation Acc-2 / L1 of every variant;
- recovery_quality:  MSE and cosine similarity of recovered vs true features, per recovered modality and
                     missing pattern, bars per variant (± std over seeds).
Paths give variant and seed: results/{dataset}/{variant}/seed{seed}/{eval,train_log}.csv. Columns that a
variant does not log (absent, empty or NaN) are skipped; a panel without any data is not drawn.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rohydr import MODALITIES, MODALITY_KEYS  # noqa: E402
from rohydr.errors import RohydrError  # noqa: E402
from rohydr.evaluation.masks import MISSING_PATTERNS, MR_CONDITIONS, NOMINAL_MR, PATTERNS  # noqa: E402
from rohydr.io import atomic_path  # noqa: E402
from rohydr.reporting.tables import MAIN_VARIANT, PATTERN_HEADERS, read_evals, run_of  # noqa: E402

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.5, "lines.markersize": 4,
    "savefig.dpi": 200, "pdf.fonttype": 42, "figure.constrained_layout.use": True,
}
STAGE_LOSSES = {
    "Stage 1: unimodal recovery": ["stage1_loss", "stage1_diffusion", "stage1_reconstruction"],
    "Stage 2: fusion recovery": ["stage2_loss", "stage2_adversarial", "stage2_l1", "disc_loss"],
    "Stage 3: prediction": ["stage3_loss"],
    "Joint optimization": ["joint_loss"],
}
LOSS_LABELS = {
    "stage1_loss": "stage 1 total", "stage1_diffusion": "diffusion (noise MSE)",
    "stage1_reconstruction": "unimodal reconstructor (MSE)", "stage2_loss": "generator total",
    "stage2_adversarial": "adversarial (BCE)", "stage2_l1": "fused-vector L1", "disc_loss": "discriminator (BCE)",
    "stage3_loss": "prediction L1 (both branches)", "joint_loss": "joint total",
}
GRAD_STAGES = {"stage1": "Stage 1", "stage2": "Stage 2", "stage3": "Stage 3", "joint": "Joint"}
GROUPS = ("extractor", "diffusion", "unimodal_reconstructor", "fusion", "multimodal_reconstructor",
          "discriminator", "head")


def ordered(variants) -> list[str]:
    """Variants in their given order, the main variant first."""
    variants = list(dict.fromkeys(variants))
    return sorted(variants, key=lambda v: v != MAIN_VARIANT)


def seeds_text(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def variant_colors(variants: list[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab10").colors
    others = iter(c for i, c in enumerate(palette) if i != 0)
    return {v: palette[0] if v == MAIN_VARIANT else next(others, palette[7]) for v in variants}


def line_style(variant: str) -> dict:
    return {"linewidth": 2.2, "zorder": 5} if variant == MAIN_VARIANT else {"linewidth": 1.3, "zorder": 3}


def save(fig, out_dir: Path, name: str, tight: bool = True) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        target = out_dir / f"{name}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=200, bbox_inches="tight" if tight else None)
        paths.append(target)
    plt.close(fig)
    return paths


def placeholder(out_dir: Path, name: str, message: str) -> list[Path]:
    """A small figure that says why there is nothing to plot (the workflow still expects the file)."""
    fig = plt.figure(figsize=(6.0, 1.5))
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return save(fig, out_dir, name, tight=False)


def legend_below(fig, axes, ncol: int | None = None) -> None:
    """One legend for the figure, under the panels (outside the data)."""
    handles, labels = {}, []
    for ax in np.atleast_1d(axes).ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        fig.legend([handles[label] for label in labels], labels, loc="outside lower center",
                   ncol=ncol or min(len(labels), 4), frameon=False)


# ----------------------------------------------------------------------------- mr curves

def mr_curves(long: pd.DataFrame, dataset: str, out_dir: Path) -> list[Path]:
    """Acc-2 / F1 (non-0) vs nominal MR; x = 0 is the complete condition."""
    conditions = {"complete": 0.0, **{c: NOMINAL_MR[c] for c in MR_CONDITIONS}}
    part = long[long.condition.isin(conditions) & long.metric.isin(["acc2_non0", "f1_non0"])].dropna(subset=["value"])
    part = part.assign(x=part.condition.map(conditions), value=part.value * 100)
    stats = part.groupby(["variant", "metric", "x"])["value"].agg(["mean", "std", "count"]).reset_index()
    variants = ordered(long.variant)
    colors = variant_colors(variants)
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.6), sharex=True)
    for ax, metric, label in zip(axes, ("acc2_non0", "f1_non0"), ("Acc-2 (non-0) [%]", "F1 (non-0) [%]")):
        for variant in variants:
            curve = stats[(stats.variant == variant) & (stats.metric == metric)].sort_values("x")
            if curve.empty:
                continue
            std = curve["std"].fillna(0.0).to_numpy()
            if len(curve) == 1:  # complete-only rows (the complete baseline): a reference level
                ax.axhline(curve["mean"].iloc[0], color=colors[variant], linestyle=":", linewidth=1.3,
                           label=f"{variant} (MR 0 only)")
                continue
            ax.plot(curve.x, curve["mean"], marker="o", color=colors[variant], label=variant, **line_style(variant))
            ax.fill_between(curve.x, curve["mean"] - std, curve["mean"] + std, color=colors[variant], alpha=0.15,
                            linewidth=0)
        ax.set_xlabel("nominal missing rate (fraction of modality entries)")
        ax.set_ylabel(label)
        ax.set_xticks(list(conditions.values()))
        ax.set_xlim(-0.03, 0.73)
        ax.set_xticklabels(["0\n(complete)", *(f"{x:.1f}" for x in list(conditions.values())[1:])])
    n_seeds = long.groupby("variant").seed.nunique().max()
    fig.suptitle(f"{dataset}: accuracy under missing modalities (mean ± std over {seeds_text(n_seeds)})")
    legend_below(fig, axes)
    return save(fig, out_dir, "mr_curves")


# ----------------------------------------------------------------------------- training curves

def read_train_logs(paths: list) -> pd.DataFrame:
    frames = []
    for raw in paths:
        path = Path(raw)
        variant, seed = run_of(path)
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise RohydrError(f"train log {path}: no such file") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise RohydrError(f"train log {path}: not a readable CSV ({error})") from None
        if "epoch" not in frame.columns:
            raise RohydrError(f"train log {path}: no 'epoch' column; found {list(frame.columns)}")
        numeric = frame.apply(pd.to_numeric, errors="coerce")
        frames.append(numeric.assign(variant=variant, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["variant", "seed", "epoch"])
    return pd.concat(frames, ignore_index=True)


def columns_with_data(logs: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in logs.columns and logs[c].notna().any()]


def per_epoch(logs: pd.DataFrame, column: str) -> pd.DataFrame:
    """epoch, mean, std over seeds (seeds that stopped early drop out of later epochs)."""
    part = logs[["epoch", column]].dropna()
    return part.groupby("epoch")[column].agg(["mean", "std"]).reset_index()


def plot_band(ax, curve: pd.DataFrame, scale: float = 1.0, **style) -> None:
    mean, std = curve["mean"] * scale, curve["std"].fillna(0.0) * scale
    line, = ax.plot(curve.epoch, mean, **style)
    ax.fill_between(curve.epoch, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)


def use_log_scale(ax, values: list[pd.Series]) -> None:
    data = pd.concat(values).dropna()
    if len(data) and (data > 0).all() and data.max() / data.min() > 20:
        ax.set_yscale("log")


def main_variant(logs: pd.DataFrame) -> str:
    variants = list(dict.fromkeys(logs.variant))
    return MAIN_VARIANT if MAIN_VARIANT in variants else variants[0]


def training_panels(logs: pd.DataFrame) -> tuple[str, dict, dict]:
    main = main_variant(logs)
    mine = logs[logs.variant == main]
    losses = {title: columns_with_data(mine, cols) for title, cols in STAGE_LOSSES.items()}
    grads = {stage: columns_with_data(mine, [f"gradnorm_{stage}_{g}" for g in GROUPS]) for stage in GRAD_STAGES}
    return main, {t: c for t, c in losses.items() if c}, {s: c for s, c in grads.items() if c}


def training_curves(logs: pd.DataFrame, dataset: str, out_dir: Path) -> list[Path]:
    if logs.empty:
        return placeholder(out_dir, "training_curves", f"{dataset}: no training logs given")
    fig = plt.figure(figsize=(11.0, 9.0))
    main, losses, grads = training_panels(logs)
    mine = logs[logs.variant == main]
    n_seeds = mine.seed.nunique()
    rows = [r for r in (losses, grads) if r] + [["val"]]
    ncols = max(3, *(len(r) for r in rows))
    subfigs = fig.subfigures(len(rows), 1, height_ratios=[1.0] * len(rows))
    subfigs = np.atleast_1d(subfigs)
    row = 0
    if losses:
        axes = subfigs[row].subplots(1, ncols)
        for ax, (title, columns) in zip(axes, losses.items()):
            for column in columns:
                plot_band(ax, per_epoch(mine, column), label=LOSS_LABELS.get(column, column), marker=".")
            use_log_scale(ax, [mine[c] for c in columns])
            ax.set(title=title, xlabel="epoch", ylabel="training loss (epoch mean)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, fontsize=7)
        for ax in axes[len(losses):]:
            ax.set_visible(False)
        subfigs[row].suptitle(f"{main}: losses per stage (mean ± std over {seeds_text(n_seeds)})", fontsize=10)
        row += 1
    if grads:
        axes = subfigs[row].subplots(1, ncols, sharey=True)
        group_colors = dict(zip(GROUPS, plt.get_cmap("tab10").colors))
        for ax, (stage, columns) in zip(axes, grads.items()):
            for column in columns:
                group = column.removeprefix(f"gradnorm_{stage}_")
                plot_band(ax, per_epoch(mine, column), label=group.replace("_", " "), color=group_colors[group])
            ax.set_yscale("log")
            ax.set(title=GRAD_STAGES[stage], xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].set_ylabel("gradient L2 norm (log)")
        for ax in axes[len(grads):]:
            ax.set_visible(False)
        legend_below(subfigs[row], axes[:len(grads)], ncol=4)
        subfigs[row].suptitle(f"{main}: gradient norm of each parameter group per stage", fontsize=10)
        row += 1
    validation_row(subfigs[row], logs, main, ncols)
    fig.suptitle(f"{dataset}: training", fontsize=11, fontweight="bold")
    return save(fig, out_dir, "training_curves")


def validation_row(subfig, logs: pd.DataFrame, main: str, ncols: int) -> None:
    axes = subfig.subplots(1, ncols)
    mine = logs[logs.variant == main]
    ax = axes[0]
    for column, label in (("val_acc2", "Acc-2 (non-0)"), ("val_f1", "F1 (non-0)")):
        if columns_with_data(mine, [column]):
            plot_band(ax, per_epoch(mine, column), scale=100, label=label, marker=".")
    ax.set(title=f"{main}: validation", xlabel="epoch", ylabel="validation score [%]")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    variants = ordered(logs.variant)
    colors = variant_colors(variants)
    used = 1
    for column, title, label, scale in (("val_acc2", "all variants: validation Acc-2", "Acc-2 (non-0) [%]", 100),
                                        ("val_l1", "all variants: validation L1", "L1 / MAE (label units)", 1)):
        if used >= ncols or not columns_with_data(logs, [column]):
            continue
        ax = axes[used]
        used += 1
        for variant in variants:
            theirs = logs[logs.variant == variant]
            if columns_with_data(theirs, [column]):
                plot_band(ax, per_epoch(theirs, column), scale=scale, label=variant, color=colors[variant],
                          **line_style(variant))
        ax.set(title=title, xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[used:]:
        ax.set_visible(False)
    legend_below(subfig, axes[1:used], ncol=4)
    subfig.suptitle("validation (mean ± std over seeds)", fontsize=10)


# ----------------------------------------------------------------------------- recovery quality

def recovery_quality(long: pd.DataFrame, dataset: str, out_dir: Path) -> list[Path]:
    rec = long[long.metric.str.startswith("rec_") & long.condition.isin(MISSING_PATTERNS)].dropna(subset=["value"])
    stats = rec.groupby(["variant", "condition", "metric"])["value"].agg(["mean", "std"]).reset_index()
    variants = [v for v in ordered(long.variant) if v in set(stats.variant)]
    colors = variant_colors(ordered(long.variant))
    if not variants:
        return placeholder(out_dir, "recovery_quality", f"{dataset}: no recovery metrics in the eval files")
    fig, axes = plt.subplots(2, 3, figsize=(10.0, 5.6), sharey="row")
    width = 0.8 / len(variants)
    for col, modality in enumerate(MODALITIES):
        slot = MODALITIES.index(modality)
        patterns = [p for p in MISSING_PATTERNS if not PATTERNS[p][slot]]  # patterns where it is recovered
        x = np.arange(len(patterns))
        for row, (kind, label) in enumerate((("mse", "MSE to true features (log)"), ("cos", "cosine similarity"))):
            ax = axes[row, col]
            for i, variant in enumerate(variants):
                part = stats[(stats.variant == variant) & (stats.metric == f"rec_{kind}_{modality}")]
                part = part.set_index("condition").reindex(patterns)
                std = part["std"].fillna(0).to_numpy()
                # MSE is drawn on a log axis (variants differ by orders of magnitude): keep bars above 0
                lower = np.minimum(std, 0.9 * part["mean"].to_numpy()) if kind == "mse" else std
                ax.bar(x + (i - (len(variants) - 1) / 2) * width, part["mean"], width, yerr=[lower, std],
                       color=colors[variant], label=variant, capsize=2, error_kw={"linewidth": 0.8})
            if kind == "mse":
                ax.set_yscale("log")
            ax.set_xticks(x, [f"avail. {PATTERN_HEADERS[p]}" for p in patterns])
            ax.grid(axis="x", visible=False)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"recovered {modality} ({MODALITY_KEYS[modality]})")
            else:
                ax.set_xlabel("available modalities")
    n_seeds = long.groupby("variant").seed.nunique().max()
    fig.suptitle(f"{dataset}: recovered vs true extracted features, mean ± std over {seeds_text(n_seeds)}")
    legend_below(fig, axes, ncol=min(len(variants), 5))
    return save(fig, out_dir, "recovery_quality")


# ----------------------------------------------------------------------------- command

def plots(dataset: str, eval_paths: list, train_logs: list, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    long = read_evals(eval_paths)
    logs = read_train_logs(train_logs)
    with plt.rc_context(STYLE):
        return [*mr_curves(long, dataset, out_dir), *training_curves(logs, dataset, out_dir),
                *recovery_quality(long, dataset, out_dir)]


def cli_plots(args) -> int:
    paths = plots(args.dataset, args.eval, args.train_logs, args.out_dir)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0

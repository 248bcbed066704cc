"""`rohydr plots`: paper-style figures (PNG at 200 dpi and PDF) from eval.csv and train_log.csv files.

- mr_curves:         Acc-2 and F1 (non-0) against the nominal missing rate (0 = complete), one row per
                     metric; left the main variant against the baselines and the quoted literature
                     (dashed, hollow markers, "(paper)"), right against the other variants (ablations, peers).
                     The main variant has a ± std band, the others ± std error bars;
- training_curves:   per-stage losses, per-stage gradient norms of each parameter group (log scale),
                     validation Acc-2 of the main variant, and validation Acc-2 / L1 of every variant;
- recovery_quality:  MSE and centred cosine similarity of recovered vs true features, per recovered modality and
                     missing pattern: one point per method with its ± std interval over seeds.
Which run is the main variant, which are baselines and their display names come from the command line
(rohydr/reporting/methods.py), as do the colours: one per method, the same in every figure. Paths give
run, protocol and seed: results/{dataset}/{run}/{protocol}/seed{seed}/{eval,train_log}.csv. Each figure
shows one protocol per run: the MR curves the per-MR models where a run has them (the literature's
protocol), the other figures the all-pattern model. Columns that a run does not log (absent, empty or
NaN) are skipped; a panel without any data is not drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rohydr.core.errors import RohydrError  # noqa: E402
from rohydr.core.io import atomic_path  # noqa: E402
from rohydr.core.vocabulary import (  # noqa: E402
    CONVERGED,
    GROUPS,
    MISSING_PATTERNS,
    MODALITIES,
    MODALITY_KEYS,
    MR_CONDITIONS,
    NOMINAL_MR,
    PATTERNS,
    TRAINING_CONDITION,
)
from rohydr.core.layout import (  # noqa: E402
    COMPARISON_FIGURE,
    MR_CURVES_FIGURE,
    PER_MR,
    RECOVERY_FIGURE,
    TRAINING_CURVES_FIGURE,
)
from rohydr.reporting.methods import COMPONENT_CMAP, Methods, literature_colors  # noqa: E402
from rohydr.reporting.render import NOT_CONVERGED  # noqa: E402
from rohydr.reporting.tables import (  # noqa: E402
    ALL_PATTERNS,
    COMPLETE_DATA,
    PATTERN_HEADERS,
    load_literature,
    read_evals,
    run_of,
)

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
GRAD_STAGE_TITLES = {"stage1": "Stage 1", "stage2": "Stage 2", "stage3": "Stage 3", "joint": "Joint"}
GROUP_DASHES = ("-", "--", "-.", ":")
PAIR_LABELS = {"acc2_non0": "Acc-2 (non-0) [%]", "f1_non0": "F1 (non-0) [%]"}


BASELINE_MARKERS = ("s", "^", "D", "v", "P")
BASELINE_DASHES = ("--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 2)))


@dataclass(frozen=True)
class Look:
    """The methods of one `rohydr plots` call and their colours, shared by its figures."""
    methods: Methods
    colors: dict[str, str]
    unconverged: frozenset[str] = frozenset()  # runs with a model that did not converge: labels marked

    def label(self, run: str) -> str:
        label = self.methods.label(run)
        return f"{label} {NOT_CONVERGED}" if run in self.unconverged else label

    def line(self, run: str) -> dict:
        main, index = self.methods.role(run) == "main", self._baseline_index(run)
        dash = "-" if index is None else BASELINE_DASHES[index % len(BASELINE_DASHES)]
        return {"color": self.colors[run], "linewidth": 2.2 if main else 1.3, "zorder": 5 if main else 3,
                "linestyle": dash}

    def marker(self, run: str) -> str:
        """Baselines (greys) are told apart by marker and line style as well as by colour."""
        index = self._baseline_index(run)
        return "o" if index is None else BASELINE_MARKERS[index % len(BASELINE_MARKERS)]

    def _baseline_index(self, run: str) -> int | None:
        baselines = [r for r in self.colors if self.methods.role(r) == "baseline"]
        return baselines.index(run) if run in baselines else None


def component_colors(names) -> dict[str, tuple]:
    """Colours for the parts of one model (loss terms, parameter groups): never a method's colour."""
    names = list(names)
    cmap = plt.get_cmap(COMPONENT_CMAP)
    return {name: cmap(x) for name, x in zip(names, np.linspace(0.0, 0.85, max(len(names), 2)))}


def seeds_text(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


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
        marked = any(label.endswith(NOT_CONVERGED) for label in labels)
        fig.legend([handles[label] for label in labels], labels, loc="outside lower center",
                   ncol=ncol or min(len(labels), 4), frameon=False,
                   title=f"{NOT_CONVERGED} not converged: a model behind it reached max_epochs still improving"
                   if marked else None, title_fontsize=8)


# ----------------------------------------------------------------------------- mr curves

MAX_ERRORBAR_LINES = 3  # more lines with error bars in one panel blur into each other
MR_X = {"complete": 0.0, **{c: NOMINAL_MR[c] for c in MR_CONDITIONS}}


def mr_stats(long: pd.DataFrame) -> pd.DataFrame:
    """variant, metric, x (nominal MR, 0 = complete), mean, std over seeds, in %."""
    part = long[long.condition.isin(MR_X) & long.metric.isin(PAIR_LABELS)].dropna(subset=["value"])
    part = part.assign(x=part.condition.map(MR_X), value=part.value * 100)
    return part.groupby(["variant", "metric", "x"])["value"].agg(["mean", "std"]).reset_index()


def literature_curves(peers: pd.DataFrame) -> pd.DataFrame:
    """method, metric, x, mean of the quoted numbers (already in %)."""
    part = peers[peers.condition.isin(MR_X)]
    long = part.melt(id_vars=["method", "condition"], value_vars=list(PAIR_LABELS), var_name="metric",
                     value_name="mean").dropna(subset=["mean"])
    return long.assign(x=long.condition.map(MR_X), mean=long["mean"].astype(float))


def draw_run(ax, look: Look, run: str, curve: pd.DataFrame, offset: float, spread: bool) -> None:
    """The main variant as a line with a band; others with error bars where `spread` (few lines in the
    panel), else as plain lines; a run scored on complete inputs only as a point and a level."""
    std = curve["std"].fillna(0.0).to_numpy()
    style = look.line(run)
    if len(curve) == 1 and curve.x.iloc[0] == 0.0:
        ax.axhline(curve["mean"].iloc[0], color=style["color"], linestyle=":", linewidth=1.2)
        ax.errorbar([0.0], curve["mean"], yerr=std, marker="s", markersize=6, capsize=3, linestyle="none",
                    color=style["color"], label=f"{look.label(run)}: MR 0 only (dotted: its level)")
        return
    if look.methods.role(run) == "main":
        ax.plot(curve.x, curve["mean"], marker=look.marker(run), label=look.label(run), **style)
        ax.fill_between(curve.x, curve["mean"] - std, curve["mean"] + std, color=style["color"], alpha=0.18,
                        linewidth=0)
        return
    if spread:
        ax.errorbar(curve.x + offset, curve["mean"], yerr=std, marker=look.marker(run), capsize=2, elinewidth=0.8,
                    label=look.label(run), **style)
    else:
        ax.plot(curve.x, curve["mean"], marker=look.marker(run), markersize=3, label=look.label(run), **style)


def draw_literature(ax, quoted: pd.DataFrame, colors: dict) -> None:
    for method, curve in quoted.groupby("method", sort=False):
        curve = curve.sort_values("x")
        ax.plot(curve.x, curve["mean"], linestyle="--", marker="o", markerfacecolor="white", markersize=5,
                color=colors[method], linewidth=1.2, label=f"{method} (paper)", zorder=4)


def mr_panels(look: Look, runs: list[str], has_literature: bool) -> list[tuple[str, list[str]]]:
    """(title, runs) per column: the main variant against the baselines (and literature), and against
    the other variants."""
    main = [r for r in runs if look.methods.role(r) == "main"]
    others = {role: [r for r in runs if look.methods.role(r) == role] for role in ("baseline", "variant")}
    name = f"{look.label(main[0])} " if main else ""
    panels = []
    if others["baseline"] or has_literature or not others["variant"]:
        panels.append((f"{name}vs baselines" + (" and literature" if has_literature else ""),
                       main + others["baseline"]))
    if others["variant"]:
        panels.append((f"{name}vs the other variants (ablations, peers)", main + others["variant"]))
    return panels


def panel_protocols(long: pd.DataFrame, members: list[str]) -> tuple[pd.DataFrame, str]:
    """The panel's MR scores from ONE training protocol, so that its lines compare like with like:
    per-MR models when every trained member has them, else the all-pattern models."""
    part = long[long.variant.isin(members)]
    trained = [set(group.protocol) - {COMPLETE_DATA} for _, group in part.groupby("variant")]
    trained = [protocols for protocols in trained if protocols]
    if trained and all(PER_MR in protocols for protocols in trained):
        return one_protocol_per_run(part, (PER_MR, COMPLETE_DATA)), "per-MR models"
    return one_protocol_per_run(part, (ALL_PATTERNS, COMPLETE_DATA)), "all-pattern models"


def mr_curves(long: pd.DataFrame, dataset: str, out_dir: Path, look: Look, peers: pd.DataFrame,
              compared: list[str] | None = None) -> list[Path]:
    """Acc-2 / F1 (non-0) vs nominal MR; x = 0 is the complete condition. With `compared`: the figure
    "comparison", one panel with those runs, the baselines and the literature."""
    name = MR_CURVES_FIGURE if compared is None else COMPARISON_FIGURE
    runs = [r for r in look.methods.ordered(long.variant) if r in set(mr_stats(long).variant)]
    if not runs:
        return placeholder(out_dir, name, f"{dataset}: no Acc-2 / F1 under missing rates in the eval files")
    quoted = literature_curves(peers)
    quoted_colors = literature_colors(quoted.method)
    if compared is None:
        panels = mr_panels(look, runs, not quoted.empty)
    else:
        baselines = [r for r in runs if look.methods.role(r) == "baseline" and r not in compared]
        members = [r for r in compared if r in runs]
        title = ", ".join(look.label(r) for r in members) + " vs baselines"
        panels = [(title + (" and literature" if not quoted.empty else ""), members + baselines)]
    width = 4.6 * len(panels) + 0.6 if compared is None else 7.6  # one panel, room for the title and legend
    fig, axes = plt.subplots(2, len(panels), figsize=(width, 6.6), sharex=True, sharey="row",
                             squeeze=False)
    for col, (title, members) in enumerate(panels):
        scores, protocol = panel_protocols(long, members)
        stats = mr_stats(scores)
        spread = len(members) <= MAX_ERRORBAR_LINES
        offsets = dict(zip(members, np.linspace(-0.01, 0.01, len(members))))
        for row, metric in enumerate(PAIR_LABELS):
            ax = axes[row, col]
            for run in members:
                curve = stats[(stats.variant == run) & (stats.metric == metric)].sort_values("x")
                if not curve.empty:
                    draw_run(ax, look, run, curve, offsets[run], spread)
            if col == 0:
                draw_literature(ax, quoted[quoted.metric == metric], quoted_colors)
                ax.set_ylabel(PAIR_LABELS[metric])
            ax.set_xticks(list(MR_X.values()), ["0\n(complete)", *(f"{x:.1f}" for x in list(MR_X.values())[1:])])
            ax.set_xlim(-0.04, 0.74)
            if row == 0:
                note = "" if spread else f"\n(± std: {look.label(members[0])} only; all in the tables)"
                ax.set_title(f"{title}, {protocol}{note}")
            else:
                ax.set_xlabel("nominal missing rate (fraction of modality entries)")
        axes[1, col].legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    n_seeds = long.groupby("variant").seed.nunique().max()
    fig.suptitle(f"{dataset}: accuracy under missing modalities (mean ± std over {seeds_text(n_seeds)})")
    return save(fig, out_dir, name)


# ----------------------------------------------------------------------------- training curves

def read_train_logs(paths: list) -> pd.DataFrame:
    frames = []
    for raw in paths:
        path = Path(raw)
        variant, protocol, seed = run_of(path, "train log")
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise RohydrError(f"train log {path}: no such file") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise RohydrError(f"train log {path}: not a readable CSV ({error})") from None
        if "epoch" not in frame.columns:
            raise RohydrError(f"train log {path}: no 'epoch' column; found {list(frame.columns)}")
        numeric = frame.apply(pd.to_numeric, errors="coerce")
        frames.append(numeric.assign(variant=variant, protocol=protocol, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["variant", "protocol", "seed", "epoch"])
    return pd.concat(frames, ignore_index=True)


def one_protocol_per_run(frame: pd.DataFrame, preferred: tuple[str, ...]) -> pd.DataFrame:
    """The rows of each run's first protocol in `preferred` that it has (others: its first one)."""
    keep = []
    for run, part in frame.groupby("variant", sort=False):
        protocols = list(dict.fromkeys(part.protocol))
        chosen = next((p for p in preferred if p in protocols), protocols[0])
        keep.append(part[part.protocol == chosen])
    return pd.concat(keep, ignore_index=True) if keep else frame


def columns_with_data(logs: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in logs.columns and logs[c].notna().any()]


def per_epoch(logs: pd.DataFrame, column: str) -> pd.DataFrame:
    """epoch, mean, std over seeds (seeds that stopped early drop out of later epochs)."""
    part = logs[["epoch", column]].dropna()
    return part.groupby("epoch")[column].agg(["mean", "std"]).reset_index()


def plot_band(ax, curve: pd.DataFrame, scale: float = 1.0, band: bool = True, **style) -> None:
    mean, std = curve["mean"] * scale, curve["std"].fillna(0.0) * scale
    line, = ax.plot(curve.epoch, mean, **style)
    if band:
        ax.fill_between(curve.epoch, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)


def use_log_scale(ax, values: list[pd.Series]) -> None:
    data = pd.concat(values).dropna()
    if len(data) and (data > 0).all() and data.max() / data.min() > 20:
        ax.set_yscale("log")


def training_panels(logs: pd.DataFrame, look: Look) -> tuple[str, dict, dict]:
    main = look.methods.main_of(logs.variant)
    mine = logs[logs.variant == main]
    losses = {title: columns_with_data(mine, cols) for title, cols in STAGE_LOSSES.items()}
    grads = {stage: columns_with_data(mine, [f"gradnorm_{stage}_{g}" for g in GROUPS]) for stage in GRAD_STAGE_TITLES}
    return main, {t: c for t, c in losses.items() if c}, {s: c for s, c in grads.items() if c}


def training_curves(logs: pd.DataFrame, dataset: str, out_dir: Path, look: Look) -> list[Path]:
    if logs.empty:
        return placeholder(out_dir, TRAINING_CURVES_FIGURE, f"{dataset}: no training logs given")
    fig = plt.figure(figsize=(11.0, 9.0))
    main, losses, grads = training_panels(logs, look)
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
            colors = component_colors(columns)
            for column in columns:
                plot_band(ax, per_epoch(mine, column), label=LOSS_LABELS.get(column, column), marker=".",
                          color=colors[column])
            use_log_scale(ax, [mine[c] for c in columns])
            ax.set(title=title, xlabel="epoch", ylabel="training loss (epoch mean)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False, fontsize=7)
        for ax in axes[len(losses):]:
            ax.set_visible(False)
        subfigs[row].suptitle(f"{look.label(main)}: losses per stage (mean ± std over {seeds_text(n_seeds)})",
                              fontsize=10)
        row += 1
    if grads:
        axes = subfigs[row].subplots(1, ncols, sharey=True)
        group_colors = component_colors(GROUPS)
        for ax, (stage, columns) in zip(axes, grads.items()):
            for column in columns:
                group = column.removeprefix(f"gradnorm_{stage}_")
                plot_band(ax, per_epoch(mine, column), label=group.replace("_", " "),
                          color=group_colors[group], linestyle=GROUP_DASHES[GROUPS.index(group) % len(GROUP_DASHES)])
            ax.set_yscale("log")
            ax.set(title=GRAD_STAGE_TITLES[stage], xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].set_ylabel("gradient L2 norm (log)")
        for ax in axes[len(grads):]:
            ax.set_visible(False)
        legend_below(subfigs[row], axes[:len(grads)], ncol=4)
        subfigs[row].suptitle(f"{look.label(main)}: gradient norm of each parameter group per stage", fontsize=10)
        row += 1
    validation_row(subfigs[row], logs, main, ncols, look)
    fig.suptitle(f"{dataset}: training", fontsize=11, fontweight="bold")
    return save(fig, out_dir, TRAINING_CURVES_FIGURE)


def validation_row(subfig, logs: pd.DataFrame, main: str, ncols: int, look: Look) -> None:
    axes = subfig.subplots(1, ncols)
    mine = logs[logs.variant == main]
    ax = axes[0]
    for column, label, dash in (("val_acc2", "Acc-2 (non-0)", "-"), ("val_f1", "F1 (non-0)", "--")):
        if columns_with_data(mine, [column]):
            plot_band(ax, per_epoch(mine, column), scale=100, label=label, marker=".", linestyle=dash,
                      color=look.colors[main])
    ax.set(title=f"{look.label(main)}: validation", xlabel="epoch", ylabel="validation score [%]")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    variants = look.methods.ordered(logs.variant)
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
                plot_band(ax, per_epoch(theirs, column), scale=scale, label=look.label(variant),
                          band=variant == main, **look.line(variant))
        ax.set(title=title, xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[used:]:
        ax.set_visible(False)
    legend_below(subfig, axes[1:used], ncol=4)
    subfig.suptitle(f"validation (mean ± std over seeds; all variants: band for {look.label(main)} only)", fontsize=10)


# ----------------------------------------------------------------------------- recovery quality

REC_KINDS = {"mse": "MSE to true features", "cos": "centred cosine to true features"}


def recovery_quality(long: pd.DataFrame, dataset: str, out_dir: Path, look: Look) -> list[Path]:
    rec = long[long.metric.str.startswith("rec_") & long.condition.isin(MISSING_PATTERNS)].dropna(subset=["value"])
    stats = rec.groupby(["variant", "condition", "metric"])["value"].agg(["mean", "std"]).reset_index()
    runs = [r for r in look.methods.ordered(long.variant) if r in set(stats.variant)]
    if not runs:
        return placeholder(out_dir, RECOVERY_FIGURE, f"{dataset}: no recovery metrics in the eval files")
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 6.0), sharey="row")
    offsets = np.linspace(-0.3, 0.3, len(runs)) if len(runs) > 1 else [0.0]
    for col, modality in enumerate(MODALITIES):
        slot = MODALITIES.index(modality)
        patterns = [p for p in MISSING_PATTERNS if not PATTERNS[p][slot]]  # patterns where it is recovered
        x = np.arange(len(patterns))
        for row, kind in enumerate(REC_KINDS):
            ax = axes[row, col]
            for offset, run in zip(offsets, runs):
                part = stats[(stats.variant == run) & (stats.metric == f"rec_{kind}_{modality}")]
                part = part.set_index("condition").reindex(patterns)
                ax.errorbar(x + offset, part["mean"], yerr=part["std"].fillna(0.0), marker=look.marker(run),
                            linestyle="none",
                            capsize=2, elinewidth=0.9, markersize=4.5, label=look.label(run),
                            color=look.colors[run], zorder=look.line(run)["zorder"])
            if kind == "mse":
                use_log_scale(ax, [stats[stats.metric.str.startswith("rec_mse_")]["mean"]])
            for edge in x[:-1] + 0.5:
                ax.axvline(edge, color="0.85", linewidth=0.6)
            ax.set_xticks(x, [f"avail. {PATTERN_HEADERS[p]}" for p in patterns])
            ax.set_xlim(-0.5, len(patterns) - 0.5)
            ax.grid(axis="x", visible=False)
            if col == 0:
                ax.set_ylabel(REC_KINDS[kind] + (" (log scale)" if ax.get_yscale() == "log" else ""))
            if row == 0:
                ax.set_title(f"recovered {MODALITY_KEYS[modality]} ({modality})")
            else:
                ax.set_xlabel("available modalities")
    n_seeds = long.groupby("variant").seed.nunique().max()
    fig.suptitle(f"{dataset}: recovered vs true extracted features (mean ± std over {seeds_text(n_seeds)})")
    legend_below(fig, axes, ncol=min(len(runs), 5))
    return save(fig, out_dir, RECOVERY_FIGURE)


# ----------------------------------------------------------------------------- command

def unconverged_runs(long: pd.DataFrame) -> frozenset[str]:
    """Runs with at least one model (any protocol, any seed) whose training did not converge."""
    trained = long[(long.condition == TRAINING_CONDITION) & (long.metric == CONVERGED)]
    return frozenset(trained[trained.value < 1].variant)


def plots(dataset: str, eval_paths: list, train_logs: list, out_dir, methods: Methods | None = None,
          literature: str = "auto", peers_key: str | None = None, comparison: list[str] | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    methods = methods or Methods()
    long = read_evals(eval_paths)
    logs = one_protocol_per_run(read_train_logs(train_logs), (ALL_PATTERNS,))
    peers = load_literature(literature, peers_key)
    runs = [*dict.fromkeys([*long.variant, *logs.variant])]
    methods.check(runs)
    look = Look(methods, methods.colors(runs), unconverged_runs(long))
    patterns = one_protocol_per_run(long, (ALL_PATTERNS, COMPLETE_DATA))
    with plt.rc_context(STYLE):
        paths = [*mr_curves(long, dataset, out_dir, look, peers), *training_curves(logs, dataset, out_dir, look),
                 *recovery_quality(patterns, dataset, out_dir, look)]
        if comparison is not None:
            compared = comparison or [methods.main_of(runs)]
            paths += mr_curves(long, dataset, out_dir, look, peers, compared)
        return paths

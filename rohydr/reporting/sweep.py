"""`rohydr sweep-plot`: each method's average Acc-2 over the missing patterns against the synthetic data's
redundancy, from the missing-pattern tables of the swept datasets (their long CSVs), with the 95 %
intervals; the Bayes optimum dashed."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rohydr.core.errors import RohydrError  # noqa: E402
from rohydr.core.io import atomic_path, write_text_atomic  # noqa: E402
from rohydr.reporting.methods import BASELINE_COLORS, MAIN_COLOR, VARIANT_COLORS  # noqa: E402

STYLE = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "savefig.dpi": 200, "pdf.fonttype": 42, "figure.constrained_layout.use": True}


def sweep_points(tables: list, redundancy: list[float]) -> pd.DataFrame:
    """redundancy, row, kind, mean, ci_low, ci_high: the Avg. Acc-2 (non-0) of every row of each table."""
    if len(tables) != len(redundancy):
        raise RohydrError(f"sweep-plot: {len(tables)} tables for {len(redundancy)} redundancy values")
    frames = []
    for path, value in zip(tables, redundancy):
        try:
            table = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise RohydrError(f"sweep-plot: table {path}: not a readable CSV ({error})") from None
        columns = {"row", "kind", "condition", "metric", "mean", "ci_low", "ci_high"}
        if not columns <= set(table.columns):
            raise RohydrError(f"sweep-plot: table {path} lacks column(s) {sorted(columns - set(table.columns))}; "
                              "expected the missing_patterns.csv of `rohydr aggregate`")
        part = table[(table.condition == "avg_patterns") & (table.metric == "acc2_non0") & (table.kind != "quoted")]
        if part.empty:
            raise RohydrError(f"sweep-plot: table {path} has no Avg. Acc-2 (non-0); expected missing_patterns.csv")
        frames.append(part.assign(redundancy=value)[["redundancy", "row", "kind", "mean", "ci_low", "ci_high"]])
    return pd.concat(frames, ignore_index=True)


def sweep_plot(tables: list, redundancy: list[float], out: str, main_label: str | None = None) -> list[Path]:
    points = sweep_points(tables, redundancy)
    others = iter(VARIANT_COLORS + BASELINE_COLORS)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, curve in points.groupby("row", sort=False):
            curve = curve.sort_values("redundancy")
            bound = (curve.kind == "bound").all()
            color = "black" if bound else MAIN_COLOR if label == main_label else next(others, "0.5")
            ax.plot(curve.redundancy, curve["mean"], marker="o", markersize=3.5, color=color, label=label,
                    linestyle="--" if bound else "-", linewidth=2.2 if label == main_label else 1.3)
            ax.fill_between(curve.redundancy, curve.ci_low, curve.ci_high, color=color, alpha=0.12, linewidth=0)
        ax.set_xlabel("redundancy r of the synthetic data (0: nothing to recover, 1: fully determined)")
        ax.set_ylabel("Acc-2 (non-0) [%], mean over the six missing patterns")
        ax.set_title("Score against redundancy (bands: 95 % intervals over test rows and seeds)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False, fontsize=7.5)
        paths = save_figure(fig, out)
    write_text_atomic(f"{out}.csv", points.to_csv(index=False, float_format="%.6g"))
    return [*paths, Path(f"{out}.csv")]


def save_figure(fig, stem: str) -> list[Path]:
    """stem.png and stem.pdf, each written whole or not at all; the figure is closed."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(f"{stem}.{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext)
        paths.append(path)
    plt.close(fig)
    return paths

"""`rohydr budget-plot`: what the generators' optimizer steps buy. For each dataset of the budget sweep (a
synthetic dataset and its copies at other redundancies) and each run trained with generator stages of
several budgets: the recovered features' centred cosine with the truth, their MSE relative to a reference
fill, and Acc-2 (non-0) averaged over the six missing patterns, against the generator steps the run took;
the reference fills and the Bayes optimum beside them.

Intervals are those of the tables (`uncertainty`): bootstrap over the test rows, plus the spread over
seeds when there are several. The manifest (JSON, written by the workflow) names every file:

    {"mse_reference": RUN, "main": RUN,
     "datasets": [{"dataset": NAME, "redundancy": R, "masks": [H5, ...], "optimum": CSV_GZ | null,
                   "points": [{"run": RUN, "label": LABEL, "generator_epochs": E, "seed": S,
                               "predictions": CSV_GZ, "train_log": CSV}, ...],
                   "references": [{"run": RUN, "label": LABEL, "seed": S, "predictions": CSV_GZ}, ...]}]}
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rohydr.core.errors import RohydrError  # noqa: E402
from rohydr.core.io import write_text_atomic  # noqa: E402
from rohydr.core.layout import ALL_PATTERNS  # noqa: E402
from rohydr.core.vocabulary import CONVERGED, GENERATOR_STEPS, MISSING_PATTERNS, MODALITIES, PATTERNS  # noqa: E402
from rohydr.reporting.evidence import OPTIMUM, Evidence  # noqa: E402
from rohydr.reporting.methods import BASELINE_COLORS, MAIN_COLOR, VARIANT_COLORS  # noqa: E402
from rohydr.reporting.sweep import save_figure  # noqa: E402
from rohydr.reporting.uncertainty import Estimate, estimate  # noqa: E402

PLATEAU_SHARE = 0.9
# What the sweep reports, in its CSV and its figure's columns.
COSINE, MSE_RATIO, ACC2 = "rec_cos", "rec_mse_rel", "acc2_non0"
SAMPLE_BOUND = "rec_cos_single_sample"  # of the reference that approximates the conditional mean
METRIC_LABELS = {COSINE: "centred cosine, recovered vs true (mean of l, a, v)",
                 MSE_RATIO: "recovery MSE / {reference}'s (mean of l, a, v)",
                 ACC2: "Acc-2 (non-0) [%], mean of the six missing patterns"}
REFERENCE_STYLES = (("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"))
STYLE = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "savefig.dpi": 200, "pdf.fonttype": 42, "figure.constrained_layout.use": True}


def load_manifest(path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise RohydrError(f"budget-plot: manifest {path}: not a readable JSON file ({error})") from None
    for key in ("mse_reference", "datasets"):
        if key not in manifest:
            raise RohydrError(f"budget-plot: manifest {path} lacks key {key!r}")
    return manifest


def read_recovery(path) -> dict[str, pd.DataFrame]:
    """pattern -> its rows' rec_mse_{m} and rec_cos_{m} (a predictions.csv.gz of `rohydr evaluate`)."""
    columns = ["pattern", *(f"rec_{kind}_{m}" for kind in ("mse", "cos") for m in MODALITIES)]
    try:
        with gzip.open(path, "rt") as handle:
            table = pd.read_csv(io.StringIO(handle.read()), usecols=columns)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as error:
        raise RohydrError(f"budget-plot: predictions {path}: not a readable predictions.csv.gz ({error})") from None
    return {pattern: rows.reset_index(drop=True) for pattern, rows in table.groupby("pattern", sort=False)}


def recovery_values(by_pattern: dict[str, pd.DataFrame], kind: str, counts: np.ndarray, where: str,
                    squared: bool = False):
    """Per modality, the mean over the patterns that miss it of the rows' rec_{kind} (of its square per pattern
    with `squared`): (3,) and resampled (3, R)."""
    point, resampled = [], []
    for slot, m in enumerate(MODALITIES):
        per_pattern = []
        for pattern in (p for p in MISSING_PATTERNS if not PATTERNS[p][slot]):
            if pattern not in by_pattern:
                raise RohydrError(f"budget-plot: {where}: no predictions under pattern {pattern!r}")
            values = by_pattern[pattern][f"rec_{kind}_{m}"].to_numpy(np.float64)
            if not np.isfinite(values).all():
                raise RohydrError(f"budget-plot: {where}: rec_{kind}_{m} under pattern {pattern!r} is not finite "
                                  "for every row (no recovery to judge?)")
            mean, resampled_mean = values.mean(), counts @ values / counts.sum(axis=1)
            per_pattern.append((mean ** 2, resampled_mean ** 2) if squared else (mean, resampled_mean))
        point.append(np.mean([p for p, _ in per_pattern]))
        resampled.append(np.mean([r for _, r in per_pattern], axis=0))
    return np.array(point), np.stack(resampled)


def generator_steps(path) -> tuple[int, bool]:
    """(the optimizer steps with a generator loss, whether the training converged) from a train_log.csv."""
    try:
        log = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RohydrError(f"budget-plot: train log {path}: not a readable CSV ({error})") from None
    if GENERATOR_STEPS not in log.columns or CONVERGED not in log.columns or log.empty:
        raise RohydrError(f"budget-plot: train log {path} lacks column {GENERATOR_STEPS!r} or {CONVERGED!r}: "
                          "written by an older rohydr? Train it again")
    return int(log[GENERATOR_STEPS].sum()), bool(log[CONVERGED].iloc[-1] == 1)


class SweepData:
    """One dataset of the sweep: its masks, optimum and every source's predictions, read once."""

    def __init__(self, entry: dict):
        self.entry = entry
        self.sources = {}  # (key, seed) -> file entry
        paths = {}
        for kind in ("points", "references"):
            for item in entry[kind]:
                key = source_key(item)
                self.sources[(key, item["seed"])] = item
                paths[(key, ALL_PATTERNS, item["seed"])] = Path(item["predictions"])
        self.evidence = Evidence.load(entry["masks"], paths, entry.get("optimum"))
        self.recovery = {key: read_recovery(item["predictions"]) for key, item in self.sources.items()}
        self._values = {}

    def values(self, key, seed: int, kind: str, squared: bool = False):
        """recovery_values of one source and seed, computed once (the reference's serve every point)."""
        found = (key, seed, kind, squared)
        if found not in self._values:
            self._values[found] = recovery_values(self.recovery[(key, seed)], kind, self.evidence.counts,
                                                  f"{key} seed {seed}", squared)
        return self._values[found]

    def seeds(self, key) -> list[int]:
        return sorted(seed for k, seed in self.sources if k == key)

    def sample_bound(self, key) -> dict[str, Estimate]:
        """What a perfect single sample of p(missing | available) reaches, about: the square of the centred cosine
        of the conditional mean, which `key` approximates (per pattern, then averaged as the cosine is)."""
        found = [self.values(key, seed, "cos", squared=True) for seed in self.seeds(key)]
        return {SAMPLE_BOUND: estimate(np.array([p.mean() for p, _ in found]), np.stack([r.mean(axis=0) for _, r in found]))}

    def recovery_estimates(self, key, mse_reference) -> dict[str, Estimate]:
        """rec_cos and rec_mse_rel, per modality and as their mean: {metric: Estimate}."""
        out = {}
        cos = [self.values(key, seed, "cos") for seed in self.seeds(key)]
        mse = [self.values(key, seed, "mse") for seed in self.seeds(key)]
        missing = sorted(set(self.seeds(key)) - set(self.seeds(mse_reference)))
        if missing:
            raise RohydrError(f"budget-plot: dataset {self.entry['dataset']}: no predictions of mse_reference "
                              f"{mse_reference!r} for seed(s) {missing}, which {key} has")
        ref = [self.values(mse_reference, seed, "mse") for seed in self.seeds(key)]
        for slot, m in enumerate(MODALITIES):
            out[f"{COSINE}_{m}"] = estimate(np.array([p[slot] for p, _ in cos]), np.stack([r[slot] for _, r in cos]))
            out[f"{MSE_RATIO}_{m}"] = estimate(np.array([p[slot] / q[slot] for (p, _), (q, _) in zip(mse, ref)]),
                                               np.stack([r[slot] / s[slot] for (_, r), (_, s) in zip(mse, ref)]))
        out[COSINE] = estimate(np.array([p.mean() for p, _ in cos]), np.stack([r.mean(axis=0) for _, r in cos]))
        out[MSE_RATIO] = estimate(np.array([(p / q).mean() for (p, _), (q, _) in zip(mse, ref)]),
                                  np.stack([(r / s).mean(axis=0) for (_, r), (_, s) in zip(mse, ref)]))
        return out


def source_key(item: dict) -> str:
    return f"{item['run']}@{item['generator_epochs']}" if "generator_epochs" in item else item["run"]


def training_of(data: SweepData, key: str) -> dict:
    """A sweep point's generator steps (mean over seeds) and whether every seed's training converged."""
    found = [generator_steps(data.sources[(key, seed)]["train_log"]) for seed in data.seeds(key)]
    return {GENERATOR_STEPS: float(np.mean([steps for steps, _ in found])),
            CONVERGED: int(all(converged for _, converged in found))}


def scaled(metric: str, found) -> dict:
    scale = 100 if metric == ACC2 else 1
    return {"metric": metric, "mean": scale * found.mean, "ci_low": scale * found.low, "ci_high": scale * found.high}


def dataset_rows(entry: dict, mse_reference: str, conditional_mean: str | None = None) -> list[dict]:
    """The long rows of one dataset: every point and reference, each metric with its interval; the optimum."""
    data = SweepData(entry)
    if not data.seeds(mse_reference):
        raise RohydrError(f"budget-plot: dataset {entry['dataset']}: no predictions of mse_reference {mse_reference!r}")
    base = {"dataset": entry["dataset"], "redundancy": entry["redundancy"]}
    rows = []
    items = {source_key(item): item for item in entry["points"] + entry["references"]}
    for key, item in items.items():
        point = "generator_epochs" in item
        common = {**base, "kind": "point" if point else "reference", "run": item["run"], "label": item["label"],
                  "generator_epochs": item.get("generator_epochs", np.nan), "seeds": len(data.seeds(key)),
                  **(training_of(data, key) if point else {GENERATOR_STEPS: np.nan, CONVERGED: np.nan})}
        estimates = {ACC2: data.evidence.estimate((key, ALL_PATTERNS), "avg_patterns", ACC2),
                     **data.recovery_estimates(key, mse_reference),
                     **(data.sample_bound(key) if item["run"] == conditional_mean else {})}
        rows += [{**common, **scaled(metric, found), **({"kind": "sample_bound"} if metric == SAMPLE_BOUND else {})}
                 for metric, found in estimates.items() if found is not None]
    optimum = data.evidence.estimate(OPTIMUM, "avg_patterns", ACC2)
    if optimum is not None:
        rows.append({**base, "kind": "bound", "run": "optimum", "label": "optimum", "generator_epochs": np.nan,
                     "seeds": len(data.evidence.seeds(OPTIMUM)), GENERATOR_STEPS: np.nan, CONVERGED: np.nan,
                     **scaled(ACC2, optimum)})
    return rows


def plateau_budget(curve: pd.DataFrame) -> float:
    """The fewest generator steps at which the mean cosine reaches PLATEAU_SHARE of its best over the budgets
    (NaN when the best one's interval reaches 0: nothing learnt to plateau)."""
    best = curve["mean"].max()
    if not curve.loc[curve["mean"].idxmax(), "ci_low"] > 0:
        return float("nan")
    return float(curve.loc[curve["mean"] >= PLATEAU_SHARE * best, GENERATOR_STEPS].min())


def summary(points: pd.DataFrame) -> str:
    """Markdown: per dataset, each run's cosine and Acc-2 at each budget, its 90 %-of-plateau budget, and
    the ranking of the runs by Acc-2 at each budget."""
    lines = ["# Budget sweep: recovery and Acc-2 against the generators' optimizer steps", ""]
    for (dataset, redundancy), part in points.groupby(["dataset", "redundancy"], sort=False):
        lines += [f"## {dataset} (redundancy {redundancy:g})", "",
                  "| run | generator stage ≤ epochs | generator steps | centred cosine | MSE / reference | "
                  "Acc-2 (non-0) % |", "|---|---|---|---|---|---|"]
        runs = part[part.kind == "point"]
        for _, group in runs.groupby(["label", "generator_epochs"], sort=False):
            first = group.iloc[0]
            cells = {m: group[group.metric == m].iloc[0] for m in (COSINE, MSE_RATIO, ACC2)}
            mark = "" if first[CONVERGED] == 1 else " ‡"
            lines.append(f"| {first.label}{mark} | {first.generator_epochs:.0f} | {first[GENERATOR_STEPS]:.0f} | "
                         + " | ".join(_cell(cells[m], 3 if m != ACC2 else 1) for m in (COSINE, MSE_RATIO, ACC2)) + " |")
        for _, ref in part[part.kind != "point"].groupby("label", sort=False):
            cells = {m: ref[ref.metric == m] for m in (COSINE, MSE_RATIO, ACC2)}
            lines.append(f"| {ref.iloc[0].label} | – | – | " + " | ".join(
                _cell(cells[m].iloc[0], 3 if m != ACC2 else 1) if len(cells[m]) else "–" for m in (COSINE, MSE_RATIO, ACC2))
                + " |")
        bound = part[part.metric == SAMPLE_BOUND]
        lines += ["", *bound_lines(runs, bound), *plateau_lines(runs), *ordering_lines(runs), ""]
    lines += ["Intervals: 95 %, bootstrap over the test rows (and the spread over seeds where there are several). "
              "‡: a training of that point did not converge (its generator stage reached its epochs while a "
              "generator loss still fell, or the stages reached max_epochs).", ""]
    return "\n".join(lines)


def _cell(row, digits: int) -> str:
    return f"{row['mean']:.{digits}f} [{row.ci_low:.{digits}f}, {row.ci_high:.{digits}f}]"


def bound_lines(runs: pd.DataFrame, bound: pd.DataFrame) -> list[str]:
    """Each run's best cosine as a share of what a perfect single sample reaches (when the sweep names the
    reference that approximates the conditional mean)."""
    if bound.empty:
        return []
    value = bound.iloc[0]
    lines = [f"A perfect single sample of p(missing | available) reaches a centred cosine of about {_cell(value, 3)} "
             f"(the square of {value.label}'s, pattern by pattern: {value.label} approximates the conditional mean). "
             "Each run's best over the budgets, as a share of it:"]
    for label, group in runs[runs.metric == COSINE].groupby("label", sort=False):
        lines.append(f"- {label}: {group['mean'].max() / value['mean']:.0%}")
    return lines + [""]


def plateau_lines(runs: pd.DataFrame) -> list[str]:
    lines = [f"Generator steps at which the centred cosine reaches {PLATEAU_SHARE:.0%} of its best over the budgets:"]
    for label, group in runs[runs.metric == COSINE].groupby("label", sort=False):
        group = group.sort_values("generator_epochs")
        steps, best = plateau_budget(group), group["mean"].max()
        if not np.isfinite(steps):
            lines.append(f"- {label}: none (best {best:.3f}, its interval reaches 0: no recovery that depends on the "
                         "condition)")
        elif group["mean"].iloc[-1] == best and group["mean"].iloc[:-1].max() < PLATEAU_SHARE * best:
            lines.append(f"- {label}: not within the sweep: still rising at its largest budget "
                         f"({steps:.0f} steps, {best:.3f})")
        else:
            lines.append(f"- {label}: {steps:.0f} steps (best {best:.3f})")
    return lines + [""]


def ordering_lines(runs: pd.DataFrame) -> list[str]:
    """The runs ranked by Acc-2 at each budget (the i-th budget of each run), and whether the ranking changes."""
    acc = runs[runs.metric == ACC2].sort_values("generator_epochs")
    ranks = []
    for epochs, group in acc.groupby("generator_epochs", sort=True):
        ranked = group.sort_values("mean", ascending=False)
        ranks.append((epochs, " > ".join(ranked.label)))
    lines = ["Ranking by Acc-2 at each generator-stage budget (the differences within the intervals above are not "
             "a ranking):"]
    lines += [f"- ≤ {epochs:.0f} epochs: {order}" for epochs, order in ranks]
    changes = len({order for _, order in ranks}) > 1
    lines.append(f"- the ranking {'changes' if changes else 'does not change'} with the budget")
    return lines


def draw(points: pd.DataFrame, mse_reference_label: str, main: str | None):
    datasets = list(dict.fromkeys(zip(points.dataset, points.redundancy)))
    metrics = (COSINE, MSE_RATIO, ACC2)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(datasets), 3, figsize=(11.5, 3.3 * len(datasets) + 0.8), squeeze=False)
        for row, (dataset, redundancy) in enumerate(datasets):
            part = points[(points.dataset == dataset) & (points.redundancy == redundancy)]
            for col, metric in enumerate(metrics):
                ax = axes[row, col]
                shown = part[(part.metric == metric) | ((part.metric == SAMPLE_BOUND) & (metric == COSINE))]
                draw_panel(ax, shown, main)
                values = part[part.metric == metric]["mean"]
                if metric == MSE_RATIO and values.max() > 4 * values.min():
                    ax.set_yscale("log")  # a ratio; an unconverged sampler's can be hundreds of times the reference's
                    for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                        axis_format(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:.2g}"))
                ax.set_title(f"{dataset}, redundancy {redundancy:g}", fontsize=9)
                ax.set_ylabel(METRIC_LABELS[metric].format(reference=mse_reference_label), fontsize=8)
                ax.set_xlabel("generator optimizer steps (generator stage and stages)", fontsize=8)
        handles = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 5),
                   frameon=False, fontsize=8)
        fig.suptitle("What the generators' optimizer steps buy (bars and bands: 95 % intervals; ‡: a training "
                     "did not converge)", fontsize=10)
    return fig


def draw_panel(ax, part: pd.DataFrame, main: str | None) -> None:
    colors = iter(VARIANT_COLORS)
    for run, curve in part[part.kind == "point"].groupby("run", sort=False):
        curve = curve.sort_values(GENERATOR_STEPS)
        color = MAIN_COLOR if run == main else next(colors, VARIANT_COLORS[-1])
        label = curve.label.iloc[0] + ("" if (curve[CONVERGED] == 1).all() else " ‡")
        ax.errorbar(curve[GENERATOR_STEPS], curve["mean"], yerr=[curve["mean"] - curve.ci_low,
                    curve.ci_high - curve["mean"]], color=color, marker="o", markersize=4, capsize=2,
                    linewidth=2.2 if run == main else 1.3, label=label)
    for index, (label, ref) in enumerate(part[part.kind == "reference"].groupby("label", sort=False)):
        dash, marker = REFERENCE_STYLES[index % len(REFERENCE_STYLES)]
        color = BASELINE_COLORS[index % len(BASELINE_COLORS)]
        ax.axhline(ref["mean"].iloc[0], color=color, linestyle=dash, linewidth=1.2)
        ax.axhspan(ref.ci_low.iloc[0], ref.ci_high.iloc[0], color=color, alpha=0.06, linewidth=0)
        ax.plot([], [], color=color, linestyle=dash, marker=marker, label=label)
        ax.plot(1.0, ref["mean"].iloc[0], marker=marker, color=color, transform=ax.get_yaxis_transform(),
                clip_on=False, markersize=5)
    for _, bound in part[part.kind == "bound"].iterrows():
        ax.axhline(bound["mean"], color="black", linewidth=1.0)
        ax.plot([], [], color="black", label="optimum (Bayes)")
    for _, bound in part[part.kind == "sample_bound"].iterrows():
        ax.axhline(bound["mean"], color="black", linewidth=1.0, linestyle=(0, (1, 1)))
        ax.plot([], [], color="black", linestyle=(0, (1, 1)), label=f"a perfect single sample (≈ {bound.label}²)")
    steps = part[GENERATOR_STEPS].dropna()
    if len(steps) and (steps > 0).all():
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def budget_plot(manifest_path, out: str) -> list[Path]:
    manifest = load_manifest(manifest_path)
    rows = [row for entry in manifest["datasets"]
            for row in dataset_rows(entry, manifest["mse_reference"], manifest.get("conditional_mean"))]
    points = pd.DataFrame(rows)
    reference = points[points.run == manifest["mse_reference"]].label
    fig = draw(points, reference.iloc[0] if len(reference) else manifest["mse_reference"], manifest.get("main"))
    paths = save_figure(fig, out)
    write_text_atomic(f"{out}.csv", points.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(f"{out}.md", summary(points))
    return [*paths, Path(f"{out}.csv"), Path(f"{out}.md")]

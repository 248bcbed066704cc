"""`rohydr aggregate`: paper-style tables over seeds and variants from the eval.csv files.

Inputs: eval.csv files at results/{dataset}/{variant}/seed{seed}/eval.csv, tidy `condition,metric,value`
(accuracies and F1 as fractions). Outputs in --out-dir, each written atomically:
- seeds.csv        every value per seed: dataset, variant, seed, condition, metric, value
- all_metrics.csv  dataset, variant, condition, metric, mean, std, n_seeds over seeds. std uses
                   ddof=1 and is empty (NaN) for a single seed: one seed has no spread to report, and a
                   0 would read as "perfectly stable". Two derived conditions are added per seed before
                   averaging: avg_patterns (mean over the six missing patterns) and avg_mr (mean over
                   mr0.1 .. mr0.7), each only for seeds that have all of their conditions.
- missing_patterns, missing_rates and (with --ablation) ablation tables, each as .md, .tex (a
  standalone LaTeX document), .html (for the Snakemake report) and .csv (rohydr/reporting/render.py).
  Acc-2 and F1 (non-0) in percent are separate columns, each "mean ± std" over seeds (mean alone for
  one seed or for quoted literature), "–" where a row has no value; best and second best of this
  project's rows are marked per column. The table CSVs are long: one line per (row, column, metric)
  with mean, std, n_seeds (0 for quoted rows) and unit.
Which run is the main variant, which are baselines and how each is named come from the command line
(the workflow config): see rohydr/reporting/methods.py.
"""
from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from rohydr.errors import RohydrError
from rohydr.evaluation.masks import BATCH_CONDITION, CONDITIONS, MISSING_PATTERNS, MR_CONDITIONS, NOMINAL_MR
from rohydr.evaluation.metrics import METRICS
from rohydr.io import write_text_atomic
from rohydr.reporting.methods import Methods
from rohydr.reporting.render import Column, Row, Stat, Table, pair_columns, to_markdown, write_table

DERIVED = {"avg_patterns": MISSING_PATTERNS, "avg_mr": MR_CONDITIONS}
PAIR = ("acc2_non0", "f1_non0")
PEER_COLUMNS = ("dataset", "method", "source", "condition", "acc2_non0", "f1_non0")


# ----------------------------------------------------------------------------- reading

def run_of(path: Path) -> tuple[str, int]:
    """(variant, seed) from .../{variant}/seed{seed}/eval.csv."""
    match = re.fullmatch(r"seed(\d+)", path.parent.name)
    if not match or not path.parent.parent.name:
        raise RohydrError(f"eval {path}: expected a path .../{{variant}}/seed{{seed}}/{path.name}, "
                          f"found folder {path.parent.name!r}")
    return path.parent.parent.name, int(match.group(1))


def read_eval(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise RohydrError(f"eval {path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RohydrError(f"eval {path}: not a readable CSV ({error})") from None
    missing = [column for column in ("condition", "metric", "value") if column not in table.columns]
    if missing:
        raise RohydrError(f"eval {path}: missing column(s) {missing}; found {list(table.columns)}, "
                          "expected condition,metric,value")
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = values.isna() & table["value"].notna()
    if bad.any():
        raise RohydrError(f"eval {path}: non-numeric value {table['value'][bad].iloc[0]!r} "
                          f"(condition {table['condition'][bad].iloc[0]!r}, metric {table['metric'][bad].iloc[0]!r})")
    duplicated = table.duplicated(["condition", "metric"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise RohydrError(f"eval {path}: condition {row.condition!r}, metric {row.metric!r} appears twice")
    return table.assign(value=values)[["condition", "metric", "value"]]


def read_evals(paths: list) -> pd.DataFrame:
    """variant, seed, condition, metric, value; variants keep their order of first appearance."""
    frames, seen = [], {}
    for raw in paths:
        path = Path(raw)
        variant, seed = run_of(path)
        if (variant, seed) in seen:
            raise RohydrError(f"eval {path}: variant {variant!r} seed {seed} already given by {seen[variant, seed]}")
        seen[variant, seed] = path
        frames.append(read_eval(path).assign(variant=variant, seed=seed))
    if not frames:
        raise RohydrError("aggregate: no eval.csv given")
    long = pd.concat(frames, ignore_index=True)[["variant", "seed", "condition", "metric", "value"]]
    return with_averages(long)


def with_averages(long: pd.DataFrame) -> pd.DataFrame:
    """Adds the per-seed means over the missing patterns (avg_patterns) and missing rates (avg_mr)."""
    derived = []
    for name, members in DERIVED.items():
        part = long[long.condition.isin(members)].dropna(subset=["value"])
        grouped = part.groupby(["variant", "seed", "metric"], sort=False)["value"]
        stats = grouped.agg(["mean", "count"]).reset_index()
        stats = stats[stats["count"] == len(members)]
        derived.append(stats.assign(condition=name, value=stats["mean"])[long.columns])
    return pd.concat([long, *derived], ignore_index=True)


# ----------------------------------------------------------------------------- summaries

def _order(values, known) -> dict:
    ordered = [v for v in known if v in set(values)] + sorted(set(values) - set(known))
    return {v: i for i, v in enumerate(ordered)}


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """variant, condition, metric, mean, std (ddof=1, NaN for one seed), n_seeds."""
    grouped = long.dropna(subset=["value"]).groupby(["variant", "condition", "metric"], sort=False)["value"]
    stats = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    variant_rank = {v: i for i, v in enumerate(dict.fromkeys(long.variant))}
    condition_rank = _order(stats.condition, [*CONDITIONS, *DERIVED])
    metric_rank = _order(stats.metric, [*METRICS, "missing_rate"])
    key = pd.DataFrame({"v": stats.variant.map(variant_rank), "c": stats.condition.map(condition_rank),
                        "m": stats.metric.map(metric_rank)})
    return stats.loc[key.sort_values(["v", "c", "m"], kind="stable").index].reset_index(drop=True)


def stats_lookup(summary: pd.DataFrame) -> dict[tuple[str, str, str], Stat]:
    return {(r.variant, r.condition, r.metric): Stat(r.mean, r.std, int(r.n_seeds))
            for r in summary.itertuples(index=False)}


def ours_row(run: str, methods: Methods, lookup: dict, columns: list[Column]) -> Row:
    block = "baselines" if methods.role(run) == "baseline" else "variants"
    row = Row(methods.label(run), "ours", block)
    for column in columns:
        if (run, column.condition, column.metric) in lookup:
            row.cells[column] = lookup[run, column.condition, column.metric]
    return row


def ours_rows(runs: list[str], methods: Methods, lookup: dict, columns: list[Column]) -> list[Row]:
    return [ours_row(run, methods, lookup, columns) for run in methods.ordered(runs)]


# ----------------------------------------------------------------------------- literature

def packaged_peers() -> pd.DataFrame:
    with resources.files("rohydr.reporting").joinpath("peers.csv").open() as handle:
        return pd.read_csv(handle)


def load_literature(literature: str, peers_key: str | None) -> pd.DataFrame:
    """Quoted rows (dataset, method, source, condition, acc2_non0, f1_non0 in percent) or an empty frame."""
    if literature == "none" or (literature == "auto" and not peers_key):
        return pd.DataFrame(columns=list(PEER_COLUMNS))
    if literature == "auto":
        peers, origin = packaged_peers(), "the packaged peers.csv"
    else:
        try:
            peers, origin = pd.read_csv(literature), f"literature {literature}"
        except FileNotFoundError:
            raise RohydrError(f"literature {literature}: no such file (or use 'auto' / 'none')") from None
        missing = [column for column in PEER_COLUMNS if column not in peers.columns]
        if missing:
            raise RohydrError(f"literature {literature}: missing column(s) {missing}; expected {', '.join(PEER_COLUMNS)}")
    if peers_key:
        keys = peers.dataset.astype(str).str.upper()
        if not (keys == peers_key.upper()).any():
            raise RohydrError(f"{origin}: no rows for --peers-key {peers_key!r}; found {sorted(set(keys))}")
        peers = peers[keys == peers_key.upper()]
    duplicated = peers.duplicated(["dataset", "method", "source", "condition"])
    if duplicated.any():
        first = peers[duplicated].iloc[0]
        raise RohydrError(f"{origin}: {first.method} ({first.source}) has condition {first.condition!r} "
                          f"twice for dataset {first.dataset}")
    return peers


def quoted_rows(peers: pd.DataFrame, columns: list[Column], average: tuple[str, list[str]] | None) -> list[Row]:
    """One row per (method, source) with a value in any of the columns; average = (its condition, the
    conditions it averages): filled only where the method has all of them."""
    rows = []
    for (method, source), group in peers.groupby(["method", "source"], sort=False):
        row = Row(f"{method} (quoted: {source})", "quoted", "quoted", str(source))
        by_condition = group.set_index("condition")
        for column in columns:
            if column.condition in by_condition.index:
                row.cells[column] = Stat(float(by_condition.loc[column.condition, column.metric]))
            elif average and column.condition == average[0] and set(average[1]) <= set(by_condition.index):
                row.cells[column] = Stat(float(by_condition.loc[list(average[1]), column.metric].mean()))
        if row.cells:
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- tables

PATTERN_HEADERS = {"l": "{l}", "a": "{a}", "v": "{v}", "la": "{l,a}", "lv": "{l,v}", "av": "{a,v}"}


def seeds_phrase(rows: list[Row]) -> str:
    counts = sorted({stat.n for row in rows if row.kind == "ours" for stat in row.cells.values()})
    if not counts:
        return "no seeds"
    if counts == [1]:
        return "1 seed (no std)"
    if len(counts) == 1:
        return f"mean ± std over {counts[0]} seeds"
    return f"mean ± std over {counts[0]}–{counts[-1]} seeds (n per row in the CSV)"


def quoted_note(rows: list[Row]) -> list[str]:
    if any(row.kind == "quoted" for row in rows):
        return ["Quoted rows are published numbers (no std), not results of this project."]
    return []


def complete_only_note(rows: list[Row]) -> list[str]:
    """Rows of ours with values in the complete condition only (the complete-modality baseline)."""
    names = [row.label for row in rows if row.kind == "ours" and row.cells
             and {column.condition for column in row.cells} == {"complete"}]
    if not names:
        return []
    return [f"{', '.join(names)}: scored on complete inputs only (no modality missing), hence – elsewhere."]


def patterns_table(dataset: str, runs: list[str], methods: Methods, lookup: dict, peers: pd.DataFrame) -> Table:
    groups = {**{PATTERN_HEADERS[p]: p for p in MISSING_PATTERNS}, "Avg.": "avg_patterns", "Complete": "complete"}
    columns = [column for header, condition in groups.items() for column in pair_columns(header, condition)]
    rows = ours_rows(runs, methods, lookup, columns)
    rows += quoted_rows(peers, columns, ("avg_patterns", MISSING_PATTERNS))
    title = f"Missing patterns, {dataset}: Acc-2 and F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Columns name the AVAILABLE modalities; Avg. is the mean of the six missing patterns per seed."]
    return Table("missing_patterns", title, columns, rows, notes + complete_only_note(rows) + quoted_note(rows))


def realized_rates(long: pd.DataFrame) -> dict[str, float]:
    rates = long[long.metric == "missing_rate"].groupby("condition")["value"].mean()
    return rates.to_dict()


def rates_table(dataset: str, runs: list[str], methods: Methods, lookup: dict, peers: pd.DataFrame,
                realized: dict) -> Table:
    def header(condition: str, prefix: str = "") -> str:
        rate = realized.get(condition)
        nominal = f"{prefix}{NOMINAL_MR[condition]:.1f}"
        return f"{nominal} ({rate:.2f})" if rate is not None and np.isfinite(rate) else nominal

    groups = {"0 (complete)": "complete", **{header(c): c for c in MR_CONDITIONS}, "Avg.": "avg_mr"}
    if any((run, BATCH_CONDITION, PAIR[0]) in lookup for run in runs):
        groups[header(BATCH_CONDITION, "per-batch ")] = BATCH_CONDITION
    columns = [column for group, condition in groups.items() for column in pair_columns(group, condition)]
    rows = ours_rows(runs, methods, lookup, columns)
    rows += quoted_rows(peers, [c for c in columns if c.condition != BATCH_CONDITION], ("avg_mr", MR_CONDITIONS))
    title = f"Missing rates, {dataset}: Acc-2 and F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Headers: nominal missing rate (realized rate on the saved masks); 0 is the complete condition; "
             "Avg. is the mean over MR 0.1-0.7 per seed."]
    if BATCH_CONDITION in groups.values():
        notes.append("per-batch 0.7: the reference implementation's draw (one pattern per batch of 32), "
                     "not part of Avg.")
    return Table("missing_rates", title, columns, rows, notes + complete_only_note(rows) + quoted_note(rows))


def paired_delta(long: pd.DataFrame, variant: str, reference: str, condition: str, metric: str) -> Stat | None:
    """Per-seed difference to the reference row on the seeds both have (same seed: same masks), in %."""
    part = long[(long.condition == condition) & (long.metric == metric)].dropna(subset=["value"])
    mine = part[part.variant == variant].set_index("seed")["value"]
    ref = part[part.variant == reference].set_index("seed")["value"]
    common = mine.index.intersection(ref.index)
    if common.empty:
        return None
    diff = (mine[common] - ref[common]) * 100
    return Stat(float(diff.mean()), float(diff.std()) if len(diff) > 1 else math.nan, len(diff))


def ablation_rows(requested: list[str], runs: list[str], methods: Methods) -> list[str]:
    """The requested variants (none: every variant, the main one first), then the evaluated baselines."""
    names = list(requested) or [run for run in methods.ordered(runs) if methods.role(run) != "baseline"]
    absent = [name for name in names if name not in runs]
    if absent:
        raise RohydrError(f"aggregate --ablation: no eval.csv for variant(s) {absent}; evaluated: {runs}")
    return names + [b for b in methods.ordered(runs) if methods.role(b) == "baseline" and b not in names]


def ablation_table(dataset: str, requested: list[str], runs: list[str], methods: Methods, lookup: dict,
                   long: pd.DataFrame) -> Table:
    names = ablation_rows(requested, runs, methods)
    reference = names[0]
    columns = [*pair_columns("Avg. patterns", "avg_patterns"), *pair_columns("Avg. MR", "avg_mr"),
               *pair_columns("Complete", "complete"), Column("MAE", "patterns", "avg_patterns", "mae")]
    deltas = [Column(f"Δ Acc-2 vs {methods.label(reference)}", label, condition, "delta_acc2_non0")
              for label, condition in (("patterns", "avg_patterns"), ("MR", "avg_mr"))]
    rows = []
    for name in names:
        row = ours_row(name, methods, lookup, columns)
        for column in deltas:
            if name == reference:
                row.text[column] = "ref."
            elif (delta := paired_delta(long, name, reference, column.condition, PAIR[0])) is not None:
                row.cells[column] = delta
        rows.append(row)
    title = f"Ablation, {dataset}: Acc-2 and F1 (non-0) in %, MAE, {seeds_phrase(rows)}"
    notes = ["Δ: Acc-2 (non-0) difference to the first row in percentage points, paired by seed."]
    return Table("ablation", title, [*columns, *deltas], rows, notes + complete_only_note(rows))


# ----------------------------------------------------------------------------- command

def aggregate(dataset: str, eval_paths: list, out_dir, literature: str = "auto", peers_key: str | None = None,
              ablation: list[str] | None = None, methods: Methods | None = None) -> dict[str, Table]:
    out_dir = Path(out_dir)
    methods = methods or Methods()
    long = read_evals(eval_paths)
    peers = load_literature(literature, peers_key)
    summary = summarize(long)
    runs = list(dict.fromkeys(long.variant))
    methods.check(runs)
    lookup = stats_lookup(summary)
    tables = {"missing_patterns": patterns_table(dataset, runs, methods, lookup, peers),
              "missing_rates": rates_table(dataset, runs, methods, lookup, peers, realized_rates(long))}
    if ablation is not None:
        tables["ablation"] = ablation_table(dataset, ablation, runs, methods, lookup, long)
    # everything is checked and built before the first file is written
    variant_rank = long.variant.map({v: i for i, v in enumerate(runs)})
    seeds = long.assign(rank=variant_rank).sort_values(["rank", "seed"], kind="stable").assign(dataset=dataset)
    write_text_atomic(out_dir / "seeds.csv", seeds[["dataset", "variant", "seed", "condition", "metric", "value"]]
                      .to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out_dir / "all_metrics.csv", summary.assign(dataset=dataset)[
        ["dataset", "variant", "condition", "metric", "mean", "std", "n_seeds"]].to_csv(index=False, float_format="%.6g"))
    for table in tables.values():
        write_table(table, out_dir, dataset)
    return tables


def cli_aggregate(args) -> int:
    tables = aggregate(args.dataset, args.eval, args.out_dir, args.literature, args.peers_key, args.ablation,
                       Methods.from_args(args))
    print(to_markdown(tables["missing_patterns"]))
    print(f"wrote {', '.join(tables)} tables, all_metrics.csv and seeds.csv to {args.out_dir}")
    return 0

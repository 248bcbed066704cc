"""`rohydr aggregate`: paper-style tables over seeds and variants from the eval.csv files.

Inputs: eval.csv files at results/{dataset}/{variant}/seed{seed}/eval.csv, tidy `condition,metric,value`
(accuracies and F1 as fractions). Outputs in --out-dir, each written atomically:
- seeds.csv        every value per seed: dataset, variant, seed, condition, metric, value
- all_metrics.csv  dataset, variant, condition, metric, mean, std, n_seeds over seeds. std uses
                   ddof=1 and is empty (NaN) for a single seed: one seed has no spread to report, and a
                   0 would read as "perfectly stable". Two derived conditions are added per seed before
                   averaging: avg_patterns (mean over the six missing patterns) and avg_mr (mean over
                   mr0.1 .. mr0.7), each only for seeds that have all of their conditions.
- missing_patterns, missing_rates and (with --ablation) ablation tables, each as .md, .tex and .csv.
  Cells are Acc-2 / F1 (non-0) in percent, "mean ± std" over seeds (mean alone for one seed or for
  quoted literature), "–" where a row has no value. The table CSVs are long: one line per
  (row, column, metric) with mean, std, n_seeds (0 for quoted rows) and unit.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from rohydr.errors import RohydrError
from rohydr.evaluation.masks import BATCH_CONDITION, CONDITIONS, MISSING_PATTERNS, MR_CONDITIONS, NOMINAL_MR
from rohydr.evaluation.metrics import METRICS
from rohydr.io import write_text_atomic

DERIVED = {"avg_patterns": MISSING_PATTERNS, "avg_mr": MR_CONDITIONS}
PERCENT_METRICS = {"acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7"}
PAIR = ("acc2_non0", "f1_non0")
BASELINE_ROWS = ("zero_fill", "complete")
MAIN_VARIANT = "rohydr"
PEER_COLUMNS = ("dataset", "method", "source", "condition", "acc2_non0", "f1_non0")
DASH = "–"


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


@dataclass
class Stat:
    mean: float
    std: float = math.nan  # NaN: one seed, or a quoted number
    n: int = 0  # seeds; 0 for quoted literature


@dataclass
class Row:
    label: str
    kind: str  # "ours" | "quoted"
    source: str = ""
    cells: dict[str, dict[str, Stat]] = field(default_factory=dict)  # column -> metric -> Stat
    text: dict[str, str] = field(default_factory=dict)  # column -> fixed text instead of numbers


@dataclass
class Table:
    name: str
    title: str
    columns: list[tuple[str, tuple[str, ...]]]  # (header, metrics shown in the cell)
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    conditions: dict[str, str] = field(default_factory=dict)  # header -> condition it shows


def stats_lookup(summary: pd.DataFrame) -> dict[tuple[str, str, str], Stat]:
    return {(r.variant, r.condition, r.metric): Stat(r.mean, r.std, int(r.n_seeds))
            for r in summary.itertuples(index=False)}


def ours_row(variant: str, lookup: dict, columns: dict[str, str], metrics=PAIR) -> Row:
    """columns: header -> condition."""
    row = Row(variant, "ours")
    for header, condition in columns.items():
        cell = {m: lookup[variant, condition, m] for m in metrics if (variant, condition, m) in lookup}
        if cell:
            row.cells[header] = cell
    return row


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


def quoted_rows(peers: pd.DataFrame, columns: dict[str, str], average: tuple[str, list[str]] | None) -> list[Row]:
    """One row per (method, source) with a value in any of the columns; average = (header, its columns)."""
    rows = []
    for (method, source), group in peers.groupby(["method", "source"], sort=False):
        row = Row(f"{method} (quoted: {source})", "quoted", str(source))
        by_condition = group.set_index("condition")
        for header, condition in columns.items():
            if condition in by_condition.index:
                row.cells[header] = {m: Stat(float(by_condition.loc[condition, m])) for m in PAIR}
        if average and all(header in row.cells for header in average[1]):
            row.cells[average[0]] = {m: Stat(float(np.mean([row.cells[h][m].mean for h in average[1]])))
                                     for m in PAIR}
        if any(header in row.cells for header in columns):
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- tables

PATTERN_HEADERS = {"l": "{l}", "a": "{a}", "v": "{v}", "la": "{l,a}", "lv": "{l,v}", "av": "{a,v}"}


def seeds_phrase(rows: list[Row]) -> str:
    counts = sorted({stat.n for row in rows if row.kind == "ours"
                     for cell in row.cells.values() for stat in cell.values()})
    if not counts:
        return "no seeds"
    if counts == [1]:
        return "1 seed (no std)"
    if len(counts) == 1:
        return f"mean ± std over {counts[0]} seeds"
    return f"mean ± std over {counts[0]}–{counts[-1]} seeds (n per row in the CSV)"


def patterns_table(dataset: str, variants: list[str], lookup: dict, peers: pd.DataFrame) -> Table:
    columns = {**{PATTERN_HEADERS[p]: p for p in MISSING_PATTERNS}, "Avg.": "avg_patterns", "Complete": "complete"}
    rows = [ours_row(v, lookup, columns) for v in variants]
    rows += quoted_rows(peers, {h: c for h, c in columns.items() if c != "avg_patterns"},
                        ("Avg.", [PATTERN_HEADERS[p] for p in MISSING_PATTERNS]))
    title = f"Missing patterns, {dataset}: Acc-2 / F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Columns name the AVAILABLE modalities; Avg. is the mean of the six missing patterns per seed."]
    return Table("missing_patterns", title, [(h, PAIR) for h in columns], rows, notes + quoted_note(rows), columns)


def quoted_note(rows: list[Row]) -> list[str]:
    if any(row.kind == "quoted" for row in rows):
        return ["Quoted rows are published numbers (no std), not results of this project."]
    return []


def realized_rates(long: pd.DataFrame) -> dict[str, float]:
    rates = long[long.metric == "missing_rate"].groupby("condition")["value"].mean()
    return rates.to_dict()


def rates_table(dataset: str, variants: list[str], lookup: dict, peers: pd.DataFrame, realized: dict) -> Table:
    def header(condition: str, prefix: str = "") -> str:
        rate = realized.get(condition)
        nominal = f"{prefix}{NOMINAL_MR[condition]:.1f}"
        return f"{nominal} ({rate:.2f})" if rate is not None and np.isfinite(rate) else nominal

    mr_headers = {header(c): c for c in MR_CONDITIONS}
    columns = {**mr_headers, "Avg.": "avg_mr"}
    if any((v, BATCH_CONDITION, PAIR[0]) in lookup for v in variants):
        columns[header(BATCH_CONDITION, "per-batch ")] = BATCH_CONDITION
    rows = [ours_row(v, lookup, columns) for v in variants]
    rows += quoted_rows(peers, mr_headers, ("Avg.", list(mr_headers)))
    title = f"Missing rates, {dataset}: Acc-2 / F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Headers: nominal missing rate (realized rate on the saved masks); Avg. is the mean over "
             "MR 0.1-0.7 per seed."]
    if BATCH_CONDITION in columns.values():
        notes.append("per-batch 0.7: the reference implementation's draw (one pattern per batch of 32), "
                     "not part of Avg.")
    return Table("missing_rates", title, [(h, PAIR) for h in columns], rows, notes + quoted_note(rows), columns)


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


def ablation_table(dataset: str, requested: list[str], variants: list[str], lookup: dict,
                   long: pd.DataFrame) -> Table:
    # no names given: every variant, the main one (rohydr) first as the reference row
    names = list(requested) or sorted((v for v in variants if v not in BASELINE_ROWS), key=lambda v: v != MAIN_VARIANT)
    absent = [name for name in names if name not in variants]
    if absent:
        raise RohydrError(f"aggregate --ablation: no eval.csv for variant(s) {absent}; evaluated: {variants}")
    names += [b for b in BASELINE_ROWS if b in variants and b not in names]
    reference = names[0]
    delta_columns = {f"Δ Acc-2 patterns vs {reference}": "avg_patterns", f"Δ Acc-2 MR vs {reference}": "avg_mr"}
    pair_columns = {"Avg. patterns": "avg_patterns", "Avg. MR": "avg_mr", "Complete": "complete"}
    rows = []
    for name in names:
        row = ours_row(name, lookup, pair_columns)
        mae = ours_row(name, lookup, {"MAE patterns": "avg_patterns"}, metrics=("mae",))
        row.cells.update(mae.cells)
        for header, condition in delta_columns.items():
            if name == reference:
                row.text[header] = "ref."
            elif (delta := paired_delta(long, name, reference, condition, PAIR[0])) is not None:
                row.cells[header] = {"delta_acc2_non0": delta}
        rows.append(row)
    columns = [("Avg. patterns", PAIR), ("Avg. MR", PAIR), ("Complete", PAIR), ("MAE patterns", ("mae",))]
    columns += [(header, ("delta_acc2_non0",)) for header in delta_columns]
    title = f"Ablation, {dataset}: Acc-2 / F1 (non-0) in %, MAE, {seeds_phrase(rows)}"
    notes = ["Δ: Acc-2 (non-0) difference to the first row in percentage points, paired by seed."]
    conditions = {**pair_columns, "MAE patterns": "avg_patterns", **delta_columns}
    return Table("ablation", title, columns, rows, notes, conditions)


# ----------------------------------------------------------------------------- rendering

def _number(metric: str, value: float, signed: bool = False) -> str:
    if metric == "mae":
        return f"{value:.3f}"
    scaled = value * 100 if metric in PERCENT_METRICS else value
    return f"{scaled:+.1f}" if signed else f"{scaled:.1f}"


def _stat_text(metric: str, stat: Stat, pm: str) -> str:
    if stat.n == 0 and metric in PERCENT_METRICS:  # quoted literature is already in percent
        return f"{stat.mean:.1f}"
    signed = metric.startswith("delta_")
    mean = _number(metric, stat.mean, signed)
    if stat.n <= 1 or not np.isfinite(stat.std):
        return mean
    return f"{mean}{pm}{_number(metric, stat.std).lstrip('+')}"


def cell_text(row: Row, header: str, metrics: tuple[str, ...], pm: str, dash: str) -> str:
    if header in row.text:
        return row.text[header]
    cell = row.cells.get(header, {})
    return " / ".join(_stat_text(m, cell[m], pm) if m in cell else dash for m in metrics) if cell else dash


def to_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", ""]
    lines.append("| Method | " + " | ".join(h for h, _ in table.columns) + " |")
    lines.append("|---|" + "---|" * len(table.columns))
    for row in table.rows:
        cells = [cell_text(row, h, metrics, " ± ", DASH) for h, metrics in table.columns]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines += ["", *table.notes]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--"}


def latex_escape(text: str) -> str:
    return re.sub("|".join(map(re.escape, LATEX_SPECIAL)), lambda m: LATEX_SPECIAL[m.group(0)], text)


def to_latex(table: Table, dataset: str) -> str:
    caption = latex_escape(table.title)
    if table.notes:
        caption += ". " + " ".join(latex_escape(note) for note in table.notes)
    header = " & ".join(["Method", *(latex_escape(h) for h, _ in table.columns)]) + r" \\"
    lines = [
        "% needs \\usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{re.sub(r'[^A-Za-z0-9]+', '-', dataset)}-{table.name.replace('_', '-')}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "c" * len(table.columns) + "}",
        r"\toprule",
        header,
        r"\midrule",
    ]
    previous_kind = None
    for row in table.rows:
        if previous_kind == "ours" and row.kind == "quoted":
            lines.append(r"\midrule")
        previous_kind = row.kind
        cells = [latex_escape(cell_text(row, h, metrics, " ± ", DASH)) for h, metrics in table.columns]
        lines.append(" & ".join([latex_escape(row.label), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_long_csv(table: Table, dataset: str) -> str:
    records = []
    for row in table.rows:
        for header, metrics in table.columns:
            for metric in metrics:
                stat = row.cells.get(header, {}).get(metric)
                if stat is None:
                    continue
                # our accuracies are fractions; quoted ones and the deltas are already in % / points
                scale = 100.0 if row.kind == "ours" and metric in PERCENT_METRICS else 1.0
                unit = "%" if metric in PERCENT_METRICS else "pp" if metric.startswith("delta_") else ""
                records.append({"dataset": dataset, "row": row.label, "kind": row.kind, "source": row.source,
                                "column": header, "condition": table.conditions.get(header, ""), "metric": metric, "mean": stat.mean * scale,
                                "std": stat.std * scale, "n_seeds": stat.n, "unit": unit})
    columns = ["dataset", "row", "kind", "source", "column", "condition", "metric", "mean", "std", "n_seeds", "unit"]
    return pd.DataFrame(records, columns=columns).to_csv(index=False, float_format="%.6g")


def write_table(table: Table, out_dir: Path, dataset: str) -> None:
    write_text_atomic(out_dir / f"{table.name}.md", to_markdown(table))
    write_text_atomic(out_dir / f"{table.name}.tex", to_latex(table, dataset))
    write_text_atomic(out_dir / f"{table.name}.csv", to_long_csv(table, dataset))


# ----------------------------------------------------------------------------- command

def aggregate(dataset: str, eval_paths: list, out_dir, literature: str = "auto", peers_key: str | None = None,
              ablation: list[str] | None = None) -> dict[str, Table]:
    out_dir = Path(out_dir)
    long = read_evals(eval_paths)
    peers = load_literature(literature, peers_key)
    summary = summarize(long)
    variants = list(dict.fromkeys(long.variant))
    lookup = stats_lookup(summary)
    tables = {"missing_patterns": patterns_table(dataset, variants, lookup, peers),
              "missing_rates": rates_table(dataset, variants, lookup, peers, realized_rates(long))}
    if ablation is not None:
        tables["ablation"] = ablation_table(dataset, ablation, variants, lookup, long)
    # everything is checked and built before the first file is written
    variant_rank = long.variant.map({v: i for i, v in enumerate(variants)})
    seeds = long.assign(rank=variant_rank).sort_values(["rank", "seed"], kind="stable").assign(dataset=dataset)
    write_text_atomic(out_dir / "seeds.csv", seeds[["dataset", "variant", "seed", "condition", "metric", "value"]]
                      .to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out_dir / "all_metrics.csv", summary.assign(dataset=dataset)[
        ["dataset", "variant", "condition", "metric", "mean", "std", "n_seeds"]].to_csv(index=False, float_format="%.6g"))
    for table in tables.values():
        write_table(table, out_dir, dataset)
    return tables


def cli_aggregate(args) -> int:
    tables = aggregate(args.dataset, args.eval, args.out_dir, args.literature, args.peers_key, args.ablation)
    print(to_markdown(tables["missing_patterns"]))
    print(f"wrote {', '.join(tables)} tables, all_metrics.csv and seeds.csv to {args.out_dir}")
    return 0

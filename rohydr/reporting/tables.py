"""`rohydr aggregate`: paper-style tables over runs, protocols and seeds.

Inputs: eval.csv files at results/{dataset}/{run}/{protocol}/seed{seed}/eval.csv, tidy
`condition,metric,value` (accuracies and F1 as fractions), and, for the intervals, the
predictions.csv.gz beside each and the test masks of every seed (--masks; rohydr/reporting/evidence.py).
Protocols: `all_patterns` (one model for every condition), `mr0.1` .. `mr0.7` (one model per rate; the
tables take rate x from the model of rate x, as the pseudo-protocol `per_mr`), `complete_data` (runs
built on the pretrained backbone). Outputs in --out-dir, each written atomically:
- seeds.csv        every value per seed: dataset, variant (the run), protocol, seed, condition, metric, value
- all_metrics.csv  dataset, variant, protocol, condition, metric, mean, std, n_seeds over seeds. std uses
                   ddof=1 and is empty (NaN) for a single seed. Two derived conditions are added per seed
                   before averaging: avg_patterns (mean over the six missing patterns; for recovery metrics
                   over the patterns that lack the modality) and avg_mr (mean over mr0.1 .. mr0.7), each
                   only for seeds that have all of their conditions.
- missing_patterns, missing_rates, ablation (with --ablation), gap_closed and recovery tables, each as .md,
  .tex (a standalone LaTeX document), .html (for the Snakemake report) and .csv (rohydr/reporting/render.py).
  Cells are "mean ± std" over seeds with, given the predictions, a 95 % interval over test rows and seeds
  (rohydr/reporting/uncertainty.py); best and second best of this project's rows are marked per column.
Which run is the main variant, which are baselines, which is the floor and how each is named come from the
command line (the workflow config): see rohydr/reporting/methods.py.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from rohydr.core.errors import RohydrError
from rohydr.core.io import write_text_atomic
from rohydr.core.layout import (
    ABLATION_TABLE,
    ALL_PATTERNS,
    COMPARISON_TABLE,
    COMPLETE_DATA,
    EVAL_COLUMNS,
    EVAL_IDENTITY,
    GAP_TABLE,
    MISSING_PATTERNS_TABLE,
    MISSING_RATES_TABLE,
    PER_MR,
    RECOVERY_TABLE,
    parse_run_dir,
)
from rohydr.core.metrics import METRICS, RANGES, score
from rohydr.core.vocabulary import (
    BATCH_CONDITION,
    CONDITIONS,
    CONVERGED,
    MISSING_PATTERNS,
    MODALITIES,
    MR_CONDITIONS,
    NOMINAL_MR,
    PATTERNS,
    TRAINING_CONDITION,
)
from rohydr.data.optimum import score_masks
from rohydr.reporting.evidence import AVERAGES, Evidence, OPTIMUM
from rohydr.reporting.methods import Methods
from rohydr.reporting.render import (
    COLLAPSED,
    Column,
    NOT_CONVERGED,
    Row,
    SIGNIFICANT,
    Stat,
    Table,
    pair_columns,
    write_table,
)

PAIR = ("acc2_non0", "f1_non0")
PEER_COLUMNS = ("dataset", "method", "source", "condition", "acc2_non0", "f1_non0")


# ----------------------------------------------------------------------------- reading

def run_of(path: Path, what: str = "eval") -> tuple[str, str, int]:
    """(run, protocol, seed) of a run folder's file (`what`: how messages name it)."""
    try:
        return parse_run_dir(path)
    except ValueError as error:
        raise RohydrError(f"{what} {error}") from None


def value_range(metric: str) -> tuple[float, float]:
    """Where the values of an eval.csv metric lie."""
    if metric in RANGES:
        return RANGES[metric]
    if metric.startswith("rec_cos_"):
        return -1.0, 1.0
    if metric in ("missing_rate", CONVERGED):
        return 0.0, 1.0
    return 0.0, math.inf  # rec_mse_*, epochs


def read_eval(path: Path, identity: tuple[str, str, int]) -> pd.DataFrame:
    """An eval.csv of `rohydr evaluate`, checked: the run, protocol and seed it names (where it names them)
    are its folder's, every value is a number in its metric's range or empty (a metric undefined there)."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise RohydrError(f"eval {path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RohydrError(f"eval {path}: not a readable CSV ({error})") from None
    missing = [column for column in EVAL_COLUMNS if column not in table.columns]
    if missing:
        raise RohydrError(f"eval {path}: missing column(s) {missing}; found {list(table.columns)}, "
                          f"expected {','.join(EVAL_COLUMNS)}")
    _check_identity(path, table, identity)
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = values.isna() & table["value"].notna()
    if bad.any():
        raise RohydrError(f"eval {path}: non-numeric value {table['value'][bad].iloc[0]!r} "
                          f"(condition {table['condition'][bad].iloc[0]!r}, metric {table['metric'][bad].iloc[0]!r})")
    for condition, metric, value in zip(table.condition, table.metric, values):
        low, high = value_range(metric)
        if not (math.isnan(value) or low <= value <= high):
            raise RohydrError(f"eval {path}: condition {condition!r}, metric {metric!r} = {value:g} lies outside "
                              f"[{low:g}, {high:g}]")
    duplicated = table.duplicated(["condition", "metric"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise RohydrError(f"eval {path}: condition {row.condition!r}, metric {row.metric!r} appears twice")
    return table.assign(value=values)[list(EVAL_COLUMNS)]


def _check_identity(path: Path, table: pd.DataFrame, identity: tuple[str, str, int]) -> None:
    if not set(EVAL_IDENTITY) <= set(table.columns):
        return  # written by `rohydr evaluate` without --run: only its folder says what it is
    named = table[list(EVAL_IDENTITY)].astype(str).drop_duplicates()
    found = tuple(named.iloc[0]) if len(named) == 1 else None
    if found != tuple(map(str, identity)):
        written = f"run {found[0]!r}, protocol {found[1]!r}, seed {found[2]}" if found else "several runs"
        raise RohydrError(f"eval {path} holds the scores of {written}, but its folder is run {identity[0]!r}, protocol "
                          f"{identity[1]!r}, seed {identity[2]}: a file copied from another run? Evaluate again")


LONG_COLUMNS = ["variant", "protocol", "seed", "condition", "metric", "value"]


def read_evals(paths: list) -> pd.DataFrame:
    """variant (the run), protocol, seed, condition, metric, value; runs keep their order of first
    appearance. Adds the per-MR source (rate x's condition from the model trained at x) and the averages."""
    frames, seen = [], {}
    for raw in paths:
        path = Path(raw)
        run, protocol, seed = run_of(path)
        if (run, protocol, seed) in seen:
            raise RohydrError(f"eval {path}: run {run!r} protocol {protocol!r} seed {seed} already given by "
                              f"{seen[run, protocol, seed]}")
        seen[run, protocol, seed] = path
        frames.append(read_eval(path, (run, protocol, seed)).assign(variant=run, protocol=protocol, seed=seed))
    if not frames:
        raise RohydrError("aggregate: no eval.csv given")
    long = pd.concat(frames, ignore_index=True)[LONG_COLUMNS]
    return with_averages(with_per_mr(long))


def with_per_mr(long: pd.DataFrame) -> pd.DataFrame:
    """Rows of protocol `per_mr`: each rate's condition from the model trained at that rate; a seed's per-MR
    models converged when every one of them did."""
    per_mr = long[long.protocol.isin(MR_CONDITIONS)]
    own_rate = per_mr[per_mr.condition == per_mr.protocol]
    converged = per_mr[(per_mr.condition == TRAINING_CONDITION) & (per_mr.metric == CONVERGED)]
    converged = converged.groupby(["variant", "seed"], sort=False)["value"].min().reset_index()
    converged = converged.assign(protocol=PER_MR, condition=TRAINING_CONDITION, metric=CONVERGED)[long.columns]
    return pd.concat([long, own_rate.assign(protocol=PER_MR), converged], ignore_index=True)


def _averaged_members(name: str, metric: str) -> tuple[str, ...]:
    if name == "avg_patterns" and metric.startswith("rec_"):  # a modality is recovered where it is missing
        slot = MODALITIES.index(metric[-1])
        return tuple(p for p in MISSING_PATTERNS if not PATTERNS[p][slot])
    return AVERAGES[name]


def with_averages(long: pd.DataFrame) -> pd.DataFrame:
    """Adds the per-seed means over the missing patterns (avg_patterns) and missing rates (avg_mr)."""
    derived = []
    keys = ["variant", "protocol", "seed", "metric"]
    for name, members in AVERAGES.items():
        part = long[long.condition.isin(members)].dropna(subset=["value"])
        stats = part.groupby(keys, sort=False)["value"].agg(["mean", "count"]).reset_index()
        expected = stats.metric.map(lambda metric: len(_averaged_members(name, metric)))
        stats = stats[stats["count"] == expected]
        derived.append(stats.assign(condition=name, value=stats["mean"])[long.columns])
    return pd.concat([long, *derived], ignore_index=True)


def optimum_long(evidence: Evidence | None) -> pd.DataFrame:
    """The optimum's metrics per seed's masks and condition, in the layout of read_evals."""
    if evidence is None or evidence.optimum is None:
        return pd.DataFrame(columns=LONG_COLUMNS)
    rows = []
    for seed, by_condition in evidence.masks.items():
        for condition, mask in by_condition.items():
            for metric, value in score_masks(evidence.optimum, evidence.labels, mask).items():
                rows.append((*OPTIMUM, seed, condition, metric, value))
    return with_averages(pd.DataFrame(rows, columns=LONG_COLUMNS))


# ----------------------------------------------------------------------------- summaries

def _order(values, known) -> dict:
    ordered = [v for v in known if v in set(values)] + sorted(set(values) - set(known))
    return {v: i for i, v in enumerate(ordered)}


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """variant, protocol, condition, metric, mean, std (ddof=1, NaN for one seed), n_seeds."""
    keys = ["variant", "protocol", "condition", "metric"]
    stats = long.dropna(subset=["value"]).groupby(keys, sort=False)["value"].agg(
        mean="mean", std="std", n_seeds="count").reset_index()
    variant_rank = {v: i for i, v in enumerate(dict.fromkeys(long.variant))}
    protocol_rank = _order(stats.protocol, [ALL_PATTERNS, PER_MR, *MR_CONDITIONS, COMPLETE_DATA])
    condition_rank = _order(stats.condition, [*CONDITIONS, *AVERAGES])
    metric_rank = _order(stats.metric, [*METRICS, "missing_rate"])
    key = pd.DataFrame({"v": stats.variant.map(variant_rank), "p": stats.protocol.map(protocol_rank),
                        "c": stats.condition.map(condition_rank), "m": stats.metric.map(metric_rank)})
    return stats.loc[key.sort_values(["v", "p", "c", "m"], kind="stable").index].reset_index(drop=True)


def clipped(metric: str, low: float, high: float) -> tuple[float, float]:
    """An interval within the values a metric (or a difference of it, delta_*) can take."""
    bounds = RANGES.get(metric.removeprefix("delta_"))
    if bounds is None:
        return low, high
    if metric.startswith("delta_"):
        width = bounds[1] - bounds[0]
        bounds = (-width, width)
    return max(low, bounds[0]), min(high, bounds[1])


class Cells:
    """Every table cell of a source: mean ± std over seeds from the eval files, the 95 % interval and
    the collapse mark from the per-row predictions where they were given."""

    def __init__(self, summary: pd.DataFrame, evidence: Evidence | None):
        self.stats = {(r.variant, r.protocol, r.condition, r.metric): Stat(r.mean, r.std, int(r.n_seeds))
                      for r in summary.itertuples(index=False)}
        self.evidence = evidence
        self.collapses: dict[tuple, list] = {}

    def has(self, source, condition: str, metric: str) -> bool:
        return (*source, condition, metric) in self.stats

    def protocols(self, run: str) -> set[str]:
        return {protocol for variant, protocol, _, _ in self.stats if variant == run}

    def stat(self, source, condition: str, metric: str) -> Stat | None:
        found = self.stats.get((*source, condition, metric))
        if self.evidence is None:
            return found
        undefined = self.evidence.undefined(metric)
        if undefined and (found is not None or self.evidence.has(source, condition)):
            return Stat(math.nan, n=len(self.evidence.seeds(source)), undefined=undefined)
        if found is None:
            return None
        stat = Stat(found.mean, found.std, found.n)
        interval = self.evidence.estimate(source, condition, metric)
        if interval is not None:
            stat.low, stat.high = clipped(metric, interval.low, interval.high)
        if metric in PAIR:
            key = (source, condition)
            if key not in self.collapses:
                self.collapses[key] = self.evidence.collapsed(source, condition)
            stat.flag = COLLAPSED if self.collapses[key] else ""
        return stat

    def unconverged_seeds(self, source) -> tuple[int, int]:
        """(seeds whose model did not converge, seeds) of a source; (0, 0) where nothing was trained."""
        found = self.stats.get((*source, TRAINING_CONDITION, CONVERGED))
        if found is None:
            return 0, 0
        return round((1 - found.mean) * found.n), found.n

    def warnings(self) -> list[str]:
        return [f"warning: run {source[0]} ({source[1]}) seed {seed} collapsed on {condition}: {why}"
                for (source, condition), found in self.collapses.items() for seed, why in found
                if not condition.startswith("avg_")]


def marked_row(label: str, block: str, source, cells: Cells) -> Row:
    """An empty row of this project's numbers, its label marked when a model behind it did not converge."""
    unconverged, seeds = cells.unconverged_seeds(source)
    row = Row(f"{label} {NOT_CONVERGED}" if unconverged else label, "ours", block)
    if unconverged:
        row.unconverged = f"{unconverged} of {seeds} seeds"
    return row


def source_row(label: str, block: str, source, cells: Cells, columns: list[Column]) -> Row:
    """A row of this project's numbers."""
    row = marked_row(label, block, source, cells)
    for column in columns:
        stat = cells.stat(source, column.condition, column.metric)
        if stat is not None:
            row.cells[column] = stat
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
OPTIMUM_LABEL = "Optimum (Bayes, from the generative model)"


@dataclass
class Context:
    """What every table draws on."""

    dataset: str
    methods: Methods
    cells: Cells
    runs: list[str]  # evaluated runs, in table order
    peers: pd.DataFrame
    floor: str | None  # the run whose scores are the floor of the gap table

    def block(self, run: str) -> str:
        return "baselines" if self.methods.role(run) == "baseline" else "variants"

    def has_optimum(self) -> bool:
        return bool(self.cells.protocols(OPTIMUM[0]))

    def sources(self, protocols: tuple[str, ...], suffix: str = "") -> list[tuple[str, str, tuple]]:
        """(label, block, source) of each run with one of the protocols (the first it has)."""
        found = []
        for run in self.runs:
            protocol = next((p for p in protocols if p in self.cells.protocols(run)), None)
            if protocol is not None:
                found.append((self.methods.label(run) + suffix, self.block(run), (run, protocol)))
        return found

    def optimum_sources(self) -> list[tuple[str, str, tuple]]:
        return [(OPTIMUM_LABEL, "bounds", OPTIMUM)] if self.has_optimum() else []


def rows_of(ctx: Context, sources, columns: list[Column]) -> list[Row]:
    rows = [source_row(label, block, source, ctx.cells, columns) for label, block, source in sources]
    for row, (_, _, source) in zip(rows, sources):
        if source == OPTIMUM:
            row.kind = "bound"  # a ceiling, not a competitor: not ranked
    return rows


def seeds_phrase(rows: list[Row]) -> str:
    counts = sorted({stat.n for row in rows if row.kind != "quoted" for stat in row.cells.values()})
    intervals = any(stat.has_interval for row in rows for stat in row.cells.values())
    suffix = " [95 % interval over test rows and seeds]" if intervals else ""
    if not counts:
        return "no seeds"
    if counts == [1]:
        return "1 seed (no std)" + suffix
    if len(counts) == 1:
        return f"mean ± std over {counts[0]} seeds" + suffix
    return f"mean ± std over {counts[0]}–{counts[-1]} seeds (n per row in the CSV)" + suffix


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


def interval_notes(rows: list[Row]) -> list[str]:
    notes = []
    if any(stat.has_interval for row in rows for stat in row.cells.values()):
        notes.append("[a, b]: 95 % interval of the mean, from bootstrap resamples of the test rows and the spread "
                     "over seeds (rohydr/reporting/uncertainty.py).")
    if any(stat.flag == COLLAPSED for row in rows for stat in row.cells.values()):
        notes.append(f"{COLLAPSED}: on at least one seed the predictions are (nearly) constant or of one sign "
                     "(see the aggregate log).")
    if any(stat.flag == SIGNIFICANT for row in rows for stat in row.cells.values()):
        notes.append(f"{SIGNIFICANT}: the difference's 95 % interval excludes 0.")
    return notes


def bounds_note(ctx: Context, rows: list[Row]) -> list[str]:
    notes = []
    if any(row.label == OPTIMUM_LABEL for row in rows):
        notes.append("Optimum: the Bayes-optimal prediction from the available modalities, computed from the "
                     "synthetic data's generative model (the ceiling).")
    if ctx.floor in ctx.runs:
        notes.append(f"{ctx.methods.label(ctx.floor)}: the complete-data backbone fed zeros for the missing "
                     "modalities, without missing-modality training (the floor).")
    return notes


def convergence_note(rows: list[Row]) -> list[str]:
    marked = [f"{row.label.removesuffix(' ' + NOT_CONVERGED)} ({row.unconverged})" for row in rows if row.unconverged]
    if not marked:
        return []
    return [f"{NOT_CONVERGED} not converged: a training behind the row reached max_epochs while its selection metric "
            f"still improved (train_log.csv, column converged), so its numbers are not a result: {', '.join(marked)}."]


def table_notes(ctx: Context, rows: list[Row], first: list[str]) -> list[str]:
    return (first + bounds_note(ctx, rows) + complete_only_note(rows) + convergence_note(rows) + interval_notes(rows)
            + quoted_note(rows))


def patterns_table(ctx: Context) -> Table:
    groups = {**{PATTERN_HEADERS[p]: p for p in MISSING_PATTERNS}, "Avg.": "avg_patterns", "Complete": "complete"}
    columns = [column for header, condition in groups.items() for column in pair_columns(header, condition)]
    rows = rows_of(ctx, ctx.sources((ALL_PATTERNS, COMPLETE_DATA)) + ctx.optimum_sources(), columns)
    rows += quoted_rows(ctx.peers, columns, ("avg_patterns", MISSING_PATTERNS))
    title = f"Missing patterns, {ctx.dataset}: Acc-2 and F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Columns name the AVAILABLE modalities; Avg. is the mean of the six missing patterns per seed. "
             "Trained runs: one model per seed trained and selected on every availability pattern."]
    return Table(MISSING_PATTERNS_TABLE, title, columns, rows, table_notes(ctx, rows, notes))


def realized_rates(long: pd.DataFrame) -> dict[str, float]:
    rates = long[long.metric == "missing_rate"].groupby("condition")["value"].mean()
    return rates.to_dict()


def rates_table(ctx: Context, realized: dict) -> Table:
    def header(condition: str, prefix: str = "") -> str:
        rate = realized.get(condition)
        nominal = f"{prefix}{NOMINAL_MR[condition]:.1f}"
        return f"{nominal} ({rate:.2f})" if rate is not None and np.isfinite(rate) else nominal

    groups = {"0 (complete)": "complete", **{header(c): c for c in MR_CONDITIONS}, "Avg.": "avg_mr"}
    if any(ctx.cells.has(source, BATCH_CONDITION, PAIR[0]) for _, _, source in ctx.sources((ALL_PATTERNS,))):
        groups[header(BATCH_CONDITION, "per-batch ")] = BATCH_CONDITION
    columns = [column for group, condition in groups.items() for column in pair_columns(group, condition)]
    per_mr = ctx.sources((PER_MR,), " (per-MR)")
    sources = per_mr + ctx.sources((ALL_PATTERNS,), " (all-pattern)" if per_mr else "")
    sources += ctx.sources((COMPLETE_DATA,)) + ctx.optimum_sources()
    rows = rows_of(ctx, sources, columns)
    rows += quoted_rows(ctx.peers, [c for c in columns if c.condition != BATCH_CONDITION], ("avg_mr", MR_CONDITIONS))
    title = f"Missing rates, {ctx.dataset}: Acc-2 and F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Headers: nominal missing rate (realized rate on the saved masks); 0 is the complete condition; "
             "Avg. is the mean over MR 0.1-0.7 per seed."]
    if per_mr:
        notes.append("(per-MR): one model per rate, trained and selected at that rate and scored at it alone, as "
                     "the quoted papers do; (all-pattern): one model per seed for every rate.")
    if BATCH_CONDITION in groups.values():
        notes.append("per-batch 0.7: the reference implementation's draw (one pattern per batch of 32), "
                     "not part of Avg.")
    return Table(MISSING_RATES_TABLE, title, columns, rows, table_notes(ctx, rows, notes))


def paired_delta(ctx: Context, long: pd.DataFrame, source, reference, condition: str, metric: str) -> Stat | None:
    """Difference to the reference source on the seeds both have (same seed: same masks), in points;
    with per-row predictions, its 95 % interval and the significance mark."""
    if ctx.cells.evidence is not None:
        undefined = ctx.cells.evidence.undefined(metric)
        if undefined:
            return Stat(math.nan, n=len(ctx.cells.evidence.seeds(source)), undefined=undefined)
        found = ctx.cells.evidence.difference(source, reference, condition, metric)
        if found is not None:
            low, high = clipped(f"delta_{metric}", found.low, found.high)
            significant = low > 0 or high < 0
            return Stat(found.mean * 100, found.std * 100, found.n, low * 100, high * 100,
                        SIGNIFICANT if significant else "")
    return paired_by_seed(long, source, reference, condition, metric, lambda mine, ref: (mine - ref) * 100)


def paired_by_seed(long: pd.DataFrame, source, reference, condition: str, metric: str, combine) -> Stat | None:
    """mean ± std over the seeds both sources have of combine(source's value, reference's value)."""
    part = long[(long.condition == condition) & (long.metric == metric)].dropna(subset=["value"])

    def per_seed(of):
        return part[(part.variant == of[0]) & (part.protocol == of[1])].set_index("seed")["value"]

    mine, ref = per_seed(source), per_seed(reference)
    common = mine.index.intersection(ref.index)
    if common.empty:
        return None
    values = combine(mine[common], ref[common])
    return Stat(float(values.mean()), float(values.std()) if len(values) > 1 else math.nan, len(values))


def compared_runs(requested: list[str], runs: list[str], methods: Methods, option: str) -> list[str]:
    """The requested variants (none: every variant, the main one first), then the evaluated baselines."""
    names = list(requested) or [run for run in methods.ordered(runs) if methods.role(run) != "baseline"]
    absent = [name for name in names if name not in runs]
    if absent:
        raise RohydrError(f"aggregate --{option}: no all-pattern eval.csv for run(s) {absent}; evaluated: {runs}")
    return names + [b for b in methods.ordered(runs) if methods.role(b) == "baseline" and b not in names]


def compared_rows(ctx: Context, requested: list[str], long: pd.DataFrame, columns: list[Column],
                  delta_conditions: dict[str, str], option: str) -> tuple[list[Row], list[Column]]:
    """One row per compared all-pattern run (then the baselines), and the delta columns (label ->
    condition): each row's paired difference of Acc-2 to the first row."""
    trained = [run for run in ctx.runs if ALL_PATTERNS in ctx.cells.protocols(run)]
    names = compared_runs(requested, [r for r in ctx.runs if r in trained or ctx.methods.role(r) == "baseline"],
                          ctx.methods, option)
    by_run = {source[0]: (label, block, source) for label, block, source in ctx.sources((ALL_PATTERNS, COMPLETE_DATA))}
    reference = by_run[names[0]][2]
    deltas = [Column(f"Δ Acc-2 vs {ctx.methods.label(names[0])}", label, condition, "delta_acc2_non0")
              for label, condition in delta_conditions.items()]
    rows = []
    for name in names:
        label, block, source = by_run[name]
        row = source_row(label, block, source, ctx.cells, columns)
        for column in deltas:
            if source == reference:
                row.text[column] = "ref."
            elif (delta := paired_delta(ctx, long, source, reference, column.condition, PAIR[0])) is not None:
                row.cells[column] = delta
        rows.append(row)
    return rows, deltas


DELTA_CONDITIONS = {"patterns": "avg_patterns", "MR": "avg_mr"}
DELTA_NOTE = ("Δ: Acc-2 (non-0) difference to the first row in percentage points, paired by seed (and by test row "
              "for the interval).")


def ablation_table(ctx: Context, requested: list[str], long: pd.DataFrame) -> Table:
    columns = [*pair_columns("Avg. patterns", "avg_patterns"), *pair_columns("Avg. MR", "avg_mr"),
               *pair_columns("Complete", "complete"), Column("MAE", "patterns", "avg_patterns", "mae")]
    rows, deltas = compared_rows(ctx, requested, long, columns, DELTA_CONDITIONS, "ablation")
    title = f"Ablation, {ctx.dataset}: Acc-2 and F1 (non-0) in %, MAE, {seeds_phrase(rows)}"
    notes = [DELTA_NOTE + " One model per seed trained and selected on every availability pattern."]
    return Table(ABLATION_TABLE, title, [*columns, *deltas], rows, table_notes(ctx, rows, notes))


def comparison_table(ctx: Context, requested: list[str], long: pd.DataFrame) -> Table:
    """The compared methods (RoHyDR, its peers) on every missing pattern, with the bounds."""
    columns = [*(Column(PATTERN_HEADERS[p], "Acc-2", p, PAIR[0]) for p in MISSING_PATTERNS),
               *pair_columns("Avg. patterns", "avg_patterns"), Column("Avg. MR", "Acc-2", "avg_mr", PAIR[0])]
    rows, deltas = compared_rows(ctx, requested, long, columns, DELTA_CONDITIONS, "comparison")
    rows = [row for row in rows if row.cells]
    rows += rows_of(ctx, ctx.optimum_sources(), columns)
    title = f"Comparison, {ctx.dataset}: Acc-2 and F1 (non-0) in %, {seeds_phrase(rows)}"
    notes = ["Every method on the same data, pretrained backbone, saved masks and seeds; one model per seed trained "
             "and selected on every availability pattern. Columns name the AVAILABLE modalities; Avg. MR is the "
             "mean over MR 0.1-0.7 of the same model. " + DELTA_NOTE]
    return Table(COMPARISON_TABLE, title, [*columns, *deltas], rows, table_notes(ctx, rows, notes))


def gap_table(ctx: Context) -> Table:
    """The share of the floor-to-optimum gap of Acc-2 each method closes, per pattern."""
    groups = {**{PATTERN_HEADERS[p]: p for p in MISSING_PATTERNS}, "Avg.": "avg_patterns"}
    columns = [Column(header, "gap closed", condition, "gap_acc2_non0") for header, condition in groups.items()]
    title = f"Share of the gap closed, {ctx.dataset}: (method − floor) / (optimum − floor) of Acc-2 (non-0), in %"
    evidence = ctx.cells.evidence
    if evidence is None or not ctx.has_optimum() or ctx.floor not in ctx.runs:
        return Table(GAP_TABLE, title, columns, [],
                     ["Not available: it needs the optimum (known for the synthetic data only), the floor run and "
                      "the per-row predictions."])
    if evidence.undefined(PAIR[0]):
        return Table(GAP_TABLE, title, columns, [], [f"Not available: the test split has {evidence.undefined(PAIR[0])}."])
    floor = (ctx.floor, COMPLETE_DATA)
    gaps = {column: evidence.difference(OPTIMUM, floor, column.condition, PAIR[0]) for column in columns}
    open_gaps = [column for column, gap in gaps.items() if gap is not None and gap.low > 0]
    rows = []
    for label, block, source in ctx.sources((ALL_PATTERNS,)):
        row = marked_row(label, block, source, ctx.cells)
        for column in open_gaps:
            share = evidence.share_of_gap(source, floor, column.condition, PAIR[0])
            if share is not None:
                row.cells[column] = Stat(share.mean * 100, share.std * 100, share.n, share.low * 100, share.high * 100)
        rows.append(row)
    gap_row = Row("Gap: optimum − floor (points)", "bound", "bounds")
    for column, gap in gaps.items():
        if gap is not None:
            gap_row.cells[column] = Stat(gap.mean * 100, gap.std * 100, gap.n, gap.low * 100, gap.high * 100)
    notes = [f"0 % is {ctx.methods.label(ctx.floor)} (the complete-data backbone fed zeros), 100 % the Bayes "
             "optimum; computed per seed and per bootstrap resample. –: the gap's own 95 % interval reaches 0 (last "
             "row), so there is no gap to close; no interval: on some resamples floor and optimum coincide, so the "
             "share is undefined there (a gap of a point or two)."]
    return Table(GAP_TABLE, title, columns, [*rows, gap_row], notes + convergence_note(rows) + interval_notes(rows))


def recovery_table(ctx: Context, long: pd.DataFrame, reference: str | None) -> Table:
    """Recovered against true extracted features, per modality, averaged over the patterns that lack it;
    with a reference run, each MSE also as a ratio to the reference's, paired by seed."""
    columns = [Column(f"{{{m}}} missing", label, "avg_patterns", f"rec_{kind}_{m}")
               for m in MODALITIES for kind, label in (("mse", "MSE"), ("cos", "centred cosine"))]
    ratios = [Column(f"MSE / {ctx.methods.label(reference)}", f"{{{m}}}", "avg_patterns", f"ratio_rec_mse_{m}")
              for m in MODALITIES] if reference in ctx.runs else []
    sources = ctx.sources((ALL_PATTERNS,))
    rows = []
    for row, (_, _, source) in zip(rows_of(ctx, sources, columns), sources):
        if not row.cells:
            continue
        for column in ratios:
            metric = column.metric.removeprefix("ratio_")
            ratio = paired_by_seed(long, source, (reference, ALL_PATTERNS), "avg_patterns", metric, lambda a, b: a / b)
            if ratio is not None:
                row.cells[column] = ratio
        rows.append(row)
    title = (f"Recovery, {ctx.dataset}: recovered vs true extracted features of the missing modality, "
             f"{seeds_phrase(rows)}")
    notes = ["Each cell averages the patterns that lack the modality (two one-modality patterns and one pair). "
             "MSE: lower is better; centred cosine (of recovered and true features, both minus the training mean, "
             "per row): higher is better, 0 for mean fill, and about R² for a perfect single sample from "
             "p(missing | available) when R is the conditional mean's (docs/method.md). "
             "Zero fill's MSE is the features' mean square, "
             "mean fill's their variance around the training mean. Each seed has its own pretrained extractor, "
             "hence features of its own scale: the ratio columns compare methods within each seed."]
    return Table(RECOVERY_TABLE, title, [*columns, *ratios], rows, notes)


# ----------------------------------------------------------------------------- command

def check_scores_against_predictions(long: pd.DataFrame, evidence: Evidence,
                                     predictions: dict[tuple[str, str, int], Path]) -> None:
    """Each score of an eval.csv is the one its predictions.csv.gz gives (the intervals come from those):
    a value edited, removed or emptied by hand stops the tables instead of becoming a row."""
    scores = long[long.metric.isin(METRICS)].set_index(["variant", "protocol", "seed", "condition", "metric"]).value
    for (run, protocol, seed), path in predictions.items():
        source = (run, protocol)
        for condition in evidence.masks[seed]:
            if not evidence.has(source, condition):
                continue
            expected = score(evidence.predictions(source, seed, condition, "mae"), evidence.labels)
            for metric, truth in expected.items():
                found = scores.get((run, protocol, seed, condition, metric), "no row")
                # predictions.csv.gz keeps 6 significant digits: a prediction that close to one of Acc-5's or
                # Acc-7's rounding boundaries may round the other way there
                tolerance = 1e-4 + (2 / len(evidence.labels) if metric in ("acc5", "acc7") else 0)
                agrees = found != "no row" and (math.isclose(found, truth, abs_tol=tolerance)
                                                or (math.isnan(found) and math.isnan(truth)))
                if not agrees:
                    raise RohydrError(
                        f"eval {path.with_name('eval.csv')}: condition {condition!r}, metric {metric!r} is {found}, "
                        f"but {path.name} beside it gives {truth:.6g}: the file was changed after `rohydr evaluate` "
                        "wrote it; evaluate again")


def prediction_paths(eval_paths: list) -> dict[tuple[str, str, int], Path]:
    paths = {}
    for raw in eval_paths:
        path = Path(raw)
        predictions = path.with_name("predictions.csv.gz")
        if not predictions.is_file():
            raise RohydrError(f"eval {path}: no predictions.csv.gz beside it (needed for the intervals)")
        paths[run_of(path)] = predictions
    return paths


def aggregate(dataset: str, eval_paths: list, out_dir, literature: str = "auto", peers_key: str | None = None,
              ablation: list[str] | None = None, methods: Methods | None = None, masks: list | None = None,
              optimum=None, floor: str | None = None, recovery_reference: str | None = None,
              comparison: list[str] | None = None) -> dict[str, Table]:
    """Tables from eval.csv files; with `masks` (the test masks, seed{seed}.h5) also the intervals, the
    collapse marks and the gap table, from the predictions.csv.gz beside each eval.csv, and with `optimum`
    (a synthetic dataset's optimum_samples.csv.gz) the optimum row."""
    out_dir = Path(out_dir)
    methods = methods or Methods()
    long = read_evals(eval_paths)
    evidence = None
    if masks:
        predictions = prediction_paths(eval_paths)
        evidence = Evidence.load(masks, predictions, optimum)
        check_scores_against_predictions(long, evidence, predictions)
        evidence.add_per_mr()
    elif optimum is not None:
        raise RohydrError("aggregate: the optimum row needs the test masks (--masks)")
    peers = load_literature(literature, peers_key)
    runs = list(dict.fromkeys(long.variant))
    methods.check(runs)
    if floor is not None and floor not in runs:
        raise RohydrError(f"aggregate --floor {floor}: no eval.csv of that run; evaluated: {runs}")
    long = pd.concat([long, optimum_long(evidence)], ignore_index=True)
    summary = summarize(long)
    ctx = Context(dataset, methods, Cells(summary, evidence), methods.ordered(runs), peers, floor)
    tables = {MISSING_PATTERNS_TABLE: patterns_table(ctx), MISSING_RATES_TABLE: rates_table(ctx, realized_rates(long))}
    if ablation is not None:
        tables[ABLATION_TABLE] = ablation_table(ctx, ablation, long)
    if comparison is not None:
        tables[COMPARISON_TABLE] = comparison_table(ctx, comparison, long)
    tables[GAP_TABLE] = gap_table(ctx)
    tables[RECOVERY_TABLE] = recovery_table(ctx, long, recovery_reference)
    for warning in ctx.cells.warnings():
        print(warning, file=sys.stderr)
    # everything is checked and built before the first file is written
    order = {v: i for i, v in enumerate([*runs, OPTIMUM[0]])}
    seeds = long.assign(rank=long.variant.map(order)).sort_values(["rank", "seed"], kind="stable")
    seeds = seeds.assign(dataset=dataset)
    write_text_atomic(out_dir / "seeds.csv", seeds[["dataset", *LONG_COLUMNS]].to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out_dir / "all_metrics.csv", summary.assign(dataset=dataset)[
        ["dataset", "variant", "protocol", "condition", "metric", "mean", "std", "n_seeds"]].to_csv(
        index=False, float_format="%.6g"))
    for table in tables.values():
        write_table(table, out_dir, dataset)
    return tables

"""A table of `rohydr aggregate` written four ways: Markdown, a standalone LaTeX document, an HTML page
(the one the Snakemake report shows) and a long CSV with every number unrounded.

Each column is one metric under one group header ("{l}" -> "Acc-2", "F1"). In every column where
higher (or, for MAE, lower) is better, the best and second-best value of this project's rows are
marked, compared as printed (one decimal): ties share the mark. Quoted literature rows are not ranked.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd

from rohydr.core.io import write_text_atomic

PERCENT_METRICS = {"acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7"}
LOWER_IS_BETTER = {"mae", *(f"{prefix}rec_mse_{m}" for prefix in ("", "ratio_") for m in "lav")}
METRIC_LABELS = {"acc2_non0": "Acc-2", "f1_non0": "F1", "mae": "MAE"}
DASH = "–"
EXTENSIONS = ("md", "tex", "html", "csv")


@dataclass
class Stat:
    mean: float
    std: float = math.nan  # NaN: one seed, or a quoted number
    n: int = 0  # seeds; 0 for quoted literature
    low: float = math.nan  # 95 % interval over test rows and seeds (rohydr/reporting/uncertainty.py)
    high: float = math.nan
    flag: str = ""  # printed after the cell: SIGNIFICANT or COLLAPSED
    undefined: str = ""  # why the test split cannot give this metric (printed "n/a (why)" instead of a number)

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


SIGNIFICANT = "*"  # a difference whose 95 % interval excludes 0
COLLAPSED = "†"  # predictions (nearly) constant or of one sign on some seed
NOT_CONVERGED = "‡"  # after a row's label: a training behind it reached max_epochs while still improving


@dataclass(frozen=True)
class Column:
    group: str  # top header, e.g. "{l}" or "Avg."
    sub: str  # second header, e.g. "Acc-2"
    condition: str
    metric: str

    @property
    def ranked(self) -> bool:
        return not self.metric.startswith("delta_")


@dataclass
class Row:
    label: str
    kind: str  # "ours" | "bound" (this project's numbers of a ceiling, not ranked) | "quoted"
    block: str  # rows of one block stay together; a rule separates blocks
    source: str = ""
    cells: dict[Column, Stat] = field(default_factory=dict)
    text: dict[Column, str] = field(default_factory=dict)  # fixed text instead of a number ("ref.")
    unconverged: str = ""  # "k of n seeds" whose model did not converge (the label carries NOT_CONVERGED)


@dataclass
class Table:
    name: str
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def pair_columns(group: str, condition: str, metrics=("acc2_non0", "f1_non0")) -> list[Column]:
    return [Column(group, METRIC_LABELS[m], condition, m) for m in metrics]


# ----------------------------------------------------------------------------- numbers and marks

def _number(metric: str, value: float, signed: bool = False) -> str:
    if metric == "mae" or metric.startswith(("rec_", "ratio_")):
        return f"{value:.3f}"
    scaled = value * 100 if metric in PERCENT_METRICS else value
    return f"{scaled:+.1f}" if signed else f"{scaled:.1f}"


def stat_parts(metric: str, stat: Stat) -> tuple[str, str | None]:
    """(mean, std) as printed; std is None for one seed or a quoted number."""
    if stat.n == 0 and metric in PERCENT_METRICS:  # quoted literature is already in percent
        return f"{stat.mean:.1f}", None
    mean = _number(metric, stat.mean, signed=metric.startswith("delta_"))
    if stat.n <= 1 or not np.isfinite(stat.std):
        return mean, None
    return mean, _number(metric, stat.std)


def interval_text(metric: str, stat: Stat) -> str | None:
    if not stat.has_interval:
        return None
    signed = metric.startswith("delta_")
    return f"[{_number(metric, stat.low, signed)}, {_number(metric, stat.high, signed)}]"


def stat_text(metric: str, stat: Stat) -> str:
    if stat.undefined:
        return f"n/a ({stat.undefined})"
    mean, std = stat_parts(metric, stat)
    text = mean if std is None else f"{mean} ± {std}"
    interval = interval_text(metric, stat)
    return (text if interval is None else f"{text} {interval}") + stat.flag


def marks(table: Table) -> dict[tuple[int, Column], str]:
    """(row index, column) -> "best" | "second" over this project's rows, per ranked column."""
    found = {}
    for column in (c for c in table.columns if c.ranked):
        printed = {i: float(_number(column.metric, row.cells[column].mean)) for i, row in enumerate(table.rows)
                   if row.kind == "ours" and column in row.cells and not row.cells[column].undefined}
        if len(printed) < 2:
            continue
        levels = sorted(set(printed.values()), reverse=column.metric not in LOWER_IS_BETTER)
        ranks = {"best": levels[0], "second": levels[1] if len(levels) > 1 and len(printed) > 2 else None}
        for i, value in printed.items():
            for mark, level in ranks.items():
                if value == level:
                    found[i, column] = mark
    return found


def marks_note(table: Table, best: str, second: str) -> str:
    ranked = sum(row.kind == "ours" for row in table.rows)
    note = (f"{best}: best, {second}: second best in each column among this project's {ranked} rows "
            "(compared as printed; ties share the mark)")
    if any(row.kind == "quoted" for row in table.rows):
        note += "; quoted rows are not ranked"
    if any(row.kind == "bound" for row in table.rows):
        note += "; the optimum is not ranked"
    if any(not c.ranked for c in table.columns):
        note += "; Δ columns are not ranked"
    return note + "."


def cell_text(row: Row, column: Column) -> str:
    if column in row.text:
        return row.text[column]
    return stat_text(column.metric, row.cells[column]) if column in row.cells else DASH


def header_groups(table: Table) -> list[tuple[str, list[Column]]]:
    return [(group, list(columns)) for group, columns in groupby(table.columns, key=lambda c: c.group)]


# ----------------------------------------------------------------------------- formats

def to_markdown(table: Table) -> str:
    style = {"best": "**{}**", "second": "_{}_"}
    marked = marks(table)
    headers = [c.group if c.group == c.sub else f"{c.group} {c.sub}" for c in table.columns]
    lines = [f"**{table.title}**", "", "| Method | " + " | ".join(headers) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for i, row in enumerate(table.rows):
        cells = [style.get(marked.get((i, c)), "{}").format(cell_text(row, c)) for c in table.columns]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    lines += ["", *table.notes, marks_note(table, "**Bold**", "_italic_")]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "≥": r"$\geq$", "†": r"$^\dagger$",
                 "‡": r"$^\ddagger$", "²": r"$^2$", "−": r"$-$", "*": r"$^*$"}


def latex_escape(text: str) -> str:
    return re.sub("|".join(map(re.escape, LATEX_SPECIAL)), lambda m: LATEX_SPECIAL[m.group(0)], text)


def latex_number(text: str) -> str:
    """A cell in LaTeX, a negative number with a minus sign rather than a hyphen."""
    return re.sub(r"^-(?=\d)", "$-$", latex_escape(text))


def latex_header(table: Table) -> list[str]:
    tops, rules, subs, first = [""], [], ["Method"], 2
    for group, columns in header_groups(table):
        span = len(columns)
        tops.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(group)}}}" if span > 1 else latex_escape(group))
        rules.append(rf"\cmidrule(lr){{{first}-{first + span - 1}}}")
        subs += [latex_escape(c.sub) if c.sub != group else "" for c in columns]
        first += span
    return [" & ".join(tops) + r" \\", " ".join(rules), " & ".join(subs) + r" \\"]


def to_latex(table: Table, dataset: str) -> str:
    style = {"best": r"\textbf{%s}", "second": r"\underline{%s}"}
    marked = marks(table)
    caption = " ".join([latex_escape(table.title) + ".", *map(latex_escape, table.notes),
                        latex_escape(marks_note(table, "Bold", "underlined"))])
    label = f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', dataset)}-{table.name.replace('_', '-')}"
    lines = [
        f"% {table.name}: a standalone document (pdflatex {table.name}.tex); in a paper, copy the table",
        "% environment (it needs booktabs and graphicx).",
        r"\documentclass{article}",
        r"\usepackage[a4paper,landscape,margin=1.5cm]{geometry}",
        r"\usepackage{booktabs,graphicx}",
        r"\begin{document}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{{label}}}",
        r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%",
        r"\begin{tabular}{l" + "".join("c" * len(columns) for _, columns in header_groups(table)) + "}",
        r"\toprule",
        *latex_header(table),
        r"\midrule",
    ]
    for i, row in enumerate(table.rows):
        if i and row.block != table.rows[i - 1].block:
            lines.append(r"\midrule")
        cells = [style.get(marked.get((i, c)), "%s") % latex_number(cell_text(row, c)) for c in table.columns]
        lines.append(" & ".join([latex_escape(row.label), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", r"\end{document}"]
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body { font-family: "Helvetica Neue", Arial, sans-serif; font-size: 14px; margin: 16px; color: #111; }
table { border-collapse: collapse; }
caption { caption-side: top; text-align: left; font-weight: bold; padding-bottom: 8px; }
th, td { padding: 4px 7px; text-align: center; white-space: nowrap; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
thead tr:first-child th { border-top: 2px solid #111; }
thead tr:last-child th { border-bottom: 1px solid #111; }
th.group { border-bottom: 1px solid #999; }
tbody tr.block-start td { border-top: 1px solid #111; }
tbody tr:last-child td { border-bottom: 2px solid #111; }
tr.quoted td { color: #555; font-style: italic; }
tbody tr:hover td { background: #f3f6fa; }
p.notes { max-width: 80em; font-size: 13px; color: #333; }
span.sd { font-size: 85%; color: #555; }
span.ci { font-size: 78%; color: #777; }
"""


def html_cell(row: Row, column: Column) -> str:
    """The mean, with its std in smaller grey type so that columns of means read at a glance."""
    if column in row.text or column not in row.cells:
        return html.escape(cell_text(row, column))
    stat = row.cells[column]
    mean, std = stat_parts(column.metric, stat)
    interval = interval_text(column.metric, stat)
    return (html.escape(mean) + (f'<span class="sd"> ± {html.escape(std)}</span>' if std is not None else "")
            + (f' <br><span class="ci">{html.escape(interval)}</span>' if interval else "") + html.escape(stat.flag))


def to_html(table: Table) -> str:
    style = {"best": "<b>{}</b>", "second": "<u>{}</u>"}
    marked = marks(table)
    tops, subs = ['<th rowspan="2">Method</th>'], []
    for group, columns in header_groups(table):
        if len(columns) == 1 and columns[0].sub == group:
            tops.append(f'<th rowspan="2">{html.escape(group)}</th>')
            continue
        tops.append(f'<th class="group" colspan="{len(columns)}">{html.escape(group)}</th>')
        subs += [f"<th>{html.escape(c.sub)}</th>" for c in columns]
    body = []
    for i, row in enumerate(table.rows):
        classes = [row.kind] + (["block-start"] if i and row.block != table.rows[i - 1].block else [])
        cells = [style.get(marked.get((i, c)), "{}").format(html_cell(row, c)) for c in table.columns]
        body.append(f'<tr class="{" ".join(classes)}"><td>{html.escape(row.label)}</td>'
                    + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    notes = " ".join(html.escape(note) for note in [*table.notes, marks_note(table, "Bold", "underlined")])
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(table.title)}</title>", f"<style>{HTML_STYLE}</style>", "</head>", "<body>",
        f"<table>\n<caption>{html.escape(table.title)}</caption>",
        f"<thead>\n<tr>{''.join(tops)}</tr>\n<tr>{''.join(subs)}</tr>\n</thead>",
        "<tbody>", *body, "</tbody>", "</table>", f'<p class="notes">{notes}</p>', "</body>", "</html>",
    ]) + "\n"


def to_long_csv(table: Table, dataset: str) -> str:
    records = []
    for row in table.rows:
        for column in table.columns:
            stat = row.cells.get(column)
            if stat is None:
                continue
            # our accuracies are fractions; quoted ones and the deltas are already in % / points
            scale = 100.0 if row.kind != "quoted" and column.metric in PERCENT_METRICS else 1.0
            unit = "%" if column.metric in PERCENT_METRICS else "pp" if column.metric.startswith("delta_") else ""
            records.append({"dataset": dataset, "row": row.label, "kind": row.kind, "source": row.source,
                            "column": column.group, "condition": column.condition, "metric": column.metric,
                            "mean": stat.mean * scale, "std": stat.std * scale, "ci_low": stat.low * scale,
                            "ci_high": stat.high * scale, "flag": stat.flag, "n_seeds": stat.n, "unit": unit})
    columns = ["dataset", "row", "kind", "source", "column", "condition", "metric", "mean", "std", "ci_low",
               "ci_high", "flag", "n_seeds", "unit"]
    return pd.DataFrame(records, columns=columns).to_csv(index=False, float_format="%.6g")


def write_table(table: Table, out_dir: Path, dataset: str) -> None:
    texts = {"md": to_markdown(table), "tex": to_latex(table, dataset), "html": to_html(table),
             "csv": to_long_csv(table, dataset)}
    for ext in EXTENSIONS:
        write_text_atomic(out_dir / f"{table.name}.{ext}", texts[ext])

"""Tables and figures from hand-made eval.csv and train_log.csv files in the formats of evaluate and train."""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from rohydr.core.errors import RohydrError
from rohydr.core.metrics import METRICS
from rohydr.core.vocabulary import CONDITIONS, MISSING_PATTERNS, MR_CONDITIONS, NOMINAL_MR, PATTERNS
from matplotlib.colors import to_hex
from rohydr.reporting.figures import GROUPS, component_colors, plots, unconverged_runs
from rohydr.reporting.methods import (
    BASELINE_COLORS,
    MAIN_COLOR,
    Methods,
    VARIANT_COLORS,
    literature_colors,
    parse_display_names,
)
from rohydr.reporting.render import NOT_CONVERGED
from rohydr.reporting.tables import aggregate, read_evals

SEEDS = (1, 2)
PATTERN_HEADERS = ["{l}", "{a}", "{v}", "{l,a}", "{l,v}", "{a,v}"]
METHODS = Methods("rohydr", ("zero_fill", "complete"))


def acc2(variant: str, condition: str, seed: int) -> float:
    """A value that is easy to average by hand: base + 1 point per condition index + 2 points per seed."""
    base = {"rohydr": 0.70, "no_diffusion": 0.60, "complete": 0.80}[variant]
    return base + 0.01 * CONDITIONS.index(condition) + 0.02 * (seed - 1)


def missing_rate(condition: str) -> float:
    if condition in PATTERNS:
        return (3 - sum(PATTERNS[condition])) / 3
    return 2 / 3 if condition == "mr0.7" else NOMINAL_MR.get(condition, 12 / 21)


def write_eval(root, variant: str, seed: int, conditions=CONDITIONS, like: str | None = None):
    """results/mosi/{variant}/seed{seed}/eval.csv with the values of `like` (default: the variant itself)."""
    rows = []
    for condition in conditions:
        value = acc2(like or variant, condition, seed)
        for metric in METRICS:
            rows.append((condition, metric, {"f1_non0": value - 0.01, "mae": 1.5 - value}.get(metric, value)))
        rows.append((condition, "missing_rate", missing_rate(condition)))
        for slot, modality in enumerate("lav"):
            if condition not in PATTERNS or not PATTERNS[condition][slot]:
                rows.append((condition, f"rec_mse_{modality}", 0.4 + 0.1 * slot + 0.05 * seed))
                rows.append((condition, f"rec_cos_{modality}", 0.7 - 0.1 * slot - 0.02 * seed))
    protocol = "complete_data" if variant == "complete" else "all_patterns"
    path = root / "results" / "mosi" / variant / protocol / f"seed{seed}" / "eval.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["condition", "metric", "value"]).to_csv(path, index=False)
    return path


def write_train_log(root, variant: str, seed: int, joint: bool = False):
    rng = np.random.default_rng(seed)
    epochs = np.arange(1, 9 + seed)
    decay = np.exp(-epochs / 4)
    log = {"epoch": epochs, "wall_s": 12.0 + rng.random(len(epochs)), "lr": 0.002}
    stages = ("joint",) if joint else ("stage1", "stage2", "stage3")
    if joint:
        log["joint_loss"] = 1.0 + decay
    else:
        log.update(stage1_loss=0.5 + decay, stage1_diffusion=0.3 + decay, stage1_reconstruction=0.2 + decay / 2,
                   disc_loss=0.13 + 0 * decay, stage2_loss=0.4 + decay / 3, stage2_adversarial=0.69 + 0 * decay,
                   stage2_l1=0.1 + decay / 4, stage3_loss=0.6 + decay, joint_loss=np.nan)
    for stage in stages:
        for i, group in enumerate(("extractor", "diffusion", "unimodal_reconstructor", "fusion", "head")):
            log[f"gradnorm_{stage}_{group}"] = 10.0 ** (i - 2) * (1 + decay)
    log.update(val_l1=0.9 + decay / 2, val_acc2=0.75 - decay / 5, val_f1=0.74 - decay / 5)
    path = root / "results" / "mosi" / variant / "all_patterns" / f"seed{seed}" / "train_log.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(log).to_csv(path, index=False)
    return path


@pytest.fixture
def evals(tmp_path):
    """rohydr and no_diffusion on every condition, the complete baseline on `complete` only; 2 seeds each."""
    paths = [write_eval(tmp_path, variant, seed) for variant in ("rohydr", "no_diffusion") for seed in SEEDS]
    paths += [write_eval(tmp_path, "complete", seed, ["complete"]) for seed in SEEDS]
    return paths


def unmarked(text: str) -> str:
    """A Markdown cell without its best (**x**) or second-best (_x_) mark."""
    for mark in ("**", "_"):
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            return text[len(mark):-len(mark)]
    return text


def md_rows(path, marks: bool = False) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(headers, row label -> header -> cell) of a Markdown table; marks=False strips the best/second marks."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    split = lambda line: [cell.strip() for cell in line.strip("|").split("|")]  # noqa: E731
    headers = split(lines[0])[1:]
    rows = {cells[0]: dict(zip(headers, cells[1:])) for cells in map(split, lines[2:])}
    return headers, rows if marks else {label: {h: unmarked(c) for h, c in row.items()} for label, row in rows.items()}


def pair(row: dict, group: str) -> tuple[str, str]:
    return row[f"{group} Acc-2"], row[f"{group} F1"]


def groups(headers: list[str]) -> list[str]:
    """The column groups of the Markdown headers ("{l} Acc-2", "{l} F1" -> "{l}")."""
    return list(dict.fromkeys(h.rsplit(" ", 1)[0] for h in headers))


def cell(acc2_values: list[float]) -> tuple[str, str]:
    """The expected "mean ± std" texts of Acc-2 and F1 (= Acc-2 - 1 point) over seeds, in %."""
    a = np.array(acc2_values) * 100
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}", f"{a.mean() - 1:.1f} ± {a.std(ddof=1):.1f}"


CELL = re.compile(r"^\d+\.\d ± \d+\.\d$")


def test_tables_hold_every_condition_as_mean_pm_std(evals, tmp_path):
    out = tmp_path / "tables"
    aggregate("mosi", evals, out)
    headers, rows = md_rows(out / "missing_patterns.md")
    assert headers == [f"{h} {m}" for h in [*PATTERN_HEADERS, "Avg.", "Complete"] for m in ("Acc-2", "F1")]
    for header, condition in zip(PATTERN_HEADERS + ["Complete"], [*MISSING_PATTERNS, "complete"]):
        assert pair(rows["rohydr"], header) == cell([acc2("rohydr", condition, s) for s in SEEDS]), header
    headers, rows = md_rows(out / "missing_rates.md")
    names = groups(headers)
    assert names[0] == "0 (complete)" and names[7] == "0.7 (0.67)" and names[8] == "Avg."
    assert names[9].startswith("per-batch 0.7")
    for header, condition in zip(names, ["complete", *MR_CONDITIONS, "avg_mr", "batch_mr0.7"]):
        assert all(CELL.match(text) for text in pair(rows["no_diffusion"], header)), (header, rows["no_diffusion"])
        if condition in CONDITIONS:
            assert pair(rows["no_diffusion"], header) == cell([acc2("no_diffusion", condition, s) for s in SEEDS])
    summary = pd.read_csv(out / "all_metrics.csv")
    got = summary[summary.variant == "rohydr"]
    for condition in CONDITIONS:
        for metric in (*METRICS, "missing_rate"):
            assert ((got.condition == condition) & (got.metric == metric)).sum() == 1, (condition, metric)
    assert (summary.n_seeds == 2).all()
    seeds = pd.read_csv(out / "seeds.csv")
    assert set(seeds.seed) == set(SEEDS) and list(dict.fromkeys(seeds.variant)) == ["rohydr", "no_diffusion", "complete"]
    assert "mean ± std over 2 seeds" in (out / "missing_patterns.md").read_text().splitlines()[0]


def test_averages_are_per_seed_means_then_mean_and_std(evals, tmp_path):
    out = tmp_path / "tables"
    aggregate("mosi", evals, out)
    _, rows = md_rows(out / "missing_patterns.md")
    # by hand: rohydr's six patterns average 72.5 % on seed 1 and 74.5 % on seed 2 -> 73.5 ± 1.4
    assert pair(rows["rohydr"], "Avg.") == ("73.5 ± 1.4", "72.5 ± 1.4")
    per_seed = [np.mean([acc2("rohydr", c, s) for c in MISSING_PATTERNS]) for s in SEEDS]
    assert pair(rows["rohydr"], "Avg.") == cell(per_seed)
    summary = pd.read_csv(out / "all_metrics.csv").set_index(["variant", "condition", "metric"])
    assert summary.loc[("rohydr", "avg_patterns", "mae"), "mean"] == pytest.approx(1.5 - 0.735)
    assert summary.loc[("rohydr", "avg_patterns", "acc2_non0"), "std"] == pytest.approx(0.02 / np.sqrt(2), rel=1e-5)
    _, rows = md_rows(out / "missing_rates.md")
    # no_diffusion: MR conditions have indices 7..13 -> 60 + 10 = 70 % on seed 1, 72 % on seed 2
    assert pair(rows["no_diffusion"], "Avg.") == ("71.0 ± 1.4", "70.0 ± 1.4")


def test_missing_conditions_show_a_dash(evals, tmp_path):
    other = write_eval(tmp_path, "no_lv", 3, [c for c in CONDITIONS if c != "lv"], like="no_diffusion")
    out = tmp_path / "tables"
    aggregate("mosi", [*evals, other], out)
    _, rows = md_rows(out / "missing_patterns.md")
    assert all(pair(rows["complete"], h) == ("–", "–") for h in [*PATTERN_HEADERS, "Avg."])
    assert all(CELL.match(text) for text in pair(rows["complete"], "Complete"))
    assert pair(rows["no_lv"], "{l,v}") == ("–", "–")
    assert pair(rows["no_lv"], "Avg.") == ("–", "–")  # no average over five patterns
    value = acc2("no_diffusion", "l", 3) * 100
    assert pair(rows["no_lv"], "{l}") == (f"{value:.1f}", f"{value - 1:.1f}")
    summary = pd.read_csv(out / "all_metrics.csv")
    one_seed = summary[summary.variant == "no_lv"]
    assert (one_seed.n_seeds == 1).all() and one_seed["std"].isna().all()


def test_literature_rows_only_when_asked(evals, tmp_path):
    aggregate("mosi", evals, tmp_path / "none")
    assert "quoted" not in (tmp_path / "none" / "missing_rates.md").read_text()
    run_cli("aggregate", "--dataset", "mosi", "--eval", *evals, "--peers-key", "MOSI", "--out-dir", tmp_path / "mosi")
    headers, rows = md_rows(tmp_path / "mosi" / "missing_rates.md")
    imder = rows["IMDer (quoted: NeurIPS-23 via ComP AAAI-26)"]
    assert pair(imder, "0.1 (0.10)") == ("84.9", "84.8") and pair(imder, "0.7 (0.67)") == ("71.9", "71.2")
    assert pair(rows["DiCMoR (quoted: ICCV-23 via ComP AAAI-26)"], "0.4 (0.40)") == ("77.7", "77.9")
    assert list(rows)[:3] == ["rohydr", "no_diffusion", "complete"]  # ours first, literature after
    assert pair(rows["IMDer (quoted: NeurIPS-23)"], "0 (complete)") == ("85.7", "85.6")
    _, rows = md_rows(tmp_path / "mosi" / "missing_patterns.md")
    assert pair(rows["IMDer (quoted: NeurIPS-23)"], "Complete") == ("85.7", "85.6")
    assert pair(rows["IMDer (quoted: NeurIPS-23)"], "{l}") == ("–", "–")
    aggregate("mosi", evals, tmp_path / "mosei", peers_key="MOSEI")
    _, rows = md_rows(tmp_path / "mosei" / "missing_rates.md")
    assert pair(rows["IMDer (quoted: NeurIPS-23 via ComP AAAI-26)"], "0.1 (0.10)") == ("84.8", "84.6")
    aggregate("mosi", evals, tmp_path / "off", literature="none", peers_key="MOSI")
    assert "quoted" not in (tmp_path / "off" / "missing_rates.md").read_text()
    custom = tmp_path / "peers.csv"
    custom.write_text("dataset,method,source,condition,acc2_non0,f1_non0\nMOSI,Mine,arXiv,mr0.3,70.0,69.5\n")
    aggregate("mosi", evals, tmp_path / "custom", literature=str(custom))
    _, rows = md_rows(tmp_path / "custom" / "missing_rates.md")
    assert pair(rows["Mine (quoted: arXiv)"], "0.3 (0.30)") == ("70.0", "69.5")
    assert pair(rows["Mine (quoted: arXiv)"], "Avg.") == ("–", "–")


def test_ablation_table(evals, tmp_path):
    zero_fill = [write_eval(tmp_path, "zero_fill", s, like="no_diffusion") for s in SEEDS]
    out = tmp_path / "tables"
    aggregate("mosi", [*evals, *zero_fill], out, ablation=["rohydr", "no_diffusion"], methods=METHODS)
    headers, rows = md_rows(out / "ablation.md")
    assert list(rows) == ["rohydr", "no_diffusion", "zero_fill", "complete"]
    assert groups(headers) == ["Avg. patterns", "Avg. MR", "Complete", "MAE", "Δ Acc-2 vs rohydr"]
    assert headers[6:] == ["MAE patterns", "Δ Acc-2 vs rohydr patterns", "Δ Acc-2 vs rohydr MR"]
    assert rows["rohydr"][headers[7]] == "ref."
    assert rows["no_diffusion"][headers[7]] == "-10.0 ± 0.0"  # paired per seed: exactly 10 points each
    assert pair(rows["complete"], "Avg. patterns") == ("–", "–")
    assert all(CELL.match(text) for text in pair(rows["complete"], "Complete"))
    tex = (out / "ablation.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and r"no\_diffusion" in tex and r"\caption{" in tex
    assert r"$-$10.0 $\pm$ 0.0" in tex  # a minus sign, not a hyphen
    long = pd.read_csv(out / "ablation.csv")
    mae = long[(long.row == "rohydr") & (long.metric == "mae")]
    assert mae["mean"].item() == pytest.approx(1.5 - np.mean([np.mean([acc2("rohydr", c, s) for c in MISSING_PATTERNS])
                                                                for s in SEEDS]))
    with pytest.raises(RohydrError, match="no_adversarial"):
        aggregate("mosi", evals, tmp_path / "bad", ablation=["rohydr", "no_adversarial"], methods=METHODS)
    assert not (tmp_path / "bad").exists()  # nothing is written when an input is wrong


def test_the_config_decides_main_variant_baselines_and_names(evals, tmp_path):
    """What the workflow passes from its config decides the row order, the ablation's reference and the labels."""
    zero_fill = [write_eval(tmp_path, "zero_fill", s, like="no_diffusion") for s in SEEDS]
    base = ["--dataset", "mosi", "--eval", *evals, *zero_fill, "--ablation", "--baselines", "zero_fill", "complete"]
    run_cli("aggregate", *base, "--main-variant", "rohydr", "--out-dir", tmp_path / "a")
    run_cli("aggregate", *base, "--main-variant", "no_diffusion", "--out-dir", tmp_path / "b",
            "--display-names", "no_diffusion=Ours & co_1", "complete=Complete inputs")
    _, rows = md_rows(tmp_path / "a" / "missing_patterns.md")
    assert list(rows) == ["rohydr", "no_diffusion", "zero_fill", "complete"]
    _, rows = md_rows(tmp_path / "b" / "missing_patterns.md")
    assert list(rows) == ["Ours & co_1", "rohydr", "zero_fill", "Complete inputs"]
    headers, rows = md_rows(tmp_path / "b" / "ablation.md")
    assert list(rows)[0] == "Ours & co_1" and rows["rohydr"]["Δ Acc-2 vs Ours & co_1 patterns"] == "+10.0 ± 0.0"
    assert "Complete inputs: scored on complete inputs only" in (tmp_path / "b" / "missing_rates.md").read_text()
    assert r"Ours \& co\_1" in (tmp_path / "b" / "missing_rates.tex").read_text()
    assert "Ours &amp; co_1" in (tmp_path / "b" / "missing_rates.html").read_text()
    result = run_cli("aggregate", *base, "--display-names", "typo=X", "--out-dir", tmp_path / "c", check=False)
    assert result.returncode == 2 and "typo" in result.stderr


def test_best_and_second_best_are_marked_among_our_rows(evals, tmp_path):
    twin = [write_eval(tmp_path, "twin", s, like="rohydr") for s in SEEDS]
    out = tmp_path / "tables"
    aggregate("mosi", [*evals, *twin], out, peers_key="MOSI", ablation=[], methods=METHODS)
    _, rows = md_rows(out / "missing_patterns.md", marks=True)
    best = cell([acc2("rohydr", "l", s) for s in SEEDS])[0]
    # rohydr and its twin tie (as printed) for best, no_diffusion is second; complete has no {l} value
    assert rows["rohydr"]["{l} Acc-2"] == rows["twin"]["{l} Acc-2"] == f"**{best}**"
    assert rows["no_diffusion"]["{l} Acc-2"] == f"_{cell([acc2('no_diffusion', 'l', s) for s in SEEDS])[0]}_"
    ceiling = cell([acc2("complete", "complete", s) for s in SEEDS])[0]
    assert rows["complete"]["Complete Acc-2"] == f"**{ceiling}**" and rows["rohydr"]["Complete Acc-2"].startswith("_")
    assert rows["IMDer (quoted: NeurIPS-23)"]["Complete Acc-2"] == "85.7"  # quoted: never ranked
    _, rows = md_rows(out / "ablation.md", marks=True)
    assert rows["rohydr"]["MAE patterns"].startswith("**")  # lowest MAE is best
    assert not rows["no_diffusion"]["Δ Acc-2 vs rohydr patterns"].startswith(("**", "_"))
    assert "quoted rows are not ranked" in (out / "missing_patterns.md").read_text()
    assert r"\textbf{" + best.replace("±", r"$\pm$") + "}" in (out / "missing_patterns.tex").read_text()
    html = (out / "missing_patterns.html").read_text()
    mean, std = best.split(" ± ")
    assert f'<b>{mean}<span class="sd"> ± {std}</span></b>' in html and "<u>" in html


def test_rates_table_shows_the_complete_baseline_at_mr_0(evals, tmp_path):
    out = tmp_path / "tables"
    aggregate("mosi", evals, out, methods=METHODS)
    headers, rows = md_rows(out / "missing_rates.md")
    assert pair(rows["complete"], "0 (complete)") == cell([acc2("complete", "complete", s) for s in SEEDS])
    assert pair(rows["rohydr"], "0 (complete)") == cell([acc2("rohydr", "complete", s) for s in SEEDS])
    assert all(pair(rows["complete"], group) == ("–", "–") for group in groups(headers)[1:])
    assert "complete: scored on complete inputs only" in (out / "missing_rates.md").read_text()


class HtmlCells(HTMLParser):
    """The caption and the text of every cell, row by row, of an HTML table."""

    def __init__(self, text: str):
        super().__init__()
        self.caption, self.rows, self.inside = "", [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th", "caption"):
            self.inside = tag
            if tag != "caption":
                self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption"):
            self.inside = None

    def handle_data(self, data):
        if self.inside == "caption":
            self.caption += data
        elif self.inside:
            self.rows[-1][-1] += data


def test_html_tables_read_like_the_markdown_ones(evals, tmp_path):
    out = tmp_path / "tables"
    aggregate("mosi", evals, out, peers_key="MOSI", ablation=[], methods=METHODS)
    for name in ("missing_patterns", "missing_rates", "ablation"):
        page = HtmlCells((out / f"{name}.html").read_text())
        headers, rows = md_rows(out / f"{name}.md")
        assert page.caption == (out / f"{name}.md").read_text().splitlines()[0].strip("*")
        groups_row, subs_row, *body = page.rows
        assert groups_row[0] == "Method" and len(subs_row) == len(headers)
        assert {cells[0]: cells[1:] for cells in body} == {label: list(row.values()) for label, row in rows.items()}


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="no pdflatex (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_tables_compile_as_standalone_documents(evals, tmp_path):
    out = tmp_path / "tables"
    methods = Methods("rohydr", ("complete",), {"rohydr": "RoHyDR_v2 & 100% {ours} #1 ~x^2"})
    aggregate("mosi", evals, out, peers_key="MOSI", ablation=[], methods=methods)
    for name in ("missing_patterns", "missing_rates", "ablation"):
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"], cwd=out,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:]
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert "Overfull" not in result.stdout, result.stdout[-3000:]


def test_bad_inputs_are_reported(evals, tmp_path):
    stray = tmp_path / "eval.csv"
    stray.write_text("condition,metric,value\ncomplete,mae,0.5\n")
    result = run_cli("aggregate", "--dataset", "mosi", "--eval", stray, "--out-dir", tmp_path / "t", check=False)
    assert result.returncode == 2 and "seed{seed}" in result.stderr
    broken = tmp_path / "x" / "v" / "seed1" / "eval.csv"
    broken.parent.mkdir(parents=True)
    broken.write_text("condition,value\ncomplete,0.5\n")
    with pytest.raises(RohydrError, match=r"missing column\(s\) \['metric'\]"):
        aggregate("mosi", [broken], tmp_path / "t")
    with pytest.raises(RohydrError, match="already given"):
        aggregate("mosi", [evals[0], evals[0]], tmp_path / "t")
    with pytest.raises(RohydrError, match="MOSX"):
        aggregate("mosi", evals, tmp_path / "t", peers_key="MOSX")
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


def is_png(path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def is_pdf(path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:5] == b"%PDF-"


def test_figures_from_realistic_inputs(evals, tmp_path):
    logs = [write_train_log(tmp_path, "rohydr", s) for s in SEEDS]
    logs += [write_train_log(tmp_path, "no_diffusion", s, joint=True) for s in SEEDS]
    out = tmp_path / "figures"
    methods = Methods("rohydr", ("zero_fill", "complete"), {"rohydr": "RoHyDR", "no_diffusion": "w/o diffusion"})
    paths = plots("mosi", evals, logs, out, methods, peers_key="MOSI")
    assert sorted(p.name for p in paths) == sorted(f"{name}.{ext}" for name in ("mr_curves", "training_curves",
                                                                                "recovery_quality")
                                                 for ext in ("png", "pdf"))
    for name in ("mr_curves", "training_curves", "recovery_quality"):
        assert is_png(out / f"{name}.png") and is_pdf(out / f"{name}.pdf"), name


def test_one_palette_for_the_methods_and_another_for_model_parts():
    methods = Methods("main", ("floor", "ceiling"), {"main": "Main"})
    runs = ["a", "main", "floor", "b", "ceiling"]
    assert methods.ordered(runs) == ["main", "a", "b", "floor", "ceiling"]
    assert [methods.role(r) for r in ("main", "a", "ceiling")] == ["main", "variant", "baseline"]
    colors = methods.colors(runs)
    assert colors["main"] == MAIN_COLOR and len(set(colors.values())) == len(runs)
    assert {colors["floor"], colors["ceiling"]} <= set(BASELINE_COLORS)
    assert methods.colors(runs) == colors  # every figure of one call gets the same mapping
    parts = {to_hex(c) for c in component_colors(GROUPS).values()}
    assert len(parts) == len(GROUPS) and not parts & {to_hex(c) for c in (*colors.values(), *VARIANT_COLORS)}
    assert not set(literature_colors(["IMDer", "DiCMoR"]).values()) & set(colors.values())
    with pytest.raises(RohydrError, match="NAME=LABEL"):
        parse_display_names(["no_label"])


def test_figures_without_logs_or_recovery(tmp_path):
    evals = [write_eval(tmp_path, "complete", seed, ["complete"]) for seed in SEEDS]
    out = tmp_path / "figures"
    run_cli("plots", "--dataset", "mosi", "--eval", *evals, "--out-dir", out)
    for name in ("mr_curves", "training_curves", "recovery_quality"):
        assert is_png(out / f"{name}.png") and is_pdf(out / f"{name}.pdf"), name


def test_sweep_plot_draws_each_row_against_redundancy(evals, tmp_path):
    tables = []
    for i, shift in enumerate((0.0, 0.05)):  # the same runs at a second redundancy, 5 points better
        paths = [write_eval(tmp_path / f"r{i}", v, s, like=v) for v in ("rohydr", "no_diffusion") for s in SEEDS]
        for path in paths:
            frame = pd.read_csv(path)
            frame.loc[frame.metric == "acc2_non0", "value"] += shift
            frame.to_csv(path, index=False)
        aggregate("mosi", paths, tmp_path / f"tables{i}", methods=METHODS)
        tables.append(tmp_path / f"tables{i}" / "missing_patterns.csv")
    result = run_cli("sweep-plot", "--tables", *tables, "--redundancy", 0.2, 0.8, "--main-variant", "rohydr",
                     "--out", tmp_path / "sweep")
    assert "sweep.png" in result.stdout and (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    points = pd.read_csv(tmp_path / "sweep.csv").set_index(["row", "redundancy"])["mean"]
    assert points["rohydr", 0.8] - points["rohydr", 0.2] == pytest.approx(5.0)
    bad = run_cli("sweep-plot", "--tables", *tables, "--redundancy", 0.2, "--out", tmp_path / "x", check=False)
    assert bad.returncode == 2 and "2 tables for 1 redundancy values" in bad.stderr


def with_training_rows(path, converged: int, epochs: int = 12) -> None:
    """Append the training rows `rohydr evaluate` writes from its checkpoint."""
    with open(path, "a") as handle:
        handle.write(f"training,converged,{converged}\ntraining,epochs,{epochs}\n")


def test_rows_of_unconverged_models_are_marked(evals, tmp_path):
    for path in evals:
        with_training_rows(path, converged=int(not ("rohydr" in str(path) and "seed1" in str(path))))
    out = tmp_path / "tables"
    aggregate("mosi", evals, out, peers_key="MOSI", ablation=[], methods=METHODS)
    text = (out / "missing_patterns.md").read_text()
    _, rows = md_rows(out / "missing_patterns.md")
    assert f"rohydr {NOT_CONVERGED}" in rows and "no_diffusion" in rows  # converged on every seed: no mark
    assert f"{NOT_CONVERGED} not converged" in text and "rohydr (1 of 2 seeds)" in text
    assert unconverged_runs(read_evals(evals)) == {"rohydr"}  # the figures' labels carry the same mark
    if shutil.which("pdflatex"):
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "missing_patterns.tex"],
                                cwd=out, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:]

"""Tables and figures from hand-made eval.csv and train_log.csv files in the formats of evaluate and train."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from rohydr.errors import RohydrError
from rohydr.evaluation.masks import CONDITIONS, MISSING_PATTERNS, MR_CONDITIONS, NOMINAL_MR, PATTERNS
from rohydr.evaluation.metrics import METRICS
from rohydr.reporting.figures import plots
from rohydr.reporting.tables import aggregate

SEEDS = (1, 2)
PATTERN_HEADERS = ["{l}", "{a}", "{v}", "{l,a}", "{l,v}", "{a,v}"]


def acc2(variant: str, condition: str, seed: int) -> float:
    """A value that is easy to average by hand: base + 1 point per condition index + 2 points per seed."""
    base = {"rohydr": 0.70, "no_diffusion": 0.60, "complete": 0.80}[variant]
    return base + 0.01 * CONDITIONS.index(condition) + 0.02 * (seed - 1)


def missing_rate(condition: str) -> float:
    if condition in PATTERNS:
        return (3 - sum(PATTERNS[condition])) / 3
    return 2 / 3 if condition == "mr0.7" else NOMINAL_MR[condition]


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
    path = root / "results" / "mosi" / variant / f"seed{seed}" / "eval.csv"
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
    path = root / "results" / "mosi" / variant / f"seed{seed}" / "train_log.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(log).to_csv(path, index=False)
    return path


@pytest.fixture
def evals(tmp_path):
    """rohydr and no_diffusion on every condition, the complete baseline on `complete` only; 2 seeds each."""
    paths = [write_eval(tmp_path, variant, seed) for variant in ("rohydr", "no_diffusion") for seed in SEEDS]
    paths += [write_eval(tmp_path, "complete", seed, ["complete"]) for seed in SEEDS]
    return paths


def md_rows(path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(headers, row label -> header -> cell) of a Markdown table."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    split = lambda line: [cell.strip() for cell in line.strip("|").split("|")]  # noqa: E731
    headers = split(lines[0])[1:]
    return headers, {cells[0]: dict(zip(headers, cells[1:])) for cells in map(split, lines[2:])}


def cell(acc2_values: list[float]) -> str:
    """The expected "mean ± std / mean ± std" text of Acc-2 and F1 (= Acc-2 - 1 point) over seeds, in %."""
    a = np.array(acc2_values) * 100
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f} / {a.mean() - 1:.1f} ± {a.std(ddof=1):.1f}"


CELL = re.compile(r"^\d+\.\d ± \d+\.\d / \d+\.\d ± \d+\.\d$")


def test_tables_hold_every_condition_as_mean_pm_std(evals, tmp_path):
    out = tmp_path / "tables"
    aggregate("mosi", evals, out)
    headers, rows = md_rows(out / "missing_patterns.md")
    assert headers == [*PATTERN_HEADERS, "Avg.", "Complete"]
    for header, condition in zip(PATTERN_HEADERS + ["Complete"], [*MISSING_PATTERNS, "complete"]):
        assert rows["rohydr"][header] == cell([acc2("rohydr", condition, s) for s in SEEDS]), header
    headers, rows = md_rows(out / "missing_rates.md")
    assert headers[6] == "0.7 (0.67)" and headers[7] == "Avg." and headers[8].startswith("per-batch 0.7")
    for header, condition in zip(headers, [*MR_CONDITIONS, "avg_mr", "batch_mr0.7"]):
        assert CELL.match(rows["no_diffusion"][header]), (header, rows["no_diffusion"][header])
        if condition in CONDITIONS:
            assert rows["no_diffusion"][header] == cell([acc2("no_diffusion", condition, s) for s in SEEDS])
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
    assert rows["rohydr"]["Avg."] == "73.5 ± 1.4 / 72.5 ± 1.4"
    per_seed = [np.mean([acc2("rohydr", c, s) for c in MISSING_PATTERNS]) for s in SEEDS]
    assert rows["rohydr"]["Avg."] == cell(per_seed)
    summary = pd.read_csv(out / "all_metrics.csv").set_index(["variant", "condition", "metric"])
    assert summary.loc[("rohydr", "avg_patterns", "mae"), "mean"] == pytest.approx(1.5 - 0.735)
    assert summary.loc[("rohydr", "avg_patterns", "acc2_non0"), "std"] == pytest.approx(0.02 / np.sqrt(2), rel=1e-5)
    _, rows = md_rows(out / "missing_rates.md")
    # no_diffusion: MR conditions have indices 7..13 -> 60 + 10 = 70 % on seed 1, 72 % on seed 2
    assert rows["no_diffusion"]["Avg."] == "71.0 ± 1.4 / 70.0 ± 1.4"


def test_missing_conditions_show_a_dash(evals, tmp_path):
    other = write_eval(tmp_path, "no_lv", 3, [c for c in CONDITIONS if c != "lv"], like="no_diffusion")
    out = tmp_path / "tables"
    aggregate("mosi", [*evals, other], out)
    _, rows = md_rows(out / "missing_patterns.md")
    assert all(rows["complete"][h] == "–" for h in [*PATTERN_HEADERS, "Avg."])
    assert CELL.match(rows["complete"]["Complete"])
    assert rows["no_lv"]["{l,v}"] == "–" and rows["no_lv"]["Avg."] == "–"  # no average over five patterns
    assert rows["no_lv"]["{l}"] == f"{acc2('no_diffusion', 'l', 3) * 100:.1f} / {acc2('no_diffusion', 'l', 3) * 100 - 1:.1f}"
    summary = pd.read_csv(out / "all_metrics.csv")
    one_seed = summary[summary.variant == "no_lv"]
    assert (one_seed.n_seeds == 1).all() and one_seed["std"].isna().all()


def test_literature_rows_only_when_asked(evals, tmp_path):
    aggregate("mosi", evals, tmp_path / "none")
    assert "quoted" not in (tmp_path / "none" / "missing_rates.md").read_text()
    run_cli("aggregate", "--dataset", "mosi", "--eval", *evals, "--peers-key", "MOSI", "--out-dir", tmp_path / "mosi")
    headers, rows = md_rows(tmp_path / "mosi" / "missing_rates.md")
    imder = rows["IMDer (quoted: NeurIPS-23 via ComP AAAI-26)"]
    assert imder["0.1 (0.10)"] == "84.9 / 84.8" and imder["0.7 (0.67)"] == "71.9 / 71.2"
    assert rows["DiCMoR (quoted: ICCV-23 via ComP AAAI-26)"]["0.4 (0.40)"] == "77.7 / 77.9"
    assert list(rows)[:3] == ["rohydr", "no_diffusion", "complete"]  # ours first, literature after
    _, rows = md_rows(tmp_path / "mosi" / "missing_patterns.md")
    assert rows["IMDer (quoted: NeurIPS-23)"]["Complete"] == "85.7 / 85.6"
    assert rows["IMDer (quoted: NeurIPS-23)"]["{l}"] == "–"
    aggregate("mosi", evals, tmp_path / "mosei", peers_key="MOSEI")
    _, rows = md_rows(tmp_path / "mosei" / "missing_rates.md")
    assert rows["IMDer (quoted: NeurIPS-23 via ComP AAAI-26)"]["0.1 (0.10)"] == "84.8 / 84.6"
    aggregate("mosi", evals, tmp_path / "off", literature="none", peers_key="MOSI")
    assert "quoted" not in (tmp_path / "off" / "missing_rates.md").read_text()
    custom = tmp_path / "peers.csv"
    custom.write_text("dataset,method,source,condition,acc2_non0,f1_non0\nMOSI,Mine,arXiv,mr0.3,70.0,69.5\n")
    aggregate("mosi", evals, tmp_path / "custom", literature=str(custom))
    _, rows = md_rows(tmp_path / "custom" / "missing_rates.md")
    assert rows["Mine (quoted: arXiv)"]["0.3 (0.30)"] == "70.0 / 69.5" and rows["Mine (quoted: arXiv)"]["Avg."] == "–"


def test_ablation_table(evals, tmp_path):
    zero_fill = [write_eval(tmp_path, "zero_fill", s, like="no_diffusion") for s in SEEDS]
    out = tmp_path / "tables"
    aggregate("mosi", [*evals, *zero_fill], out, ablation=["rohydr", "no_diffusion"])
    headers, rows = md_rows(out / "ablation.md")
    assert list(rows) == ["rohydr", "no_diffusion", "zero_fill", "complete"]
    assert headers[:4] == ["Avg. patterns", "Avg. MR", "Complete", "MAE patterns"]
    assert rows["rohydr"][headers[4]] == "ref."
    assert rows["no_diffusion"][headers[4]] == "-10.0 ± 0.0"  # paired per seed: exactly 10 points each
    assert rows["complete"]["Avg. patterns"] == "–" and CELL.match(rows["complete"]["Complete"])
    tex = (out / "ablation.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and r"no\_diffusion" in tex and r"\caption{" in tex
    long = pd.read_csv(out / "ablation.csv")
    mae = long[(long.row == "rohydr") & (long.metric == "mae")]
    assert mae["mean"].item() == pytest.approx(1.5 - np.mean([np.mean([acc2("rohydr", c, s) for c in MISSING_PATTERNS])
                                                                for s in SEEDS]))
    with pytest.raises(RohydrError, match="no_adversarial"):
        aggregate("mosi", evals, tmp_path / "bad", ablation=["rohydr", "no_adversarial"])
    assert not (tmp_path / "bad").exists()  # nothing is written when an input is wrong


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
    paths = plots("mosi", evals, logs, out)
    assert sorted(p.name for p in paths) == sorted(f"{name}.{ext}" for name in ("mr_curves", "training_curves",
                                                                                "recovery_quality")
                                                 for ext in ("png", "pdf"))
    for name in ("mr_curves", "training_curves", "recovery_quality"):
        assert is_png(out / f"{name}.png") and is_pdf(out / f"{name}.pdf"), name


def test_figures_without_logs_or_recovery(tmp_path):
    evals = [write_eval(tmp_path, "complete", seed, ["complete"]) for seed in SEEDS]
    out = tmp_path / "figures"
    run_cli("plots", "--dataset", "mosi", "--eval", *evals, "--out-dir", out)
    for name in ("mr_curves", "training_curves", "recovery_quality"):
        assert is_png(out / f"{name}.png") and is_pdf(out / f"{name}.pdf"), name

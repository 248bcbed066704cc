"""Intervals, paired differences, the optimum and floor rows and the collapse mark, from hand-made
per-row predictions whose answers are known."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from rohydr.core.errors import RohydrError
from rohydr.core.metrics import score
from rohydr.core.vocabulary import PATTERNS
from rohydr.data.masks import make_masks, write_masks
from rohydr.data.optimum import PREDICTIONS
from rohydr.reporting.methods import Methods
from rohydr.reporting.tables import aggregate
from rohydr.reporting.uncertainty import BOOTSTRAPPED, collapse, estimate, resample_counts, resampled

N = 2000
RNG = np.random.default_rng(5)
LABELS = np.round(RNG.normal(0, 1.5, N).clip(-3, 3) * 3) / 3


def test_resampled_metrics_equal_score_on_the_original_rows():
    predictions = LABELS + RNG.normal(0, 1.2, N)
    ones = np.ones((1, N))
    for metric in BOOTSTRAPPED:
        assert resampled(metric, predictions, LABELS, ones)[0] == pytest.approx(score(predictions, LABELS)[metric])


def test_interval_width_matches_the_binomial_error():
    """One seed of an 80 %-accurate sign: the interval is about ±1.96 sqrt(0.8 * 0.2 / n)."""
    correct = RNG.random(N) < 0.8
    predictions = np.where(correct, np.sign(LABELS), -np.sign(LABELS)) + 0.0
    counts = resample_counts(N)
    value = score(predictions, LABELS)["acc2_non0"]
    found = estimate(np.array([value]), resampled("acc2_non0", predictions, LABELS, counts)[None])
    n = int((LABELS != 0).sum())
    expected = 1.96 * np.sqrt(value * (1 - value) / n)
    assert (found.high - found.low) / 2 == pytest.approx(expected, rel=0.15)
    assert np.isnan(found.std) and found.n == 1
    # three seeds that disagree widen it by their standard error
    spread = estimate(np.array([value - 0.02, value, value + 0.02]),
                      np.stack([resampled("acc2_non0", predictions, LABELS, counts)] * 3))
    assert (spread.high - spread.low) / 2 == pytest.approx(np.sqrt(expected ** 2 + 1.96 ** 2 * 0.02 ** 2 / 3), rel=0.15)


def test_collapse_is_found():
    assert "nearly constant" in collapse(np.full(N, 0.3), LABELS)
    assert "one sign" in collapse(np.abs(LABELS) + 0.1, LABELS)
    assert collapse(LABELS + RNG.normal(0, 1, N), LABELS) is None


def write_run(root, run: str, protocol: str, seed: int, by_pattern: dict[str, np.ndarray], labels=LABELS):
    """eval.csv and predictions.csv.gz of a run, as `rohydr evaluate` writes them, on the seed's masks."""
    folder = root / run / protocol / f"seed{seed}"
    folder.mkdir(parents=True)
    frames = [pd.DataFrame({"id": np.arange(len(labels)), "label": labels, "pattern": name, "prediction": values})
              for name, values in by_pattern.items()]
    (folder / "predictions.csv.gz").write_bytes(gzip.compress(pd.concat(frames).to_csv(index=False).encode()))
    masks = make_masks({"valid": 10, "test": len(labels)}, seed)["test"]
    rows = []
    for condition, mask in masks.items():
        gathered = np.zeros(len(labels))
        for name, available in PATTERNS.items():
            if name in by_pattern:
                rows_of = (mask == np.array(available)).all(axis=1)
                gathered[rows_of] = by_pattern[name][rows_of]
        rows += [(condition, metric, value) for metric, value in score(gathered, labels).items()]
    table = pd.DataFrame(rows, columns=["condition", "metric", "value"])
    table.insert(0, "run", run), table.insert(1, "protocol", protocol), table.insert(2, "seed", seed)
    table.to_csv(folder / "eval.csv", index=False)
    return folder / "eval.csv"


def sign_with_accuracy(accuracy: float, rng) -> np.ndarray:
    correct = rng.random(N) < accuracy
    return np.where(correct, np.sign(LABELS), -np.sign(LABELS)) * (0.5 + rng.random(N))


@pytest.fixture
def runs(tmp_path):
    """good (85 % on every pattern), worse (75 %), flat (constant on {a}), the floor (60 %), 2 seeds."""
    rng = np.random.default_rng(0)
    paths = []
    for seed in (1, 2):
        masks = make_masks({"valid": 10, "test": N}, seed)
        write_masks(tmp_path / f"seed{seed}.h5", masks, seed, "features.h5", "0" * 64)
        for run, accuracy in (("good", 0.85), ("worse", 0.75), ("flat", 0.85), ("floor", 0.60)):
            by_pattern = {name: sign_with_accuracy(accuracy, rng) for name in PATTERNS}
            if run == "flat":
                by_pattern["a"] = np.full(N, 0.2)
            protocol = "complete_data" if run == "floor" else "all_patterns"
            paths.append(write_run(tmp_path, run, protocol, seed, by_pattern))
    optimum = tmp_path / "optimum_samples.csv.gz"
    lines = ["row,pattern,label,posterior_mean,posterior_sd," + ",".join(PREDICTIONS)]
    for name in PATTERNS:  # the optimum: right sign on 95 % of the rows
        decision = sign_with_accuracy(0.95, rng)
        lines += [f"{i},{name},{LABELS[i]:.6f},0,1," + ",".join(f"{decision[i]:.6f}" for _ in PREDICTIONS)
                  for i in range(N)]
    optimum.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return tmp_path, paths, optimum


def md_table(path) -> dict[str, list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {row[0]: row[1:] for row in cells[2:]}


def test_tables_carry_intervals_bounds_marks_and_the_gap(runs, capsys):
    root, paths, optimum = runs
    methods = Methods("good", ("floor",), {"floor": "Floor"})
    out = root / "tables"
    aggregate("synthetic", paths, out, ablation=["good", "worse", "flat"], methods=methods,
              masks=[root / "seed1.h5", root / "seed2.h5"], optimum=optimum, floor="floor")
    patterns = md_table(out / "missing_patterns.md")
    assert list(patterns) == ["good", "worse", "flat", "Floor", "Optimum (Bayes, from the generative model)"]
    assert all("[" in cell for cell in patterns["good"][:12]), patterns["good"]  # every pattern has an interval
    optimum_l = float(patterns["Optimum (Bayes, from the generative model)"][0].split()[0])
    assert optimum_l == pytest.approx(95, abs=2)
    assert patterns["flat"][2].endswith("†") and not patterns["flat"][0].endswith("†")  # {a} collapsed only
    assert "flat (all_patterns) seed 1 collapsed on a" in capsys.readouterr().err
    ablation = md_table(out / "ablation.md")
    delta = ablation["worse"][7]  # Δ Acc-2 vs good over the patterns: about -10 points, significant
    assert delta.endswith("*") and -13 < float(delta.split()[0]) < -7
    gap = md_table(out / "gap_closed.md")
    share = float(gap["good"][0].strip("*_").split()[0])  # (85 - 60) / (95 - 60)
    assert share == pytest.approx(100 * 25 / 35, abs=8)
    long = pd.read_csv(out / "missing_patterns.csv")
    good = long[(long.row == "good") & (long.condition == "l") & (long.metric == "acc2_non0")].iloc[0]
    assert good.ci_low < good["mean"] < good.ci_high and good.ci_high - good.ci_low < 5


def _edit(path, condition: str, metric: str, value) -> None:
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    rows = (table.condition == condition) & (table.metric == metric)
    if value is None:
        table = table[~rows]
    else:
        table.loc[rows, "value"] = value
    table.to_csv(path, index=False)


@pytest.mark.parametrize("value, message", [
    ("0.95", "condition 'l', metric 'acc2_non0' is 0.95, but predictions.csv.gz beside it gives"),
    ("7.5", "condition 'l', metric 'acc2_non0' = 7.5 lies outside [0, 1]"),
    ("", "condition 'l', metric 'acc2_non0' is nan, but predictions.csv.gz"),
    ("nan", "condition 'l', metric 'acc2_non0' is nan, but predictions.csv.gz"),
    ("inf", "metric 'acc2_non0' = inf lies outside [0, 1]"),
    (None, "condition 'l', metric 'acc2_non0' is no row, but predictions.csv.gz"),
])
def test_a_hand_edited_score_stops_the_tables(runs, value, message):
    root, paths, optimum = runs
    edited = root / "worse/all_patterns/seed2/eval.csv"
    _edit(edited, "l", "acc2_non0", value)
    with pytest.raises(RohydrError, match="eval .*worse/all_patterns/seed2/eval.csv") as error:
        aggregate("synthetic", paths, root / "tables", methods=Methods("good", ("floor",)),
                  masks=[root / "seed1.h5", root / "seed2.h5"], optimum=optimum, floor="floor")
    assert message in str(error.value)
    assert not (root / "tables").exists()


def test_an_eval_csv_copied_from_another_run_is_refused(runs):
    root, paths, optimum = runs
    for name in ("eval.csv", "predictions.csv.gz"):
        shutil.copy(root / "good/all_patterns/seed1" / name, root / "worse/all_patterns/seed1" / name)
    with pytest.raises(RohydrError, match="holds the scores of run 'good', protocol 'all_patterns', seed 1, but "
                                          "its folder is run 'worse'"):
        aggregate("synthetic", paths, root / "tables", methods=Methods("good", ("floor",)),
                  masks=[root / "seed1.h5", root / "seed2.h5"], optimum=optimum, floor="floor")


def degenerate_tables(root, labels: np.ndarray, accuracy: dict[str, float]) -> dict[str, dict]:
    """Tables of runs that predict the sign of `labels` right with the given accuracy, on two seeds."""
    rng = np.random.default_rng(3)
    paths = []
    for seed in (1, 2):
        write_masks(root / f"seed{seed}.h5", make_masks({"valid": 10, "test": len(labels)}, seed), seed, "f.h5", "0" * 64)
        for run, share in accuracy.items():
            sign = np.where(labels >= 0, 1.0, -1.0)
            by_pattern = {name: np.where(rng.random(len(labels)) < share, sign, -sign) * (0.5 + rng.random(len(labels)))
                          for name in PATTERNS}
            paths.append(write_run(root, run, "all_patterns", seed, by_pattern, labels))
    aggregate("synthetic", paths, root / "tables", ablation=list(accuracy), methods=Methods(next(iter(accuracy))),
              masks=[root / "seed1.h5", root / "seed2.h5"])
    return {name: md_table(root / "tables" / f"{name}.md") for name in ("missing_patterns", "ablation")}


@pytest.mark.parametrize("labels, why", [
    (np.zeros(300), "0 non-0 test labels"),
    (np.array([1.0, -2.0, 0.5, 2.5]), "4 non-0 test labels"),
    (np.abs(LABELS[:300]) + 0.5, "all non-0 test labels of one sign"),
])
def test_a_degenerate_test_split_gives_n_a_with_its_reason_not_a_number(tmp_path, labels, why):
    tables = degenerate_tables(tmp_path, labels, {"good": 0.9, "worse": 0.6})
    patterns, ablation = tables["missing_patterns"], tables["ablation"]
    assert patterns["good"][0] == patterns["worse"][0] == f"n/a ({why})"  # {l} Acc-2 (non-0)
    assert ablation["worse"][-2:] == [f"n/a ({why})"] * 2, ablation["worse"]  # the Δ columns: no number, no *


def test_intervals_stay_within_the_metric_s_range(tmp_path):
    labels = np.where(np.arange(40) < 38, 1.0, -1.0)  # 38 of 40 positive: an almost perfect score
    degenerate_tables(tmp_path, labels, {"good": 0.99, "worse": 0.6})
    long = pd.read_csv(tmp_path / "tables/missing_patterns.csv")
    acc = long[long.metric.isin(["acc2_non0", "f1_non0"]) & long.ci_high.notna()]
    assert len(acc) and (acc.ci_high <= 100).all() and (acc.ci_low >= 0).all()
    assert (acc.ci_high == 100).any()  # clipped, where the unclipped interval passed 100


def test_an_optimum_file_that_is_not_one_is_refused(runs):
    root, paths, _ = runs
    with pytest.raises(RohydrError, match=r"optimum samples .*eval.csv: not an optimum_samples.csv.gz of `rohydr synth` "
                                          r"\(BadGzipFile"):
        aggregate("synthetic", paths, root / "tables", methods=Methods("good", ("floor",)),
                  masks=[root / "seed1.h5", root / "seed2.h5"], optimum=paths[0], floor="floor")

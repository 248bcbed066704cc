"""The synthetic generator's known optimum: checked against large samples drawn from the same model."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from rohydr.core.metrics import METRICS
from rohydr.data.optimum import (
    GRID,
    MISSING_PATTERNS,
    PATTERNS,
    compute_optimum,
    headroom,
    label_probabilities,
    optimum_paths,
    optimum_table,
    read_samples,
    score_masks,
)
from rohydr.data.synthetic import _make_split, generate

LENGTH = 8


@pytest.fixture(scope="module")
def large():
    """A 3000-row test split with its unrounded labels, at the default redundancy."""
    data, model, raw = generate("mosi", seed=1, sizes=(60, 4, 3000), length=LENGTH)
    return data, model, raw["test"], compute_optimum(data, model)


def test_the_posterior_of_the_label_is_exact_on_a_large_sample(large):
    """(unrounded label - posterior mean) / posterior sd is standard normal for every pattern."""
    _, _, raw, optimum = large
    n = len(raw)
    sds = {}
    for pattern, (mean, sd) in optimum.posterior.items():
        z = (raw - mean) / sd
        assert abs(z.mean()) < 4 / np.sqrt(n), pattern
        assert abs(z.std() - 1) < 4 * np.sqrt(0.5 / n), pattern
        sds[pattern] = float(np.mean(sd))
    assert sds["complete"] < min(sds["la"], sds["lv"], sds["av"])
    assert max(sds["la"], sds["lv"]) < sds["l"] < min(sds["a"], sds["v"])  # text is the strongest modality


def test_the_conditional_mean_fed_to_the_complete_predictor_gives_the_optimum_mean(large):
    """Tower property: E[E[y | all] | available] = E[y | available], the fill only changes the spread."""
    *_, optimum = large
    for pattern in MISSING_PATTERNS:
        np.testing.assert_allclose(optimum.fills[("conditional_mean", pattern)][0], optimum.posterior[pattern][0],
                                   rtol=1e-7, atol=1e-9)
        assert np.all(optimum.fills[("zeros", pattern)][1] < optimum.posterior[pattern][1])


def test_recovery_has_headroom_at_the_default_and_none_without_redundancy(large):
    *_, optimum = large
    assert headroom(optimum_table(optimum))["mean_gain_over_best_of_zeros_and_train_mean"] > 0.05
    data, model, _ = generate("mosi", seed=1, sizes=(400, 4, 3000), length=LENGTH, redundancy=0.0)
    none = headroom(optimum_table(compute_optimum(data, model)))
    assert abs(none["mean_gain_over_best_of_zeros_and_train_mean"]) < 0.01  # nothing to recover


def _expected(samples: pd.DataFrame, pattern: str) -> dict[str, float]:
    """The optimum's expected Acc-2 (non-0), Acc-7 and MAE under its own posterior on these rows."""
    rows = samples[samples["pattern"] == pattern]
    p = label_probabilities(rows["posterior_mean"].to_numpy(), rows["posterior_sd"].to_numpy())
    positive, negative = p[:, GRID > 0].sum(1), p[:, GRID < 0].sum(1)
    class7 = np.stack([p[:, np.round(GRID) == c].sum(1) for c in range(-3, 4)], 1)
    median = rows["median"].to_numpy()
    return {"acc2_non0": np.maximum(positive, negative).sum() / (positive + negative).sum(),
            "acc7": class7.max(1).mean(),
            "mae": (p * np.abs(GRID[None, :] - median[:, None])).sum(1).mean()}


def test_synth_writes_optimum_figures_that_a_fresh_large_sample_confirms(tmp_path):
    out = tmp_path / "synthetic.pkl"
    run_cli("synth", out, "--like", "mosi", "--seed", 2, "--sizes", 60, 4, 1500, "--length", LENGTH)
    paths = optimum_paths(out)
    table = pd.read_csv(paths["table"])
    about = json.loads(paths["about"].read_text())
    with gzip.open(paths["samples"], "rt") as file:
        samples = pd.read_csv(file)
    assert set(about["decisions"]) == set(METRICS) and about["generator"]["redundancy"] == 0.6
    assert len(samples) == 1500 * len(PATTERNS)
    optimum = table[table["predictor"] == "optimum"].set_index("condition")
    n = 1500

    # 1. the written figures against their expectation under the posterior
    for pattern in PATTERNS:
        expected = _expected(samples, pattern)
        for metric, spread in (("acc2_non0", 0.5), ("acc7", 0.5), ("mae", 1.0)):
            assert abs(optimum.loc[pattern, metric] - expected[metric]) < 4 * spread / np.sqrt(n), (pattern, metric)

    # 2. against the Bayes rule's empirical scores on a fresh 8000-row sample of the same model
    data, model, _ = generate("mosi", seed=2, sizes=(60, 4, 1), length=LENGTH)
    data["test"], _ = _make_split(np.random.default_rng(12345), 8000, LENGTH, model, 30522)
    fresh = compute_optimum(data, model)
    fresh_rows = {row["condition"]: row for row in optimum_table(fresh) if row["predictor"] == "optimum"}
    for pattern in PATTERNS:
        p = fresh_rows[pattern]["acc2_non0"]
        se = np.sqrt(p * (1 - p) * (1 / optimum.loc[pattern, "n_non0"] + 1 / fresh_rows[pattern]["n_non0"]))
        assert abs(optimum.loc[pattern, "acc2_non0"] - p) < 4 * se, pattern

    # 3. the per-sample decisions score any mask, and reproduce the written table on a pattern mask
    by_pattern, labels = read_samples(paths["samples"])
    for pattern in ("av", "complete"):
        scores = score_masks(by_pattern, labels, np.tile(PATTERNS[pattern], (n, 1)))
        for metric in METRICS:
            assert scores[metric] == pytest.approx(optimum.loc[pattern, metric], abs=2e-6)
    mixed = np.array([PATTERNS[("l", "av", "complete")[i % 3]] for i in range(n)])
    assert 0.5 < score_masks(by_pattern, labels, mixed)["acc2_non0"] < 1.0

    # identical arguments: byte-identical files
    again = tmp_path / "again.pkl"
    run_cli("synth", again, "--like", "mosi", "--seed", 2, "--sizes", 60, 4, 1500, "--length", LENGTH)
    assert again.read_bytes() == out.read_bytes()
    for kind, path in optimum_paths(again).items():
        assert path.read_bytes() == paths[kind].read_bytes(), kind


def test_synth_refuses_a_redundancy_outside_0_1(tmp_path):
    out = tmp_path / "bad.pkl"
    result = run_cli("synth", out, "--sizes", 4, 2, 2, "--length", 5, "--redundancy", 1.5, check=False)
    assert result.returncode == 2 and "argument --redundancy: 1.5 is outside [0, 1]" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_optimum_names_the_patterns_as_the_masks_do():
    from rohydr.core.vocabulary import MISSING_PATTERNS as MASK_MISSING, PATTERNS as MASK_PATTERNS

    assert PATTERNS == MASK_PATTERNS and MISSING_PATTERNS == MASK_MISSING

"""`rohydr evaluate` on saved masks: every condition, repeatable, consistent with per-condition runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import make_features, make_masks, run_cli, write_run_config
from rohydr.core.metrics import score
from rohydr.core.runtime import Runtime
from rohydr.core.vocabulary import CONDITIONS, TRAINING_CONDITION, TRAINING_METRICS
from rohydr.data.dataset import FeatureStore
from rohydr.data.masks import load_masks
from rohydr.models.checkpoint import load_model
from rohydr.models.predict import predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    h5 = make_features(folder)
    masks = make_masks(folder, h5, seed=3)
    run_config = write_run_config(folder / "rc.json", "tiny",
                                  {"pretrain": {"max_epochs": 1}, "train": {"max_epochs": 1}})
    run_cli("pretrain", "--data", h5, "--run-config", run_config, "--seed", 3, "--out", folder / "pretrain.pt",
            "--log", folder / "pretrain.csv", "--no-progress")
    run_cli("train", "--data", h5, "--run-config", run_config, "--pretrained", folder / "pretrain.pt",
            "--masks", masks, "--seed", 3, "--out", folder / "model.pt", "--log", folder / "train.csv",
            "--no-progress")
    return {"folder": folder, "h5": h5, "masks": masks}


def evaluate(trained, model, name):
    folder = trained["folder"]
    run_cli("evaluate", "--data", trained["h5"], "--model", folder / model, "--masks", trained["masks"],
            "--seed", 3, "--out", folder / f"{name}.csv", "--predictions", folder / f"{name}.csv.gz")
    return pd.read_csv(folder / f"{name}.csv")


def test_every_condition_and_metric(trained):
    table = evaluate(trained, "model.pt", "eval")
    assert list(dict.fromkeys(table.condition)) == [*CONDITIONS, TRAINING_CONDITION]
    training = table[table.condition == TRAINING_CONDITION].set_index("metric").value
    assert set(training.index) == set(TRAINING_METRICS) and training["converged"] in (0, 1)
    table = table[table.condition != TRAINING_CONDITION]
    for metric in ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr", "missing_rate"):
        assert set(table[table.metric == metric].condition) == set(CONDITIONS), metric
    rate = table[(table.condition == "mr0.7") & (table.metric == "missing_rate")].value.item()
    assert rate == pytest.approx(2 / 3, abs=0.02)
    # recovery quality only where a modality is missing
    with_text_recovered = set(table[table.metric == "rec_mse_l"].condition)
    assert {"a", "v", "av", "mr0.7"} <= with_text_recovered
    assert not {"complete", "l", "la", "lv"} & with_text_recovered
    predictions = pd.read_csv(trained["folder"] / "eval.csv.gz")
    assert set(predictions.pattern) == {"l", "a", "v", "la", "lv", "av", "complete"}


def test_evaluation_is_repeatable(trained):
    first, second = evaluate(trained, "model.pt", "first"), evaluate(trained, "model.pt", "second")
    pd.testing.assert_frame_equal(first, second)


def test_condition_scores_match_a_direct_run(trained):
    """The per-pattern gathering gives what running the model on the condition's masks gives."""
    table = evaluate(trained, "model.pt", "direct")
    model, _ = load_model(trained["folder"] / "model.pt")
    with FeatureStore(trained["h5"]) as store:
        split = store.split("test")
    avail = load_masks(trained["masks"], "test")["mr0.4"]
    direct = predict(model, split, avail, seed=3, batch_size=7, runtime=Runtime())
    expected = score(direct.y_rec, split.labels.numpy())
    got = table[table.condition == "mr0.4"].set_index("metric").value
    for metric in ("mae", "acc2_non0", "corr"):
        assert got[metric] == pytest.approx(expected[metric], abs=1e-5), metric


def test_complete_baseline_scores_complete_only(trained):
    table = evaluate(trained, "pretrain.pt", "complete")
    assert set(table.condition) == {"complete", TRAINING_CONDITION}
    assert np.isfinite(table.value).all()

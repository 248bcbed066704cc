"""Data stage: restricted unpickling, synthetic data, validation, HDF5 conversion and the torch reader."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from rohydr.core.errors import RohydrError
from rohydr.data.convert import convert
from rohydr.data.dataset import FeatureStore
from rohydr.data.safe_pickle import load_pickle
from rohydr.data.synthetic import make_synthetic, write_pickle
from rohydr.data.validate import validate_data, validate_file

SIZES = (40, 10, 20)
LENGTH = 12


@pytest.fixture
def data() -> dict:
    return make_synthetic("mosi", seed=3, sizes=SIZES, length=LENGTH)


@pytest.fixture
def pkl(tmp_path, data) -> Path:
    path = tmp_path / "aligned.pkl"
    write_pickle(data, path)
    return path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rohydr.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ----------------------------------------------------------------------------------------- synthetic

def test_synthetic_has_the_mmsa_layout(data):
    for split, n in zip(("train", "valid", "test"), SIZES):
        content = data[split]
        assert content["text"].shape == (n, LENGTH, 768) and content["text"].dtype == np.float32
        assert content["audio"].shape == (n, LENGTH, 5)
        assert content["vision"].shape == (n, LENGTH, 20)
        assert content["text_bert"].shape == (n, 3, LENGTH)
        for key in ("regression_labels", "classification_labels", "raw_text", "id", "annotations"):
            assert len(content[key]) == n
        labels = content["regression_labels"]
        assert labels.dtype == np.float32 and np.abs(labels).max() <= 3
        np.testing.assert_allclose(labels * 3, np.round(labels * 3), atol=1e-5)  # the 1/3 grid
        assert len(set(content["id"])) == n and all("$_$" in i for i in content["id"])
        mask = content["text_bert"][:, 1]
        words = mask.sum(1).astype(int)
        assert words.min() >= 3 and np.all(mask == (np.arange(LENGTH) < words[:, None]))
        assert np.all(content["text_bert"][:, 0][mask == 0] == 0)
        for key in ("text", "audio", "vision"):
            assert np.all(content[key][mask == 0] == 0), f"{split}/{key} is not zero-padded at the end"
            assert np.all(np.abs(content[key][mask == 1]).max(axis=-1) > 0)
        assert np.isneginf(content["audio"]).sum() >= 1
        assert np.all(mask[np.isneginf(content["audio"]).any(-1)] == 1)  # -inf only at valid positions
    zeros = sum(int((data[s]["regression_labels"] == 0).sum()) for s in data)
    assert zeros >= 1


def test_synthetic_is_deterministic_per_seed():
    a = make_synthetic("mosi", seed=5, sizes=(30, 8, 8), length=10)
    b = make_synthetic("mosi", seed=5, sizes=(30, 8, 8), length=10)
    c = make_synthetic("mosi", seed=6, sizes=(30, 8, 8), length=10)
    for split in a:
        for key in a[split]:
            np.testing.assert_array_equal(a[split][key], b[split][key])
    assert not np.array_equal(a["train"]["text"], c["train"]["text"])
    assert not np.array_equal(a["train"]["regression_labels"], c["train"]["regression_labels"])


def _time_mean(content: dict) -> dict[str, np.ndarray]:
    mask = content["text_bert"][:, 1][:, :, None]
    out = {}
    for key in ("text", "audio", "vision"):
        x = np.where(np.isfinite(content[key]), content[key], 0)
        out[key] = (x * mask).sum(1) / mask.sum(1)
    return out


def test_synthetic_every_modality_carries_its_own_part_of_the_label():
    data = make_synthetic("mosi", seed=0, sizes=(800, 10, 400), length=20)
    train, test = _time_mean(data["train"]), _time_mean(data["test"])
    y, y_test = data["train"]["regression_labels"], data["test"]["regression_labels"]

    def test_correlation(keys: tuple[str, ...]) -> float:
        x = np.concatenate([train[k] for k in keys], 1)
        x_test = np.concatenate([test[k] for k in keys], 1)
        mu, sd = x.mean(0), x.std(0) + 1e-8
        x, x_test = (x - mu) / sd, (x_test - mu) / sd
        w = np.linalg.solve(x.T @ x + 100 * np.eye(x.shape[1]), x.T @ (y - y.mean()))
        return float(np.corrcoef(x_test @ w, y_test)[0, 1])

    single = {k: test_correlation((k,)) for k in ("text", "audio", "vision")}
    complete = test_correlation(("text", "audio", "vision"))
    assert single["text"] > max(single["audio"], single["vision"])
    for dropped in ("text", "audio", "vision"):
        pair = tuple(k for k in ("text", "audio", "vision") if k != dropped)
        assert complete > test_correlation(pair) + 0.005, f"dropping {dropped} costs nothing"


# --------------------------------------------------------------------------------------- safe pickle

class _RunsShell:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _RunsExec:
    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload_class, refused", [(_RunsShell, "system"), (_RunsExec, "builtins.exec")])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, data, payload_class, refused):
    marker = tmp_path / "MARKER"
    payload = payload_class()
    payload.marker = marker
    data["train"]["annotations"] = payload  # buried inside a split
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(RohydrError, match=f"refuses to load '.*{refused}'.*evil.pkl"):
        load_pickle(path)
    result = run_cli("convert", path, tmp_path / "out.h5", cwd=tmp_path)
    assert result.returncode == 2 and refused in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out.h5").exists()


def test_plain_arrays_strings_and_protocols_load(tmp_path):
    value = {"train": {"id": np.array(["a$_$1", "b$_$2"], dtype=object), "u": np.array(["x", "yy"]),
                       "f": np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::2], "s": np.float32(2.5),
                       "l": [1, 2.0, "three"], "t": (1, {2}), "fs": frozenset([3])}}
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        loaded = load_pickle(path)
        assert list(loaded["train"]["id"]) == ["a$_$1", "b$_$2"]
        np.testing.assert_array_equal(loaded["train"]["f"], value["train"]["f"])
        assert loaded["train"]["t"] == (1, {2}) and loaded["train"]["s"] == np.float32(2.5)


def test_unreadable_pickles_give_clear_errors(tmp_path, pkl):
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 2])
    with pytest.raises(RohydrError, match="truncated"):
        load_pickle(truncated)
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(RohydrError, match="empty"):
        load_pickle(tmp_path / "empty.pkl")
    (tmp_path / "text.pkl").write_text("train,valid,test\n1,2,3\n")
    with pytest.raises(RohydrError, match="not a readable MMSA feature pickle"):
        load_pickle(tmp_path / "text.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(RohydrError, match="pickled list, expected a dict"):
        load_pickle(tmp_path / "list.pkl")
    with pytest.raises(RohydrError, match="cannot open"):
        load_pickle(tmp_path / "absent.pkl")


# ------------------------------------------------------------------------------------------ validate

def test_validate_report(tmp_path, data):
    data["config"] = {"anything": 1}  # written by the MMSA tool: ignored
    data["train"]["vision"][0, 0, 0] = np.nan
    data["train"]["text"][1, 0, :2] = np.inf
    data["test"]["regression_labels"][:2] = [3.4, -3.2]
    del data["valid"]["id"]
    path = tmp_path / "d.pkl"
    write_pickle(data, path)
    _, report = validate_file(path)
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["recognised_as"] is None
    assert report["dims"] == {"text": 768, "audio": 5, "vision": 20}
    assert report["lengths"] == {"text": LENGTH, "audio": LENGTH, "vision": LENGTH}
    assert report["text_source"] == "both"
    assert {s: report["splits"][s]["n"] for s in report["splits"]} == dict(zip(("train", "valid", "test"), SIZES))
    for split in ("train", "valid", "test"):
        assert report["nonfinite"][split]["audio"] == int(np.isneginf(data[split]["audio"]).sum())
    assert report["nonfinite"]["train"]["vision"] == 1 and report["nonfinite"]["train"]["text"] == 2
    assert report["nonfinite_kinds"]["train"]["text"]["+inf"] == 2
    assert report["splits"]["test"]["labels"]["n_beyond_3"] == 2
    assert report["splits"]["test"]["labels"]["max"] == pytest.approx(3.4)
    warnings = " ".join(report["warnings"])
    assert "beyond |3|" in warnings and "'valid' has no 'id'" in warnings
    assert "MAE, Corr and the binary metrics take them as they are" in warnings  # what the metrics do, not more
    released = "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9"
    assert validate_data(data, path, sha256=released)["recognised_as"] == "MOSI aligned_50.pkl"


def test_validate_cli_prints_json_or_writes_report(tmp_path, pkl):
    result = run_cli("validate", pkl)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["splits"]["train"]["n"] == SIZES[0]
    result = run_cli("validate", pkl, "--report", tmp_path / "r" / "report.json")
    assert result.returncode == 0 and result.stdout == ""
    assert json.loads((tmp_path / "r" / "report.json").read_text())["dims"]["audio"] == 5


def test_convert_takes_the_validation_report_and_refuses_a_pickle_changed_since(tmp_path, pkl):
    report = tmp_path / "validation.json"
    assert run_cli("validate", pkl, "--report", report).returncode == 0
    out = tmp_path / "features.h5"
    result = run_cli("convert", pkl, out, "--validation", report)
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as h5:
        assert json.loads(h5.attrs["validation_report"]) == json.loads(report.read_text())
    write_pickle(make_synthetic("mosi", seed=4, sizes=SIZES, length=LENGTH), pkl)
    changed = tmp_path / "changed.h5"
    result = run_cli("convert", pkl, changed, "--validation", report)
    assert result.returncode == 2 and "has changed since" in result.stderr and str(report) in result.stderr
    assert not changed.exists() and not leftovers(tmp_path)


def _missing_split(d):
    del d["valid"]


def _missing_key(d):
    del d["test"]["vision"]


def _n_mismatch(d):
    d["train"]["audio"] = d["train"]["audio"][:-1]


def _dim_mismatch(d):
    d["test"]["vision"] = d["test"]["vision"][:, :, :7]


def _nonfinite_label(d):
    d["valid"]["regression_labels"][3] = np.nan


def _duplicate_ids(d):
    d["train"]["id"][5] = d["train"]["id"][2]


def _text_is_token_ids(d):
    for split in d.values():
        split["text"] = split.pop("text_bert")


def _text_bert_is_features(d):
    for split in d.values():
        split["text_bert"] = split["text"]


def _complex_audio(d):
    d["train"]["audio"] = d["train"]["audio"].astype(np.complex64)


def _bool_vision(d):
    d["valid"]["vision"] = d["valid"]["vision"] > 0


def _bool_labels(d):
    d["test"]["regression_labels"] = d["test"]["regression_labels"] > 0


def _float32_overflow(d):
    labels = d["train"]["regression_labels"].astype(np.float64)
    labels[4] = 1e39
    d["train"]["regression_labels"] = labels


def _empty_split(d):
    d["test"] = {key: value[:0] for key, value in d["test"].items()}


def _text_bert_shorter(d):
    for split in d.values():
        split["text_bert"] = split["text_bert"][:, :, :-2]


BAD_DATA = {
    "missing split": (_missing_split, ["lacks split", "valid"]),
    "missing key": (_missing_key, ["'test'", "vision"]),
    "N mismatch": (_n_mismatch, ["'train'", "'audio'", f"{SIZES[0] - 1} samples", f"have {SIZES[0]}"]),
    "dim mismatch": (_dim_mismatch, ["'vision'", "feature dim", "test 7", "train 20"]),
    "non-finite label": (_nonfinite_label, ["'valid'", "regression_labels", "non-finite"]),
    "duplicate ids": (_duplicate_ids, ["'train'", "'id'", "duplicate"]),
    "text holds ids": (_text_is_token_ids, ["'text'", "token ids", "text_bert"]),
    "text_bert holds features": (_text_bert_is_features, ["'text_bert'", "(N, 3, L)", "belong under 'text'"]),
    "complex features": (_complex_audio, ["'train'", "'audio'", "complex64"]),
    "bool features": (_bool_vision, ["'valid'", "'vision'", "bool"]),
    "bool labels": (_bool_labels, ["'test'", "regression_labels", "bool"]),
    "label beyond float32": (_float32_overflow, ["'train'", "regression_labels", "float32's range"]),
    "split with 0 rows": (_empty_split, ["'test'", "0 samples"]),
    "text_bert not aligned with text": (_text_bert_shorter, ["'text_bert'", "length 10", "'text' has length 12"]),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_rejected_naming_the_problem(tmp_path, data, case):
    spoil, fragments = BAD_DATA[case]
    spoil(data)
    path = tmp_path / "bad.pkl"
    write_pickle(data, path)
    with pytest.raises(RohydrError) as caught:
        validate_file(path)
    for fragment in fragments + ["bad.pkl"]:
        assert fragment in str(caught.value), (fragment, str(caught.value))
    out, report = tmp_path / "out.h5", tmp_path / "report.json"
    result = run_cli("convert", path, out, "--report", report)
    assert result.returncode == 2 and "rohydr convert: error:" in result.stderr
    assert fragments[0] in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not report.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["truncated", "not a pickle", "empty"])
def test_unreadable_files_are_rejected_by_the_cli(tmp_path, pkl, case):
    path = tmp_path / "broken.pkl"
    content = {"truncated": pkl.read_bytes()[:-100], "not a pickle": b"\x89HDF\r\n\x1a\n garbage", "empty": b""}
    path.write_bytes(content[case])
    for command in (["validate", path, "--report", tmp_path / "r.json"], ["convert", path, tmp_path / "o.h5"]):
        result = run_cli(*command)
        assert result.returncode == 2 and "broken.pkl" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "o.h5").exists()


# ------------------------------------------------------------------------------------------- convert

def test_convert_writes_the_hdf5_layout_and_feature_store_reads_it(tmp_path, data):
    data["valid"]["vision"][0, 1, :3] = [np.nan, np.inf, -np.inf]
    data["train"]["text"] = data["train"]["text"].astype(np.float64)
    data["train"]["text"][2, 0, 0] = 1e39  # finite in float64, +inf in float32
    path = tmp_path / "d.pkl"
    write_pickle(data, path)
    out = tmp_path / "features.h5"
    report = convert(path, out, report_path=tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    with h5py.File(out, "r") as h5:
        assert list(h5.attrs["dims"]) == [768, 5, 20] and list(h5.attrs["lengths"]) == [LENGTH] * 3
        assert h5.attrs["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert h5.attrs["text_encoder"] == "features" and h5.attrs["recognised_as"] == ""
        assert h5.attrs["converter_version"] and Path(h5.attrs["source_path"]) == path.resolve()
        for split in ("train", "valid", "test"):
            for key in ("text", "audio", "vision"):
                with np.errstate(over="ignore"):
                    original = np.asarray(data[split][key], dtype=np.float32)
                bad = ~np.isfinite(original)
                stored = h5[f"{split}/{key}"]
                assert stored.dtype == np.float32 and stored.chunks is not None
                assert stored.attrs["nonfinite_replaced"] == bad.sum() == report["nonfinite"][split][key]
                np.testing.assert_array_equal(stored[()], np.where(bad, 0, original))
            np.testing.assert_array_equal(h5[f"{split}/labels"][()], data[split]["regression_labels"])
            assert list(h5[f"{split}/ids"].asstr()[()]) == list(data[split]["id"])
            np.testing.assert_array_equal(h5[f"{split}/text_mask"][()], data[split]["text_bert"][:, 1])
        assert h5["train/text"].attrs["nonfinite_replaced"] == 1
        assert h5["valid/vision"].attrs["nonfinite_replaced"] == 3 + np.isneginf(data["valid"]["vision"]).sum() - 1

    with FeatureStore(out) as store:
        assert store.dims == (768, 5, 20) and store.length == LENGTH
        assert store.sizes == dict(zip(("train", "valid", "test"), SIZES))
        assert store.attrs["dims"] == [768, 5, 20]
        test = store.split("test")
        assert store.split("test") is test
        assert len(test) == SIZES[2] and test.ids == list(data["test"]["id"])
        np.testing.assert_array_equal(test.audio.numpy(), np.nan_to_num(data["test"]["audio"], neginf=0))
        index = torch.tensor([3, 0, 7])
        (text, audio, vision), labels = test.batch(index)
        assert text.shape == (3, LENGTH, 768) and vision.dtype == torch.float32
        torch.testing.assert_close(labels, torch.from_numpy(data["test"]["regression_labels"][[3, 0, 7]]))
        assert test.to("cpu").features()[1].shape == (SIZES[2], LENGTH, 5)


def test_convert_handles_mosei_dims_and_another_length(tmp_path):
    data = make_synthetic("mosei", seed=1, sizes=(12, 5, 6), length=37)
    path = tmp_path / "mosei.pkl"
    write_pickle(data, path)
    result = run_cli("convert", path, tmp_path / "mosei.h5")
    assert result.returncode == 0, result.stderr
    with FeatureStore(tmp_path / "mosei.h5") as store:
        assert store.dims == (768, 74, 35) and store.length == 37
        assert store.split("train").vision.shape == (12, 37, 35)


def test_convert_without_text_features_asks_for_bert(tmp_path, data):
    for split in data.values():
        del split["text"]
    write_pickle(data, tmp_path / "ids.pkl")
    result = run_cli("convert", tmp_path / "ids.pkl", tmp_path / "o.h5")
    assert result.returncode == 2 and "--text-encoder bert" in result.stderr
    assert not (tmp_path / "o.h5").exists()


def test_failed_convert_leaves_nothing_and_keeps_an_older_output(tmp_path, pkl, monkeypatch):
    monkeypatch.delenv("ROHYDR_BERT_DIR", raising=False)
    out = tmp_path / "features.h5"
    result = run_cli("convert", pkl, out, "--text-encoder", "bert", "--bert", tmp_path / "no-such-bert")
    assert result.returncode == 2 and "--bert" in result.stderr and "no-such-bert: no such file or folder" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []
    out.write_bytes(b"previous result")
    with pytest.raises(RohydrError, match="BERT"):
        convert(pkl, out, text_encoder="bert", bert_dir=None)  # no --bert and no $ROHYDR_BERT_DIR
    assert out.read_bytes() == b"previous result" and leftovers(tmp_path) == []


def test_convert_with_a_tiny_local_bert(tmp_path, monkeypatch, capsys):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    bert = transformers.BertModel(config).eval()
    bert.save_pretrained(tmp_path / "tiny-bert")
    data = make_synthetic("mosi", seed=2, sizes=(9, 4, 5), length=LENGTH, vocab_size=128)
    for split in data.values():
        del split["text"]
    write_pickle(data, tmp_path / "ids.pkl")
    monkeypatch.setenv("ROHYDR_BERT_DIR", str(tmp_path / "tiny-bert"))
    capsys.readouterr()  # save_pretrained's own bar
    report = convert(tmp_path / "ids.pkl", tmp_path / "bert.h5", text_encoder="bert")
    assert report["dims"]["text"] == 16
    progress = capsys.readouterr().err  # stderr is no terminal here: plain lines, one per split
    assert "BERT train batches: 1/1 (100%)" in progress and "\r" not in progress and "\x1b" not in progress
    text_bert = torch.from_numpy(data["test"]["text_bert"]).long()
    with torch.no_grad():
        expected = bert(input_ids=text_bert[:, 0], attention_mask=text_bert[:, 1],
                        token_type_ids=text_bert[:, 2]).last_hidden_state
    with FeatureStore(tmp_path / "bert.h5") as store:
        assert store.dims == (16, 5, 20) and store.attrs["text_encoder"] == "bert"
        torch.testing.assert_close(store.split("test").text, expected)

    data["train"]["text_bert"][0, 0, 1] = 500  # outside the tiny vocabulary
    write_pickle(data, tmp_path / "oov.pkl")
    with pytest.raises(RohydrError, match="token id 500 is outside the vocabulary"):
        convert(tmp_path / "oov.pkl", tmp_path / "oov.h5", text_encoder="bert")
    assert not (tmp_path / "oov.h5").exists()


# ------------------------------------------------------------------------------------- feature store

def test_feature_store_errors_name_the_file_and_key(tmp_path, pkl):
    with pytest.raises(RohydrError, match="missing.h5 does not exist"):
        FeatureStore(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(RohydrError, match="junk.h5 is not a readable HDF5"):
        FeatureStore(tmp_path / "junk.h5")
    out = tmp_path / "f.h5"
    convert(pkl, out)
    with h5py.File(out, "a") as h5:
        del h5["test/ids"]
    with pytest.raises(RohydrError, match=r"f.h5 has no dataset '/test/ids'"):
        FeatureStore(out)


def test_unaligned_data_is_refused_at_validation_and_by_the_feature_store(tmp_path, data):
    aligned = tmp_path / "aligned.pkl"
    write_pickle(data, aligned)
    convert(aligned, tmp_path / "u.h5")
    for split in data.values():
        split["audio"] = np.concatenate([split["audio"], split["audio"]], axis=1)  # L_a = 2 L
    write_pickle(data, tmp_path / "unaligned.pkl")
    with pytest.raises(RohydrError, match="word-aligned data is required"):
        validate_file(tmp_path / "unaligned.pkl")
    with h5py.File(tmp_path / "u.h5", "a") as h5:  # a file made otherwise: the reader refuses it too
        for split in data:
            del h5[f"{split}/audio"]
            h5[f"{split}/audio"] = data[split]["audio"].clip(-1e3, 1e3).astype(np.float32)
    with FeatureStore(tmp_path / "u.h5") as store:
        assert store.dims == (768, 5, 20)
        with pytest.raises(RohydrError, match="unaligned"):
            store.length
        with pytest.raises(RohydrError, match="unaligned"):
            store.split("train")

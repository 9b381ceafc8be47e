"""Search says which model answers: its file, when it was trained, its validation Recall@10."""

import os
import re
import time

import pytest
from test_database import trained_sample

from capstone.apps.cli import main
from capstone.data.model import SearchModel, load_model


@pytest.fixture(scope="module")
def sample():
    return trained_sample()


def test_a_loaded_model_names_its_file_time_and_recall(sample, tmp_path):
    _, model_path = sample
    model = load_model(model_path)
    copy = tmp_path / "copy.npz"
    model.save(copy)
    os.utime(copy, (0, 86400 * 365))  # 1971-01-01
    line = SearchModel.load(copy).describe()
    recall = model.info["metrics"]["recall@10"]
    assert line == f"model {copy}, trained 1971-01-01 00:00 UTC; validation R@10 {recall:.3f}"


def test_a_model_without_a_measured_recall_says_so(sample, tmp_path):
    model = load_model(sample[1])
    model.info["metrics"] = {"triple_accuracy": 0.8}  # what notebook 4's own loop records
    assert model.describe().endswith("validation R@10 not measured")
    model.path = None
    assert model.describe().startswith("model trained in this session, not loaded from a file")


def test_search_names_the_model_on_stderr(sample, monkeypatch, capsys):
    folder, model_path = sample
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(folder))
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")
    # every result, weak or not: the small test model's weak-match score may hide them all
    assert main(["search", "--k", "2", "--min-score", "-1", "--model", str(model_path),
                 "a red boat"]) == 0
    out, err = capsys.readouterr()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(model_path.stat().st_mtime))
    assert f"using the model {model_path}, trained {stamp}; validation R@10 0." in err
    assert len(out.splitlines()) == 2 and "model" not in out  # results alone on stdout


def test_the_search_box_names_the_model(sample, monkeypatch):
    from capstone.course.database import ImageDatabase
    from capstone.data.dataset import load_dataset
    from capstone.ui.widgets import search_box

    folder, model_path = sample
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(folder))
    model = load_model(model_path)
    box = search_box(ImageDatabase.build(model, load_dataset("coco")), debounce=0)
    assert re.search(rf"Using the model {re.escape(str(model_path))}, trained \d{{4}}-\d\d-\d\d "
                     rf"\d\d:\d\d UTC; validation R@10 0\.\d{{3}}", box.message.value)

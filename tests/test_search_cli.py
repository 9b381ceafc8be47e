"""The search, similar and tags commands, on a small generated sample with a trained model."""

import json

import numpy as np
import pytest
from test_database import trained_sample

from capstone.cli import main
from capstone.data import load_dataset
from capstone.database import ImageDatabase
from capstone.model import load_model
from capstone.sample import UNUSED_SYNONYMS


@pytest.fixture(scope="module")
def sample():
    return trained_sample()


@pytest.fixture
def env(sample, monkeypatch):
    """The sample as the ``coco`` dataset, and its model as the default model."""
    folder, model_path = sample
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(folder))
    monkeypatch.setenv("CAPSTONE_MODEL", str(model_path))
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")


@pytest.fixture
def db(env):
    dataset = load_dataset()
    return ImageDatabase.load_or_build(load_model(dataset=dataset.name), dataset)


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_search_json_is_the_databases_results(db, capsys):
    status, out, _ = run(capsys, "search", "--json", "--k", "4", "a red boat on the water")
    assert status == 0
    results = json.loads(out)
    assert results == json.loads(json.dumps(db.query("a red boat on the water", 4)))
    assert [set(result) for result in results] == [{"image_id", "score", "url", "captions"}] * 4
    assert all(result["url"].startswith("file://") and result["captions"] for result in results)


def test_search_prints_one_line_per_result(db, sample, capsys):
    status, out, _ = run(capsys, "search", "--k", "3", "--model", str(sample[1]), "kite")
    lines = out.splitlines()
    assert status == 0 and len(lines) == 3
    for line, result in zip(lines, db.query("kite", 3)):
        assert str(result["image_id"]) in line and f"{result['score']:.3f}" in line


def test_queries_file_prints_one_json_list_per_query(db, capsys, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("green tree\n\nblue car\n", encoding="utf-8")
    status, out, _ = run(capsys, "search", "--queries", str(queries), "--k", "2")
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [[r["image_id"] for r in line] for line in lines] == [
        [r["image_id"] for r in db.query(text, 2)] for text in ("green tree", "blue car")
    ]


@pytest.mark.parametrize("space", ["semantic", "features"])
def test_similar_starts_with_the_image(db, capsys, space):
    image_id = int(db.image_ids[7])
    status, out, _ = run(capsys, "similar", "--json", "--k", "5", "--space", space, str(image_id))
    results = json.loads(out)
    assert status == 0 and len(results) == 5 and results[0]["image_id"] == image_id
    assert [r["image_id"] for r in results] == [
        r["image_id"] for r in db.similar(image_id, 5, space)
    ]


def test_tags_are_words_with_scores(db, capsys):
    image_id = int(db.image_ids[3])
    status, out, _ = run(capsys, "tags", "--json", "--n", "6", str(image_id))
    assert status == 0
    assert json.loads(out) == [{"word": w, "score": s} for w, s in db.tags(image_id, 6)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "xqzt"], "no known words in query 'xqzt'"),
        (["search", "?!"], "no known words in query '?!'"),
        (["search", "--k", "0", "boat"], "k must be a whole number of at least 1"),
        (["search"], "give either a query"),
        (["search", "--queries", "nowhere.txt"], "nowhere.txt"),
        (["similar", "12"], "image_id 12 is not in this database"),
        (["similar", "--k", "-1", "12"], "k must be"),
        (["tags", "12"], "image_id 12 is not in this database"),
        (["tags", "--n", "0", "12"], "n must be a whole number of at least 1"),
        (["search", "--model", "missing.npz", "boat"], "python -m capstone train"),
    ],
)
def test_bad_input_is_one_line_and_status_2(env, capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_bad_line_in_a_queries_file_is_named(env, capsys, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("boat\nxqzt\n", encoding="utf-8")
    status, _, err = run(capsys, "search", "--queries", str(queries))
    assert status == 2 and f"{queries} line 2: no known words" in err


def precision_at_10(db, query, relevant) -> float:
    return float(np.mean([relevant(db.dataset.scenes[r["image_id"]]) for r in db.query(query, 10)]))


@pytest.mark.parametrize("background", ["grass", "night"])
def test_a_word_no_caption_uses_finds_the_scenes_through_glove(db, background):
    synonym = UNUSED_SYNONYMS[background]  # "turf", "evening"
    assert not any(synonym in caption.lower().split() for caption in db.dataset.captions)
    scenes = [db.dataset.scenes[int(image_id)] for image_id in db.image_ids]
    chance = np.mean([scene["background"] == background for scene in scenes])
    precision = precision_at_10(db, synonym, lambda scene: scene["background"] == background)
    assert precision >= max(0.5, 3 * chance)


def test_tags_name_what_is_in_the_picture(db):
    named = [db.dataset.scenes[int(image_id)]["background"] in dict(db.tags(image_id, 5))
             for image_id in db.image_ids]
    assert np.mean(named) >= 0.7  # the background word among 5 of ~90 candidate words

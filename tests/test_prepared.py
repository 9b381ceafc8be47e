"""Opening the saved model and database fast; training (saying so) when there is no model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_database import trained_sample

from capstone.data import dataset as data
from capstone.data import model as model_module
from capstone.pipeline import prepared
from capstone.data import store
from capstone.data.dataset import load_dataset
from capstone.search.database import SearchDatabase
from capstone.data.glove import WordVectors, load_glove, load_word_vectors, shared_word_vectors
from capstone.data.model import SearchModel, load_model
from capstone.pipeline.prepared import SearchView, load_or_train, load_search_view, open_database
from capstone.sample import UNUSED_SYNONYMS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    return trained_sample()


@pytest.fixture
def env(sample, monkeypatch, tmp_path):
    """The sample as ``coco``; its model, saved again here, as the default model."""
    folder, model_path = sample
    path = SearchModel.load(model_path).save(tmp_path / "model.npz")
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(folder))
    monkeypatch.setenv("CAPSTONE_MODEL", str(path))
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    return path


@pytest.fixture
def full_db(env):
    """The database built the full way, from the dataset, and saved where search looks."""
    dataset = load_dataset()
    return SearchDatabase.load_or_build(load_model(dataset=dataset.name), dataset)


def refuse(name):
    def refused(*args, **kwargs):
        raise AssertionError(f"{name} was called")

    return refused


def test_a_search_reads_no_features_no_glove_and_no_json(full_db, monkeypatch):
    monkeypatch.setattr(store, "read_features_pickle", refuse("the features pickle"))
    monkeypatch.setattr(prepared, "load_features", refuse("load_features"))
    monkeypatch.setattr(model_module, "load_word_vectors", refuse("load_word_vectors"))
    monkeypatch.setattr(data, "read_captions", refuse("read_captions"))
    monkeypatch.setattr(prepared, "read_captions", refuse("read_captions"))
    database = open_database()
    assert isinstance(database.dataset, SearchView)
    fast, full = (db.query("a red boat on the water", 5) for db in (database, full_db))
    # the saved embeddings and freshly computed ones may differ in float32's last bit
    same = [{**r, "score": None, "why": None} for r in fast]
    assert same == [{**r, "score": None, "why": None} for r in full]
    assert [r["score"] for r in fast] == pytest.approx([r["score"] for r in full], abs=1e-6)
    for mine, theirs in zip(fast, full):
        assert mine["why"] == pytest.approx(theirs["why"], abs=1e-6)


def test_a_search_view_reads_the_features_on_first_use(full_db):
    database = open_database()
    image_id = int(database.image_ids[4])
    assert database.dataset._features is None
    assert [r["image_id"] for r in database.similar(image_id, 4, space="features")] == [
        r["image_id"] for r in full_db.similar(image_id, 4, space="features")]
    np.testing.assert_array_equal(database.dataset.features_of([image_id]),
                                  full_db.dataset.features_of([image_id]))
    with pytest.raises(KeyError, match="not in the coco dataset's images with features"):
        database.dataset.features_of([12])


def test_a_stale_or_missing_database_is_built_saying_so(env, capsys, monkeypatch):
    database = open_database()  # none saved yet: built
    assert "building the coco image database" in capsys.readouterr().err
    other = SearchModel.load(env)
    other.image.set_arrays({name: value + (name == "weight") for name, value in
                            other.image.get_arrays().items()})  # another model: a stale database
    rebuilt = open_database(model=other)
    assert "building the coco image database" in capsys.readouterr().err
    assert not np.array_equal(rebuilt.embeddings, database.embeddings)
    again = open_database(model=other)  # now saved: read, silently
    assert capsys.readouterr().err == ""
    np.testing.assert_allclose(again.embeddings, rebuilt.embeddings, atol=1e-6)


def test_the_view_has_what_the_dataset_has_for_search(env):
    dataset, view = load_dataset(), load_search_view()
    np.testing.assert_array_equal(view.image_ids, dataset.image_ids)
    image_id = int(dataset.missing_image_ids[0]) if len(dataset.missing_image_ids) else 1
    for key in (int(dataset.image_ids[0]), image_id):
        assert view.urls.get(key) == dataset.urls.get(key)
        assert view.image_captions.get(key) == dataset.image_captions.get(key)
    assert view.scenes[int(dataset.image_ids[0])] == dataset.scenes[int(dataset.image_ids[0])]


def test_known_words_need_no_glove_and_others_read_it_once(env, monkeypatch):
    calls = []

    def counting(name):
        calls.append(name)
        return shared_word_vectors(name)

    monkeypatch.setattr(model_module, "shared_word_vectors", counting)
    with_glove = SearchModel.load(env, glove=load_glove("glove-50d"))
    calls.clear()
    loaded = SearchModel.load(env)
    np.testing.assert_allclose(loaded.embed_query("a red boat"),
                               with_glove.embed_query("a red boat"), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_text(["red kite", "the blue car"]),
                               with_glove.embed_text(["red kite", "the blue car"]), atol=1e-6)
    assert calls == [] and loaded.vocabulary()[0].tolist() == with_glove.text.vocab.tolist()
    word = UNUSED_SYNONYMS["boat"]  # "ship": in GloVe, in no caption
    np.testing.assert_allclose(loaded.embed_query(f"a red {word}"),
                               with_glove.embed_query(f"a red {word}"), atol=1e-6)
    assert calls == ["glove-50d"] and loaded.checksum == with_glove.checksum
    loaded.embed_query("qwzx boat")
    assert calls == ["glove-50d"]  # once
    with pytest.raises(TypeError):
        SearchModel.load(env).embed_query(["not", "a", "str"])


def test_many_texts_use_the_full_glove(env, monkeypatch):
    loaded = SearchModel.load(env)
    assert loaded._full_glove is not None
    loaded.embed_text(["boat"] * (model_module.FEW_TEXTS + 1))
    assert loaded._full_glove is None and len(loaded.text.glove) == len(load_glove("glove-50d"))


def test_the_search_command_loads_no_plotting_library_and_no_gensim(full_db, env):
    script = ("import sys; from capstone.apps.cli import main; status = main(['search', 'red boat']); "
              "heavy = ('noggin', 'matplotlib', 'gensim', 'pandas', 'xarray', 'tqdm'); "
              "print(status, [name for name in heavy if name in sys.modules])")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=environment, timeout=120, check=True)
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


def test_load_or_train_loads_a_saved_model_silently_and_reads_no_data(env, capsys, monkeypatch):
    monkeypatch.setattr(prepared, "load_dataset", refuse("load_dataset"))
    model = load_or_train("coco")
    assert model.checksum == load_model().checksum and capsys.readouterr().err == ""
    assert load_or_train().checksum == model.checksum  # the default dataset: coco here


def test_load_or_train_says_what_it_does_and_saves(env, tmp_path, capsys):
    path = tmp_path / "new.npz"
    model = load_or_train("coco", path=path, progress=False, epochs=1)
    err = capsys.readouterr().err
    assert "No saved model for coco: training one now ('default' preset, 1 epoch," in err
    assert "python -m capstone train --dataset coco --preset default" in err
    assert "trained in" in err
    assert SearchModel.load(path).checksum == model.checksum
    assert json.loads(json.dumps(model.info))["settings"]["epochs"] == 1


def test_the_training_estimate_grows_with_epochs_and_shrinks_with_batches(env):
    from capstone.course.train import PRESETS

    dataset = load_dataset()
    default, more = PRESETS["default"], PRESETS["default"].replace(epochs=60)
    bigger = default.replace(batch_size=512)
    estimate = prepared.training_estimate
    assert estimate(dataset, more) > estimate(dataset, default) > estimate(dataset, bigger) > 0


def test_word_vectors_are_gloves_words_and_vectors_without_gensim(env):
    vectors, glove = load_word_vectors("glove-50d"), load_glove("glove-50d")
    assert isinstance(vectors, WordVectors) and len(vectors) == len(glove)
    assert vectors.index_to_key[:5] == glove.index_to_key[:5] and vectors.vector_size == 50
    np.testing.assert_array_equal(vectors["boat"], glove["boat"])
    assert "boat" in vectors and "qwzx" not in vectors
    script = ("import sys; from capstone.data.dataset import load_dataset; "
              "from capstone.pipeline.training import fit_text; fit_text(load_dataset()); "
              "print('gensim' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=True)
    assert result.stdout.splitlines()[-1] == "False", result.stderr


def test_the_50d_words_are_read_from_a_plain_copy_after_the_first_time(tmp_path, monkeypatch):
    import pyarrow.parquet

    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path))
    first = load_word_vectors("glove-50d")
    [copy] = (tmp_path / "glove").glob("glove-50d-words-*.txt")
    monkeypatch.setattr(pyarrow.parquet, "ParquetFile", refuse("the parquet index"))
    assert load_word_vectors("glove-50d").index_to_key == first.index_to_key
    copy.write_bytes(b"only\nthree\nwords")  # damaged: read from the package again
    monkeypatch.undo()
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path))
    assert load_word_vectors("glove-50d").index_to_key == first.index_to_key
    assert len(copy.read_bytes().split(b"\n")) == len(first)

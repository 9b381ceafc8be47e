"""The course benchmark's adapter, loaded as the harness loads it: through its entry point."""

from importlib.metadata import entry_points
from types import SimpleNamespace

import numpy as np
import pytest
from test_database import tiny_dataset

from capstone.errors import CapstoneError, MissingFileError
from capstone.data.glove import load_glove
from capstone.course.image import ImageEmbedder
from capstone.data.model import SearchModel
from capstone.course.text import TextEmbedder


def create_search_adapter(resources=None):
    (entry_point,) = entry_points(group="cogworks.submissions.v2", name="language-search")
    return entry_point.load()(resources)


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset(n_images=24)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, dataset):
    text = TextEmbedder.fit(dataset.captions, load_glove("glove-50d"), "glove-50d")
    model = SearchModel(ImageEmbedder(512, 50, seed=3), text, {"dataset": "sample"})
    return model.save(tmp_path_factory.mktemp("model") / "model.npz")


@pytest.fixture
def adapter(model_path, dataset, monkeypatch):
    monkeypatch.setenv("CAPSTONE_MODEL", str(model_path))
    adapter = create_search_adapter(None)
    adapter.prepare_database(dataset.image_ids, dataset.features[:, None, :])  # (M, 1, 512)
    return adapter


def test_without_a_trained_model_the_factory_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_MODEL", str(tmp_path / "none.npz"))
    with pytest.raises(MissingFileError, match="python -m capstone train"):
        create_search_adapter({"glove_path": None})


def test_without_a_model_no_glove_is_read_first(tmp_path, monkeypatch):
    import capstone.data.glove

    course_file = tmp_path / "glove.6B.200d.txt.w2v"
    course_file.write_text("1 2\nboat 0.5 0.5\n", encoding="utf-8")
    monkeypatch.setenv("CAPSTONE_MODEL", str(tmp_path / "none.npz"))
    read = []
    monkeypatch.setattr(capstone.data.glove, "load_glove_file", lambda path: read.append(path))
    with pytest.raises(MissingFileError, match="python -m capstone train"):
        create_search_adapter({"glove_path": str(course_file)})
    assert read == []  # parsing the real 200-d file takes a while: fail before it


def test_embeddings_are_the_models(adapter, model_path, dataset):
    model = SearchModel.load(model_path)
    captions = ["a red boat", "xqzt", "A photo of a TREE."]
    np.testing.assert_allclose(adapter.embed_text(captions), model.embed_text(captions), atol=1e-6)
    assert adapter.embed_text(captions).shape == (3, 50) and not adapter.embed_text(["xqzt"]).any()
    images = adapter.embed_images(dataset.features[:5])
    np.testing.assert_allclose(images, model.embed_images(dataset.features[:5]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)


def test_search_ranks_the_prepared_images(adapter, dataset):
    image_ids = adapter.search("a green car", 5)
    scores = adapter.embed_images(dataset.features) @ adapter.embed_text(["a green car"])[0]
    assert image_ids == dataset.image_ids[np.argsort(-scores)[:5]].tolist()
    assert all(type(image_id) is int for image_id in image_ids)


@pytest.mark.parametrize("query", ["a rde bota", "the of a", "", "?!", "xqzt blorf", "  "])
def test_any_query_gets_k_prepared_ids(adapter, dataset, query):
    image_ids = adapter.search(query, 7)
    assert len(image_ids) == 7 == len(set(image_ids))
    assert set(image_ids) <= set(dataset.image_ids.tolist())
    assert adapter.search(query, 7) == image_ids  # deterministic


def test_no_known_words_fall_back_to_the_mean_image_direction(adapter):
    embeddings = adapter.database.embeddings
    mean = embeddings.mean(axis=0)
    expected = adapter.database.image_ids[np.argsort(-(embeddings @ mean))[:4]].tolist()
    assert adapter.search("xqzt", 4) == adapter.search("", 4) == expected


def test_k_beyond_the_database_or_below_one(adapter, dataset):
    assert sorted(adapter.search("boat", 1000)) == sorted(dataset.image_ids.tolist())
    assert adapter.search("boat", 0) == []


def test_search_before_prepare_database_says_what_to_call(model_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_MODEL", str(model_path))
    with pytest.raises(CapstoneError, match="call prepare_database"):
        create_search_adapter().search("boat", 3)


def write_word2vec(path, words, vectors):
    lines = [f"{len(words)} {vectors.shape[1]}"]
    lines += [f"{word} " + " ".join(f"{x:.6f}" for x in row) for word, row in zip(words, vectors)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_course_glove_file_is_used_when_it_fits(tmp_path, model_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_MODEL", str(model_path))
    glove = load_glove("glove-50d")
    words = [*SearchModel.load(model_path).text.vocab.tolist(), "ship"]
    course_file = write_word2vec(tmp_path / "glove.6B.50d.txt.w2v", words, glove[words])
    adapter = create_search_adapter(SimpleNamespace(glove_path=str(course_file)))
    assert len(adapter.model.text.glove) == len(words)
    small_file = write_word2vec(tmp_path / "glove.3d.txt", words, np.ones((len(words), 3)))
    adapter = create_search_adapter({"glove_path": small_file})  # another dimension: not used
    assert len(adapter.model.text.glove) == len(glove)


@pytest.mark.parametrize("typed, meant", [("a rde baot", "a red boat"), ("grren trwe", "green tree"),
                                          ("x" * 5000, "")])
def test_search_corrects_typos_silently(adapter, typed, meant, capsys):
    assert adapter.search(typed, 6) == adapter.search(meant, 6)
    assert capsys.readouterr() == ("", "")

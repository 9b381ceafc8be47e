"""The course benchmark's adapter, loaded as the harness loads it: through its entry point."""

from importlib.metadata import entry_points
from types import SimpleNamespace

import numpy as np
import pytest
from test_database import tiny_dataset

import capstone.apps.cli as cli
from capstone.data.dataset import read_dataset
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


@pytest.fixture(autouse=True)
def no_committed_weights(tmp_path, monkeypatch):
    """The repository's weights/ folder as a fresh clone has it: no exported model."""
    import capstone.apps.weights

    monkeypatch.setattr(capstone.apps.weights, "WEIGHTS_DIR", tmp_path / "weights")


def test_without_a_trained_model_the_factory_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_MODEL", str(tmp_path / "none.npz"))
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingFileError, match="capstone train.*python -m capstone export"):
        create_search_adapter({"glove_path": None})


def test_without_a_model_no_glove_is_read_first(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
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


# -- where the model comes from: the repository, $CAPSTONE_MODEL, the cache, else training ------
@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty repository weights folder and an empty cache."""
    import capstone.apps.weights

    monkeypatch.setattr(capstone.apps.weights, "WEIGHTS_DIR", tmp_path / "repository" / "weights")
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPSTONE_MODEL", raising=False)
    return capstone.apps.weights


def another_model(dataset, seed, path):
    text = TextEmbedder.fit(dataset.captions, load_glove("glove-50d"), "glove-50d")
    return SearchModel(ImageEmbedder(512, 50, seed=seed), text, {"dataset": "sample"}).save(path)


def test_export_writes_the_model_into_the_repository(places, model_path, capsys):
    assert cli.main(["export", "--dataset", "sample", "--model", str(model_path)]) == 0
    exported = places.WEIGHTS_DIR / "sample.npz"
    assert f"exported to {exported}" in capsys.readouterr().out
    assert SearchModel.load(exported).checksum == SearchModel.load(model_path).checksum
    assert exported.stat().st_size < 1_000_000  # small enough to commit
    lean = places.export_model("sample", model_path=model_path, out=places.WEIGHTS_DIR / "x.npz")
    with np.load(lean) as arrays:  # the sample's vocabulary vectors are small: kept
        assert "vocab_vectors" in arrays.files
    places.WORD_VECTORS_LIMIT = 0
    with np.load(places.export_model("sample", model_path=model_path, out=lean)) as arrays:
        assert "vocab_vectors" not in arrays.files  # COCO's 200-d ones are not
    assert SearchModel.load(lean).checksum == SearchModel.load(model_path).checksum
    capsys.readouterr()
    assert cli.main(["export", "--dataset", "sample", "--model", str(exported.parent / "no.npz")]) == 2
    assert capsys.readouterr().err.startswith("error: no trained model at ")  # one line


def test_the_adapter_looks_in_the_repository_then_capstone_model_then_the_cache(
        places, model_path, dataset, tmp_path, monkeypatch):
    def loaded():
        return create_search_adapter(None).model.checksum

    in_cache = another_model(dataset, 5, tmp_path / "cache" / "models" / "sample.npz")
    assert loaded() == SearchModel.load(in_cache).checksum
    named = another_model(dataset, 6, tmp_path / "named.npz")
    monkeypatch.setenv("CAPSTONE_MODEL", str(named))
    assert loaded() == SearchModel.load(named).checksum
    places.export_model("sample", model_path=model_path)
    assert loaded() == SearchModel.load(model_path).checksum  # the committed one wins


def test_with_no_model_the_adapter_trains_on_the_files_it_is_handed(places, tmp_path, capfd):
    from capstone.data.glove import load_glove
    from capstone.sample import write_sample

    folder = write_sample(tmp_path / "course", n_images=150)
    glove = load_glove("glove-50d")
    words = [word for word in glove.index_to_key[:20_000] if word.isalpha()]
    glove_file = write_word2vec(tmp_path / "glove.txt", words, glove[words])
    files = {"captions_path": str(folder / "captions_train2014.json"),
             "descriptors_path": str(folder / "resnet18_features.pkl"),
             "glove_path": str(glove_file)}
    adapter = create_search_adapter(files)
    err = capfd.readouterr().err
    assert "no trained model for sample" in err and "training one now" in err
    assert "epochs" in err and "batches" in err  # the progress bars
    saved = tmp_path / "cache" / "models" / "sample.npz"
    assert SearchModel.load(saved).checksum == adapter.model.checksum
    dataset = read_dataset(folder, "sample")
    adapter.prepare_database(dataset.image_ids, dataset.features)
    found = adapter.search("a red boat", 10)
    scenes = [dataset.scenes[i]["objects"][0]["kind"] for i in found]
    assert scenes.count("boat") >= 5  # it learned something
    again = create_search_adapter(files)  # the next run loads it
    assert "training" not in capfd.readouterr().err
    assert again.model.checksum == adapter.model.checksum

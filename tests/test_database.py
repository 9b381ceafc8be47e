"""The image database: exact top-k, similar images, tags, saving and stale-database detection."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from capstone.data.dataset import Dataset
from capstone.course.database import top_k
from capstone.search.database import SearchDatabase, StaleDatabaseError
from capstone.errors import DataError
from capstone.data.glove import keyed_vectors
from capstone.course.image import ImageEmbedder
from capstone.data.model import SearchModel
from capstone.course.text import STOP_WORDS, TextEmbedder

KINDS = ("boat", "car", "tree", "dog")
COLORS = ("red", "blue", "green")
SYNONYMS = {"boat": "ship", "car": "vehicle", "tree": "pine", "dog": "puppy"}


def tiny_glove(dim=16, seed=0):
    """Word vectors for a few words; each synonym lies close to its word."""
    rng = np.random.default_rng(seed)
    words = ["a", "the", "on", "of", *COLORS, *KINDS, "grass", "water", "photo"]
    vectors = rng.standard_normal((len(words), dim)).astype(np.float32)
    synonyms = [SYNONYMS[kind] for kind in KINDS]
    near = vectors[[words.index(kind) for kind in KINDS]]
    near = near + 0.2 * rng.standard_normal(near.shape).astype(np.float32)
    return keyed_vectors(words + synonyms + ["...", "x2"], np.vstack([vectors, near, vectors[:2]]))


def tiny_dataset(n_images=30, seed=0, name="sample"):
    """A synthetic :class:`Dataset`: random features, captions naming a colour and a kind."""
    rng = np.random.default_rng(seed)
    image_ids = np.arange(n_images, dtype=np.int64) * 7 + 11
    captions, caption_image_ids, image_captions = [], [], {}
    for image_id in image_ids:
        kind, color = KINDS[image_id % len(KINDS)], COLORS[image_id % len(COLORS)]
        texts = [f"a {color} {kind} on the grass", f"A photo of a {kind}."]
        image_captions[int(image_id)] = texts
        captions += texts
        caption_image_ids += [image_id] * len(texts)
    return Dataset(
        name=name,
        image_ids=image_ids,
        features=rng.standard_normal((n_images, 512)).astype(np.float32),
        caption_ids=np.arange(len(captions), dtype=np.int64),
        caption_image_ids=np.array(caption_image_ids, dtype=np.int64),
        captions=captions,
        urls={int(i): f"file:///nonexistent/{i}.png" for i in image_ids},
        image_captions=image_captions,
        scenes=None,
        missing_image_ids=np.zeros(0, dtype=np.int64),
        n_captions_total=len(captions),
    )


def tiny_model(dataset, seed=0, glove=None):
    """A real (untrained) :class:`SearchModel` over :func:`tiny_glove`."""
    glove = tiny_glove() if glove is None else glove
    text = TextEmbedder.fit(dataset.captions, glove, "tiny")
    return SearchModel(ImageEmbedder(512, text.dim, seed=seed), text, {"dataset": dataset.name})


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


@pytest.fixture(scope="module")
def model(dataset):
    return tiny_model(dataset)


@pytest.fixture(scope="module")
def db(model, dataset):
    return SearchDatabase.build(model, dataset)


# -- exact top-k -------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    scores=arrays(np.float32, st.integers(1, 3000), elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0])
                  | st.floats(-1, 1, width=32)),
    k=st.integers(1, 60),
)
def test_top_k_equals_a_full_sort(scores, k):
    best = top_k(scores, k)
    assert len(best) == min(k, len(scores)) == len(set(best.tolist()))
    np.testing.assert_array_equal(scores[best], np.sort(scores)[::-1][: len(best)])


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.sampled_from(KINDS + COLORS + ("ship", "grass")), min_size=1, max_size=4),
       k=st.integers(1, 40))
def test_query_equals_a_brute_force_ranking(db, model, words, k):
    text = " ".join(words)
    results = db.query(text, k)
    scores = db.embeddings @ model.embed_query(text)
    expected = np.sort(scores)[::-1][: min(k, len(db))]
    np.testing.assert_allclose([result["score"] for result in results], expected, atol=1e-6)
    for result in results:
        assert result["score"] == pytest.approx(scores[db.row(result["image_id"])], abs=1e-6)


def test_results_are_cosines_best_first_with_url_and_captions(db, dataset):
    results = db.query("a red boat", k=8)
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 - 1e-6 <= score <= 1.0 + 1e-6 for score in scores)
    for result in results:
        assert set(result) == {"image_id", "score", "url", "captions", "why", "weak"}
        assert sum(result["why"].values()) == pytest.approx(result["score"], abs=1e-5)
        assert type(result["image_id"]) is int and type(result["score"]) is float
        assert result["url"] == dataset.urls[result["image_id"]]
        assert result["captions"] == dataset.image_captions[result["image_id"]]


def test_embeddings_are_unit_float32_rows(db, dataset):
    assert db.embeddings.dtype == np.float32 and db.embeddings.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(db.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(db.image_ids, dataset.image_ids)


def test_k_beyond_the_database_returns_every_image(db):
    results = db.query("tree", k=len(db) + 50)
    assert sorted(result["image_id"] for result in results) == sorted(db.image_ids.tolist())


@pytest.mark.parametrize("k", [0, -3, 2.5, None, "ten"])
def test_k_must_be_a_positive_whole_number(db, k):
    with pytest.raises(ValueError, match="k must be"):
        db.query("boat", k)


@pytest.mark.parametrize("text", ["", "   ", "?!...", "xqzt blorf"])
def test_a_query_without_known_words_says_so(db, text):
    with pytest.raises(ValueError, match="no known words") as error:
        db.query(text)
    assert repr(text) in str(error.value)


def test_a_database_of_other_images_is_detected(tmp_path, db, model):
    path = db.save(tmp_path / "db.npz")
    with pytest.raises(StaleDatabaseError, match="does not match"):
        SearchDatabase.load(path, model, tiny_dataset(n_images=20))


def test_load_or_build_builds_when_missing_or_damaged(tmp_path, model, dataset):
    path = tmp_path / "db.npz"
    built = SearchDatabase.load_or_build(model, dataset, path=path)
    assert path.is_file() and len(built) == len(dataset.image_ids)
    saved = path.read_bytes()
    for damaged in (b"not a zip file", saved[: len(saved) // 2]):  # the second: a truncated zip
        path.write_bytes(damaged)
        with pytest.raises(DataError, match=f"{path} is damaged.*delete") as error:
            SearchDatabase.load(path, model, dataset)
        assert "\n" not in str(error.value)
        rebuilt = SearchDatabase.load_or_build(model, dataset, path=path)
        np.testing.assert_array_equal(rebuilt.embeddings, built.embeddings)
        np.testing.assert_array_equal(SearchDatabase.load(path, model, dataset).image_ids,
                                      dataset.image_ids)
    with pytest.raises(FileNotFoundError, match="load_or_build"):
        SearchDatabase.load(tmp_path / "none.npz", model, dataset)


def test_a_loaded_database_shares_its_rows_read_only_from_one_file(tmp_path, db, model, dataset):
    path = db.save(tmp_path / "db.npz")
    first = SearchDatabase.load(path, model, dataset)
    (rows,) = tmp_path.glob("db.rows-*.npy")  # written by the first load, beside the database
    second = SearchDatabase.load(path, model, dataset)
    for loaded in (first, second):  # every process maps the same file: one copy in memory
        assert isinstance(loaded.embeddings, np.memmap) and Path(loaded.embeddings.filename) == rows
        assert not loaded.embeddings.flags.writeable
        np.testing.assert_array_equal(loaded.embeddings, db.embeddings)
        assert loaded.query("red boat", 5) == db.query("red boat", 5)
    rows.write_bytes(rows.read_bytes()[:100])  # cut short: written again from the database
    np.testing.assert_array_equal(SearchDatabase.load(path, model, dataset).embeddings,
                                  db.embeddings)
    db.save(path)  # written again: new rows, the old file removed
    SearchDatabase.load(path, model, dataset)
    (new_rows,) = tmp_path.glob("db.rows-*.npy")
    assert new_rows != rows
    first.add([10**9], dataset.features[:1])  # adding images copies the rows, the file stays
    assert first.embeddings.flags.writeable and len(first) == len(db) + 1


def test_a_read_only_cache_still_loads_the_database(tmp_path, db, model, dataset, monkeypatch):
    path = db.save(tmp_path / "db.npz")

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(np, "save", refuse)
    loaded = SearchDatabase.load(path, model, dataset)
    assert not list(tmp_path.glob("*.npy")) and loaded.embeddings.flags.writeable
    np.testing.assert_array_equal(loaded.embeddings, db.embeddings)


# -- the real pieces: a sample dataset and a model trained on it -------------------------------
def trained_sample(n_images=200):
    """A small generated sample (a ``coco``-format folder) and a model trained on it.

    Kept in the test cache, so only the first run generates and trains (about 15 s).

    Returns
    -------
    (folder, model_path) : the folder to point ``CAPSTONE_DATA_DIR`` at, and the model file
    """
    from capstone.data.dataset import read_dataset
    from capstone.data.model import SearchModel
    from capstone.data.paths import cache_dir
    from capstone.sample import SAMPLE_VERSION, read_marker, write_sample
    from capstone.pipeline.training import train

    folder = cache_dir() / "search-tests" / f"sample-{n_images}"
    model_path = folder / "model.npz"
    if read_marker(folder).get("version") != SAMPLE_VERSION:
        model_path.unlink(missing_ok=True)
        write_sample(folder, n_images=n_images)
    try:
        SearchModel.load(model_path)
    except ValueError:  # missing or unreadable: train it
        dataset = read_dataset(folder, "coco")
        train(dataset, out=model_path, plot=False, progress=False)
    return folder, model_path


def full_sample_model_path():
    """A model trained with the defaults on the whole default sample (2,970 images).

    Kept in the test cache, so only the first run trains (about 10-30 s).
    """
    from capstone.data.dataset import load_dataset
    from capstone.data.model import SearchModel
    from capstone.data.paths import cache_dir
    from capstone.sample import SAMPLE_VERSION
    from capstone.pipeline.training import train

    model_path = cache_dir() / "search-tests" / f"full-sample-v{SAMPLE_VERSION}-model.npz"
    try:
        SearchModel.load(model_path)
    except ValueError:  # missing or unreadable: train it
        train(load_dataset("sample"), out=model_path, plot=False, progress=False)
    return model_path

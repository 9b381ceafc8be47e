"""Search indexes (capstone.search.ann): exact, FAISS HNSW and IVF-PQ behind ImageDatabase.query."""

import subprocess
import sys

import numpy as np
import pytest

from capstone.search.ann import KINDS, ExactIndex, build_index, use_index
from capstone.course.database import ImageDatabase

from test_database import tiny_dataset, tiny_model

pytest.importorskip("faiss")

N, DIM, K = 5000, 50, 10


def clustered(n, dim, rng, centres):
    """Unit rows around random centres: Gaussian clusters plus isotropic noise."""
    rows = centres[rng.integers(0, len(centres), n)]
    rows = rows + rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(N, DIM, rng, centres), clustered(100, DIM, rng, centres)


@pytest.fixture(scope="module")
def indexes(data):
    embeddings, _ = data
    built = {kind: build_index(embeddings, kind) for kind in KINDS}
    yield built
    built["milvus"].close()  # stops its Milvus Lite server, deletes its temporary .db


def recall_at_k(index, exact, queries, k=K):
    hits = [
        len(set(index.search(query, k)[0]) & set(exact.search(query, k)[0])) / k
        for query in queries
    ]
    return float(np.mean(hits))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 10, 137])
def test_each_index_returns_k_rows_best_first_with_finite_cosines(indexes, data, kind, k):
    embeddings, queries = data
    for query in queries[:10]:
        rows, scores = indexes[kind].search(query, k)
        assert rows.shape == scores.shape == (k,)
        assert rows.dtype == np.int64 and len(set(rows.tolist())) == k
        assert np.all(np.isfinite(scores)) and np.all(np.diff(scores) <= 1e-6)
        np.testing.assert_allclose(scores, embeddings[rows] @ query, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_asking_for_more_than_the_database_holds_returns_every_row(kind):
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((40, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    rows, scores = build_index(embeddings, kind).search(embeddings[3], 100)
    assert sorted(rows.tolist()) == list(range(40))
    assert rows[0] == 3 and np.all(np.diff(scores) <= 1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_indexes_find_most_of_the_exact_top_10(indexes, data, kind):
    _, queries = data
    assert recall_at_k(indexes[kind], indexes["exact"], queries) >= 0.9


def test_exact_index_answers_as_the_database_does(data):
    embeddings, queries = data
    db = ImageDatabase(np.arange(N) * 3 + 1, embeddings, model=None)
    exact = build_index(db.embeddings, "exact")
    through_index = use_index(ImageDatabase(np.arange(N) * 3 + 1, embeddings, model=None),
                              "exact")
    for query in queries[:20]:
        image_ids, scores = db.query_vector(query, K)
        rows, index_scores = exact.search(query, K)
        np.testing.assert_array_equal(image_ids, rows * 3 + 1)
        np.testing.assert_array_equal(scores, index_scores)
        for got, expected in zip(through_index.query_vector(query, K), (image_ids, scores)):
            np.testing.assert_array_equal(got, expected)


def test_an_unknown_kind_is_one_line_naming_the_choices(data):
    with pytest.raises(ValueError, match="^unknown index kind 'annoy'; choose one of exact, hnsw, "
                                         "ivfpq, milvus$"):
        build_index(data[0], "annoy")


def test_an_unknown_parameter_names_the_kinds_parameters(data):
    with pytest.raises(ValueError, match="has no parameter 'nprobe'; its parameters are M, "):
        build_index(data[0], "hnsw", nprobe=3)


def test_a_query_of_the_wrong_shape_or_with_nan_is_one_clear_line(indexes):
    for index in indexes.values():
        with pytest.raises(ValueError, match=r"give one vector of shape \(50,\)"):
            index.search(np.ones(7), 3)
        with pytest.raises(ValueError, match="give finite numbers"):
            index.search(np.full(DIM, np.nan), 3)
        with pytest.raises(ValueError, match="k must be a whole number"):
            index.search(np.ones(DIM), 0)


def test_ivfpq_settings_that_do_not_fit_are_reported(data):
    with pytest.raises(ValueError, match="m must divide the embedding dimension 50"):
        build_index(data[0], "ivfpq", m=7)
    with pytest.raises(ValueError, match="lower nlist"):
        build_index(data[0][:100], "ivfpq", nlist=500)


def test_missing_faiss_says_how_to_install_it(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match="the hnsw index needs faiss: pip install faiss-cpu"):
        build_index(data[0], "hnsw")
    assert isinstance(build_index(data[0], "exact"), ExactIndex)  # exact never needs it


def test_approximate_indexes_refuse_an_empty_database():
    with pytest.raises(ValueError, match="use kind='exact' for an empty database"):
        build_index(np.zeros((0, 4), np.float32), "hnsw")
    rows, scores = build_index(np.zeros((0, 4), np.float32)).search(np.ones(4), 3)
    assert len(rows) == len(scores) == 0


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq", "milvus"])
def test_a_database_with_an_index_answers_queries_through_the_same_api(kind):
    dataset = tiny_dataset(n_images=300, seed=2)
    model = tiny_model(dataset)
    exact = ImageDatabase.build(model, dataset)
    approximate = use_index(ImageDatabase.build(model, dataset), kind)
    assert approximate.index.kind == kind and exact.index is None
    for text in ["a red boat", "a photo of a puppy", "green vehicle on the grass"]:
        results, expected = approximate.query(text, 5), exact.query(text, 5)
        assert [r["image_id"] for r in results] == [r["image_id"] for r in expected]
        assert [r["captions"] for r in results] == [r["captions"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in results],
                                   [r["score"] for r in expected], atol=1e-5)
    image_ids, scores = approximate.query_vector(exact.embeddings[7], 3)
    assert image_ids[0] == exact.image_ids[7] and scores[0] == pytest.approx(1, abs=1e-5)
    getattr(approximate.index, "close", lambda: None)()


# -- adding images without rebuilding ------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_images_added_to_a_database_are_found_on_every_index_kind(kind):
    dataset = tiny_dataset(n_images=400, seed=5)
    model = tiny_model(dataset)
    everything = ImageDatabase.build(model, dataset)
    first, later = dataset.image_ids[:300], dataset.image_ids[300:]
    db = use_index(ImageDatabase(first, everything.embeddings[:300], model, dataset), kind)
    index = db.index
    db.add(later, dataset.features[300:])
    assert db.index is index and len(db) == len(index) == 400  # the same index, grown
    np.testing.assert_array_equal(db.image_ids, everything.image_ids)
    np.testing.assert_allclose(db.embeddings, everything.embeddings, atol=1e-6)
    for row in range(300, 400, 7):  # each added image is its own nearest
        image_ids, scores = db.query_vector(everything.embeddings[row], 3)
        assert image_ids[0] == dataset.image_ids[row] and scores[0] == pytest.approx(1, abs=1e-5)
    for text in ["a red boat", "a photo of a puppy", "green vehicle on the grass"]:
        found, expected = db.query(text, 10), everything.query(text, 10)
        overlap = {r["image_id"] for r in found} & {r["image_id"] for r in expected}
        assert len(overlap) >= 9  # as if built with them (approximate kinds may miss one)
        assert all(r["captions"] == dataset.image_captions[r["image_id"]] for r in found)
    similar = db.similar(int(later[0]), 5, space="features")  # the added raw features count
    assert similar[0]["image_id"] == later[0] and similar[0]["score"] == pytest.approx(1)
    getattr(index, "close", lambda: None)()


@pytest.mark.parametrize("kind", KINDS)
def test_adding_an_image_already_there_is_refused_with_one_line_and_changes_nothing(kind):
    dataset = tiny_dataset(n_images=60, seed=6)
    model = tiny_model(dataset)
    db = use_index(ImageDatabase.build(model, dataset), kind,
                   **({"nlist": 4, "nbits": 4} if kind == "ivfpq" else {}))
    new = np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32)
    bad = [
        ([dataset.image_ids[3], 9001], new, "image_id 32 is already in this database"),
        ([9001, 9001], new, "image_id 9001 is already in this database or given twice"),
        ([9001.5, 9002], new, "image ids must be whole numbers"),
        (["9001", "9002"], new, "image ids must be whole numbers"),
        ([9001], new, r"1 ids but features of shape \(2, 512\)"),
        ([9001, 9002], new[:, :100], "features of 100 columns do not fit"),
        ([9001, 9002], new * np.nan, "finite features"),
    ]
    for image_ids, features, message in bad:
        with pytest.raises(ValueError, match=message) as error:
            db.add(image_ids, features)
        assert "\n" not in str(error.value)
        assert len(db) == len(db.index) == 60 and len(db.embeddings) == 60
    db.add(np.array([9001, 9002], dtype=np.int32), new)  # any integer type
    assert db.image_ids.dtype == np.int64 and db.row(9002) == 61 and len(db.index) == 62
    getattr(db.index, "close", lambda: None)()


def test_the_index_can_be_chosen_when_the_database_is_made(indexes, data):
    db = ImageDatabase(np.arange(N), data[0], model=None, index=build_index(data[0], "hnsw"))
    assert db.index.kind == "hnsw"
    with pytest.raises(ValueError, match="unknown index kind 'fast'"):
        use_index(ImageDatabase(np.arange(N), data[0], model=None), "fast")


def test_importing_the_indexes_does_not_import_faiss():
    code = "import sys, capstone.search.ann, capstone.course.database; print('faiss' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_a_search_leaves_faiss_thread_setting_as_it_was(indexes, data):
    import faiss

    before = faiss.omp_get_max_threads()
    for kind in ("hnsw", "ivfpq"):
        indexes[kind].search(data[1][0], K)
        assert faiss.omp_get_max_threads() == before


# -- python -m capstone add ------------------------------------------------------------------------
def test_the_add_command_keeps_added_images_for_later_searches_and_refuses_repeats(
        tmp_path, monkeypatch, capsys):
    import json
    import pickle

    from capstone.apps.cli import main
    from capstone.data.dataset import read_dataset
    from test_database import trained_sample

    folder, model_path = trained_sample()
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))  # the added images go here
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(folder))
    monkeypatch.setenv("CAPSTONE_MODEL", str(model_path))
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")
    dataset = read_dataset(folder, "coco")
    originals = [int(i) for i in dataset.image_ids[:3]]
    new_ids = np.array([10**9 + 1, 10**9 + 2, 10**9 + 3])  # copies of three images, new ids
    np.savez(tmp_path / "new.npz", image_ids=new_ids, features=dataset.features_of(originals))

    def run(*argv):
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    status, out, err = run("add", "--features", str(tmp_path / "new.npz"))
    assert status == 0 and out.startswith("added 3 images; the coco database now holds "
                                          f"{len(dataset.image_ids) + 3:,} (3 added")
    for original, copy in zip(originals, new_ids):  # a new process finds them: saved
        status, out, _ = run("similar", "--json", "--k", "2", str(copy))
        found = json.loads(out)
        assert [r["image_id"] for r in found] == [copy, original]
        assert found[1]["score"] == pytest.approx(1, abs=1e-5)
    # every image, added ones too (weak matches included: this small model finds none strong)
    status, out, _ = run("search", "--json", "--k", "400", "--min-score", "-1", "a photo")
    assert set(new_ids.tolist()) <= {r["image_id"] for r in json.loads(out)}

    status, out, err = run("add", "--features", str(tmp_path / "new.npz"))
    assert status == 2 and out == ""
    assert err == f"error: image_id {10**9 + 1} is already in this database or given twice; " \
                  "add each image once\n"
    np.savez(tmp_path / "floats.npz", image_ids=np.array([1.5]), features=np.ones((1, 512)))
    status, _, err = run("add", "--features", str(tmp_path / "floats.npz"))
    assert status == 2 and err.startswith("error: image ids must be whole numbers")
    status, _, err = run("add", "--features", str(tmp_path / "missing.npz"))
    assert status == 2 and err.startswith(f"error: no image features at {tmp_path}")
    assert err.count("\n") == 1

    course_format = {10**9 + 4: dataset.features_of([originals[0]]).reshape(1, 512)}
    with open(tmp_path / "more.pkl", "wb") as file:  # the course's features format
        pickle.dump(course_format, file)
    status, out, _ = run("add", "--features", str(tmp_path / "more.pkl"))
    assert status == 0 and "(4 added" in out

"""Untrusted files and hostile callers: non-finite features, damaged caches and models, a full
disk, paths that cannot be written, captions with no known word, FIFOs, killed writers."""

import errno
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_data import write_coco, write_features
from test_database import tiny_dataset, tiny_model

import capstone.data.paths
import capstone.files
import capstone.data.store
from capstone.ui import display
from capstone.apps.adapter import SearchAdapter
from capstone.apps.cli import json_text, main
from capstone.data.dataset import read_dataset
from capstone.data.paths import FEATURES_FILE
from capstone.data.store import load_features
from capstone.course.database import top_k
from capstone.search.database import SearchDatabase
from capstone.errors import DataError, DiskFullError
from capstone.data.glove import glove_cache_dir, load_glove, load_glove_file
from capstone.data.model import SearchModel
from capstone.files import atomic_write, remove_stale_temporaries
from capstone.sample import write_sample
from capstone.data.store import load_array_pickle
from capstone.course.text import TextEmbedder, unit_rows
from capstone.pipeline.training import train


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, as every other JSON reader does."""
    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def enospc(path):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


# -- 1. non-finite features ----------------------------------------------------------------------
def test_non_finite_feature_rows_are_images_without_features_with_one_line(tmp_path, capsys):
    features = write_coco(tmp_path, {i: [f"a red boat {i}"] for i in range(1, 9)}, range(1, 9))
    features[2][0, 5] = np.nan
    features[4] = np.full((1, 512), -np.inf, np.float32)
    features[6] = features[6].astype(np.float64)
    features[6][0, 0] = 1e300  # finite as float64, inf as float32
    write_features(tmp_path / FEATURES_FILE, features)
    for load in ("from the pickle", "from the cache"):
        dataset = read_dataset(tmp_path, "coco")
        assert dataset.image_ids.tolist() == [1, 3, 5, 7, 8], load
        assert dataset.missing_image_ids.tolist() == [2, 4, 6]
        assert np.isfinite(dataset.features).all()
        assert dataset.summary()["images_without_features"] == 3
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and "3 image(s) with non-finite features" in lines[0], load
        assert "image_id 2, 4, 6" in lines[0] and str(tmp_path / FEATURES_FILE) in lines[0]
    assert (tmp_path / "resnet18_features.npz").is_file()


@pytest.fixture(scope="module")
def nan_sample(tmp_path_factory):
    """A small generated sample whose features pickle has a NaN, an inf and an overflow row."""
    folder = write_sample(tmp_path_factory.mktemp("nan") / "data", seed=5, n_images=120)
    table = load_array_pickle(folder / FEATURES_FILE)
    bad = sorted(table)[3:6]
    table[bad[0]] = table[bad[0]].copy()
    table[bad[0]][0, 7] = np.nan
    table[bad[1]] = np.full((1, 512), np.inf, np.float32)
    table[bad[2]] = table[bad[2]].astype(np.float64)
    table[bad[2]][0, 0] = -1e300
    write_features(folder / FEATURES_FILE, table)
    return folder, bad, len(table) - 3


@pytest.fixture
def nan_env(nan_sample, tmp_path, monkeypatch):
    folder, bad, n_good = nan_sample
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(folder))
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CAPSTONE_MODEL", str(tmp_path / "model.npz"))
    return tmp_path / "model.npz", bad, n_good


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def test_a_nan_row_leaves_training_search_similar_and_tags_correct(nan_env, capsys):
    model_path, bad, n_good = nan_env
    status, out, err = run(capsys, "train", "--epochs", "3", "--out", str(model_path))
    summary = strict_json(out)
    # best_epoch may be 0: the default's text map starts from CCA, which 3 epochs need not beat
    assert status == 0 and summary["epochs_run"] == 3 and summary["triple_accuracy"] > 0.5
    assert any("3 image(s) with non-finite features" in line for line in err)

    status, out, _ = run(capsys, "search", "--json", "--k", "5", "a red boat")
    results = strict_json(out)
    assert status == 0 and len(results) == 5
    status, out, _ = run(capsys, "search", "--json", "--k", "100000", "a red boat")
    results = strict_json(out)
    assert len(results) == n_good and not {r["image_id"] for r in results} & set(bad)
    assert all(np.isfinite(r["score"]) for r in results)

    good_id = results[0]["image_id"]
    status, out, _ = run(capsys, "similar", "--json", "--k", "4", str(good_id))
    assert status == 0 and [r["image_id"] for r in strict_json(out)][0] == good_id
    assert len(strict_json(out)) == 4
    status, out, _ = run(capsys, "tags", "--json", "--n", "5", str(good_id))
    tags = strict_json(out)
    assert status == 0 and len(tags) == 5 and all(np.isfinite(t["score"]) for t in tags)
    status, _, err = run(capsys, "similar", str(bad[0]))
    assert status == 2 and len(err) == 1 and "is not in this database" in err[0]


def test_unit_rows_turns_nan_and_inf_rows_into_zero_rows_without_warnings():
    rows = np.array([[3, 4], [np.nan, 1], [np.inf, 1], [-np.inf, np.inf], [0, 0]], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unit = unit_rows(rows)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0, 0], [0, 0], [0, 0], [0, 0]])


scores_with_non_finite = hnp.arrays(
    np.float32, st.integers(1, 400),
    elements=st.one_of(st.floats(-1, 1, width=32), st.sampled_from([np.nan, np.inf, -np.inf])))


@settings(max_examples=150, deadline=None)
@given(scores=scores_with_non_finite, k=st.integers(1, 50))
def test_top_k_always_gives_min_k_n_with_non_finite_scores_last(scores, k):
    best = top_k(scores, k)
    assert len(best) == min(k, len(scores)) == len(set(best.tolist()))
    key = np.where(np.isfinite(scores), scores, -np.inf)
    np.testing.assert_array_equal(key[best], np.sort(key)[::-1][: len(best)])


def test_a_database_with_a_nan_row_answers_k_finite_scores_even_for_a_nan_query():
    dataset = tiny_dataset(n_images=12)
    model = tiny_model(dataset)
    embeddings = model.embed_images(dataset.features)
    embeddings[[2, 5]] = np.nan
    database = SearchDatabase(dataset.image_ids, embeddings, model, dataset)
    for vector in (embeddings[0], np.full(embeddings.shape[1], np.nan)):
        image_ids, scores = database.query_vector(vector, 12)
        assert len(image_ids) == 12 and np.isfinite(scores).all()
    results = database.similar(dataset.image_ids[0], 12)
    assert len(results) == 12 and all(np.isfinite(r["score"]) for r in results)


def test_the_command_line_prints_strict_json_with_null_for_non_finite_numbers():
    value = {"a": float("nan"), "b": [float("inf"), 1.5, (-np.inf, 2)], "c": np.float64("nan")}
    assert strict_json(json_text(value)) == {"a": None, "b": [None, 1.5, [None, 2]], "c": None}


@pytest.fixture(scope="module")
def adapter_model():
    dataset = tiny_dataset(n_images=24)
    text = TextEmbedder.fit(dataset.captions, load_glove("glove-50d"), "glove-50d")
    from capstone.course.image import ImageEmbedder

    return SearchModel(ImageEmbedder(512, 50, seed=3), text, {"dataset": "sample"})


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, 1e300])
def test_the_adapter_ranks_one_non_finite_descriptor_of_1000_last(adapter_model, bad_value):
    adapter = SearchAdapter(adapter_model)
    descriptors = np.random.default_rng(0).normal(size=(1000, 1, 512))
    descriptors[17, 0, 3] = bad_value
    image_ids = np.arange(1000) * 3 + 1
    embeddings = adapter.embed_images(descriptors)
    assert np.isfinite(embeddings).all() and not embeddings[17].any()
    np.testing.assert_allclose(np.linalg.norm(np.delete(embeddings, 17, 0), axis=1), 1, atol=1e-5)
    adapter.prepare_database(image_ids, descriptors)
    for query in ("a red boat", "", "xqzt blorf", "the of"):
        found = adapter.search(query, 10)
        assert len(found) == 10 == len(set(found)) and image_ids[17] not in found, query
    everything = adapter.search("a red boat", 1000)
    assert sorted(everything) == image_ids.tolist() and everything[-1] == image_ids[17]


# -- 2. damaged caches and models ----------------------------------------------------------------
def damaged_versions(blob: bytes) -> dict:
    return {"empty": b"", "cut short": blob[: len(blob) // 2], "garbage": b"\0" * len(blob)}


def test_a_damaged_features_cache_is_rebuilt(tmp_path):
    write_coco(tmp_path, {1: ["a"], 2: ["b"]}, feature_ids=[1, 2])
    image_ids, features = load_features(tmp_path / FEATURES_FILE)
    cache = tmp_path / "resnet18_features.npz"
    for kind, blob in damaged_versions(cache.read_bytes()).items():
        cache.write_bytes(blob)
        again_ids, again = load_features(tmp_path / FEATURES_FILE)
        np.testing.assert_array_equal(again_ids, image_ids)
        np.testing.assert_array_equal(again, features)
        with np.load(cache, allow_pickle=False) as arrays:  # written again, whole
            np.testing.assert_array_equal(arrays["features"], features), kind


def test_a_features_cache_with_one_changed_byte_is_rebuilt_saying_so(tmp_path, capsys):
    # 64 images: the features member is larger than zipfile's first read, so only the
    # checksum over the bytes read straight into the array can tell
    image_ids = list(range(1, 65))
    write_coco(tmp_path, {i: ["a"] for i in image_ids}, feature_ids=image_ids)
    _, features = load_features(tmp_path / FEATURES_FILE)
    cache = tmp_path / "resnet18_features.npz"
    blob = bytearray(cache.read_bytes())
    at = blob.find(features[40].tobytes())
    assert at > 0
    blob[at + 1] ^= 0x01  # a small change of one value: still finite, still in range
    cache.write_bytes(bytes(blob))
    capsys.readouterr()
    _, again = load_features(tmp_path / FEATURES_FILE)
    np.testing.assert_array_equal(again, features)
    assert "fails its checksum): rebuilt it from" in capsys.readouterr().err


def write_word2vec(path, words, vectors):
    rows = [f"{word} " + " ".join(f"{x:.6f}" for x in row) for word, row in zip(words, vectors)]
    path.write_text(f"{len(words)} {vectors.shape[1]}\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("name", ["vectors.npy", "words.json"])
def test_a_damaged_glove_cache_is_rebuilt(tmp_path, name):
    vectors = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    path = write_word2vec(tmp_path / "g.txt", ["a", "b", "c", "d"], vectors)
    load_glove_file(path)
    cached = glove_cache_dir(path) / name
    for kind, blob in damaged_versions(cached.read_bytes()).items():
        cached.write_bytes(blob)
        kv = load_glove_file(path)
        assert kv.index_to_key == ["a", "b", "c", "d"], kind
        np.testing.assert_allclose(kv.vectors, vectors, atol=1e-6)


def test_a_damaged_database_is_rebuilt(tmp_path):
    dataset = tiny_dataset(n_images=10)
    model = tiny_model(dataset)
    path = tmp_path / "db.npz"
    built = SearchDatabase.load_or_build(model, dataset, path=path)
    for kind, blob in damaged_versions(path.read_bytes()).items():
        path.write_bytes(blob)
        again = SearchDatabase.load_or_build(model, dataset, path=path)
        np.testing.assert_array_equal(again.embeddings, built.embeddings)
        assert SearchDatabase.load(path, model, dataset) is not None, kind  # saved whole again


def model_damages(arrays: dict) -> dict:
    info = json.loads(str(arrays["info"]))
    return {
        "info not JSON": {**arrays, "info": np.array("{not json")},
        "info without glove_name": {**arrays, "info": np.array(json.dumps({"dim": 50}))},
        "info names an unknown GloVe": {
            **arrays, "info": np.array(json.dumps({**info, "glove_name": "nope"}))},
        "no weight": {k: v for k, v in arrays.items() if k != "image_weight"},
        "weight of another shape": {**arrays, "image_weight": np.zeros((3, 3), np.float32)},
        "a text array of another kind": {**arrays, "text_n_captions": np.array("many")},
        "text of another dimension": {**arrays, "text_dim": np.int64(7)},
    }


def test_a_damaged_model_is_one_line_naming_the_file_and_the_fix(tmp_path, adapter_model, capsys):
    good = adapter_model.save(tmp_path / "good.npz")
    blobs = {kind: blob for kind, blob in damaged_versions(good.read_bytes()).items()}
    blobs["a pickle"] = pickle.dumps({"weight": [1, 2]})
    arrays = dict(np.load(good, allow_pickle=False))
    for kind, damaged in model_damages(arrays).items():
        np.savez(tmp_path / "any.npz", **damaged)
        blobs[kind] = (tmp_path / "any.npz").read_bytes()
    np.savez(tmp_path / "any.npz", info=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    blobs["an object array"] = (tmp_path / "any.npz").read_bytes()
    for kind, blob in blobs.items():
        path = tmp_path / "model.npz"
        path.write_bytes(blob)
        with pytest.raises(DataError) as error:
            SearchModel.load(path)
        message = str(error.value)
        assert str(path) in message and "python -m capstone train" in message, (kind, message)
        assert "\n" not in message and "allow_pickle" not in message, kind
        status, _, err = run(capsys, "search", "--model", str(path), "boat")
        assert status == 2 and len(err) == 1 and str(path) in err[0], (kind, err)


# -- 3. a full disk ------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))

    def fill(tmp):
        Path(tmp).write_bytes(b"half a file")
        raise enospc(tmp)

    for path, hint in ((tmp_path / "cache" / "db.npz", "set CAPSTONE_CACHE to another disk"),
                       (tmp_path / "elsewhere" / "m.npz", "write it to another disk")):
        with pytest.raises(DiskFullError) as error:
            atomic_write(path, fill)
        assert str(error.value) == (
            f"no space left on device writing {path}: free some space or {hint}")
        assert error.value.errno == errno.ENOSPC and os.listdir(path.parent) == []


def test_sample_generation_on_a_full_disk_removes_what_it_wrote(tmp_path, monkeypatch):
    real_save, saved = PIL.Image.Image.save, []

    def save(image, fp, *args, **kwargs):
        if len(saved) == 5:
            Path(fp).write_bytes(b"\x89PNG partial")
            raise enospc(fp)
        saved.append(fp)
        return real_save(image, fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image.Image, "save", save)
    with pytest.raises(DiskFullError, match="no space left on device writing .*COCO_sample_"):
        write_sample(tmp_path / "new", n_images=20)
    assert not (tmp_path / "new").exists()  # the folder it created is gone with its files
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    saved.clear()
    with pytest.raises(DiskFullError):
        write_sample(tmp_path / "mine", n_images=20)
    assert [p.name for p in (tmp_path / "mine").rglob("*")] == ["notes.txt"]


def test_train_out_on_a_full_disk_is_one_line_and_leaves_no_partial_file(nan_env, capsys,
                                                                           monkeypatch):
    out = nan_env[0].parent / "models" / "m.npz"
    real_savez = np.savez

    def savez(file, **arrays):
        if Path(file).name.startswith(".m."):
            Path(file).write_bytes(b"PK\x03\x04 partial")
            raise enospc(file)
        return real_savez(file, **arrays)

    monkeypatch.setattr(capstone.data.store.np, "savez", savez)
    status, out_text, err = run(capsys, "train", "--epochs", "2", "--out", str(out))
    # the error is one line; before it, at most the log's line per epoch (the default's CCA
    # start may not be beaten by an epoch, so the first write is the final one)
    assert status == 2 and out_text == "" and all(line.startswith("epoch ") for line in err[:-1])
    assert err[-1] == (f"error: no space left on device writing {out}: free some space or write "
                       "it to another disk")
    assert list(out.parent.iterdir()) == []


# -- 4. an --out that cannot be written is refused before training -------------------------------
@pytest.mark.parametrize("where", ["a folder", "under a file", "no permission"])
def test_an_unwritable_out_is_refused_before_any_batch(tmp_path, monkeypatch, where):
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "file").write_text("")
    out = {"a folder": tmp_path / "dir.npz", "under a file": tmp_path / "file" / "m.npz",
           "no permission": tmp_path / "locked" / "m.npz"}[where]
    if where == "no permission":  # as root a chmod does not stop writes: refuse as the OS would
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(capstone.files.tempfile, "mkstemp", refuse)
    batches = []
    with pytest.raises(DataError, match=f"cannot write {out}"):
        train(tiny_dataset(), out=out, epochs=1, plot=False, progress=False,
              on_batch=lambda *args: batches.append(args))
    assert batches == [] and not out.is_file()


def test_the_writability_check_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new" / "deeper" / "m.npz"
    assert capstone.files.check_writable(out) == out
    assert list(tmp_path.iterdir()) == []


# -- 5. captions with no known word ----------------------------------------------------------------
@pytest.mark.parametrize("caption", ["", "xqzt blorf", "!!"])
def test_training_on_captions_without_a_known_word_is_refused_before_any_batch(
    tmp_path, caption, capsys, monkeypatch
):
    import dataclasses

    dataset = tiny_dataset()
    dataset = dataclasses.replace(dataset, captions=[caption] * len(dataset.captions))
    batches = []
    with pytest.raises(ValueError, match="caption has a word GloVe knows"):
        train(dataset, out=tmp_path / "m.npz", epochs=1, plot=False, progress=False,
              on_batch=lambda *args: batches.append(args))
    assert batches == [] and not (tmp_path / "m.npz").exists()

    write_coco(tmp_path / "data", {i: [caption] * 2 for i in range(20)}, feature_ids=range(20))
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(tmp_path / "data"))
    status, out, err = run(capsys, "train", "--dataset", "coco", "--out", str(tmp_path / "m.npz"))
    assert status == 2 and out == "" and len(err) == 1 and "GloVe knows" in err[0]
    assert not (tmp_path / "m.npz").exists()


# -- 6. image urls that are not images -------------------------------------------------------------
def finishes(function, seconds=10.0):
    """``(finished, result)`` of ``function()`` run in a thread for at most ``seconds``."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), result[0] if result else None


def test_a_file_url_to_a_fifo_or_a_folder_returns_none_at_once(tmp_path):
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    assert finishes(lambda: display.load_image(fifo.as_uri())) == (True, None)
    assert display.load_image(tmp_path.as_uri()) is None


def test_images_beyond_the_size_cap_are_not_read(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    PIL.Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    assert display.load_image(path.as_uri()).size == (64, 64)
    monkeypatch.setattr(display, "MAX_IMAGE_BYTES", path.stat().st_size - 1)
    assert display.load_image(path.as_uri()) is None


class FakeResponse:
    def __init__(self, body: bytes, length=None):
        self.body, self.reads = body, []
        self.headers = {} if length is None else {"Content-Length": str(length)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size=-1):
        self.reads.append(size)
        return self.body if size < 0 else self.body[:size]


def test_downloads_beyond_the_size_cap_are_not_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path))
    monkeypatch.setattr(display, "MAX_IMAGE_BYTES", 1000)
    announced = FakeResponse(b"", length=10**12)
    monkeypatch.setattr(display.urllib.request, "urlopen", lambda *a, **k: announced)
    assert display.load_image("http://example.org/a.jpg") is None and announced.reads == []
    endless = FakeResponse(b"\xff" * 5000)  # no Content-Length: read at most the cap and one byte
    monkeypatch.setattr(display.urllib.request, "urlopen", lambda *a, **k: endless)
    assert display.load_image("http://example.org/b.jpg") is None and endless.reads == [1001]


# -- 7. temporaries of killed writers --------------------------------------------------------------
def test_the_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    writer = ("import sys, time\nfrom capstone.files import atomic_write\n"
              "def write(tmp):\n    open(tmp, 'wb').write(b'half')\n    print(tmp, flush=True)\n"
              "    time.sleep(120)\natomic_write(sys.argv[1], write)\n")
    process = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "m.npz")],
                               stdout=subprocess.PIPE, text=True)
    left = Path(process.stdout.readline().strip())
    process.kill()
    process.wait()
    process.stdout.close()
    assert left.is_file() and left.name == f".m.{process.pid}.tmp.npz"
    fresh_dead = tmp_path / f".other.{process.pid}.tmp.json"  # just written: maybe a live writer
    fresh_dead.write_text("{")                                # on another machine, kept a while
    alive = tmp_path / f".db.{os.getpid()}.tmp.npz"
    alive.write_text("")
    old = time.time() - capstone.files.STALE_SECONDS - 5
    for path in (left, alive):
        os.utime(path, (old, old))
    atomic_write(tmp_path / "next.json", lambda tmp: Path(tmp).write_text("{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh_dead.name, alive.name, "next.json"])
    os.utime(fresh_dead, (old, old))
    assert remove_stale_temporaries(tmp_path) == []  # each folder is swept once per process
    assert remove_stale_temporaries(tmp_path, force=True) == [fresh_dead]


# -- 8. clear errors or documented behaviour -------------------------------------------------------
def test_the_adapter_takes_a_str_as_one_caption(adapter_model):
    adapter = SearchAdapter(adapter_model)
    one = adapter.embed_text("a red boat")
    assert one.shape == (1, 50)
    np.testing.assert_array_equal(one, adapter.embed_text(["a red boat"]))


def test_the_adapter_takes_integer_k_and_refuses_anything_else_clearly(adapter_model):
    adapter = SearchAdapter(adapter_model)
    dataset = tiny_dataset(n_images=24)
    adapter.prepare_database(dataset.image_ids, dataset.features)
    assert adapter.search("boat", np.int64(3)) == adapter.search("boat", 3)
    assert len(adapter.search("boat", 3)) == 3
    for k in ("3", 3.0, None):
        with pytest.raises(TypeError, match=r"k must be an int, got"):
            adapter.search("boat", k)


def test_duplicate_ids_keep_their_first_descriptor(adapter_model):
    adapter = SearchAdapter(adapter_model)
    descriptors = np.random.default_rng(2).normal(size=(5, 512))
    adapter.prepare_database([7, 8, 7, 9, 8], descriptors)
    assert adapter.database.image_ids.tolist() == [7, 8, 9]
    np.testing.assert_allclose(adapter.database.embeddings,
                               adapter.embed_images(descriptors[[0, 1, 3]]), atol=1e-6)
    assert sorted(adapter.search("boat", 10)) == [7, 8, 9]
    with pytest.raises(ValueError, match="3 image ids but 5 descriptors"):
        adapter.prepare_database([1, 2, 3], descriptors)


# -- issue 20: what the bad-input corpus (test_bad_inputs.py) runs outside the command line -------
@pytest.mark.parametrize("changes", [
    {"temperature": 0}, {"temperature": -1}, {"temperature": float("nan")},
    {"margin": float("nan")}, {"margin": float("inf")}, {"margin": -0.1}, {"lr": 0},
    {"lr": float("inf")}, {"hidden": 10**9}, {"batch_size": 0}, {"epochs": 10**6},
    {"n_candidates": 10**6}, {"momentum": 1.5}, {"seed": -1}])
def test_settings_out_of_range_are_refused_naming_the_setting(changes):
    from capstone.course.train import resolve_settings

    (name, value), = changes.items()
    with pytest.raises(ValueError, match=rf"^{name} must be .* got {value}"):
        resolve_settings("default", **changes)
    assert resolve_settings("course").margin == 0.25  # the presets themselves are in range


def test_the_adapter_takes_one_descriptor_as_one_image_and_refuses_other_shapes(adapter_model):
    adapter = SearchAdapter(adapter_model)
    one = np.random.default_rng(1).normal(size=512)
    assert adapter.embed_images(one).shape == (1, 50)
    np.testing.assert_allclose(adapter.embed_images(one), adapter.embed_images(one[None]))
    for shape in [(512, 1), (3, 2, 512), (4, 256), (2,)]:
        with pytest.raises(ValueError, match=r"shape \(M, 512\)"):
            adapter.embed_images(np.zeros(shape))


def test_an_image_declaring_169_megapixels_is_not_decoded(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    PIL.Image.new("1", (13_000, 13_000)).save(path)  # about 20 kB on disk
    assert path.stat().st_size < 100_000
    decoded = []
    real_load = PIL.Image.Image.load
    monkeypatch.setattr(PIL.Image.Image, "load", lambda self: decoded.append(self) or real_load(self))
    assert display.load_image(path.as_uri()) is None and decoded == []
    small = tmp_path / "small.png"
    PIL.Image.new("RGB", (640, 480)).save(small)
    assert display.load_image(small.as_uri()).size == (640, 480)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254",
                                  "0.0.0.0", "app.localhost"])
def test_image_urls_on_this_machine_or_its_network_are_not_fetched(host, monkeypatch):
    asked = []
    monkeypatch.setattr(display.urllib.request, "urlopen", lambda *a, **k: asked.append(a))
    monkeypatch.setattr(display, "_unreachable_until", {})
    assert display.load_image(f"http://{host}:8000/a.jpg", cache=False) is None and asked == []
    assert not display._local_host("93.184.216.34")  # a public address is asked


def test_a_read_only_cache_searches_without_saving_the_database(nan_env, capsys, monkeypatch):
    model_path = nan_env[0]
    assert run(capsys, "train", "--epochs", "2", "--out", str(model_path))[0] == 0

    def read_only(path, arrays):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("capstone.search.database.write_npz", read_only)
    for _ in range(2):  # the second run builds it again
        status, out, err = run(capsys, "search", "--json", "--k", "3", "a red boat")
        assert status == 0 and len(strict_json(out)) == 3
        assert any("could not save the image database" in line for line in err), err


def test_cache_naming_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "file"))
    monkeypatch.setenv("CAPSTONE_DATASET", "sample")
    status, _, err = run(capsys, "search", "boat")
    assert status == 2 and len(err) == 1 and "CAPSTONE_CACHE" in err[0], err


def test_two_trainings_on_one_out_take_turns_and_report_their_own_model(nan_sample, tmp_path):
    folder = nan_sample[0]
    out = tmp_path / "shared.npz"
    env = {**os.environ, "CAPSTONE_DATA_DIR": str(folder), "CAPSTONE_DATASET": "coco",
           "CAPSTONE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path(__file__).parents[1])}
    runs = [subprocess.Popen([sys.executable, "-m", "capstone", "train", "--epochs", "2",
                              "--text-map", "none", "--seed", str(seed), "--out", str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)]
    finished = []
    for process in runs:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        finished.append((json.loads(stdout), stderr))
    checksums = [summary["checksum"] for summary, _ in finished]
    assert checksums[0] != checksums[1]
    waited = [summary for summary, stderr in finished if "waiting for it to finish" in stderr]
    assert len(waited) == 1  # it trained and saved after the other: the file is its model
    assert SearchModel.load(out).checksum == waited[0]["checksum"]
    assert not list(tmp_path.glob(".shared.npz.lock"))


@pytest.mark.parametrize("header", [b"1000000000 300", b"3 1000000000", b"-1 5", b"many words"])
def test_a_word2vec_header_declaring_more_than_the_file_is_one_line(tmp_path, header):
    from capstone.data.glove import parse_word2vec

    path = tmp_path / "vectors.w2v"
    path.write_bytes(header + b"\nthe 0.1 0.2 0.3\n")
    with pytest.raises(DataError, match=str(path)) as refused:
        parse_word2vec(path)
    assert "\n" not in str(refused.value)

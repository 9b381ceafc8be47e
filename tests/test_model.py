"""The image embedder and the saved model: seeding, unit embeddings, .npz round trip, errors."""

import json
import zipfile

import mygrad as mg
import numpy as np
import pytest
from test_triples import DATASET, GLOVE, TEXT

from capstone.errors import DataError, MissingFileError
from capstone.course.image import ImageEmbedder
from capstone.data.model import SearchModel, load_model


def test_image_embedder_is_a_seeded_glorot_normal_dense_layer():
    state = np.random.get_state()
    first, again, other = (ImageEmbedder(512, 50, seed=s) for s in (3, 3, 4))
    assert np.array_equal(first.dense.weight.data, again.dense.weight.data)
    assert not np.array_equal(first.dense.weight.data, other.dense.weight.data)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global state untouched
    weight, bias = first.parameters
    assert weight.shape == (512, 50) and not bias.data.any()
    assert weight.data.std() == pytest.approx(np.sqrt(2 / (512 + 50)), rel=0.05)
    assert abs(weight.data.mean()) < 0.002


def test_embed_gives_unit_rows_of_the_dense_layer():
    image = ImageEmbedder(512, 16, seed=0)
    image.dense.bias.data[...] = 0.5
    features = DATASET.features[:7]
    expected = (features @ image.dense.weight.data) + 0.5
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    embedded = image.embed(features)
    assert embedded.dtype == np.float32
    np.testing.assert_allclose(embedded, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(image(features).data, features @ image.dense.weight.data + 0.5,
                               rtol=1e-5)


def test_parameters_receive_gradients():
    image = ImageEmbedder(512, 16, seed=0)
    mg.sum(image(DATASET.features[:4])).backward()
    weight, bias = image.parameters
    np.testing.assert_allclose(bias.grad, np.full((1, 16), 4.0))
    np.testing.assert_allclose(weight.grad, np.tile(DATASET.features[:4].sum(0)[:, None], 16),
                               rtol=1e-4)


def make_model(seed=0):
    return SearchModel(ImageEmbedder(512, TEXT.dim, seed=seed), TEXT,
                       {"dataset": "synthetic", "settings": {"seed": seed}})


def test_save_load_round_trip_without_pickles(tmp_path):
    model = make_model(seed=2)
    path = model.save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as file:  # every array loads without pickle
        arrays = {name: file[name] for name in file.files}
    assert all(array.dtype != object for array in arrays.values())
    assert json.loads(str(arrays["info"]))["dataset"] == "synthetic"
    loaded = SearchModel.load(path, glove=GLOVE)
    assert loaded.checksum == model.checksum
    assert loaded.info == model.info
    np.testing.assert_array_equal(loaded.embed_images(DATASET.features),
                                  model.embed_images(DATASET.features))
    np.testing.assert_array_equal(loaded.embed_text(DATASET.captions[:20]),
                                  model.embed_text(DATASET.captions[:20]))
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed away


def test_checksum_follows_the_weights():
    model = make_model()
    before = model.checksum
    assert make_model().checksum == before
    model.image.dense.weight.data[0, 0] += 1e-3
    assert model.checksum != before


def test_mismatched_dimensions_are_refused():
    with pytest.raises(ValueError, match="d_out=text.dim"):
        SearchModel(ImageEmbedder(512, TEXT.dim + 1), TEXT)
    with pytest.raises(DataError, match="do not fit"):
        ImageEmbedder(512, 8).set_arrays({"weight": np.zeros((512, 9)), "bias": np.zeros(9)})


def test_a_file_of_the_wrong_kind_is_a_data_error(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    text_file = tmp_path / "notes.npz"
    text_file.write_text("not a zip")
    for path in (other, text_file):
        with pytest.raises(DataError, match="not a capstone model file"):
            SearchModel.load(path, glove=GLOVE)
    with pytest.raises(ValueError, match="must end in .npz"):
        make_model().save(tmp_path / "model.pkl")


def test_load_model_names_the_training_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path))
    with pytest.raises(MissingFileError, match="python -m capstone train --dataset sample"):
        load_model(dataset="sample")
    with pytest.raises(MissingFileError, match=r"--dataset coco --out .*elsewhere.npz"):
        load_model(tmp_path / "elsewhere.npz", dataset="coco")
    with pytest.raises(MissingFileError, match=r"python -m capstone train --out .*elsewhere.npz"):
        SearchModel.load(tmp_path / "elsewhere.npz")


def test_load_model_honours_capstone_model(tmp_path, monkeypatch):
    path = make_model(seed=5).save(tmp_path / "mine.npz")
    monkeypatch.setenv("CAPSTONE_MODEL", str(path))
    assert load_model(dataset=DATASET, glove=GLOVE).checksum == make_model(seed=5).checksum


def test_a_truncated_file_is_a_data_error(tmp_path):
    path = make_model().save(tmp_path / "model.npz")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    with zipfile.ZipFile(tmp_path / "partial.npz", "w") as partial:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                if name != "format.npy":
                    partial.writestr(name, archive.read(name))
    with pytest.raises(DataError, match="not a capstone model file"):
        SearchModel.load(tmp_path / "partial.npz", glove=GLOVE)

"""Going further: the MLP embedder, standardised features, the contrastive loss, the ridge
reference, SIF weighting, their command-line options, and old model files."""

import dataclasses
import json
from pathlib import Path

import mygrad as mg
import numpy as np
import pytest
from test_train import small_sample  # noqa: F401 (a fixture)
from test_triples import DATASET, GLOVE, TEXT

from capstone.apps.cli import main
from capstone.course.evaluate import evaluate
from capstone.further.embedders import (
    MLPEmbedder,
    Standardized,
    describe,
    embedder_from_arrays,
    feature_scaling,
    new_image_embedder,
)
from capstone.further.losses import candidate_columns, contrastive_loss, loss_for
from capstone.further.ridge import ridge_targets
from capstone.further.sif import SIFTextEmbedder, fit_text_weighted
from capstone.course.image import ImageEmbedder
from capstone.data.model import SearchModel
from capstone.course.text import TextEmbedder, tokenize
from capstone.course.train import PRESETS, Settings, unit
from capstone.pipeline.compare import compare, fit_ridge, untrained_like
from capstone.pipeline.training import train

# from a random start (the default's text map starts from CCA: tests/test_learned_text.py)
FAST = dict(text=TEXT, out=False, plot=False, progress=False, n_candidates=10, text_map="none")
OLD_MODEL = Path(__file__).parent / "data" / "model-before-further.npz"


# -- the MLP and standardised features -----------------------------------------------------------
def test_mlp_embeds_unit_rows_of_relu_layers_in_numpy_and_in_the_graph():
    image = MLPEmbedder(512, 16, hidden=32, seed=1)
    features = DATASET.features[:5]
    hidden = np.maximum(features @ image.hidden.weight.data + image.hidden.bias.data, 0)
    expected = hidden @ image.dense.weight.data + image.dense.bias.data
    np.testing.assert_allclose(image(features).data, expected, rtol=1e-4, atol=1e-5)
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(image.embed(features), unit, rtol=1e-4, atol=1e-5)
    assert image.shape == (512, 16) and len(image.parameters) == 4
    mg.sum(image(features)).backward()
    assert all(np.abs(p.grad).sum() > 0 for p in image.parameters)
    again = MLPEmbedder(512, 16, hidden=32, seed=1)
    assert np.array_equal(again.hidden.weight.data, image.hidden.weight.data)


def test_standardised_features_come_from_the_training_images_only():
    shifted = DATASET.features.copy()
    shifted[DATASET.rows(DATASET.val_image_ids)] += 100.0  # validation images far away
    dataset = dataclasses.replace(DATASET, features=shifted)
    image = new_image_embedder(Settings(standardize=True),
                               dataset.features_of(dataset.train_image_ids), TEXT.dim)
    train_features = dataset.features_of(dataset.train_image_ids)
    np.testing.assert_allclose(image.mean, train_features.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(image.std, train_features.std(0), rtol=1e-3)
    scaled = (dataset.features - image.mean) / image.std
    np.testing.assert_allclose(image.embed(dataset.features), image.inner.embed(scaled),
                               rtol=1e-4, atol=1e-5)
    constant = np.ones((4, 3), np.float32)
    assert feature_scaling(constant)[1].min() > 0  # a constant feature is not divided by zero


@pytest.mark.parametrize("settings", [Settings(embedder="mlp", hidden=8),
                                      Settings(embedder="mlp", hidden=8, standardize=True),
                                      Settings(embedder="linear", standardize=True)])
def test_every_embedder_saves_and_loads_with_the_same_embeddings(settings, tmp_path):
    image = new_image_embedder(settings, DATASET.features, TEXT.dim)
    model = SearchModel(image, TEXT, {"dataset": "synthetic"})
    loaded = SearchModel.load(model.save(tmp_path / "model.npz"), glove=GLOVE)
    assert type(loaded.image) is type(image) and loaded.checksum == model.checksum
    np.testing.assert_array_equal(loaded.embed_images(DATASET.features),
                                  model.embed_images(DATASET.features))
    with np.load(tmp_path / "model.npz") as file:
        assert ("image_mean" in file.files) == settings.standardize
        assert ("image_hidden_weight" in file.files) == (settings.embedder == "mlp")
    untrained = untrained_like(model)
    assert type(untrained.image) is type(image)
    if settings.standardize:
        assert np.array_equal(untrained.image.mean, image.mean)


def test_a_model_file_saved_before_these_options_still_loads():
    """``tests/data/model-before-further.npz`` was saved by the code before this module existed
    (``tiny_model(tiny_dataset(), seed=3)`` of ``test_database.py``, with its word vectors)."""
    from test_database import tiny_dataset, tiny_glove, tiny_model

    dataset = tiny_dataset()
    old = SearchModel.load(OLD_MODEL, glove=tiny_glove())
    same = tiny_model(dataset, seed=3)
    assert type(old.image) is ImageEmbedder and type(old.text) is TextEmbedder
    assert old.checksum == same.checksum  # the linear layer's file format did not change
    np.testing.assert_array_equal(old.embed_images(dataset.features),
                                  same.embed_images(dataset.features))
    np.testing.assert_array_equal(old.embed_query("red boat"), same.embed_query("red boat"))
    assert old.info["settings"]["optimizer"] == "adam" and "loss" not in old.info["settings"]


def test_shapes_that_do_not_fit_are_one_clear_error():
    arrays = MLPEmbedder(512, 16, hidden=8).get_arrays()
    arrays["hidden_bias"] = np.zeros(9, np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        embedder_from_arrays(arrays)
    with pytest.raises(ValueError, match="do not fit"):
        Standardized(ImageEmbedder(512, 16), np.zeros(3), np.ones(3))


# -- the contrastive loss ------------------------------------------------------------------------
def identity_embedder(d=2):
    image = ImageEmbedder(d, d, seed=0)
    image.dense.weight.data[...] = np.eye(d)
    return image


def unit_tensor(x):
    x = np.asarray(x, np.float32)
    return mg.tensor(x / np.linalg.norm(x, axis=1, keepdims=True))


def test_contrastive_loss_matches_a_hand_computation_and_masks_the_same_image():
    text = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    good = unit_tensor([[2.0, 0.0], [0.0, 3.0], [2.0, 0.0]])  # captions 0 and 2: one image
    bad = unit_tensor([[0.0, 3.0], [1.0, 1.0], [0.0, 3.0]])
    good_rows, bad_rows = np.array([0, 1, 0]), np.array([1, 2, 1])
    first, good_columns, bad_columns = candidate_columns(good_rows, bad_rows)
    assert len(first) == 3  # images 0, 1, 2: a repeated image is one candidate
    assert good_columns[0] == good_columns[2] and bad_columns[0] == good_columns[1]
    units = np.concatenate([good.data, bad.data])[first]
    logits = text @ units.T / 0.5  # (captions, candidate images)
    text_to_image = np.mean([np.log(np.exp(row).sum()) - row[column]
                             for row, column in zip(logits, good_columns)])
    own_captions = {good_columns[0]: [0, 2], good_columns[1]: [1]}  # the bad-only image has none
    image_to_text = np.mean([np.log(np.exp(logits[:, image]).sum()) - logits[captions, image].mean()
                             for image, captions in own_captions.items()])
    batch = (text, good, bad, good_rows, bad_rows)
    assert contrastive_loss(*batch, temperature=0.5).item() == pytest.approx(text_to_image, rel=1e-5)
    both = loss_for(Settings(loss="contrastive-both", temperature=0.5))(*batch)
    assert both.item() == pytest.approx((text_to_image + image_to_text) / 2, rel=1e-5)
    weighted = contrastive_loss(*batch, temperature=0.5, image_to_text=0.25)
    assert weighted.item() == pytest.approx(0.75 * text_to_image + 0.25 * image_to_text, rel=1e-5)


def test_contrastive_gradient_matches_finite_differences():
    image = ImageEmbedder(512, TEXT.dim, seed=2)
    rows = np.arange(24)
    good_rows, bad_rows = rows // 5, (rows // 5 + 7) % 60
    captions = TEXT.embed(DATASET.captions[:24])

    def loss():
        good, bad = (unit(image(DATASET.features[r])) for r in (good_rows, bad_rows))
        return contrastive_loss(captions, good, bad, good_rows, bad_rows, temperature=0.1)

    loss().backward()
    grad = image.dense.weight.grad.copy()
    row, column = np.unravel_index(np.abs(grad).argmax(), grad.shape)
    values = []
    for sign in (1, -1):
        image.dense.weight.data[row, column] += sign * 1e-2
        values.append(loss().item())
        image.dense.weight.data[row, column] -= sign * 1e-2
    assert (values[0] - values[1]) / 2e-2 == pytest.approx(grad[row, column], rel=0.05)


@pytest.mark.parametrize("changes", [
    dict(loss="contrastive", batch_size=64),
    dict(loss="contrastive-both", batch_size=64),
    # enough steps in 3 epochs, at a temperature that learns hard triples in so few
    dict(embedder="mlp", hidden=32, standardize=True, batch_size=32, temperature=0.05),
    dict(loss="margin", standardize=False, batch_size=32),
])
def test_other_losses_and_embedders_learn(changes):
    model, history = train(DATASET, epochs=3, **FAST, **changes)
    untrained = untrained_like(model)
    after, before = evaluate(model, DATASET, n_images=60), evaluate(untrained, DATASET, n_images=60)
    assert after["triple_accuracy"] > before["triple_accuracy"] + 0.15
    assert after["recall@10"] > before["recall@10"] + 0.2
    assert {key: model.info["settings"][key] for key in changes} == changes


def test_settings_refuse_unknown_embedders_and_losses():
    with pytest.raises(ValueError, match="embedder must be one of"):
        Settings(embedder="cnn")
    with pytest.raises(ValueError, match="loss must be one of"):
        Settings(loss="triplet")
    with pytest.raises(ValueError, match="hidden must be at least 1"):
        Settings(hidden=0)


def test_the_course_preset_keeps_the_courses_linear_margin_training():
    course = PRESETS["course"]
    assert (course.embedder, course.loss, course.standardize, course.batch_size) == (
        "linear", "margin", False, 32)
    assert loss_for(course) is None  # the margin ranking loss written in train_epoch


# -- the ridge reference -------------------------------------------------------------------------
def test_ridge_solves_its_normal_equations_on_the_training_images():
    model = fit_ridge(DATASET, TEXT, alpha=3.0)
    ids = DATASET.train_image_ids
    x = model.image.scale(DATASET.features_of(ids)).astype(np.float64)
    y = ridge_targets(DATASET, TEXT, ids).astype(np.float64)
    weight, bias = model.image.inner.dense.weight.data, model.image.inner.dense.bias.data[0]
    residual = x @ weight + bias - y
    gradient = x.T @ residual + 3.0 * weight  # of |XW + b - Y|^2 / 2 + alpha |W|^2 / 2
    assert np.abs(gradient).max() < 1e-3 * np.abs(x.T @ y).max()
    np.testing.assert_allclose(residual.mean(0), 0, atol=1e-5)  # the bias is the mean target
    norms = np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1, rtol=1e-5)  # unit mean caption embeddings
    assert model.info["settings"]["reference"] == "ridge"


def test_ridge_is_in_compare_and_beats_the_untrained_model():
    trained, _ = train(DATASET, epochs=2, **FAST)
    table = compare(DATASET, trained, n_images=50)
    assert list(table) == ["trained", "untrained", "ridge", "cca", "chance"]
    assert table["ridge"]["recall@10"] > table["untrained"]["recall@10"] + 0.3
    assert table["ridge"]["recall@10"] == evaluate(fit_ridge(DATASET, TEXT), DATASET,
                                                   n_images=50)["recall@10"]


# -- SIF -------------------------------------------------------------------------------------------
def test_sif_weights_are_a_over_a_plus_the_word_share_and_the_component_is_removed(tmp_path):
    captions = [c for c, keep in zip(DATASET.captions, DATASET.train_captions_mask) if keep]
    sif = SIFTextEmbedder.fit(captions, GLOVE, "synthetic", a=1e-2)
    tokens = [word for caption in captions for word in tokenize(caption)]
    for word in ("a", "boat", "grass"):
        share = tokens.count(word) / len(tokens)
        assert sif.weights_of([word])[0] == pytest.approx(1e-2 / (1e-2 + share), rel=1e-5)
    embedded = sif.embed(captions)
    np.testing.assert_allclose(embedded @ sif.component, 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(sif.component), 1, rtol=1e-5)
    by_hand = sum(sif.weights_of([w])[0] * GLOVE[w] for w in tokenize(captions[0]))
    by_hand -= (by_hand @ sif.component) * sif.component
    np.testing.assert_allclose(embedded[0], by_hand / np.linalg.norm(by_hand), atol=1e-5)
    model = SearchModel(ImageEmbedder(512, sif.dim), sif, {"dataset": "synthetic"})
    loaded = SearchModel.load(model.save(tmp_path / "sif.npz"), glove=GLOVE)
    assert isinstance(loaded.text, SIFTextEmbedder) and loaded.text.weighting == "sif"
    np.testing.assert_array_equal(loaded.embed_text(captions[:9]), embedded[:9])


def test_sif_is_not_fitted_by_the_idf_embedder():
    with pytest.raises(ValueError, match="weighting must be one of"):
        TextEmbedder.fit(DATASET.captions, GLOVE, "synthetic", weighting="sif")
    assert fit_text_weighted(DATASET, GLOVE, "mean").weighting == "mean"


# -- command line ----------------------------------------------------------------------------------
def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("flags, settings, kind", [
    (["--embedder", "mlp", "--hidden", "16"], {"embedder": "mlp", "hidden": 16},
     "mlp, standardised, text map"),
    (["--loss", "contrastive", "--temperature", "0.1", "--no-standardize"],
     {"loss": "contrastive", "temperature": 0.1, "standardize": False}, "linear, text map"),
    (["--preset", "margin", "--weighting", "sif"], {"loss": "margin", "optimizer": "adam"},
     "linear"),
])
def test_cli_trains_the_other_embedders_and_losses(flags, settings, kind, small_sample, tmp_path,
                                                   monkeypatch, capsys):
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(small_sample))
    out = tmp_path / "model.npz"
    status, stdout, _ = run(capsys, "train", "--dataset", "coco", "--epochs", "1", "--out",
                            str(out), *flags)
    assert status == 0
    summary = json.loads(stdout)
    model = SearchModel.load(out)
    assert summary["checksum"] == model.checksum
    assert {key: model.info["settings"][key] for key in settings} == settings
    assert describe(model.image) == kind
    assert isinstance(model.text, SIFTextEmbedder) == ("sif" in flags)


def test_cli_evaluate_compare_has_a_ridge_column(small_sample, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(small_sample))
    model = tmp_path / "model.npz"
    assert run(capsys, "train", "--dataset", "coco", "--epochs", "1", "--out", str(model))[0] == 0
    status, out, _ = run(capsys, "evaluate", "--dataset", "coco", "--model", str(model),
                         "--compare", "--json")
    table = json.loads(out)
    assert status == 0 and list(table) == ["trained", "untrained", "ridge", "cca", "chance"]
    assert table["ridge"]["recall@10"] > table["chance"]["recall@10"]
    assert table["cca"]["recall@10"] > table["chance"]["recall@10"]
    status, out, _ = run(capsys, "evaluate", "--dataset", "coco", "--model", str(model),
                         "--compare")
    assert out.splitlines()[0].split() == ["trained", "untrained", "ridge", "cca", "chance"]


def test_cli_refuses_a_bad_hidden_width_in_one_line(capsys):
    status, out, err = run(capsys, "train", "--embedder", "mlp", "--hidden", "0")
    assert status == 2 and out == "" and err.strip() == "error: hidden must be at least 1 and at most 16384, got 0"


# -- the comparison and the approximate-search trade-off -------------------------------------------
def test_compare_variants_trains_each_seed_and_adds_the_ridge_rows():
    from capstone.pipeline.compare import compare_variants, markdown

    variants = {"linear, margin": dict(loss="margin", batch_size=32, standardize=False),
                "sif": dict(weighting="sif", batch_size=64)}
    rows = compare_variants(DATASET, variants, seeds=(0, 1), glove=GLOVE, epochs=1,
                            n_candidates=10)
    assert list(rows) == ["ridge", "cca", "linear, margin", "ridge, sif", "sif"]
    assert len(rows["sif"]["per_seed"]["recall@1"]) == 2
    assert len(rows["ridge"]["per_seed"]["recall@1"]) == 1  # no seed: fitted once
    assert rows["ridge"]["recall@10"] == evaluate(fit_ridge(DATASET, TEXT), DATASET)["recall@10"]
    assert rows["sif"]["recall@1"] == pytest.approx(np.mean(rows["sif"]["per_seed"]["recall@1"]))
    table = markdown(rows).splitlines()
    assert table[0].startswith("| model | recall@1") and len(table) == 2 + 5
    assert "–" in table[4] and "–" not in table[2]  # a range where there are several seeds


class ExactIndex:
    """What an index of ``capstone.search.ann`` offers: ``search(vector, k) -> (rows, scores)``."""

    def __init__(self, data, kind, keep=1.0):
        self.data, self.keep = data, keep

    def search(self, vector, k):
        visible = int(self.keep * len(self.data))  # an approximate index sees part of the data
        scores = self.data[:visible] @ vector
        rows = np.argsort(-scores)[:k]
        return rows, scores[rows]


def test_the_tradeoff_measures_recall_against_the_exact_neighbours():
    from capstone.further.tradeoff import clustered_embeddings, measure_indexes, plot_tradeoff

    data, queries = clustered_embeddings(n=2000, dim=16, n_queries=30, n_clusters=20)
    assert np.allclose(np.linalg.norm(data, axis=1), 1) and queries.shape == (30, 16)

    def build(data, kind, keep=1.0):
        return ExactIndex(data, kind, keep)

    rows = measure_indexes(build, data, queries, ["exact", "half"], params={"half": {"keep": 0.5}})
    assert [row["kind"] for row in rows] == ["exact", "half"]
    assert rows[0]["recall"] == 1.0 and 0.3 < rows[1]["recall"] < 0.75  # about half are seen
    assert all(row["latency_ms"] > 0 for row in rows)
    figure = plot_tradeoff(rows)
    assert figure.axes[0].get_xscale() == "log"


def test_the_exact_neighbours_are_the_same_scored_in_chunks_and_the_data_is_float32():
    from capstone.further.tradeoff import clustered_embeddings, exact_neighbours

    data, queries = clustered_embeddings(n=3000, dim=8, n_queries=25, n_clusters=5, chunk=700)
    assert data.dtype == queries.dtype == np.float32 and data.shape == (3000, 8)
    assert np.allclose(np.linalg.norm(data, axis=1), 1, atol=1e-5)
    plain = np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(exact_neighbours(data, queries, 5, chunk=7), plain)


def test_the_tradeoff_plot_names_every_point_without_overlapping_names():
    from capstone.further.tradeoff import plot_labels, plot_tradeoff

    same = {"recall": 0.9, "latency_ms": 1.0, "build_s": 2.0}  # three points in one place
    rows = [{"kind": "exact", "recall": 1.0, "latency_ms": 3.0, "build_s": 0.0},
            {"kind": "a", **same}, {"kind": "b", **same}, {"kind": "c", **same}]
    figure = plot_tradeoff(rows)
    assert plot_labels(figure) == ["exact", "a", "b", "c"]
    figure.canvas.draw()
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(text) for text in figure.axes[0].texts]  # the text, no line
    assert len(boxes) == 4
    assert not any(one.overlaps(other) for i, one in enumerate(boxes) for other in boxes[i + 1:])


def test_the_default_preset_is_the_contrastive_loss_on_standardised_features():
    default = PRESETS["default"]
    assert (default.loss, default.standardize, default.embedder) == ("contrastive", True, "linear")
    assert (default.text_map, default.text_map_init) == ("linear", "cca")  # a learned text side
    assert PRESETS["margin"].loss == "margin" and not PRESETS["margin"].standardize


def test_the_tradeoff_measures_a_built_index_again_visiting_less():
    from capstone.further.tradeoff import (clustered_embeddings, measure_indexes, plot_labels,
                                           plot_tradeoff)

    data, queries = clustered_embeddings(n=2000, dim=16, n_queries=30, n_clusters=20)
    built = []

    def build(data, kind, keep=1.0):
        built.append(kind)
        return ExactIndex(data, kind, keep)

    rows = measure_indexes(build, data, queries, ["half"], params={"half": {"keep": 0.5}},
                           visit_less={"half": {"keep": 0.1}})
    assert built == ["half"] and [row["kind"] for row in rows] == ["half", "half, keep=0.1"]
    assert rows[1]["recall"] < rows[0]["recall"] and rows[1]["build_s"] == rows[0]["build_s"]
    assert plot_labels(plot_tradeoff(rows)) == ["half", "half, keep=0.1"]  # by recall, top first


# -- what the notebooks pass in to stay within a student's memory (issue 19) -----------------------
def test_given_caption_embeddings_and_no_calibration_train_and_compare_alike():
    from capstone.further.cca import cca_map

    embeddings = TEXT.embed(DATASET.captions)
    given, _ = train(DATASET, "margin", epochs=1, caption_embeddings=embeddings,
                     calibration=False, **FAST)
    made, _ = train(DATASET, "margin", epochs=1, **FAST)
    timed = {"seconds"}  # everything but the time taken is the same
    assert given.checksum == made.checksum
    assert ({k: v for k, v in given.info["metrics"].items() if k not in timed}
            == {k: v for k, v in made.info["metrics"].items() if k not in timed})
    assert "calibration" not in given.info and "calibration" in made.info
    np.testing.assert_array_equal(cca_map(DATASET, TEXT).text_map.data,
                                  cca_map(DATASET, TEXT, embeddings).text_map.data)
    assert compare(DATASET, given, caption_embeddings=embeddings) == compare(DATASET, given)

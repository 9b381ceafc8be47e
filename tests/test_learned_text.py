"""The learned text side (a linear map of se_text), the CCA reference, attribute precision and
the weak-match score calibrated at training time."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_train import small_sample  # noqa: F401 (a fixture)
from test_triples import DATASET, TEXT

from capstone.course.evaluate import (attribute_precision, attribute_queries, held_out_images,
                                      query_captions)
from capstone.course.image import ImageEmbedder
from capstone.course.text import se_text, unit_rows
from capstone.course.train import Settings
from capstone.pipeline.training import train
from capstone.data.model import SearchModel
from capstone.further.cca import cca_map, fit_cca
from capstone.further.textmap import MappedWordVectors, TwoTower
from capstone.pipeline.calibration import ImageWords, calibrate, isotonic, top_k


@pytest.fixture(scope="module")
def mapped():
    """A model trained with a learned text map, started from CCA."""
    model, _ = train(DATASET, epochs=3, text=TEXT, out=False, plot=False, progress=False,
                     text_map="linear", text_map_init="cca")
    return model


def test_the_mapped_word_vectors_are_se_text_then_the_map():
    weight = np.random.default_rng(0).normal(size=(TEXT.dim, TEXT.dim)).astype(np.float32)
    model = SearchModel(TwoTower(ImageEmbedder(512, TEXT.dim), weight), TEXT)
    idf = dict(zip(TEXT.vocab.tolist(), TEXT.idf.tolist()))
    for caption in ("A red boat on the water.", "picture of a green tree", "the sky"):
        plain = se_text(caption, TEXT.glove, idf, TEXT.n_captions)
        np.testing.assert_allclose(model.embed_query(caption), unit_rows(plain @ weight),
                                   atol=1e-5)
        np.testing.assert_allclose(model.plain_text.embed([caption])[0], plain, atol=1e-6)
    words = MappedWordVectors(TEXT.glove, weight)
    np.testing.assert_allclose(words["boat"], TEXT.glove["boat"] @ weight, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(words.vectors), TEXT.glove.vectors @ weight, rtol=1e-4)


def test_a_text_map_model_saves_and_loads_with_its_map(mapped, tmp_path):
    assert isinstance(mapped.image, TwoTower) and not np.allclose(
        mapped.image.text_map.data, np.eye(TEXT.dim))
    loaded = SearchModel.load(mapped.save(tmp_path / "m.npz"), glove=TEXT.glove)
    assert loaded.checksum == mapped.checksum
    texts = ["a red boat", "a blue car on the grass"]
    np.testing.assert_array_equal(loaded.embed_text(texts), mapped.embed_text(texts))
    np.testing.assert_array_equal(loaded.embed_images(DATASET.features[:5]),
                                  mapped.embed_images(DATASET.features[:5]))
    # the file keeps the unmapped word vectors: the map is applied once, when loading
    with np.load(tmp_path / "m.npz") as arrays:
        rows = [TEXT.glove.key_to_index[w] for w in arrays["text_vocab"].tolist()]
        np.testing.assert_array_equal(arrays["vocab_vectors"], TEXT.glove.vectors[rows])
    reloaded = SearchModel.load(tmp_path / "m.npz", glove=TEXT.glove)
    assert reloaded.checksum == mapped.checksum


def test_a_text_map_is_refused_with_the_margin_loss():
    with pytest.raises(ValueError, match="contrastive"):
        Settings(loss="margin", text_map="linear")
    with pytest.raises(ValueError, match="text_map must be one of"):
        Settings(text_map="mlp")
    assert Settings().text_map == "none"


def test_presets_course_and_class_keep_the_course_model():
    from capstone.course.train import PRESETS

    for name in ("course", "class", "margin"):
        assert PRESETS[name].text_map == "none" and PRESETS[name].loss == "margin"


def test_cca_makes_the_two_sides_correlate_as_it_says():
    ids = DATASET.train_image_ids
    rows = np.flatnonzero(DATASET.caption_mask(ids))
    captions = TEXT.embed([DATASET.captions[r] for r in rows])
    owners = np.searchsorted(ids, DATASET.caption_image_ids[rows])
    solution = fit_cca(DATASET.features, DATASET.rows(ids), captions, owners)
    x = (DATASET.features[DATASET.rows(DATASET.caption_image_ids[rows])] - solution["mean"])
    x = (x / solution["std"]) @ solution["image_weight"]
    y = captions @ solution["text_map"]
    n_concepts = 5  # the strongest directions (the concepts span 13 - 2 of them)
    corr = solution["correlations"]
    assert np.all(np.diff(corr) <= 1e-6) and corr[0] <= 1 + 1e-6
    for i in range(n_concepts):  # each pair of canonical directions correlates by corr[i]
        a, b = x[:, i], y[:, i]
        measured = (a @ b) / np.sqrt((a @ a) * (b @ b))
        assert measured == pytest.approx(corr[i], abs=0.05)
    assert corr[0] > 0.9  # the features are the concepts plus noise


def test_cca_model_beats_an_untrained_one_and_trained_map_keeps_up(mapped):
    from capstone.course.evaluate import evaluate

    closed = evaluate(SearchModel(cca_map(DATASET, TEXT), TEXT), DATASET)
    trained = mapped.info["metrics"]
    assert closed["recall@10"] > 0.5 and trained["recall@10"] > 0.5
    assert trained["attribute_precision@10"] >= closed["attribute_precision@10"] - 0.1


class SceneModel:
    """Embeds an image as its scene's (colour, kind) and background indicators, and a query as
    the indicators of what it names: a model that binds attributes perfectly."""

    def __init__(self, dataset, colour_blind=False):
        from test_triples import BACKGROUNDS, COLORS, KINDS

        self.slots = {(c, k): i for i, (c, k) in enumerate(
            (c, k) for c in COLORS for k in KINDS)}
        self.places = {b: len(self.slots) + i for i, b in enumerate(BACKGROUNDS)}
        self.colour_blind, self.colours, self.kinds = colour_blind, COLORS, KINDS
        self.by_feature = {f.tobytes(): dataset.scenes[int(i)]
                           for f, i in zip(dataset.features, dataset.image_ids)}

    def vector(self, pairs, background):
        v = np.zeros(len(self.slots) + len(self.places))
        for colour, kind in pairs:
            for c in (self.colours if self.colour_blind else [colour]):
                v[self.slots[c, kind]] = 1
        if background:
            v[self.places[background]] = 0.5
        return v

    def embed_images(self, features):
        scenes = [self.by_feature[f.tobytes()] for f in np.asarray(features, np.float32)]
        return unit_rows(np.array([self.vector([(o["color"], o["kind"]) for o in s["objects"]],
                                               s["background"]) for s in scenes]))

    def embed_query(self, query):
        words = query.split()
        colour, kind = words[1], words[2]
        background = next((w for w in words[3:] if w in self.places), None)
        return unit_rows(self.vector([(colour, kind)], background))


def test_attribute_precision_is_one_for_a_model_that_binds_and_counts_otherwise():
    ids = held_out_images(DATASET, 1000)
    perfect = attribute_precision(SceneModel(DATASET), DATASET, ids)
    assert perfect["mean"] == perfect["mean_pairs"] == perfect["mean_triples"] == 1.0
    held = set().union(*(attribute_queries(DATASET.scenes[int(i)]) for i in ids))
    assert set(perfect["per_query"]) == held and "a red boat on the water" in str(held)
    from capstone.course.evaluate import chance

    assert 0 < chance(DATASET)["attribute_precision@10"] < 0.4  # 10 n / N over min(10, n)
    blind = attribute_precision(SceneModel(DATASET, colour_blind=True), DATASET, ids)
    assert blind["mean_pairs"] < 1.0  # top 10s of one kind, every colour
    # one query by hand: hits in the top 10 over min(10, images that hold it)
    model = SceneModel(DATASET, colour_blind=True)
    query = "a red boat"
    images = model.embed_images(DATASET.features_of(ids))
    top = np.argsort(-(images @ model.embed_query(query)), kind="stable")[:10]
    holds = [any(o == {"kind": "boat", "color": "red"} for o in DATASET.scenes[int(i)]["objects"])
             for i in ids]
    assert blind["per_query"][query] == pytest.approx(
        sum(holds[i] for i in top) / min(10, sum(holds)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_isotonic_is_the_best_non_decreasing_fit(values):
    fitted = isotonic(values)
    assert np.all(np.diff(fitted) >= -1e-12)
    assert fitted.sum() == pytest.approx(sum(values))  # pooling keeps the total
    # no non-decreasing 0/1 step sequence fits better than it (least squares)
    values = np.asarray(values, float)
    best = min(((values - np.r_[np.zeros(i), np.ones(len(values) - i)]) ** 2).sum()
               for i in range(len(values) + 1))
    assert ((values - fitted) ** 2).sum() <= best + 1e-9


def test_training_calibrates_a_weak_score_that_the_file_keeps(mapped, tmp_path):
    calibration = mapped.info["calibration"]
    assert isinstance(calibration["weak_score"], float) and calibration["reached"]
    assert 0 <= calibration["share_weak"] < 1 and calibration["n_queries"] > 0
    loaded = SearchModel.load(mapped.save(tmp_path / "m.npz"), glove=TEXT.glove)
    assert loaded.info["calibration"] == calibration
    again = calibrate(mapped, DATASET.features, DATASET.image_ids,
                      *query_captions(DATASET, held_out_images(DATASET, 1000)),
                      ImageWords(DATASET.captions, DATASET.caption_image_ids, DATASET.scenes))
    assert again["weak_score"] == calibration["weak_score"]  # measured, and reproducible
    assert calibration["images"] == DATASET.n_images  # every image, as search searches them


def test_calibration_scores_the_images_a_chunk_at_a_time_as_one_search_would(mapped):
    queries = mapped.embed_text(["a red boat", "a green tree on the grass", "night"])
    scores = queries @ mapped.embed_images(DATASET.features).T
    for chunk in (7, 64, len(DATASET.features)):
        best, rows = top_k(mapped, queries, DATASET.features, 10, chunk)
        np.testing.assert_array_equal(rows, np.argsort(-scores, axis=1, kind="stable")[:, :10])
        np.testing.assert_allclose(best, np.take_along_axis(scores, rows, axis=1), rtol=1e-5)


def test_without_scenes_an_image_shows_the_words_of_its_captions():
    shows = ImageWords(["A red boat.", "two cats", "The boat, on water"], [5, 3, 5])
    assert shows[5] == {"a", "red", "boat", "the", "on", "water"} and shows[3] == {"two", "cats"}
    assert shows.used_words() == shows[5] | shows[3]


def test_a_change_that_rules_out_the_text_map_drops_it_or_starts_it_plainly():
    from capstone.course.train import resolve_settings

    base = Settings(text_map="linear", text_map_init="cca")
    assert resolve_settings(base, loss="margin").text_map == "none"
    assert resolve_settings(base, embedder="mlp").text_map_init == "identity"
    assert resolve_settings(base, standardize=False).text_map_init == "identity"
    assert resolve_settings(base, epochs=2).text_map_init == "cca"
    with pytest.raises(ValueError, match="contrastive"):
        resolve_settings(base, loss="margin", text_map="linear")


def test_a_model_saved_before_has_no_text_map_and_no_calibration():
    from test_further import OLD_MODEL
    from test_database import tiny_glove

    old = SearchModel.load(OLD_MODEL, glove=tiny_glove())
    assert "calibration" not in old.info and not hasattr(old.image, "text_map")
    assert old.plain_text is old.text


def test_cli_trains_a_text_map_and_keeps_it_and_the_calibration(small_sample, tmp_path,
                                                                 monkeypatch, capsys):
    import json

    from capstone.apps.cli import main

    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(small_sample))
    out = tmp_path / "model.npz"
    assert main(["train", "--dataset", "coco", "--epochs", "1", "--text-map", "linear",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "attribute_precision@10" in summary and "text_map" not in summary
    with np.load(out) as arrays:
        assert arrays["image_text_map"].shape == (50, 50)
        info = json.loads(str(arrays["info"]))
    assert info["settings"]["text_map"] == "linear"
    assert isinstance(info["calibration"]["weak_score"], float)
    assert main(["train", "--dataset", "coco", "--text-map", "linear", "--loss", "margin",
                 "--out", str(out)]) == 2
    assert "contrastive" in capsys.readouterr().err

"""Triples: split hygiene, bad != good, hard negatives harder than random, vectorised = looped.

Also home of the small synthetic problem the training and evaluation tests share: images whose
features encode a (kind, colour, background) scene, captions that name it, tiny word vectors.
"""

import dataclasses

import numpy as np
import pytest
from gensim.models import KeyedVectors
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone.data.dataset import Dataset
from capstone.course.text import TextEmbedder
from capstone.course.triples import (
    VALIDATION_SEED,
    Triples,
    draw_other,
    image_text_embeddings,
    make_triples,
    triple_accuracy,
    triple_metrics,
)

KINDS = ("boat", "house", "tree", "car", "ball", "fish")
COLORS = ("red", "blue", "green", "yellow")
BACKGROUNDS = ("grass", "sky", "water")
FILLERS = ("a", "the", "on", "of", "is", "with", "picture", "photo")


def synthetic_glove(dim=16, seed=0) -> KeyedVectors:
    """Random word vectors for the synthetic captions' words."""
    words = [*KINDS, *COLORS, *BACKGROUNDS, *FILLERS]
    glove = KeyedVectors(vector_size=dim)
    glove.add_vectors(words, np.random.default_rng(seed).normal(size=(len(words), dim)))
    return glove


def synthetic_dataset(n_images=300, seed=0, noise=0.5, train_fraction=0.8, split_seed=0):
    """Images whose 512-d features are a fixed mix of their scene's concepts plus noise."""
    rng = np.random.default_rng(seed)
    concepts = [*KINDS, *COLORS, *BACKGROUNDS]
    basis = np.random.default_rng(123).normal(size=(len(concepts), 512))
    image_ids = np.arange(1, n_images + 1, dtype=np.int64) * 7
    features, captions, owners, scenes, image_captions = [], [], [], {}, {}
    for image_id in image_ids.tolist():
        kind, color, background = (rng.choice(group) for group in (KINDS, COLORS, BACKGROUNDS))
        present = [concepts.index(word) for word in (kind, color, background)]
        features.append(basis[present].sum(axis=0) + noise * rng.normal(size=512))
        texts = [f"A {color} {kind} on the {background}.", f"the {kind} is {color}",
                 f"picture of a {color} {kind}", f"{background} with a {kind}",
                 f"a photo of a {kind}"]
        captions += texts
        owners += [image_id] * len(texts)
        image_captions[image_id] = texts
        scenes[image_id] = {"background": background, "objects": [{"kind": kind, "color": color}]}
    return Dataset(
        name="synthetic", image_ids=image_ids, features=np.asarray(features, np.float32),
        caption_ids=np.arange(len(captions), dtype=np.int64),
        caption_image_ids=np.asarray(owners, np.int64), captions=captions,
        urls={image_id: f"file:///{image_id}.png" for image_id in image_ids.tolist()},
        image_captions=image_captions, scenes=scenes, missing_image_ids=np.zeros(0, np.int64),
        n_captions_total=len(captions), glove_name="synthetic", train_fraction=train_fraction,
        seed=split_seed,
    )


def fitted_text(dataset, glove) -> TextEmbedder:
    """A text embedder fitted on the dataset's training captions."""
    captions = np.asarray(dataset.captions)[dataset.train_captions_mask].tolist()
    return TextEmbedder.fit(captions, glove, "synthetic")


DATASET = synthetic_dataset()
GLOVE = synthetic_glove()
TEXT = fitted_text(DATASET, GLOVE)
EMBEDDINGS = TEXT.embed(DATASET.captions)


def split_rows(dataset, split):
    image_ids = dataset.train_image_ids if split == "train" else dataset.val_image_ids
    return set(dataset.rows(image_ids).tolist())


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    split_seed=st.integers(0, 1000),
    train_fraction=st.floats(0.1, 0.9),
    negatives=st.sampled_from(["hard", "random"]),
)
def test_triples_never_leak_across_splits(seed, split_seed, train_fraction, negatives):
    dataset = dataclasses.replace(DATASET, train_fraction=train_fraction, seed=split_seed)
    for split in ("train", "validation"):
        triples = make_triples(dataset, EMBEDDINGS, split=split, negatives=negatives, seed=seed)
        rows = split_rows(dataset, split)
        assert set(triples.good_rows.tolist()) <= rows
        assert set(triples.bad_rows.tolist()) <= rows
        assert np.all(triples.bad_rows != triples.good_rows)
        # each caption is paired with its own image, and every caption of the split is used
        owners = dataset.caption_image_ids[triples.caption_rows]
        assert np.array_equal(dataset.image_ids[triples.good_rows], owners)
        assert set(triples.caption_rows.tolist()) == set(
            np.flatnonzero(dataset.caption_mask(dataset.image_ids[sorted(rows)])).tolist()
        )


@settings(max_examples=50, deadline=None)
@given(n_choices=st.integers(2, 30), seed=st.integers(0, 1000), size=st.integers(1, 10))
def test_draw_other_never_draws_the_good_one_and_covers_the_rest(n_choices, seed, size):
    rng = np.random.default_rng(seed)
    good = rng.integers(0, n_choices, size=200)
    draws = draw_other(good, n_choices, size, rng)
    assert draws.shape == (200, size)
    assert np.all(draws != good[:, None])
    assert draws.min() >= 0 and draws.max() < n_choices
    if n_choices <= 5:  # every other value shows up
        assert set(draws[good == good[0]].ravel().tolist()) == set(range(n_choices)) - {good[0]}


def test_hard_negatives_are_more_similar_than_random_ones():
    image_text = image_text_embeddings(
        DATASET.rows(DATASET.caption_image_ids), EMBEDDINGS, DATASET.n_images
    )
    similarity = {}
    for negatives in ("hard", "random"):
        triples = make_triples(DATASET, EMBEDDINGS, negatives=negatives, seed=1)
        similarity[negatives] = np.einsum(
            "nd,nd->n", EMBEDDINGS[triples.caption_rows], image_text[triples.bad_rows]
        ).mean()
    assert similarity["hard"] > similarity["random"] + 0.1


def test_hard_negative_is_the_best_of_its_candidates_as_a_loop_finds_it():
    # rebuild the candidates with the same generator calls and check the choice per caption
    triples = make_triples(DATASET, EMBEDDINGS, negatives="hard", n_candidates=7, seed=5)
    image_rows = DATASET.rows(DATASET.train_image_ids)
    good = np.searchsorted(image_rows, triples.good_rows)
    candidates = draw_other(good, len(image_rows), 7, np.random.default_rng(5))
    for i in range(0, len(triples), 37):
        text = EMBEDDINGS[triples.caption_rows[i]]
        means = []
        for position in candidates[i]:
            own = DATASET.caption_image_ids == DATASET.image_ids[image_rows[position]]
            mean = EMBEDDINGS[own].sum(axis=0)
            means.append(mean / np.linalg.norm(mean) @ text)
        assert triples.bad_rows[i] == image_rows[candidates[i][int(np.argmax(means))]]


def test_image_text_embeddings_are_unit_means_of_each_images_captions():
    owners = np.array([0, 2, 0, 2, 2])
    vectors = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    result = image_text_embeddings(owners, vectors, 3)
    for image, rows in ((0, [0, 2]), (2, [1, 3, 4])):
        mean = vectors[rows].mean(axis=0)
        np.testing.assert_allclose(result[image], mean / np.linalg.norm(mean), rtol=1e-5)
    assert not result[1].any()  # no captions: zero row


def test_validation_triples_are_fixed_and_training_triples_follow_the_seed():
    first = make_triples(DATASET, EMBEDDINGS, split="validation")
    again = make_triples(DATASET, EMBEDDINGS, split="validation")
    explicit = make_triples(DATASET, EMBEDDINGS, split="validation", seed=VALIDATION_SEED)
    for a, b in ((first, again), (first, explicit)):
        assert all(np.array_equal(x, y) for x, y in zip(dataclasses.astuple(a),
                                                        dataclasses.astuple(b)))
    seeded = [make_triples(DATASET, EMBEDDINGS, seed=3).bad_rows for _ in range(2)]
    assert np.array_equal(*seeded)
    assert not np.array_equal(seeded[0], make_triples(DATASET, EMBEDDINGS, seed=4).bad_rows)


def test_captions_without_known_words_make_no_triples():
    embeddings = EMBEDDINGS.copy()
    embeddings[:10] = 0
    triples = make_triples(DATASET, embeddings, negatives="random", seed=0)
    assert not np.isin(np.arange(10), triples.caption_rows).any()
    assert len(triples) == (DATASET.train_captions_mask[10:]).sum()


def test_shuffled_keeps_triples_together():
    triples = make_triples(DATASET, EMBEDDINGS, seed=0)
    shuffled = triples.shuffled(np.random.default_rng(0))
    before = set(zip(*map(np.ndarray.tolist, dataclasses.astuple(triples))))
    assert set(zip(*map(np.ndarray.tolist, dataclasses.astuple(shuffled)))) == before
    assert not np.array_equal(triples.caption_rows, shuffled.caption_rows)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "test"}, "split must be one of"),
        ({"negatives": "semi"}, "negatives must be one of"),
        ({"n_candidates": 0}, "n_candidates must be at least 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_triples(DATASET, EMBEDDINGS, **kwargs)


def test_caption_embeddings_must_match_the_captions():
    with pytest.raises(ValueError, match="one row per caption"):
        make_triples(DATASET, EMBEDDINGS[:-1])


def test_a_split_of_one_image_is_refused():
    tiny = synthetic_dataset(n_images=4, train_fraction=0.75)
    with pytest.raises(ValueError, match="at least 2 images"):
        make_triples(tiny, TEXT.embed(tiny.captions), split="validation")


def test_triple_metrics_match_a_hand_computation():
    # 2-d unit vectors: caption rows 0 and 1; images 0, 1, 2
    captions = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    images = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)
    triples = Triples(np.array([0, 1, 0]), np.array([0, 2, 1]), np.array([1, 1, 2]))
    # sim_good = [1, 1, 0.6], sim_bad = [0.6, 0.8, 0]; loss = max(0, 0.25 - (good - bad))
    expected_loss = np.mean([max(0, 0.25 - 0.4), max(0, 0.25 - 0.2), max(0, 0.25 - 0.6)])
    metrics = triple_metrics(images, captions, triples, margin=0.25)
    assert metrics["loss"] == pytest.approx(expected_loss)  # = 0.05 / 3
    assert metrics["accuracy"] == 1.0
    assert triple_accuracy([0.2, 0.5, 0.1], [0.3, 0.5, 0.0]) == pytest.approx(1 / 3)

"""``se_text``: IDF weights, unit embeddings, agreement with the course's per-caption code."""

import re
import string
from collections import Counter

import numpy as np
import pytest
from gensim.models import KeyedVectors
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone.course import text as text_module
from capstone.course import token_rows
from capstone.errors import DataError
from capstone.course.text import STOP_WORDS, TextEmbedder, tokenize

# A tiny GloVe whose vectors make hand-checked embeddings easy.
TINY_WORDS = ["a", "dog", "cat", "sleeps", "the", "boat", "ship"]
TINY_VECTORS = np.array(
    [
        [0, 0, 0, 1],  # a
        [1, 0, 0, 0],  # dog
        [0, 1, 0, 0],  # cat
        [0, 0, 1, 0],  # sleeps
        [1, 1, 1, 1],  # the
        [0, 0, 2, 0],  # boat
        [0, 3, 0, 0],  # ship: in GloVe, in no training caption
    ],
    dtype=np.float32,
)
# "runs" is not in the tiny GloVe; "a" and "dog" repeat within the first caption.
TINY_CAPTIONS = ["A dog, a DOG runs.", "a dog sleeps", "A cat sleeps!", "the boat"]
# Hand-computed: N = 4 captions; idf = log10(4 / captions containing the word).
TINY_IDF = {
    "a": 0.12493874,  # log10(4/3)
    "dog": 0.30103000,  # log10(4/2)
    "cat": 0.60205999,  # log10(4/1)
    "sleeps": 0.30103000,  # log10(4/2)
    "the": 0.60205999,  # log10(4/1)
    "boat": 0.60205999,  # log10(4/1)
}


def make_glove(words, vectors) -> KeyedVectors:
    glove = KeyedVectors(vector_size=vectors.shape[1])
    glove.add_vectors(list(words), vectors)
    return glove


@pytest.fixture(scope="module")
def tiny_glove():
    return make_glove(TINY_WORDS, TINY_VECTORS)


@pytest.fixture(scope="module")
def tiny(tiny_glove):
    return TextEmbedder.fit(TINY_CAPTIONS, tiny_glove, "tiny")


@pytest.fixture(scope="module")
def glove():
    from capstone.data.glove import load_glove

    return load_glove("glove-50d")


def unit(vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


# -- the course's code, one caption at a time (the reference) ----------------------------------
punc_regex = re.compile("[{}]".format(re.escape(string.punctuation)))


def reference_tokenize(text):
    return punc_regex.sub("", text).lower().split()


def reference_idf(captions):
    counter = Counter()
    for caption in captions:
        counter.update(set(reference_tokenize(caption)))
    return {word: np.log10(len(captions) / count) for word, count in counter.items()}


def reference_se_text(text, idf, glove, unseen_idf):
    vectors = [idf.get(w, unseen_idf) * glove[w] for w in reference_tokenize(text) if w in glove]
    total = sum(vectors, np.zeros(glove.vector_size))
    norm = np.linalg.norm(total)
    return total / norm if norm > 0 else total


WORDS = ["a", "dog", "Dog's", "frisbee!", "THE", "boat,", "xqzt", "CAFÉ", "Über", "...", "-"]
captions = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), st.text(max_size=30)
)


# -- tokenize ----------------------------------------------------------------------------------
def test_tokenize_lower_cases_strips_punctuation_and_splits_on_whitespace():
    assert tokenize("A dog's  Frisbee,\tcaught!\n") == ["a", "dogs", "frisbee", "caught"]
    assert tokenize("...!?") == []


@given(st.text())
def test_tokenize_matches_the_course_regex(text):
    assert tokenize(text) == reference_tokenize(text)


# -- IDF ---------------------------------------------------------------------------------------
def test_idf_on_a_hand_checked_corpus(tiny):
    assert sorted(tiny.vocab) == sorted(TINY_IDF)  # "runs" is not in GloVe
    assert tiny.n_captions == 4
    for word, idf in zip(tiny.vocab, tiny.idf):
        assert idf == pytest.approx(TINY_IDF[word], abs=1e-6)
    assert tiny.idf.dtype == np.float32 and tiny.vocab.dtype.kind == "U"


def test_a_glove_word_unseen_in_training_gets_the_largest_idf(tiny):
    assert tiny.weights_of(["ship"])[0] == pytest.approx(np.log10(4))
    assert tiny.weights_of(["ship"])[0] >= tiny.idf.max()
    expected = unit(0.30103 * TINY_VECTORS[1] + np.log10(4) * TINY_VECTORS[6])  # dog + ship
    np.testing.assert_allclose(tiny.embed_query("dog ship"), expected, atol=1e-6)


def test_weights_of_words_outside_glove_are_zero(tiny):
    np.testing.assert_allclose(tiny.weights_of(["runs", "dog"]), [0.0, 0.30103], atol=1e-6)


def test_embedding_is_the_idf_weighted_sum_of_vectors_made_unit(tiny):
    # dog (0.30103) + cat (0.60206) = [1, 2, 0, 0] / sqrt(5); "runs" adds nothing
    expected = [0.4472136, 0.8944272, 0, 0]
    np.testing.assert_allclose(tiny.embed_query("Dog, cat runs"), expected, atol=1e-6)


def test_a_repeated_word_counts_each_time(tiny):
    # 2 x dog (0.30103) + cat (0.60206) = [1, 1, 0, 0] / sqrt(2)
    expected = [0.7071068, 0.7071068, 0, 0]
    np.testing.assert_allclose(tiny.embed_query("dog cat dog"), expected, atol=1e-6)


def test_fit_needs_captions(tiny_glove):
    with pytest.raises(ValueError, match="at least one caption"):
        TextEmbedder.fit([], tiny_glove, "tiny")


def test_unknown_weighting_is_refused(tiny_glove):
    with pytest.raises(ValueError, match="weighting"):
        TextEmbedder.fit(TINY_CAPTIONS, tiny_glove, "tiny", weighting="tfidf")


# -- embed -------------------------------------------------------------------------------------
def test_embed_shape_dtype_and_zero_rows(tiny):
    texts = ["a dog", "", "?!...", "xqzt blorp", "runs", "The boat."]
    embeddings = tiny.embed(texts)
    assert embeddings.shape == (6, 4) and embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings[1:5], 0.0)
    np.testing.assert_allclose(np.linalg.norm(embeddings[[0, 5]], axis=1), 1.0, atol=1e-6)
    assert tiny.embed([]).shape == (0, 4) and tiny.embed([]).dtype == np.float32


def test_embed_refuses_a_single_string(tiny):
    with pytest.raises(TypeError, match="list of texts"):
        tiny.embed("a dog")


@settings(max_examples=60, deadline=None)
@given(st.lists(captions, max_size=8))
def test_rows_are_unit_or_zero_never_nan(tiny, texts):
    embeddings = tiny.embed(texts)
    assert embeddings.shape == (len(texts), 4) and embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    norms = np.linalg.norm(embeddings, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS + TINY_WORDS), min_size=1, max_size=10), st.randoms())
def test_word_order_does_not_matter(tiny, words, random):
    shuffled = random.sample(words, len(words))
    np.testing.assert_allclose(
        tiny.embed([" ".join(words)]), tiny.embed([" ".join(shuffled)]), atol=1e-6
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(captions, max_size=8))
def test_a_batch_equals_one_text_at_a_time(tiny, texts):
    one_at_a_time = [tiny.embed([text])[0] for text in texts]
    np.testing.assert_allclose(tiny.embed(texts), np.reshape(one_at_a_time, (-1, 4)), atol=1e-6)


def test_batches_split_into_chunks_give_the_same_rows(tiny, monkeypatch):
    texts = ["a dog", "", "cat sleeps", "xqzt", "the boat", "ship", "dog\x00 cat"]
    whole = tiny.embed(texts)
    monkeypatch.setattr(token_rows, "CHUNK", 2)
    np.testing.assert_array_equal(tiny.embed(texts), whole)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 99), max_size=40), st.sampled_from([100, 10_000]))
def test_used_rows_lists_each_row_once_and_maps_every_token_to_it(rows, n_rows):
    # both ways: over 6 tokens of 100 rows take the pass over all rows, fewer the sort
    rows = np.array(rows, dtype=np.int64)
    used_rows, columns = token_rows.used_rows(rows, n_rows)
    np.testing.assert_array_equal(used_rows, sorted(set(rows.tolist())))
    np.testing.assert_array_equal(used_rows[columns], rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(captions, min_size=1, max_size=6), st.lists(captions, max_size=6))
def test_agrees_with_the_course_per_caption_code(glove, train, queries):
    embedder = TextEmbedder.fit(train, glove, "glove-50d")
    idf = reference_idf(train)
    assert set(embedder.vocab) == {word for word in idf if word in glove}
    expected_idf = [idf[word] for word in embedder.vocab]
    np.testing.assert_allclose(embedder.weights_of(embedder.vocab), expected_idf, atol=1e-6)
    texts = train + queries
    expected = [reference_se_text(text, idf, glove, np.log10(len(train))) for text in texts]
    np.testing.assert_allclose(embedder.embed(texts), np.reshape(expected, (-1, 50)), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.lists(captions, min_size=1, max_size=6), st.lists(captions, max_size=6))
def test_the_readable_se_text_is_the_fast_embedders_reference(glove, train, queries):
    idf = text_module.idf_weights(train)
    assert idf == pytest.approx(reference_idf(train))
    embedder = TextEmbedder.fit(train, glove, "glove-50d")
    texts = train + queries
    readable = [text_module.se_text(text, glove, idf, len(train)) for text in texts]
    np.testing.assert_allclose(embedder.embed(texts), np.reshape(readable, (-1, 50)), atol=1e-5)


def test_non_ascii_surrogate_and_separator_characters_are_handled_as_the_course_does(glove):
    train = ["a dog on a boat", "two cats"]
    embedder = TextEmbedder.fit(train, glove, "glove-50d")
    idf = reference_idf(train)
    texts = ["\ud800 dog", "dog\x00", "\x00", "cat \x00 boat", "A CAFÉ, JALAPEÑO!", "Über dog"]
    expected = [reference_se_text(t, idf, glove, np.log10(2)) for t in texts]
    np.testing.assert_allclose(embedder.embed(texts), expected, atol=1e-5)


# -- queries and words -------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["xqzt", "", "  ", "?!...", "runs"])
def test_embed_query_names_a_query_without_known_words(tiny, query):
    with pytest.raises(ValueError, match=f"no known words in query {re.escape(repr(query))}"):
        tiny.embed_query(query)


def test_embed_query_is_a_unit_float32_vector(tiny):
    vector = tiny.embed_query("Cat.")
    assert vector.shape == (4,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector, [0, 1, 0, 0], atol=1e-6)


def test_words_not_in_glove_weigh_nothing(tiny):
    words = tokenize("The DOG runs after a ship!")
    assert [w for w, weight in zip(words, tiny.weights_of(words)) if weight > 0] == [
        "the", "dog", "a", "ship"]


# -- weighting and stop words ------------------------------------------------------------------
def test_mean_weighting_is_the_plain_mean_made_unit(tiny_glove):
    embedder = TextEmbedder.fit(TINY_CAPTIONS, tiny_glove, "tiny", weighting="mean")
    expected = [0.7071068, 0.7071068, 0, 0]
    np.testing.assert_allclose(embedder.embed_query("dog cat"), expected, atol=1e-6)
    # a repeated word still counts each time: (2 dog + cat) / 3, made unit
    np.testing.assert_allclose(embedder.embed_query("dog dog cat"), unit([2, 1, 0, 0]), atol=1e-6)
    np.testing.assert_allclose(embedder.weights_of(["dog", "ship", "runs"]), [1, 1, 0])


def test_stop_words_are_dropped(tiny_glove):
    embedder = TextEmbedder.fit(TINY_CAPTIONS, tiny_glove, "tiny", stop_words=True)
    np.testing.assert_array_equal(embedder.embed(["the dog"]), embedder.embed(["dog"]))
    np.testing.assert_array_equal(embedder.weights_of(["the", "a", "and"]), [0, 0, 0])
    assert embedder.weights_of(["dog"])[0] > 0
    with pytest.raises(ValueError, match="no known words in query 'The a'"):
        embedder.embed_query("The a")
    with_stop_words = TextEmbedder.fit(TINY_CAPTIONS, tiny_glove, "tiny")
    assert not np.allclose(with_stop_words.embed(["the dog"]), with_stop_words.embed(["dog"]))


def test_the_stop_word_list_is_a_list_of_tokens():
    assert 100 <= len(STOP_WORDS) <= 250
    assert {"the", "a", "of", "and", "is"} <= STOP_WORDS
    assert not {"dog", "man", "two", "red"} & STOP_WORDS
    assert all(tokenize(word) == [word] for word in STOP_WORDS)


# -- saving ------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting, stop_words", [("idf", False), ("mean", True)])
def test_to_arrays_from_arrays_round_trip_through_npz(tiny_glove, tmp_path, weighting, stop_words):
    embedder = TextEmbedder.fit(TINY_CAPTIONS, tiny_glove, "tiny", weighting=weighting,
                                stop_words=stop_words)
    arrays = embedder.to_arrays()
    assert all(np.asarray(value).dtype != object for value in arrays.values())
    np.savez(tmp_path / "text.npz", **arrays)
    with np.load(tmp_path / "text.npz", allow_pickle=False) as saved:
        loaded = TextEmbedder.from_arrays(dict(saved), tiny_glove)
    settings_ = (loaded.glove_name, loaded.dim, loaded.weighting, loaded.stop_words)
    assert settings_ == ("tiny", 4, weighting, stop_words) and loaded.n_captions == 4
    np.testing.assert_array_equal(loaded.vocab, embedder.vocab)
    np.testing.assert_array_equal(loaded.idf, embedder.idf)
    texts = ["a dog", "the ship", "cat sleeps on a boat", "xqzt"]
    np.testing.assert_array_equal(loaded.embed(texts), embedder.embed(texts))


def test_from_arrays_refuses_glove_of_another_dimension(tiny, tiny_glove):
    other = make_glove(TINY_WORDS, np.ones((len(TINY_WORDS), 3), np.float32))
    with pytest.raises(DataError, match=r"4-d GloVe 'tiny'.*3-d.*load_glove\('tiny'\)"):
        TextEmbedder.from_arrays(tiny.to_arrays(), other)


def test_from_arrays_refuses_glove_without_the_vocabulary(tiny):
    other = make_glove(["dog", "zebra"], np.ones((2, 4), np.float32))
    with pytest.raises(DataError, match="not in the given GloVe.*'tiny'"):
        TextEmbedder.from_arrays(tiny.to_arrays(), other)


def test_from_arrays_names_missing_arrays(tiny, tiny_glove):
    arrays = tiny.to_arrays()
    del arrays["idf"]
    with pytest.raises(DataError, match="idf"):
        TextEmbedder.from_arrays(arrays, tiny_glove)

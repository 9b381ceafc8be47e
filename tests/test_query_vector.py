"""One path from caption to result: a typed query's vector is built from ``se_text``'s own terms.

A plain query's vector is ``se_text`` of its text (the readable definition and the model's
embedder), and its results are the database's top cosines with that vector; a weighted query
(``2:word``, ``-word``) is the weighted sum of its words' ``se_text`` terms, at unit length.
"""

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_triples import BACKGROUNDS, COLORS, DATASET, FILLERS, GLOVE, KINDS, TEXT

from capstone.course.image import ImageEmbedder
from capstone.course.text import se_text, tokenize
from capstone.data.model import SearchModel
from capstone.search.database import SearchDatabase

MODEL = SearchModel(ImageEmbedder(DATASET.features.shape[1], TEXT.dim, seed=0), TEXT)
DB = SearchDatabase.build(MODEL, DATASET)
IDF = dict(zip(TEXT.vocab.tolist(), TEXT.idf.tolist()))
WORDS = [*KINDS, *COLORS, *BACKGROUNDS, *FILLERS, "zebra", "Boat!"]  # "zebra": not in GloVe
MULTIPLIERS = st.sampled_from([1.0, 2.0, 0.5, -1.0, 3.0])


def term(word: str) -> np.ndarray:
    """``se_text``'s term of one word, as the readable definition adds it."""
    if word not in GLOVE.key_to_index:
        return np.zeros(GLOVE.vector_size)
    return IDF.get(word, math.log10(TEXT.n_captions)) * np.asarray(GLOVE[word], np.float64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))
def test_a_plain_query_is_se_text_of_its_text(words):
    text = " ".join(words)
    expected = se_text(text, GLOVE, IDF, TEXT.n_captions)
    assume(np.linalg.norm(sum(term(w) for w in tokenize(text))) > 1e-6)
    found = DB.search(text, k=5, correct=False)
    np.testing.assert_allclose(found.query.vector, expected, atol=1e-5)
    np.testing.assert_allclose(found.query.vector, MODEL.embed_query(text), atol=1e-5)
    scores = DB.embeddings @ expected
    assert [r["image_id"] for r in found.results] == DB.query_vector(expected, 5)[0].tolist()
    np.testing.assert_allclose([r["score"] for r in found.results], np.sort(scores)[::-1][:5],
                               atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([*KINDS, *COLORS, *BACKGROUNDS, "the"]), MULTIPLIERS),
                min_size=1, max_size=6))
def test_a_weighted_query_is_the_weighted_sum_of_its_words_terms(weighted):
    text = " ".join(f"-{word}" if m == -1 else f"{m:g}:{word}" for word, m in weighted)
    raw = sum(m * term(word) for word, m in weighted)
    assume(np.linalg.norm(raw) > 1e-3)
    query = DB.search(text, k=3, correct=False).query
    np.testing.assert_allclose(query.raw, raw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(query.vector, raw / np.linalg.norm(raw), atol=1e-5)

"""SIF text weighting ("smooth inverse frequency", Arora, Liang and Ma, 2017).

A caption becomes the weighted sum of its words' GloVe vectors, like ``se_text``, but with

    weight(word) = a / (a + p(word)),     p = the word's share of all training-caption tokens

(common words weigh little, rare ones about 1), and then the direction common to all captions,
the first principal component ``u`` of the training captions' embeddings, is removed:
``v - (v . u) u``, before scaling to unit length. A word no training caption used has ``p = 0``
and weighs 1, so a query may still use it.

:class:`SIFTextEmbedder` is a :class:`capstone.course.text.TextEmbedder` (``weighting="sif"``; its
weights sit where the IDF would): models that use it save and load like any other.
"""

from __future__ import annotations

import numpy as np

from capstone.course.text import TextEmbedder, ascii_texts, unit_rows
from capstone.course.token_rows import RowLookup, chunks, token_rows

A = 1e-3  # the paper's range is 1e-4 to 1e-3
WEIGHTINGS = ("idf", "mean", "sif")  # what fit_text_weighted accepts
CHUNK = 8192  # caption embeddings summed at a time in float64


class SIFTextEmbedder(TextEmbedder):
    """``se_text`` with SIF weights and the common component removed.

    Parameters
    ----------
    glove, glove_name, vocab, n_captions, stop_words
        As for :class:`~capstone.course.text.TextEmbedder`.
    idf : array of shape (n_words,)
        The SIF weight ``a / (a + p(word))`` of each word of ``vocab``.
    component : array of shape (D,), optional
        The unit direction removed from every embedding (default: none).
    """

    weightings = ("sif",)

    def __init__(self, glove, glove_name, vocab, idf, n_captions, *, weighting="sif",
                 stop_words=False, component=None):
        super().__init__(glove, glove_name, vocab, idf, n_captions, weighting=weighting,
                         stop_words=stop_words)
        dim = self.dim
        self.component = (np.zeros(dim, np.float32) if component is None
                          else np.asarray(component, dtype=np.float32).reshape(dim))

    @classmethod
    def fit(cls, captions, glove, glove_name, *, a: float = A, stop_words=False,
            weighting="sif") -> SIFTextEmbedder:
        """Word shares ``p`` and the common component, from the (training) captions."""
        lookup = RowLookup(glove.key_to_index)
        counts = np.zeros(lookup.n_rows, dtype=np.int64)
        parts = chunks(captions)
        if not parts:
            raise ValueError("fit needs at least one caption to count the words of")
        for chunk in parts:
            counts += np.bincount(token_rows(ascii_texts(chunk), lookup)[0], minlength=lookup.n_rows)
        vocab_rows = np.flatnonzero(counts)
        share = counts[vocab_rows] / counts.sum()
        embedder = cls(glove, glove_name, [glove.index_to_key[row] for row in vocab_rows],
                       a / (a + share), sum(map(len, parts)), stop_words=stop_words)
        embedder.component = first_component(embedder.embed(captions))
        return embedder

    def _weighted_sums(self, texts: list) -> np.ndarray:
        sums = super()._weighted_sums(texts)
        return sums - np.outer(sums @ self.component, self.component)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**super().to_arrays(), "component": self.component.copy()}

    @classmethod
    def from_arrays(cls, arrays, glove) -> SIFTextEmbedder:
        embedder = super().from_arrays(arrays, glove)
        embedder.component = np.asarray(arrays["component"], dtype=np.float32)
        return embedder


def first_component(embeddings) -> np.ndarray:
    """The unit first principal direction (uncentred, as in SIF) of the rows, float32.

    ``embeddings^T embeddings`` is summed in float64 over chunks of :data:`CHUNK` rows (not a
    float64 copy of every caption's embedding: 130 MB at COCO's size).
    """
    embeddings = np.asarray(embeddings)
    second = np.zeros((embeddings.shape[1],) * 2)
    for start in range(0, len(embeddings), CHUNK):
        part = embeddings[start:start + CHUNK].astype(np.float64)
        second += part.T @ part
    _, vectors = np.linalg.eigh(second)
    return unit_rows(vectors[:, -1])


def text_embedder_class(arrays) -> type:
    """The text embedder class that wrote ``arrays`` (``"weighting"`` says which)."""
    return SIFTextEmbedder if str(arrays.get("weighting", "")) == "sif" else TextEmbedder


def fit_text_weighted(dataset, glove, weighting: str = "idf") -> TextEmbedder:
    """A text embedder fitted on ``dataset``'s training captions: ``idf``, ``mean`` or ``sif``."""
    return fit_weighted(dataset.captions_where(dataset.train_captions_mask), glove,
                        dataset.glove_name, weighting)


def fit_weighted(captions, glove, glove_name: str, weighting: str = "idf") -> TextEmbedder:
    """A text embedder fitted on ``captions``: ``idf``, ``mean`` or ``sif``."""
    if weighting == "sif":
        return SIFTextEmbedder.fit(captions, glove, glove_name)
    return TextEmbedder.fit(captions, glove, glove_name, weighting=weighting)

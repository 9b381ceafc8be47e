"""``se_text``: a caption's embedding is the IDF-weighted sum of its words' GloVe vectors.

As in the course: a text is lower-cased, stripped of punctuation and split on whitespace; every
token found in GloVe adds ``idf(word) * glove[word]`` (a repeated word counts each time); the sum
is scaled to unit length. ``idf(word) = log10(N / number of training captions containing word)``
over the ``N`` training captions. A GloVe word that no training caption used gets the largest
IDF, ``log10(N)``, as if seen once, so queries may use it. Words not in GloVe add nothing; a text
with no known word embeds to the zero vector.

Read :func:`tokenize`, :func:`idf_weights` and :func:`se_text` first: they are the definition,
one caption at a time. :class:`TextEmbedder` computes the same numbers for many captions at once
(one sparse ``texts x words`` weight matrix times the GloVe vectors; see
:mod:`capstone.course.token_rows`), and the tests check the two agree.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from capstone.errors import DataError
from capstone.course.stop_words import STOP_WORDS
from capstone.course.token_rows import RowLookup, chunks, token_rows, used_rows

WEIGHTINGS = ("idf", "mean")

_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARRAY_NAMES = ("vocab", "idf", "n_captions", "glove_name", "dim", "weighting", "stop_words")


# -- the definition, one caption at a time -------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Split a text into words as the course does: lower-case, no punctuation, split on spaces.

    >>> tokenize("A dog's frisbee, caught!")
    ['a', 'dogs', 'frisbee', 'caught']
    """
    return text.translate(_DELETE_PUNCTUATION).lower().split()


def idf_weights(captions: Sequence[str]) -> dict[str, float]:
    """``idf(word) = log10(N / number of captions containing word)`` over ``N`` captions."""
    containing = Counter(word for caption in captions for word in set(tokenize(caption)))
    return {word: math.log10(len(captions) / n) for word, n in containing.items()}


def se_text(text: str, glove, idf: dict[str, float], n_captions: int) -> np.ndarray:
    """The embedding of one text: the IDF-weighted sum of its words' GloVe vectors, unit length.

    The readable reference for :meth:`TextEmbedder.embed` (which gives the same vector, faster).

    Parameters
    ----------
    text : str
    glove : gensim.models.KeyedVectors
    idf : dict
        :func:`idf_weights` of the training captions.
    n_captions : int
        Their number ``N``: a GloVe word no caption used weighs ``log10(N)``.
    """
    total = np.zeros(glove.vector_size, dtype=np.float64)
    for word in tokenize(text):
        if word in glove.key_to_index:
            total += idf.get(word, math.log10(n_captions)) * glove[word]
    norm = np.linalg.norm(total)
    return (total / norm if norm > 0 else total).astype(np.float32)


class WordLookup:
    """What ``se_text`` reads of word vectors: ``glove[word]``, ``word in glove``, ``len(glove)``.

    A subclass sets ``index_to_key`` (the words), ``key_to_index`` (word -> row), ``vectors``
    (one row a word) and ``vector_size``: the part of gensim's ``KeyedVectors`` used here.
    """

    def __getitem__(self, word):
        return self.vectors[self.key_to_index[word]]

    def __contains__(self, word) -> bool:
        return word in self.key_to_index

    def __len__(self) -> int:
        return len(self.index_to_key)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; zero rows and rows with a NaN or inf become zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    ok = np.isfinite(norms) & (norms > 0)
    unit = x / np.where(ok, norms, 1)
    unit[~ok[..., 0]] = 0  # a row with a NaN or inf becomes zero, not NaN
    return unit


# -- the fast version, many captions at once -----------------------------------------------------
def ascii_texts(texts: list) -> list:
    """The texts, each non-ASCII one already tokenised (what :func:`token_rows` expects)."""
    return [text if text.isascii() else " ".join(tokenize(text)) for text in texts]


class TextEmbedder:
    """``se_text`` for many texts at once: IDF-weighted sums of GloVe vectors, unit length.

    Build one with :meth:`fit` on the training captions, or with :meth:`from_arrays` from a
    saved model.

    Parameters
    ----------
    glove : gensim.models.KeyedVectors
        The word vectors (may be memory-mapped); ``glove_name`` is what loads them again.
    vocab, idf : arrays of shape (n_words,)
        The training captions' words that are in GloVe, and their IDF.
    n_captions : int
        Number ``N`` of training captions the IDF was fitted on.
    weighting : {"idf", "mean"} (``"sif"``: :class:`capstone.further.sif.SIFTextEmbedder`)
        ``"mean"``: the plain mean of the known words' vectors instead.
    stop_words : bool
        Drop the words of :data:`STOP_WORDS`.
    """

    weightings = WEIGHTINGS

    def __init__(self, glove, glove_name, vocab, idf, n_captions, *, weighting="idf",
                 stop_words=False):
        if weighting not in self.weightings:
            raise ValueError(f"weighting must be one of {self.weightings}, got {weighting!r}")
        self.glove, self.glove_name = glove, str(glove_name)
        self.dim = int(glove.vectors.shape[1])
        self.vocab = np.asarray(vocab, dtype=str)
        self.idf = np.asarray(idf, dtype=np.float32)
        self.n_captions, self.weighting = int(n_captions), weighting
        self.stop_words = bool(stop_words)
        # word vectors shared between processes bring their lookup (capstone.data.glove)
        self._lookup = getattr(glove, "row_lookup", lambda: RowLookup(glove.key_to_index))()
        vocab_rows = self._rows_of(self.vocab)
        if (vocab_rows < 0).any():
            missing = self.vocab[vocab_rows < 0]
            raise DataError(
                f"{len(missing)} words of the text embedding (e.g. {missing[0]!r}) are not in the "
                f"given GloVe: load the GloVe it was fitted with, {self.glove_name!r}"
            )
        unseen_weight = np.log10(self.n_captions) if weighting == "idf" else 1.0
        self._row_weights = np.full(self._lookup.n_rows, unseen_weight, np.float32)
        if weighting != "mean":
            self._row_weights[vocab_rows] = self.idf
        if stop_words:
            stop_rows = self._rows_of(sorted(STOP_WORDS))
            self._row_weights[stop_rows[stop_rows >= 0]] = 0.0

    @classmethod
    def fit(cls, captions: Sequence[str], glove, glove_name: str, *, weighting="idf",
            stop_words=False) -> TextEmbedder:
        """Fit the IDF on the (training) captions, as :func:`idf_weights` does, vectorised."""
        lookup = RowLookup(glove.key_to_index)
        n_rows = lookup.n_rows
        caption_counts = np.zeros(n_rows, dtype=np.int64)
        parts = chunks(captions)
        if not parts:
            raise ValueError("fit needs at least one caption to compute the IDF from")
        for chunk in parts:
            rows, starts = token_rows(ascii_texts(chunk), lookup)
            words = sparse.csr_matrix((np.ones(len(rows)), rows, starts), (len(chunk), n_rows))
            words.sum_duplicates()  # one entry per (caption, word)
            caption_counts += np.bincount(words.indices, minlength=n_rows)
        vocab_rows = np.flatnonzero(caption_counts)
        n_captions = sum(map(len, parts))
        vocab = [glove.index_to_key[row] for row in vocab_rows]
        idf = np.log10(n_captions / caption_counts[vocab_rows])
        return cls(glove, glove_name, vocab, idf, n_captions, weighting=weighting,
                   stop_words=stop_words)

    # -- embedding -----------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), D)`` float32 unit rows; a zero row for a text with no known word."""
        parts = chunks(texts)
        embeddings = np.empty((sum(map(len, parts)), self.dim), np.float32)  # no second copy
        start = 0
        for part in parts:
            embeddings[start : start + len(part)] = unit_rows(self._weighted_sums(part))
            start += len(part)
        return embeddings

    def _weighted_sums(self, texts: list) -> np.ndarray:
        """``(len(texts), D)`` float32 weighted sums of each text's word vectors."""
        rows, starts = token_rows(ascii_texts(texts), self._lookup)
        # multiply by the used GloVe rows only: scipy would copy a Fortran-ordered memory map whole
        used, columns = used_rows(rows, self._lookup.n_rows)
        weights = sparse.csr_matrix(
            (self._row_weights[rows], columns, starts), (len(texts), len(used))
        )
        return weights @ np.asarray(self.glove.vectors[used], dtype=np.float32)

    def terms(self, words: Sequence[str]) -> np.ndarray:
        """``(len(words), D)`` float64: each word's term of ``se_text``, its weight times its GloVe
        vector (zero when not in GloVe, or a dropped stop word).

        A text's embedding is the sum of its tokens' terms at unit length, so a query that
        weighs its words (:mod:`capstone.search.query`) sums the same terms with other
        multipliers.
        """
        words = list(words)
        if not words:
            return np.zeros((0, self.dim))
        return self._weighted_sums(words).astype(np.float64)

    def embed_query(self, text: str) -> np.ndarray:
        """``(D,)`` unit embedding of one query; ``ValueError`` when no word of it is known."""
        if not isinstance(text, str):
            raise TypeError(f"a query must be a str, got {type(text).__name__}")
        vector = self.embed([text])[0]
        if not vector.any():
            ignored = " (common words such as 'the' are ignored)" if self.stop_words else ""
            raise ValueError(
                f"no known words in query {text!r}{ignored}: try ordinary English words such as "
                f'"dog" or "boat"'
            )
        return vector

    # -- words ---------------------------------------------------------------------------------
    def _rows_of(self, words) -> np.ndarray:
        """GloVe rows of words (-1 where unknown)."""
        return np.array([self._lookup[word] for word in words], dtype=np.int64).clip(min=-1)

    def weights_of(self, words: Sequence[str]) -> np.ndarray:
        """The weight (IDF, or 1 for ``"mean"``) of each token; 0 if not in GloVe or a stop word."""
        rows = self._rows_of(words)
        return np.where(rows >= 0, self._row_weights[rows], 0.0).astype(np.float32)

    # -- saving --------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no object arrays) for ``np.savez``; :meth:`from_arrays` reverses it."""
        return {"vocab": self.vocab, "idf": self.idf, "n_captions": np.int64(self.n_captions),
                "glove_name": np.str_(self.glove_name), "dim": np.int64(self.dim),
                "weighting": np.str_(self.weighting), "stop_words": np.bool_(self.stop_words)}

    @classmethod
    def from_arrays(cls, arrays, glove) -> TextEmbedder:
        """The embedder :meth:`to_arrays` saved; ``DataError`` if an array is missing or
        ``glove`` is not the GloVe it was fitted with."""
        missing = [name for name in _ARRAY_NAMES if name not in arrays]
        if missing:
            raise DataError(f"the saved text embedding lacks {missing}: it was not written by "
                            "TextEmbedder.to_arrays; train the model again")
        glove_name, dim = str(arrays["glove_name"]), int(arrays["dim"])
        if dim != glove.vectors.shape[1]:
            raise DataError(
                f"the saved text embedding uses {dim}-d GloVe {glove_name!r} but the given GloVe "
                f"is {glove.vectors.shape[1]}-d: load the right one with "
                f"capstone.data.glove.load_glove({glove_name!r})"
            )
        return cls(glove, glove_name, arrays["vocab"], arrays["idf"], int(arrays["n_captions"]),
                   weighting=str(arrays["weighting"]), stop_words=bool(arrays["stop_words"]))

    def __repr__(self) -> str:
        return (f"TextEmbedder(glove={self.glove_name!r}, dim={self.dim}, "
                f"weighting={self.weighting!r}, stop_words={self.stop_words}, "
                f"vocab={len(self.vocab)}, n_captions={self.n_captions})")

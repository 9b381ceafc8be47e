"""The fast path of ``se_text``: the GloVe rows of many texts' tokens, found in one pass.

:func:`capstone.course.text.se_text` states the embedding one caption at a time;
:class:`capstone.course.text.TextEmbedder` computes the same numbers for hundreds of thousands
of captions at once with the helpers here. They trade readability for speed (about 13x the per-caption loop, see
``benchmarks/bench_text.py``): texts are joined with a separator and tokenised together, ASCII
texts are stripped and lower-cased as bytes, and an unknown word costs one failed dict lookup.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

_PUNCTUATION_BYTES = string.punctuation.encode("ascii")
_SEPARATOR = "\x00"  # joins texts so that they are tokenised in one pass
_SEPARATOR_ROW, _UNKNOWN_ROW = -2, -1
CHUNK = 2**14  # texts tokenised together: bounds the memory of the token list (~25 MB)


class RowLookup(dict):
    """GloVe word -> row; the text separator -> -2, any other unknown word -> -1."""

    def __init__(self, key_to_index):
        super().__init__(key_to_index)
        self.n_rows = len(key_to_index)
        self[_SEPARATOR] = _SEPARATOR_ROW

    def __missing__(self, word):
        return _UNKNOWN_ROW


def token_rows(texts: list, lookup: RowLookup) -> tuple[np.ndarray, np.ndarray]:
    """GloVe rows of the words of many texts, tokenised in one pass.

    Parameters
    ----------
    texts : list of str
        ASCII texts, or texts already tokenised and joined with spaces.
    lookup : RowLookup

    Returns
    -------
    rows : numpy.ndarray of int64
        The GloVe row of every token found in GloVe, text after text, in order.
    starts : numpy.ndarray of int64, shape (len(texts) + 1,)
        Text ``i``'s rows are ``rows[starts[i]:starts[i + 1]]``; they equal
        ``[lookup[word] for word in tokenize(texts[i]) if word in lookup]``.

    Notes
    -----
    Texts are stripped and lower-cased as bytes, which is much faster than ``str``'s methods and
    the same for ASCII texts. The caller gives non-ASCII texts already tokenised (joined with
    spaces), after which the byte steps change nothing.
    """
    joined = f" {_SEPARATOR} ".join(texts)
    if joined.count(_SEPARATOR) != len(texts) - 1:  # a text holds the separator: keep it unknown
        joined = f" {_SEPARATOR} ".join(text.replace(_SEPARATOR, "\x01") for text in texts)
    joined = joined.encode("utf-8", "surrogatepass").translate(None, _PUNCTUATION_BYTES).lower()
    words = joined.decode("utf-8", "surrogatepass").split()
    rows = np.array(list(map(lookup.__getitem__, words)), dtype=np.int64)
    known = rows >= 0
    text_of_token = np.cumsum(rows == _SEPARATOR_ROW)[known]
    return rows[known], np.searchsorted(text_of_token, np.arange(len(texts) + 1))


def chunks(texts) -> list:
    """The texts in parts of at most ``CHUNK``, after checking that they are a list of texts.

    A sequence is sliced, so a compact one (:class:`capstone.data.captions.Texts`) decodes one part
    at a time, not all its texts at once; any other iterable is listed first.
    """
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, got one str: wrap it in a list")
    if not isinstance(texts, Sequence):
        texts = list(texts)
    return [texts[start : start + CHUNK] for start in range(0, len(texts), CHUNK)]


def used_rows(rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct GloVe rows among ``rows`` (sorted), and each token's index among them.

    A query's few tokens are sorted; a batch's many tokens are counted in one pass over all
    ``n_rows`` GloVe rows, which is faster for them but would cost a query about a millisecond.
    """
    if len(rows) * 16 < n_rows:
        return np.unique(rows, return_inverse=True)
    used = np.flatnonzero(np.bincount(rows, minlength=n_rows))
    column_of_row = np.zeros(n_rows, dtype=np.int64)
    column_of_row[used] = np.arange(len(used))
    return used, column_of_row[rows]


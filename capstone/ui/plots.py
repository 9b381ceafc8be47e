"""Figures the course notebooks show: caption lengths, word frequencies, and negatives.

Each function returns a matplotlib figure (end the notebook line with ``;`` so it shows once)
and draws into ``ax`` (or a new figure) without side effects on the data.
"""

from __future__ import annotations

import textwrap
from collections import Counter

import numpy as np

from capstone.ui.display import draw_tile
from capstone.course.text import STOP_WORDS, tokenize


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def caption_lengths(captions) -> np.ndarray:
    """Number of words (tokens, see :func:`capstone.course.text.tokenize`) of each caption."""
    return np.array([len(tokenize(caption)) for caption in captions], dtype=np.int64)


def word_counts(captions, n: int = 20, stop_words: bool = False) -> list[tuple[str, int]]:
    """The ``n`` most frequent words of the captions, most frequent first.

    Parameters
    ----------
    captions : sequence of str
    n : int
        How many words.
    stop_words : bool
        Count common words such as "a" and "the" (:data:`capstone.course.text.STOP_WORDS`) too.
    """
    counts = Counter(word for caption in captions for word in tokenize(caption))
    if not stop_words:
        for word in STOP_WORDS & counts.keys():
            del counts[word]
    return counts.most_common(n)


def plot_caption_lengths(captions, ax=None):
    """Histogram of caption lengths in words, with the median marked."""
    lengths = caption_lengths(captions)
    if not len(lengths):
        raise ValueError("no captions to plot; give at least one caption")
    from matplotlib.ticker import MaxNLocator

    ax = _axes(ax, (6, 3))
    ax.hist(lengths, bins=np.arange(lengths.min(), lengths.max() + 2) - 0.5, color="tab:blue")
    median = np.median(lengths)
    ax.axvline(median, color="k", linestyle="--", label=f"median {median:g}")
    ax.set(xlabel="words per caption", ylabel="captions", title=f"{len(lengths):,} captions")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return ax.figure


def plot_word_frequencies(captions, n: int = 20, stop_words: bool = False, ax=None):
    """Horizontal bars of the ``n`` most frequent words (see :func:`word_counts`)."""
    pairs = word_counts(captions, n, stop_words)
    if not pairs:
        raise ValueError("the captions have no words to count; give captions with text")
    ax = _axes(ax, (6, 0.25 * len(pairs) + 1))
    words, counts = zip(*pairs)
    ax.barh(words[::-1], counts[::-1], color="tab:green")
    ax.set(xlabel="occurrences", title=f"{n} most frequent words")
    return ax.figure


def common_triples(first, second) -> tuple[np.ndarray, np.ndarray]:
    """Positions in two :class:`~capstone.course.triples.Triples` of the captions both contain."""
    _, in_first, in_second = np.intersect1d(
        first.caption_rows, second.caption_rows, assume_unique=True, return_indices=True
    )
    return in_first, in_second


def show_negatives(dataset, random_triples, hard_triples, n: int = 4, seed: int = 0):
    """The same captions with their good image, a random bad image and a hard bad image.

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset
    random_triples, hard_triples : capstone.course.triples.Triples
        Triples of the same split with ``negatives="random"`` and ``"hard"``.
    n : int
        Captions (rows) to show, drawn at random.
    seed : int
        Which captions.

    Returns
    -------
    matplotlib.figure.Figure
        One row per caption: the good image titled with the caption, then each bad image titled
        with its own first caption (a hard negative's reads much like the caption).
    """
    import matplotlib.pyplot as plt

    in_random, in_hard = common_triples(random_triples, hard_triples)
    if not len(in_random):
        raise ValueError("the two sets of triples share no caption: make both from one split")
    pick = np.random.default_rng(seed).choice(len(in_random), min(n, len(in_random)), False)
    fig, axes = plt.subplots(len(pick), 3, figsize=(9, 3.2 * len(pick)), squeeze=False)
    for row, index in zip(axes, pick):
        r, h = in_random[index], in_hard[index]
        caption = dataset.captions[random_triples.caption_rows[r]]
        tiles = [
            ("good", random_triples.good_rows[r], caption),
            ("random bad", random_triples.bad_rows[r], None),
            ("hard bad", hard_triples.bad_rows[h], None),
        ]
        for ax, (label, feature_row, text) in zip(row, tiles):
            image_id = int(dataset.image_ids[feature_row])
            text = text or (dataset.captions_of(image_id) or [""])[0]
            draw_tile(ax, dataset.url_of(image_id), textwrap.fill(f"{label}: {text}", 30))
    fig.tight_layout()
    return fig

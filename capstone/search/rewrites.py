"""Queries as people type them: the course benchmark's rewritten captions, and search MRR on them.

The benchmark's scorer (retrieval-v4) no longer scores search with whole captions. It rewrites
each held-out caption the way people type, and names each form: ``verbatim`` (the caption,
reported but not scored), ``keywords`` (stop words removed), ``truncated`` (the first three
content words) and ``typo`` (a letter of the longest content word replaced by a neighbouring
QWERTY key). ``benchmark`` is its earlier single rewrite, truncated with a typo.
:func:`rewritten_mrr` measures search on each form, with the typo corrector of
:mod:`capstone.search.query` (or without it, to see what it is worth); :func:`rewrites_table`
puts it beside chance (``python -m capstone evaluate --rewrites``). The stop words are
capstone's (:mod:`capstone.course.stop_words`), a longer list than the benchmark's.
"""

from __future__ import annotations

import numpy as np

from capstone.course.evaluate import held_out_images, query_captions, ranks_by_owner
from capstone.search.query import build_query, keyboard_neighbours
from capstone.course.stop_words import STOP_WORDS
from capstone.course.text import tokenize

REWRITES = ("verbatim", "keywords", "truncated", "typo", "benchmark")


def typo(word: str, rng) -> str:
    """``word`` with one letter replaced by a neighbouring key (a random letter, a random key)."""
    positions = [i for i, letter in enumerate(word) if keyboard_neighbours(letter)]
    if not positions:
        return word
    i = positions[rng.integers(len(positions))]
    neighbours = keyboard_neighbours(word[i])
    return word[:i] + neighbours[rng.integers(len(neighbours))] + word[i + 1 :]


def rewrite(caption: str, how: str, rng=None) -> str:
    """A caption rewritten one way of :data:`REWRITES`.

    ``"verbatim"``: the caption; ``"keywords"``: its words less stop words;
    ``"truncated"``: the first three of those; ``"typo"``: the caption with one :func:`typo`
    in its longest content word (the first, on a tie); ``"benchmark"``: the benchmark's
    rewrite, the first three content words with one typo. ``rng``: a NumPy generator, for typos.
    """
    if how not in REWRITES:
        raise ValueError(f"how must be one of {', '.join(REWRITES)}; got {how!r}")
    if how == "verbatim":
        return caption
    words = tokenize(caption)
    if how != "typo":
        words = [word for word in words if word not in STOP_WORDS]
    if how in ("truncated", "benchmark"):
        words = words[:3]
    content = [i for i, word in enumerate(words) if word not in STOP_WORDS]
    if how in ("typo", "benchmark") and content:
        longest = max(content, key=lambda i: len(words[i]))
        words[longest] = typo(words[longest], rng)
    return " ".join(words)


def rewritten_mrr(model, dataset, *, correct: bool = True, n_images: int = 1000,
                  seed: int = 0) -> dict:
    """Search MRR on held-out captions rewritten each way of :data:`REWRITES`.

    The protocol of :func:`capstone.course.evaluate.evaluate`: the first five captions of up to
    ``n_images`` validation images are the queries, searched among those images; the
    reciprocal rank of each caption's own image is averaged. A query with no known word ranks
    its image last. Typos are drawn with ``seed``.

    Returns
    -------
    dict
        ``{how: MRR}`` for each of :data:`REWRITES`.
    """
    image_ids = held_out_images(dataset, n_images, seed)
    captions, owners = query_captions(dataset, image_ids)
    images = model.embed_images(dataset.features_of(image_ids))
    mrr = {}
    for how in REWRITES:
        rng = np.random.default_rng(seed)
        vectors = np.zeros((len(captions), model.text.dim), np.float32)
        for i, caption in enumerate(captions):
            try:
                vectors[i] = build_query(model, rewrite(caption, how, rng), correct=correct).vector
            except ValueError:  # no known word: a zero vector ranks the image last
                pass
        mrr[how] = float(np.mean(1.0 / ranks_by_owner(vectors, owners, images, image_ids)))
    return mrr


def chance_mrr(n_images: int) -> float:
    """The MRR of a random ranking of ``n_images`` images: ``H_n / n``."""
    return float(np.sum(1.0 / np.arange(1, n_images + 1)) / n_images) if n_images > 0 else 0.0


def rewrites_table(model, dataset, *, n_images: int = 1000, seed: int = 0) -> dict:
    """Search MRR on each rewrite of the held-out captions, beside chance.

    Returns ``{"trained": {how: MRR}, "uncorrected": {...}, "chance": {...}}``: the model
    with and without the typo corrector (:func:`rewritten_mrr`), and a random ranking of the
    same images (the same for every form).
    """
    n = len(held_out_images(dataset, n_images, seed))
    return {"trained": rewritten_mrr(model, dataset, n_images=n_images, seed=seed),
            "uncorrected": rewritten_mrr(model, dataset, correct=False, n_images=n_images,
                                         seed=seed),
            "chance": dict.fromkeys(REWRITES, chance_mrr(n))}

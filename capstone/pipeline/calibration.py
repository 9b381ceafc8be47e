"""The score below which a result is more likely wrong than right, measured when training.

A cosine of 0.4 means little by itself: each model has its own scale, and short queries score
differently from long ones. So after training, the model searches the held-out (validation)
images with queries as people type them, the first three content words of their captions (as
the course benchmark rewrites them), and as many queries that no image matches (three common
GloVe words that no caption of the dataset uses), and records how often a result is right at
each score. A result is **right** when it is the query's own image, or when it shows what the
query names: with scene records (the sample), its scene holds every kind, colour and background
the query names; otherwise (COCO), its captions use every word of the query. No result of a
query without a match is right.

The chance that a result is right, as a function of its score, is fitted as a non-decreasing
step function (isotonic regression, pool-adjacent-violators); ``weak_score`` is the lowest
score where it reaches one half. Below it, fewer than half of the results are right. It is kept
in the model file as ``info["calibration"]``, for search to mark weak matches and to say when
nothing matches.
"""

from __future__ import annotations

import numpy as np

from capstone.course.evaluate import held_out_images, query_captions, scene_concepts
from capstone.course.text import STOP_WORDS, tokenize
from capstone.search.rewrites import rewrite

N_QUERIES = 1000  # validation captions searched (a sample of them when there are more)
K = 10  # results per search
COMMON_WORDS = 5000  # unmatched queries take their words from GloVe's this many first
RIGHT_SHARE = 0.5  # below weak_score, fewer than this share of results are right


def calibrate(model, dataset, *, n_images: int = 1000, n_queries: int = N_QUERIES, k: int = K,
              seed: int = 0) -> dict:
    """``model``'s weak-match threshold on ``dataset``'s validation images (see the module).

    Returns
    -------
    dict
        ``weak_score`` (float), and how it was measured: ``rule``, ``right``, ``queries``,
        ``n_queries``, ``k``, ``images``, ``share_right`` (of all results), ``share_weak`` (of
        all results, below ``weak_score``), ``reached`` (False when no score reached one half:
        then every result is weak and ``weak_score`` is the highest score seen).
    """
    image_ids = held_out_images(dataset, n_images, seed)
    captions, owners = query_captions(dataset, image_ids)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(captions), min(n_queries, len(captions)), replace=False))
    queries = [rewrite(captions[i], "truncated") for i in chosen]
    keep = [i for i, query in enumerate(queries) if query]
    queries, own = [queries[i] for i in keep], np.searchsorted(image_ids, owners[chosen[keep]])
    shows = image_words(dataset, image_ids)

    scores = model.embed_text(queries) @ model.embed_images(dataset.features_of(image_ids)).T
    k = min(k, len(image_ids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1).ravel()
    right = []
    for query, row, columns in zip(queries, own, top):
        named = set(tokenize(query)) & (shows[row] if dataset.scenes else set(tokenize(query)))
        right += [column == row or named <= shows[column] for column in columns]
    unmatched = unmatched_queries(model, dataset, len(queries), rng)
    scores = model.embed_text(unmatched) @ model.embed_images(dataset.features_of(image_ids)).T
    top_scores = np.r_[top_scores, -np.sort(-scores, axis=1)[:, :k].ravel()].astype(np.float64)
    right = np.r_[right, np.zeros(len(unmatched) * k, bool)]

    order = np.argsort(top_scores, kind="stable")
    fitted = isotonic(right[order].astype(np.float64))
    reached = bool((fitted >= RIGHT_SHARE).any())
    weak = float(top_scores[order][np.argmax(fitted >= RIGHT_SHARE)] if reached
                 else top_scores.max())
    return {
        "weak_score": round(weak, 4),
        "rule": f"below weak_score fewer than {RIGHT_SHARE:.0%} of results are right (isotonic "
                "fit of right against score over the top results of validation captions)",
        "right": "the query's own image, or one whose scene holds every kind, colour and "
                 "background the query names" if dataset.scenes else "the query's own "
                 "image, or one whose captions use every word of the query",
        "queries": "the first three content words of validation captions, and as many of "
                   "three common words no caption uses", "n_queries": int(len(queries)),
        "n_unmatched": int(len(unmatched)),
        "k": int(k),
        "images": int(len(image_ids)), "share_right": round(float(right.mean()), 4),
        "share_weak": round(float(np.mean(top_scores < weak)), 4), "reached": reached,
    }


def image_words(dataset, image_ids) -> list:
    """What each image shows, as words: its scene's concepts with scene records (the sample),
    else every word of its captions."""
    if dataset.scenes:
        return [scene_concepts(dataset.scenes[int(image_id)]) for image_id in image_ids]
    return [set(tokenize(" ".join(dataset.captions_of(int(image_id))))) for image_id in image_ids]


def unmatched_queries(model, dataset, n: int, rng, *, common: int = COMMON_WORDS) -> list:
    """``n`` queries of three words among GloVe's ``common`` most frequent that no caption of
    ``dataset`` uses (nor the stop words): queries no image matches."""
    used = set(tokenize(" ".join(dataset.captions))) | STOP_WORDS
    words = [word for word in model.text.glove.index_to_key[:common]
             if word.isalpha() and word not in used]
    if len(words) < 3:  # a vocabulary of caption words only (tests): none to draw
        return []
    return [" ".join(rng.choice(words, 3, replace=False)) for _ in range(n)]


def isotonic(values) -> np.ndarray:
    """The non-decreasing sequence nearest ``values`` in least squares (pool adjacent
    violators): here, the chance of a right result, by rising score."""
    means, sizes = [], []
    for value in np.asarray(values, dtype=np.float64):
        means.append(value)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            size = sizes[-2] + sizes[-1]
            means[-2:] = [(means[-2] * sizes[-2] + means[-1] * sizes[-1]) / size]
            sizes[-2:] = [size]
    return np.repeat(means, sizes)

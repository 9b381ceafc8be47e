"""The score below which a result is more likely wrong than right, measured when training.

A cosine of 0.4 means little by itself: each model has its own scale, and short queries score
differently from long ones. The best score a query reaches also grows with the number of images
searched: among 82,000 images some image scores high for any query. So after training, the model
searches **every image of the database** (as search does, not only the held-out ones) with
queries as people type them, the first three content words of validation captions (as the course
benchmark rewrites them), and as many queries that no image matches (three common GloVe words
that no caption of the dataset uses), and records how often a result is right at each score. A
result is **right** when it is the query's own image, or when it shows every word of the query
that the query's own image shows: with scene records (the sample), its scene holds every kind,
colour and background the query names; otherwise (COCO), its captions use every word of the
query. No result of a query without a match is right.

The chance that a result is right, as a function of its score, is fitted as a non-decreasing
step function (isotonic regression, pool-adjacent-violators); ``weak_score`` is the lowest
score where it reaches one half. Below it, fewer than half of the results are right. It is kept
in the model file as ``info["calibration"]``, for search to mark weak matches and to say when
nothing matches.

Memory stays bounded at COCO's size: images are embedded and scored :data:`CHUNK` at a time,
keeping each query's top ``k``, and what an image shows is read only for the images found.
"""

from __future__ import annotations

import numpy as np

from capstone.course.evaluate import scene_concepts
from capstone.course.text import STOP_WORDS, tokenize
from capstone.search.rewrites import rewrite

N_QUERIES = 1000  # validation captions searched (a sample of them when there are more)
K = 10  # results per search
COMMON_WORDS = 5000  # unmatched queries take their words from GloVe's this many first
RIGHT_SHARE = 0.5  # below weak_score, fewer than this share of results are right
CHUNK = 2048  # images embedded and scored at a time (2,000 queries: 16 MB of scores)


class ImageWords:
    """What each image shows, as words, read only for the images asked about.

    Parameters
    ----------
    captions : sequence of str
        Every caption of the dataset.
    caption_image_ids : array of int
        Each caption's image id.
    scenes : mapping int -> dict, optional
        Scene records (the sample): then an image shows its scene's concepts
        (:func:`capstone.course.evaluate.scene_concepts`); else every word of its captions.
    """

    def __init__(self, captions, caption_image_ids, scenes=None):
        self.captions, self.scenes = captions, scenes
        self.caption_image_ids = np.asarray(caption_image_ids, dtype=np.int64)
        self._order = None if scenes else np.argsort(self.caption_image_ids, kind="stable")
        self._seen = {}

    def __getitem__(self, image_id) -> set:
        image_id = int(image_id)
        if image_id not in self._seen:
            if self.scenes:
                self._seen[image_id] = scene_concepts(self.scenes[image_id])
            else:
                owners = self.caption_image_ids[self._order]
                rows = self._order[np.searchsorted(owners, image_id, "left"):
                                   np.searchsorted(owners, image_id, "right")]
                self._seen[image_id] = set(tokenize(" ".join(self.captions[int(row)]
                                                             for row in rows)))
        return self._seen[image_id]

    def used_words(self) -> set:
        """Every word that some caption uses (read caption by caption: bounded memory)."""
        used = set()
        for caption in self.captions:
            used.update(tokenize(caption))
        return used


def calibrate(model, features, image_ids, queries, query_owners, shows: ImageWords, *,
              n_queries: int = N_QUERIES, k: int = K, seed: int = 0, chunk: int = CHUNK) -> dict:
    """``model``'s weak-match score, searching the whole database (see the module).

    Parameters
    ----------
    model : capstone.data.model.SearchModel
    features : array of shape (n_images, d)
        Every database image's features (a read-only view is enough), row ``i`` of
        ``image_ids[i]``.
    image_ids : array of int, shape (n_images,)
    queries : sequence of str
        Validation captions (their images are among ``image_ids``); ``n_queries`` of them are
        drawn and cut to their first three content words.
    query_owners : array of int
        Each caption's image id.
    shows : ImageWords
        What each image shows; also where the unmatched queries' words are kept out of.

    Returns
    -------
    dict
        ``weak_score`` (float), and how it was measured: ``rule``, ``right``, ``queries``,
        ``n_queries``, ``n_unmatched``, ``k``, ``images`` (searched), ``share_right`` (of all
        results), ``share_weak`` (of all results, below ``weak_score``), ``reached`` (False
        when no score reached one half: then every result is weak and ``weak_score`` is the
        highest score seen).
    """
    image_ids = np.asarray(image_ids, dtype=np.int64)
    query_owners = np.asarray(query_owners, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(queries), min(n_queries, len(queries)), replace=False))
    texts = [rewrite(queries[i], "truncated") for i in chosen]
    keep = [i for i, text in enumerate(texts) if text]
    texts, owners = [texts[i] for i in keep], query_owners[chosen[keep]]
    unmatched = unmatched_queries(model, shows.used_words(), len(texts), rng)
    k = min(k, len(image_ids))
    top_scores, top_rows = top_k(model, model.embed_text(texts + unmatched), features, k, chunk)

    right = np.zeros(top_rows.shape, bool)  # the unmatched queries' rows stay wrong
    for i, (text, owner) in enumerate(zip(texts, owners)):
        named = set(tokenize(text)) & shows[owner]
        right[i] = [image_ids[row] == owner or named <= shows[image_ids[row]]
                    for row in top_rows[i]]
    weak, reached = threshold(top_scores.ravel(), right.ravel())
    top_scores, right = top_scores.ravel(), right.ravel()
    return {
        "weak_score": round(weak, 4),
        "rule": f"below weak_score fewer than {RIGHT_SHARE:.0%} of results are right (isotonic "
                "fit of right against score over the top results of validation captions, "
                "searched among every image of the database)",
        "right": "the query's own image, or one that shows every word of the query its own "
                 "image shows (scene records: kinds, colours, backgrounds; else caption words)",
        "queries": "the first three content words of validation captions, and as many of "
                   "three common words no caption uses", "n_queries": int(len(texts)),
        "n_unmatched": int(len(unmatched)),
        "k": int(k),
        "images": int(len(image_ids)), "share_right": round(float(right.mean()), 4),
        "share_weak": round(float(np.mean(top_scores < weak)), 4), "reached": reached,
    }


def top_k(model, query_embeddings, features, k: int, chunk: int = CHUNK):
    """Each query's ``k`` best scores (best first; on a tie the lower row first, as one sort of
    every image gives) and their rows of ``features``, embedding and scoring ``chunk`` images at
    a time (memory: queries x ``chunk`` scores and their indices)."""
    n = len(query_embeddings)
    best_scores = np.full((n, 0), -np.inf, np.float32)
    best_rows = np.zeros((n, 0), np.int64)
    for start in range(0, len(features), chunk):
        part = query_embeddings @ model.embed_images(features[start : start + chunk]).T
        columns = np.argsort(-part, axis=1, kind="stable")[:, :k]  # the chunk's own top k
        part = np.take_along_axis(part, columns, axis=1)
        scores = np.concatenate([best_scores, part], axis=1)
        rows = np.concatenate([best_rows, start + columns], axis=1)
        top = np.lexsort((rows, -scores), axis=1)[:, :k]  # by score, then by row
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_rows = np.take_along_axis(rows, top, axis=1)
    return best_scores, best_rows


def unmatched_queries(model, used_words, n: int, rng, *, common: int = COMMON_WORDS) -> list:
    """``n`` queries of three words among GloVe's ``common`` most frequent that no caption uses
    (``used_words``; nor the stop words): queries no image matches."""
    used = set(used_words) | STOP_WORDS
    words = [word for word in model.text.glove.index_to_key[:common]
             if word.isalpha() and word not in used]
    if len(words) < 3:  # a vocabulary of caption words only (tests): none to draw
        return []
    return [" ".join(rng.choice(words, 3, replace=False)) for _ in range(n)]


def threshold(scores, right) -> tuple[float, bool]:
    """The lowest score from which the isotonic fit of ``right`` against ``scores`` reaches
    :data:`RIGHT_SHARE`, and whether it does (if not: the highest score)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    fitted = isotonic(np.asarray(right, dtype=np.float64)[order])
    reached = bool((fitted >= RIGHT_SHARE).any())
    return float(scores[order][np.argmax(fitted >= RIGHT_SHARE)] if reached
                 else scores.max()), reached


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

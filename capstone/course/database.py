"""The image database: every image embedded once, text queries answered by exact cosine top-k.

Unit rows make a query's cosine scores one matrix-vector product; :func:`top_k` finds the best
without sorting them all. :mod:`capstone.search.database` saves and loads a database and answers
typed queries (typos, ``-word``, ``2:word``, ``why``) through the same ``se_text`` embedder.
"""

from __future__ import annotations

import numpy as np

from capstone.course.text import STOP_WORDS, unit_rows

SPACES = ("semantic", "features")
TAG_VOCABULARY_SIZE = 50_000  # GloVe lists words by frequency: tags come from the most common


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``min(k, n)`` largest of ``n`` scores, largest first (exact; NaN, inf last).

    The plain way is ``np.argsort(-scores)[:k]``. Faster: a strided sample's ``k``-th largest
    score is a lower bound of the whole array's, so only scores at or above it can be in the top
    ``k``; those few are partitioned with :func:`numpy.argpartition` and the winners sorted.
    """
    scores, n = np.nan_to_num(scores, nan=-np.inf, posinf=-np.inf), len(scores)
    if k >= n:
        return np.argsort(-scores, kind="stable")
    candidates = np.arange(n)
    sample = scores[:: max(1, n // (64 * k))]
    if len(sample) > k:
        bound = np.partition(sample, len(sample) - k)[len(sample) - k]
        candidates = np.flatnonzero(scores >= bound)
    best = candidates[np.argpartition(scores[candidates], len(candidates) - k)[-k:]]
    return best[np.argsort(-scores[best], kind="stable")]


def check_count(count, name: str = "k") -> int:
    """``count`` as an int; ``ValueError`` unless it is a whole number of at least 1."""
    try:
        whole = int(count) == count
    except (TypeError, ValueError):
        whole = False
    if not whole or count < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {count!r}")
    return int(count)


class ImageDatabase:
    """Every image of a dataset embedded once, for search.

    Parameters
    ----------
    image_ids : array-like of int, shape (n,)
    embeddings : array-like, shape (n, D)
        The images' embeddings, row by row; stored as float32 unit rows.
    model : SearchModel
        Embeds queries; its ``checksum`` is saved with the database.
    dataset : Dataset or None
        Source of urls, captions and raw features (``None``: none of them).
    index : object, optional
        Answers queries instead of the exact product (``index.search(vector, k) -> (rows,
        scores)``): an approximate index of :mod:`capstone.search.ann` (see ``ann.use_index``).
    """

    def __init__(self, image_ids, embeddings, model, dataset=None, index=None):
        self.image_ids = np.asarray(image_ids, dtype=np.int64).ravel()
        embeddings = np.atleast_2d(embeddings)
        # a saved database's unit rows, memory-mapped read-only for every process that searches
        # it (capstone.search.database), are kept as they are: a copy would cost each one all
        shared = (embeddings.dtype == np.float32 and embeddings.flags.c_contiguous
                  and not embeddings.flags.writeable
                  and np.allclose(np.einsum("ij,ij->i", embeddings, embeddings), 1, atol=1e-5))
        self.embeddings = embeddings if shared else np.ascontiguousarray(unit_rows(embeddings))
        if len(self.image_ids) != len(self.embeddings):
            raise ValueError(f"{len(self.image_ids)} image ids but {len(self.embeddings)} "
                             "embeddings")
        self.model, self.dataset = model, dataset
        self._index_rows()
        self._unit_features = None  # raw features, normalised on first use
        self.added_features = None  # raw features of the images added after the dataset's
        self._tag_words = self._tag_vectors = None
        self.index = index

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return f"ImageDatabase(dataset={getattr(self.dataset, 'name', None)!r}, images={len(self)})"

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, model, dataset) -> ImageDatabase:
        """Embed every image of ``dataset`` with ``model``."""
        return cls(dataset.image_ids, model.embed_images(dataset.features), model, dataset)

    def add(self, image_ids, features) -> None:
        """Embed new images and add them, rebuilding neither the database nor its index.

        ``image_ids``: whole numbers, none already here, none twice; ``features``: their raw
        features, one row each, as the dataset's. An index takes the new rows by its own ``add``.
        """
        ids, features = np.asarray(image_ids), np.asarray(features, dtype=np.float32)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise ValueError("image ids must be whole numbers, one per image, e.g. [581921, 581929]")
        if features.ndim != 2 or len(features) != len(ids) or not np.isfinite(features).all():
            raise ValueError(f"give one row of finite features per image id: {len(ids)} ids but "
                             f"features of shape {features.shape}")
        unique, counts = np.unique(ids, return_counts=True)
        clash = ids[np.isin(ids, self.image_ids)].tolist() + unique[counts > 1].tolist()
        if clash:
            raise ValueError(f"image_id {clash[0]} is already in this database or given twice; "
                             "add each image once")
        try:
            rows = unit_rows(self.model.embed_images(features)).astype(np.float32)
        except ValueError:  # numpy's matmul message names operands, not features
            raise ValueError(f"features of {features.shape[1]} columns do not fit this database's "
                             "model; give the same kind of features as its dataset's") from None
        self.image_ids = np.concatenate([self.image_ids, ids.astype(np.int64)])
        self.embeddings = np.concatenate([self.embeddings, rows])
        self._index_rows()
        self.added_features = features if self.added_features is None else np.concatenate(
            [self.added_features, features])
        self._unit_features = None  # recomputed with the new images on next use
        if self.index is not None:
            self.index.add(rows, self.embeddings)

    # -- looking up ----------------------------------------------------------------------------
    def _index_rows(self) -> None:
        """The sorted ids and their rows, for :meth:`row` (a dict: 7 MB for COCO's 82,783)."""
        self._sorted_rows = np.argsort(self.image_ids, kind="stable")
        self._sorted_ids = self.image_ids[self._sorted_rows]

    def row(self, image_id) -> int:
        """Row of ``image_id`` in :attr:`embeddings`; ``KeyError`` when it is not here."""
        try:
            key = int(image_id)
            at = int(np.searchsorted(self._sorted_ids, key))
            if at == len(self._sorted_ids) or self._sorted_ids[at] != key:
                raise KeyError(key)
            return int(self._sorted_rows[at])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise KeyError(f"image_id {image_id!r} is not in this database ({self!r}); pick one "
                           "of its image ids, e.g. from a search result") from None

    def result(self, image_id: int, score: float) -> dict:
        """One search result: ``image_id``, ``score``, ``url`` and ``captions``."""
        image_id = int(image_id)
        known = self.dataset is not None
        return {"image_id": image_id, "score": float(score),
                "url": self.dataset.urls.get(image_id) if known else None,
                "captions": list(self.dataset.image_captions.get(image_id, [])) if known else []}

    # -- searching -----------------------------------------------------------------------------
    def query_vector(self, vector, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(image_ids, scores)`` of the ``min(k, n)`` images nearest ``vector``, best first."""
        k = check_count(k)
        if self.index is not None:  # approximate: faster, may miss a few of the exact top k
            rows, scores = self.index.search(vector, k)
            return self.image_ids[rows], scores
        scores = self.embeddings @ unit_rows(vector)  # a NaN or zero vector: all scores 0
        best = top_k(scores, k)
        return self.image_ids[best], scores[best]

    def query(self, text: str, k: int = 10) -> list[dict]:
        """The ``k`` images nearest ``se_text`` of ``text``, best first (:meth:`result` each).

        :class:`capstone.search.database.SearchDatabase` adds typo correction, ``-word``,
        ``2:word``, images in the query and ``why``, and still embeds the words with ``se_text``.
        """
        ids, scores = self.query_vector(self.model.embed_query(text), k)
        return [self.result(image_id, score) for image_id, score in zip(ids, scores)]

    def similar(
        self, image_id: int, k: int = 10, space: str = "semantic", include_self: bool = True
    ) -> list[dict]:
        """The ``k`` images most like one of the database's images, best first.

        ``space`` is ``"semantic"`` (the learned embeddings: images that would get the same
        captions) or ``"features"`` (the raw ResNet features: images that look alike);
        ``include_self`` puts the image itself first.
        """
        k = check_count(k)
        if space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(SPACES)}; got {space!r}")
        row = self.row(image_id)
        vectors = self.embeddings if space == "semantic" else self.unit_features()
        scores = vectors @ vectors[row]
        best = top_k(scores, k + 1)
        best = best[best != row][: k - include_self]
        if include_self:
            best = np.concatenate([[row], best])
        return [self.result(self.image_ids[i], scores[i]) for i in best]

    def unit_features(self) -> np.ndarray:
        """The database images' raw features with unit rows (computed once)."""
        if self._unit_features is None:
            if self.dataset is None:
                raise ValueError("this database has no dataset, so no raw features to compare")
            added = 0 if self.added_features is None else len(self.added_features)
            features = self.dataset.features_of(self.image_ids[: len(self) - added])
            if added:
                features = np.concatenate([features, self.added_features])
            self._unit_features = unit_rows(features)
        return self._unit_features

    def tags(self, image_id: int, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` (word, cosine) pairs nearest an image's embedding: words that describe it.

        Training pulls image embeddings only towards caption embeddings, so their direction means
        something for caption words and nothing for others: the candidates are the training
        captions' words among GloVe's :data:`TAG_VOCABULARY_SIZE` most frequent, less stop words.
        """
        n = check_count(n, "n")
        embedding = self.embeddings[self.row(image_id)]
        words, vectors = self.tag_vocabulary()
        scores = vectors @ embedding
        return [(words[i], float(scores[i])) for i in top_k(scores, n)]

    def tag_vocabulary(self) -> tuple[list[str], np.ndarray]:
        """Candidate tag words and their unit GloVe vectors (computed once); see :meth:`tags`."""
        if self._tag_words is None:
            glove, caption_words = self.model.text.glove, set(self.model.text.vocab.tolist())
            self._tag_words = [
                word
                for word in glove.index_to_key[:TAG_VOCABULARY_SIZE]
                if word in caption_words and word.isalpha() and word not in STOP_WORDS
            ]
            rows = [glove.key_to_index[word] for word in self._tag_words]
            self._tag_vectors = unit_rows(glove.vectors[rows])
        return self._tag_words, self._tag_vectors

"""What every search index shares: its row count and dimension, checking a query, exact scores.

:mod:`capstone.search.ann` (exact, FAISS) and :mod:`capstone.search.milvus` build on it.
"""

from __future__ import annotations

import numpy as np

from capstone.course.database import top_k
from capstone.course.text import unit_rows


def as_matrix(embeddings, kind: str) -> np.ndarray:
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or (kind != "exact" and len(matrix) == 0):
        raise ValueError(
            f"the {kind} index needs a non-empty (n, D) matrix of embeddings, got shape "
            f"{matrix.shape}; use kind='exact' for an empty database"
        )
    return matrix


class BaseIndex:
    """What every index shares: the row count, dimension, and checking a query vector."""

    kind = ""

    def __init__(self, embeddings):
        self.embeddings = as_matrix(embeddings, self.kind)
        self.n, self.dim = self.embeddings.shape

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        settings = "".join(f", {key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}(n={self.n}, dim={self.dim}{settings})"

    @property
    def params(self) -> dict:
        """The settings the index was built and searches with."""
        return {}

    def _query(self, vector) -> np.ndarray:
        """``vector`` as a float32 unit vector of shape (D,), or a one-line ``ValueError``."""
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ValueError(
                f"the query vector has shape {vector.shape}, but this index holds "
                f"{self.dim}-d embeddings; give one vector of shape ({self.dim},)"
            )
        if not np.all(np.isfinite(vector)):
            raise ValueError("the query vector has NaN or infinite entries; give finite numbers")
        return unit_rows(vector)  # cosine, as the database's own query scores it

    def _grown(self, rows, embeddings) -> np.ndarray:
        """The rows searched after adding ``rows``: ``embeddings`` when given (checked), else a
        new matrix of the old rows and ``rows``."""
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.dim)
        if embeddings is None:
            embeddings = np.concatenate([self.embeddings, rows])
        if len(embeddings) != self.n + len(rows):
            raise ValueError(f"an index of {self.n} rows given {len(rows)} new rows needs a matrix "
                             f"of {self.n + len(rows)}, got {len(embeddings)}")
        self.n = len(embeddings)
        return as_matrix(embeddings, self.kind)

    def _exact(self, vector, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.embeddings @ vector
        rows = top_k(scores, k)
        return rows, scores[rows]

    def _complete(self, rows, vector, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of candidate ``rows`` (faiss pads with -1), the best ``k`` first.

        When the approximate search found fewer than ``min(k, n)`` candidates (a tiny database,
        or a query far from every bucket probed), the query is answered exactly instead, so
        every index returns as many results as the exact one.
        """
        rows = rows[rows >= 0]
        if len(rows) < min(k, self.n):
            return self._exact(vector, k)
        scores = self.embeddings[rows] @ vector
        best = top_k(scores, k)
        return rows[best].astype(np.int64), scores[best]

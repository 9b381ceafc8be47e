"""Search indexes behind :meth:`SearchDatabase.query`: exact top-k, FAISS HNSW, FAISS IVF-PQ, Milvus.

Every index answers ``search(vector, k) -> (rows, scores)``: ``min(k, n)`` row numbers of the
embedding matrix, best first, with their cosines (finite float32). Rows are expected to be unit
vectors, as :class:`~capstone.course.database.ImageDatabase` stores them, so cosine is inner product.

``"exact"``  the project's own matrix-vector product and :func:`~capstone.course.database.top_k`.
``"hnsw"``   ``faiss.IndexHNSWFlat`` over inner product: a navigable graph over a copy of the rows.
``"ivfpq"``  ``faiss.IndexIVFPQ``: rows bucketed by k-means, stored as product-quantised codes;
             the ``rerank * k`` best candidates are rescored exactly against the original rows.
``"milvus"`` a Milvus collection (Milvus Lite in a local ``.db``, or a server by its URI): see
             :mod:`capstone.search.milvus`.

Every index also takes new rows, ``add(rows, embeddings)``, so that images join a database
without rebuilding its index (:meth:`ImageDatabase.add`).

faiss and pymilvus are imported only when such an index is built, so ``import capstone`` stays
quick.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager

import numpy as np

from capstone.course.database import check_count, top_k
from capstone.search.index import as_matrix, BaseIndex

KINDS = ("exact", "hnsw", "ivfpq", "milvus")


def build_index(embeddings, kind: str = "exact", **params):
    """An index over ``embeddings`` of the given kind.

    Parameters
    ----------
    embeddings : array-like, shape (n, D)
        Unit rows (float32). The exact and IVF-PQ indexes keep a reference to them, so they
        must not change afterwards; HNSW keeps its own copy.
    kind : {"exact", "hnsw", "ivfpq", "milvus"}
    **params
        The chosen kind's settings; see :class:`ExactIndex`, :class:`HNSWIndex`,
        :class:`IVFPQIndex`, :class:`capstone.search.milvus.MilvusIndex`.

    Returns
    -------
    ExactIndex, HNSWIndex, IVFPQIndex or MilvusIndex

    Raises
    ------
    ValueError
        For an unknown kind or parameter, or embeddings that are not a non-empty 2-D array.
    ImportError
        For ``"hnsw"`` or ``"ivfpq"`` when faiss is not installed, ``"milvus"`` without pymilvus.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "milvus":
        from capstone.search.milvus import MilvusIndex as cls
    else:
        cls = _CLASSES[kind]
    allowed = list(inspect.signature(cls.__init__).parameters)[2:]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"the {kind} index has no parameter {unknown[0]!r}; "
            f"its parameters are {', '.join(allowed) or 'none'}"
        )
    return cls(embeddings, **params)


def _faiss(kind: str):
    """The faiss module, or an ``ImportError`` that says how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            f"the {kind} index needs faiss: pip install faiss-cpu (or pip install -e '.[ann]')"
        ) from None
    return faiss


@contextmanager
def _one_thread(faiss):
    """Run faiss on the calling thread only (OpenMP's setting is per calling thread).

    One query is too small to split: on 2 busy cores, IVF-PQ with ``nprobe=32`` took 6 ms a
    query with 2 OpenMP threads and 2 ms with 1.
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


class ExactIndex(BaseIndex):
    """Exact cosine top-k: one matrix-vector product and :func:`~capstone.course.database.top_k`.

    This is what :meth:`ImageDatabase.query_vector` does without an index; it has no settings.
    """

    kind = "exact"

    def __init__(self, embeddings):
        super().__init__(embeddings)

    @property
    def nbytes(self) -> int:
        """Bytes of the matrix it scans (the database's own embeddings, not a copy)."""
        return self.embeddings.nbytes

    def search(self, vector, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``min(k, n)`` rows with the largest cosine with ``vector``, best first.

        Returns
        -------
        (rows, scores) : int64 and float32 arrays
        """
        return self._exact(self._query(vector), check_count(k))

    def add(self, rows, embeddings=None) -> None:
        """Take new rows: ``embeddings``, the database's matrix with them, else a copy plus them."""
        self.embeddings = self._grown(rows, embeddings)


class HNSWIndex(BaseIndex):
    """FAISS ``IndexHNSWFlat`` with inner product: a layered proximity graph over the rows.

    Parameters
    ----------
    embeddings : array-like, shape (n, D)
        Unit rows; the index stores its own float32 copy, so its scores are exact cosines.
    M : int
        Graph links per row (twice that on the bottom layer): more is better recall, more memory.
    ef_construction : int
        Candidate list while building. On clustered data a small value leaves the graph poorly
        connected between clusters, which no ``ef_search`` can make up for.
    ef_search : int
        Candidate list while searching (at least ``k`` is used): the recall/latency knob.
    """

    kind = "hnsw"

    def __init__(self, embeddings, M: int = 16, ef_construction: int = 80, ef_search: int = 128):
        super().__init__(embeddings)
        faiss = _faiss(self.kind)
        self.M = check_count(M, "M")
        self.ef_construction = check_count(ef_construction, "ef_construction")
        self.ef_search = check_count(ef_search, "ef_search")
        self.index = faiss.IndexHNSWFlat(self.dim, self.M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.ef_construction
        self.index.add(self.embeddings)
        self.embeddings = None  # the index holds the rows; no need to pin the caller's matrix
        self._faiss = faiss

    @property
    def params(self) -> dict:
        return {"M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    @property
    def nbytes(self) -> int:
        """Bytes of the stored rows and the graph's links, levels and offsets."""
        hnsw = self.index.hnsw
        return (
            self.n * self.dim * 4
            + 4 * (hnsw.neighbors.size() + hnsw.levels.size())
            + 8 * hnsw.offsets.size()
        )

    def search(self, vector, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Approximately the ``min(k, n)`` rows with the largest cosine, best first.

        Returns
        -------
        (rows, scores) : int64 and float32 arrays; scores are exact cosines
        """
        vector, k = self._query(vector), check_count(k)
        want = min(k, self.n)
        settings = self._faiss.SearchParametersHNSW(efSearch=max(self.ef_search, want))
        with _one_thread(self._faiss):
            scores, rows = self.index.search(vector[None], want, params=settings)
        scores, rows = scores[0], rows[0]
        found = rows >= 0
        if found.sum() < want:  # the graph search ran dry: answer exactly from the stored rows
            stored = self.index.storage.reconstruct_n(0, self.n)
            all_scores = stored @ vector
            best = top_k(all_scores, want)
            return best, all_scores[best]
        return rows.astype(np.int64), scores

    def add(self, rows, embeddings=None) -> None:
        """Link new unit rows into the graph (faiss inserts them as it built the others)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.dim)
        with _one_thread(self._faiss):
            self.index.add(rows)
        self.n += len(rows)


class IVFPQIndex(BaseIndex):
    """FAISS ``IndexIVFPQ`` with exact re-ranking of its best candidates.

    Rows are bucketed into ``nlist`` k-means cells and stored as ``m`` one-byte codes (for
    ``nbits=8``). A query scans the ``nprobe`` nearest cells by approximate (code) distance,
    then rescores the best ``rerank * k`` candidates against the original rows, so returned
    scores are exact cosines and the ranking among candidates is exact.

    Parameters
    ----------
    embeddings : array-like, shape (n, D)
        Unit rows, kept by reference for the re-ranking (not copied).
    nlist : int, optional
        Number of cells; default about ``sqrt(n)``.
    m : int, optional
        Code bytes per row (sub-vectors); must divide D. Default: the largest divisor of D
        that is at most D / 4.
    nbits : int, optional
        Bits per sub-vector code; default 8 (fewer on databases under 256 rows).
    nprobe : int
        Cells scanned per query: the main recall/latency knob.
    rerank : int
        Candidates rescored exactly, as a multiple of ``k``.
    train_size : int, optional
        Rows sampled to train the cells and codes; default ``40 * max(nlist, 2**nbits)``
        (faiss's advice is at least 39 per centroid), at most ``n``.
    seed : int
        Seed of the training sample and of k-means.
    """

    kind = "ivfpq"

    def __init__(
        self, embeddings, nlist=None, m=None, nbits=None, nprobe: int = 32, rerank: int = 10,
        train_size=None, seed: int = 0,
    ):
        super().__init__(embeddings)
        faiss = _faiss(self.kind)
        n, dim = self.n, self.dim
        self.nlist = check_count(nlist if nlist is not None else max(1, round(math.sqrt(n))),
                                  "nlist")
        self.m = check_count(m if m is not None else _default_m(dim), "m")
        if dim % self.m:
            raise ValueError(f"m must divide the embedding dimension {dim}, got m={self.m}")
        self.nbits = check_count(
            nbits if nbits is not None else max(1, min(8, int(math.log2(max(n, 2))))), "nbits"
        )
        self.nprobe = check_count(nprobe, "nprobe")
        self.rerank = check_count(rerank, "rerank")
        self.train_size = min(n, check_count(
            train_size if train_size is not None else 40 * max(self.nlist, 2**self.nbits),
            "train_size",
        ))
        if self.nlist > self.train_size or 2**self.nbits > self.train_size:
            raise ValueError(
                f"an ivfpq index over {self.train_size} training rows can have at most that many "
                f"cells and codes; lower nlist (now {self.nlist}) or nbits (now {self.nbits}), "
                "or use kind='exact' for a database this small"
            )
        # L2 on unit rows ranks exactly as cosine does, and k-means (cells and codes) is L2
        self.index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, self.nlist, self.m, self.nbits)
        for clustering in (self.index.cp, self.index.pq.cp):
            clustering.seed = seed
            clustering.min_points_per_centroid = 1  # small databases: no warnings on stderr
        sample = np.random.default_rng(seed).choice(n, self.train_size, replace=False)
        self.index.train(self.embeddings[np.sort(sample)])
        self.index.add(self.embeddings)
        self._faiss = faiss

    @property
    def params(self) -> dict:
        return {"nlist": self.nlist, "m": self.m, "nbits": self.nbits, "nprobe": self.nprobe,
                "rerank": self.rerank}

    @property
    def nbytes(self) -> int:
        """Bytes of the codes, their row ids, the cell centroids and the code books.

        The re-ranking reads the caller's embeddings, which are not counted.
        """
        return (
            self.n * (self.index.code_size + 8)
            + self.nlist * self.dim * 4
            + self.index.pq.centroids.size() * 4
        )

    def search(self, vector, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Approximately the ``min(k, n)`` rows with the largest cosine, best first.

        Returns
        -------
        (rows, scores) : int64 and float32 arrays; scores are exact cosines
        """
        vector, k = self._query(vector), check_count(k)
        settings = self._faiss.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist))
        with _one_thread(self._faiss):
            _, rows = self.index.search(
                vector[None], min(k * self.rerank, self.n), params=settings
            )
        return self._complete(rows[0], vector, k)

    def add(self, rows, embeddings=None) -> None:
        """Encode new rows into the trained cells and codes (no retraining); the re-ranking then
        reads ``embeddings``, the database's matrix with them (else a copy plus them)."""
        old, self.embeddings = self.n, self._grown(rows, embeddings)
        with _one_thread(self._faiss):
            self.index.add(self.embeddings[old:])


def _default_m(dim: int) -> int:
    """The largest divisor of ``dim`` that is at most ``dim / 4`` (4-d sub-vectors or more)."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


_CLASSES = {"exact": ExactIndex, "hnsw": HNSWIndex, "ivfpq": IVFPQIndex}


def use_index(database, kind: str = "exact", **params):
    """Answer ``database.query`` and ``query_vector`` through an index of ``kind``; returns it.

    ``"exact"`` is exact; ``"hnsw"`` and ``"ivfpq"`` are approximate FAISS indexes, much faster on
    large databases; ``"milvus"`` keeps the embeddings in Milvus (``uri=``, else
    ``$CAPSTONE_MILVUS_URI``); ``params`` are their settings (see :func:`build_index`).
    """
    database.index = build_index(database.embeddings, kind, **params)
    return database

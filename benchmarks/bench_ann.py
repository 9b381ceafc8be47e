"""Approximate search (:mod:`capstone.search.ann`) against exact search on a million clustered vectors.

The database holds 1,000,000 unit float32 vectors of dimension 200 with clustered structure:
3,000 random unit cluster centres, each vector a centre plus isotropic Gaussian noise of the same
total length, normalised (cosine to its centre about 0.7, to another member about 0.5). The 200
queries are drawn the same way but are not in the database. The noise is full-dimensional, which
is the hard case for graph and quantisation methods: within a cluster, nearest neighbours are
only slightly nearer than the rest of the cluster.

baseline  the exact index: the project's query path (``embeddings @ q`` and ``top_k``)
ours      each approximate index's ``search(q, k=10)``

One query at a time, in turns of 20 queries (exact, then each index on the same queries), so
that machine load affects all alike. ``ratio`` is exact p50 latency / index p50 latency; ``recall`` is the mean recall@10
against the exact answers. At the full size with the default settings, each row has a
``target`` (ratio) and a ``recall_target``, and passes only when it meets both. Each row's note
gives the build time and the index's memory (its own bytes, and the process's RSS growth while
building it).

For a quick check at another size: ``CAPSTONE_BENCH_ANN_N=100000 python benchmarks/run.py --only
ann`` (the number of clusters scales with it), or call ``rows(n=..., dim=..., queries=...)``;
``CAPSTONE_BENCH_ANN_KINDS=milvus`` runs only the named rows (comma-separated), and
``CAPSTONE_BENCH_ANN_QUERIES=50`` times fewer queries (Milvus Lite takes seconds each at 1,000,000).

The Milvus row runs Milvus Lite in this process (a temporary ``.db``, deleted afterwards): its
note splits the build into inserting the rows and indexing them, and gives the folder's size.
"""

from __future__ import annotations

import os
import time

import numpy as np

N, DIM, ROWS_PER_CLUSTER, QUERIES, K = 1_000_000, 200, 333, 200, 10
BLOCK = 20  # queries timed per turn: exact on a block, then each index on the same block
# Tuned on this data at full size on 2 cores (see the README's Benchmarks section).
SETTINGS = {
    "hnsw": {"M": 16, "ef_construction": 80, "ef_search": 128},
    "ivfpq": {"nprobe": 32, "rerank": 10},
    # Milvus Lite (a temporary .db) with the HNSW settings above: what a Milvus server would build
    "milvus": {"index_type": "HNSW", "M": 16, "ef_construction": 80, "ef_search": 128},
}
# (ratio, recall), at the full size only; Milvus Lite answers slower than exact search in one
# process (it scans every row in Python per query), so only its recall has a target
TARGETS = {"hnsw": (10, 0.95), "ivfpq": (10, 0.95), "milvus": (None, 0.95)}
LABELS = {
    "hnsw": "HNSW (faiss IndexHNSWFlat, inner product)",
    "ivfpq": "IVF-PQ (faiss IndexIVFPQ) + exact re-rank",
    "milvus": "Milvus Lite (pymilvus, HNSW, cosine)",
}


def clustered_unit_vectors(n, dim, centres, rng, chunk=100_000) -> np.ndarray:
    """``n`` unit rows, each a random one of ``centres`` plus Gaussian noise of length ~1."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = centres[rng.integers(0, len(centres), stop - start)]
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        rows += noise / np.float32(np.sqrt(dim))
        out[start:stop] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def make_data(n=N, dim=DIM, queries=QUERIES, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """The database's embeddings and the queries (same clusters, not in the database)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, round(n / ROWS_PER_CLUSTER)), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered_unit_vectors(n, dim, centres, rng), clustered_unit_vectors(
        queries, dim, centres, rng
    )


def resident_bytes() -> int | None:
    """This process's resident memory, when psutil is installed."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def megabytes(n_bytes) -> str:
    return "?" if n_bytes is None else f"{n_bytes / 2**20:,.0f} MB"


def rows(n=None, dim=DIM, queries=None, settings=None) -> list[dict]:
    """One row per approximate index: p50 latency against exact, recall@10, build and memory.

    Parameters
    ----------
    n : int, optional
        Database size; default ``$CAPSTONE_BENCH_ANN_N`` or 1,000,000.
    dim : int
        Embedding dimension.
    queries : int, optional
        Timed queries; default ``$CAPSTONE_BENCH_ANN_QUERIES`` or 200.
    settings : dict, optional
        Index kind -> parameters; default :data:`SETTINGS`.
    """
    from capstone.search.ann import build_index

    n = int(n or os.environ.get("CAPSTONE_BENCH_ANN_N") or N)
    queries = int(queries or os.environ.get("CAPSTONE_BENCH_ANN_QUERIES") or QUERIES)
    if settings is None:
        chosen = os.environ.get("CAPSTONE_BENCH_ANN_KINDS")  # e.g. "milvus": only those rows
        settings = {kind: SETTINGS[kind] for kind in (chosen.split(",") if chosen else SETTINGS)}
    embeddings, query_vectors = make_data(n, dim, queries)
    exact = build_index(embeddings, "exact")

    indexes, builds = {}, {}
    for kind, params in settings.items():
        before, start = resident_bytes(), time.perf_counter()
        indexes[kind] = build_index(embeddings, kind, **params)
        seconds, after = time.perf_counter() - start, resident_bytes()
        builds[kind] = (seconds, None if before is None else after - before)

    for query in query_vectors[:5]:  # warm up caches and faiss's thread pool
        exact.search(query, K)
        for index in indexes.values():
            index.search(query, K)
    exact_seconds, seconds = [], {kind: [] for kind in indexes}
    hits = {kind: [] for kind in indexes}
    for start in range(0, len(query_vectors), BLOCK):
        block, truths = query_vectors[start : start + BLOCK], []
        for query in block:
            began = time.perf_counter()
            truths.append(exact.search(query, K)[0])
            exact_seconds.append(time.perf_counter() - began)
        # OpenBLAS's worker thread spins for a while after the exact matvec; on 2 cores it took
        # the CPU from the index timed right after (IVF-PQ: 16 ms instead of 7), so let it idle
        time.sleep(0.2)
        for kind, index in indexes.items():
            for query, truth in zip(block, truths):
                began = time.perf_counter()
                found, _ = index.search(query, K)
                seconds[kind].append(time.perf_counter() - began)
                hits[kind].append(len(np.intersect1d(found, truth)) / K)

    exact_ms = 1e3 * float(np.median(exact_seconds))
    result = []
    for kind, index in indexes.items():
        ours_ms = 1e3 * float(np.median(seconds[kind]))
        build_s, rss_delta = builds[kind]
        params = ", ".join(f"{key}={value}" for key, value in index.params.items())
        full_size = settings[kind] == SETTINGS.get(kind) and (n, dim) == (N, DIM)
        target = TARGETS.get(kind) if full_size else None
        inserted = getattr(index, "seconds", {})
        stored = f"build {build_s:.1f} s"
        if inserted:
            stored = (f"insert {inserted['insert']:.1f} s + index {inserted['index']:.1f} s; on "
                      f"disk {megabytes(index.disk_bytes())}")
        result.append({
            "stage": f"ANN top-{K} query, p50: {LABELS.get(kind, kind)}",
            "baseline": round(exact_ms, 3),
            "ours": round(ours_ms, 4),
            "ratio": float(f"{exact_ms / ours_ms:.3g}"),  # 3 digits: Milvus Lite is far below 1
            "unit": "ms",
            "recall": round(float(np.mean(hits[kind])), 4),
            **({"target": target[0]} if target and target[0] else {}),
            **({"recall_target": target[1]} if target else {}),
            "build_s": round(build_s, 1),
            **{f"{step}_s": round(value, 1) for step, value in inserted.items()},
            "index_bytes": int(index.nbytes),
            "note": (
                f"{n:,} x {dim} clustered, {len(query_vectors)} queries one at a time; "
                f"p99 {1e3 * np.percentile(seconds[kind], 99):.3g} ms vs exact "
                f"{1e3 * np.percentile(exact_seconds, 99):.3g} ms; {stored}; "
                f"index {megabytes(index.nbytes)} (RSS +{megabytes(rss_delta)}); {params}"
            ),
        })
    for index in indexes.values():
        getattr(index, "close", lambda: None)()  # Milvus: stop its server, delete its folder
    return result


if __name__ == "__main__":
    for row in rows():
        print(f"{row['stage']}: {row['baseline']} -> {row['ours']} ms, ratio {row['ratio']}, "
              f"recall {row['recall']} ({row['note']})")

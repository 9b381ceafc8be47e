"""Approximate search: how much recall an index gives up for how much speed.

Notebook 6 measures the indexes of :mod:`capstone.search.ann` on generated embeddings: clustered unit
vectors, like a database of image embeddings (images of one scene lie close together). For each
index, Recall@k is the share of the exact top ``k`` (by cosine) it returns, averaged over the
queries, and latency is the median time of one ``index.search(vector, k)`` call. The index is
built by the function passed in, so this module does not depend on how it is built.
"""

from __future__ import annotations

import time

import numpy as np

from capstone.course.text import unit_rows


def clustered_embeddings(n: int = 20_000, dim: int = 50, *, n_queries: int = 200,
                         n_clusters: int = 200, spread: float = 0.5, seed: int = 0,
                         chunk: int = 50_000):
    """``(data, queries)``: unit float32 rows around ``n_clusters`` random unit centres.

    The queries are drawn like the data (not from it), so the exact neighbours are not trivial.
    Rows are drawn ``chunk`` at a time in float32, so making them takes little more memory than
    the result (``n * dim * 4`` bytes).
    """
    rng = np.random.default_rng(seed)
    centres = unit_rows(rng.standard_normal((n_clusters, dim), dtype=np.float32))
    noise = np.float32(spread / np.sqrt(dim))

    def draw(count):
        rows = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            near = centres[rng.integers(n_clusters, size=size)]
            near += noise * rng.standard_normal((size, dim), dtype=np.float32)
            rows[start:start + size] = unit_rows(near)
        return rows

    return draw(n), draw(n_queries)


def exact_neighbours(data, queries, k: int = 10, *, chunk: int = 4) -> np.ndarray:
    """``(n_queries, k)`` rows of each query's ``k`` highest cosines, best first.

    Scored ``chunk`` queries at a time, so the scores take ``chunk * n`` floats, not one per
    query and row.
    """
    data, queries = np.asarray(data), np.asarray(queries)
    found = []
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ data.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        found.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(found) if found else np.empty((0, k), dtype=np.int64)


def measure_indexes(build_index, data, queries, kinds, *, k: int = 10, params=None,
                    visit_less=None) -> list:
    """Build each kind of index on ``data``; its Recall@k and median latency per query.

    Parameters
    ----------
    build_index : callable
        ``build_index(data, kind=kind, **params[kind])`` returns an object whose
        ``search(vector, k)`` gives ``(rows, scores)`` (e.g. :func:`capstone.search.ann.build_index`).
    data, queries : arrays of unit rows
    kinds : sequence of str
    params : dict, optional
        ``kind -> keyword arguments`` for ``build_index``.
    visit_less : dict, optional
        ``kind -> {attribute: value}``: a search setting of the built index (``ef_search``,
        ``nprobe``) to measure it again with, without building it again; its row's ``kind``
        says so (``"hnsw, ef_search=4"``) and repeats the build time.

    Returns
    -------
    list of dict
        ``kind``, ``recall`` (at ``k``), ``latency_ms`` (median), ``build_s``.
    """
    truth = exact_neighbours(data, queries, k)
    rows = []
    for kind in kinds:
        started = time.perf_counter()
        index = build_index(data, kind=kind, **(params or {}).get(kind, {}))
        build_s = time.perf_counter() - started
        rows.append({"kind": kind, **_searched(index, queries, truth, k), "build_s": build_s})
        for name, value in (visit_less or {}).get(kind, {}).items():
            setattr(index, name, value)
            rows.append({"kind": f"{kind}, {name}={value}", **_searched(index, queries, truth, k),
                         "build_s": build_s})
    return rows


def _searched(index, queries, truth, k: int) -> dict:
    """``recall`` (share of the exact top ``k``) and median ``latency_ms`` of ``index``."""
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        result, _ = index.search(query, k)
        times.append(time.perf_counter() - started)
        found.append(np.asarray(result)[:k])
    recall = np.mean([len(np.intersect1d(f, t)) / k for f, t in zip(found, truth)])
    return {"recall": float(recall), "latency_ms": 1e3 * float(np.median(times))}


def plot_tradeoff(rows, k: int = 10, ax=None):
    """Recall@k against median latency, one marker per index, each named beside the plot.

    The names are not printed at the points, where indexes of nearly the same recall and latency
    would put them on top of each other: they stand in a column right of the axes, one line
    apart, in the order of the points' recall, each joined to its point by a line of its colour.
    Each name also gives the recall, latency and build time.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    markers = "osD^vP*X"
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    points = []
    for number, row in enumerate(rows):
        colour = colours[number % len(colours)]
        ax.scatter(row["latency_ms"], row["recall"], s=60, marker=markers[number % len(markers)],
                   color=colour, alpha=0.8, zorder=3)
        points.append((row, colour))
    ax.set(xscale="log", xlabel="median latency per query (ms, log scale)",
           ylabel=f"Recall@{k} (share of the exact top {k})",
           ylim=(max(0.0, min(row["recall"] for row in rows) - 0.1), 1.02))
    ax.grid(alpha=0.3)
    # highest recall at the top; ties by latency, so the column reads like the points
    points.sort(key=lambda point: (-point[0]["recall"], point[0]["latency_ms"]))
    for place, (row, colour) in enumerate(points):
        y = 1.0 - place / max(1, len(points) - 1) if len(points) > 1 else 0.5
        ax.annotate(f"{row['kind']}: R@{k} {row['recall']:.3f}, {row['latency_ms']:.2f} ms, "
                    f"built in {row['build_s']:.1f} s",
                    xy=(row["latency_ms"], row["recall"]), xycoords="data",
                    xytext=(1.04, y), textcoords="axes fraction", va="center", fontsize="small",
                    color=colour, arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.8,
                                              "alpha": 0.6, "shrinkB": 5})
    ax.figure.tight_layout()
    return ax.figure


def plot_labels(figure) -> list:
    """The index names a :func:`plot_tradeoff` figure prints, top to bottom."""
    texts = [text for text in figure.axes[0].texts if text.get_text()]
    texts.sort(key=lambda text: -text.xyann[1])
    return [text.get_text().split(":")[0] for text in texts]

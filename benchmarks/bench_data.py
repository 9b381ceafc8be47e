"""Loading the data: the course's parsers against the project's caches, at (near) real size.

GloVe: a seeded synthetic word2vec text file of 100,000 words x 200 dims (a quarter of
``glove.6B.200d``'s 400,000 words, in its number format), parsed by gensim's
``load_word2vec_format`` as the course does, against :func:`capstone.data.glove.load_glove_file`'s
first load (parse + write the cache) and its later loads (a memory map of the cache).

Features: a seeded synthetic ``resnet18_features.pkl`` with COCO's 82,612 arrays of shape
(1, 512), ``pickle.load`` as the course does (which gives only the dict), against
:func:`capstone.data.store.load_features` reading its ``.npz`` cache (sorted ids + an aligned array).

Everything is written to a temporary folder, the cache included. Run alone with
``python benchmarks/bench_data.py``.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GLOVE_WORDS, GLOVE_DIM = 100_000, 200
N_FEATURES = 82_612  # arrays in the course's resnet18_features.pkl
GLOVE_CACHED_TARGET = 20.0
FEATURES_CACHED_TARGET = 1.5


def write_word2vec(path: Path, n_words=GLOVE_WORDS, dim=GLOVE_DIM, seed=0) -> Path:
    """A word2vec text file with GloVe's format: ``word`` then ``dim`` numbers like ``-0.41242``."""
    vectors = np.random.default_rng(seed).normal(0.0, 0.4, size=(n_words, dim))
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"{n_words} {dim}\n")
        row_format = " ".join(["%.5f"] * dim)
        for index, vector in enumerate(vectors):
            file.write(f"word{index} {row_format % tuple(vector)}\n")
    return path


def write_features_pickle(path: Path, n_images=N_FEATURES, seed=0) -> Path:
    """A dict image_id -> float32 (1, 512) array, pickled as the course's file is."""
    rng = np.random.default_rng(seed)
    image_ids = rng.choice(600_000, size=n_images, replace=False)
    features = rng.normal(size=(n_images, 1, 512)).astype(np.float32)
    with open(path, "wb") as file:
        pickle.dump({int(image_id): row for image_id, row in zip(image_ids, features)}, file)
    return path


def best_seconds(function, repeats=3):
    """Shortest of ``repeats`` wall-clock runs of ``function()``, and its last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def seconds_row(stage, baseline, ours, note, target=None) -> dict:
    """A row timed in seconds: ``ratio`` = baseline / ours (higher is better)."""
    row = {"stage": stage, "baseline": baseline, "ours": ours, "ratio": baseline / ours}
    return row | {"unit": "s", "note": note} | ({"target": target} if target else {})


def glove_rows(folder: Path) -> list[dict]:
    """GloVe: gensim's parse against our first load and our cached (memory-mapped) load."""
    from gensim.models import KeyedVectors

    from capstone.data.glove import load_glove_file

    path = write_word2vec(folder / "glove.txt")
    course, expected = best_seconds(lambda: KeyedVectors.load_word2vec_format(path), repeats=1)
    first, _ = best_seconds(lambda: load_glove_file(path), repeats=1)
    cached, kv = best_seconds(lambda: load_glove_file(path))
    if kv.index_to_key != expected.index_to_key or not np.array_equal(kv.vectors, expected.vectors):
        raise AssertionError("the cached GloVe differs from gensim's parse")
    size = f"{GLOVE_WORDS:,} x {GLOVE_DIM} (1/4 of glove.6B.200d)"
    return [
        seconds_row(
            "GloVe first load: gensim parse vs ours (parse + write cache)", course, first,
            f"{size}; best of 1",
        ),
        seconds_row(
            "GloVe load: text parse vs cached mmap", course, cached,
            f"{size}; ours best of 3, memory-mapped (pages read on use); vectors equal",
            GLOVE_CACHED_TARGET,
        ),
    ]


def features_rows(folder: Path) -> list[dict]:
    """Features: ``pickle.load`` of the course's file against our ``.npz`` cache."""
    from capstone.data.store import load_features

    path = write_features_pickle(folder / "resnet18_features.pkl")

    def course():
        with open(path, "rb") as file:
            return pickle.load(file)

    course_seconds, table = best_seconds(course)
    load_features(path)  # the first load writes the cache
    ours_seconds, (image_ids, features) = best_seconds(lambda: load_features(path))
    if not np.array_equal(features[-1:], table[int(image_ids[-1])]):
        raise AssertionError("the cached features differ from the pickle")
    return [
        seconds_row(
            "features: pickle vs npz cache", course_seconds, ours_seconds,
            f"{N_FEATURES:,} x (1, 512) float32; best of 3; pickle.load gives only the dict, "
            "ours sorted ids + an aligned (n, 512) array",
            FEATURES_CACHED_TARGET,
        )
    ]


def rows() -> list[dict]:
    """The GloVe and features rows, every file (the cache too) in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        previous = os.environ.get("CAPSTONE_CACHE")
        os.environ["CAPSTONE_CACHE"] = str(Path(folder) / "cache")
        try:
            return glove_rows(Path(folder)) + features_rows(Path(folder))
        finally:
            if previous is None:
                os.environ.pop("CAPSTONE_CACHE")
            else:
                os.environ["CAPSTONE_CACHE"] = previous


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import format_table

    print(format_table(rows()))

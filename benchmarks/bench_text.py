"""``se_text`` at COCO size: the course's per-caption loops against :class:`TextEmbedder`.

414,113 synthetic captions (COCO's training count) of 8+ words (10.5 on average, as COCO's),
drawn Zipf-like from the 25,000 most frequent alphabetic words of the real 50-d GloVe, with a
capital first letter and a full stop. Seeded, so every run times the same work.
"""

from __future__ import annotations

import re
import string
import time
from collections import Counter
import numpy as np

N_CAPTIONS = 414_113  # captions in COCO's captions_train2014.json
N_WORDS = 25_000  # about COCO's training vocabulary
BASELINE_CAPTIONS = 10_000  # the per-caption embedding loop is timed on this many
REPEATS = 5  # embedding: the best of this many runs of each, alternating
EMBED_TARGET = 10.0


def load_glove_in_memory():
    """The real 50-d GloVe, read into memory as the course's ``load_word2vec_format`` does."""
    from capstone.data.glove import load_glove

    glove = load_glove("glove-50d")
    glove.vectors = np.array(glove.vectors)  # a memory map makes glove[word] several times slower
    return glove


def coco_like_captions(glove, n_captions=N_CAPTIONS, seed=0) -> list[str]:
    """Seeded captions of GloVe words with COCO's count and length, e.g. 'A man on a horse.'"""
    rng = np.random.default_rng(seed)
    words = [word for word in glove.index_to_key[: 2 * N_WORDS] if word.isalpha()][:N_WORDS]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    lengths = 8 + rng.poisson(2.5, size=n_captions)
    tokens = np.array(words)[rng.choice(len(words), size=lengths.sum(), p=zipf / zipf.sum())]
    tokens = tokens.tolist()
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [" ".join(tokens[start:end]).capitalize() + "." for start, end in zip(starts, ends)]


# -- the course's code, per caption ------------------------------------------------------------
punc_regex = re.compile("[{}]".format(re.escape(string.punctuation)))


def course_tokenize(text):
    return punc_regex.sub("", text).lower().split()


def course_idf(captions):
    counter = Counter()
    for caption in captions:
        counter.update(set(course_tokenize(caption)))
    n = len(captions)
    return {word: np.log10(n / count) for word, count in counter.items()}


def course_se_text(caption, idf, glove):
    tokens = course_tokenize(caption)
    embedding = sum(idf[word] * glove[word] for word in tokens if word in glove)
    return embedding / np.linalg.norm(embedding)


# -- timing ------------------------------------------------------------------------------------
def best_seconds(baseline, ours, repeats):
    """Shortest wall-clock seconds of ``baseline()`` and of ``ours()``, and their last results.

    The two alternate, so that a burst of load from other processes slows both alike.
    """
    times, results = ([], []), [None, None]
    for _ in range(repeats):
        for which, function in enumerate((baseline, ours)):
            start = time.perf_counter()
            results[which] = function()
            times[which].append(time.perf_counter() - start)
    return min(times[0]), min(times[1]), results


def rows() -> list[dict]:
    """Fitting the IDF and embedding every caption: the course's loops against ours."""
    from capstone.course.text import TextEmbedder

    glove = load_glove_in_memory()
    captions = coco_like_captions(glove)
    n = len(captions)

    course_fit, ours_fit, (idf, embedder) = best_seconds(
        lambda: course_idf(captions), lambda: TextEmbedder.fit(captions, glove, "glove-50d"), 2
    )
    ours_idf = dict(zip(embedder.vocab.tolist(), embedder.idf.tolist()))
    idf_diff = max(abs(ours_idf[word] - value) for word, value in idf.items() if word in glove)

    subset = captions[:BASELINE_CAPTIONS]
    course_embed, ours_embed, (expected, embeddings) = best_seconds(
        lambda: np.stack([course_se_text(caption, idf, glove) for caption in subset]),
        lambda: embedder.embed(captions),
        REPEATS,
    )
    embed_diff = float(np.abs(embeddings[: len(subset)] - expected).max())
    if idf_diff > 1e-5 or embed_diff > 1e-4:
        raise AssertionError(f"disagrees with the course: idf by {idf_diff}, vectors by {embed_diff}")

    baseline_fit, baseline_embed = n / course_fit, len(subset) / course_embed
    return [
        {
            "stage": "text: fit IDF",
            "baseline": baseline_fit,
            "ours": n / ours_fit,
            "ratio": course_fit / ours_fit,
            "unit": "captions/s",
            "note": f"{n:,} captions, best of 2; course: Counter of set(tokens) per caption",
        },
        {
            "stage": "text: embed captions",
            "baseline": baseline_embed,
            "ours": n / ours_embed,
            "ratio": (n / ours_embed) / baseline_embed,
            "unit": "captions/s",
            "target": EMBED_TARGET,
            "note": (
                f"course loop timed on {len(subset):,} captions, ours on all {n:,} "
                f"(best of {REPEATS} each); max |diff| {embed_diff:.1e}"
            ),
        },
    ]

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
BASELINE_CAPTIONS = 20_000  # the per-caption embedding loop is timed on this many
EMBED_TARGET = 10.0


def load_glove_in_memory():
    """The real 50-d GloVe, read into memory as the course's ``load_word2vec_format`` does."""
    from capstone.glove import load_glove

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
def best_seconds(function, repeats=3):
    """Shortest of ``repeats`` wall-clock runs of ``function()``, and its last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def rows() -> list[dict]:
    from capstone.text import TextEmbedder

    glove = load_glove_in_memory()
    captions = coco_like_captions(glove)
    n = len(captions)

    course_fit, idf = best_seconds(lambda: course_idf(captions), repeats=1)
    ours_fit, embedder = best_seconds(lambda: TextEmbedder.fit(captions, glove, "glove-50d"), 1)
    ours_idf = dict(zip(embedder.vocab.tolist(), embedder.idf.tolist()))
    idf_diff = max(abs(ours_idf[word] - value) for word, value in idf.items() if word in glove)

    subset = captions[:BASELINE_CAPTIONS]
    course_embed, expected = best_seconds(
        lambda: np.stack([course_se_text(caption, idf, glove) for caption in subset])
    )
    ours_embed, embeddings = best_seconds(lambda: embedder.embed(captions))
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
            "note": f"{n:,} captions; course: Counter of set(tokens) per caption",
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
                f"(best of 3 each); max |diff| {embed_diff:.1e}"
            ),
        },
    ]

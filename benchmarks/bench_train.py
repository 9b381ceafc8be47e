"""Training at COCO size: hard-negative triple generation and one training epoch.

Synthetic work of COCO's shape, seeded: 82,612 images with 512-d random features, 414,113
captions (five per image, the rest spread over random images) with random unit 200-d embeddings
(the 200-d GloVe space), the 4/5 training split: about 331,000 triples, 25 candidates each.

triple generation  ours: :func:`capstone.course.triples.make_triples` (vectorised, blocked gathers)
                   baseline: a per-caption Python loop over the same image-text matrix
                   (draw 25 other images, score, keep the best), timed on 3,000 captions and
                   scaled to the epoch's count; the matrix is computed once and counted once
training epoch     ours: :func:`capstone.course.train.train_epoch` (MyNN dense layer, mygrad graph,
                   ``loss.backward()``, MyNN SGD with momentum, noggin recording every batch)
                   baseline: the same forward, backward and momentum step written in bare NumPy
                   (both with one BLAS thread, as training runs)
share              an epoch with its triple generation (baseline) vs the generation alone (ours):
                   the ratio is 1 / (generation's share of the epoch)

``ratio`` is baseline / ours, higher is better, as ``benchmarks/run.py`` reads it.
"""

from __future__ import annotations

import time

import numpy as np

N_IMAGES, N_CAPTIONS, DIM, N_CANDIDATES = 82_612, 414_113, 200, 25
LOOP_CAPTIONS = 3_000
# Vectorised triples at least 2x the per-caption loop. Both spend most of their time gathering
# 25 random rows of the image-text matrix per caption (0.24 of 0.28 s per 32,768 captions,
# vectorised), which a loop does at the same memory speed: 2.4-4.3x in three runs. The 9.5-47x of
# earlier runs scaled the matrix's one-off computation 110-fold into the baseline.
TRIPLES_TARGET = 2.0
EPOCH_TARGET = 0.2  # MyNN + mygrad + noggin within 5x of the bare NumPy arithmetic
SHARE_TARGET = 2.0  # triple generation at most half of an epoch (it must not dominate)
SETTINGS = dict(batch_size=32, lr=1e-3, momentum=0.9, margin=0.25)


def coco_sized(seed: int = 0):
    """A :class:`capstone.data.dataset.Dataset` of COCO's size and its caption embeddings."""
    from capstone.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    image_ids = np.arange(N_IMAGES, dtype=np.int64) * 3 + 9
    extra = rng.choice(image_ids, N_CAPTIONS - 5 * N_IMAGES)
    caption_image_ids = np.sort(np.r_[np.repeat(image_ids, 5), extra])
    embeddings = rng.standard_normal((N_CAPTIONS, DIM), dtype=np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    dataset = Dataset(
        name="bench", image_ids=image_ids,
        features=rng.standard_normal((N_IMAGES, 512), dtype=np.float32),
        caption_ids=np.arange(N_CAPTIONS, dtype=np.int64), caption_image_ids=caption_image_ids,
        captions=["a caption"] * N_CAPTIONS, urls={}, image_captions={}, scenes=None,
        missing_image_ids=np.zeros(0, np.int64), n_captions_total=N_CAPTIONS,
    )
    return dataset, embeddings


def loop_setup(dataset, embeddings) -> tuple:
    """What the per-caption loop needs once: the training images' rows, the captions' rows,
    each caption's own image and every image's text embedding (vectorised, done once)."""
    from capstone.course.triples import image_text_embeddings

    image_rows = dataset.rows(dataset.train_image_ids)
    caption_rows = np.flatnonzero(dataset.train_captions_mask)
    good = np.searchsorted(image_rows, dataset.rows(dataset.caption_image_ids[caption_rows]))
    image_text = image_text_embeddings(good, embeddings[caption_rows], len(image_rows))
    return image_rows, caption_rows, good, image_text


def looped_hard_negatives(setup, embeddings, n_captions: int, seed: int = 0) -> np.ndarray:
    """The per-caption loop: for each caption, 25 random other images, keep the most similar."""
    image_rows, caption_rows, good, image_text = setup
    rng = np.random.default_rng(seed)
    bad = np.empty(n_captions, dtype=np.int64)
    for i in range(n_captions):
        candidates = rng.integers(0, len(image_rows) - 1, N_CANDIDATES)
        candidates += candidates >= good[i]
        scores = image_text[candidates] @ embeddings[caption_rows[i]]
        bad[i] = image_rows[candidates[np.argmax(scores)]]
    return bad


def numpy_epoch(weight, bias, features, embeddings, triples, settings) -> None:
    """The epoch's arithmetic in bare NumPy: forward, hand-written backward, momentum SGD."""
    batch_size, lr, momentum, margin = (settings[k] for k in ("batch_size", "lr", "momentum",
                                                              "margin"))
    weight_moment, bias_moment = np.zeros_like(weight), np.zeros_like(bias)
    for start in range(0, len(triples), batch_size):
        rows = slice(start, start + batch_size)
        text = embeddings[triples.caption_rows[rows]]
        n = len(text)
        x = np.concatenate([features[triples.good_rows[rows]], features[triples.bad_rows[rows]]])
        embedded = x @ weight + bias
        norms = np.sqrt((embedded**2).sum(axis=1, keepdims=True) + 1e-12)
        unit = embedded / norms
        both_text = np.concatenate([text, text])
        similarity = (unit * both_text).sum(axis=1)
        active = ((margin - (similarity[:n] - similarity[n:])) > 0).astype(weight.dtype)
        d_similarity = np.r_[-active, active] / n
        d_unit = d_similarity[:, None] * both_text
        d_embedded = (d_unit - unit * (d_unit * unit).sum(axis=1, keepdims=True)) / norms
        weight_moment *= momentum
        weight_moment -= lr * (x.T @ d_embedded)
        bias_moment *= momentum
        bias_moment -= lr * d_embedded.sum(axis=0)
        weight += weight_moment
        bias += bias_moment


def rows() -> list[dict]:
    """Triple generation (vectorised vs loop), one epoch (ours vs bare NumPy), and their share."""
    from threadpoolctl import threadpool_limits

    from capstone.course.image import ImageEmbedder
    from capstone.ui.live import new_recorder
    from capstone.course.train import PRESETS, make_optimizer, train_epoch
    from capstone.course.triples import make_triples

    dataset, embeddings = coco_sized()
    start = time.perf_counter()
    triples = make_triples(dataset, embeddings, negatives="hard", n_candidates=N_CANDIDATES,
                           seed=0).shuffled(np.random.default_rng(0))
    generation = time.perf_counter() - start
    start = time.perf_counter()
    setup = loop_setup(dataset, embeddings)
    once = time.perf_counter() - start
    start = time.perf_counter()
    looped_hard_negatives(setup, embeddings, LOOP_CAPTIONS)
    # the loop's own time scaled to every caption; what it needs once, counted once
    looped = once + (time.perf_counter() - start) * len(triples) / LOOP_CAPTIONS

    image = ImageEmbedder(512, DIM, seed=0)
    weight, bias = (array.copy() for array in image.get_arrays().values())
    start = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):  # as training runs
        numpy_epoch(weight, bias, dataset.features, embeddings, triples, SETTINGS)
    bare = time.perf_counter() - start
    settings = PRESETS["course"].replace(**SETTINGS)
    optim = make_optimizer(settings, image.parameters)
    start = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):  # as capstone.pipeline.training runs it
        train_epoch(image, optim, dataset.features, embeddings, triples, settings,
                    new_recorder(plot=False, live=False))
    epoch = time.perf_counter() - start

    note = (f"{N_IMAGES:,} images x 512, {N_CAPTIONS:,} captions x {DIM}-d, "
            f"{len(triples):,} triples, batch {SETTINGS['batch_size']}")
    share = generation / (generation + epoch)
    return [
        seconds_row("hard-negative triples, one epoch", looped, generation, TRIPLES_TARGET,
                    f"{note}, {N_CANDIDATES} candidates; loop timed on {LOOP_CAPTIONS:,} "
                    "captions and scaled"),
        seconds_row("training epoch (MyNN + mygrad)", bare, epoch, EPOCH_TARGET,
                    f"{note}; baseline: the same math in bare NumPy"),
        seconds_row("epoch with triples vs triples alone", generation + epoch, generation,
                    SHARE_TARGET, f"triple generation is {share:.0%} of an epoch"),
    ]


def seconds_row(stage, baseline, ours, target, note) -> dict:
    """A row in seconds; ``ratio`` = baseline / ours (higher is better)."""
    return {"stage": stage, "baseline": round(baseline, 2), "ours": round(ours, 2),
            "ratio": round(baseline / ours, 3), "unit": "s", "target": target, "note": note}


if __name__ == "__main__":
    for row in rows():
        print(f"{row['stage']:<38} baseline {row['baseline']:8.2f} {row['unit']}  "
              f"ours {row['ours']:8.2f} {row['unit']}  ratio {row['ratio']:.3f} "
              f"(target {row['target']})  ({row['note']})")

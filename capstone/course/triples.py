"""Training triples: (caption, its image, a bad image), drawn from one split of the images.

A triple teaches the image embedder that the caption should be closer to its own ("good") image
than to another ("bad") one. Random bad images are mostly easy (a caption about a boat against a
picture of a tree); *hard* negatives are picked, among ``n_candidates`` random images, as the one
whose own captions are closest in meaning to the caption, so the model must learn the fine
differences.

Everything is vectorised: one COCO epoch (~331,000 triples, 25 candidates each) takes a few
seconds, see ``benchmarks/bench_train.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from capstone.course.text import unit_rows

SPLITS = ("train", "validation")
NEGATIVES = ("hard", "random")
VALIDATION_SEED = 2014  # validation triples are the same in every run, so accuracies compare
CHUNK = 1024  # triples scored per block in hard-negative search (fits in cache, bounds memory)


@dataclass(frozen=True)
class Triples:
    """Aligned int64 rows of (caption, good image, bad image) triples.

    ``caption_rows`` index ``dataset.captions`` (and the caption embeddings); ``good_rows`` and
    ``bad_rows`` index ``dataset.features``: the caption's own image and another of its split.
    """

    caption_rows: np.ndarray
    good_rows: np.ndarray
    bad_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.caption_rows)

    def shuffled(self, rng: np.random.Generator) -> Triples:
        """The same triples in a random order."""
        order = rng.permutation(len(self))
        return Triples(self.caption_rows[order], self.good_rows[order], self.bad_rows[order])


def image_text_embeddings(image_of_caption, caption_embeddings, n_images, rows=None) -> np.ndarray:
    """``(n_images, D)`` unit mean of each image's caption embeddings (zero: no caption).

    ``image_of_caption[i]`` is caption ``i``'s image, in ``range(n_images)``; caption ``i`` is
    ``caption_embeddings[i]``, or ``caption_embeddings[rows[i]]`` when ``rows`` is given (no copy
    of those rows).
    """
    n_captions = len(image_of_caption)
    columns = np.arange(n_captions) if rows is None else rows
    owner = scipy.sparse.csr_matrix(
        (np.ones(n_captions, np.float32), (image_of_caption, columns)),
        shape=(n_images, len(caption_embeddings)),
    )
    return unit_rows(owner @ caption_embeddings)


def draw_other(good, n_choices, size, rng) -> np.ndarray:
    """``(len(good), size)`` uniform draws from ``range(n_choices)``, never a row's ``good``."""
    draws = rng.integers(0, n_choices - 1, size=(len(good), size))
    return draws + (draws >= good[:, None])  # skip over the good one


def make_triples(
    dataset,
    caption_embeddings: np.ndarray,
    *,
    split: str = "train",
    negatives: str = "hard",
    n_candidates: int = 25,
    seed: int | None = None,
) -> Triples:
    """One triple per caption of ``split``'s images, with a bad image from the same split.

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset
    caption_embeddings : numpy.ndarray, shape (n_captions, D)
        Unit (or zero) rows aligned with ``dataset.captions``. Captions whose embedding is zero
        (no word known to GloVe) teach nothing and are left out.
    split : {"train", "validation"}
        Only this split's images serve as good and bad images, so splits never leak.
    negatives : {"hard", "random"}
        ``"random"``: any other image of the split. ``"hard"``: of ``n_candidates`` random other
        images, the one whose mean caption embedding is most similar to the caption.
    n_candidates : int
        Candidates per hard negative (capped at the split's images minus one).
    seed : int, optional
        Seed of the draws. ``None`` gives fresh draws for ``"train"`` and the fixed
        :data:`VALIDATION_SEED` for ``"validation"``, so validation triples are the same in
        every run.

    Returns
    -------
    Triples
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
    caption_embeddings = np.asarray(caption_embeddings, dtype=np.float32)
    if caption_embeddings.ndim != 2 or len(caption_embeddings) != len(dataset.captions):
        raise ValueError(
            f"caption_embeddings must have one row per caption ({len(dataset.captions)}), "
            f"got shape {caption_embeddings.shape}; embed dataset.captions with the text embedder"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    split_ids = dataset.train_image_ids if split == "train" else dataset.val_image_ids
    image_rows = dataset.rows(split_ids)
    if len(image_rows) < 2:
        raise ValueError(f"the {split} split needs at least 2 images, has {len(image_rows)}")
    if seed is None and split == "validation":
        seed = VALIDATION_SEED
    rng = np.random.default_rng(seed)

    in_split = dataset.caption_mask(dataset.image_ids[image_rows])
    known = np.any(caption_embeddings != 0, axis=1)
    caption_rows = np.flatnonzero(in_split & known)
    if len(caption_rows) == 0:  # else training runs on nothing and every accuracy is NaN
        raise ValueError(f"no {split} caption has a word GloVe knows: check the captions file")
    good_rows = dataset.rows(dataset.caption_image_ids[caption_rows])
    good = np.searchsorted(image_rows, good_rows)  # positions within the split

    if negatives == "random":
        bad = draw_other(good, len(image_rows), 1, rng)[:, 0]
    else:
        # the rows are passed, not copied: 66 MB at COCO's size
        image_text = image_text_embeddings(good, caption_embeddings, len(image_rows), caption_rows)
        bad = hardest_candidates(caption_embeddings, image_text, good, n_candidates, rng,
                                 rows=caption_rows)
    return Triples(caption_rows.astype(np.int64), good_rows.astype(np.int64), image_rows[bad])


def epoch_triples(dataset, caption_embeddings, settings, rng):
    """An epoch's fresh training triples, shuffled, with the ``negatives`` and ``n_candidates`` of
    ``settings``; drawn from ``rng`` (seeded once per run), as notebook 4's loop draws them."""
    return make_triples(dataset, caption_embeddings, negatives=settings.negatives,
                        n_candidates=settings.n_candidates,
                        seed=rng.integers(2**32)).shuffled(rng)


def validation_triples(dataset, caption_embeddings) -> dict:
    """The fixed validation triples: ``{"hard": Triples, "random": Triples}``."""
    return {kind: make_triples(dataset, caption_embeddings, split="validation", negatives=kind)
            for kind in NEGATIVES}


def hardest_candidates(text, image_text, good, n_candidates, rng, *, rows=None) -> np.ndarray:
    """For each caption, the most similar of ``n_candidates`` random images other than its own.

    ``text`` (n, D) are the captions' embeddings (with ``rows``, caption ``i`` is
    ``text[rows[i]]``), ``image_text`` (n_images, D) each image's unit mean caption embedding,
    ``good`` (n,) each caption's own image. Returns indices into ``image_text``.
    """
    n_candidates = min(n_candidates, len(image_text) - 1)
    candidates = draw_other(good, len(image_text), n_candidates, rng)
    best = np.empty(len(good), dtype=np.int64)
    for start in range(0, len(good), CHUNK):
        block = slice(start, start + CHUNK)
        captions = text[block] if rows is None else text[rows[block]]
        scores = np.einsum("nd,nkd->nk", captions, image_text[candidates[block]])
        best[block] = candidates[block][np.arange(len(scores)), scores.argmax(axis=1)]
    return best


def triple_metrics(image_embeddings, caption_embeddings, triples: Triples, margin: float) -> dict:
    """Mean margin ranking ``loss`` and ``accuracy`` of fixed triples, in plain NumPy.

    ``image_embeddings`` are the unit embeddings of every row of ``dataset.features``.
    """
    text = caption_embeddings[triples.caption_rows]
    sim_good = np.einsum("nd,nd->n", text, image_embeddings[triples.good_rows])
    sim_bad = np.einsum("nd,nd->n", text, image_embeddings[triples.bad_rows])
    loss = np.maximum(0, margin - (sim_good - sim_bad)).mean()
    return {"loss": float(loss), "accuracy": triple_accuracy(sim_good, sim_bad)}


def triple_accuracy(sim_good, sim_bad) -> float:
    """Share of triples whose caption is more similar to the good image than to the bad one."""
    return float(np.mean(np.asarray(sim_good) > np.asarray(sim_bad)))

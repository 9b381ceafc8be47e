"""The closed-form reference: ridge regression from image features to caption embeddings.

Fitted on the training images only: their standardised features ``X`` (n, 512) and, as targets
``Y`` (n, D), each image's unit mean caption embedding. With ``Y`` centred::

    M = (X^T X + alpha I)^-1 X^T (Y - mean(Y)),    b = mean(Y)

It needs no learning rate, no epochs and no negatives: a trained map that does not beat it has
not learned anything least squares could not. ``alpha`` is small next to ``X^T X``'s diagonal
(``n``, the number of training images), so it only keeps the solve well conditioned.
"""

from __future__ import annotations

import numpy as np

from capstone.course.image import ImageEmbedder
from capstone.course.text import unit_rows
from capstone.further.embedders import CHUNK, Standardized, feature_scaling

ALPHA = 1.0


def ridge_targets(dataset, text, image_ids) -> np.ndarray:
    """``(len(image_ids), D)`` unit mean caption embedding of each image (sorted ids), the
    captions embedded :data:`CHUNK` at a time."""
    image_ids = np.asarray(image_ids)
    mask = dataset.caption_mask(image_ids)
    owners = np.searchsorted(image_ids, dataset.caption_image_ids[mask])
    texts, sums = dataset.captions_where(mask), np.zeros((len(image_ids), text.dim), np.float32)
    for start in range(0, len(owners), CHUNK):
        np.add.at(sums, owners[start:start + CHUNK], text.embed(texts[start:start + CHUNK]))
    return unit_rows(sums)


def ridge_map(dataset, text, *, alpha: float = ALPHA) -> Standardized:
    """The ridge map of ``dataset``'s training images: standardised features to each image's
    unit mean caption embedding (by ``text``), as an image embedder.

    ``X^T X`` and ``X^T Y`` are summed in float64 over chunks of :data:`CHUNK` images, so the
    memory it takes does not grow with the number of images (``X`` whole in float64, with its
    standardised copy, is 540 MB at COCO's size).

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset
    text : capstone.course.text.TextEmbedder
        Embeds the target captions.
    alpha : float
        The ridge added to ``X^T X``.
    """
    image_ids = dataset.train_image_ids
    rows = dataset.rows(image_ids)
    mean, std = feature_scaling(dataset.features, rows)
    y = ridge_targets(dataset, text, image_ids)
    offset = y.mean(axis=0, dtype=np.float64)
    gram = alpha * np.eye(len(mean))  # X^T X + alpha I
    cross = np.zeros((len(mean), y.shape[1]))  # X^T (Y - mean(Y))
    for start in range(0, len(rows), CHUNK):
        x = (dataset.features[rows[start:start + CHUNK]].astype(np.float64) - mean) / std
        gram += x.T @ x
        cross += x.T @ (y[start:start + CHUNK] - offset)
    weight = np.linalg.solve(gram, cross)
    inner = ImageEmbedder(len(mean), y.shape[1])
    inner.set_arrays({"weight": weight.astype(np.float32), "bias": offset.astype(np.float32)})
    return Standardized(inner, mean, std)

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
from capstone.course.triples import image_text_embeddings
from capstone.further.embedders import Standardized, feature_scaling

ALPHA = 1.0


def ridge_targets(dataset, text, image_ids) -> np.ndarray:
    """``(len(image_ids), D)`` unit mean caption embedding of each image (sorted ids)."""
    image_ids = np.asarray(image_ids)
    rows = np.flatnonzero(dataset.caption_mask(image_ids))
    owners = np.searchsorted(image_ids, dataset.caption_image_ids[rows])
    embedded = text.embed([dataset.captions[row] for row in rows])
    return image_text_embeddings(owners, embedded, len(image_ids))


def ridge_map(dataset, text, *, alpha: float = ALPHA) -> Standardized:
    """The ridge map of ``dataset``'s training images: standardised features to each image's
    unit mean caption embedding (by ``text``), as an image embedder.

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset
    text : capstone.course.text.TextEmbedder
        Embeds the target captions.
    alpha : float
        The ridge added to ``X^T X``.
    """
    image_ids = dataset.train_image_ids
    features = dataset.features_of(image_ids).astype(np.float64)
    mean, std = feature_scaling(features)
    x = (features - mean) / std
    y = ridge_targets(dataset, text, image_ids).astype(np.float64)
    offset = y.mean(axis=0)
    weight = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (y - offset))
    inner = ImageEmbedder(x.shape[1], y.shape[1])
    inner.set_arrays({"weight": weight.astype(np.float32), "bias": offset.astype(np.float32)})
    return Standardized(inner, mean, std)

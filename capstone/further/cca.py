"""The closed-form two-tower reference: CCA between image features and ``se_text``.

Canonical correlation analysis finds a map of each side, ``X @ Wx`` and ``Y @ Wy``, whose
columns are as correlated as two linear maps can make them; here ``X`` holds the training
images' standardised features and ``Y`` the ``se_text`` vectors of their captions, one row per
(image, caption) pair. This is the "Mean Vec" baseline of Klein, Lev, Sadeh and Wolf (CVPR
2015), with ``se_text`` as the sentence vector. With the regularised covariances ``Cxx``,
``Cyy`` and the cross-covariance ``Cxy``::

    U, S, V^T = svd(Cxx^-1/2 Cxy Cyy^-1/2)
    Wx = Cxx^-1/2 U diag(S),    Wy = Cyy^-1/2 V diag(S)

Each canonical direction is weighed by its correlation ``S`` (the power 1 did best on the
sample among 0, 1/2, 1, 2 and 4). ``Y`` is not centred (second moments): the text map is then
linear, without an offset, so that a query is still a weighted sum of its words' vectors
(:mod:`capstone.further.textmap`); on the sample, centring with an offset did no better.

:func:`fit_cca` solves it from arrays, :func:`cca_embedder` makes a solution an embedder and
:func:`cca_map` does both for a dataset (the ``cca`` column of ``evaluate --compare``);
:func:`start_text_map` starts a learned text map (``text_map="linear"``) from the identity or
from this solution (``text_map_init="cca"``), given the arrays training already has.
"""

from __future__ import annotations

import numpy as np

from capstone.course.image import ImageEmbedder
from capstone.further.embedders import Standardized, feature_scaling
from capstone.further.textmap import TwoTower

REGULARIZATION = 1e-4  # added to each covariance's diagonal, relative to its mean diagonal
CHUNK = 8192  # images standardised at a time: bounds memory at COCO's size


def fit_cca(features, rows, caption_embeddings, owners, *,
            regularization: float = REGULARIZATION) -> dict:
    """CCA of images' features and their captions' ``se_text`` embeddings.

    Parameters
    ----------
    features : array of shape (n, d_features)
        Image features, read ``rows`` a chunk at a time (never copied whole).
    rows : int array of shape (n_images,)
        The rows of ``features`` to fit on (the training images).
    caption_embeddings : array of shape (n_captions, D)
        ``se_text`` of these images' captions, one row per (image, caption) pair.
    owners : int array of shape (n_captions,)
        Each caption's image, as a position in ``rows``.

    Returns
    -------
    dict
        ``image_weight`` (d_features, D) on standardised features, ``text_map`` (D, D),
        ``mean`` and ``std`` of the features, ``correlations`` (D,).
    """
    rows = np.asarray(rows)
    captions = np.asarray(caption_embeddings, dtype=np.float64)
    counts = np.bincount(owners, minlength=len(rows)).astype(np.float64)
    caption_sums = np.zeros((len(rows), captions.shape[1]))
    np.add.at(caption_sums, owners, captions)
    mean, std = feature_scaling(features, rows)
    d_in = len(mean)
    cxx, cxy = np.zeros((d_in, d_in)), np.zeros((d_in, captions.shape[1]))
    for start in range(0, len(rows), CHUNK):
        part = slice(start, start + CHUNK)
        x = (np.asarray(features[rows[part]], dtype=np.float64) - mean) / std
        cxx += (x * counts[part, None]).T @ x
        cxy += x.T @ caption_sums[part]
    n = len(captions)
    cxx, cxy, cyy = cxx / n, cxy / n, captions.T @ captions / n
    whiten_x = inverse_sqrt(regularized(cxx, regularization))
    whiten_y = inverse_sqrt(regularized(cyy, regularization))
    u, correlations, vt = np.linalg.svd(whiten_x @ cxy @ whiten_y, full_matrices=False)
    return {"image_weight": (whiten_x @ u * correlations).astype(np.float32),
            "text_map": (whiten_y @ vt.T * correlations).astype(np.float32),
            "mean": mean, "std": std, "correlations": correlations.astype(np.float32)}


def regularized(covariance, regularization: float) -> np.ndarray:
    """``covariance`` plus ``regularization`` times its mean diagonal on the diagonal."""
    scale = regularization * np.trace(covariance) / len(covariance)
    return covariance + max(scale, 1e-12) * np.eye(len(covariance))


def inverse_sqrt(matrix) -> np.ndarray:
    """``matrix^-1/2`` of a symmetric positive definite matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T


def cca_embedder(solution: dict) -> TwoTower:
    """A :func:`fit_cca` solution as an embedder: a linear map of standardised features, and
    the text map ``T``."""
    weight = solution["image_weight"]
    inner = ImageEmbedder(*weight.shape)
    inner.set_arrays({"weight": weight, "bias": np.zeros(weight.shape[1], np.float32)})
    return TwoTower(Standardized(inner, solution["mean"], solution["std"]), solution["text_map"])


def cca_map(dataset, text) -> TwoTower:
    """The CCA solution of ``dataset``'s training images and ``text`` (``se_text``) as an
    embedder (the ``cca`` column of ``evaluate --compare``)."""
    image_ids = np.asarray(dataset.train_image_ids)
    caption_rows = np.flatnonzero(dataset.caption_mask(image_ids))
    owners = np.searchsorted(image_ids, dataset.caption_image_ids[caption_rows])
    captions = text.embed([dataset.captions[row] for row in caption_rows])
    return cca_embedder(fit_cca(dataset.features, dataset.rows(image_ids), captions, owners))


def start_text_map(image, settings, text, features, rows, caption_embeddings, owners):
    """``image`` as ``settings.text_map`` asks: itself (``"none"``), or a :class:`TwoTower`
    whose text map starts at the identity or (``text_map_init="cca"``) at the CCA solution of
    ``features[rows]`` and their captions' ``text`` embeddings (see :func:`fit_cca`), which then
    also sets the image map (a linear one on standardised features)."""
    if settings.text_map == "none":
        return image
    if getattr(text, "component", None) is not None:
        raise ValueError("a text map works on idf or mean weighting, not sif: drop --weighting "
                         "sif, or use --text-map none")
    if settings.text_map_init == "identity":
        return TwoTower(image, np.eye(image.shape[1]))
    if not (isinstance(image, Standardized) and isinstance(image.inner, ImageEmbedder)):
        raise ValueError("a text map starts from CCA only with a linear map of standardised "
                         "features: use --embedder linear --standardize")
    return cca_embedder(fit_cca(features, rows, caption_embeddings, owners))

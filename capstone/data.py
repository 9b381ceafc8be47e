"""Datasets: the real COCO captions + ResNet-18 features, and the embedded sample, behind one loader.

Both sources are read from the same two files, in the course's formats:

``captions_train2014.json``
    COCO format: keys ``info``, ``images`` (each with ``id`` and ``coco_url``; the sample's also
    carry a ``scene`` record), ``licenses`` and ``annotations`` (each with ``id``, ``image_id``,
    ``caption``).
``resnet18_features.pkl``
    A pickled dict ``image_id -> array of shape (1, 512)``. Images without features (COCO's
    grayscale ones) are left out of the image set and counted in the summary.

The features are converted once to a float32 ``.npz`` cache beside the pickle (or in the cache
folder when that folder is read-only) and loaded from it afterwards, with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FEATURE_DIM = 512
CAPTIONS_FILE = "captions_train2014.json"
FEATURES_FILE = "resnet18_features.pkl"
DATASETS = ("sample", "coco")


@dataclass
class Dataset:
    """Images with features, their captions, and a train/validation split by image.

    Attributes
    ----------
    name : str
        ``"sample"`` or ``"coco"``.
    image_ids : numpy.ndarray, shape (n_images,), int64
        Sorted ids of the images that have features.
    features : numpy.ndarray, shape (n_images, 512), float32
        Row ``i`` is the feature vector of ``image_ids[i]``.
    caption_ids, caption_image_ids : numpy.ndarray, shape (n_captions,), int64
        One entry per caption of an image that has features.
    captions : list of str, length n_captions
        The caption texts, aligned with ``caption_ids``.
    urls : dict int -> str
        ``coco_url`` of every image in the json (with or without features).
    image_captions : dict int -> list of str
        Every image's captions (with or without features).
    scenes : dict int -> dict or None
        The sample's ground-truth scene records (``None`` for COCO).
    missing_image_ids : numpy.ndarray, int64
        Images in the json that have no features.
    n_captions_total : int
        Captions in the json, including those of images without features.
    paths : dict str -> str
        ``captions``, ``features`` and ``glove`` (the GloVe name used by default).
    glove_name : str
        The default word vectors for this dataset (see :func:`capstone.glove.load_glove`).
    train_fraction, seed : float, int
        The split's settings; see :meth:`split`.
    """

    name: str
    image_ids: np.ndarray
    features: np.ndarray
    caption_ids: np.ndarray
    caption_image_ids: np.ndarray
    captions: list
    urls: dict
    image_captions: dict
    scenes: dict | None
    missing_image_ids: np.ndarray
    n_captions_total: int
    paths: dict = field(default_factory=dict)
    glove_name: str = "glove-50d"
    train_fraction: float = 0.8
    seed: int = 0

    def __post_init__(self):
        self._row_of = {int(image_id): row for row, image_id in enumerate(self.image_ids)}
        self.train_image_ids, self.val_image_ids = self.split(self.train_fraction, self.seed)

    # -- lookups -------------------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        """Number of images with features."""
        return len(self.image_ids)

    def rows(self, image_ids) -> np.ndarray:
        """Row indices into :attr:`features` of the given image ids.

        Raises
        ------
        KeyError
            If an id is not an image with features.
        """
        image_ids = np.atleast_1d(np.asarray(image_ids, dtype=np.int64))
        rows = np.searchsorted(self.image_ids, image_ids)
        rows = np.minimum(rows, len(self.image_ids) - 1)
        bad = self.image_ids[rows] != image_ids
        if bad.any():
            image_id = int(image_ids[bad][0])
            raise KeyError(
                f"image_id {image_id} is not in the {self.name} dataset's images with features"
            )
        return rows

    def features_of(self, image_ids) -> np.ndarray:
        """Feature rows (float32, shape (n, 512)) of the given image ids."""
        return self.features[self.rows(image_ids)]

    def captions_of(self, image_id: int) -> list:
        """All captions of one image (with or without features)."""
        try:
            return self.image_captions[int(image_id)]
        except KeyError:
            raise KeyError(f"image_id {image_id} is not in the {self.name} dataset") from None

    def url_of(self, image_id: int) -> str:
        """The ``coco_url`` of one image."""
        try:
            return self.urls[int(image_id)]
        except KeyError:
            raise KeyError(f"image_id {image_id} is not in the {self.name} dataset") from None

    # -- split ---------------------------------------------------------------------------------
    def split(self, train_fraction: float = 0.8, seed: int = 0):
        """Split the images with features into train and validation sets, by image.

        Parameters
        ----------
        train_fraction : float
            Share of images for training, in (0, 1).
        seed : int
            Seed of the shuffle; the same seed gives the same split.

        Returns
        -------
        (train_image_ids, val_image_ids) : tuple of sorted int64 arrays
            Disjoint, together all of :attr:`image_ids`.
        """
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        order = np.random.default_rng(seed).permutation(len(self.image_ids))
        n_train = int(round(train_fraction * len(self.image_ids)))
        return np.sort(self.image_ids[order[:n_train]]), np.sort(self.image_ids[order[n_train:]])

    def caption_mask(self, image_ids) -> np.ndarray:
        """Boolean mask over captions whose image is in ``image_ids``."""
        return np.isin(self.caption_image_ids, np.asarray(image_ids, dtype=np.int64))

    @property
    def train_captions_mask(self) -> np.ndarray:
        """Mask of the captions of training images (fit IDF on these only)."""
        return self.caption_mask(self.train_image_ids)

    # -- summary -------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts and file paths, as ``python -m capstone data --json`` prints them."""
        return {
            "dataset": self.name,
            "images": int(len(self.urls)),
            "images_with_features": int(self.n_images),
            "images_without_features": int(len(self.missing_image_ids)),
            "captions": int(self.n_captions_total),
            "captions_of_images_with_features": int(len(self.captions)),
            "train_images": int(len(self.train_image_ids)),
            "validation_images": int(len(self.val_image_ids)),
            "paths": dict(self.paths),
        }

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, images={self.n_images}, captions={len(self.captions)}, "
            f"train={len(self.train_image_ids)}, validation={len(self.val_image_ids)})"
        )

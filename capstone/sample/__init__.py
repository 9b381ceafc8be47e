"""The embedded sample dataset: drawn scenes, their captions and their features, fully offline.

:mod:`capstone.sample.scenes` draws the scenes and writes them in the course's file formats;
:mod:`capstone.sample.features` is the fixed feature extractor that stands in for ResNet-18.
Nothing in the course core imports this package; :mod:`capstone.data.dataset` calls
:func:`ensure_sample` when the sample is the dataset in use. It may import :mod:`capstone.files`.
"""

from capstone.sample.features import FEATURE_DIM, extract_features
from capstone.sample.scenes import (
    BACKGROUNDS,
    CAPTIONS_PER_IMAGE,
    COLORS,
    GRAYSCALE_SHARE,
    IMAGE_SIZE,
    KINDS,
    MARKER,
    SAMPLE_VERSION,
    UNUSED_SYNONYMS,
    caption_scene,
    ensure_sample,
    random_scene,
    read_marker,
    render_scene,
    write_sample,
)

__all__ = [
    "BACKGROUNDS", "CAPTIONS_PER_IMAGE", "COLORS", "FEATURE_DIM", "GRAYSCALE_SHARE", "IMAGE_SIZE",
    "KINDS", "MARKER", "SAMPLE_VERSION", "UNUSED_SYNONYMS", "caption_scene", "ensure_sample",
    "extract_features", "random_scene", "read_marker", "render_scene", "write_sample",
]

"""The sample's feature extractor, at its old import path (it lives in :mod:`capstone.sample.features`)."""

from .sample.features import *  # noqa: F401,F403
from .sample.features import BATCH_SIZE, BLOCK_SCALES, FEATURE_DIM, extract_features, filter_bank  # noqa: F401

"""The contrastive (in-batch softmax) loss, beside the course's margin ranking loss.

For a batch of captions, every image of the batch (each caption's own image and its bad image)
is a candidate; each caption's loss is the cross-entropy of a softmax over its cosines with the
candidates, divided by a temperature, with its own image as the right class::

    loss = mean_i -log( exp(cos(t_i, own_i) / T) / sum_j exp(cos(t_i, c_j) / T) )

Two captions of the same image share one candidate column, so a caption's own image is never
one of its negatives (the "mask" of CLIP-style training with several captions per image).
Compared with the margin loss, every caption is pushed away from all the batch's images at once,
weighted by how close they are, instead of from one bad image until a margin is reached.
"""

from __future__ import annotations

import mygrad as mg
import numpy as np
from mygrad.nnet.losses import softmax_crossentropy

LOSSES = ("margin", "contrastive")


def candidate_columns(good_features, bad_features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct images of a batch, and the column of each caption's good and bad image.

    Rows with identical features count as one image (they are, as far as the model can tell).
    """
    both = np.concatenate([good_features, bad_features])
    candidates, columns = np.unique(both, axis=0, return_inverse=True)
    columns = columns.reshape(-1)
    return candidates, columns[: len(good_features)], columns[len(good_features) :]


def contrastive_loss(image, text, good_features, bad_features, temperature):
    """In-batch softmax loss of a batch, in the image embedder's graph; also two similarities.

    Same arguments and results as :func:`capstone.train.triple_loss`, with ``temperature`` in
    place of the margin: ``(loss, sim_good, sim_bad)``, a mygrad scalar and the cosines of each
    caption with its good and its bad image (NumPy).
    """
    candidates, good, bad = candidate_columns(good_features, bad_features)
    embedded = image(candidates)
    embedded = embedded / mg.sqrt(mg.sum(embedded**2, axis=1, keepdims=True) + 1e-12)
    cosines = mg.matmul(np.asarray(text, dtype=np.float32), embedded.T)
    loss = softmax_crossentropy(cosines / temperature, good)
    rows = np.arange(len(good))
    return loss, cosines.data[rows, good], cosines.data[rows, bad]

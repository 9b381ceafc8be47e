"""The contrastive (in-batch softmax) loss, beside the course's margin ranking loss.

For a batch of captions, every image of the batch (each caption's own image and its bad image)
is a candidate; each caption's loss is the cross-entropy of a softmax over its cosines with the
candidates, divided by a temperature, with its own image as the right class (text to image)::

    t2i = mean_i -log( exp(cos(t_i, own_i) / T) / sum_j exp(cos(t_i, c_j) / T) )

Two captions of the same image share one candidate column, so a caption's own image is never
one of its negatives (the "mask" of CLIP-style training with several captions per image).
Compared with the margin loss, every caption is pushed away from all the batch's images at once,
weighted by how close they are, instead of from one bad image until a margin is reached.

``loss="contrastive-both"`` (:func:`both_directions_loss`) adds the other direction, as CLIP
does: each image of the batch that has captions in it gets a softmax over the batch's captions,
its own captions the right ones (``i2t``, their mean log-probability), and the loss is
``(1 - w) t2i + w i2t`` with ``w =`` :data:`IMAGE_TO_TEXT`. Text to image alone ranks images for
a caption but leaves each image embedding free to drift along any direction all captions share;
on the sample the second direction raises image-to-text recall a lot and costs text-to-image
recall a little (README, "Results on the sample").
"""

from __future__ import annotations

import mygrad as mg
import numpy as np
from mygrad.nnet.activations import logsoftmax
from mygrad.nnet.losses import softmax_crossentropy

LOSSES = ("margin", "contrastive", "contrastive-both")
IMAGE_TO_TEXT = 0.5  # the weight of the image-to-text direction in "contrastive-both"


def candidate_columns(good_features, bad_features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct images of a batch, and the column of each caption's good and bad image.

    Rows with identical features count as one image (they are, as far as the model can tell).
    """
    both = np.concatenate([good_features, bad_features])
    candidates, columns = np.unique(both, axis=0, return_inverse=True)
    columns = columns.reshape(-1)
    return candidates, columns[: len(good_features)], columns[len(good_features) :]


def contrastive_loss(image, text, good_features, bad_features, temperature, *,
                     image_to_text=0.0):
    """In-batch softmax loss of a batch, in the image embedder's graph; also two similarities.

    Same arguments and results as :func:`capstone.course.train.triple_loss`, with ``temperature`` in
    place of the margin: ``(loss, sim_good, sim_bad)``, a mygrad scalar and the cosines of each
    caption with its good and its bad image (NumPy). ``image_to_text`` weighs the other
    direction (0: text to image only).
    """
    candidates, good, bad = candidate_columns(good_features, bad_features)
    embedded = image(candidates)
    embedded = embedded / mg.sqrt(mg.sum(embedded**2, axis=1, keepdims=True) + 1e-12)
    # a learned text map (capstone.further.textmap) maps the captions in the graph too
    text = (image.map_text(text) if hasattr(image, "map_text")
            else np.asarray(text, dtype=np.float32))
    cosines = mg.matmul(text, embedded.T)
    loss = softmax_crossentropy(cosines / temperature, good)
    if image_to_text:
        owners = np.unique(good)  # the candidates that are some caption's own image
        own = (good[None, :] == owners[:, None]).astype(np.float32)  # (owners, captions)
        log_p = logsoftmax(cosines.T[owners] / temperature, axis=1)
        i2t = -mg.mean(mg.sum(log_p * own, axis=1) / own.sum(axis=1))
        loss = (1 - image_to_text) * loss + image_to_text * i2t
    rows = np.arange(len(good))
    return loss, cosines.data[rows, good], cosines.data[rows, bad]



def both_directions_loss(image, text, good_features, bad_features, temperature):
    """:func:`contrastive_loss` with the image-to-text direction weighed :data:`IMAGE_TO_TEXT`
    (``loss="contrastive-both"``)."""
    return contrastive_loss(image, text, good_features, bad_features, temperature,
                            image_to_text=IMAGE_TO_TEXT)


CONTRASTIVE = {"contrastive": contrastive_loss, "contrastive-both": both_directions_loss}

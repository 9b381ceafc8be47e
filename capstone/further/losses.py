"""The contrastive (in-batch softmax) loss, beside the course's margin ranking loss.

For a batch of captions, every image of the batch (each caption's own image and its bad image)
is a candidate; each caption's loss is the cross-entropy of a softmax over its cosines with the
candidates, divided by a temperature, with its own image as the right class (text to image)::

    t2i = mean_i -log( exp(cos(t_i, own_i) / T) / sum_j exp(cos(t_i, c_j) / T) )

Two captions of the same image share one candidate column, so a caption's own image is never
one of its negatives (the "mask" of CLIP-style training with several captions per image).
Compared with the margin loss, every caption is pushed away from all the batch's images at once,
weighted by how close they are, instead of from one bad image until a margin is reached.

``loss="contrastive-both"`` adds the other direction, as CLIP
does: each image of the batch that has captions in it gets a softmax over the batch's captions,
its own captions the right ones (``i2t``, their mean log-probability), and the loss is
``(1 - w) t2i + w i2t`` with ``w =`` :data:`IMAGE_TO_TEXT`. Text to image alone ranks images for
a caption but leaves each image embedding free to drift along any direction all captions share;
on the sample the second direction raises image-to-text recall a lot and costs text-to-image
recall a little (README, "Results on the sample").
"""

from __future__ import annotations

import functools

import mygrad as mg
import numpy as np
from mygrad.nnet.activations import logsoftmax
from mygrad.nnet.losses import softmax_crossentropy

IMAGE_TO_TEXT = 0.5  # the weight of the image-to-text direction in "contrastive-both"


def candidate_columns(good_rows, bad_rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct images of a batch, and the column of each caption's good and bad image.

    Returns the position of each distinct image's first appearance in ``good_rows`` followed by
    ``bad_rows`` (the candidates), then each good and each bad image's candidate column.
    """
    both = np.concatenate([good_rows, bad_rows])
    _, first, columns = np.unique(both, return_index=True, return_inverse=True)
    columns = columns.reshape(-1)
    return first, columns[: len(good_rows)], columns[len(good_rows) :]


def contrastive_loss(captions, good, bad, good_rows, bad_rows, *, temperature,
                     image_to_text=0.0):
    """In-batch softmax loss of a batch, in the image embedder's graph.

    ``captions`` (n, D) are the captions' embeddings (constants), ``good`` and ``bad`` (n, D)
    the unit embeddings of their good and bad images (mygrad tensors), ``good_rows`` and
    ``bad_rows`` those images' rows (an image that appears twice is one candidate). The
    ``loss_of`` that :func:`capstone.course.train.train_epoch` takes, with ``temperature`` bound
    (:func:`loss_for`); ``image_to_text`` weighs the other direction (0: text to image only).
    """
    first, good_columns, _ = candidate_columns(good_rows, bad_rows)
    candidates = mg.concatenate([good, bad])[first]
    cosines = mg.matmul(np.asarray(captions, dtype=np.float32), candidates.T)
    loss = softmax_crossentropy(cosines / temperature, good_columns)
    if image_to_text:
        owners = np.unique(good_columns)  # the candidates that are some caption's own image
        own = (good_columns[None, :] == owners[:, None]).astype(np.float32)  # (owners, captions)
        log_p = logsoftmax(cosines.T[owners] / temperature, axis=1)
        i2t = -mg.mean(mg.sum(log_p * own, axis=1) / own.sum(axis=1))
        loss = (1 - image_to_text) * loss + image_to_text * i2t
    return loss


def loss_for(settings):
    """The ``loss_of`` of ``settings.loss`` for :func:`capstone.course.train.train_epoch`
    (``None``: the course's margin loss)."""
    if settings.loss == "margin":
        return None
    weight = IMAGE_TO_TEXT if settings.loss == "contrastive-both" else 0.0
    return functools.partial(contrastive_loss, temperature=settings.temperature,
                             image_to_text=weight)

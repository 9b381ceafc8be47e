"""Keeping the best epoch while training: its weights in memory and, atomically, on disk.

Used by :func:`capstone.pipeline.training.train` and by the training loop that notebook 4 writes
out: call :meth:`Checkpoint.update` once per epoch with the validation metrics.
"""

from __future__ import annotations

import time

from capstone.course.image import ImageEmbedder
from capstone.data.model import SearchModel, check_model_path


class Checkpoint:
    """The best epoch so far by validation triple accuracy, saved on each improvement.

    Parameters
    ----------
    image : capstone.course.image.ImageEmbedder
        The layer being trained (or another embedder with its interface,
        :mod:`capstone.further.embedders`) (read, never changed, until :meth:`best_model`).
    text : capstone.course.text.TextEmbedder
    info : dict
        The model's record (dataset, settings); ``metrics`` is added.
    out : path-like or None
        Where to save the best model (``.npz``, checked now to be writable); ``None``: keep it
        in memory only.
    metrics : dict, optional
        The untrained layer's validation metrics (epoch 0); by default any epoch improves it.

    Attributes
    ----------
    epoch : int
        The best epoch (0: none improved on the untrained layer).
    metrics : dict
        Its validation metrics (``accuracy``, ``loss``, ...).
    """

    def __init__(self, image: ImageEmbedder, text, info: dict, out=None, metrics=None):
        self.image, self.text, self.info = image, text, info
        # refused before training: a bad suffix, a folder, a path under a file, no permission
        self.out = None if out is None else check_model_path(out, writable=True)
        self.epoch, self.metrics = 0, metrics or {"accuracy": float("-inf")}
        self.arrays = image.get_arrays()

    def update(self, epoch: int, metrics: dict) -> bool:
        """Record an epoch's validation metrics; keep (and save) its weights if they are the best.

        Returns
        -------
        bool
            Whether this epoch is the new best.
        """
        if not metrics["accuracy"] > self.metrics["accuracy"]:
            return False
        self.epoch, self.metrics, self.arrays = epoch, metrics, self.image.get_arrays()
        if self.out is not None:
            self.model(type(self.image).from_arrays(self.arrays)).save(self.out)
        return True

    def model(self, image: ImageEmbedder) -> SearchModel:
        """A search model of ``image`` with the best epoch's record."""
        metrics = {"best_epoch": self.epoch, "triple_accuracy": self.metrics["accuracy"],
                   "triple_accuracy_random": self.metrics.get("accuracy_random"),
                   "triple_loss": self.metrics.get("loss")}
        return SearchModel(image, self.text, {**self.info, "metrics": metrics})

    def best_model(self) -> SearchModel:
        """The trained layer set back to the best epoch's weights, as a search model."""
        return self.model(self.image.set_arrays(self.arrays))

    def describe(self) -> str:
        """One line: the best epoch, its accuracy, and where it is saved."""
        where = f", saved at {self.out}" if self.out is not None and self.epoch else ""
        return (f"epoch {self.epoch}, validation accuracy "
                f"{self.metrics['accuracy']:.3f}{where}")


def epoch_record(epoch, train, val, epoch_start) -> dict:
    """One row of :attr:`capstone.pipeline.training.History.records`: an epoch's training means
    (``train``), validation metrics (``val``) and seconds since ``epoch_start``
    (``time.perf_counter()``)."""
    return {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "val_loss": val["loss"], "val_accuracy": val["accuracy"],
            "val_accuracy_random": val["accuracy_random"],
            "seconds": round(time.perf_counter() - epoch_start, 3)}

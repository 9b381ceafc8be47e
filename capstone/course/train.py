"""Training ``se_image`` with a margin ranking loss on (caption, good image, bad image) triples.

For each triple the loss is ``max(0, margin - (cos(text, good) - cos(text, bad)))``; the caption
embeddings are constants, only the image embedder learns. :func:`train_epoch` is notebook 4's
loop, statement for statement (a test runs both and compares the weights): per batch, embed the
good and bad images, compare them with the captions, ``loss.backward()``, ``optim.step()``.

Everything else lives outside the core: :func:`capstone.pipeline.training.train` runs epochs with
checkpoints, curves and a final evaluation, and passes in what :mod:`capstone.further` adds (an
embedder object, a loss function) as parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import mygrad as mg
import numpy as np
from mygrad.nnet.losses import margin_ranking_loss
from mynn.optimizers import SGD, Adam

from capstone.course.triples import NEGATIVES, triple_metrics

OPTIMIZERS = ("sgd", "adam")
EMBEDDERS = ("linear", "mlp")  # built by capstone.further.embedders
LOSSES = ("margin", "contrastive", "contrastive-both")  # beyond "margin": capstone.further.losses
TEXT_MAPS = ("none", "linear")  # a learned map of se_text: capstone.further.textmap
TEXT_MAP_INITS = ("identity", "cca")  # where it starts: capstone.further.cca
WEIGHTINGS = ("idf", "mean", "sif")  # se_text's word weights; sif: capstone.further.sif


@dataclass(frozen=True)
class Settings:
    """How to train: one preset's fields (see :data:`PRESETS`).

    ``momentum`` is SGD's; ``n_candidates`` is how many random images a hard negative is the
    hardest of; ``seed`` seeds weights and triples; ``weighting`` weighs a caption's words
    (``"idf"`` as the course teaches, ``"mean"`` or ``"sif"``); the other fields:
    :mod:`capstone.further`.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    momentum: float = 0.9
    margin: float = 0.1
    optimizer: str = "adam"
    negatives: str = "hard"
    n_candidates: int = 5
    seed: int = 0
    embedder: str = "linear"
    hidden: int = 256
    standardize: bool = True
    loss: str = "contrastive"
    temperature: float = 0.05
    text_map: str = "none"
    text_map_init: str = "identity"
    weighting: str = "idf"

    def __post_init__(self):
        for name, choices in (("optimizer", OPTIMIZERS), ("negatives", NEGATIVES),
                              ("embedder", EMBEDDERS), ("loss", LOSSES),
                              ("text_map", TEXT_MAPS), ("text_map_init", TEXT_MAP_INITS),
                              ("weighting", WEIGHTINGS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.text_map != "none" and self.loss == "margin":
            raise ValueError("a text map is trained with a contrastive loss, not the margin "
                             "loss: add --loss contrastive, or --text-map none")
        if self.text_map != "none" and self.weighting == "sif":
            raise ValueError("a text map maps idf or mean sums, not SIF's: add --weighting idf "
                             "or mean, or --text-map none")
        for name, (low, high) in LIMITS.items():  # NaN is in no range
            value, above = getattr(self, name), name in ("lr", "temperature")
            if not (low < value <= high if above else low <= value <= high):
                raise ValueError(f"{name} must be {'above' if above else 'at least'} {low:g} and "
                                 f"at most {high:g}, got {value}")

    def replace(self, **changes) -> Settings:
        """These settings with the given non-``None`` values changed."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


#: Each number's range (lr and temperature above the low end): beyond it, training fails,
#: learns nothing, or asks for more memory than a laptop has.
LIMITS = {"epochs": (1, 10_000), "batch_size": (1, 65_536), "n_candidates": (1, 1_000),
          "hidden": (1, 16_384), "lr": (0, 10), "momentum": (0, 1), "margin": (0, 2),
          "temperature": (0, 100), "seed": (0, 2**63 - 1)}

PRESETS = {
    # Measured best (README, "Results on the sample", seeds 0-2): the contrastive loss on
    # standardised features, with a learned map of se_text started from the CCA solution; the
    # map weighs the words, so se_text's sum starts from the plain mean.
    "default": Settings(text_map="linear", text_map_init="cca", weighting="mean",
                        temperature=0.2),
    # The previous default: Adam, and a margin (0.1) and hardness (5 candidates) that fit the
    # text space, where a caption's own image beats a hard negative by a small cosine gap.
    "margin": Settings(loss="margin", batch_size=32, standardize=False),
    # The course's settings: SGD lr 1e-3 with momentum 0.9, margin 0.25, 25 candidates.
    "course": Settings(loss="margin", batch_size=32, standardize=False, lr=1e-3,
                       optimizer="sgd", margin=0.25, n_candidates=25),
    # COCO within a class period (README "For instructors"): the margin loss, as measured there.
    "class": Settings(loss="margin", standardize=False, epochs=6, batch_size=256),
}


def resolve_settings(preset=None, **changes) -> Settings:
    """A preset (name, :class:`Settings` or ``None`` for ``"default"``) with ``changes`` applied.

    A change that rules out the preset's text map, unless the text map is changed too, drops it
    (the margin loss, SIF weighting) or starts it from the identity (an embedder CCA cannot
    start).
    """
    if not isinstance(preset, Settings) and (preset or "default") not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    base = preset if isinstance(preset, Settings) else PRESETS[preset or "default"]
    if base.text_map != "none" and changes.get("text_map") is None:
        if changes.get("loss") == "margin" or changes.get("weighting") == "sif":
            changes["text_map"] = "none"
        elif changes.get("embedder") == "mlp" or changes.get("standardize") is False:
            changes["text_map_init"] = changes.get("text_map_init") or "identity"
    return base.replace(**changes)


def unit(x):
    """Rows of a mygrad tensor scaled to length 1, in the graph (``1e-12``: never divide by 0)."""
    return x / mg.sqrt(mg.sum(x**2, axis=1, keepdims=True) + 1e-12)


def make_optimizer(settings: Settings, parameters):
    """MyNN's ``SGD`` (with momentum) or ``Adam`` over ``parameters``, as ``settings`` say."""
    if settings.optimizer == "sgd":
        return SGD(parameters, learning_rate=settings.lr, momentum=settings.momentum)
    return Adam(parameters, learning_rate=settings.lr)


def train_epoch(model, optim, features, caption_embeddings, triples, settings, plot, loss_of=None):
    """One pass over ``triples`` in batches of ``settings.batch_size``: loss, backward, step.

    Notebook 4's loop. Each batch's ``loss`` and ``accuracy`` go to ``plot`` (noggin's
    ``set_train_batch``). ``loss_of(captions, good, bad, good_rows, bad_rows)``, when given,
    replaces the margin ranking loss (e.g. :mod:`capstone.further.losses`): it receives the
    batch's caption and unit image embeddings and the images' rows of ``features``.
    """
    for start in range(0, len(triples), settings.batch_size):
        batch = slice(start, start + settings.batch_size)
        captions = caption_embeddings[triples.caption_rows[batch]]
        good = unit(model(features[triples.good_rows[batch]]))
        bad = unit(model(features[triples.bad_rows[batch]]))
        sim_good, sim_bad = mg.sum(good * captions, axis=1), mg.sum(bad * captions, axis=1)
        if loss_of is None:  # the course's loss; capstone.further.losses passes in others
            loss = margin_ranking_loss(sim_good, sim_bad, 1, settings.margin)
        else:
            loss = loss_of(captions, good, bad, triples.good_rows[batch], triples.bad_rows[batch])
        loss.backward()
        optim.step()
        accuracy = np.mean(sim_good.data > sim_bad.data)
        plot.set_train_batch({"loss": loss.item(), "accuracy": accuracy}, batch_size=len(captions))
    plot.set_train_epoch()


def validation_metrics(image, features, caption_embeddings, validation, margin) -> dict:
    """Loss and accuracy on the hard validation triples (:func:`~capstone.course.triples.
    validation_triples`), and accuracy on the random ones; ``features`` are every image's."""
    image_embeddings = image.embed(features)
    hard = triple_metrics(image_embeddings, caption_embeddings, validation["hard"], margin)
    random = triple_metrics(image_embeddings, caption_embeddings, validation["random"], margin)
    return {**hard, "accuracy_random": random["accuracy"]}

"""Training ``se_image`` with a margin ranking loss on (caption, good image, bad image) triples.

For each triple the loss is ``max(0, margin - (cos(text, good) - cos(text, bad)))`` (the default
preset's is a contrastive one, :mod:`capstone.further.losses`); the caption embeddings are
constants, only the image embedder learns. One step::

    loss, sim_good, sim_bad = triple_loss(image, text, good_features, bad_features, margin)
    loss.backward()
    optim.step()

Each epoch draws new hard-negative triples from the training images and takes such a step per
batch; validation triples are fixed (same seed every run), so validation accuracy compares
across runs. The best epoch is kept (:class:`capstone.pipeline.checkpoint.Checkpoint`) and returned, also
when training is interrupted. Notebook 4 writes this loop out cell by cell.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import mygrad as mg
import numpy as np
from mygrad.nnet.losses import margin_ranking_loss
from mynn.optimizers import SGD, Adam
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from capstone.pipeline.calibration import calibrate
from capstone.pipeline.checkpoint import Checkpoint, epoch_record
from capstone.data.dataset import load_dataset
from capstone.course.evaluate import evaluate
from capstone.further.embedders import EMBEDDERS, new_image_embedder
from capstone.further.losses import CONTRASTIVE, LOSSES
from capstone.further.cca import start_text_map
from capstone.further.textmap import TEXT_MAP_INITS, TEXT_MAPS
from capstone.data.glove import load_word_vectors
from capstone.ui.live import new_recorder
from capstone.data.paths import default_model_path
from capstone.course.text import TextEmbedder
from capstone.course.triples import NEGATIVES, make_triples, triple_accuracy, triple_metrics

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Settings:
    """How to train: one preset's fields (see :data:`PRESETS`).

    ``momentum`` is SGD's; ``n_candidates`` is how many random images a hard negative is the
    hardest of; ``seed`` seeds weights and triples; the other fields: :mod:`capstone.further`.
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

    def __post_init__(self):
        for name, choices in (("optimizer", OPTIMIZERS), ("negatives", NEGATIVES),
                              ("embedder", EMBEDDERS), ("loss", LOSSES),
                              ("text_map", TEXT_MAPS), ("text_map_init", TEXT_MAP_INITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.text_map != "none" and self.loss == "margin":
            raise ValueError("a text map is trained with a contrastive loss, not the margin "
                             "loss: add --loss contrastive, or --text-map none")
        for name in ("epochs", "batch_size", "n_candidates", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def replace(self, **changes) -> Settings:
        """These settings with the given non-``None`` values changed."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS = {
    # Measured best against the ridge reference (README, "Results on the sample"; on real COCO
    # features the margin loss fell behind it): the contrastive loss on standardised features.
    "default": Settings(),
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
    """A preset (name, :class:`Settings` or ``None`` for ``"default"``) with ``changes`` applied."""
    if isinstance(preset, Settings):
        return preset.replace(**changes)
    if (preset or "default") not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return PRESETS[preset or "default"].replace(**changes)


def triple_loss(image, text, good_features, bad_features, margin):
    """Margin ranking loss of a batch, in the image embedder's graph; also both similarities.

    ``text`` (n, D) holds unit caption embeddings (constants); ``good_features`` and
    ``bad_features`` (n, 512) the images. Returns ``(loss, sim_good, sim_bad)``: a mygrad scalar
    and two NumPy arrays of cosines.
    """
    both = image(np.concatenate([good_features, bad_features]))  # one matmul for both
    both = both / mg.sqrt(mg.sum(both**2, axis=1, keepdims=True) + 1e-12)
    sim_good = mg.sum(both[: len(text)] * text, axis=1)
    sim_bad = mg.sum(both[len(text) :] * text, axis=1)
    return margin_ranking_loss(sim_good, sim_bad, 1, margin), sim_good.data, sim_bad.data


cosine_triple_loss = triple_loss  # its earlier name


def make_optimizer(settings: Settings, parameters):
    """MyNN's ``SGD`` (with momentum) or ``Adam`` over ``parameters``."""
    if settings.optimizer == "sgd":
        return SGD(parameters, learning_rate=settings.lr, momentum=settings.momentum)
    return Adam(parameters, learning_rate=settings.lr)


def train_epoch(image, optim, features, caption_embeddings, triples, settings, recorder, *,
                on_batch=None, bar=None) -> dict:
    """One pass over ``triples`` in batches of ``settings.batch_size``: loss, backward, step.

    Each batch's ``loss`` and ``accuracy`` go to ``recorder`` (noggin's ``set_train_batch``), then
    to ``on_batch(batch_index, metrics)`` when given. Returns the epoch's means over triples.
    """
    totals = np.zeros(2)
    loss_of, knob = ((triple_loss, settings.margin) if settings.loss == "margin"
                     else (CONTRASTIVE[settings.loss], settings.temperature))
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only cost time
        for batch_index, start in enumerate(range(0, len(triples), settings.batch_size)):
            rows = slice(start, start + settings.batch_size)
            loss, sim_good, sim_bad = loss_of(
                image, caption_embeddings[triples.caption_rows[rows]],
                features[triples.good_rows[rows]], features[triples.bad_rows[rows]], knob)
            loss.backward()  # mygrad 2 starts every graph with fresh gradients: none accumulate
            optim.step()
            metrics = {"loss": loss.item(), "accuracy": triple_accuracy(sim_good, sim_bad)}
            recorder.set_train_batch(metrics, batch_size=len(sim_good))
            totals += len(sim_good) * np.array([metrics["loss"], metrics["accuracy"]])
            if bar is not None:
                bar.update()
            if on_batch:
                on_batch(batch_index, metrics)
    recorder.set_train_epoch()
    return dict(zip(("loss", "accuracy"), (totals / len(triples)).tolist()))


def validation_triples(dataset, caption_embeddings) -> dict:
    """The fixed validation triples: ``{"hard": Triples, "random": Triples}``."""
    return {kind: make_triples(dataset, caption_embeddings, split="validation", negatives=kind)
            for kind in NEGATIVES}


def validation_metrics(image, dataset, caption_embeddings, validation, margin) -> dict:
    """Loss and accuracy on the hard validation triples, and accuracy on the random ones."""
    image_embeddings = image.embed(dataset.features)
    if hasattr(image, "embed_text_rows"):  # a learned text map (capstone.further.textmap)
        caption_embeddings = image.embed_text_rows(caption_embeddings)
    hard = triple_metrics(image_embeddings, caption_embeddings, validation["hard"], margin)
    random = triple_metrics(image_embeddings, caption_embeddings, validation["random"], margin)
    return {**hard, "accuracy_random": random["accuracy"]}


@dataclass
class History:
    """What happened during :func:`train`.

    ``records`` has one dict per epoch (``epoch``, ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy``, ``val_accuracy_random``, ``seconds``); ``best_epoch`` is the
    returned model's (0: untrained); ``recorder`` is noggin's record of every batch and epoch and
    ``figure`` its curves (``None`` with ``plot=False``).
    """

    records: list = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False
    recorder: object = None
    figure: object = None


def train(dataset=None, settings=None, *, text=None, glove=None, out=None, plot=True, live=None,
          progress=True, on_batch=None, preset=None, **changes):
    """Train an image embedder on a dataset's training images; return the best model.

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset or str, optional
        A dataset or its name; by default :func:`capstone.data.dataset.load_dataset`'s default.
    settings : Settings or str, optional
        Or a preset's name (``preset=`` is the same; default ``"default"``), changed by
        ``**changes`` (e.g. ``epochs=3``).
    text : capstone.course.text.TextEmbedder, optional
        By default fitted on the training captions with ``glove`` (by default the dataset's).
    out : path-like or False, optional
        Where each improving epoch is saved (default: the dataset's model path; ``False``: not
        saved); a bad path is refused before training.
    plot, live, progress, on_batch
        noggin's curves (live in a notebook), tqdm bars, ``on_batch(epoch, index, metrics)``.

    Returns
    -------
    model : capstone.data.model.SearchModel
        The best epoch's weights; ``info`` records the settings and (unless interrupted) every
        metric of :func:`capstone.course.evaluate.evaluate`.
    history : History
    """
    chosen = settings or preset or "default"
    settings = resolve_settings(chosen, **changes)
    dataset = load_dataset(dataset) if dataset is None or isinstance(dataset, str) else dataset
    out = None if out is False else default_model_path(dataset.name) if out is None else out
    text = text if text is not None else fit_text(dataset, glove)
    started = time.perf_counter()
    caption_embeddings = text.embed(dataset.captions)
    validation = validation_triples(dataset, caption_embeddings)
    rng = np.random.default_rng(settings.seed)
    image = start_text_map(new_image_embedder(settings, dataset, text.dim), settings, dataset,
                           text)
    optim = make_optimizer(settings, image.parameters)
    recorder = new_recorder(plot, live, validate=lambda: validation_metrics(  # also mid-epoch
        image, dataset, caption_embeddings, validation, settings.margin))
    history = History(recorder=recorder)
    preset = chosen if isinstance(chosen, str) else None
    info = {"dataset": dataset.name, "settings": {"preset": preset, **dataclasses.asdict(settings)}}
    untrained = validation_metrics(image, dataset, caption_embeddings, validation, settings.margin)
    checkpoint = Checkpoint(image, text, info, out, untrained)

    epoch = 0
    bars = [tqdm(desc=desc, disable=not progress) for desc in ("epochs", "batches")]
    bars[0].reset(total=settings.epochs)
    try:
        for epoch in range(1, settings.epochs + 1):
            epoch_start = time.perf_counter()
            triples = make_triples(dataset, caption_embeddings, negatives=settings.negatives,
                                   n_candidates=settings.n_candidates,
                                   seed=int(rng.integers(2**32))).shuffled(rng)
            bars[1].reset(total=-(-len(triples) // settings.batch_size))
            means = train_epoch(image, optim, dataset.features, caption_embeddings, triples,
                                settings, recorder, bar=bars[1],
                                on_batch=on_batch and (lambda *a, e=epoch: on_batch(e, *a)))
            val = validation_metrics(image, dataset, caption_embeddings, validation,
                                     settings.margin)
            recorder.set_test_batch({"loss": val["loss"], "accuracy": val["accuracy"]},
                                    batch_size=len(validation["hard"]))
            recorder.set_test_epoch()
            history.records.append(epoch_record(epoch, means, val, epoch_start))
            bars[0].update()
            if checkpoint.update(epoch, val):
                history.best_epoch = epoch
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"interrupted in epoch {epoch}: returning the best model so far "
              f"({checkpoint.describe()})")
    finally:
        for bar in bars:
            bar.close()

    del caption_embeddings, validation  # evaluate embeds the captions again: not both at once
    model = checkpoint.best_model()
    model.info["metrics"].update(epochs_run=len(history.records),
                                 seconds=round(time.perf_counter() - started, 2))
    if not history.interrupted:
        model.info["metrics"].update(evaluate(model, dataset))
        model.info["calibration"] = calibrate(model, dataset)  # the weak-match score
        if out is not None:
            model.save(out)
    history.figure = recorder.close() if plot else None
    return model, history


def fit_text(dataset, glove=None) -> TextEmbedder:
    """A :class:`~capstone.course.text.TextEmbedder` fitted on the training captions only."""
    glove = load_word_vectors(dataset.glove_name) if glove is None else glove  # no gensim
    captions = [text for text, keep in zip(dataset.captions, dataset.train_captions_mask) if keep]
    return TextEmbedder.fit(captions, glove, dataset.glove_name)

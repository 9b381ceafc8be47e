"""Training end to end: epochs of the core's loop with checkpoints, curves and a final evaluation.

:func:`train` is the one public way to train (the command line, the app, the notebooks and the
benchmarks call it). Each epoch draws new hard-negative triples and runs
:func:`capstone.course.train.train_epoch` over them; validation triples are fixed (same seed every
run), so validation accuracy compares across runs. The best epoch is kept
(:class:`capstone.pipeline.checkpoint.Checkpoint`) and returned, also when training is
interrupted. What :mod:`capstone.further` adds comes in here, as the embedder object and the
loss function the core's loop receives.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from capstone.course.evaluate import evaluate, held_out_images, query_captions
from capstone.course.text import TextEmbedder
from capstone.course.train import make_optimizer, resolve_settings, train_epoch, validation_metrics
from capstone.course.triples import epoch_triples, validation_triples
from capstone.data.dataset import load_dataset
from capstone.data.glove import load_word_vectors
from capstone.data.paths import default_model_path
from capstone.further.cca import start_text_map
from capstone.further.embedders import new_image_embedder
from capstone.further.losses import loss_for
from capstone.further.sif import fit_weighted
from capstone.files import notice
from capstone.pipeline.calibration import ImageWords, calibrate
from capstone.pipeline.checkpoint import Checkpoint, epoch_record
from capstone.ui.live import new_recorder


@dataclass
class History:
    """What happened during :func:`train`.

    ``records`` has one dict per epoch (``epoch``, ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy``, ``val_accuracy_random``, ``seconds``); ``best_epoch`` is the
    returned model's (0: untrained); ``kept`` says whether it is kept as trained (and saved at
    ``out``): it did better than the untrained model (an epoch improved on it, or a CCA start beat
    chance clearly), else the file at ``out`` was left as it was; ``recorder`` is noggin's record
    of every batch and epoch and ``figure`` its curves (``None`` with ``plot=False``).
    """

    records: list = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False
    kept: bool = False
    recorder: object = None
    figure: object = None


class EpochWatch:
    """The ``plot`` that :func:`~capstone.course.train.train_epoch` reports each batch to: passes
    it on to noggin's ``recorder``, a progress ``bar`` and ``on_batch(index, metrics)``, and
    keeps the epoch's means over triples (:meth:`means`)."""

    def __init__(self, recorder, bar=None, on_batch=None):
        self.recorder, self.bar, self.on_batch = recorder, bar, on_batch
        self.totals, self.count, self.batches = np.zeros(2), 0, 0

    def set_train_batch(self, metrics, batch_size):
        metrics = {"loss": float(metrics["loss"]), "accuracy": float(metrics["accuracy"])}
        self.recorder.set_train_batch(metrics, batch_size=batch_size)
        self.totals += batch_size * np.array([metrics["loss"], metrics["accuracy"]])
        self.count += batch_size
        if self.bar is not None:
            self.bar.update()
        if self.on_batch:
            self.on_batch(self.batches, metrics)
        self.batches += 1

    def set_train_epoch(self):
        self.recorder.set_train_epoch()

    def means(self) -> dict:
        """The epoch's mean ``loss`` and ``accuracy`` over its triples."""
        return dict(zip(("loss", "accuracy"), (self.totals / max(self.count, 1)).tolist()))


FITTED_ACCURACY = 0.55  # validation triple accuracy a CCA start must pass to be kept


def train(dataset=None, settings=None, *, text=None, glove=None, out=None, plot=True, live=None,
          progress=True, on_batch=None, on_epoch=None, preset=None, caption_embeddings=None,
          calibration=True, **changes):
    """Train an image embedder on a dataset's training images; return the best model.

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset or str, optional
        A dataset or its name; by default :func:`capstone.data.dataset.load_dataset`'s default.
    settings : Settings or str, optional
        Or a preset's name (``preset=`` is the same; default ``"default"``), changed by
        ``**changes`` (e.g. ``epochs=3``).
    text : capstone.course.text.TextEmbedder, optional
        By default fitted on the training captions with ``glove`` (by default the dataset's),
        weighted as the settings say; a given one's weighting replaces the settings'.
    out : path-like or False, optional
        Where each improving epoch is saved (default: the dataset's model path; ``False``: not
        saved); a bad path is refused before training.
    plot, live, progress, on_batch, on_epoch
        noggin's curves (live in a notebook), tqdm bars, ``on_batch(epoch, index, metrics)``,
        ``on_epoch(record)`` after each epoch (its :attr:`History.records` row).
    caption_embeddings : numpy.ndarray, optional
        ``text``'s embeddings of ``dataset.captions``, when the caller has them already (notebook
        4: not a second 80 MB copy at COCO's size); by default made here.
    calibration : bool
        Measure the weak-match score (:mod:`capstone.pipeline.calibration`); a comparison whose
        models are not kept can leave it out (it reads every caption's words again).

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
    if text is None:
        text = fit_text(dataset, glove, settings.weighting)
    elif text.weighting != settings.weighting:  # the settings kept say how captions were embedded
        settings = settings.replace(weighting=text.weighting)
    started = time.perf_counter()
    if caption_embeddings is None:
        caption_embeddings = text.embed(dataset.captions)
    validation = validation_triples(dataset, caption_embeddings)
    rng = np.random.default_rng(settings.seed)
    train_rows = dataset.rows(dataset.train_image_ids)
    image = new_image_embedder(settings, dataset.features, text.dim, rows=train_rows)
    if settings.text_map != "none":  # CCA's pairs: the training captions and their images
        captioned = dataset.train_captions_mask
        owners = np.searchsorted(dataset.train_image_ids, dataset.caption_image_ids[captioned])
        image = start_text_map(image, settings, text, dataset.features, train_rows,
                               caption_embeddings[captioned], owners)
    optim = make_optimizer(settings, image.parameters)
    text_side = getattr(image, "map_text", None)  # a learned text map (capstone.further.textmap)
    loss_of = loss_for(settings, text_side)

    def validate():  # with a text map, the validation captions as it maps them now
        captions = (caption_embeddings if text_side is None
                    else image.embed_text_rows(caption_embeddings))
        return validation_metrics(image, dataset.features, captions, validation,
                                  settings.margin)

    recorder = new_recorder(plot, live, validate=validate)  # also mid-epoch
    history = History(recorder=recorder)
    preset = chosen if isinstance(chosen, str) else None
    info = {"dataset": dataset.name, "settings": {"preset": preset, **dataclasses.asdict(settings)}}
    untrained = validate()
    checkpoint = Checkpoint(image, text, info, out, untrained)

    epoch = 0
    bars = [tqdm(desc=desc, disable=not progress) for desc in ("epochs", "batches")]
    bars[0].reset(total=settings.epochs)
    try:
        for epoch in range(1, settings.epochs + 1):
            epoch_start = time.perf_counter()
            triples = epoch_triples(dataset, caption_embeddings, settings, rng)
            bars[1].reset(total=-(-len(triples) // settings.batch_size))
            watch = EpochWatch(recorder, bars[1],
                               on_batch and (lambda *a, e=epoch: on_batch(e, *a)))
            with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads cost time
                train_epoch(image, optim, dataset.features, caption_embeddings, triples, settings,
                            watch, loss_of)
            val = validate()
            recorder.set_test_batch({"loss": val["loss"], "accuracy": val["accuracy"]},
                                    batch_size=len(validation["hard"]))
            recorder.set_test_epoch()
            history.records.append(epoch_record(epoch, watch.means(), val, epoch_start))
            bars[0].update()
            if checkpoint.update(epoch, val):
                history.best_epoch = epoch
            if on_epoch:
                on_epoch(history.records[-1])
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"interrupted in epoch {epoch}: returning the best model so far "
              f"({checkpoint.describe()})")
    finally:
        for bar in bars:
            bar.close()

    model = checkpoint.best_model()
    model.info["metrics"].update(epochs_run=len(history.records),
                                 seconds=round(time.perf_counter() - started, 2))
    # Kept (calibrated, saved): an epoch did better than the untrained model (saved as it came)
    # or, run to the end, a CCA start, already a fitted model, beats chance (0.5) clearly.
    history.kept = checkpoint.epoch > 0 or (
        not history.interrupted and settings.text_map != "none"
        and settings.text_map_init == "cca" and untrained["accuracy"] > FITTED_ACCURACY)
    if not history.interrupted:
        captions = (caption_embeddings if text_side is None  # the model's, not made twice
                    else model.image.embed_text_rows(caption_embeddings))
        model.info["metrics"].update(evaluate(model, dataset, caption_embeddings=captions,
                                              validation=validation))
        if history.kept and calibration:  # an unfitted model has nothing to calibrate
            # the weak-match score: validation captions searched among every image, as search does
            queries, owners = query_captions(dataset, held_out_images(dataset, 1000))
            shows = ImageWords(dataset.captions, dataset.caption_image_ids, dataset.scenes)
            try:
                model.info["calibration"] = calibrate(model, dataset.features, dataset.image_ids,
                                                      queries, owners, shows)
            except ValueError as error:  # e.g. a query of no known word: nothing marked weak
                notice(f"the weak-match score was not calibrated: {error}")
        if out is not None and history.kept:
            model.save(out)
        elif out is not None:  # no better than untrained: the saved model stays
            notice(f"no epoch did better than the untrained model, so {out} was left as it was")
    history.figure = recorder.close() if plot else None
    return model, history


def one_blas_thread() -> None:
    """Run NumPy's BLAS on one thread from now on, in this process (notebook 4's kernel).

    A batch's products (a few hundred rows by 512 by D) are too small to share between threads:
    at COCO size one epoch of the ``class`` preset took 18 s of CPU on two threads against 4 s on
    one (:func:`train` limits its epochs the same way).
    """
    threadpool_limits(limits=1, user_api="blas")


def fit_text(dataset, glove=None, weighting="idf") -> TextEmbedder:
    """A :class:`~capstone.course.text.TextEmbedder` fitted on the training captions only
    (``weighting``: ``"idf"``, ``"mean"`` or ``"sif"``, :func:`capstone.further.sif.
    fit_weighted`), with the dataset's word vectors unless ``glove`` is given."""
    glove = load_word_vectors(dataset.glove_name) if glove is None else glove  # no gensim
    captions = dataset.captions_where(dataset.train_captions_mask)
    return fit_weighted(captions, glove, dataset.glove_name, weighting)

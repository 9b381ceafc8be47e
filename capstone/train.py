"""Training ``se_image`` with a margin ranking loss on (caption, good image, bad image) triples.

For each triple the loss is ``max(0, margin - (sim(text, good) - sim(text, bad)))`` with cosine
similarities; the text embeddings are constants, only the dense layer learns. Each epoch draws new
hard-negative triples from the training images; validation triples are fixed (same seed every
run) so that validation accuracy compares across runs. The best model by validation triple
accuracy is kept, saved after each epoch that improves it, and returned even when training is
interrupted.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field

import mygrad as mg
import numpy as np
from mygrad.nnet.losses import margin_ranking_loss
from mynn.optimizers import SGD, Adam

from .evaluate import evaluate
from .model import ImageEmbedder, SearchModel, check_model_path
from .paths import default_model_path
from .triples import NEGATIVES, make_triples, triple_accuracy, triple_metrics

PRESETS = {
    # The course's settings: glorot_normal, SGD lr 1e-3 momentum 0.9, margin 0.25, batch 32.
    "course": dict(
        epochs=30, batch_size=32, lr=1e-3, momentum=0.9, margin=0.25, optimizer="sgd",
        negatives="hard", n_candidates=25,
    ),
    # Measured best on the sample: Adam at lr 3e-3, and a margin and hardness that fit the text
    # space. There, a caption's own image's other captions beat a 25-candidate hard negative's
    # captions by a median cosine gap of only 0.008 (never 0.25), so margin 0.25 keeps every hard
    # triple's loss on; margin 0.1 with 5 candidates trains best.
    "default": dict(
        epochs=30, batch_size=32, lr=3e-3, momentum=0.9, margin=0.1, optimizer="adam",
        negatives="hard", n_candidates=5,
    ),
}
OPTIMIZERS = ("sgd", "adam")


@dataclass
class History:
    """What happened during :func:`train`.

    Attributes
    ----------
    records : list of dict
        One per epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy`` (hard validation triples), ``val_accuracy_random``, ``seconds``.
    best_epoch : int
        Epoch of the returned model (0: untrained, when no epoch finished or improved).
    interrupted : bool
        Whether training was stopped early (KeyboardInterrupt).
    recorder : capstone.live.LivePlot or noggin.LiveLogger
        noggin's record of every batch and epoch (``recorder.train_metrics``, ``test_metrics``).
    figure : matplotlib.figure.Figure or None
        The loss and accuracy curves (``None`` with ``plot=False``).
    """

    records: list = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False
    recorder: object = None
    figure: object = None


def resolve_settings(preset: str | None, **overrides) -> dict:
    """A preset's settings with the given non-``None`` values overriding them."""
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    settings = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if settings["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {settings['optimizer']!r}")
    if settings["negatives"] not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {settings['negatives']!r}")
    for name in ("epochs", "batch_size"):
        if int(settings[name]) < 1:
            raise ValueError(f"{name} must be at least 1, got {settings[name]}")
    return {"preset": preset, **settings}


def cosine_triple_loss(image, text, good_features, bad_features, margin):
    """Margin ranking loss of one batch, in the graph of the image embedder.

    Parameters
    ----------
    image : ImageEmbedder
    text : numpy.ndarray, shape (n, D)
        Unit caption embeddings (constants).
    good_features, bad_features : numpy.ndarray, shape (n, 512)
    margin : float

    Returns
    -------
    loss : mygrad.Tensor, shape ()
    sim_good, sim_bad : numpy.ndarray, shape (n,)
        Cosine similarities of each caption to its good and bad image.
    """
    n = len(text)
    both = image(np.concatenate([good_features, bad_features]))
    both = both / mg.sqrt(mg.sum(both**2, axis=1, keepdims=True) + 1e-12)
    sim_good = mg.sum(both[:n] * text, axis=1)
    sim_bad = mg.sum(both[n:] * text, axis=1)
    return margin_ranking_loss(sim_good, sim_bad, 1, margin), sim_good.data, sim_bad.data


def make_optimizer(name: str, parameters, lr: float, momentum: float):
    """MyNN's ``SGD`` (with momentum) or ``Adam`` over ``parameters``."""
    if name == "sgd":
        return SGD(parameters, learning_rate=lr, momentum=momentum)
    return Adam(parameters, learning_rate=lr)


def train(
    dataset=None,
    *,
    preset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    margin: float | None = None,
    negatives: str | None = None,
    n_candidates: int | None = None,
    optimizer: str | None = None,
    seed: int = 0,
    glove=None,
    text=None,
    out=None,
    live: bool | None = None,
    plot: bool = True,
    progress: bool = True,
    on_batch=None,
):
    """Train an image embedder on a dataset's training images; return the best model.

    Settings left as ``None`` come from ``preset``: ``"default"`` (measured best on the sample)
    or ``"course"`` (the course's SGD lr 1e-3, momentum 0.9, margin 0.25, batch 32); see
    :data:`PRESETS`.

    Parameters
    ----------
    dataset : capstone.data.Dataset or str, optional
        A dataset or its name; by default :func:`capstone.data.load_dataset`'s default.
    preset, epochs, batch_size, lr, momentum, margin, negatives, n_candidates, optimizer
        Training settings (``optimizer`` is ``"sgd"`` or ``"adam"``; ``momentum`` is SGD's).
    seed : int
        Seeds the initial weights, the triples and their order: a run is reproducible.
    glove : gensim KeyedVectors, optional
        The vectors ``dataset.glove_name`` names (the saved model records that name), when
        already loaded; by default loaded here.
    text : capstone.text.TextEmbedder, optional
        An embedder already fitted on the training captions; by default one is fitted here
        (IDF over the training captions only).
    out : path-like or False, optional
        Where the best model is saved after each epoch that improves it (atomically); by default
        :func:`capstone.paths.default_model_path`; ``False`` saves nothing.
    live : bool, optional
        Redraw the curves while training (default: only in a Jupyter kernel).
    plot : bool
        Draw the loss and accuracy curves with noggin (the figure is in the history).
    progress : bool
        Show ``tqdm`` progress bars for epochs and batches.
    on_batch : callable, optional
        Called as ``on_batch(epoch, batch_index, metrics)`` after each batch.

    Returns
    -------
    model : SearchModel
        The weights of the best epoch by validation triple accuracy, with ``info`` recording the
        settings and metrics.
    history : History

    Notes
    -----
    Validation uses fixed triples of the validation images (25-candidate hard negatives, and
    random ones), the same in every run. Stopping training (KeyboardInterrupt, e.g. the notebook's
    stop button) ends it cleanly: one line is printed and the best model so far is returned
    (and is already saved when an epoch improved it).
    """
    from tqdm.auto import tqdm

    settings = resolve_settings(
        preset, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, margin=margin,
        negatives=negatives, n_candidates=n_candidates, optimizer=optimizer,
    )
    dataset = resolve_dataset(dataset)
    out = default_model_path(dataset.name) if out is None else out
    out = out if out is False else check_model_path(out)  # refused now, not after an epoch
    text = text if text is not None else fit_text(dataset, glove)
    started = time.perf_counter()

    caption_embeddings = text.embed(dataset.captions)
    validation = {
        kind: make_triples(dataset, caption_embeddings, split="validation", negatives=kind)
        for kind in NEGATIVES
    }
    rng = np.random.default_rng(seed)
    image = ImageEmbedder(dataset.features.shape[1], text.dim, seed=seed)
    optim = make_optimizer(settings["optimizer"], image.parameters, settings["lr"],
                           settings["momentum"])
    recorder = new_recorder(plot, live)
    history = History(recorder=recorder)
    best = {"epoch": 0, "arrays": image.get_arrays(),
            "validation": validation_metrics(image, dataset, caption_embeddings, validation,
                                             settings["margin"])}
    info = {"dataset": dataset.name, "settings": {**settings, "seed": seed}}

    epoch = 0
    epochs_bar = tqdm(total=settings["epochs"], desc="epochs", disable=not progress)
    batches_bar = tqdm(desc="batches", disable=not progress)
    try:
        for epoch in range(1, settings["epochs"] + 1):
            epoch_start = time.perf_counter()
            triples = make_triples(
                dataset, caption_embeddings, split="train", negatives=settings["negatives"],
                n_candidates=settings["n_candidates"], seed=int(rng.integers(2**32)),
            ).shuffled(rng)
            train_means = train_epoch(image, optim, dataset.features, caption_embeddings,
                                      triples, settings, recorder, epoch=epoch,
                                      on_batch=on_batch, bar=batches_bar)
            val = validation_metrics(image, dataset, caption_embeddings, validation,
                                     settings["margin"])
            recorder.set_test_batch({"loss": val["loss"], "accuracy": val["accuracy"]},
                                    batch_size=len(validation["hard"]))
            recorder.set_test_epoch()
            history.records.append(epoch_record(epoch, train_means, val, epoch_start))
            epochs_bar.update()
            if val["accuracy"] > best["validation"]["accuracy"]:
                best = {"epoch": epoch, "validation": val, "arrays": image.get_arrays()}
                history.best_epoch = epoch
                if out is not False:
                    save_best(image, text, best, info, out)
    except KeyboardInterrupt:
        history.interrupted = True
        where = f", saved at {out}" if out is not False and best["epoch"] else ""
        print(f"interrupted in epoch {epoch}: returning the best model so far (epoch "
              f"{best['epoch']}, validation accuracy {best['validation']['accuracy']:.3f}{where})")
    finally:
        batches_bar.close()
        epochs_bar.close()

    image.set_arrays(best["arrays"])
    model = SearchModel(image, text, {**info, "metrics": best_metrics(best, history, started)})
    if not history.interrupted:
        model.info["metrics"].update(evaluate(model, dataset))
        if out is not False:
            model.save(out)
    history.figure = recorder.close() if plot else None
    return model, history


def train_epoch(image, optim, features, caption_embeddings, triples, settings, recorder, *,
                epoch=1, on_batch=None, bar=None):
    """One pass over ``triples`` in batches: forward, ``loss.backward()``, ``optim.step()``.

    Records each batch's loss and accuracy in ``recorder``, closes its training epoch, and calls
    ``on_batch(epoch, batch_index, metrics)`` after each batch when given, and advances the
    ``tqdm`` progress ``bar`` when given. Returns the epoch's mean ``loss`` and ``accuracy`` over
    triples.

    mygrad 2.x nulls a parameter's gradient as soon as it enters a new graph, so gradients never
    accumulate across batches. BLAS runs on one thread here: the matrices are small, and on a busy
    2-core machine OpenBLAS's extra threads make each batch several times slower.
    """
    from threadpoolctl import threadpool_limits

    batch_size = settings["batch_size"]
    totals = np.zeros(2)
    starts = range(0, len(triples), batch_size)
    if bar is not None:
        bar.reset(total=len(starts))
    with threadpool_limits(limits=1, user_api="blas"):
        for batch_index, start in enumerate(starts):
            rows = slice(start, start + batch_size)
            loss, sim_good, sim_bad = cosine_triple_loss(
                image, caption_embeddings[triples.caption_rows[rows]],
                features[triples.good_rows[rows]], features[triples.bad_rows[rows]],
                settings["margin"],
            )
            loss.backward()
            optim.step()
            metrics = {"loss": loss.item(), "accuracy": triple_accuracy(sim_good, sim_bad)}
            recorder.set_train_batch(metrics, batch_size=len(sim_good))
            totals += len(sim_good) * np.array([metrics["loss"], metrics["accuracy"]])
            if bar is not None:
                bar.update()
            if on_batch:
                on_batch(epoch, batch_index, metrics)
    recorder.set_train_epoch()
    return dict(zip(("loss", "accuracy"), (totals / len(triples)).tolist()))


def validation_metrics(image, dataset, caption_embeddings, validation, margin) -> dict:
    """Loss and accuracy on the hard validation triples, plus accuracy on the random ones."""
    image_embeddings = image.embed(dataset.features)
    hard = triple_metrics(image_embeddings, caption_embeddings, validation["hard"], margin)
    random = triple_metrics(image_embeddings, caption_embeddings, validation["random"], margin)
    return {**hard, "accuracy_random": random["accuracy"]}


def epoch_record(epoch, train, val, epoch_start) -> dict:
    """One row of :attr:`History.records`."""
    return {
        "epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
        "val_loss": val["loss"], "val_accuracy": val["accuracy"],
        "val_accuracy_random": val["accuracy_random"],
        "seconds": round(time.perf_counter() - epoch_start, 3),
    }


def best_metrics(best, history, started) -> dict:
    """The ``metrics`` record of the best epoch so far."""
    return {"best_epoch": best["epoch"], "epochs_run": len(history.records),
            "seconds": round(time.perf_counter() - started, 2),
            **triple_names(best["validation"])}


def triple_names(validation: dict) -> dict:
    """Validation metrics under the names :func:`capstone.evaluate.evaluate` gives them."""
    return {"triple_accuracy": validation["accuracy"],
            "triple_accuracy_random": validation["accuracy_random"],
            "triple_loss": validation["loss"]}


def save_best(image, text, best, info, out):
    """Save the best weights so far to ``out`` (atomic), leaving ``image`` as it is."""
    snapshot = ImageEmbedder(*image.shape).set_arrays(best["arrays"])
    metrics = {"best_epoch": best["epoch"], **triple_names(best["validation"])}
    SearchModel(snapshot, text, {**info, "metrics": metrics}).save(out)


def new_recorder(plot: bool, live: bool | None):
    """noggin's recorder: a live plot (:class:`capstone.live.LivePlot`) or a bare logger."""
    if plot:
        from .live import LivePlot

        return LivePlot(("loss", "accuracy"), live=live)
    import noggin

    return noggin.LiveLogger()


def resolve_dataset(dataset):
    """A :class:`~capstone.data.Dataset` from a dataset, a name or ``None``."""
    if dataset is None or isinstance(dataset, str):
        from .data import load_dataset

        return load_dataset(dataset)
    return dataset


def fit_text(dataset, glove=None):
    """A :class:`~capstone.text.TextEmbedder` fitted on the training captions only."""
    from .glove import load_glove
    from .text import TextEmbedder

    glove = load_glove(dataset.glove_name) if glove is None else glove
    mask = dataset.train_captions_mask
    captions = [caption for caption, keep in zip(dataset.captions, mask) if keep]
    return TextEmbedder.fit(captions, glove, dataset.glove_name)


# -- command line ------------------------------------------------------------------------------
def add_cli(subparsers) -> None:
    """Add ``train``."""
    parser = subparsers.add_parser(
        "train", help="train the image embedder; print final metrics as one JSON line"
    )
    parser.add_argument("--dataset", help="sample or coco (default: $CAPSTONE_DATASET / sample)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    parser.add_argument("--negatives", choices=NEGATIVES, help="bad images: hard or random")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and triples")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="settings: default (tuned) or course (the course's)")
    parser.add_argument("--out", help="model file (.npz; default: the dataset's model path)")
    parser.set_defaults(func=run_train_cli)


def run_train_cli(args) -> int:
    """``python -m capstone train``: train, save, print one JSON line of metrics.

    Everything else (progress, the interrupt notice) goes to stderr.
    """
    with contextlib.redirect_stdout(sys.stderr):
        model, history = train(
            args.dataset, preset=args.preset, epochs=args.epochs, negatives=args.negatives,
            seed=args.seed, out=args.out, live=False, plot=False, progress=sys.stderr.isatty(),
        )
    out = args.out or default_model_path(model.info["dataset"])
    saved = not history.interrupted or history.best_epoch > 0
    summary = {"dataset": model.info["dataset"], "model": str(out) if saved else None,
               "checksum": model.checksum,
               "interrupted": history.interrupted, "best_epoch": history.best_epoch,
               **model.info.get("metrics", {})}
    print(json.dumps(summary))
    return 130 if history.interrupted else 0

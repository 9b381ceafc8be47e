"""The saved model and image database, opened fast; trained or built, saying so, when missing.

A search needs the model (weights, vocabulary, IDF and the vocabulary's GloVe vectors), the image
database (ids and embeddings) and, for the few results it shows, their urls and captions.
:func:`open_database` reads just those: a :class:`SearchView` of the dataset (the compact caption
cache of :mod:`capstone.data.captions` and the features cache's ids), not the features, the full
GloVe or the captions JSON. At COCO size that is what makes ``python -m capstone search`` start
in about a second.

:func:`load_or_train` is what a notebook or the app calls for a model: the saved one, else one
trained now, with a line saying so and how long it takes, and a progress bar.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from capstone.data.captions import load_caption_store
from capstone.data.dataset import dataset_files, load_dataset, read_captions, rows_of_features
from capstone.search.database import SearchDatabase, add_saved_images
from capstone.data.model import load_model
from capstone.data.paths import (check_dataset_name, default_database_path, default_dataset_name,
                    default_model_path, say)
from capstone.data.store import load_feature_ids, load_features

#: Seconds per training triple and per batch (one BLAS thread), measured on the 2-core build
#: machine at COCO size: what the announced training time is estimated from.
SECONDS_PER_TRIPLE, SECONDS_PER_BATCH = 1.2e-5, 4.5e-4


class SearchView:
    """What search needs of a dataset, without its features or its list of captions.

    Stands in for a :class:`capstone.data.dataset.Dataset` in an :class:`SearchDatabase`: ``name``,
    ``image_ids`` (the images with features), ``urls``, ``image_captions`` and ``scenes`` as
    a Dataset has them; the features are read on first use (:meth:`features_of`).
    """

    def __init__(self, name: str, image_ids, store, features_path, remedy: str = ""):
        self.name, self.image_ids = name, np.asarray(image_ids, dtype=np.int64)
        self.urls, self.image_captions = store.urls, store.image_captions
        self.scenes = store.scenes
        self._features_path, self._remedy, self._features = features_path, remedy, None

    @property
    def n_images(self) -> int:
        """Number of images with features."""
        return len(self.image_ids)

    @property
    def features(self) -> np.ndarray:
        """``(n_images, 512)`` float32, read on first use."""
        if self._features is None:
            image_ids, features = load_features(self._features_path, self._remedy)
            self._features = features[np.isin(image_ids, self.image_ids)]
        return self._features

    def rows(self, image_ids) -> np.ndarray:
        """Row indices of image ids (``KeyError`` for an image without features)."""
        image_ids = np.atleast_1d(np.asarray(image_ids, dtype=np.int64))
        rows = np.minimum(np.searchsorted(self.image_ids, image_ids), len(self.image_ids) - 1)
        bad = self.image_ids[rows] != image_ids
        if bad.any():
            raise KeyError(f"image_id {int(image_ids[bad][0])} is not in the {self.name} "
                           f"dataset's images with features")
        return rows

    def features_of(self, image_ids) -> np.ndarray:
        """Feature rows (float32, shape (n, 512)) of the given image ids (all: a view)."""
        return rows_of_features(self.features, self.rows(image_ids))

    def __repr__(self) -> str:
        return f"SearchView(name={self.name!r}, images={self.n_images})"


def load_search_view(name: str | None = None) -> SearchView:
    """A dataset's :class:`SearchView` (``name`` as in
    :func:`capstone.data.dataset.load_dataset`)."""
    files = dataset_files(name)
    store = load_caption_store(files["captions"], read_captions, files["remedy"])
    feature_ids = load_feature_ids(files["features"], files["remedy"])
    image_ids = feature_ids[np.isin(feature_ids, store.image_ids)]
    return SearchView(files["name"], image_ids, store, files["features"], files["remedy"])


def open_database(dataset=None, model=None, *, path=None) -> SearchDatabase:
    """The saved image database of a dataset with its model, read fast for search.

    Parameters
    ----------
    dataset : str, capstone.data.dataset.Dataset or None
        A dataset or its name (default: :func:`capstone.data.paths.default_dataset_name`'s). Given a
        name, only a :class:`SearchView` of it is read.
    model : capstone.data.model.SearchModel, path-like or None
        The model, or its file (default: the dataset's saved model).
    path : path-like, optional
        The database file (default: :func:`capstone.data.paths.default_database_path`).

    Returns
    -------
    SearchDatabase
        Loaded when the saved one matches the model and the images, else built (saying so)
        from the full dataset and saved; with the images ``python -m capstone add`` added; when
        ``$CAPSTONE_MILVUS_URI`` is set, answering from a Milvus collection ``capstone_<dataset>``
        there (:mod:`capstone.search.milvus`).
    """
    if dataset is None or isinstance(dataset, str):
        name = check_dataset_name(dataset) if dataset else default_dataset_name(announce=True)
        if not hasattr(model, "checksum"):
            model = load_model(model, dataset=name)  # a missing model fails before any data
        view = load_search_view(name)
    else:
        view = dataset
        if not hasattr(model, "checksum"):
            model = load_model(model, dataset=view.name)
    path = path or default_database_path(view.name)
    try:
        database = SearchDatabase.load(path, model, view)
    except (OSError, ValueError):  # missing, stale or damaged: build it from the dataset
        say(f"building the {view.name} image database ({view.n_images:,} images), a few seconds")
        full = view if hasattr(view, "captions") else load_dataset(view.name)
        database = SearchDatabase.build(model, full)
        database.save(path)
    add_saved_images(database)  # the images `python -m capstone add` added, embedded by this model
    if os.environ.get("CAPSTONE_MILVUS_URI"):  # answer from Milvus (a server many processes share)
        from capstone.search.ann import use_index

        use_index(database, "milvus", collection=f"capstone_{view.name}")
    return database


def training_estimate(dataset, settings) -> float:
    """Rough seconds that :func:`capstone.pipeline.training.train` takes with ``settings`` on
    ``dataset``."""
    n_triples = int(np.count_nonzero(dataset.train_captions_mask))
    n_batches = -(-n_triples // settings.batch_size)
    return 10 + settings.epochs * (n_triples * SECONDS_PER_TRIPLE + n_batches * SECONDS_PER_BATCH)


def load_or_train(dataset=None, *, preset: str | None = None, path=None, progress: bool = True,
                  **changes):
    """The dataset's saved model, or one trained and saved now.

    Training says first, in one line, what it does and about how long it takes, then shows
    progress bars (epochs, batches).

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset or str, optional
        By default :func:`capstone.data.dataset.load_dataset`'s; loaded only to train.
    preset : str, optional
        Settings to train with when no model is saved: by default ``"class"`` for a dataset of
        more than 10,000 images (it fits a class period at COCO size), else ``"default"``.
    path : path-like, optional
        The model file (default: the dataset's).
    progress : bool
        Show the progress bars.
    **changes
        Settings to change (e.g. ``epochs=3``), as :func:`capstone.pipeline.training.train`
        takes them.

    Returns
    -------
    capstone.data.model.SearchModel
    """
    name = getattr(dataset, "name", dataset) or default_dataset_name(announce=True)
    try:
        return load_model(path, dataset=name)  # nothing else is read for a saved model
    except FileNotFoundError:
        pass
    out = path or default_model_path(name)
    with training_lock(out) as waited:
        if waited:  # another kernel or command trained it meanwhile
            try:
                return load_model(path, dataset=name)
            except FileNotFoundError:
                pass  # it failed or was interrupted: train here
        return _train_now(dataset, name, out, preset, progress, changes)


@contextlib.contextmanager
def training_lock(model_path):
    """Hold the lock on training ``model_path``; yields whether another holder was waited for.

    Two visitors of the app (or two notebooks) with no saved model would otherwise train the
    same model at once, each at full memory: the second one says it waits, then loads the first
    one's model. The lock is ``MODEL.lock`` beside the model file, released when its holder ends
    (even killed); where file locks are unavailable, nothing is locked.
    """
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = model_path.with_name(model_path.name + ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield False
        return
    with open(lock_path, "a+") as lock:
        waited = False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"Another process is training {model_path} now (one training at a time): "
                f"waiting for it to finish, then using its model.")
            started = time.perf_counter()
            fcntl.flock(lock, fcntl.LOCK_EX)
            say(f"done waiting ({time.perf_counter() - started:.0f} s)")
            waited = True
        try:
            yield waited
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _train_now(dataset, name, out, preset, progress, changes):
    """Train and save the model :func:`load_or_train` did not find, saying so first."""
    from capstone.course.train import resolve_settings
    from capstone.pipeline.training import train  # training's libraries load only when it runs

    dataset = load_dataset(name) if isinstance(dataset, str) or dataset is None else dataset
    preset = preset or ("class" if dataset.n_images > 10_000 else "default")
    settings = resolve_settings(preset, **changes)
    minutes = training_estimate(dataset, settings) / 60
    took = f"about {minutes:.0f} min" if minutes >= 1.5 else "under 2 min"
    say(f"No saved model for {dataset.name}: training one now ({preset!r} preset, "
        f"{settings.epochs} epoch{'s' * (settings.epochs != 1)}, {took}); it is saved to {out}. "
        f"`python -m capstone train --dataset {dataset.name} --preset {preset}` does this "
        f"before class.")
    started = time.perf_counter()
    model, _ = train(dataset, preset, out=out, plot=False, progress=progress, **changes)
    say(f"trained in {time.perf_counter() - started:.0f} s")
    return model

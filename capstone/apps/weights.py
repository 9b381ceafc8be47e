"""Trained models kept in the repository, for the course benchmark (which never looks for them).

The benchmark's README: "It also never looks for your weights: your adapter loads them from your
own repository, so commit them." ``python -m capstone export`` copies a trained model to
``weights/<dataset>.npz`` at the repository's root (:func:`export_model`); the adapter finds a
model with :func:`find_model`, in this order:

1. ``weights/<dataset>.npz`` in the repository (what ``export`` wrote and you committed);
2. the file ``$CAPSTONE_MODEL`` names;
3. the cache's ``models/<dataset>.npz`` (what ``python -m capstone train`` saved);

and when there is none, :func:`train_on_files` trains one on the files the benchmark hands over
(captions, descriptors, GloVe), saying so with progress bars, and saves it in the cache.

An exported file is a model file (:class:`capstone.data.model.SearchModel`): the image map, the
vocabulary and its IDF, and -- when they take under :data:`WORD_VECTORS_LIMIT` bytes -- the
vocabulary's GloVe vectors. Without them (COCO's vocabulary at 200-d is many megabytes) the
model reads the GloVe file the benchmark hands it, or the one it names.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from capstone.data.paths import default_dataset_name, models_dir, say

#: The repository's folder of exported models (beside ``capstone/``).
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
#: An exported model keeps its vocabulary's word vectors below this size (bytes).
WORD_VECTORS_LIMIT = 2_000_000


def weights_path(dataset_name: str) -> Path:
    """``weights/<dataset_name>.npz`` in the repository."""
    return WEIGHTS_DIR / f"{dataset_name}.npz"


def model_candidates(dataset_name: str) -> list[Path]:
    """Where a model for ``dataset_name`` is looked for, in order (see the module docstring)."""
    env = os.environ.get("CAPSTONE_MODEL")
    candidates = [weights_path(dataset_name), Path(env).expanduser() if env else None,
                  models_dir() / f"{dataset_name}.npz"]
    return list(dict.fromkeys(path for path in candidates if path is not None))


def find_model(dataset_name: str) -> Path | None:
    """The first existing file of :func:`model_candidates`, else ``None``."""
    return next((path for path in model_candidates(dataset_name) if path.is_file()), None)


def export_model(dataset_name: str | None = None, *, model_path=None, out=None) -> Path:
    """Copy a trained model to ``out`` (default ``weights/<dataset>.npz``); return the path.

    ``model_path`` defaults to the dataset's trained model (``python -m capstone train``). The
    vocabulary's word vectors are kept when they take under :data:`WORD_VECTORS_LIMIT` bytes.
    """
    from capstone.data.model import load_model

    name = dataset_name or default_dataset_name()
    model = load_model(model_path, dataset=name)
    text = model.text_for([])  # the vocabulary's own vectors: no full GloVe read to export
    small = len(text.vocab) * text.dim * 4 < WORD_VECTORS_LIMIT
    out = Path(out) if out else weights_path(model.info.get("dataset") or name)
    out.parent.mkdir(parents=True, exist_ok=True)
    return model.save(out, word_vectors=small)


def train_on_files(dataset_name: str, captions_path, descriptors_path, glove_path=None):
    """Train a model on the course files the benchmark hands over, saying so; save it in the cache.

    Parameters
    ----------
    dataset_name : str
        What the model is for (its file is ``models/<dataset_name>.npz`` in the cache).
    captions_path, descriptors_path : path-like
        COCO captions JSON and the ResNet-18 descriptor pickle.
    glove_path : path-like, optional
        A word2vec-format GloVe file; by default the dataset's GloVe, by name.

    Returns
    -------
    capstone.data.model.SearchModel
    """
    from capstone.course.train import resolve_settings
    from capstone.pipeline.training import train
    from capstone.data.dataset import read_dataset
    from capstone.data.glove import load_glove_file, load_word_vectors
    from capstone.pipeline.prepared import training_estimate

    dataset = read_dataset({"captions": captions_path, "features": descriptors_path},
                           dataset_name)
    if glove_path:
        glove = load_glove_file(glove_path)
        if glove.vectors.shape[1] == 200:  # the course's GloVe, whatever the folder holds
            dataset.glove_name = "glove.6B.200d"
    else:
        glove = load_word_vectors(dataset.glove_name)
    preset = "class" if dataset.n_images > 10_000 else "default"
    settings = resolve_settings(preset)
    minutes = training_estimate(dataset, settings) / 60
    took = f"about {minutes:.0f} min" if minutes >= 1.5 else "under 2 min"
    out = models_dir() / f"{dataset_name}.npz"
    say(f"capstone: no trained model for {dataset_name} (looked in "
        f"{', '.join(map(str, model_candidates(dataset_name)))}): training one now on the "
        f"benchmark's files ({dataset.n_images:,} images, {preset!r} preset, {settings.epochs} "
        f"epochs, {took}); it is saved to {out}. `python -m capstone export` then puts it in the "
        "repository.")
    started = time.perf_counter()
    model, _ = train(dataset, preset, glove=glove, out=out, plot=False, progress=True)
    say(f"capstone: trained in {time.perf_counter() - started:.0f} s")
    return model

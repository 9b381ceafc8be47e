"""Where the project keeps its files: the cache folder and its well-known locations.

Environment variables (a public interface, keep them stable):

``CAPSTONE_CACHE``
    The cache folder (default: the per-user cache dir, e.g. ``~/.cache/capstone``).
``CAPSTONE_DATA_DIR``
    A folder holding ``captions_train2014.json`` and ``resnet18_features.pkl`` (and optionally
    GloVe files) to use as the ``coco`` dataset instead of the cogworks-data download cache.
``CAPSTONE_DATASET``
    The default dataset name (``sample`` or ``coco``).
``CAPSTONE_MODEL``
    A trained model file (``.npz``) to use instead of the per-dataset default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the project's cache folder, creating it if needed.

    Returns
    -------
    pathlib.Path
        ``$CAPSTONE_CACHE`` when set, else ``$XDG_CACHE_HOME/capstone`` or ``~/.cache/capstone``.
    """
    env = os.environ.get("CAPSTONE_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "capstone"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sample_dir() -> Path:
    """Folder of the embedded sample dataset (generated on first use)."""
    return cache_dir() / "sample"


def models_dir() -> Path:
    """Folder of trained models, one ``<dataset>.npz`` per dataset."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_model_path(dataset_name: str) -> Path:
    """Where ``python -m capstone train`` saves a model for ``dataset_name`` by default.

    ``CAPSTONE_MODEL``, when set, overrides it.
    """
    env = os.environ.get("CAPSTONE_MODEL")
    if env:
        return Path(env).expanduser()
    return models_dir() / f"{dataset_name}.npz"


def default_database_path(dataset_name: str, split: str = "all") -> Path:
    """Where the image database for ``dataset_name`` is cached."""
    path = cache_dir() / "databases"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{dataset_name}-{split}.npz"


def atomic_write(path: os.PathLike | str, write) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then rename over ``path``.

    Parameters
    ----------
    path : path-like
        The final location.
    write : callable
        Called with a temporary path in the same folder; must create that file.
        When the temporary path ends in ``.npz`` it can be given to ``np.savez`` as is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(path: os.PathLike | str, value) -> Path:
    """Write ``value`` to ``path`` as UTF-8 JSON, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value), encoding="utf-8"))


def read_json(path: os.PathLike | str, default=None):
    """The JSON value in ``path``, or ``default`` when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default

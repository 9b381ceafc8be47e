"""Where the project's files live: the cache, the course's data folder, the dataset names.

How files are written and the notices about them are in :mod:`capstone.files`.

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

import functools
import os
from pathlib import Path

from capstone.errors import DataError, MissingFileError
from capstone.files import cache_root, say

DATASETS = ("sample", "coco")
CAPTIONS_FILE = "captions_train2014.json"
FEATURES_FILE = "resnet18_features.pkl"
GLOVE_FILES = {"glove.6B.50d": "glove.6B.50d.txt.w2v", "glove.6B.200d": "glove.6B.200d.txt.w2v"}
DOWNLOAD_COMMAND = "python -m capstone download"


def cache_dir() -> Path:
    """Return the project's cache folder, creating it if needed.

    Returns
    -------
    pathlib.Path
        ``$CAPSTONE_CACHE`` when set, else ``$XDG_CACHE_HOME/capstone`` or ``~/.cache/capstone``.
    """
    return make_folder(cache_root())


def make_folder(path: Path) -> Path:
    """``path``, created with its parents if needed.

    Raises
    ------
    DataError
        One line when it cannot be (a file in the way, a read-only disk), saying what to do.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = " (the cache: $CAPSTONE_CACHE)" if path == cache_root() else ""
        raise DataError(f"cannot create the folder {path}{where}: "
                        f"{error.strerror or error}; set CAPSTONE_CACHE to a folder you can "
                        "write to") from None
    return path


def sample_dir() -> Path:
    """Folder of the embedded sample dataset (generated on first use)."""
    return cache_dir() / "sample"


def models_dir() -> Path:
    """Folder of trained models, one ``<dataset>.npz`` per dataset."""
    return make_folder(cache_dir() / "models")


def default_model_path(dataset_name: str) -> Path:
    """Where ``python -m capstone train`` saves a model for ``dataset_name`` by default.

    ``CAPSTONE_MODEL``, when set, overrides it.
    """
    env = os.environ.get("CAPSTONE_MODEL")
    if env:
        return Path(env).expanduser()
    return models_dir() / f"{dataset_name}.npz"


def notebook_model_path(dataset_name: str) -> Path:
    """Where notebook 4's own training loop saves its model: never the shared one.

    Exercises change that loop (no ``optim.step()``, other settings); what they train must not
    replace the model that notebook 5, the app and ``python -m capstone search`` use.
    """
    return models_dir() / f"{dataset_name}-notebook4.npz"


def default_database_path(dataset_name: str, split: str = "all") -> Path:
    """Where the image database for ``dataset_name`` is cached."""
    return cache_dir() / "databases" / f"{dataset_name}-{split}.npz"  # made when written


# -- the course's data ---------------------------------------------------------------------------
def cogworks_cache_dir() -> Path:
    """The folder where cogworks-data keeps its downloads (``pooch.os_cache("cog_data")``)."""
    from cogworks_data._utils import language_data

    return Path(language_data.abspath)


def coco_dir() -> Path:
    """The ``coco`` dataset's folder: ``$CAPSTONE_DATA_DIR`` when set, else the cogworks cache."""
    data_dir = os.environ.get("CAPSTONE_DATA_DIR")
    return Path(data_dir).expanduser() if data_dir else cogworks_cache_dir()


def coco_on_disk() -> bool:
    """Whether the ``coco`` captions and features are already on disk (nothing is downloaded)."""
    folder = coco_dir()
    return all((folder / file_name).is_file() for file_name in (CAPTIONS_FILE, FEATURES_FILE))


def coco_paths() -> dict:
    """Paths of the ``coco`` captions and features.

    Raises
    ------
    MissingFileError
        Naming the missing file and ``python -m capstone download``; nothing is downloaded here.
    """
    folder = coco_dir()
    where = "$CAPSTONE_DATA_DIR" if os.environ.get("CAPSTONE_DATA_DIR") else "the cogworks-data cache"
    for file_name in (CAPTIONS_FILE, FEATURES_FILE):
        if not (folder / file_name).is_file():
            raise MissingFileError(
                f"{file_name} is not in {folder} ({where}): run `{DOWNLOAD_COMMAND}` to fetch the "
                f"COCO captions, features and GloVe (or use the sample dataset)"
            )
    return {"captions": folder / CAPTIONS_FILE, "features": folder / FEATURES_FILE}


SAMPLE_NOTICE = (
    "Using the embedded sample dataset: the real COCO files are not on disk "
    f"(`{DOWNLOAD_COMMAND}` gets them)."
)


@functools.cache
def announce_sample() -> None:
    """Say once per process that the sample stands in for the real data."""
    say(SAMPLE_NOTICE)


def default_dataset_name(*, announce: bool = False) -> str:
    """The dataset used when none is named.

    ``$CAPSTONE_DATASET`` when set; else ``"coco"`` when its files are already on disk
    (``$CAPSTONE_DATA_DIR`` or the cogworks-data cache); else ``"sample"``.

    Parameters
    ----------
    announce : bool
        Print one line (once per process) when falling back to the sample.
    """
    name = os.environ.get("CAPSTONE_DATASET")
    if name:
        return check_dataset_name(name, "$CAPSTONE_DATASET")
    if coco_on_disk():
        return "coco"
    if announce:
        announce_sample()
    return "sample"


def check_dataset_name(name: str, where: str = "dataset name") -> str:
    """Return ``name`` when it is a dataset's name, else raise a ``ValueError`` listing them."""
    if name not in DATASETS:
        raise ValueError(f"unknown {where} {name!r}: choose one of {', '.join(DATASETS)}")
    return name


def glove_name_in(folder: os.PathLike | str) -> str:
    """The GloVe a folder of COCO-format files goes with.

    The 200-d, else the 50-d cogworks GloVe file found in the folder; else ``glove.6B.200d`` for
    the cogworks-data cache (``download`` gets it) and ``glove-50d`` for any other folder.
    """
    folder = Path(folder)
    for glove_name in ("glove.6B.200d", "glove.6B.50d"):
        file_name = GLOVE_FILES[glove_name]
        if (folder / file_name).is_file() or (folder / f"{file_name}.zip").is_file():
            return glove_name
    return "glove.6B.200d" if folder.resolve() == cogworks_cache_dir().resolve() else "glove-50d"


def glove_name_for(dataset_name: str) -> str:
    """The default GloVe name of a dataset, without loading the dataset."""
    return "glove-50d" if check_dataset_name(dataset_name) == "sample" else glove_name_in(coco_dir())

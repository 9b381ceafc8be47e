"""Where the project's files live: the cache, the course's data folder, the dataset names.

Also how a file is written so that no reader ever sees half of it (:func:`atomic_write`).

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

import contextlib
import errno
import functools
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from capstone.errors import DataError, DiskFullError, MissingFileError

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
    path = _cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cache_root() -> Path:
    """The cache folder's path, not created."""
    env = os.environ.get("CAPSTONE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "capstone"


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


def notebook_model_path(dataset_name: str) -> Path:
    """Where notebook 4's own training loop saves its model: never the shared one.

    Exercises change that loop (no ``optim.step()``, other settings); what they train must not
    replace the model that notebook 5, the app and ``python -m capstone search`` use.
    """
    return models_dir() / f"{dataset_name}-notebook4.npz"


def default_database_path(dataset_name: str, split: str = "all") -> Path:
    """Where the image database for ``dataset_name`` is cached."""
    path = cache_dir() / "databases"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{dataset_name}-{split}.npz"


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


def say(message: str) -> None:
    """Print a notice: an ordinary line in a notebook (stdout, not a red error box), else stderr.

    Outside a notebook stdout is left to what a command prints (e.g. one JSON object).
    """
    in_notebook = type(sys.stdout).__module__.startswith("ipykernel")  # a kernel's output stream
    print(message, file=sys.stdout if in_notebook else sys.stderr, flush=True)


@functools.cache
def _announce_sample() -> None:
    """Say once per process that the sample stands in for the real data."""
    say(SAMPLE_NOTICE)


_held_notices: list | None = None


def notice(message: str) -> None:
    """Tell the user about the data (e.g. rows left out): :func:`say` it now, or keep it for
    later inside :func:`held_notices`."""
    if _held_notices is not None:
        _held_notices.append(message)
    else:
        say(message)


@contextlib.contextmanager
def held_notices():
    """Keep :func:`notice` lines in the list this yields instead of printing them.

    The command line prints them after a successful command, so that an error stays one line.
    """
    global _held_notices
    outer, _held_notices = _held_notices, []
    try:
        yield _held_notices
    finally:
        _held_notices = outer


#: Bytes a file's first read takes per second, roughly (the 2-core build machine, under load).
FIRST_READ_BYTES_PER_SECOND = 20_000_000


def announce_first_read(path: os.PathLike | str, what: str, at_least: int = 10_000_000,
                        bytes_per_second: float = FIRST_READ_BYTES_PER_SECOND) -> bool:
    """Say, for a file of ``at_least`` bytes, that its first read is slow, why, and how long.

    Returns whether it said so.
    """
    size = Path(path).stat().st_size
    if size >= at_least:
        seconds = max(1, round(size / bytes_per_second))
        say(f"reading {Path(path).name} ({size / 1e6:.0f} MB): {what}, about {seconds} s")
    return size >= at_least


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
        _announce_sample()
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


# -- writing files -------------------------------------------------------------------------------
#: ``atomic_write``'s temporaries: ``.<stem>.<pid>.tmp<suffix>``.
TEMPORARY = re.compile(r"\.(?P<stem>.*)\.(?P<pid>\d+)\.tmp(?P<suffix>\.[^.]*)?")
#: A temporary untouched this long whose process is gone is left by a killed run.
STALE_SECONDS = 60.0
_swept_folders: set = set()


def atomic_write(path: os.PathLike | str, write) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then rename over ``path``.

    The first write into a folder (per process) also removes the temporaries that killed runs
    left there (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : path-like
        The final location.
    write : callable
        Called with a temporary path in the same folder; must create that file.
        When the temporary path ends in ``.npz`` it can be given to ``np.savez`` as is.

    Raises
    ------
    DiskFullError
        The disk (or quota) is full: one line naming ``path``; the temporary is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise disk_full(path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def disk_full(path: os.PathLike | str) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``."""
    path = Path(path)
    in_cache = path.absolute().is_relative_to(_cache_root().absolute())
    where = "set CAPSTONE_CACHE to another disk" if in_cache else "write it to another disk"
    error = DiskFullError(f"no space left on device writing {path}: free some space or {where}")
    error.errno = errno.ENOSPC
    return error


def remove_stale_temporaries(folder: os.PathLike | str, *, force: bool = False) -> list:
    """Remove the :func:`atomic_write` temporaries that killed runs left in ``folder``.

    A temporary is stale when the process its name records is not running and it has not been
    written to for :data:`STALE_SECONDS` (so a writer on another machine sharing the folder, whose
    process this one cannot see, keeps its file). Each folder is swept once per process unless
    ``force``.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    import psutil  # imported on the first write, not with every module that imports paths

    folder = Path(folder)
    key = os.path.abspath(folder)
    if key in _swept_folders and not force:
        return []
    _swept_folders.add(key)
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMPORARY.fullmatch(entry.name)
        if match is None or psutil.pid_exists(int(match["pid"])):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime >= STALE_SECONDS:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


def check_writable(path: os.PathLike | str) -> Path:
    """``path`` as a Path, after checking that a file can be written there (nothing is left).

    Raises
    ------
    DataError
        One line: ``path`` is a folder, lies under a file, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; give a file name in it")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"cannot write {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".probe", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise DataError(f"cannot write {path} ({error.strerror or error}); choose a folder "
                        "you can write to") from None
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

"""File formats and caches: what the project reads and writes, never a pickle it did not check.

- The course's features pickle is read with an unpickler that rebuilds NumPy arrays and nothing
  else (:func:`load_array_pickle`), then kept as a float32 ``.npz`` cache (:func:`load_features`).
- Models and image databases are ``.npz`` files of plain arrays (:func:`write_npz`,
  :func:`read_npz`), read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np

from capstone.errors import DataError, MissingFileError
from capstone.data.paths import cache_dir
from capstone.files import announce_first_read, atomic_write, notice, say

FEATURE_DIM = 512


# -- any .npz --------------------------------------------------------------------------------------
def write_npz(path: os.PathLike | str, arrays: dict) -> Path:
    """Save plain arrays to ``path`` (``.npz``) atomically: a reader sees the old file or the new."""
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def read_npz(path: os.PathLike | str, what: str, remedy: str) -> dict:
    """Every array of an ``.npz`` file, read without pickles.

    Parameters
    ----------
    path : path-like
    what : str
        What the file should be, for messages (e.g. "a capstone model file").
    remedy : str
        What to do about a missing or damaged file.

    Raises
    ------
    MissingFileError
        No such file.
    DataError
        Damaged, truncated, or not an ``.npz`` of plain arrays; one line naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no {what} at {path}; {remedy}")
    try:
        if not zipfile.is_zipfile(path):  # else np.load would take it for a pickle
            raise zipfile.BadZipFile
        with np.load(path, allow_pickle=False) as file:
            return {name: file[name] for name in file.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        fault = _npz_fault(path, error)
        raise DataError(f"{path} {fault}, so it is not {what}; {remedy}") from None


def _npz_fault(path: Path, error: Exception) -> str:
    """What is wrong with a file that ``np.load`` could not read as an ``.npz``."""
    if "allow_pickle" in str(error):
        return "holds Python objects"
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError:
        return "cannot be read"
    if not head:
        return "is damaged (empty)"
    zipped = head == b"PK\x03\x04"
    return f"is damaged ({'cut short or overwritten' if zipped else 'not an .npz file'})"


# -- features ------------------------------------------------------------------------------------
def load_features(path: os.PathLike | str, remedy: str = "") -> tuple:
    """Load the ResNet-18 features, through a float32 ``.npz`` cache.

    The first load reads the pickle, checks every array and writes the cache beside it
    (``resnet18_features.npz``), or under ``cache_dir()/features/`` when that fails. The cache
    records the pickle's size and mtime and is rebuilt when they change, or when it is damaged.

    A row that is not finite as float32 (NaN, inf, or a float64 too large for float32) is left
    out, as an image without features, and one line names how many and the first few ids.

    Parameters
    ----------
    path : path-like
        The features pickle: a dict ``image_id -> array of shape (1, 512) or (512,)``.
    remedy : str
        What to do about a bad file, appended to error messages.

    Returns
    -------
    (image_ids, features) : int64 (n,) sorted, float32 (n, 512), every value finite

    Raises
    ------
    DataError
        Naming the file, and for a bad array its image_id and shape.
    """
    path = Path(path)
    remedy = f"; {remedy}" if remedy else ""
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist{remedy}")
    stamp = _stamp(path)
    caches = features_cache_paths(path)
    for cache in caches:
        arrays = _read_features_cache(cache, stamp)
        if arrays is not None:
            break
    else:
        announced = announce_first_read(path, "converting it once to a float32 .npz cache")
        started = time.perf_counter()
        arrays = _finite_rows(*_read_features_pickle(path, remedy))
        for cache in caches:
            try:
                write_npz(cache, {"image_ids": arrays[0], "features": arrays[1],
                                  "nonfinite_ids": arrays[2], "source_stamp": stamp})
                break
            except OSError:  # a read-only folder, a full disk: try the next place, else none
                continue
        if announced:
            say(f"  done in {time.perf_counter() - started:.0f} s")
    image_ids, features, nonfinite_ids = arrays
    if len(nonfinite_ids):
        shown = ", ".join(map(str, nonfinite_ids[:5].tolist()))
        shown += ", ..." if len(nonfinite_ids) > 5 else ""
        notice(f"{path}: {len(nonfinite_ids)} image(s) with non-finite features (NaN or inf) are "
               f"treated as images without features: image_id {shown}")
    return image_ids, features


def _finite_rows(image_ids: np.ndarray, features: np.ndarray) -> tuple:
    """``(image_ids, features, nonfinite_ids)``: the rows whose every value is finite, and the
    ids of the others (a float64 sum of float32 values cannot overflow, so one check a row)."""
    finite = np.isfinite(features.sum(axis=1, dtype=np.float64))
    return image_ids[finite], features[finite], image_ids[~finite]


def load_feature_ids(path: os.PathLike | str, remedy: str = "") -> np.ndarray:
    """The sorted image ids of a features file, leaving the features on disk.

    Read from the ``.npz`` cache alone when it is current (an ``.npz`` member is read only when
    asked for); else through :func:`load_features`, which checks the file and writes the cache.
    """
    path = Path(path)
    if path.is_file():
        stamp = _stamp(path)
        for cache in features_cache_paths(path):
            try:
                with np.load(cache, allow_pickle=False) as arrays:
                    if (np.array_equal(arrays["source_stamp"], stamp)
                            and "nonfinite_ids" in arrays.files):  # else an older layout
                        return arrays["image_ids"]
            except Exception:  # missing or damaged: load_features below deals with it
                continue
    return load_features(path, remedy)[0]


def derived_cache_path(source: os.PathLike | str, folder: str, name: str = "{stem}-{key}.npz",
                       *, key_length: int = 16) -> Path:
    """Where what is made from the file ``source`` goes in the cache: ``<cache>/<folder>/<name>``.

    ``name`` may use ``{stem}`` and ``{name}`` of ``source`` and ``{key}``, a hash of its resolved
    path, so that two files of one name never share a cache.
    """
    path = Path(source).resolve()
    key = hashlib.sha256(str(path).encode()).hexdigest()[:key_length]
    return cache_dir() / folder / name.format(stem=path.stem, name=path.name, key=key)


def derived_cache_paths(source: os.PathLike | str, beside: str, folder: str) -> list[Path]:
    """Where a cache made from ``source`` may be: beside it (named ``beside``), else in the cache
    folder (:func:`derived_cache_path`), in that order of preference."""
    return [Path(source).resolve().with_name(beside), derived_cache_path(source, folder)]


def features_cache_paths(path: os.PathLike | str) -> list:
    """Where the ``.npz`` cache of a features pickle may be: beside it, else in the cache folder."""
    return derived_cache_paths(path, f"{Path(path).stem}.npz", "features")


def _stamp(path: Path) -> np.ndarray:
    """The size and mtime (ns) of a file, which key its caches."""
    stat = path.stat()
    return np.array([stat.st_size, stat.st_mtime_ns], dtype=np.int64)


def _read_features_cache(cache: Path, stamp: np.ndarray):
    """The cached ``(image_ids, features, nonfinite_ids)``, or ``None`` when absent, damaged,
    stale or of an older layout (any of which rebuilds it)."""
    try:
        arrays = read_npz(cache, "a features cache", "")
    except DataError:
        return None
    image_ids, features, nonfinite_ids = (
        arrays.get(name) for name in ("image_ids", "features", "nonfinite_ids"))
    if any(array is None for array in (image_ids, features, nonfinite_ids)):
        return None
    if (not np.array_equal(arrays.get("source_stamp"), stamp) or image_ids.ndim != 1
            or image_ids.dtype != np.int64 or nonfinite_ids.dtype != np.int64
            or features.dtype != np.float32 or features.shape != (len(image_ids), FEATURE_DIM)):
        return None
    return image_ids, features, nonfinite_ids


#: The only globals a features pickle may name: what NumPy (1.x ``numpy.core``, 2.x
#: ``numpy._core``) needs to rebuild plain arrays and scalars. Anything else could run code.
PICKLE_GLOBALS = frozenset(
    {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    | {(f"numpy.{core}.multiarray", name) for core in ("core", "_core")
       for name in ("_reconstruct", "scalar")}
    | {(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")}
)


class RefusedPickleError(pickle.UnpicklingError):
    """A pickle names something other than plain NumPy arrays."""


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds dicts, numbers and NumPy arrays, and refuses every other global."""

    def find_class(self, module, name):
        if (module, name) not in PICKLE_GLOBALS:
            raise RefusedPickleError(f"{module}.{name}")
        return super().find_class(module, name)


def load_array_pickle(path: os.PathLike | str):
    """Unpickle a file that may hold only plain containers, numbers and NumPy arrays.

    No code in the file runs: a global outside :data:`PICKLE_GLOBALS` (``os.system``, say)
    stops the load before anything is called.

    Raises
    ------
    RefusedPickleError
        Naming the refused global.
    """
    with open(path, "rb") as file:
        return _ArrayUnpickler(file).load()


def _read_features_pickle(path: Path, remedy: str) -> tuple:
    """Read and check the course's features pickle (never running code it names)."""
    try:
        table = load_array_pickle(path)
    except RefusedPickleError as error:
        raise DataError(
            f"{path} is not a plain features file: it asks to run {error} (only NumPy arrays are "
            f"allowed), so it was not loaded; do not use files from an untrusted source{remedy}"
        ) from None
    except Exception as error:  # any unpickling failure means a bad file
        raise DataError(f"{path} could not be unpickled ({error!r}){remedy}") from None
    if not isinstance(table, dict) or not table:
        raise DataError(f"{path} must hold a non-empty dict image_id -> (1, 512) array{remedy}")
    try:
        image_ids = np.fromiter((int(image_id) for image_id in table), np.int64, len(table))
    except (TypeError, ValueError):
        raise DataError(f"{path}: the dict's keys must be integer image ids{remedy}") from None
    features = np.empty((len(table), FEATURE_DIM), dtype=np.float32)
    for row, (image_id, vector) in enumerate(table.items()):
        if not isinstance(vector, np.ndarray):
            raise DataError(
                f"{path}: image_id {image_id} holds a {type(vector).__name__}, not a NumPy "
                f"array{remedy}"
            )
        if vector.shape not in ((1, FEATURE_DIM), (FEATURE_DIM,)) or vector.dtype.kind != "f":
            raise DataError(
                f"{path}: image_id {image_id} has an array of shape {vector.shape} and dtype "
                f"{vector.dtype}; expected shape (1, {FEATURE_DIM}) or ({FEATURE_DIM},) of floats"
                f"{remedy}"
            )
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, left out
            features[row] = vector.reshape(FEATURE_DIM)
    order = np.argsort(image_ids)
    return image_ids[order], features[order]

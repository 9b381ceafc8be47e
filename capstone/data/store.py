"""File formats and caches: what the project reads and writes, never a pickle it did not check.

- The course's features pickle is read with an unpickler that rebuilds NumPy arrays and nothing
  else (:func:`load_array_pickle`), then kept as a float32 ``.npz`` cache (:func:`load_features`).
- Models and image databases are ``.npz`` files of plain arrays (:func:`write_npz`,
  :func:`read_npz`), read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pickle
import struct
import time
import zipfile
import zlib
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


def read_npz(path: os.PathLike | str, what: str, remedy: str, names=None) -> dict:
    """The arrays of an ``.npz`` file, read without pickles, memory bounded by the file.

    Only the members ``names`` lists are read (all, when ``None``). Before a member is read, its
    header is checked: a plain (uncompressed) member, no Python objects, and no more values than
    the file holds. So a header that claims 10**12 floats, or an extra 1 GiB member, costs
    nothing.

    Parameters
    ----------
    path : path-like
    what : str
        What the file should be, for messages (e.g. "a capstone model file").
    remedy : str
        What to do about a missing or damaged file.
    names : collection of str or callable, optional
        The members to read (without ``.npy``), or a predicate on their names.

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
    wanted = names if names is None or callable(names) else frozenset(names).__contains__
    try:
        size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            raise NpzFault(_npz_fault(path))
        arrays = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename[: -len(".npy")]
                if info.filename.endswith(".npy") and (wanted is None or wanted(name)):
                    arrays[name] = _read_member(info, path, size)
        return arrays
    except NpzFault as fault:
        raise DataError(f"{path} {fault}, so it is not {what}; {remedy}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as error:
        fault = _npz_fault(path, error)
        raise DataError(f"{path} {fault}, so it is not {what}; {remedy}") from None


class NpzFault(ValueError):
    """What is wrong with an ``.npz`` member, found before reading it."""


#: The longest ``.npy`` header read (NumPy's own limit for untrusted files), and how much of a
#: member is read at a time.
MAX_NPY_HEADER, READ_CHUNK = 10_000, 16 * 2**20


def _read_member(info: zipfile.ZipInfo, path: Path, file_size: int) -> np.ndarray:
    """One member's array, after checking its header against the bytes the file holds.

    Read from the file itself: the array's bytes go straight into the array (one copy, not
    zipfile's two), and the member's CRC-32 is checked over what was read, as zipfile does.
    """
    member = info.filename
    if info.compress_type != zipfile.ZIP_STORED:
        raise NpzFault(f"holds a compressed member {member} (capstone writes plain .npz files)")
    if info.file_size > file_size or info.compress_size != info.file_size:
        raise NpzFault(f"is damaged (its member {member} claims more bytes than the file holds)")
    cut_short = NpzFault(f"is damaged (its member {member} is cut short)")
    with open(path, "rb") as file:
        file.seek(info.header_offset)  # the member's local header: where its bytes start
        local = file.read(zipfile.sizeFileHeader)
        if len(local) != zipfile.sizeFileHeader:
            raise cut_short
        fields = struct.unpack(zipfile.structFileHeader, local)
        if fields[0] != zipfile.stringFileHeader:  # 0: signature; 10, 11: name, extra lengths
            raise NpzFault(f"is damaged (its member {member} has no local header)")
        start = info.header_offset + zipfile.sizeFileHeader + fields[10] + fields[11]
        file.seek(start)
        version = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise NpzFault(f"is damaged (its member {member} has .npy version {version})")
        shape, fortran, dtype = read_header(file, max_header_size=MAX_NPY_HEADER)
        header_size = file.tell() - start
        if dtype.hasobject:
            raise NpzFault("holds Python objects")
        count = math.prod(shape)  # a Python int: no overflow
        nbytes = count * dtype.itemsize
        if nbytes > info.file_size - header_size:
            raise NpzFault(f"is damaged (its member {member} claims {count:,} values of "
                           f"{dtype}, more than the file holds)")
        array = np.empty(count, dtype=dtype)
        file.seek(start)
        head = file.read(header_size)
        if file.readinto(memoryview(array.view(np.uint8))) != nbytes:
            raise cut_short
        crc = zlib.crc32(array.view(np.uint8), zlib.crc32(head))
        rest = info.file_size - header_size - nbytes  # bytes after the array, if any
        while rest > 0:
            data = file.read(min(READ_CHUNK, rest))
            if not data:
                raise cut_short
            crc, rest = zlib.crc32(data, crc), rest - len(data)
    if crc != info.CRC:
        raise NpzFault(f"is damaged (its member {member} fails its checksum)")
    if fortran:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _npz_fault(path: Path, error: Exception | None = None) -> str:
    """What is wrong with a file that could not be read as an ``.npz``."""
    if error is not None and "allow_pickle" in str(error):
        return "holds Python objects"
    if isinstance(error, MemoryError):
        return "is damaged (it claims more data than memory holds)"
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError:
        return "cannot be read"
    if not head:
        return "is damaged (empty)"
    zipped = head == b"PK\x03\x04"
    return f"is damaged ({'cut short or overwritten' if zipped else 'not an .npz file'})"


# -- one writer at a time ------------------------------------------------------------------------
@contextlib.contextmanager
def writer_lock(path: os.PathLike | str):
    """Hold, while the block runs, the lock on writing ``path`` (waiting, saying so, for another
    process that holds it): a hidden ``.NAME.lock`` file beside ``path``, removed afterwards.

    Two trainings on one model file so take turns: each saves and reports its own model.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = Path(path)
    lock_path = path.with_name(f".{path.name}.lock")
    said = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock_path, "a")
        except OSError:  # a read-only folder: the write itself will say so
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said:
                say(f"another run is writing {path}: waiting for it to finish")
                said = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:  # the holder before us removed the file it locked: lock the new one instead
            if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # while still held: a waiter then locks a new file
        handle.close()


# -- image ids -----------------------------------------------------------------------------------
def check_image_ids(values, where: str, remedy: str = "") -> np.ndarray:
    """``values`` as int64 image ids, each an integer (not a bool, float or str) in the int64 range
    and none twice; else one line naming ``where`` and the first bad value.

    Raises
    ------
    DataError
    """
    remedy = remedy if not remedy or remedy.startswith(";") else f"; {remedy}"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{where} must be integer image ids, not {type(value).__name__} "
                            f"{_shown(value)}{remedy}")
        if not -2**63 <= value < 2**63:
            raise DataError(f"{where}: image id {_shown(value)} is out of the 64-bit range{remedy}")
    image_ids = np.fromiter((int(value) for value in values), np.int64, len(values))
    ordered = np.sort(image_ids)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated):
        raise DataError(f"{where}: image id {int(repeated[0])} is given twice; each image id "
                        f"must be given once{remedy}")
    return image_ids


def _shown(value) -> str:
    """``repr(value)``, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


# -- features ------------------------------------------------------------------------------------
def load_features(path: os.PathLike | str, remedy: str = "") -> tuple:
    """Load the ResNet-18 features, through a float32 ``.npz`` cache.

    The first load reads the pickle, checks every array and writes the cache beside it
    (``resnet18_features.npz``), or under ``cache_dir()/features/`` when that fails. The cache
    records the pickle's size and mtime and is rebuilt when they change, or when it is damaged.

    A row that is not finite as float32 (NaN, inf, a float64 too large for float32, or a value
    beyond ±:data:`MAX_FEATURE`) is left out, as an image without features, and one line names
    how many and the first few ids.

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
    damaged = []
    for cache in caches:
        arrays, fault = _read_features_cache(cache, stamp)
        if arrays is not None:
            break
        if fault:
            damaged.append(f"the features cache {cache} {fault}: rebuilt it from {path}")
    else:
        for line in damaged:
            notice(line)
        announced = announce_first_read(path, "converting it once to a float32 .npz cache")
        started = time.perf_counter()
        arrays = _finite_rows(*read_features_pickle(path, remedy))
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
        notice(f"{path}: {len(nonfinite_ids)} image(s) with non-finite features (NaN, inf, or "
               f"beyond ±{MAX_FEATURE:g}) are treated as images without features: "
               f"image_id {shown}")
    return image_ids, features


def _finite_rows(image_ids: np.ndarray, features: np.ndarray) -> tuple:
    """``(image_ids, features, nonfinite_ids)``: the usable rows and the ids of the others."""
    usable = _usable_rows(features)
    return image_ids[usable], features[usable], image_ids[~usable]


#: The largest feature value used (ResNet-18's are below 100): a larger one, though finite,
#: overflows float32 once squared or summed, and the row is left out like a NaN row.
MAX_FEATURE = 1e15


def _usable_rows(features: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """Which rows are finite with every value within :data:`MAX_FEATURE` (NaN fails)."""
    usable = np.empty(len(features), dtype=bool)
    for start in range(0, len(features), chunk):  # bounded: no copy of all the features
        part = features[start : start + chunk]
        usable[start : start + chunk] = np.abs(part).max(axis=1, initial=0) <= MAX_FEATURE
    return usable


def _all_usable(features: np.ndarray) -> bool:
    """Whether every value is finite and within :data:`MAX_FEATURE`: two reductions, no copy
    (NaN makes both comparisons false), where :func:`_usable_rows` takes 3-4 times as long."""
    return bool(len(features) == 0 or (-MAX_FEATURE <= features.min()
                                       and features.max() <= MAX_FEATURE))


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
                arrays = read_npz(cache, "a features cache", "", names=CACHE_IDS)
            except DataError:  # missing or damaged: load_features below deals with it
                continue
            if (CACHE_IDS <= arrays.keys() and np.array_equal(arrays["source_stamp"], stamp)
                    and _sorted_ids(arrays["image_ids"])):  # else stale or an older layout
                return arrays["image_ids"]
    return load_features(path, remedy)[0]


def _sorted_ids(image_ids: np.ndarray) -> bool:
    """Whether ``image_ids`` is a 1-d int64 array of strictly increasing ids."""
    return (image_ids.ndim == 1 and image_ids.dtype == np.int64
            and bool(np.all(image_ids[1:] > image_ids[:-1])))


CACHE_IDS = frozenset({"image_ids", "nonfinite_ids", "source_stamp"})
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


def _read_features_cache(cache: Path, stamp: np.ndarray) -> tuple:
    """``(arrays, fault)``: the cached ``(image_ids, features, nonfinite_ids)`` and ``None``; or
    ``None`` and why the cache is not used: ``""`` when absent, stale or of an older layout
    (rebuilt quietly), else what is damaged (rebuilt, saying so)."""
    try:
        arrays = read_npz(cache, "a features cache", "", names=CACHE_IDS | {"features"})
    except MissingFileError:
        return None, ""
    except DataError as error:
        return None, str(error).split(", so it is not")[0].removeprefix(f"{cache} ")
    if not CACHE_IDS | {"features"} <= arrays.keys():
        return None, ""
    if not np.array_equal(arrays["source_stamp"], stamp):
        return None, ""
    image_ids, features, nonfinite_ids = (
        arrays[name] for name in ("image_ids", "features", "nonfinite_ids"))
    if (not _sorted_ids(image_ids) or nonfinite_ids.dtype != np.int64
            or features.dtype != np.float32 or features.shape != (len(image_ids), FEATURE_DIM)):
        return None, "is damaged (its arrays do not fit together)"
    if not _all_usable(features):  # read on every load: the whole array at once
        return None, "is damaged (it holds NaN, infinite or huge features)"
    return (image_ids, features, nonfinite_ids), None


#: The only globals a features pickle may name: what NumPy (1.x ``numpy.core``, 2.x
#: ``numpy._core``) needs to rebuild plain arrays and scalars. Anything else could run code.
PICKLE_GLOBALS = frozenset(
    {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    | {(f"numpy.{core}.multiarray", name) for core in ("core", "_core")
       for name in ("_reconstruct", "scalar")}
    | {(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")}
)


class RefusedPickleError(pickle.UnpicklingError):
    """A pickle names something other than plain NumPy arrays, or arrays larger than it holds."""


class _CheckedArray(np.ndarray):
    """An array being unpickled: its state is checked before NumPy allocates anything for it."""

    limit = 0  # the most bytes an array may take: set per load to the file's size

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise RefusedPickleError("declares an array state that is not (version, shape, dtype, ...)")
        _check_allocation(state[1], state[2], self.limit)
        super().__setstate__(state)


def _check_allocation(shape, dtype, limit: int) -> None:
    """Refuse an array of Python objects, or one of more bytes than ``limit``, before it exists."""
    try:
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(int(extent) for extent in shape)
    except (TypeError, ValueError, OverflowError):
        raise RefusedPickleError(f"declares an array of shape {shape!r}, dtype {dtype!r}") from None
    if dtype.hasobject:
        raise RefusedPickleError("declares an array of Python objects (dtype object)")
    if count < 0 or count * dtype.itemsize > limit:
        raise RefusedPickleError(f"declares an array of {count:,} values of {dtype}, more than "
                                 "the file holds")


def _guarded_globals(limit: int) -> dict:
    """What the allowed NumPy globals resolve to: checked stand-ins where they allocate."""
    checked = type("_CheckedArray", (_CheckedArray,), {"limit": limit})

    def new_array(shape, dtype=float, *args, **kwargs):
        _check_allocation(shape, dtype, limit)
        return np.ndarray.__new__(checked, shape, dtype, *args, **kwargs)

    def reconstruct(subtype, shape, dtype):
        if subtype is not np.ndarray and subtype is not new_array:
            raise RefusedPickleError(f"declares an array of type {subtype!r}")
        _check_allocation(shape, dtype, limit)
        return np.ndarray.__new__(checked, shape, dtype)

    def new_dtype(*args, **kwargs):
        dtype = np.dtype(*args, **kwargs)
        if dtype.hasobject:
            raise RefusedPickleError("declares an array of Python objects (dtype object)")
        return dtype

    guarded = {("numpy", "ndarray"): new_array, ("numpy", "dtype"): new_dtype}
    for core in ("core", "_core"):
        guarded[(f"numpy.{core}.multiarray", "_reconstruct")] = reconstruct
    return guarded


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds dicts, numbers and NumPy arrays, and refuses every other global.

    Arrays are checked before NumPy allocates them: no dtype object, and no more bytes than
    the file holds (a 99-byte pickle may declare an array of 2e8 objects).
    """

    def __init__(self, file, limit: int):
        super().__init__(file)
        self._guarded = _guarded_globals(limit)

    def find_class(self, module, name):
        if (module, name) not in PICKLE_GLOBALS:
            raise RefusedPickleError(f"asks to run {module}.{name} (only NumPy arrays are allowed)")
        return self._guarded.get((module, name)) or super().find_class(module, name)


def _plain(value):
    """``value`` with every array unpickled as :class:`_CheckedArray` made a plain ndarray."""
    if isinstance(value, _CheckedArray):
        return value.view(np.ndarray)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def load_array_pickle(path: os.PathLike | str):
    """Unpickle a file that may hold only plain containers, numbers and NumPy arrays.

    No code in the file runs: a global outside :data:`PICKLE_GLOBALS` (``os.system``, say)
    stops the load before anything is called. Memory stays bounded by the file: an array of
    Python objects, or one larger than the file, is refused before it is allocated.

    Raises
    ------
    RefusedPickleError
        Naming the refused global or array.
    """
    with open(path, "rb") as file:
        return _plain(_ArrayUnpickler(file, os.fstat(file.fileno()).st_size).load())


def read_features_pickle(path: Path, remedy: str) -> tuple:
    """Read and check the course's features pickle (never running code it names)."""
    try:
        table = load_array_pickle(path)
    except RefusedPickleError as error:
        raise DataError(
            f"{path} is not a plain features file: it {error}, so it was not loaded; do not use "
            f"files from an untrusted source{remedy}"
        ) from None
    except Exception as error:  # any unpickling failure means a bad file (MemoryError too)
        raise DataError(f"{path} could not be unpickled ({type(error).__name__}: "
                        f"{str(error)[:200]}){remedy}") from None
    if not isinstance(table, dict) or not table:
        raise DataError(f"{path} must hold a non-empty dict image_id -> (1, 512) array{remedy}")
    image_ids = check_image_ids(list(table), f"{path}: the dict's keys", remedy)
    # A row costs 2 KiB here however few bytes the pickle spends on it (one array shared by
    # many ids): more rows than the file can hold is refused before the table is allocated.
    if len(table) * FEATURE_DIM * 4 > 2 * path.stat().st_size + 2**20:
        raise DataError(f"{path} names {len(table):,} image ids but is too small to hold a "
                        f"(1, {FEATURE_DIM}) array for each{remedy}")
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

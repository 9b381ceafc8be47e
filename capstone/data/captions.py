"""The captions file, compact: texts in one UTF-8 blob with offsets, read once into a cache.

COCO's ``captions_train2014.json`` is 72 MB. Parsed with :func:`json.load` it becomes about
470 MB of Python objects and takes seconds, every time. The first read here parses it once and
writes a cache of plain arrays (``captions_train2014.captions.npz`` beside it, or under
``cache_dir()/captions/`` when it cannot go there): the images' ids, urls and scene records,
and every caption's id, image id and text, and the captions grouped by image. Each list of
texts is one UTF-8 blob plus byte offsets (:class:`Texts`): at COCO size the whole cache is
41 MB. Later loads memory-map the cache's arrays: nothing is read until it is used, so a search
that shows ten results reads ten images' captions, not 414,113.

The cache records the JSON's size, mtime and a hash of its first and last MiB, and is rebuilt
when they change, or when it cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zipfile
from collections.abc import MutableMapping, Sequence
from pathlib import Path

import numpy as np

from capstone.data.store import derived_cache_paths
from capstone.files import announce_first_read, atomic_write, say

FORMAT = "capstone-captions/2"
_ENCODING = ("utf-8", "surrogatepass")  # JSON may hold lone surrogates; keep them as they are
PARSE_BYTES_PER_SECOND = 10e6  # json.load and the conversion, on the 2-core build machine
ANNOUNCE_BYTES = 10_000_000  # a bigger file's first read says what it does


# -- texts ---------------------------------------------------------------------------------------
class Texts(Sequence):
    """A read-only sequence of ``str`` kept as one UTF-8 blob and byte offsets.

    Supports ``len``, indexing (``str``), slicing and indexing by an integer array or a boolean
    mask (both give a :class:`Texts` view sharing the blob), iteration, ``in`` and ``==``
    against any sequence of texts.

    Parameters
    ----------
    blob : bytes or buffer
        The texts' UTF-8 bytes, back to back (e.g. a memory-mapped uint8 array).
    starts, ends : numpy.ndarray of int64
        Text ``i`` is ``blob[starts[i]:ends[i]]``.
    """

    __slots__ = ("_blob", "_starts", "_ends")

    def __init__(self, blob, starts, ends):
        self._blob = blob if isinstance(blob, bytes) else memoryview(blob).cast("B")
        self._starts = np.asarray(starts, dtype=np.int64)
        self._ends = np.asarray(ends, dtype=np.int64)
        if self._starts.shape != self._ends.shape or self._starts.ndim != 1:
            raise ValueError("starts and ends must be 1-d arrays of the same length")

    @classmethod
    def from_strings(cls, strings) -> Texts:
        """The texts of an iterable of ``str``, compacted."""
        encoded = [text.encode(*_ENCODING) for text in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(text) for text in encoded], out=offsets[1:])
        return cls(b"".join(encoded), offsets[:-1], offsets[1:])

    @classmethod
    def from_arrays(cls, blob: np.ndarray, offsets: np.ndarray) -> Texts:
        """The texts saved by :meth:`to_arrays` (a uint8 blob and ``n + 1`` offsets)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        return cls(np.asarray(blob, dtype=np.uint8), offsets[:-1], offsets[1:])

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(blob, offsets)``: a compact uint8 blob of just these texts and ``n + 1`` offsets."""
        parts = [bytes(self._blob[start:end]) for start, end in zip(self._starts.tolist(),
                                                                      self._ends.tolist())]
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(self._ends - self._starts, out=offsets[1:])
        return np.frombuffer(b"".join(parts), dtype=np.uint8), offsets

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Texts(self._blob, self._starts[index], self._ends[index])
        if isinstance(index, (int, np.integer)):
            start, end = int(self._starts[index]), int(self._ends[index])
            return str(self._blob[start:end], *_ENCODING)
        index = np.asarray(index)
        if index.dtype != bool and not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"Texts indices must be integers, slices or masks, not {index.dtype}")
        return Texts(self._blob, self._starts[index], self._ends[index])

    def __iter__(self):
        blob = self._blob
        for start, end in zip(self._starts.tolist(), self._ends.tolist()):
            yield str(blob[start:end], *_ENCODING)

    def __eq__(self, other):
        if isinstance(other, (str, bytes)) or not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable-sequence semantics for ==, like list

    def tolist(self) -> list[str]:
        """The texts as a list of ``str``."""
        return list(self)

    @property
    def nbytes(self) -> int:
        """Bytes held: the shared blob and this view's offsets."""
        return len(self._blob) + self._starts.nbytes + self._ends.nbytes

    def __repr__(self) -> str:
        head = ", ".join(repr(text) for text in self[:3])
        return f"Texts([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


# -- lookups by image id -------------------------------------------------------------------------
class _ByImageId(MutableMapping):
    """A mapping keyed by image id over sorted id arrays; assigned items take precedence."""

    def __init__(self, keys: np.ndarray):
        self._keys = np.asarray(keys, dtype=np.int64)  # sorted, unique
        self._assigned = {}

    def _position(self, key):
        try:
            key = int(key)
        except (TypeError, ValueError, OverflowError):
            raise KeyError(key) from None
        position = int(np.searchsorted(self._keys, key))
        if position == len(self._keys) or self._keys[position] != key:
            raise KeyError(key)
        return position

    def __getitem__(self, key):
        if key in self._assigned:
            return self._assigned[key]
        return self._value(self._position(key))

    def __setitem__(self, key, value):
        self._assigned[int(key)] = value

    def __delitem__(self, key):
        raise TypeError(f"{type(self).__name__} is read-only, except for items assigned to it")

    def __contains__(self, key):
        if key in self._assigned:
            return True
        try:
            self._position(key)
        except KeyError:
            return False
        return True

    def __iter__(self):
        yield from (int(key) for key in self._keys)
        yield from (key for key in self._assigned if key not in self._stored_keys())

    def _stored_keys(self):
        return set(self._keys.tolist()) if self._assigned else set()

    def __len__(self) -> int:
        extra = len(self._assigned.keys() - self._stored_keys()) if self._assigned else 0
        return len(self._keys) + extra

    def __repr__(self) -> str:
        return f"{type(self).__name__}(images={len(self)})"


class TextByImage(_ByImageId):
    """``image_id -> str`` over sorted ids and aligned :class:`Texts` (e.g. the urls)."""

    def __init__(self, keys, texts: Texts):
        super().__init__(keys)
        self._texts = texts

    def _value(self, position):
        return self._texts[position]


class JSONByImage(TextByImage):
    """``image_id -> value`` of JSON texts (the sample's scene records), decoded on access."""

    def _value(self, position):
        return json.loads(self._texts[position])


class CaptionsByImage(_ByImageId):
    """``image_id -> list of str``: every caption of an image, in the file's order.

    Derived from the captions' texts (nothing is stored twice): image ``keys[i]``'s captions are
    rows ``order[starts[i]:starts[i + 1]]`` of ``texts``.
    """

    def __init__(self, keys, order: np.ndarray, starts: np.ndarray, texts: Texts):
        super().__init__(keys)
        self._order, self._starts, self._texts = order, starts, texts

    def _value(self, position):
        rows = self._order[self._starts[position] : self._starts[position + 1]]
        return [self._texts[row] for row in rows.tolist()]

    @property
    def all_texts(self) -> Texts:
        """Every caption, of every image (the file's order)."""
        return self._texts


# -- the cache -----------------------------------------------------------------------------------
class CaptionStore:
    """Everything of the captions file, compact (see the module's docstring).

    Attributes
    ----------
    image_ids : numpy.ndarray, int64
        The json's images, sorted (an id listed twice counts once, with its last record).
    urls : TextByImage
        ``image_id -> coco_url``.
    scenes : JSONByImage or None
        ``image_id -> scene record`` (the sample's ground truth); ``None`` when the file has none.
    caption_ids, caption_image_ids : numpy.ndarray, int64
        One entry per caption, in the json's order.
    captions : Texts
        The caption texts, aligned with them.
    image_captions : CaptionsByImage
        ``image_id -> list of str``, for the json's images and any image a caption names.
    """

    def __init__(self, arrays: dict):
        self.image_ids = arrays["image_ids"]
        self.caption_ids = arrays["caption_ids"]
        self.caption_image_ids = arrays["caption_image_ids"]
        self.captions = Texts.from_arrays(arrays["caption_blob"], arrays["caption_offsets"])
        self.urls = TextByImage(self.image_ids,
                                Texts.from_arrays(arrays["url_blob"], arrays["url_offsets"]))
        self.scenes = None
        if "scene_blob" in arrays:
            scenes = Texts.from_arrays(arrays["scene_blob"], arrays["scene_offsets"])
            self.scenes = JSONByImage(self.image_ids, scenes)
        self.image_captions = CaptionsByImage(arrays["group_keys"], arrays["group_order"],
                                              arrays["group_starts"], self.captions)

    @classmethod
    def from_parsed(cls, parsed: dict) -> CaptionStore:
        """A store from :func:`capstone.data.dataset.read_captions`'s result."""
        return cls(store_arrays(parsed))

    def __repr__(self) -> str:
        return f"CaptionStore(images={len(self.image_ids)}, captions={len(self.captions)})"


def store_arrays(parsed: dict) -> dict:
    """The cache's arrays from :func:`capstone.data.dataset.read_captions`'s result."""
    urls = parsed["urls"]
    image_ids = np.fromiter(urls.keys(), np.int64, len(urls))  # unique: a dict's keys
    by_id = np.argsort(image_ids, kind="stable")
    listed = [key for key in urls]
    caption_image_ids = np.asarray(parsed["caption_image_ids"], dtype=np.int64)
    group_keys = np.union1d(image_ids, caption_image_ids)
    group_order = np.argsort(caption_image_ids, kind="stable")
    group_starts = np.searchsorted(caption_image_ids[group_order], group_keys)
    arrays = {"image_ids": image_ids[by_id],
              "caption_ids": np.asarray(parsed["caption_ids"], dtype=np.int64),
              "caption_image_ids": caption_image_ids, "group_keys": group_keys,
              "group_order": group_order,
              "group_starts": np.r_[group_starts, len(caption_image_ids)].astype(np.int64)}
    texts = {"caption": parsed["captions"], "url": [urls[listed[row]] for row in by_id]}
    if parsed.get("scenes") is not None:
        texts["scene"] = [json.dumps(parsed["scenes"][listed[row]]) for row in by_id]
    for name, values in texts.items():
        arrays[f"{name}_blob"], arrays[f"{name}_offsets"] = Texts.from_strings(values).to_arrays()
    return arrays


def captions_cache_paths(path: os.PathLike | str) -> list[Path]:
    """Where the cache of a captions file may be: beside it, else in the cache folder."""
    return derived_cache_paths(path, f"{Path(path).stem}.captions.npz", "captions")


def source_stamp(path: Path) -> np.ndarray:
    """Size, mtime (ns) and a hash of the first and last MiB: what keys a file's cache."""
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as file:
        digest.update(file.read(1 << 20))
        file.seek(max(0, stat.st_size - (1 << 20)))
        digest.update(file.read(1 << 20))
    return np.array([stat.st_size, stat.st_mtime_ns, int.from_bytes(digest.digest(), "little",
                                                                     signed=True)], np.int64)


def _read_cache(cache: Path, stamp: np.ndarray):
    """The cached arrays (memory-mapped), or ``None`` when absent, damaged, of another format or
    stale."""
    try:
        arrays = mapped_npz(cache)
        if str(arrays["format"]) != FORMAT or not np.array_equal(arrays["source_stamp"], stamp):
            return None
        return arrays
    except Exception:  # missing, damaged or not an .npz at all: made again from the json
        return None


def mapped_npz(path: os.PathLike | str, small: int = 1 << 16) -> dict:
    """Every array of an uncompressed ``.npz`` (as :func:`numpy.savez` writes), read-only.

    Arrays of ``small`` bytes or more are memory-mapped, so nothing of them is read until it is
    used; the rest are read. Object arrays are refused (``ValueError``): no pickles.
    """
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as file:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{path}: {info.filename} is not a stored .npy")
            file.seek(info.header_offset)
            local = file.read(30)  # the member's local header, then its name and extra field
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: bad local header of {info.filename}")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            file.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(file)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, fortran, dtype = read_header(file)
            if dtype.hasobject:
                raise ValueError(f"{path}: {info.filename} holds Python objects")
            size = int(np.prod(shape)) * dtype.itemsize
            if size < small:
                array = np.frombuffer(file.read(size), dtype=dtype)
                if array.size != int(np.prod(shape)):
                    raise ValueError(f"{path}: {info.filename} is truncated")
                array = array.reshape(shape, order="F" if fortran else "C")
            else:
                array = np.memmap(path, dtype=dtype, mode="r", offset=file.tell(), shape=shape,
                                  order="F" if fortran else "C")
            arrays[info.filename[: -len(".npy")]] = array
    return arrays


def load_caption_store(path: os.PathLike | str, parse, remedy: str = "") -> CaptionStore:
    """The captions file's :class:`CaptionStore`, through its cache.

    Parameters
    ----------
    path : path-like
        ``captions_train2014.json`` in COCO format.
    parse : callable
        ``parse(path, remedy) -> dict`` as :func:`capstone.data.dataset.read_captions`, which checks the
        file and raises its errors; called only when the cache is missing or stale.
    remedy : str
        What to do about a bad file.
    """
    path = Path(path)
    if not path.is_file():
        return CaptionStore.from_parsed(parse(path, remedy))  # the parser's missing-file error
    stamp = source_stamp(path)
    caches = captions_cache_paths(path)
    for cache in caches:
        arrays = _read_cache(cache, stamp)
        if arrays is not None:
            return CaptionStore(arrays)
    announce = announce_first_read(path, "parsing it once into a compact cache", ANNOUNCE_BYTES,
                                   PARSE_BYTES_PER_SECOND)
    started = time.perf_counter()
    arrays = store_arrays(parse(path, remedy))
    arrays.update(format=np.str_(FORMAT), source_stamp=stamp)
    for cache in caches:
        try:
            atomic_write(cache, lambda tmp: np.savez(tmp, **arrays))
        except OSError:
            continue
        arrays = _read_cache(cache, stamp) or arrays  # mapped: the parsed copy can go
        break
    if announce:
        say(f"  done in {time.perf_counter() - started:.0f} s")
    return CaptionStore(arrays)


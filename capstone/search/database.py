"""The image database people search: the core's database, saved and loaded, with typed queries.

:class:`SearchDatabase` is :class:`capstone.course.database.ImageDatabase` plus its file (an
``.npz`` with the model's checksum: a database of another model or other images is rebuilt, never
used) and :meth:`SearchDatabase.search`, which corrects typos, reads ``-word``, ``2:word`` and
images, and explains each result (:mod:`capstone.search.query`); the words are embedded by the
model's ``se_text`` embedder either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from capstone.course.database import ImageDatabase
from capstone.course.text import unit_rows
from capstone.data.paths import default_database_path
from capstone.data.store import load_features, read_npz, write_npz
from capstone.errors import DataError, MissingFileError
from capstone.search.query import search as search_query


class StaleDatabaseError(DataError):
    """A saved database does not match the model or dataset it is loaded with."""


class SearchDatabase(ImageDatabase):
    """Every image of a dataset embedded once, saved, and searched with typed queries.

    Same parameters as :class:`~capstone.course.database.ImageDatabase`.
    """

    def __repr__(self) -> str:
        name = getattr(self.dataset, "name", None)
        return f"SearchDatabase(dataset={name!r}, images={len(self)})"

    # -- searching -----------------------------------------------------------------------------
    def query(self, text: str, k: int = 10, **options) -> list[dict]:
        """The ``k`` best matches of ``text``, each with ``why``: :meth:`search`'s ``results``."""
        return self.search(text, k, **options).results

    def search(self, text: str = "", k: int = 10, **options):
        """Typos corrected, ``-word``, ``2:word``, ``image=``, ``dedup=``: see
        :func:`capstone.search.query.search`."""
        return search_query(self, text, k, **options)

    # -- saving, loading -----------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the database to ``path`` (``.npz``, no pickles) with the model's checksum."""
        name = self.dataset.name if self.dataset is not None else ""
        return write_npz(path, {"image_ids": self.image_ids, "embeddings": self.embeddings,
                                "checksum": np.str_(self.model.checksum), "dataset": np.str_(name)})

    @classmethod
    def load(cls, path, model, dataset) -> SearchDatabase:
        """Read a database saved by :meth:`save`, checking it belongs to ``model`` and ``dataset``.

        Raises ``MissingFileError``, ``DataError`` (damaged), or :class:`StaleDatabaseError`.
        """
        fix = f"delete {path} or use SearchDatabase.load_or_build to rebuild it"
        shared = shared_embeddings_path(path)
        names = {"image_ids", "embeddings", "checksum", "dataset"}
        if shared is not None and shared.is_file():  # the rows are read from there
            names.discard("embeddings")
        saved = read_npz(path, "an image database", fix, names=names)
        if not names <= saved.keys():
            raise DataError(f"{path} is not an image database written by capstone; {fix}")
        if str(saved["checksum"]) != model.checksum:
            raise StaleDatabaseError(f"the image database {path} was built by another model; {fix}")
        if str(saved["dataset"]) != dataset.name or not np.array_equal(saved["image_ids"],
                                                                        dataset.image_ids):
            raise StaleDatabaseError(f"the image database {path} does not match the "
                                     f"{dataset.name} dataset's images; {fix}")
        embeddings = shared_embeddings(shared, saved.get("embeddings"))
        if embeddings is None:  # the shared rows are damaged or gone: the file's own
            rows = read_npz(path, "an image database", fix, names={"embeddings"})
            if "embeddings" not in rows:
                raise DataError(f"{path} is not an image database written by capstone; {fix}")
            embeddings = shared_embeddings(shared, rows["embeddings"])
        if len(embeddings) != len(saved["image_ids"]):
            raise DataError(f"{path} holds {len(saved['image_ids'])} image ids but "
                            f"{len(embeddings)} embeddings; {fix}")
        return cls(saved["image_ids"], embeddings, model, dataset)

    @classmethod
    def load_or_build(cls, model, dataset, *, path=None) -> SearchDatabase:
        """Load the saved database, or build and save it when missing, damaged or stale.

        ``path`` defaults to :func:`capstone.data.paths.default_database_path` of the dataset.
        """
        path = Path(path) if path else default_database_path(dataset.name)
        try:
            return cls.load(path, model, dataset)
        except (OSError, ValueError):  # missing, stale or damaged: rebuild
            database = cls.build(model, dataset)
            database.save(path)
            return database


# -- the embeddings, shared by every process that searches a saved database -----------------------
def shared_embeddings_path(path) -> Path | None:
    """The ``.npy`` beside a saved database that holds its unit rows (``None``: no such file).

    Named after the database file's size and modification time, so a database written again
    gets new rows, never the old ones: ``coco-all.npz`` -> ``coco-all.rows-17047930-<ns>.npy``.
    """
    path = Path(path)
    try:
        found = path.stat()
    except OSError:
        return None
    return path.with_name(f"{path.stem}.rows-{found.st_size}-{found.st_mtime_ns}.npy")


def shared_embeddings(shared: Path | None, embeddings) -> np.ndarray | None:
    """The database's unit rows, memory-mapped read-only from ``shared`` when possible.

    A search page's kernels (a class: 30) then share one copy of the rows through the page cache,
    where each would otherwise hold its own. ``shared`` is written from ``embeddings`` when
    missing (the first process to finish wins; others map its file). Without ``embeddings``,
    ``None`` when ``shared`` cannot be read. A folder that cannot be written: ``embeddings``'
    unit rows, in memory.
    """
    if shared is not None and shared.is_file():
        try:
            rows = np.load(shared, mmap_mode="r", allow_pickle=False)
            if rows.ndim == 2 and rows.dtype == np.float32 and (
                    embeddings is None or rows.shape == np.shape(embeddings)):
                return rows
        except (OSError, ValueError, EOFError):  # cut short, damaged: written again below
            pass
        if embeddings is None:
            return None
        shared.unlink(missing_ok=True)
    if embeddings is None:
        return None
    rows = unit_rows(np.atleast_2d(embeddings))
    if shared is None:
        return rows
    temporary = shared.with_name(f".{shared.stem}.{os.getpid()}.tmp.npy")
    try:
        np.save(temporary, rows)
        try:
            os.link(temporary, shared)  # not a rename: a file another process maps stays
        except FileExistsError:
            pass
        for stale in shared.parent.glob(f"{shared.name.split('.rows-')[0]}.rows-*.npy"):
            if stale != shared:  # of a database written since; a process mapping it keeps it
                stale.unlink(missing_ok=True)
        return np.load(shared, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):  # a read-only or full cache: search from memory
        return rows
    finally:
        temporary.unlink(missing_ok=True)


# -- images added after the dataset (python -m capstone add) ---------------------------------------
FEATURES_FIX = ("give an .npz with arrays image_ids (n,) and features (n, 512), or a features "
                "pickle in the course's format (image_id -> (1, 512) array)")


def added_images_path(dataset_name: str) -> Path:
    """Where ``python -m capstone add`` keeps the images added to a dataset's database."""
    return default_database_path(dataset_name).with_name(f"{dataset_name}-added-images.npz")


def read_image_features(path) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, features)`` of an ``.npz`` (``image_ids``, ``features``) or a features pickle.

    The pickle is read as the dataset's is (plain arrays only, nothing it names is run, a float32
    ``.npz`` cache kept); rows with a non-finite value are left out, as there.
    """
    path = Path(path)
    if path.suffix == ".pkl":
        if not path.is_file():
            raise MissingFileError(f"no features file at {path}; {FEATURES_FIX}")
        return load_features(path, FEATURES_FIX)
    arrays = read_npz(path, "image features", FEATURES_FIX)
    if not {"image_ids", "features"} <= arrays.keys():
        raise DataError(f"{path} holds {sorted(arrays)}, not image_ids and features; "
                        f"{FEATURES_FIX}")
    return arrays["image_ids"], arrays["features"]


def save_added_images(database, path=None) -> Path:
    """Write the images added to ``database`` since its dataset's (ids and raw features)."""
    added = database.added_features
    added = np.zeros((0, 0), np.float32) if added is None else added
    return write_npz(path or added_images_path(database.dataset.name),
                     {"image_ids": database.image_ids[len(database) - len(added):],
                      "features": added})


def add_saved_images(database, path=None) -> int:
    """Add the images saved by :func:`save_added_images` (none saved: none); how many were new.

    An image the dataset has come to hold itself is left to the dataset's row.
    """
    path = Path(path or added_images_path(database.dataset.name))
    if not path.is_file():
        return 0
    image_ids, features = read_image_features(path)
    new = ~np.isin(image_ids, database.image_ids)
    if new.any():
        database.add(image_ids[new], features[new])
    return int(new.sum())


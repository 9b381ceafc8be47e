"""The image database people search: the core's database, saved and loaded, with typed queries.

:class:`SearchDatabase` is :class:`capstone.course.database.ImageDatabase` plus its file (an
``.npz`` with the model's checksum: a database of another model or other images is rebuilt, never
used) and :meth:`SearchDatabase.search`, which corrects typos, reads ``-word``, ``2:word`` and
images, and explains each result (:mod:`capstone.search.query`); the words are embedded by the
model's ``se_text`` embedder either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capstone.course.database import ImageDatabase
from capstone.data.paths import default_database_path
from capstone.data.store import read_npz, write_npz
from capstone.errors import DataError
from capstone.search.query import search as search_query


class StaleDatabaseError(DataError):
    """A saved database does not match the model or dataset it is loaded with."""


class SearchDatabase(ImageDatabase):
    """Every image of a dataset embedded once, saved, and searched with typed queries.

    Same parameters as :class:`~capstone.course.database.ImageDatabase`.
    """

    def __repr__(self) -> str:
        return f"SearchDatabase(dataset={getattr(self.dataset, 'name', None)!r}, images={len(self)})"

    # -- searching -----------------------------------------------------------------------------
    def query(self, text: str, k: int = 10, **options) -> list[dict]:
        """The ``k`` best matches of ``text``, each with ``why``: :meth:`search`'s ``results``."""
        return self.search(text, k, **options).results

    def search(self, text: str = "", k: int = 10, **options):
        """Typos corrected, ``-word``, ``2:word``, ``image=``, ``dedup=``: see capstone.search.query."""
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
        saved = read_npz(path, "an image database", fix)
        if not {"image_ids", "embeddings", "checksum", "dataset"} <= saved.keys():
            raise DataError(f"{path} is not an image database written by capstone; {fix}")
        if str(saved["checksum"]) != model.checksum:
            raise StaleDatabaseError(f"the image database {path} was built by another model; {fix}")
        if str(saved["dataset"]) != dataset.name or not np.array_equal(saved["image_ids"],
                                                                        dataset.image_ids):
            raise StaleDatabaseError(f"the image database {path} does not match the "
                                     f"{dataset.name} dataset's images; {fix}")
        return cls(saved["image_ids"], saved["embeddings"], model, dataset)

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

"""The course benchmark's entry point: ``cogworks.submissions.v2`` / ``language-search``.

The shared harness loads :func:`create_search_adapter` through the entry point, gives it the
course files, and drives the returned :class:`SearchAdapter`: embed captions and image
descriptors, prepare a database of images, and search it. The model is the first of
``weights/<dataset>.npz`` in the repository (``python -m capstone export`` writes it), the file
``$CAPSTONE_MODEL`` names, and the cache's (``python -m capstone train``); with none, one is
trained on the files the harness hands over, saying so (:mod:`capstone.apps.weights`). The
dataset is ``$CAPSTONE_DATASET``, else ``coco`` when the harness hands over course files.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path

import numpy as np

from capstone.apps.weights import find_model, model_candidates, train_on_files
from capstone.errors import CapstoneError, MissingFileError
from capstone.search.database import SearchDatabase
from capstone.data.glove import load_glove_file
from capstone.data.model import load_model
from capstone.data.paths import check_dataset_name, default_dataset_name


def _resource(resources, name: str):
    """``resources[name]`` or ``resources.name``; ``None`` when absent."""
    if resources is None:
        return None
    if isinstance(resources, dict):
        return resources.get(name)
    return getattr(resources, name, None)


def create_search_adapter(resources=None) -> SearchAdapter:
    """The submission factory the harness calls.

    Parameters
    ----------
    resources : dict or object, optional
        May carry ``captions_path``, ``descriptors_path`` and ``glove_path`` (the course
        files). A ``glove_path`` that exists, with the model's dimension, supplies the word
        vectors; otherwise the model's own GloVe is loaded by name. With no trained model, a
        model is trained on these files.

    Raises
    ------
    capstone.errors.MissingFileError
        When there is no trained model and no course files to train one on; the message gives
        the commands that train and export one.
    """
    files = {name: _resource(resources, f"{name}_path") for name in
             ("captions", "descriptors", "glove")}
    files = {name: path if path and Path(path).is_file() else None for name, path in files.items()}
    env = os.environ.get("CAPSTONE_DATASET")
    dataset = check_dataset_name(env, "$CAPSTONE_DATASET") if env else (
        "coco" if files["captions"] else default_dataset_name())
    model_path = find_model(dataset)  # before any GloVe is read
    glove_path = files["glove"]
    if model_path is None:
        if files["captions"] and files["descriptors"]:
            return SearchAdapter(train_on_files(dataset, files["captions"],
                                                files["descriptors"], glove_path))
        looked = ", ".join(map(str, model_candidates(dataset)))
        raise MissingFileError(f"no trained model for {dataset} (looked in {looked}); train one "
                               f"with `python -m capstone train --dataset {dataset}` and put it "
                               "in the repository with `python -m capstone export`")
    if glove_path:
        try:
            return SearchAdapter(load_model(model_path, glove=load_glove_file(glove_path)))
        except ValueError:  # not the model's dimension: the model's own GloVe below
            pass
    return SearchAdapter(load_model(model_path))


class SearchAdapter:
    """A trained model behind the harness's four calls.

    ``search`` never raises on a query: words the model does not know are ignored, and a query
    with no known word at all (typos only, punctuation, an empty string) is answered with the
    images nearest the mean image direction -- the most typical images, a fixed order.

    Bad descriptors and ids are handled, not refused: a descriptor with a NaN or an infinity
    gets a zero embedding and ranks after every other image (still returned when ``k`` asks for
    it); an image id given twice keeps its first descriptor only.
    """

    def __init__(self, model):
        self.model = model
        self.database = self._fallback = None
        self._unranked = np.zeros(0, dtype=np.int64)  # ids whose descriptors are not finite

    def embed_text(self, captions) -> np.ndarray:
        """``(N, D)`` float32 unit rows (a zero row for a caption with no known word).

        A single ``str`` is one caption (``(1, D)``), not a sequence of characters.
        """
        return self.model.embed_text([captions] if isinstance(captions, str) else list(captions))

    def embed_images(self, descriptors) -> np.ndarray:
        """``(M, D)`` float32 unit rows of ``(M, 512)`` (or ``(M, 1, 512)``) descriptors.

        A descriptor with a NaN or an infinity (also a float64 beyond float32) gets a zero row.
        """
        with np.errstate(over="ignore"):  # too large for float32: inf, so a zero row
            descriptors = np.asarray(descriptors, dtype=np.float32)
        return self.model.embed_images(descriptors.reshape(len(descriptors), -1))

    def prepare_database(self, image_ids, descriptors) -> None:
        """Embed the images that :meth:`search` will draw from.

        An id given more than once keeps its first descriptor; images whose descriptors are not
        finite rank last, in the order given.
        """
        image_ids = np.asarray(image_ids, dtype=np.int64).ravel()
        embeddings = self.embed_images(descriptors)
        if len(image_ids) != len(embeddings):
            raise ValueError(f"{len(image_ids)} image ids but {len(embeddings)} descriptors; "
                             "give one descriptor per image id")
        first = np.sort(np.unique(image_ids, return_index=True)[1])
        image_ids, embeddings = image_ids[first], embeddings[first]
        finite = embeddings.any(axis=1)  # embed_images gives a non-finite descriptor a zero row
        self.database = SearchDatabase(image_ids[finite], embeddings[finite], self.model)
        self._unranked = image_ids[~finite]
        mean = self.database.embeddings.sum(axis=0)
        self._fallback = mean / (np.linalg.norm(mean) or 1.0)

    def search(self, query: str, k: int = 10) -> list[int]:
        """The ids of the ``min(k, n)`` prepared images best matching ``query`` (typos fixed).

        ``k`` is an int (or any integer type, such as ``numpy.int64``); below 1 gives ``[]``.
        """
        if self.database is None:
            raise CapstoneError("call prepare_database(image_ids, descriptors) before search")
        try:
            k = operator.index(k)
        except TypeError:
            raise TypeError(f"k must be an int, got {k!r} ({type(k).__name__})") from None
        if k < 1:
            return []
        try:  # typos corrected silently; a query is capped at capstone.search.query.MAX_QUERY_CHARS
            found = self.database.search(str(query)[:1000], k).results
            image_ids = [result["image_id"] for result in found]
        except ValueError:  # no known word, even corrected: the most typical images
            image_ids = [int(i) for i in self.database.query_vector(self._fallback, k)[0]]
        return image_ids + self._unranked[: k - len(image_ids)].tolist()

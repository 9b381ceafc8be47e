"""The image database: every image embedded once, text queries answered by exact cosine top-k.

Rows of :attr:`ImageDatabase.embeddings` are unit vectors, so a query's cosine scores are one
matrix-vector product; the top ``k`` are found without sorting the whole database (see
:func:`top_k`). A database is saved to ``.npz`` with the checksum of the model that embedded it,
so a database built by another model is detected and rebuilt, never silently used.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError, MissingFileError
from .model import unit_rows
from .paths import atomic_write, default_database_path

SPLITS = ("all", "validation")
SPACES = ("semantic", "features")
TAG_VOCABULARY_SIZE = 50_000  # GloVe lists words by frequency: tags come from the most common


class StaleDatabaseError(DataError):
    """A saved database does not match the model or dataset it is loaded with."""


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, largest first (exact).

    A strided sample's ``k``-th largest score is a lower bound of the full array's, so only
    scores at or above it can be in the top ``k``: those few candidates are partitioned with
    :func:`numpy.argpartition` and the ``k`` winners sorted, instead of sorting everything.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n,)
    k : int
        At least 1; ``k >= n`` returns every index.

    Returns
    -------
    numpy.ndarray of int, shape (min(k, n),)
    """
    n = len(scores)
    if k >= n:
        return np.argsort(-scores, kind="stable")
    candidates = np.arange(n)
    sample = scores[:: max(1, n // (64 * k))]
    if len(sample) > k:
        bound = np.partition(sample, len(sample) - k)[len(sample) - k]
        candidates = np.flatnonzero(scores >= bound)
    best = candidates[np.argpartition(scores[candidates], len(candidates) - k)[-k:]]
    return best[np.argsort(-scores[best], kind="stable")]


def _check_count(count, name: str = "k") -> int:
    """``count`` as an int; ``ValueError`` unless it is a whole number of at least 1."""
    try:
        whole = int(count) == count
    except (TypeError, ValueError):
        whole = False
    if not whole or count < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {count!r}")
    return int(count)


class ImageDatabase:
    """Every image of a dataset (or of its validation split) embedded once, for search.

    Parameters
    ----------
    image_ids : array-like of int, shape (n,)
        The images, in the row order of ``embeddings``.
    embeddings : array-like, shape (n, D)
        Their embeddings; stored as float32 unit rows.
    model : SearchModel
        Embeds queries (``embed_query``); its ``checksum`` is saved with the database.
    dataset : Dataset or None
        Source of urls, captions and raw features; ``None`` leaves urls empty and captions
        blank and rules out ``similar(..., space="features")``.
    split : {"all", "validation"}
        Which images of ``dataset`` these are.
    index : {"exact", "hnsw", "ivfpq"}
        How queries are answered; see :meth:`use_index`.

    Attributes
    ----------
    image_ids : numpy.ndarray, int64, shape (n,)
    embeddings : numpy.ndarray, float32, shape (n, D), unit rows
    """

    def __init__(self, image_ids, embeddings, model, dataset=None, split="all", index="exact"):
        self.image_ids = np.asarray(image_ids, dtype=np.int64).ravel()
        self.embeddings = np.ascontiguousarray(unit_rows(np.atleast_2d(embeddings)))
        if len(self.image_ids) != len(self.embeddings):
            raise ValueError(
                f"{len(self.image_ids)} image ids but {len(self.embeddings)} embeddings"
            )
        self.model, self.dataset, self.split = model, dataset, split
        self._row_of = {int(image_id): row for row, image_id in enumerate(self.image_ids)}
        self._unit_features = None  # raw features, normalised on first use
        self._tag_words = self._tag_vectors = None
        self.index = None  # None: exact matvec + top_k below
        if index != "exact":
            self.use_index(index)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        name = self.dataset.name if self.dataset is not None else None
        return f"ImageDatabase(dataset={name!r}, split={self.split!r}, images={len(self)})"

    # -- building, saving, loading -------------------------------------------------------------
    @staticmethod
    def split_image_ids(dataset, split: str = "all") -> np.ndarray:
        """The image ids of ``dataset`` in a split: ``"all"`` (the app) or ``"validation"``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        return dataset.image_ids if split == "all" else dataset.val_image_ids

    @classmethod
    def build(cls, model, dataset, split: str = "all") -> ImageDatabase:
        """Embed every image of ``dataset`` (or of its validation split) with ``model``.

        Parameters
        ----------
        model : SearchModel
        dataset : Dataset
        split : {"all", "validation"}
            ``"validation"`` holds only images the model was not trained on (for evaluation).
        """
        image_ids = cls.split_image_ids(dataset, split)
        embeddings = model.embed_images(dataset.features_of(image_ids))
        return cls(image_ids, embeddings, model, dataset, split)

    def save(self, path) -> Path:
        """Write the database to ``path`` (``.npz``, no pickles) with the model's checksum."""
        return atomic_write(
            path,
            lambda tmp: np.savez(
                tmp,
                image_ids=self.image_ids,
                embeddings=self.embeddings,
                checksum=np.str_(self.model.checksum),
                dataset=np.str_(self.dataset.name if self.dataset is not None else ""),
                split=np.str_(self.split),
            ),
        )

    @classmethod
    def load(cls, path, model, dataset) -> ImageDatabase:
        """Read a database saved by :meth:`save`, checking it belongs to ``model`` and ``dataset``.

        Raises
        ------
        MissingFileError
            If ``path`` does not exist (a ``FileNotFoundError``).
        DataError
            If it is not a database written by :meth:`save` (e.g. a truncated file).
        StaleDatabaseError
            If it was built by another model, or for other images of the dataset.
        """
        path = Path(path)
        how_to_fix = f"delete {path} or use ImageDatabase.load_or_build to rebuild it"
        if not path.is_file():
            raise MissingFileError(f"no image database at {path}; build one with "
                                   "ImageDatabase.load_or_build")
        try:
            with np.load(path, allow_pickle=False) as saved:
                image_ids, embeddings, checksum, name, split = [
                    saved[key]
                    for key in ("image_ids", "embeddings", "checksum", "dataset", "split")
                ]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{path} is not a readable image database ({error!r}); {how_to_fix}"
            ) from None
        split = str(split)
        if str(checksum) != model.checksum:
            raise StaleDatabaseError(
                f"the image database {path} was built by another model; {how_to_fix}"
            )
        if str(name) != dataset.name or not np.array_equal(
            image_ids, cls.split_image_ids(dataset, split)
        ):
            raise StaleDatabaseError(
                f"the image database {path} does not match the {dataset.name} dataset's "
                f"{split!r} images; {how_to_fix}"
            )
        return cls(image_ids, embeddings, model, dataset, split)

    @classmethod
    def load_or_build(cls, model, dataset, split: str = "all", path=None) -> ImageDatabase:
        """Load the saved database, or build and save it when missing, unreadable or stale.

        Parameters
        ----------
        path : path-like, optional
            Default: :func:`capstone.paths.default_database_path` of the dataset and split.
        """
        path = Path(path) if path else default_database_path(dataset.name, split)
        try:
            database = cls.load(path, model, dataset)
            if database.split == split:
                return database
        except (OSError, ValueError, KeyError):  # missing, stale or damaged: rebuild
            pass
        database = cls.build(model, dataset, split)
        database.save(path)
        return database

    # -- looking up ----------------------------------------------------------------------------
    def row(self, image_id) -> int:
        """Row of ``image_id`` in :attr:`embeddings`; ``KeyError`` when it is not here."""
        try:
            return self._row_of[int(image_id)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(
                f"image_id {image_id!r} is not in this database ({self!r}); "
                "pick one of its image ids, e.g. from a search result"
            ) from None

    def result(self, image_id: int, score: float) -> dict:
        """One search result: ``image_id``, ``score``, ``url`` and ``captions``."""
        image_id = int(image_id)
        known = self.dataset is not None
        return {
            "image_id": image_id,
            "score": float(score),
            "url": self.dataset.urls.get(image_id) if known else None,
            "captions": list(self.dataset.image_captions.get(image_id, [])) if known else [],
        }

    # -- searching -----------------------------------------------------------------------------
    def use_index(self, kind: str = "exact", **params) -> ImageDatabase:
        """Answer :meth:`query` and :meth:`query_vector` through a :mod:`capstone.ann` index.

        ``"exact"`` (the default) is exact; ``"hnsw"`` and ``"ivfpq"`` are approximate FAISS
        indexes, much faster on large databases; ``params`` are their settings.
        """
        from .ann import build_index

        self.index = build_index(self.embeddings, kind, **params)
        return self

    def query_vector(self, vector, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images whose embeddings have the largest cosine with ``vector``.

        Parameters
        ----------
        vector : array-like, shape (D,)
            A unit vector in the embedding space.
        k : int
            At least 1; more than the database holds returns every image.

        Returns
        -------
        (image_ids, scores) : int64 and float32 arrays, best first
        """
        k = _check_count(k)
        if self.index is not None:
            rows, scores = self.index.search(vector, k)
            return self.image_ids[rows], scores
        scores = self.embeddings @ np.asarray(vector, dtype=np.float32)
        best = top_k(scores, k)
        return self.image_ids[best], scores[best]

    def query(self, text: str, k: int = 10) -> list[dict]:
        """The ``k`` images that best match ``text``, best first.

        Raises
        ------
        ValueError
            When ``text`` has no word the model knows, or ``k`` < 1.
        """
        image_ids, scores = self.query_vector(self.model.embed_query(text), k)
        return [self.result(image_id, score) for image_id, score in zip(image_ids, scores)]

    def similar(
        self, image_id: int, k: int = 10, space: str = "semantic", include_self: bool = True
    ) -> list[dict]:
        """The ``k`` images most like one of the database's images, best first.

        Parameters
        ----------
        image_id : int
            An image of this database.
        k : int
            Number of results.
        space : {"semantic", "features"}
            Cosine in the learned embedding space, or over the raw (normalised) ResNet features.
        include_self : bool
            Put the image itself first (score 1), or leave it out.
        """
        k = _check_count(k)
        if space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(SPACES)}; got {space!r}")
        row = self.row(image_id)
        vectors = self.embeddings if space == "semantic" else self.unit_features()
        scores = vectors @ vectors[row]
        best = top_k(scores, k + 1)
        best = best[best != row][: k - include_self]
        if include_self:
            best = np.concatenate([[row], best])
        return [self.result(self.image_ids[i], scores[i]) for i in best]

    def unit_features(self) -> np.ndarray:
        """The database images' raw features with unit rows (computed once)."""
        if self._unit_features is None:
            if self.dataset is None:
                raise ValueError("this database has no dataset, so no raw features to compare")
            self._unit_features = unit_rows(self.dataset.features_of(self.image_ids))
        return self._unit_features

    def tags(self, image_id: int, n: int = 10) -> list[tuple[str, float]]:
        """The words nearest to an image's embedding: words that describe it.

        The image embedding lives in GloVe's space, but training pulls it only towards caption
        embeddings, so its direction is meaningful for caption words and arbitrary for others.
        The candidates are therefore the words of the training captions that are among GloVe's
        :data:`TAG_VOCABULARY_SIZE` most frequent words, less stop words and tokens that are not
        words; the tags are the ``n`` with the largest cosine.

        Returns
        -------
        list of (word, cosine) pairs, best first
        """
        n = _check_count(n, "n")
        embedding = self.embeddings[self.row(image_id)]
        words, vectors = self.tag_vocabulary()
        scores = vectors @ embedding
        return [(words[i], float(scores[i])) for i in top_k(scores, n)]

    def tag_vocabulary(self) -> tuple[list[str], np.ndarray]:
        """Candidate tag words and their unit GloVe vectors (computed once); see :meth:`tags`."""
        if self._tag_words is None:
            from .text import STOP_WORDS

            glove, caption_words = self.model.text.glove, set(self.model.text.vocab.tolist())
            self._tag_words = [
                word
                for word in glove.index_to_key[:TAG_VOCABULARY_SIZE]
                if word in caption_words and word.isalpha() and word not in STOP_WORDS
            ]
            rows = [glove.key_to_index[word] for word in self._tag_words]
            self._tag_vectors = unit_rows(glove.vectors[rows])
        return self._tag_words, self._tag_vectors


# -- command line ------------------------------------------------------------------------------
def add_cli(subparsers) -> None:
    """Add the ``search``, ``similar`` and ``tags`` commands."""
    common = _common_options()
    search = subparsers.add_parser(
        "search", parents=[common], help="find the images that match a text query"
    )
    search.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("query", nargs="?", help="the text to search for")
    search.add_argument("--queries", metavar="FILE", help="one query per line; prints JSON lines")
    search.set_defaults(func=_search_command)

    similar = subparsers.add_parser(
        "similar", parents=[common], help="find the images most like one image"
    )
    similar.add_argument("image_id", type=int, metavar="IMAGE_ID")
    similar.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    similar.add_argument("--space", choices=SPACES, default="semantic")
    similar.set_defaults(func=_similar_command)

    tags = subparsers.add_parser("tags", parents=[common], help="words that describe an image")
    tags.add_argument("image_id", type=int, metavar="IMAGE_ID")
    tags.add_argument("--n", type=int, default=10, help="number of words (default 10)")
    tags.set_defaults(func=_tags_command)


def _common_options():
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dataset", help="sample or coco (default: $CAPSTONE_DATASET)")
    common.add_argument("--model", help="a trained model .npz (default: the dataset's)")
    common.add_argument("--json", action="store_true", help="print JSON")
    return common


def database_for(dataset_name=None, model_path=None) -> ImageDatabase:
    """The saved database of a dataset's images for a model, rebuilt when missing or stale.

    Parameters
    ----------
    dataset_name : str, optional
        Default: the default dataset (``$CAPSTONE_DATASET``).
    model_path : path-like, optional
        Default: the model ``python -m capstone train`` saved for the dataset.
    """
    from .data import check_dataset_name, default_dataset_name, load_dataset
    from .model import load_model

    name = check_dataset_name(dataset_name or default_dataset_name(announce=True))
    model = load_model(model_path, dataset=name)  # a missing model fails before loading data
    return ImageDatabase.load_or_build(model, load_dataset(name), "all")


def _print_results(results: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results))
        return
    for rank, result in enumerate(results, 1):
        caption = result["captions"][0] if result["captions"] else ""
        print(f"{rank:3d}. {result['score']:.3f}  {result['image_id']:>8d}  {caption}")


def _search_command(args) -> int:
    if (args.query is None) == (args.queries is None):
        raise ValueError('give either a query ("a dog on a beach") or --queries FILE, not both')
    if args.queries is None:
        _print_results(database_for(args.dataset, args.model).query(args.query, args.k), args.json)
        return 0
    try:
        lines = Path(args.queries).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise DataError(
            f"cannot read the queries file {args.queries} ({reason}); give a UTF-8 text file "
            "with one query per line"
        ) from None
    database = database_for(args.dataset, args.model)
    for line_number, line in enumerate(lines, 1):
        if line.strip():
            try:
                results = database.query(line, args.k)
            except ValueError as error:
                raise ValueError(f"{args.queries} line {line_number}: {error}") from None
            print(json.dumps(results))
            sys.stdout.flush()
    return 0


def _similar_command(args) -> int:
    database = database_for(args.dataset, args.model)
    _print_results(database.similar(args.image_id, args.k, args.space), args.json)
    return 0


def _tags_command(args) -> int:
    tags = database_for(args.dataset, args.model).tags(args.image_id, args.n)
    if args.json:
        print(json.dumps([{"word": word, "score": score} for word, score in tags]))
    else:
        for word, score in tags:
            print(f"{score:.3f}  {word}")
    return 0

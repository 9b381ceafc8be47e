"""Datasets: the real COCO captions + ResNet-18 features, and the embedded sample, behind one loader.

Both sources are read from the same two files, in the course's formats:

``captions_train2014.json``
    COCO format: keys ``info``, ``images`` (each with ``id`` and ``coco_url``; the sample's also
    carry a ``scene`` record), ``licenses`` and ``annotations`` (each with ``id``, ``image_id``,
    ``caption``).
``resnet18_features.pkl``
    A pickled dict ``image_id -> array of shape (1, 512)``. Images without features (COCO's
    grayscale ones) are left out of the image set and counted in the summary.

The features are converted once to a float32 ``.npz`` cache beside the pickle (or in the cache
folder when that folder is read-only) and loaded from it afterwards, with ``allow_pickle=False``.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capstone.data.captions import MAX_JSON_BYTES, Texts, load_caption_store
from capstone.errors import CapstoneError, DataError, MissingFileError
from capstone.data.glove import glove_path
from capstone.data.paths import (
    CAPTIONS_FILE,
    DOWNLOAD_COMMAND,
    FEATURES_FILE,
    check_dataset_name,
    coco_paths,
    default_dataset_name,
    glove_name_in,
    sample_dir,
)
from capstone.sample import ensure_sample
from capstone.data.store import check_image_ids, load_features
from capstone.course.text import tokenize


VOCABULARY_PART = 1 << 16  # captions tokenised together when counting the vocabulary


@dataclass
class Dataset:
    """Images with features, their captions, and a train/validation split by image.

    Attributes
    ----------
    name : str
        ``"sample"`` or ``"coco"``.
    image_ids : numpy.ndarray, shape (n_images,), int64
        Sorted ids of the images that have features.
    features : numpy.ndarray, shape (n_images, 512), float32
        Row ``i`` is the feature vector of ``image_ids[i]``.
    caption_ids, caption_image_ids : numpy.ndarray, shape (n_captions,), int64
        One entry per caption of an image that has features.
    captions : sequence of str, length n_captions
        The caption texts, aligned with ``caption_ids``: a list, or (loaded from files) a
        compact :class:`capstone.data.captions.Texts` that indexes, slices and iterates like one.
    urls : mapping int -> str
        ``coco_url`` of every image in the json (with or without features).
    image_captions : mapping int -> list of str
        Every image's captions (with or without features); loaded from files, derived from
        the captions on access (:class:`capstone.data.captions.CaptionsByImage`), never stored twice.
    scenes : mapping int -> dict, or None
        The sample's ground-truth scene records (``None`` for COCO).
    missing_image_ids : numpy.ndarray, int64
        Images in the json that have no features.
    n_captions_total : int
        Captions in the json, including those of images without features.
    paths : dict str -> str
        ``captions``, ``features`` and ``glove`` (the GloVe name used by default).
    glove_name : str
        The default word vectors for this dataset (see :func:`capstone.data.glove.load_glove`).
    train_fraction, seed : float, int
        The split's settings; see :meth:`split`.
    """

    name: str
    image_ids: np.ndarray
    features: np.ndarray
    caption_ids: np.ndarray
    caption_image_ids: np.ndarray
    captions: list
    urls: dict
    image_captions: dict
    scenes: dict | None
    missing_image_ids: np.ndarray
    n_captions_total: int
    paths: dict = field(default_factory=dict)
    glove_name: str = "glove-50d"
    train_fraction: float = 0.8
    seed: int = 0

    def __post_init__(self):
        self.train_image_ids, self.val_image_ids = self.split(self.train_fraction, self.seed)

    # -- lookups -------------------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        """Number of images with features."""
        return len(self.image_ids)

    def rows(self, image_ids) -> np.ndarray:
        """Row indices into :attr:`features` of the given image ids.

        Raises
        ------
        KeyError
            If an id is not an image with features.
        """
        image_ids = np.atleast_1d(np.asarray(image_ids, dtype=np.int64))
        rows = np.searchsorted(self.image_ids, image_ids)
        rows = np.minimum(rows, len(self.image_ids) - 1)
        bad = self.image_ids[rows] != image_ids
        if bad.any():
            image_id = int(image_ids[bad][0])
            raise KeyError(
                f"image_id {image_id} is not in the {self.name} dataset's images with features"
            )
        return rows

    def features_of(self, image_ids) -> np.ndarray:
        """Feature rows (float32, shape (n, 512)) of the given image ids.

        All the images in order (a database's raw features) give a read-only view, not a copy
        (170 MB at COCO size).
        """
        return rows_of_features(self.features, self.rows(image_ids))

    def captions_of(self, image_id: int) -> list:
        """All captions of one image (with or without features)."""
        try:
            return self.image_captions[int(image_id)]
        except KeyError:
            raise KeyError(f"image_id {image_id} is not in the {self.name} dataset") from None

    def url_of(self, image_id: int) -> str:
        """The ``coco_url`` of one image."""
        try:
            return self.urls[int(image_id)]
        except KeyError:
            raise KeyError(f"image_id {image_id} is not in the {self.name} dataset") from None

    # -- split ---------------------------------------------------------------------------------
    def split(self, train_fraction: float = 0.8, seed: int = 0):
        """Split the images with features into train and validation sets, by image.

        Parameters
        ----------
        train_fraction : float
            Share of images for training, in (0, 1).
        seed : int
            Seed of the shuffle; the same seed gives the same split.

        Returns
        -------
        (train_image_ids, val_image_ids) : tuple of sorted int64 arrays
            Disjoint, together all of :attr:`image_ids`.
        """
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        order = np.random.default_rng(seed).permutation(len(self.image_ids))
        n_train = int(round(train_fraction * len(self.image_ids)))
        return np.sort(self.image_ids[order[:n_train]]), np.sort(self.image_ids[order[n_train:]])

    def caption_mask(self, image_ids) -> np.ndarray:
        """Boolean mask over captions whose image is in ``image_ids``."""
        return np.isin(self.caption_image_ids, np.asarray(image_ids, dtype=np.int64))

    def captions_where(self, mask) -> Sequence[str]:
        """The captions where ``mask`` (over :attr:`captions`) is true, in order: a compact slice
        when the captions are compact (no string copies: 330,000 of them at COCO's size)."""
        if isinstance(self.captions, Texts):
            return self.captions[np.asarray(mask, dtype=bool)]
        return list(itertools.compress(self.captions, np.asarray(mask, dtype=bool).tolist()))

    @functools.cached_property
    def vocabulary_size(self) -> int:
        """Number of distinct tokens over all captions (of images with or without features)."""
        all_captions = getattr(self.image_captions, "all_texts", None)
        if all_captions is None:
            all_captions = list(itertools.chain.from_iterable(self.image_captions.values()))
        words = set()
        for start in range(0, len(all_captions), VOCABULARY_PART):  # bounds the token lists
            words.update(tokenize("\n".join(all_captions[start : start + VOCABULARY_PART])))
        return len(words)

    @property
    def train_captions_mask(self) -> np.ndarray:
        """Mask of the captions of training images (fit IDF on these only)."""
        return self.caption_mask(self.train_image_ids)

    # -- summary -------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts and file paths, as ``python -m capstone data --json`` prints them."""
        return {
            "dataset": self.name,
            "images": int(len(self.urls)),
            "images_with_features": int(self.n_images),
            "images_without_features": int(len(self.missing_image_ids)),
            "captions": int(self.n_captions_total),
            "captions_of_images_with_features": int(len(self.captions)),
            "train_images": int(len(self.train_image_ids)),
            "validation_images": int(len(self.val_image_ids)),
            "vocabulary": self.vocabulary_size,
            "glove_name": self.glove_name,
            "paths": dict(self.paths),
        }

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, images={self.n_images}, captions={len(self.captions)}, "
            f"train={len(self.train_image_ids)}, validation={len(self.val_image_ids)})"
        )


def rows_of_features(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``features[rows]``; every row in order is a read-only view instead of a copy."""
    if len(rows) == len(features) and np.array_equal(rows, np.arange(len(features))):
        view = features.view()
        view.flags.writeable = False
        return view
    return features[rows]


# -- loading -------------------------------------------------------------------------------------
def load_dataset(name: str | None = None, *, train_fraction: float = 0.8, seed: int = 0) -> Dataset:
    """Load a dataset: images with features, their captions and a split by image.

    Parameters
    ----------
    name : {"sample", "coco"} or None
        ``None`` picks :func:`default_dataset_name` (the sample unless the real files are on
        disk, saying so in one line).
    train_fraction, seed : float, int
        The train/validation split by image (see :meth:`Dataset.split`).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        For an unknown name.
    MissingFileError
        When the ``coco`` files are not on disk (the message names ``python -m capstone download``).
    """
    name = check_dataset_name(name) if name else default_dataset_name(announce=True)
    if name == "sample":
        source = ensure_sample(sample_dir())
    else:
        source = coco_paths()
    return read_dataset(source, name, train_fraction=train_fraction, seed=seed)


def read_dataset(
    folder_or_paths, name: str, *, train_fraction: float = 0.8, seed: int = 0
) -> Dataset:
    """Read a dataset from the course's two files.

    Parameters
    ----------
    folder_or_paths : path-like or dict
        A folder holding ``captions_train2014.json`` and ``resnet18_features.pkl``, or a dict
        with the paths under ``"captions"`` and ``"features"``.
    name : str
        The dataset's name; ``"sample"`` uses ``glove-50d``, any other name the GloVe found in
        the folder (see :func:`glove_name_in`).
    train_fraction, seed : float, int
        The split by image.

    Returns
    -------
    Dataset
        Only images that have features (and are in the json) form the image set; the others
        are listed in ``missing_image_ids``. Scene records are kept when the json has them.
    """
    if isinstance(folder_or_paths, dict):
        captions_path = Path(folder_or_paths["captions"]).resolve()
        features_path = Path(folder_or_paths["features"]).resolve()
    else:
        captions_path = Path(folder_or_paths).resolve() / CAPTIONS_FILE
        features_path = Path(folder_or_paths).resolve() / FEATURES_FILE
    remedy = _remedy(name, captions_path.parent)
    coco = load_caption_store(captions_path, read_captions, remedy)  # compact, cached
    feature_image_ids, features = load_features(features_path, remedy)

    keep = np.isin(feature_image_ids, coco.image_ids)
    if not keep.all():  # else no copy: at COCO size the features are 170 MB
        feature_image_ids, features = feature_image_ids[keep], features[keep]
    image_ids = feature_image_ids
    with_features = np.isin(coco.caption_image_ids, image_ids)
    glove_name = "glove-50d" if name == "sample" else glove_name_in(captions_path.parent)
    return Dataset(
        name=name,
        image_ids=image_ids,
        features=features,
        caption_ids=coco.caption_ids[with_features],
        caption_image_ids=coco.caption_image_ids[with_features],
        captions=coco.captions[with_features],
        urls=coco.urls,
        image_captions=coco.image_captions,
        scenes=coco.scenes,
        missing_image_ids=np.setdiff1d(coco.image_ids, image_ids),
        n_captions_total=len(coco.captions),
        paths={
            "captions": str(captions_path),
            "features": str(features_path),
            "glove": _glove_location(glove_name),
        },
        glove_name=glove_name,
        train_fraction=train_fraction,
        seed=seed,
    )


def dataset_files(name: str | None = None) -> dict:
    """A dataset's files, without reading them: ``captions`` and ``features`` paths, ``remedy``.

    ``name`` as in :func:`load_dataset`; ``remedy`` says what to do about a bad file.
    """
    name = check_dataset_name(name) if name else default_dataset_name(announce=True)
    source = ensure_sample(sample_dir()) if name == "sample" else coco_paths()
    if isinstance(source, dict):
        files = {key: Path(source[key]).resolve() for key in ("captions", "features")}
    else:
        folder = Path(source).resolve()
        files = {"captions": folder / CAPTIONS_FILE, "features": folder / FEATURES_FILE}
    return {**files, "name": name, "remedy": _remedy(name, files["captions"].parent)}


def _remedy(name: str, folder: Path) -> str:
    """What to do about a bad file in a dataset folder."""
    if name == "sample":
        return f"delete {folder} and it is generated again on the next load"
    return f"fetch the course's files again with `{DOWNLOAD_COMMAND}`"


def _glove_location(glove_name: str) -> str:
    """The GloVe file's path, or what is missing and how to get it."""
    try:
        return str(glove_path(glove_name))
    except MissingFileError as error:
        return f"{glove_name} (missing: {error})"


# -- captions ------------------------------------------------------------------------------------
def read_captions(path: os.PathLike | str, remedy: str = "") -> dict:
    """Parse a COCO captions file into aligned numpy arrays.

    Parameters
    ----------
    path : path-like
        ``captions_train2014.json`` in COCO format.
    remedy : str
        What to do about a bad file, appended to error messages.

    Returns
    -------
    dict
        ``image_ids`` (int64, the json's order), ``urls`` and ``image_captions`` (dicts keyed
        by image id), ``scenes`` (dict or ``None``), and per caption ``caption_ids``,
        ``caption_image_ids`` (int64) and ``captions`` (list of str), in the json's order.

    Raises
    ------
    DataError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    remedy = f"; {remedy}" if remedy else ""
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist{remedy}")
    coco = _parse_json(path, remedy)
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(key), list) for key in ("images", "annotations")
    ):
        raise DataError(f"{path} needs the COCO lists 'images' and 'annotations'{remedy}")
    images, annotations = coco["images"], coco["annotations"]
    _check_ids(path, images, annotations, remedy)
    try:
        image_ids = np.fromiter((image["id"] for image in images), np.int64, len(images))
        urls = {image["id"]: image["coco_url"] for image in images}
        caption_ids = np.fromiter((note["id"] for note in annotations), np.int64, len(annotations))
        caption_image_ids = np.fromiter(
            (note["image_id"] for note in annotations), np.int64, len(annotations)
        )
        captions = [note["caption"] for note in annotations]
        if not all(isinstance(text, str) for text in itertools.chain(captions, urls.values())):
            raise TypeError("a caption or coco_url is not a string")
    except (KeyError, TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: {_first_bad_record(images, annotations)}{remedy}") from None
    image_captions = {image_id: [] for image_id in urls}
    for image_id, caption in zip(caption_image_ids.tolist(), captions):
        image_captions.setdefault(image_id, []).append(caption)
    has_scenes = any("scene" in image for image in images)
    return {
        "image_ids": image_ids,
        "urls": urls,
        "image_captions": image_captions,
        "scenes": {image["id"]: image.get("scene") for image in images} if has_scenes else None,
        "caption_ids": caption_ids,
        "caption_image_ids": caption_image_ids,
        "captions": captions,
    }


MAX_CAPTIONS_BYTES = MAX_JSON_BYTES  # the largest captions file read (COCO's is 72 MB)
#: Bytes of Python objects a JSON file may become per byte (COCO's: about 3.5 by
#: :func:`_parsed_bytes`), beyond a fixed allowance.
MAX_PARSED_PER_BYTE, PARSED_ALLOWANCE = 6, 256 * 2**20


def _parse_json(path: Path, remedy: str):
    """The JSON value in ``path``, its memory bounded by the file's size before it is parsed.

    Raises
    ------
    DataError
        Too large, too deeply nested, invalid, or of more objects than such a file holds.
    """
    size = path.stat().st_size
    if size > MAX_CAPTIONS_BYTES:
        raise DataError(f"{path} is {size / 2**20:,.0f} MiB, over the {MAX_CAPTIONS_BYTES // 2**20} "
                        f"MiB a captions file may be (COCO's is 72 MB): is it the right file?"
                        f"{remedy}")
    with open(path, "rb") as file:
        data = file.read(MAX_CAPTIONS_BYTES + 1)
    if _parsed_bytes(data) > MAX_PARSED_PER_BYTE * len(data) + PARSED_ALLOWANCE:
        raise DataError(f"{path} holds far more JSON objects, lists or values than a captions "
                        f"file of its size would; it is not a COCO captions file{remedy}")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}){remedy}") from None
    except RecursionError:
        raise DataError(f"{path} nests JSON lists or objects too deeply; it is not a COCO "
                        f"captions file{remedy}") from None


def _parsed_bytes(data: bytes) -> int:
    """A rough upper estimate of the memory ``json.loads(data)`` takes, counted without parsing:
    a dict per ``{``, a list per ``[`` and an item per ``,``."""
    return 200 * data.count(b"{") + 80 * data.count(b"[") + 40 * data.count(b",")


def _check_ids(path: Path, images: list, annotations: list, remedy: str) -> None:
    """Refuse, in one line, an image id or caption id that is not an integer (a bool, a float, a
    string), or an image listed twice."""
    for kind, records, keys in (("images", images, ("id",)),
                                ("annotations", annotations, ("id", "image_id"))):
        for position, record in enumerate(records):
            for key in keys:
                value = record.get(key) if isinstance(record, dict) else None
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise DataError(f"{path}: {kind}[{position}][{key!r}] should be an integer, "
                                    f"not {type(value).__name__} ({str(value)[:40]}){remedy}")
    check_image_ids([image["id"] for image in images if isinstance(image, dict) and "id" in image],
                    f"{path}: the images' ids", remedy.removeprefix("; "))


def _first_bad_record(images: list, annotations: list) -> str:
    """Describe the first image or annotation that lacks a key or has a wrong type."""
    wanted = {int: "an integer", str: "a string"}
    for kind, records, fields in (
        ("images", images, {"id": int, "coco_url": str}),
        ("annotations", annotations, {"id": int, "image_id": int, "caption": str}),
    ):
        for position, record in enumerate(records):
            for key, kind_of_value in fields.items():
                if not isinstance(record, dict) or key not in record:
                    return f"{kind}[{position}] has no {key!r}"
                if not isinstance(record[key], kind_of_value):
                    return (
                        f"{kind}[{position}][{key!r}] should be {wanted[kind_of_value]}, "
                        f"not {type(record[key]).__name__}"
                    )
    return "unreadable images or annotations (an id out of the 64-bit range?)"


def download(file_name: str) -> Path:
    """Fetch one file of the cogworks-data registry into its cache, with a progress bar.

    Raises
    ------
    CapstoneError
        In one line, when the download fails (e.g. offline).
    """
    from cogworks_data._utils import language_data

    try:
        return Path(language_data.fetch(file_name, progressbar=True))
    except OSError as error:  # requests' errors are OSErrors too
        raise CapstoneError(
            f"could not download {file_name} ({type(error).__name__}: no internet connection?); "
            f"connect and run `{DOWNLOAD_COMMAND}` again"
        ) from None

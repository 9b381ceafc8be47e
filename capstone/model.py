"""The search model: ``se_image`` and ``se_text`` together, and its file.

A :class:`SearchModel` is what training produces and search uses: the image embedder
(:mod:`capstone.image`), the text embedder (:mod:`capstone.text`), and a JSON-able ``info``
record (dataset, GloVe name and dimension, settings, metrics). It is saved as one ``.npz`` file
of plain arrays, read without pickles.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import DataError, MissingFileError
from .further.embedders import embedder_from_arrays
from .further.sif import text_embedder_class
from .glove import load_glove
from .image import ImageEmbedder  # noqa: F401  (also importable from here, as before)
from .paths import default_dataset_name, default_model_path
from .store import read_npz, write_npz
from .text import TextEmbedder, unit_rows  # noqa: F401  (unit_rows: its old import path)

FORMAT = "capstone-search-model/1"


class SearchModel:
    """A trained model: the image embedder, the text embedder, and a record.

    Parameters
    ----------
    image : ImageEmbedder
        Or another image embedder with its interface (:mod:`capstone.further.embedders`).
    text : capstone.text.TextEmbedder
    info : dict, optional
        JSON-able record: ``dataset``, ``glove_name``, ``dim``, ``settings``, ``metrics``.
    """

    def __init__(self, image: ImageEmbedder, text: TextEmbedder, info: dict | None = None):
        if image.shape[1] != text.dim:
            raise ValueError(f"image embedder outputs {image.shape[1]} dimensions but the text "
                             f"embedder has {text.dim}; build the ImageEmbedder with d_out=text.dim")
        self.image, self.text = image, text
        self.info = {"glove_name": text.glove_name, "dim": int(text.dim), **(info or {})}

    def embed_images(self, features) -> np.ndarray:
        """``(n, D)`` float32 unit embeddings of image features."""
        return self.image.embed(features)

    def embed_text(self, texts) -> np.ndarray:
        """``(n, D)`` float32 unit embeddings of texts (zero rows: no known word)."""
        return self.text.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """``(D,)`` unit embedding of one query; ``ValueError`` when no word is known."""
        return self.text.embed_query(text)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array the model is made of, under the names the file uses."""
        image = {f"image_{name}": value for name, value in self.image.get_arrays().items()}
        text = {f"text_{name}": np.asarray(value) for name, value in self.text.to_arrays().items()}
        return {**image, **text}

    @property
    def checksum(self) -> str:
        """sha256 (hex) over the names, shapes and bytes of the weights and text arrays."""
        digest = hashlib.sha256()
        for name, value in sorted(self.arrays().items()):
            value = np.ascontiguousarray(value)
            digest.update(f"{name}{value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    def save(self, path) -> Path:
        """Write the model to a ``.npz`` file atomically (write, then rename); returns the path."""
        info = np.array(json.dumps(self.info, sort_keys=True))
        return write_npz(check_model_path(path), {"format": np.array(FORMAT), "info": info,
                                                  **self.arrays()})

    @classmethod
    def load(cls, path, glove=None) -> SearchModel:
        """Read a model written by :meth:`save`; ``glove`` defaults to the one it names.

        Raises
        ------
        MissingFileError
            No such file; the message names the command that trains one.
        DataError
            The file is not a capstone model, or is damaged; one line naming it.
        """
        retrain = f"train one with `python -m capstone train --out {path}`"
        arrays = read_npz(path, "a capstone model file (.npz)", retrain)
        try:
            if str(arrays["format"]) != FORMAT:
                raise ValueError(arrays["format"])
            info = json.loads(str(arrays["info"]))
            glove = load_glove(info["glove_name"]) if glove is None else glove
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{path} is not a capstone model file ({FORMAT}) or its record is "
                            f"damaged; {retrain}") from None
        parts = {prefix: {name[len(prefix):]: value for name, value in arrays.items()
                          if name.startswith(prefix)} for prefix in ("text_", "image_")}
        text = text_embedder_class(parts["text_"]).from_arrays(parts["text_"], glove)
        return cls(embedder_from_arrays(parts["image_"]), text, info)

    def __repr__(self) -> str:
        d_in, d_out = self.image.shape
        return (f"SearchModel(dataset={self.info.get('dataset')!r}, glove={self.text.glove_name!r}, "
                f"{d_in}->{d_out}, checksum={self.checksum[:12]})")


def check_model_path(path) -> Path:
    """``path`` as a Path, after checking that it names a ``.npz`` file (``ValueError`` if not)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"a model file must end in .npz, got {path}")
    return path


def trained_model_path(path=None, *, dataset=None) -> Path:
    """The file of a trained model, checked to exist (cheap: nothing is loaded).

    Parameters
    ----------
    path : path-like, optional
        The ``.npz`` file; by default ``capstone.paths.default_model_path(dataset)`` (which
        ``$CAPSTONE_MODEL`` overrides).
    dataset : str or capstone.data.Dataset, optional
        Whose default model; by default :func:`capstone.paths.default_dataset_name`.

    Raises
    ------
    MissingFileError
        When there is no such file; the message names the command that trains one.
    """
    name = getattr(dataset, "name", dataset) or default_dataset_name()
    path = Path(path) if path is not None else default_model_path(name)
    if not path.is_file():
        out = f" --out {path}" if path != default_model_path(name) else ""
        raise MissingFileError(f"no trained model at {path}; train one with "
                               f"`python -m capstone train --dataset {name}{out}`")
    return path


def load_model(path=None, *, dataset=None, glove=None) -> SearchModel:
    """Load a trained model (see :func:`trained_model_path` for ``path`` and ``dataset``).

    ``glove``: word vectors to use instead of loading them by the name the model records.
    """
    return SearchModel.load(trained_model_path(path, dataset=dataset), glove=glove)

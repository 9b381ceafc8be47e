"""``se_image`` (a MyNN dense layer) and the saved search model (image + text embedders).

A saved model is one ``.npz`` file, loaded with ``allow_pickle=False``: the dense layer's weight
and bias, the text embedder's arrays, and a JSON ``info`` record (dataset, GloVe name and
dimension, training settings, metrics). With GloVe alone it answers text queries.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
from mynn.initializers import glorot_normal
from mynn.layers import dense

from .errors import DataError, MissingFileError
from .paths import atomic_write, default_model_path

FORMAT = "capstone-search-model/1"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def check_model_path(path) -> Path:
    """``path`` as a :class:`~pathlib.Path`, after checking that it names a ``.npz`` file.

    Raises
    ------
    ValueError
        When it does not end in ``.npz``.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"a model file must end in .npz, got {path}")
    return path


class ImageEmbedder:
    """``se_image(x) = x @ M + b``: a MyNN dense layer from image features to the text space.

    Parameters
    ----------
    d_in : int
        Feature dimension (512 for ResNet-18).
    d_out : int
        Embedding dimension, the GloVe dimension.
    seed : int
        Seed of the ``glorot_normal`` weights (the bias starts at zero); NumPy's global random
        state is left as it was.
    """

    def __init__(self, d_in: int = 512, d_out: int = 50, *, seed: int = 0):
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            self.dense = dense(d_in, d_out, weight_initializer=glorot_normal)
        finally:
            np.random.set_state(state)

    def __call__(self, x):
        """Embed a batch of features, keeping the graph (for training).

        Parameters
        ----------
        x : array-like, shape (n, d_in)

        Returns
        -------
        mygrad.Tensor, shape (n, d_out)
            Not normalised.
        """
        return self.dense(x)

    @property
    def parameters(self) -> tuple:
        """The layer's weight and bias tensors (what the optimiser updates)."""
        return self.dense.parameters

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_in, d_out)``."""
        return self.dense.weight.shape

    def embed(self, features) -> np.ndarray:
        """Unit embeddings of features, in plain NumPy (no graph).

        Parameters
        ----------
        features : array-like, shape (n, d_in) or (d_in,)

        Returns
        -------
        numpy.ndarray, shape (n, d_out) or (d_out,), float32
        """
        features = np.asarray(features, dtype=np.float32)
        return unit_rows(features @ self.dense.weight.data + self.dense.bias.data[0])

    def get_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the weight ``(d_in, d_out)`` and bias ``(d_out,)``."""
        return {"weight": self.dense.weight.data.copy(), "bias": self.dense.bias.data[0].copy()}

    def set_arrays(self, arrays: dict) -> ImageEmbedder:
        """Overwrite the weight and bias in place (shapes must match); returns ``self``."""
        weight, bias = np.asarray(arrays["weight"]), np.asarray(arrays["bias"])
        if weight.shape != self.shape or bias.shape != (self.shape[1],):
            raise DataError(
                f"image embedder weights of shape {weight.shape} and bias {bias.shape} do not "
                f"fit a {self.shape} layer"
            )
        self.dense.weight.data[...] = weight
        self.dense.bias.data[0] = bias
        return self

    @classmethod
    def from_arrays(cls, arrays: dict) -> ImageEmbedder:
        """A layer holding the given ``weight`` and ``bias``."""
        d_in, d_out = np.shape(arrays["weight"])
        return cls(d_in, d_out).set_arrays(arrays)


class SearchModel:
    """What a trained model is: the image embedder, the text embedder, and a record.

    Parameters
    ----------
    image : ImageEmbedder
    text : capstone.text.TextEmbedder
    info : dict, optional
        JSON-able record: ``dataset``, ``glove_name``, ``dim``, ``settings``, ``metrics``.
    """

    def __init__(self, image: ImageEmbedder, text, info: dict | None = None):
        if image.shape[1] != text.dim:
            raise ValueError(
                f"image embedder outputs {image.shape[1]} dimensions but the text embedder "
                f"has {text.dim}; build the ImageEmbedder with d_out=text.dim"
            )
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
        path = check_model_path(path)
        info = json.dumps(self.info, sort_keys=True)
        arrays = {"format": np.array(FORMAT), "info": np.array(info), **self.arrays()}
        return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))

    @classmethod
    def load(cls, path, glove=None) -> SearchModel:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : path-like
        glove : gensim KeyedVectors, optional
            The word vectors; by default loaded by the name the model records.

        Raises
        ------
        MissingFileError
            No such file; the message names the command that trains one.
        DataError
            The file is not a capstone model.
        """
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                f"no model file at {path}; train one with `python -m capstone train --out {path}`"
            )
        try:
            with np.load(path, allow_pickle=False) as file:
                arrays = {name: file[name] for name in file.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DataError(f"{path} is not a capstone model file (.npz): {error}") from None
        if "format" not in arrays or str(arrays["format"]) != FORMAT:
            raise DataError(
                f"{path} is not a capstone model file ({FORMAT}); "
                "train one with `python -m capstone train`"
            )
        info = json.loads(str(arrays["info"]))
        if glove is None:
            from .glove import load_glove

            glove = load_glove(info["glove_name"])
        from .text import TextEmbedder

        text = TextEmbedder.from_arrays(
            {name[5:]: value for name, value in arrays.items() if name.startswith("text_")}, glove
        )
        image = ImageEmbedder.from_arrays(
            {name[6:]: value for name, value in arrays.items() if name.startswith("image_")}
        )
        return cls(image, text, info)

    def __repr__(self) -> str:
        d_in, d_out = self.image.shape
        return (
            f"SearchModel(dataset={self.info.get('dataset')!r}, glove={self.text.glove_name!r}, "
            f"{d_in}->{d_out}, checksum={self.checksum[:12]})"
        )


def trained_model_path(path=None, *, dataset=None) -> Path:
    """The file of a trained model, checked to exist (cheap: nothing is loaded).

    Parameters
    ----------
    path : path-like, optional
        The ``.npz`` file; by default ``capstone.paths.default_model_path(dataset)`` (which
        ``$CAPSTONE_MODEL`` overrides).
    dataset : str or capstone.data.Dataset, optional
        Whose default model; by default :func:`capstone.data.default_dataset_name`.

    Raises
    ------
    MissingFileError
        When there is no such file; the message names the command that trains one.
    """
    from .data import default_dataset_name

    name = getattr(dataset, "name", dataset) or default_dataset_name()
    path = Path(path) if path is not None else default_model_path(name)
    if not path.is_file():
        out = f" --out {path}" if path != default_model_path(name) else ""
        raise MissingFileError(
            f"no trained model at {path}; train one with "
            f"`python -m capstone train --dataset {name}{out}`"
        )
    return path


def load_model(path=None, *, dataset=None, glove=None) -> SearchModel:
    """Load a trained model.

    Parameters
    ----------
    path : path-like, optional
        The ``.npz`` file; by default ``capstone.paths.default_model_path(dataset)`` (which
        ``$CAPSTONE_MODEL`` overrides).
    dataset : str or capstone.data.Dataset, optional
        Whose default model to load; by default :func:`capstone.data.default_dataset_name`.
    glove : gensim KeyedVectors, optional
        Word vectors to use instead of loading them by name.

    Raises
    ------
    MissingFileError
        When there is no such file; the message names the command that trains one.
    """
    return SearchModel.load(trained_model_path(path, dataset=dataset), glove=glove)

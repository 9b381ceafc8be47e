"""A learned text side: a linear map of ``se_text``, trained with the image map.

The course's model moves only the images: ``se_image(x)`` learns to meet the captions' fixed
``se_text`` vectors. With ``text_map="linear"`` the text side learns too::

    text(c) = unit(se_text(c) @ T)          T: (D, D), trained jointly with se_image

``se_text`` itself stays as taught. The map is linear, so a caption's mapped vector is still a
weighted sum of its words' vectors, each mapped: ``se_text(c) @ T`` is ``se_text`` over the
word vectors ``glove[word] @ T``. :class:`MappedWordVectors` is that view of the word vectors,
so every part of search that works with word vectors (the query's words and their shares of a
score, typo correction, tags, the search box) works in the joint space unchanged.

:class:`TwoTower` carries ``T`` beside the image embedder, with the image embedder's interface
(``__call__``, ``parameters``, ``shape``, ``embed``, ``get_arrays`` / ``set_arrays`` /
``from_arrays``): the optimiser, the checkpoint and the model file handle both maps as one. The
model file keeps ``T`` as the array ``image_text_map``; a file without it is a model without a
text map, as every file saved before.
"""

from __future__ import annotations

import copy

import mygrad as mg
import numpy as np

from capstone.course.text import WordLookup, unit_rows
from capstone.errors import DataError
from capstone.further.embedders import embedder_from_arrays as image_embedder_from_arrays

TEXT_MAPS = ("none", "linear")
TEXT_MAP_INITS = ("identity", "cca")  # where T starts (capstone.further.cca.start_text_map)


class MappedRows:
    """The rows of a matrix of word vectors, each multiplied by ``weight`` when read."""

    def __init__(self, vectors, weight):
        self.vectors, self.weight = vectors, weight
        self.shape = (len(vectors), weight.shape[1])
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        # in float64, then rounded: a row maps to the same float32 values however many rows are
        # read with it (the vocabulary's few or the full GloVe's), so both give the same search
        mapped = np.asarray(self.vectors[index], dtype=np.float64) @ self.weight.astype(np.float64)
        return mapped.astype(np.float32)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


class MappedWordVectors(WordLookup):
    """Word vectors seen through a linear map: ``mapped[word] = words[word] @ weight``.

    Has :class:`capstone.data.glove.WordVectors`' interface; rows are mapped when read, so the
    400,000 words of the full GloVe are never copied. ``words`` is the unmapped original.
    """

    def __init__(self, words, weight):
        self.words = words
        self.weight = np.asarray(weight, dtype=np.float32)
        self.index_to_key, self.key_to_index = words.index_to_key, words.key_to_index
        self.vectors = MappedRows(words.vectors, self.weight)
        self.vector_size = self.weight.shape[1]
        if hasattr(words, "row_lookup"):  # words shared between processes: their lookup
            self.row_lookup = words.row_lookup

    def __repr__(self) -> str:
        return f"MappedWordVectors({self.words!r}, map {self.weight.shape})"


class TwoTower:
    """An image embedder and a linear text map ``T``, trained and saved together.

    Parameters
    ----------
    image
        An image embedder (:class:`capstone.course.image.ImageEmbedder` or one of
        :mod:`capstone.further.embedders`).
    text_map : array of shape (D, D)
        The text side's map; the identity leaves ``se_text`` as it is.
    """

    def __init__(self, image, text_map):
        text_map = np.asarray(text_map, dtype=np.float32)
        if text_map.shape != (image.shape[1],) * 2:
            raise DataError(f"a text map of shape {text_map.shape} does not fit an image "
                            f"embedder of {image.shape[1]} dimensions")
        self.image = image
        self.text_map = mg.Tensor(text_map)

    def __call__(self, x):
        return self.image(x)

    @property
    def parameters(self) -> tuple:
        return tuple(self.image.parameters) + (self.text_map,)

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape

    def embed(self, features) -> np.ndarray:
        return self.image.embed(features)

    # -- the text side ---------------------------------------------------------------------------
    def map_text(self, caption_embeddings):
        """Unit ``caption_embeddings @ T`` in the graph (mygrad): what the loss compares."""
        mapped = mg.matmul(np.asarray(caption_embeddings, dtype=np.float32), self.text_map)
        return mapped / mg.sqrt(mg.sum(mapped**2, axis=1, keepdims=True) + 1e-12)

    def embed_text_rows(self, caption_embeddings) -> np.ndarray:
        """Unit ``caption_embeddings @ T`` in NumPy (validation)."""
        return unit_rows(np.asarray(caption_embeddings, dtype=np.float32) @ self.text_map.data)

    def view_text(self, text):
        """``text`` (a text embedder) over the mapped word vectors: ``se_text`` then ``T``."""
        mapped = copy.copy(text)
        mapped.glove = MappedWordVectors(getattr(text.glove, "words", text.glove),
                                         self.text_map.data.copy())
        return mapped

    # -- arrays ----------------------------------------------------------------------------------
    def get_arrays(self) -> dict[str, np.ndarray]:
        return {**self.image.get_arrays(), "text_map": self.text_map.data.copy()}

    def set_arrays(self, arrays: dict) -> TwoTower:
        self.image.set_arrays({k: v for k, v in arrays.items() if k != "text_map"})
        self.text_map.data[...] = arrays["text_map"]
        return self

    @classmethod
    def from_arrays(cls, arrays: dict) -> TwoTower:
        return cls(image_embedder_from_arrays({k: v for k, v in arrays.items()
                                               if k != "text_map"}), arrays["text_map"])


def embedder_from_arrays(arrays: dict):
    """The embedder ``get_arrays`` saved: with a text map (:class:`TwoTower`) or without."""
    if "text_map" in arrays:
        return TwoTower.from_arrays(arrays)
    return image_embedder_from_arrays(arrays)

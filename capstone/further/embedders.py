"""Image embedders beyond ``x @ M + b``: an MLP, and standardised features.

Both have :class:`capstone.course.image.ImageEmbedder`'s interface (``__call__`` in the mygrad graph,
``parameters``, ``shape``, ``embed`` in NumPy, ``get_arrays`` / ``set_arrays`` / ``from_arrays``),
so training, checkpoints, the model file and search use them unchanged::

    se_image(x) = relu(x @ W1 + b1) @ M + b             # MLPEmbedder (seed 002's siamese branch)
    se_image(x) = inner((x - mean) / std)               # Standardized(inner, mean, std)

``mean`` and ``std`` come from the training images and are saved with the weights (arrays
``image_mean`` and ``image_std`` of the model file), so a query is embedded exactly as in training.
"""

from __future__ import annotations

import numpy as np
from mynn.activations import relu
from mynn.initializers import glorot_normal
from mynn.layers import dense

from capstone.errors import DataError
from capstone.course.image import ImageEmbedder
from capstone.course.text import unit_rows

EMBEDDERS = ("linear", "mlp")
# A feature that barely varies over the training images is divided by at least this share of
# the mean spread, so that an image where it does show up is not blown up (on the sample, one
# feature in twenty is constant over the training images: unused colour cells).
STD_FLOOR = 0.1
CHUNK = 2048  # rows at a time where a whole copy of the features would be large (a float64
# chunk of 512 features and its temporaries: about 25 MB)


class MLPEmbedder:
    """``relu(x @ W1 + b1) @ M + b``: two MyNN dense layers with a ReLU between them.

    Parameters
    ----------
    d_in, d_out : int
        Feature and embedding dimensions.
    hidden : int
        Width of the hidden layer.
    seed : int
        Seed of the ``glorot_normal`` weights; NumPy's global random state is left as it was.
    """

    def __init__(self, d_in: int = 512, d_out: int = 50, *, hidden: int = 256, seed: int = 0):
        state = np.random.get_state()
        np.random.seed(seed)  # MyNN's initialisers draw from NumPy's global state
        try:
            self.hidden = dense(d_in, hidden, weight_initializer=glorot_normal)
            self.dense = dense(hidden, d_out, weight_initializer=glorot_normal)
        finally:
            np.random.set_state(state)

    def __call__(self, x):
        """``(n, d_out)`` mygrad Tensor, not normalised, in the graph."""
        return self.dense(relu(self.hidden(x)))

    @property
    def parameters(self) -> tuple:
        return self.hidden.parameters + self.dense.parameters

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_in, d_out)``."""
        return self.hidden.weight.shape[0], self.dense.weight.shape[1]

    def embed(self, features) -> np.ndarray:
        """Unit embeddings ``(n, d_out)`` float32, in plain NumPy."""
        features = np.asarray(features, dtype=np.float32)
        inner = np.maximum(features @ self.hidden.weight.data + self.hidden.bias.data[0], 0)
        return unit_rows(inner @ self.dense.weight.data + self.dense.bias.data[0])

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"hidden_weight": self.hidden.weight.data.copy(),
                "hidden_bias": self.hidden.bias.data[0].copy(),
                "weight": self.dense.weight.data.copy(), "bias": self.dense.bias.data[0].copy()}

    def set_arrays(self, arrays: dict) -> MLPEmbedder:
        """Overwrite every weight in place (shapes must match); returns ``self``."""
        for layer, prefix in ((self.hidden, "hidden_"), (self.dense, "")):
            weight = np.asarray(arrays[prefix + "weight"])
            bias = np.asarray(arrays[prefix + "bias"])
            if weight.shape != layer.weight.shape or bias.shape != layer.bias.shape[1:]:
                raise DataError(f"MLP weights of shape {weight.shape} and bias {bias.shape} do "
                                f"not fit a {layer.weight.shape} layer")
            layer.weight.data[...] = weight
            layer.bias.data[0] = bias
        return self

    @classmethod
    def from_arrays(cls, arrays: dict) -> MLPEmbedder:
        d_in, hidden = np.shape(arrays["hidden_weight"])
        return cls(d_in, np.shape(arrays["weight"])[1], hidden=hidden).set_arrays(arrays)


class Standardized:
    """An embedder of standardised features: ``inner((x - mean) / std)``.

    Parameters
    ----------
    inner : ImageEmbedder or MLPEmbedder
    mean, std : arrays of shape (d_in,)
        Of the training images' features (see :func:`feature_scaling`).
    """

    def __init__(self, inner, mean, std):
        self.inner = inner
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != (inner.shape[0],) or self.std.shape != self.mean.shape:
            raise DataError(f"feature mean {self.mean.shape} and std {self.std.shape} do not fit "
                            f"an embedder of {inner.shape[0]} features")

    def scale(self, features) -> np.ndarray:
        """The standardised features, float32."""
        return (np.asarray(features, dtype=np.float32) - self.mean) / self.std

    def __call__(self, x):
        return self.inner(self.scale(x))

    @property
    def parameters(self) -> tuple:
        return self.inner.parameters

    @property
    def shape(self) -> tuple[int, int]:
        return self.inner.shape

    def embed(self, features) -> np.ndarray:
        # in chunks: a standardised copy of every image's features would be 170 MB at COCO size
        return np.concatenate([self.inner.embed(self.scale(features[start:start + CHUNK]))
                               for start in range(0, max(len(features), 1), CHUNK)])

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {**self.inner.get_arrays(), "mean": self.mean.copy(), "std": self.std.copy()}

    def set_arrays(self, arrays: dict) -> Standardized:
        self.inner.set_arrays(arrays)
        self.mean[...], self.std[...] = arrays["mean"], arrays["std"]
        return self

    @classmethod
    def from_arrays(cls, arrays: dict) -> Standardized:
        return cls(embedder_from_arrays({k: v for k, v in arrays.items()
                                         if k not in ("mean", "std")}),
                   arrays["mean"], arrays["std"])


def feature_scaling(features, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each feature (of ``features[rows]``, by default all rows),
    float32; the deviation is at least :data:`STD_FLOOR` times the mean deviation (1 if every
    feature is constant).

    Accumulated in float64 over chunks of :data:`CHUNK` rows, so the memory it takes does not
    grow with the number of images (a float64 copy at COCO size would be 270 MB).
    """
    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    total = np.zeros(np.shape(features)[1])
    for start in range(0, len(rows), CHUNK):
        total += np.asarray(features[rows[start:start + CHUNK]], dtype=np.float64).sum(axis=0)
    mean = total / max(len(rows), 1)
    squares = np.zeros_like(mean)
    for start in range(0, len(rows), CHUNK):
        chunk = np.asarray(features[rows[start:start + CHUNK]], dtype=np.float64) - mean
        squares += np.einsum("ij,ij->j", chunk, chunk)
    std = np.sqrt(squares / max(len(rows), 1))
    floor = STD_FLOOR * std.mean() if std.any() else 1.0
    return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


def new_image_embedder(settings, train_features, d_out: int, rows=None):
    """The untrained embedder ``settings`` ask for (``embedder``, ``hidden``, ``standardize``).

    Standardisation uses the mean and spread of ``train_features`` (the training images' only),
    or of ``train_features[rows]`` given ``rows`` (no copy of those rows is made).
    """
    d_in = train_features.shape[1]
    if settings.embedder == "mlp":
        image = MLPEmbedder(d_in, d_out, hidden=settings.hidden, seed=settings.seed)
    else:
        image = ImageEmbedder(d_in, d_out, seed=settings.seed)
    if not settings.standardize:
        return image
    return Standardized(image, *feature_scaling(train_features, rows))


def untrained_copy(image, seed: int = 0):
    """A fresh embedder of the same kind and size as ``image`` (same standardisation)."""
    if isinstance(image, Standardized):
        return Standardized(untrained_copy(image.inner, seed), image.mean, image.std)
    if isinstance(image, MLPEmbedder):
        return MLPEmbedder(*image.shape, hidden=image.hidden.weight.shape[1], seed=seed)
    return ImageEmbedder(*image.shape, seed=seed)


def embedder_from_arrays(arrays: dict):
    """The embedder that ``get_arrays`` saved: standardised or not, linear or MLP."""
    if "mean" in arrays:
        return Standardized.from_arrays(arrays)
    if "hidden_weight" in arrays:
        return MLPEmbedder.from_arrays(arrays)
    return ImageEmbedder.from_arrays(arrays)


def describe(image) -> str:
    """``"linear"``, ``"mlp"``, with ``", standardised"`` when it is and ``", text map"`` when
    it carries a learned text map (:class:`capstone.further.textmap.TwoTower`)."""
    if hasattr(image, "view_text"):
        return describe(image.image) + ", text map"
    inner = image.inner if isinstance(image, Standardized) else image
    kind = "mlp" if isinstance(inner, MLPEmbedder) else "linear"
    return kind + (", standardised" if inner is not image else "")

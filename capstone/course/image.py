"""``se_image(x) = x @ M + b``: one MyNN dense layer maps an image's features into the word space.

Training (:mod:`capstone.course.train`) updates ``M`` and ``b`` through
:attr:`ImageEmbedder.parameters`; search uses :meth:`ImageEmbedder.embed`, the same map in plain
NumPy, scaled to unit length.
"""

from __future__ import annotations

import numpy as np
from mynn.initializers import glorot_normal
from mynn.layers import dense

from capstone.errors import DataError
from capstone.course.text import unit_rows


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
        np.random.seed(seed)  # MyNN's initialisers draw from NumPy's global state
        try:
            self.dense = dense(d_in, d_out, weight_initializer=glorot_normal)
        finally:
            np.random.set_state(state)

    def __call__(self, x):
        """``(n, d_out)`` mygrad Tensor of ``x @ M + b`` (not normalised), in the graph."""
        return self.dense(x)

    @property
    def parameters(self) -> tuple:
        """The weight and bias tensors (what the optimiser updates)."""
        return self.dense.parameters

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_in, d_out)``."""
        return self.dense.weight.shape

    def embed(self, features) -> np.ndarray:
        """Unit embeddings ``(n, d_out)`` float32 of features ``(n, d_in)``, in plain NumPy."""
        features = np.asarray(features, dtype=np.float32)
        return unit_rows(features @ self.dense.weight.data + self.dense.bias.data[0])

    def get_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the weight ``(d_in, d_out)`` and bias ``(d_out,)``."""
        return {"weight": self.dense.weight.data.copy(), "bias": self.dense.bias.data[0].copy()}

    def set_arrays(self, arrays: dict) -> ImageEmbedder:
        """Overwrite the weight and bias in place (shapes must match); returns ``self``."""
        weight, bias = np.asarray(arrays["weight"]), np.asarray(arrays["bias"])
        if weight.shape != self.shape or bias.shape != (self.shape[1],):
            raise DataError(f"image embedder weights of shape {weight.shape} and bias "
                            f"{bias.shape} do not fit a {self.shape} layer")
        self.dense.weight.data[...] = weight
        self.dense.bias.data[0] = bias
        return self

    @classmethod
    def from_arrays(cls, arrays: dict) -> ImageEmbedder:
        """A layer holding the given ``weight`` and ``bias``."""
        d_in, d_out = np.shape(arrays["weight"])
        return cls(d_in, d_out).set_arrays(arrays)

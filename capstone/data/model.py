"""The search model: ``se_image`` and ``se_text`` together, and its file.

A :class:`SearchModel` is what training produces and search uses: the image embedder
(:mod:`capstone.course.image`), the text embedder (:mod:`capstone.course.text`), and a JSON-able ``info``
record (dataset, GloVe name and dimension, settings, metrics). It is saved as one ``.npz`` file
of plain arrays, read without pickles.

The file also holds the GloVe vectors of the text embedder's vocabulary (``vocab_vectors``), so
a loaded model embeds texts of known words without reading the full GloVe (400,000 words: over a
second and about 180 MB). The full GloVe is loaded on first need: a word outside the vocabulary
(it may still be in GloVe), many texts at once, or :attr:`SearchModel.text` itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from capstone.errors import DataError, MissingFileError
from capstone.files import check_writable
from capstone.further.textmap import embedder_from_arrays
from capstone.further.sif import text_embedder_class
from capstone.data.glove import GLOVE_NAMES, WordVectors, load_word_vectors, shared_word_vectors
from capstone.course.image import ImageEmbedder
from capstone.data.paths import default_dataset_name, default_model_path
from capstone.data.store import read_npz, write_npz
from capstone.course.text import STOP_WORDS, TextEmbedder, tokenize

FORMAT = "capstone-search-model/1"
VOCAB_VECTORS = "vocab_vectors"  # the vocabulary's GloVe rows, in the file beside the arrays
FEW_TEXTS = 64  # up to this many texts are checked word by word before reading the full GloVe


class SearchModel:
    """A trained model: the image embedder, the text embedder, and a record.

    Parameters
    ----------
    image : ImageEmbedder
        Or another image embedder with its interface (:mod:`capstone.further.embedders`).
    text : capstone.course.text.TextEmbedder
    info : dict, optional
        JSON-able record: ``dataset``, ``glove_name``, ``dim``, ``settings``, ``metrics``.
    """

    def __init__(self, image: ImageEmbedder, text: TextEmbedder, info: dict | None = None):
        if image.shape[1] != text.dim:
            raise ValueError(f"image embedder outputs {image.shape[1]} dimensions but the text "
                             f"embedder has {text.dim}; build the ImageEmbedder with d_out=text.dim")
        self.image, self.text = image, text
        self.info = {"glove_name": text.glove_name, "dim": int(text.dim), **(info or {})}
        self.path = None  # the file it was loaded from (set by :meth:`load`)

    @property
    def text(self) -> TextEmbedder:
        """The text embedder, over the full GloVe (read now if only the vocabulary's was).

        With a learned text map (:mod:`capstone.further.textmap`) its word vectors are mapped
        into the joint space; :attr:`plain_text` is ``se_text`` without the map.
        """
        if self._full_glove is not None:
            self.text = type(self._text).from_arrays(self._text.to_arrays(), self._full_glove())
        return self._text

    @text.setter
    def text(self, text: TextEmbedder) -> None:
        view = getattr(self.image, "view_text", None)  # a learned text map maps the words
        self._text = text if view is None else view(text)
        self._full_glove, self._vocab = None, None

    @property
    def plain_text(self) -> TextEmbedder:
        """The text embedder without the model's text map (``se_text`` as taught)."""
        text = self.text
        words = getattr(text.glove, "words", None)  # the unmapped word vectors
        if words is None:
            return text
        plain = copy.copy(text)
        plain.glove = words
        return plain

    def vocabulary(self) -> tuple[np.ndarray, np.ndarray]:
        """The text embedder's words and their IDF, without reading any word vectors."""
        return self._text.vocab, self._text.idf

    def text_for(self, texts) -> TextEmbedder:
        """The embedder for a list of texts: the vocabulary's when it knows every word of them."""
        if self._full_glove is None:
            return self._text
        if len(texts) <= FEW_TEXTS and all(isinstance(text, str) for text in texts):
            if self._vocab is None:  # stop words weigh 0 whether GloVe has them or not
                self._vocab = set(self._text.vocab.tolist())
                self._vocab |= STOP_WORDS if self._text.stop_words else set()
            if all(word in self._vocab for text in texts for word in tokenize(text)):
                return self._text
        return self.text

    def embed_images(self, features) -> np.ndarray:
        """``(n, D)`` float32 unit embeddings of image features."""
        return self.image.embed(features)

    def embed_text(self, texts) -> np.ndarray:
        """``(n, D)`` float32 unit embeddings of texts (zero rows: no known word)."""
        if isinstance(texts, str):
            return self._text.embed(texts)  # its TypeError says what to do
        texts = texts if isinstance(texts, Sequence) else list(texts)
        return self.text_for(texts).embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """``(D,)`` unit embedding of one query; ``ValueError`` when no word is known."""
        return self.text_for([text] if isinstance(text, str) else []).embed_query(text)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array the model is made of, under the names the file uses."""
        image = {f"image_{name}": value for name, value in self.image.get_arrays().items()}
        text = {f"text_{name}": np.asarray(value) for name, value in self._text.to_arrays().items()}
        return {**image, **text}

    def vocab_vectors(self) -> np.ndarray:
        """``(len(vocab), D)`` float32: the GloVe vector of each word of the text embedder."""
        glove = getattr(self._text.glove, "words", self._text.glove)  # before any text map
        rows = [glove.key_to_index[word] for word in self._text.vocab.tolist()]
        return np.asarray(glove.vectors[rows], dtype=np.float32).reshape(len(rows), -1)

    @property
    def checksum(self) -> str:
        """sha256 (hex) over the names, shapes and bytes of the weights and text arrays."""
        digest = hashlib.sha256()
        for name, value in sorted(self.arrays().items()):
            value = np.ascontiguousarray(value)
            digest.update(f"{name}{value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes())
        return digest.hexdigest()

    def save(self, path, *, word_vectors: bool = True) -> Path:
        """Write the model to a ``.npz`` file atomically (write, then rename); returns the path.

        ``word_vectors=False`` leaves out the vocabulary's GloVe vectors (a smaller file whose
        loading reads the GloVe it names, or the one given).
        """
        info = np.array(json.dumps(self.info, sort_keys=True))
        vectors = {VOCAB_VECTORS: self.vocab_vectors()} if word_vectors else {}
        return write_npz(check_model_path(path), {"format": np.array(FORMAT), "info": info,
                                                  **self.arrays(), **vectors})

    @classmethod
    def load(cls, path, glove=None) -> SearchModel:
        """Read a model written by :meth:`save`; ``glove`` defaults to the one it names.

        Without ``glove``, the model starts with its vocabulary's vectors from the file and
        reads the GloVe it names when first needed (see the module's docstring).

        Raises
        ------
        MissingFileError
            No such file; the message names the command that trains one.
        DataError
            The file is not a capstone model, or is damaged; one line naming it.
        """
        retrain = f"train one with `python -m capstone train --out {path}`"
        arrays = read_npz(path, "a capstone model file (.npz)", retrain, names=model_member)
        nonfinite = [name for name, value in arrays.items()
                     if value.dtype.kind in "fc" and not np.isfinite(value).all()]
        if nonfinite:
            raise DataError(f"{path} is a damaged capstone model file (NaN or infinite values in "
                            f"{', '.join(sorted(nonfinite))}); {retrain}")
        try:
            if str(arrays["format"]) != FORMAT:
                raise ValueError(arrays["format"])
            info = json.loads(str(arrays["info"]))
            given = glove is not None
            glove_name = info["glove_name"]
            if not given and glove_name not in GLOVE_NAMES:  # now: the full GloVe may come later
                raise ValueError(f"unknown GloVe name {glove_name!r}")
            vocab_glove = not given and vocab_word_vectors(arrays)
            glove = vocab_glove or (glove if given else load_word_vectors(glove_name))
        except MissingFileError:  # the GloVe it names is not downloaded: that message says how
            raise
        except (KeyError, ValueError, TypeError, RecursionError):
            raise DataError(f"{path} is not a capstone model file ({FORMAT}) or its record is "
                            f"damaged; {retrain}") from None
        parts = {prefix: {name[len(prefix):]: value for name, value in arrays.items()
                          if name.startswith(prefix)} for prefix in ("text_", "image_")}
        try:
            text = text_embedder_class(parts["text_"]).from_arrays(parts["text_"], glove)
            model = cls(embedder_from_arrays(parts["image_"]), text, info)
        except DataError as error:
            if given:  # the caller's GloVe does not fit the model: say which it needs
                raise DataError(f"{path}: {error}") from None
            reason = error
        except (KeyError, ValueError, TypeError, IndexError) as error:
            reason = f"{type(error).__name__}: {error}"
        else:
            if vocab_glove:
                model._full_glove = lambda: shared_word_vectors(glove_name)
            model.path = Path(path)
            return model
        raise DataError(f"{path} is a damaged capstone model file ({reason}); {retrain}")

    def describe(self) -> str:
        """One line: which file this model is, when it was trained, its validation Recall@10.

        The time is the file's (training writes it at its best epoch); Recall@10 is the one
        training measured on the validation images (``not measured`` when it did not, as the
        loop notebook 4 writes out).
        """
        recall = self.info.get("metrics", {}).get("recall@10")
        recall = f"validation R@10 {recall:.3f}" if recall is not None else \
            "validation R@10 not measured"
        if self.path is None:
            return f"model trained in this session, not loaded from a file; {recall}"
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.path.stat().st_mtime))
        except OSError:
            stamp = "at an unknown time (the file is gone)"
        return f"model {self.path}, trained {stamp}; {recall}"

    def __repr__(self) -> str:
        d_in, d_out = self.image.shape
        return (f"SearchModel(dataset={self.info.get('dataset')!r}, "
                f"glove={self._text.glove_name!r}, "
                f"{d_in}->{d_out}, checksum={self.checksum[:12]})")


def model_member(name: str) -> bool:
    """Whether a member of a model file is one :meth:`SearchModel.load` reads (others are not)."""
    return name in ("format", "info", VOCAB_VECTORS) or name.startswith(("image_", "text_"))


def vocab_word_vectors(arrays: dict):
    """The vocabulary's vectors saved in a model file as :class:`WordVectors`, else ``None``."""
    vocab, vectors = arrays.get("text_vocab"), arrays.get(VOCAB_VECTORS)
    if vocab is None or vectors is None or vectors.ndim != 2 or len(vectors) != len(vocab):
        return None
    if vectors.shape[1] != int(arrays.get("text_dim", -1)):
        return None
    return WordVectors(vocab.tolist(), vectors)


def check_model_path(path, *, writable: bool = False) -> Path:
    """``path`` as a Path, after checking that it names a ``.npz`` file (``ValueError`` if not).

    With ``writable``, also that a file can be written there (not a folder, not under a file,
    a folder one may write to; see :func:`capstone.files.check_writable`), so that training
    refuses a bad ``out`` before its first batch.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"a model file must end in .npz, got {path}")
    return check_writable(path) if writable else path


def trained_model_path(path=None, *, dataset=None) -> Path:
    """The file of a trained model, checked to exist (cheap: nothing is loaded).

    Parameters
    ----------
    path : path-like, optional
        The ``.npz`` file; by default ``capstone.data.paths.default_model_path(dataset)`` (which
        ``$CAPSTONE_MODEL`` overrides).
    dataset : str or capstone.data.dataset.Dataset, optional
        Whose default model; by default :func:`capstone.data.paths.default_dataset_name`.

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

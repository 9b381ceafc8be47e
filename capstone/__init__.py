"""capstone: semantic image search over COCO captions, GloVe and ResNet-18 features.

The public helpers are imported lazily so that ``import capstone`` stays quick (the modules
``capstone.train`` and ``capstone.evaluate`` are modules, never their functions)::

    import capstone
    data = capstone.load_dataset()          # "sample" offline, "coco" when the real files exist
    glove = capstone.load_glove()           # gensim KeyedVectors
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "capstone.data",
    "Dataset": "capstone.data",
    "load_glove": "capstone.glove",
    "TextEmbedder": "capstone.text",
    "tokenize": "capstone.text",
    "ImageEmbedder": "capstone.model",
    "SearchModel": "capstone.model",
    "load_model": "capstone.model",
    "make_triples": "capstone.triples",
    "ImageDatabase": "capstone.database",
    "show_images": "capstone.display",
    "search_box": "capstone.widgets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'capstone' has no attribute {name!r}")

"""capstone: semantic image search over COCO captions, GloVe and ResNet-18 features.

The folders are the architecture (``docs/architecture.md``): ``course`` (the core, in reading
order), ``data``, ``pipeline``, ``search``, ``ui``, ``apps``, ``further`` and ``sample``.
"""

__version__ = "0.1.0"

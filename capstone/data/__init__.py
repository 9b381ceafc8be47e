"""Data and files: the dataset, its captions, GloVe, file formats and caches, the model file.

It may import :mod:`capstone.course`, :mod:`capstone.sample` and :mod:`capstone.errors`.
"""

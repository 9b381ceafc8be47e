"""Data and files: the dataset, its captions, GloVe, file formats and caches, the model file.

It may import :mod:`capstone.course`, :mod:`capstone.further` (the model file holds its
embedders), :mod:`capstone.sample`, :mod:`capstone.errors` and :mod:`capstone.files`.
"""

"""Search beyond the core: typed queries (typos, ``-word``, ``N:word``, ``why``), approximate indexes.

It may import :mod:`capstone.course` and :mod:`capstone.errors`.
"""

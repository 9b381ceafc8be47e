"""Search beyond the core: the saved database, typed queries (typos, ``-word``, ``N:word``,
``why``), approximate indexes.

It may import :mod:`capstone.course`, :mod:`capstone.data` and :mod:`capstone.errors`.
"""

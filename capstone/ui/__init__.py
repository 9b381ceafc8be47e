"""What the notebooks show: live training curves, image grids, plots, tables, the search box.

It may import :mod:`capstone.course`, :mod:`capstone.data`, :mod:`capstone.search` and
:mod:`capstone.files`.
"""

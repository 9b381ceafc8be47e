"""The course end to end: training with checkpoints, models compared, a search that reads little.

It may import :mod:`capstone.course`, :mod:`capstone.data`, :mod:`capstone.further`,
:mod:`capstone.sample`, :mod:`capstone.search`, :mod:`capstone.ui` and :mod:`capstone.files`.
"""

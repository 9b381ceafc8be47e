"""The course end to end: training with checkpoints and a saved model, a search that reads little.

It may import :mod:`capstone.course`, :mod:`capstone.data`, :mod:`capstone.further`, :mod:`capstone.ui`.
"""

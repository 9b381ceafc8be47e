"""The course core, in reading order: text, image, triples, train, database, evaluate.

It may import only itself and :mod:`capstone.errors` (plus NumPy, SciPy, MyGrad and MyNN).
"""

"""The course core, in reading order: text, image, triples, train, database, evaluate.

It may import only itself and :mod:`capstone.errors` (plus NumPy, SciPy, MyGrad and MyNN);
what goes further reaches it as parameters (a loss function, an embedder object).
"""

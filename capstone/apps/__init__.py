"""Entry points: the command line, the Voila search page and its load test, the adapter, runners.

It may import every other folder; nothing imports it.
"""

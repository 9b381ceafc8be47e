"""Entry points: the command line, the Voila search page, the course benchmark's adapter, runners.

It may import every other folder; nothing imports it.
"""

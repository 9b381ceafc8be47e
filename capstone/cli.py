"""``python -m capstone``: one command line for data, training, evaluation and search.

Each concern's module adds its own sub-commands through ``add_cli(subparsers)``; this module only
collects them and turns bad input into one line on stderr with exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import CapstoneError

# module -> the sub-commands it adds (kept in the order ``--help`` shows them)
COMMAND_MODULES = (
    "capstone.data",  # data, download
    "capstone.sample",  # sample
    "capstone.train",  # train
    "capstone.evaluate",  # evaluate
    "capstone.database",  # search, similar, tags
    "capstone.bench",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every module's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m capstone",
        description="Semantic image search: data, training, evaluation and search.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from . import data

    data.notice_buffer = notices = []
    try:
        result = args.func(args)
    except (CapstoneError, ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        data.notice_buffer = None
    for notice in notices:
        print(notice, file=sys.stderr)
    return int(result or 0)

"""``python -m capstone bench``: run the repository's ``benchmarks/run.py``.

The benchmarks live beside the package in a source checkout (they are not installed), so this
command works from an editable install or the repository itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from capstone.errors import MissingFileError


def benchmarks_runner() -> Path:
    """Path of ``benchmarks/run.py`` in the repository that holds this package.

    Raises
    ------
    capstone.errors.MissingFileError
        When the package is not inside a source checkout (e.g. installed from a wheel).
    """
    import capstone

    path = Path(capstone.__file__).resolve().parents[1] / "benchmarks" / "run.py"
    if not path.is_file():
        raise MissingFileError(
            f"{path} does not exist: the benchmarks ship with the source repository only; "
            f"clone it and install it with `pip install -e .`"
        )
    return path


def run_benchmarks(argv: list[str]) -> int:
    """Run ``benchmarks/run.py`` with command-line arguments ``argv``; return its exit status."""
    path = benchmarks_runner()
    spec = importlib.util.spec_from_file_location("benchmarks_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)

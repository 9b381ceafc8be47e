"""Run the course notebooks top to bottom, and strip their outputs before committing.

``python -m capstone.apps.notebooks run --out build/notebooks notebooks/*.ipynb``
    Executes each notebook in a fresh ``python3`` kernel of the current interpreter, with the
    notebook's own folder as working directory, and writes the executed copy (``NAME.ipynb``) and
    an HTML export (``NAME.html``) under ``--out``. A failing cell is named by its index and first
    line; the partly executed copy is still written, and the exit status is 1.
``python -m capstone.apps.notebooks strip notebooks/*.ipynb``
    Removes outputs, execution counts and run metadata in place (commit notebooks this way).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from capstone.errors import CapstoneError

KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600


class NotebookError(CapstoneError):
    """A notebook cell failed or timed out; the message names the notebook and the cell."""


def first_line(source: str) -> str:
    """The first non-blank line of a cell's source (how a failing cell is named)."""
    return next((line.strip() for line in source.splitlines() if line.strip()), "<empty cell>")


def run_notebook(path, out_dir, *, timeout: int = CELL_TIMEOUT_S) -> Path:
    """Execute one notebook and write the executed copy and its HTML export.

    Parameters
    ----------
    path : path-like
        The ``.ipynb`` file; it is not modified.
    out_dir : path-like
        Folder for ``<name>.ipynb`` and ``<name>.html`` (created if needed).
    timeout : int
        Seconds one cell may run.

    Returns
    -------
    pathlib.Path
        The executed notebook's path.

    Raises
    ------
    NotebookError
        When a cell raises or times out; the partly executed copy is written first.
    """
    from traitlets.config import Config
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal

    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}; give the path of an .ipynb file")
    notebook = nbformat.read(path, as_version=4)
    sockets = tempfile.TemporaryDirectory(prefix="capstone-kernel-")
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent.resolve())}},
        # IPC sockets in a folder of their own: no kernel port on the network (ipykernel warns
        # about TCP without encryption), no socket files beside the notebook
        config=Config({"KernelManager": {"transport": "ipc",
                                         "ip": str(Path(sockets.name) / "kernel")}}),
    )
    current = {}
    client.on_cell_execute = lambda cell, cell_index: current.update(cell=cell, index=cell_index)
    failure = None
    try:
        client.execute()
    except (CellControlSignal, RuntimeError) as error:  # an error, a timeout, a dead kernel
        cell, index = current.get("cell"), current.get("index", -1)
        where = f"cell {index} ({first_line(cell.source) if cell else '?'})"
        reason = f"{error.ename}: {error.evalue}" if hasattr(error, "ename") else str(error)
        failure = f"{path.name}: {where} failed: {first_line(reason)}"
    finally:
        sockets.cleanup()
    out_path = write_outputs(notebook, out_dir / path.name)
    if failure:
        raise NotebookError(f"{failure} (executed copy: {out_path})")
    return out_path


def write_outputs(notebook, out_path) -> Path:
    """Write ``notebook`` to ``out_path`` and its HTML export beside it (``.html``)."""
    from nbconvert import HTMLExporter

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out_path)
    html, _ = HTMLExporter().from_notebook_node(notebook)
    out_path.with_suffix(".html").write_text(html, encoding="utf-8")
    return out_path


def strip_notebook(path) -> bool:
    """Remove outputs, execution counts and run metadata from a notebook, in place.

    Returns
    -------
    bool
        Whether the file changed.
    """
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    before = nbformat.writes(notebook)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata.pop("widgets", None)
    after = nbformat.writes(notebook)
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def _run(args) -> int:
    failures = []
    for path in args.notebooks:
        start = time.perf_counter()
        try:
            out_path = run_notebook(path, args.out, timeout=args.timeout)
        except NotebookError as error:
            failures.append(str(error))
            print(f"FAILED {error}", file=sys.stderr)
            continue
        print(f"ran {path} in {time.perf_counter() - start:.1f} s -> {out_path}")
    return 1 if failures else 0


def _strip(args) -> int:
    for path in args.notebooks:
        if strip_notebook(path):
            print(f"stripped {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m capstone.apps.notebooks`` parser (``run`` and ``strip``)."""
    parser = argparse.ArgumentParser(
        prog="python -m capstone.apps.notebooks", description="Run or strip the course notebooks."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = subparsers.add_parser("run", help="execute notebooks, write copies and HTML")
    run.add_argument("notebooks", nargs="+", metavar="NB", help=".ipynb files, run in order")
    run.add_argument("--out", default="build/notebooks", help="output folder")
    run.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    run.set_defaults(func=_run)
    strip = subparsers.add_parser("strip", help="remove outputs and execution counts in place")
    strip.add_argument("notebooks", nargs="+", metavar="NB", help=".ipynb files")
    strip.set_defaults(func=_strip)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; bad input is one line on stderr with exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CapstoneError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

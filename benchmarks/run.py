"""Run the benchmarks: ``python benchmarks/run.py [--only NAME] [--json PATH]``.

Every ``benchmarks/bench_<name>.py`` defines ``rows() -> list[dict]``; each row has

``stage``     what was timed, e.g. ``"text: embed captions"``
``baseline``  the straightforward (course) way's speed, measured in the same run
``ours``      the project's speed, same unit
``ratio``     how many times better ours is than the baseline (higher is better)
``unit``      e.g. ``"captions/s"``
``note``      (optional) sizes, subsets, agreement checks
``target``    (optional) the least acceptable ``ratio``
``recall``    (optional) an approximate search's recall against exact search, 0 to 1
``recall_target``  (optional) the least acceptable ``recall``

Targets are ratios against a baseline measured in the same run, on the same machine, never
absolute times, so they hold on any machine. A module that raises is reported as a failed row
and the others still run. The exit status is 1 when a module failed or a ratio or recall missed
its target, else 0; 2 for an unknown ``--only`` name. The table has a recall column only when
some row has a recall; the JSON keeps every field of every row.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
COLUMNS = ("stage", "baseline", "ours", "unit", "ratio", "target", "note")


def bench_names(folder=BENCH_DIR) -> list[str]:
    """Names of the benchmark modules in ``folder`` (``bench_text.py`` -> ``"text"``)."""
    return sorted(path.stem.removeprefix("bench_") for path in Path(folder).glob("bench_*.py"))


REQUIRED = ("stage", "baseline", "ours", "ratio", "unit")


def run_module(name: str, folder=BENCH_DIR) -> list[dict]:
    """Import ``folder/bench_<name>.py`` and return its ``rows()``; a failure becomes one row."""
    path = Path(folder) / f"bench_{name}.py"
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rows = list(module.rows())
        for row in rows:
            missing = [key for key in REQUIRED if key not in row]
            if missing:
                raise KeyError(f"row {row.get('stage')!r} lacks {missing}")
        return [{"module": name, **row} for row in rows]
    except Exception as error:  # report it and go on with the other modules
        traceback.print_exc(file=sys.stderr)
        return [{"module": name, "stage": name, "error": f"{type(error).__name__}: {error}"}]


def missed_target(row: dict) -> bool:
    """Whether a row failed, or its ratio or recall is below its target."""
    return (
        "error" in row
        or ("target" in row and row["ratio"] < row["target"])
        or ("recall_target" in row
            and (row.get("recall") is None or row["recall"] < row["recall_target"]))
    )


def format_number(value) -> str:
    """A table cell: thousands separators for big numbers, 3 significant digits for small."""
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table; a failed row shows its error as the note."""
    with_recall = any("recall" in row for row in rows)
    columns = COLUMNS[:6] + ("recall",) + COLUMNS[6:] if with_recall else COLUMNS
    lines = [columns]
    for row in rows:
        if "error" in row:
            note = f"FAILED: {row['error']}"
        else:
            flag = "MISSED TARGET" if missed_target(row) else ""
            note = "; ".join(part for part in (flag, row.get("note", "")) if part)
        ratio = row.get("ratio")
        cells = [
            row["stage"],
            format_number(row.get("baseline")),
            format_number(row.get("ours")),
            row.get("unit", ""),
            "" if ratio is None else f"{format_number(ratio)}x",
            format_number(row.get("target")),
            note,
        ]
        if with_recall:
            recall, target = row.get("recall"), row.get("recall_target")
            cells.insert(6, "".join((
                "" if recall is None else f"{recall:.3f}",
                "" if target is None else f" (>= {target:g})",
            )))
        lines.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


def run(only: str | None = None, folder=BENCH_DIR) -> list[dict]:
    """Run every benchmark module (or only one) and return all their rows.

    Raises
    ------
    ValueError
        If ``only`` names no module in ``folder``.
    """
    names = bench_names(folder)
    if only is not None:
        only = only.removeprefix("bench_").removesuffix(".py")
        if only not in names:
            raise ValueError(f"no benchmark {only!r}: choose one of {', '.join(names) or 'none'}")
        names = [only]
    rows = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += run_module(name, folder)
    return rows


def main(argv: list[str] | None = None, folder=BENCH_DIR) -> int:
    """Run, print the table, optionally write the rows as JSON; return the exit status."""
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n")[0])
    names = ", ".join(bench_names(folder))
    parser.add_argument("--only", metavar="NAME", help=f"run one module: {names}")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        rows = run(args.only, folder)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2, default=float) + "\n", encoding="utf-8")
    return int(any(map(missed_target, rows)))


if __name__ == "__main__":
    sys.exit(main())

"""Metric tables as aligned text, for notebooks and the command line."""

from __future__ import annotations


def format_table(table: dict) -> str:
    """A dict of metric dicts (columns) as an aligned text table.

    Rows whose values are all missing (e.g. the 5K protocol on a small split) are left out;
    single missing values show as ``-``; nested dicts (per-concept breakdowns) are skipped.
    """
    columns = list(table)
    names = [name for name in dict.fromkeys(n for column in table.values() for n in column)
             if any(table[c].get(name) is not None for c in columns)
             and not any(isinstance(table[c].get(name), dict) for c in columns)]
    width = max(map(len, names))
    column_width = max(12, *(len(c) + 2 for c in columns))

    def cell(value):
        if value is None:
            return "-"
        whole = not isinstance(value, float) or value.is_integer()
        return f"{value:g}" if whole else f"{value:.3f}"

    lines = [" " * width + "".join(f"{c:>{column_width}}" for c in columns)]
    lines += [name.ljust(width) + "".join(f"{cell(table[c].get(name)):>{column_width}}"
                                          for c in columns) for name in names]
    return "\n".join(lines)
